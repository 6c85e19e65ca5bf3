/**
 * HTTP reverse proxying: each request is dispatched with undici (a keep-alive pool per upstream
 * origin) straight from the client's request to its response (src/proxy/http-forward.ts).
 * Routes are registered by proxy-routes.ts so that one route serves HTTP and WebSocket at the
 * same path; this plugin supplies the forwarding itself.
 */
import fp from 'fastify-plugin'
import { Agent, Pool } from 'undici'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { IncomingMessage } from 'node:http'
import { forwardHeaders, type TargetParts } from '../src/edge/forward-headers.js'
import { forwardContext } from './edge.js'
import { endWithStatus, SpanKind, type GatewayTracing, type Span } from '../src/tracing/tracer.js'
import { declaresBody } from '../src/http/headers.js'
import { forwardRequest } from '../src/proxy/http-forward.js'
import { codes, errorBody } from '../src/errors.js'

/** Where to send one HTTP request. */
export interface HttpTarget {
  /** Target origin, e.g. http://127.0.0.1:9001 */
  origin: string
  /** Path (and no query: the client's query is forwarded as is). */
  path: string
  /** Query string (without "?") to send instead of the client's; undefined: the client's as is. */
  query?: string
  headers?: Record<string, string>
  /** Client headers not to forward (e.g. forwarded-claim header names). */
  strip?: readonly string[]
  /**
   * Largest request body in bytes (a route's `maxBodySize`); null or undefined: unlimited. A larger
   * declared Content-Length gets 413 before the upstream is contacted; a chunked body is counted
   * as it streams, and past the limit the upstream request is aborted and the client gets 413
   * (or, when the upstream's answer had already started, its connection is closed).
   */
  maxBodySize?: number | null
  /**
   * Told of a failure to reach the upstream (`connect`: nothing was sent, safe to retry). Return
   * true when it took over the reply (a retry on another target); else the client gets 502/504.
   */
  onUpstreamError?: (kind: 'timeout' | 'refused', connect: boolean) => boolean
  /** Called once when the client's response has closed (answered, failed or abandoned). */
  onClose?: () => void
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Forwards the request upstream and streams the answer back (502/504 JSON on failure). */
    proxyHttp (request: FastifyRequest, reply: FastifyReply, target: HttpTarget): FastifyReply
  }
}

/** Failures to connect at all: the request never reached the upstream. */
const CONNECT_CODES = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN'])
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT'])

export default fp(async function httpProxyPlugin (fastify) {
  const cfg = fastify.gatewayConfig
  const caByOrigin = new Map<string, string>()
  for (const pool of fastify.upstreamPools.values()) {
    if (pool.config.ca === undefined) continue
    for (const t of pool.config.targets) caByOrigin.set(new URL(t).origin, pool.config.ca)
  }
  /** The CA of a target that came at run time (a DNS address, the admin API): its pool's. */
  const caOfLiveTarget = (origin: string): string | undefined => {
    for (const pool of fastify.upstreamPools.values()) {
      if (pool.config.ca !== undefined && pool.state().some((t) => t.url === origin || t.url.startsWith(origin + '/'))) return pool.config.ca
    }
    return undefined
  }
  const agent = new Agent({
    keepAliveTimeout: 30_000,
    connect: { timeout: cfg.websocket.connectTimeout },
    factory: (origin, opts) => {
      const ca = caByOrigin.get(String(origin)) ?? caOfLiveTarget(String(origin))
      return new Pool(origin, ca === undefined ? opts : { ...opts, connect: { timeout: cfg.websocket.connectTimeout, ca } })
    }
  })
  fastify.addHook('onClose', async () => { await agent.close() })

  const timeout = cfg.server.proxyTimeout
  const tracing = fastify.tracing
  const state = fastify.gatewayState
  const targets = fastify.targetCache

  /**
   * Answers a request that could not be proxied with the gateway's JSON error. `close`: the
   * connection ends after it (the rest of a refused body is not read and passed over).
   */
  const answerError = (reply: FastifyReply, err: Error & { statusCode?: number }, close = false): void => {
    const res = reply.raw
    if (res.headersSent || res.destroyed) return
    const body = JSON.stringify(errorBody(err))
    res.writeHead(err.statusCode ?? 502, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      ...(close || state.draining ? { connection: 'close' } : {})
    })
    res.end(body)
  }

  fastify.decorate('proxyHttp', function proxyHttp (request: FastifyRequest, reply: FastifyReply, target: HttpTarget) {
    // The answer is written straight to the response as the upstream sends it. Fastify's
    // onResponse hooks (metrics, the access-log line) still run when it finishes.
    if (!reply.sent) reply.hijack()
    const headers = forwardHeaders(request.headers, forwardContext(request, target.headers, target.strip), skipForHttp)
    headers.host = targets.parts(target.origin).host
    const q = request.url.indexOf('?')
    const query = target.query !== undefined ? target.query : q === -1 ? '' : request.url.slice(q + 1)
    const method = request.method
    const declared = request.headers['content-length']
    const hasBody = method !== 'GET' && method !== 'HEAD' && declaresBody(request.headers)
    const limit = target.maxBodySize ?? null
    if (limit !== null && hasBody && declared !== undefined && Number(declared) > limit) {
      request.log.info({ upstream: target.origin, limit, declared }, 'request body too large')
      if (target.onClose !== undefined) reply.raw.once('close', target.onClose)
      answerError(reply, new codes.GW_ERR_BODY_TOO_LARGE(limit), true)
      return reply
    }
    const body = hasBody ? (request.body as IncomingMessage | undefined) ?? request.raw : null
    // Tracing on: a client span for this upstream call, and its traceparent sent upstream.
    const span = tracing === null || request.traceSpan === null ? null : clientSpan(tracing, request.traceSpan, method, targets.parts(target.origin), headers, reply)
    forwardRequest(agent, reply.raw, {
      origin: target.origin,
      path: query === '' ? target.path : `${target.path}?${query}`,
      method,
      headers,
      body,
      // Node's parser never hands on more than Content-Length bytes of the raw request, so only
      // a chunked body (or one a preParsing hook replaced) needs counting.
      maxBodySize: limit !== null && body !== null && (declared === undefined || body !== request.raw) ? limit : null,
      acceptTrailers: acceptsTrailers(request.headers.te),
      timeout,
      onClose: target.onClose,
      extraHeaders: () => state.draining ? { ...reply.getHeaders(), connection: 'close' } : reply.getHeaders(),
      onFailure: (e) => {
        const err = e as Error & { code?: string, cause?: { code?: string } }
        if (err.code === 'GW_ERR_BODY_TOO_LARGE') {
          request.log.info({ upstream: target.origin, limit }, 'request body too large')
          answerError(reply, err, true)
          return
        }
        const code = err.cause?.code ?? err.code ?? ''
        const timedOut = TIMEOUT_CODES.has(code)
        if (span?.isRecording() === true) { span.setAttribute('error.type', code || 'error'); endWithStatus(span, timedOut ? 504 : 502, false) }
        request.log.warn({ upstream: target.origin, code, err: err.message }, 'upstream request failed')
        fastify.metrics.upstreamError(target.origin, timedOut ? 'timeout' : 'refused')
        if (target.onUpstreamError?.(timedOut ? 'timeout' : 'refused', CONNECT_CODES.has(code)) === true) return
        answerError(reply, timedOut ? new codes.GW_ERR_UPSTREAM_TIMEOUT() : new codes.GW_ERR_UPSTREAM_UNAVAILABLE())
      }
    })
    return reply
  })
}, { name: 'tollgate-http-proxy', fastify: '5.x', dependencies: ['tollgate-config', 'tollgate-metrics', 'tollgate-upstreams', 'tollgate-drain', 'tollgate-tracing'] })

/** The upstream call's span: its context goes upstream in `headers`; it ends when the answer does. */
function clientSpan (tracing: GatewayTracing, parent: Span, method: string, upstream: TargetParts, headers: Record<string, string | string[]>, reply: FastifyReply): Span {
  const span = tracing.start(method, SpanKind.CLIENT, parent, { 'http.request.method': method, 'server.address': upstream.hostname, 'server.port': upstream.port })
  tracing.inject(span, headers)
  reply.raw.once('close', () => { if (span.isRecording()) endWithStatus(span, reply.raw.statusCode, false) })
  return span
}

/** Whether a request's TE header lists `trailers` (`TE: trailers, deflate;q=0.5`). */
function acceptsTrailers (te: string | string[] | undefined): boolean {
  if (te === undefined) return false
  for (const part of (Array.isArray(te) ? te.join(',') : te).split(',')) {
    const semi = part.indexOf(';')
    if ((semi === -1 ? part : part.slice(0, semi)).trim().toLowerCase() === 'trailers') return true
  }
  return false
}

/** Client headers not copied upstream: Host is the upstream's; undici does not send Expect. */
function skipForHttp (name: string): boolean {
  return name === 'host' || name === 'expect'
}
