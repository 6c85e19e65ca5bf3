/**
 * Registers the configured routes: for each, one set of Fastify routes that proxies HTTP, bridges
 * WebSocket handshakes, or serves static files. Prefix `/chat` matches `/chat`, `/chat/` and
 * `/chat/x`, not `/chatroom`.
 */
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods, RouteHandlerMethod } from 'fastify'
import type WebSocket from 'ws'
import type { IncomingHttpHeaders } from 'node:http'
import { checkHandshake, type BridgeTarget } from './bridge.js'
import { asksForWebSocket, isWebSocketUpgrade } from '../src/bridge/client-handshake.js'
import { requestTarget } from './edge.js'
import { registerStatic } from './static.js'
import { codes, gatewayErrorHandler } from '../src/errors.js'
import type { RouteConfig } from '../src/config/types.js'
import { joinUpstreamPath } from '../src/edge/forward-headers.js'
import { declaresBody } from '../src/http/headers.js'
import { prefixMatcher, prefixSegments } from '../src/edge/request-target.js'
import type { PickContext, UpstreamPool } from '../src/upstreams/pool.js'
import { claimHeaders, searchWithoutToken } from '../src/auth/token.js'
import type { JwtClaims } from './auth.js'
import { requestUserId } from './authorize.js'

/** GET (and the HEAD Fastify derives from it) are registered with the WebSocket handler. */
const OTHER_METHODS: HTTPMethods[] = ['DELETE', 'PATCH', 'POST', 'PUT', 'OPTIONS']

export default fp(async function proxyRoutesPlugin (fastify: FastifyInstance) {
  // One encapsulated scope: its body parser passes request bodies through as streams, which must
  // not apply to the admin or users' routes; its error handler is the gateway's, also inside a
  // host app that has its own.
  await fastify.register(async function proxyScope (scope) {
    scope.setErrorHandler(gatewayErrorHandler)
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser('*', (_req, payload, done) => { done(null, payload) })
    const routes = fastify.gatewayConfig.routes
    if (routes.length > 1) {
      // `/PRIVATE/x` is under `/` for the router, under `/private` for an Express upstream: a
      // path whose folded form falls under another route than the one it matched is refused.
      const folded = prefixMatcher(routes.map((r) => r.prefix))
      // Callback-style hooks here and on the routes: an async hook costs a promise and a
      // microtask per request even when it has nothing to do.
      scope.addHook('onRequest', (request, _reply, done) => {
        const url = request.routeOptions.url
        if (url === undefined) { done(); return }
        const matched = url === '/' || url === '/*' ? '/' : url.endsWith('/*') ? url.slice(0, -2) : url
        if (folded(requestTarget(request).path) !== matched) done(new codes.GW_ERR_BAD_PATH('path falls under another route once case is ignored'))
        else done()
      })
    }
    for (const route of routes) {
      if (route.static !== null) await registerStatic(scope, route)
      else registerProxy(scope, route, fastify.upstreamPools.get(route.upstream!)!)
    }
  })
}, { name: 'tollgate-proxy-routes', fastify: '5.x', dependencies: ['tollgate-config', 'tollgate-http-proxy', 'tollgate-websocket-bridge', 'tollgate-auth', 'tollgate-authorize', 'tollgate-rate-limit', 'tollgate-upstreams', 'tollgate-drain', 'tollgate-tracing'] })


/**
 * What a balancer may choose a target by, read from the request only when it asks: only hash
 * balancing does (round-robin and least-connections never read it).
 */
class RequestPick implements PickContext {
  constructor (private readonly request: FastifyRequest) {}
  get ip (): string { return this.request.ip }
  get userId (): string | null { return requestUserId(this.request) }
  get headers (): IncomingHttpHeaders { return this.request.headers }
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
  const authorize = route.authorize
  // Client-sent headers named like forwarded claims, or like what the auth service may set, are
  // dropped: no spoofing.
  const strip = [...Object.values(forwardClaims), ...(authorize === null ? [] : [...authorize.upstreamHeaders, ...(authorize.userHeader === null ? [] : [authorize.userHeader])])]
  const hasClaims = Object.keys(forwardClaims).length > 0
  // The gateway's token parameter never goes upstream (when the gateway does JWT auth at all).
  const tokenParam = scope.gatewayConfig.auth.jwt === undefined ? null : queryParam

  /** Route headers, plus headers from the verified claims and from the auth service's answer. */
  const extraHeaders = (request: FastifyRequest): Record<string, string> => {
    const claims = (request as { user?: JwtClaims | null }).user
    const granted = request.authorization?.headers
    const base = hasClaims && claims != null ? { ...route.headers, ...claimHeaders(claims, forwardClaims) } : route.headers
    return granted === undefined ? base : { ...base, ...granted }
  }
  const segments = prefixSegments(route.prefix)
  const unchanged = route.rewritePrefix === route.prefix
  /**
   * Where `request` goes on `target`: the normalised path after the prefix, under rewritePrefix
   * and the target's base path, and the client's query minus the gateway's token parameter.
   */
  const upstreamOf = (request: FastifyRequest, target: string): { origin: string, path: string, search: string } => {
    const rt = requestTarget(request)
    const base = scope.targetCache.parts(target)
    const search = searchWithoutToken(rt.search, tokenParam)
    // rewritePrefix left as the prefix forwards the path unchanged, path parameters included.
    const rest = unchanged ? rt.after(0) : rt.after(segments)
    return { origin: base.origin, path: joinUpstreamPath(rest, unchanged ? '/' : route.rewritePrefix, base.pathname === '/' ? '' : base.pathname), search }
  }

  const limits = scope.routeLimits(route.rateLimit, route.prefix)
  /** A target for this request (balancer, health), or null when none is available. */
  const pick = (request: FastifyRequest, exclude?: ReadonlySet<string>): string | null => pool.pick(new RequestPick(request), exclude)

  /** Proxies to `target`; a target that cannot be reached costs one retry on another one. */
  const forward = (request: FastifyRequest, reply: FastifyReply, target: string, retry: boolean): FastifyReply => {
    const t = upstreamOf(request, target)
    let failed = false
    pool.requestStarted(target)
    return scope.proxyHttp(request, reply, {
      origin: t.origin,
      path: t.path,
      query: t.search === '' ? '' : t.search.slice(1),
      headers: extraHeaders(request),
      strip,
      maxBodySize: route.maxBodySize,
      onClose: () => {
        pool.requestFinished(target)
        if (!failed) pool.markSuccess(target)
      },
      onUpstreamError: (kind, connect) => {
        failed = true
        // Passive health counts failures to connect, not slow or failing answers.
        if (!connect) return false
        pool.markFailure(target, kind)
        // Only a request without a body is replayed: a streamed body may be partly consumed.
        if (!retry || declaresBody(request.headers)) return false
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
    if (target === null) return reply.send(new codes.GW_ERR_NO_TARGET())
    return forward(request, reply, target, true)
  }
  const upgradeRequired: RouteHandlerMethod = function (_request, reply) {
    return reply.header('upgrade', 'websocket').header('connection', 'Upgrade').send(new codes.GW_ERR_UPGRADE_REQUIRED())
  }
  const keyByUser = route.rateLimit?.keyBy === 'user'
  // The auth service names the user: keyBy user open-connection counts wait for its answer.
  const concurrentAfterAuthorize = keyByUser && authorize?.userHeader != null && route.rateLimit?.concurrent !== undefined
  const refuseWhenRedisDown = scope.gatewayConfig.redis !== undefined && !scope.gatewayConfig.redis.failOpen
  /**
   * Everything decided before a request is proxied or upgraded, each answered with a plain HTTP
   * status: the HTTP limit (every request counts, handshakes and requests auth will refuse
   * included), the upgrade checks, the handshake limits, then auth. With keyBy user the token
   * is verified first, so the limits know the user; a request without a valid one counts by IP.
   */
  const traced = scope.tracing === null ? null : scope.traced
  /** `fn`, in a child span of the request's when tracing is on (then auth and limits show in the trace). */
  const step = <T>(request: FastifyRequest, name: string, fn: () => Promise<T>): Promise<T> => traced === null ? fn() : traced(request, name, fn)
  const checks = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (keyByUser) await step(request, 'auth', async () => { await scope.identify(request) })
    if (limits !== null && !await step(request, 'rate limit', () => limits.http(request, reply))) return
    if (request.ws) {
      if (route.websocket) {
        if (!checkHandshake(request, reply, state.draining, allowedOrigins)) return
        // Cluster mode with Redis away: new handshakes follow redis.failOpen.
        if (refuseWhenRedisDown && !scope.redisState.up) { await reply.send(new codes.GW_ERR_CLUSTER_UNAVAILABLE()); return }
        if (limits !== null && !await step(request, 'rate limit', () => concurrentAfterAuthorize ? limits.handshakeRate(request, reply) : limits.handshake(request, reply))) return
      } else if (isWebSocketUpgrade(request.headers)) {
        await reply.send(new codes.GW_ERR_NO_WEBSOCKET()); return
      } else if (declaresBody(request.headers)) {
        // Another upgrade (h2c) on an HTTP route is served as plain HTTP, without its Upgrade;
        // Node leaves an upgrade request's body unparsed, so one with a body cannot be.
        await reply.send(new codes.GW_ERR_BAD_UPGRADE()); return
      }
    } else if (route.websocket && asksForWebSocket(request.headers)) {
      // Upgrade: websocket without Connection: upgrade is neither a handshake nor plain HTTP.
      await reply.send(new codes.GW_ERR_BAD_HANDSHAKE('Connection must include upgrade')); return
    }
    if (route.auth !== 'none' && (request as { user?: JwtClaims | null }).user == null) {
      if (!await step(request, 'auth', () => scope.checkAuth(request, reply, route.auth))) return
    }
    if (authorize !== null) {
      if (!await step(request, 'authorize', () => scope.authorize(request, reply, authorize, route.prefix))) return
      if (concurrentAfterAuthorize && request.ws && route.websocket) await step(request, 'rate limit', () => limits!.concurrent(request, reply))
    }
  }
  /**
   * Only what a request on this route can need: a plain HTTP request on a route without
   * limits, auth or an auth service goes through without a promise.
   */
  const plain = !keyByUser && limits === null && route.auth === 'none' && authorize === null
  const onRequest = (request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void): void => {
    if (plain && !request.ws && !(route.websocket && asksForWebSocket(request.headers))) { done(); return }
    checks(request, reply).then(() => { done() }, done)
  }
  const bridgeHandshake = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const target = pick(request)
    if (target === null) { await reply.send(new codes.GW_ERR_NO_TARGET()); return }
    if (!route.websocket) {
      // The upgrade was refused by ignoring it (RFC 9110 7.8): answered as HTTP/1.1 on a socket
      // Node no longer parses, so it closes after the answer.
      void reply.header('connection', 'close')
      forward(request, reply, target, true)
      return
    }
    const headers = extraHeaders(request)
    const bridgeTarget = (target: string): BridgeTarget => {
      const t = upstreamOf(request, target)
      return { target: t.origin, upstream: target, path: t.path + t.search, route: route.prefix, headers, strip, ca: upstream.ca, messageLimit: limits?.messages, pool, retarget }
    }
    const retarget = (failed: ReadonlySet<string>): BridgeTarget | null => {
      const next = pick(request, failed)
      return next === null ? null : { ...bridgeTarget(next), retarget: undefined }
    }
    await bridge.connect(request, reply, bridgeTarget(target))
  }
  /** The handshake's upstream side: a plain request goes straight to its handler. */
  const preHandler = (request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void): void => {
    if (!request.ws) { done(); return }
    bridgeHandshake(request, reply).then(() => { done() }, done)
  }
  const handler = route.http ? httpHandler : upgradeRequired
  const metrics = scope.metrics
  // Every handshake answered without an upgrade (400, 401, 403, 429, 502, 504...) counts by its
  // status (an upgraded one is counted by the bridge); every other request as an HTTP request.
  const onResponse = (request: FastifyRequest, reply: FastifyReply, done: () => void): void => {
    if (request.ws) metrics.handshake(route.prefix, String(reply.statusCode))
    else metrics.httpRequest(route.prefix, reply.statusCode, reply.elapsedTime / 1000)
    done()
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
    scope.route({ method: OTHER_METHODS, url, config, handler, onResponse, onRequest, preHandler })
  }
}
