/**
 * Registers the configured routes: for each, one set of Fastify routes that proxies HTTP, bridges
 * WebSocket handshakes, or serves static files. Prefix `/chat` matches `/chat`, `/chat/` and
 * `/chat/x`, not `/chatroom`.
 */
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods, RouteHandlerMethod } from 'fastify'
import type WebSocket from 'ws'
import { checkHandshake, routeTarget, type BridgeTarget } from './websocket-bridge.js'
import { registerStatic } from './static-routes.js'
import { codes, errorBody } from '../src/errors.js'
import type { RouteConfig } from '../src/config/types.js'
import type { UpstreamPool } from '../src/upstreams/pool.js'
import { claimHeaders, queryWithout } from '../src/auth/token.js'
import type { JwtClaims } from './auth.js'

/** GET (and the HEAD Fastify derives from it) are registered with the WebSocket handler. */
const OTHER_METHODS: HTTPMethods[] = ['DELETE', 'PATCH', 'POST', 'PUT', 'OPTIONS']

export default fp(async function proxyRoutesPlugin (fastify: FastifyInstance) {
  // Node's server.close() ends only the keep-alive sockets idle at that moment: a socket whose
  // request is in flight would then hold close() (and the process) for keepAliveTimeout after the
  // answer. While draining, answers say `Connection: close`, and sockets whose answer had already
  // started are closed as soon as they are idle.
  const state = fastify.gatewayState
  fastify.addHook('onSend', async (_request, reply, payload) => {
    if (state.draining && !reply.raw.headersSent) void reply.header('connection', 'close')
    return payload
  })
  fastify.addHook('onResponse', async () => {
    if (state.draining) setImmediate(() => fastify.server.closeIdleConnections())
  })
  // One encapsulated scope: its body parser passes request bodies through as streams, which must
  // not apply to the admin or users' routes.
  await fastify.register(async function proxyScope (scope) {
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser('*', (_req, payload, done) => { done(null, payload) })
    for (const route of fastify.gatewayConfig.routes) {
      if (route.static !== null) await registerStatic(scope, route)
      else registerProxy(scope, route, fastify.upstreamPools.get(route.upstream!)!)
    }
  })
}, { name: 'tollgate-proxy-routes', fastify: '5.x', dependencies: ['tollgate-config', 'tollgate-http-proxy', 'tollgate-websocket-bridge', 'tollgate-auth', 'tollgate-rate-limit'] })

/** Whether the request carries a body (which a retry could not replay). */
function hasBody (request: FastifyRequest): boolean {
  const len = request.headers['content-length']
  return request.headers['transfer-encoding'] !== undefined || (len !== undefined && len !== '0')
}

function urls (prefix: string): string[] {
  return prefix === '/' ? ['/', '/*'] : [prefix, `${prefix}/*`]
}

function registerProxy (scope: FastifyInstance, route: RouteConfig, pool: UpstreamPool): void {
  const upstream = route.upstream!
  const bridge = scope.websocketBridge
  const state = scope.gatewayState
  const { forwardClaims, queryParam } = scope.gatewayConfig.auth
  const allowedOrigins = scope.gatewayConfig.websocket.allowedOrigins
  // Client-sent headers named like forwarded claims are dropped on every route: no spoofing.
  const strip = Object.values(forwardClaims)
  const hasClaims = strip.length > 0
  // The gateway's token parameter never goes upstream (when the gateway does JWT auth at all).
  const tokenParam = scope.gatewayConfig.auth.jwt === undefined ? null : queryParam

  /** Route headers plus headers from the verified claims. */
  const extraHeaders = (request: FastifyRequest): Record<string, string> => {
    const claims = (request as { user?: JwtClaims | null }).user
    return hasClaims && claims != null ? { ...route.headers, ...claimHeaders(claims, forwardClaims) } : route.headers
  }
  /** The request URL as sent upstream: the gateway's token parameter is removed. */
  const upstreamUrl = (request: FastifyRequest): string => {
    if (tokenParam === null || !request.url.includes('?')) return request.url
    const q = queryWithout(request.url, tokenParam)
    return request.url.slice(0, request.url.indexOf('?')) + (q === '' ? '' : `?${q}`)
  }

  const limits = scope.routeLimits(route.rateLimit, route.prefix)
  /** A target for this request (balancer, health), or null when none is available. */
  const pick = (request: FastifyRequest, exclude?: ReadonlySet<string>): string | null => pool.pick({
    ip: request.ip,
    userId: ((request as { user?: JwtClaims | null }).user?.sub as string | undefined) ?? null,
    headers: request.headers
  }, exclude)

  /** Proxies to `target`; a target that cannot be reached costs one retry on another one. */
  const forward = (request: FastifyRequest, reply: FastifyReply, target: string, retry: boolean): FastifyReply => {
    const url = upstreamUrl(request)
    const t = routeTarget(route, upstream, target, url)
    const q = t.path.indexOf('?')
    let failed = false
    pool.requestStarted(target)
    reply.raw.once('close', () => {
      pool.requestFinished(target)
      if (!failed) pool.markSuccess(target)
    })
    return scope.proxyHttp(request, reply, {
      origin: t.target,
      path: q === -1 ? t.path : t.path.slice(0, q),
      query: tokenParam === null ? undefined : (q === -1 ? '' : t.path.slice(q + 1)),
      headers: extraHeaders(request),
      strip,
      onUpstreamError: (kind, connect) => {
        failed = true
        // Passive health counts failures to connect, not slow or failing answers.
        if (!connect) return false
        pool.markFailure(target, kind)
        // Only a request without a body is replayed: a streamed body may be partly consumed.
        if (!retry || hasBody(request)) return false
        const next = pick(request, new Set([target]))
        if (next === null) return false
        request.log.info({ failed: target, next }, 'retrying the request on another target')
        forward(request, reply, next, false)
        return true
      }
    })
  }
  const httpHandler: RouteHandlerMethod = function (request, reply) {
    const target = pick(request)
    if (target === null) return reply.code(502).send(errorBody(new codes.GW_ERR_NO_TARGET()))
    return forward(request, reply, target, true)
  }
  const upgradeRequired: RouteHandlerMethod = function (_request, reply) {
    return reply.code(426).header('upgrade', 'websocket').header('connection', 'Upgrade').send(errorBody(new codes.GW_ERR_UPGRADE_REQUIRED()))
  }
  const keyByUser = route.rateLimit?.keyBy === 'user'
  const refuseWhenRedisDown = scope.gatewayConfig.redis !== undefined && !scope.gatewayConfig.redis.failOpen
  // Handshake checks, then auth, then limits: all answered with a plain HTTP status before any upgrade.
  const onRequest = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (request.ws) {
      if (!route.websocket) { await reply.code(404).send(errorBody(new codes.GW_ERR_NO_WEBSOCKET())); return }
      if (!checkHandshake(request, reply, state.draining, allowedOrigins)) return
      // Cluster mode with Redis away: new handshakes follow redis.failOpen.
      if (refuseWhenRedisDown && !scope.redisState.up) { await reply.code(503).send(errorBody(new codes.GW_ERR_CLUSTER_UNAVAILABLE())); return }
    }
    if (route.auth !== 'none') {
      if (!await scope.checkAuth(request, reply, route.auth)) return
    } else if (keyByUser) {
      await scope.identify(request)
    }
    if (limits !== null) {
      if (request.ws) await limits.handshake(request, reply)
      else await limits.http(request, reply)
    }
  }
  const preHandler = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (!request.ws) return
    const target = pick(request)
    if (target === null) { await reply.code(502).send(errorBody(new codes.GW_ERR_NO_TARGET())); return }
    const url = upstreamUrl(request)
    const headers = extraHeaders(request)
    const bridgeTarget = (target: string): BridgeTarget => ({ ...routeTarget(route, upstream, target, url), headers, strip, messageLimit: limits?.messages, pool, retarget })
    const retarget = (failed: ReadonlySet<string>): BridgeTarget | null => {
      const next = pick(request, failed)
      return next === null ? null : { ...bridgeTarget(next), retarget: undefined }
    }
    await bridge.connect(request, reply, bridgeTarget(target))
  }
  const handler = route.http ? httpHandler : upgradeRequired
  const metrics = scope.metrics
  const onResponse = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (!request.ws) metrics.httpRequest(route.prefix, reply.statusCode)
  }
  const config = { gatewayRoute: route.prefix }
  for (const url of urls(route.prefix)) {
    scope.route({
      method: 'GET',
      url,
      config,
      handler,
      onResponse,
      onRequest,
      preHandler,
      ...(route.websocket ? { wsHandler: (socket: WebSocket, request: FastifyRequest) => bridge.attach(socket, request) } : {})
    })
    scope.route({ method: OTHER_METHODS, url, config, handler, onResponse, onRequest })
  }
}
