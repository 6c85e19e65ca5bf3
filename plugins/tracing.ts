/**
 * Tracing (src/tracing/), on when `tracing` is configured: a server span per request (an HTTP
 * request, or a WebSocket handshake), continued from the client's `traceparent`; children for
 * the auth and limit checks (`traced`), the upstream call (plugins/proxy.ts) and the upstream
 * handshake (plugins/bridge.ts), which send the gateway's own `traceparent` upstream; and for a
 * WebSocket, one short span when it closes. Off, every hook returns at its first line.
 */
import fp from 'fastify-plugin'
import type { FastifyRequest } from 'fastify'
import { endWithStatus, GatewayTracing, SpanKind, type Span } from '../src/tracing/tracer.js'
import { isWebSocketUpgrade } from '../src/bridge/client-handshake.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The app's tracing, or null when `tracing` is not configured. */
    tracing: GatewayTracing | null
    /** Runs `fn` inside a child span of the request's span named `name` (just `fn` when tracing is off). */
    traced: <T>(request: FastifyRequest, name: string, fn: () => Promise<T>) => Promise<T>
  }
  interface FastifyRequest {
    /** The request's server span while tracing is on. */
    traceSpan: Span | null
  }
}

export default fp<{ tracing?: GatewayTracing }>(async function tracingPlugin (fastify, opts) {
  const cfg = fastify.gatewayConfig.tracing
  const tracing = opts.tracing ?? (cfg === undefined ? null : new GatewayTracing(cfg))
  fastify.decorate('tracing', tracing)
  fastify.decorateRequest('traceSpan', null)
  fastify.decorate('traced', async function traced<T> (request: FastifyRequest, name: string, fn: () => Promise<T>): Promise<T> {
    const parent = request.traceSpan
    if (tracing === null || parent === null) return await fn()
    const span = tracing.start(name, SpanKind.INTERNAL, parent)
    try {
      return await fn()
    } finally {
      span.end()
    }
  })
  if (tracing === null) return
  fastify.addHook('onClose', async () => { await tracing.shutdown() })

  fastify.addHook('onRequest', async (request) => {
    const route = request.routeOptions.config.gatewayRoute ?? request.routeOptions.url
    request.traceSpan = tracing.start(route === undefined ? request.method : `${request.method} ${route}`, SpanKind.SERVER, tracing.extract(request.headers), {
      'http.request.method': request.method,
      'url.path': request.url.split('?', 1)[0],
      'url.scheme': request.protocol,
      'server.address': request.host,
      'client.address': request.ip,
      'network.protocol.version': request.raw.httpVersion,
      ...(route !== undefined ? { 'http.route': route } : {}),
      // (request.ws is set by @fastify/websocket's own hook, which runs after this one.)
      ...(isWebSocketUpgrade(request.headers) ? { 'tollgate.websocket': true } : {}),
      ...(request.headers['user-agent'] !== undefined ? { 'user_agent.original': request.headers['user-agent'] } : {})
    })
  })
  // Answered requests (and refused handshakes) end here; an upgraded handshake ends at its 101.
  fastify.addHook('onResponse', async (request, reply) => {
    const span = request.traceSpan
    // isRecording() is false once ended (and for a span not sampled, which has nothing to end).
    if (span !== null && span.isRecording()) endWithStatus(span, reply.statusCode, true)
  })
}, { name: 'tollgate-tracing', fastify: '5.x', dependencies: ['tollgate-config'] })
