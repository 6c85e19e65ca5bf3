/**
 * Registers the configured routes: for each, one set of Fastify routes that proxies HTTP, bridges
 * WebSocket handshakes, or serves static files. Prefix `/chat` matches `/chat`, `/chat/` and
 * `/chat/x`, not `/chatroom`.
 */
import fp from 'fastify-plugin'
import fastifyStatic from '@fastify/static'
import type { FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods, RouteHandlerMethod } from 'fastify'
import type WebSocket from 'ws'
import { checkHandshake, routeTarget } from './websocket-bridge.js'
import { codes } from '../src/errors.js'
import type { RouteConfig } from '../src/config/types.js'
import type { UpstreamPool } from '../src/upstreams/pool.js'

/** GET (and the HEAD Fastify derives from it) are registered with the WebSocket handler. */
const OTHER_METHODS: HTTPMethods[] = ['DELETE', 'PATCH', 'POST', 'PUT', 'OPTIONS']

export default fp(async function proxyRoutesPlugin (fastify: FastifyInstance) {
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
}, { name: 'tollgate-proxy-routes', fastify: '5.x', dependencies: ['tollgate-config', 'tollgate-http-proxy', 'tollgate-websocket-bridge'] })

function urls (prefix: string): string[] {
  return prefix === '/' ? ['/', '/*'] : [prefix, `${prefix}/*`]
}

async function registerStatic (scope: FastifyInstance, route: RouteConfig): Promise<void> {
  await scope.register(fastifyStatic, {
    root: route.static!,
    prefix: route.prefix === '/' ? '/' : `${route.prefix}/`,
    decorateReply: false,
    redirect: true,
    wildcard: true
  })
}

function registerProxy (scope: FastifyInstance, route: RouteConfig, pool: UpstreamPool): void {
  const upstream = route.upstream!
  const bridge = scope.websocketBridge
  const state = scope.gatewayState

  const httpHandler: RouteHandlerMethod = function (request, reply) {
    const t = routeTarget(route, upstream, pool.pick(), request.url)
    const q = t.path.indexOf('?')
    return scope.proxyHttp(request, reply, { origin: t.target, path: q === -1 ? t.path : t.path.slice(0, q), headers: route.headers })
  }
  const upgradeRequired: RouteHandlerMethod = function (_request, reply) {
    return reply.code(426).header('upgrade', 'websocket').header('connection', 'Upgrade').send(new codes.GW_ERR_UPGRADE_REQUIRED())
  }
  const onRequest = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (!request.ws) return
    if (!route.websocket) { await reply.code(404).send(new codes.GW_ERR_NO_WEBSOCKET()); return }
    checkHandshake(request, reply, state.draining)
  }
  const preHandler = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (!request.ws) return
    await bridge.connect(request, reply, routeTarget(route, upstream, pool.pick(), request.url))
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
    scope.route({ method: OTHER_METHODS, url, config, handler, onResponse })
  }
}
