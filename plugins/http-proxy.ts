/**
 * HTTP reverse proxying with @fastify/reply-from (the undici-based engine under
 * @fastify/http-proxy). Routes are registered by proxy-routes.ts so that one route serves
 * HTTP and WebSocket at the same path; this plugin supplies the forwarding itself.
 */
import fp from 'fastify-plugin'
import replyFrom from '@fastify/reply-from'
import { Agent, Pool } from 'undici'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { connectionTokens, forwardHeaders, HOP_BY_HOP } from '../src/bridge/forward-headers.js'
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
   * Told of a failure to reach the upstream (`connect`: nothing was sent, safe to retry). Return
   * true when it took over the reply (a retry on another target); else the client gets 502/504.
   */
  onUpstreamError?: (kind: 'timeout' | 'refused', connect: boolean) => boolean
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Forwards the request upstream and streams the answer back (502/504 JSON on failure). */
    proxyHttp (request: FastifyRequest, reply: FastifyReply, target: HttpTarget): FastifyReply
  }
}

/** Failures to connect at all: the request never reached the upstream. */
const CONNECT_CODES = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN'])
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'FST_REPLY_FROM_GATEWAY_TIMEOUT', 'ETIMEDOUT'])

export default fp(async function httpProxyPlugin (fastify) {
  const cfg = fastify.gatewayConfig
  const caByOrigin = new Map<string, string>()
  for (const pool of fastify.upstreamPools.values()) {
    if (pool.config.ca === undefined) continue
    for (const t of pool.config.targets) caByOrigin.set(new URL(t).origin, pool.config.ca)
  }
  const agent = new Agent({
    keepAliveTimeout: 30_000,
    connect: { timeout: cfg.websocket.connectTimeout },
    factory: (origin, opts) => {
      const ca = caByOrigin.get(String(origin))
      return new Pool(origin, ca === undefined ? opts : { ...opts, connect: { timeout: cfg.websocket.connectTimeout, ca } })
    }
  })
  await fastify.register(replyFrom, { undici: agent as never, disableRequestLogging: true })
  fastify.addHook('onClose', async () => { await agent.close() })

  const timeout = cfg.server.proxyTimeout

  fastify.decorate('proxyHttp', function proxyHttp (request: FastifyRequest, reply: FastifyReply, target: HttpTarget) {
    return reply.from(target.path, {
      getUpstream: () => target.origin,
      timeout,
      ...(target.query !== undefined ? { queryString: () => target.query! } : {}),
      rewriteRequestHeaders: (req, headers) => forwardHeaders(headers, {
        remoteAddress: req.raw.socket.remoteAddress ?? '',
        clientIp: req.ip,
        proto: req.protocol,
        host: req.host,
        requestId: req.id,
        extra: target.headers,
        strip: target.strip
      }) as Record<string, string>,
      rewriteHeaders: (headers) => {
        // Names the upstream lists in its Connection header are hop-by-hop too (RFC 9110 7.6.1).
        const listed = connectionTokens(headers.connection)
        const out: Record<string, string | string[] | undefined> = {}
        for (const k in headers) if (!HOP_BY_HOP.has(k) && !listed.includes(k)) out[k] = headers[k]
        return out
      },
      onError: (r, { error }) => {
        const e = error as Error & { code?: string, statusCode?: number, cause?: { code?: string } }
        const code = e.cause?.code ?? e.code ?? ''
        const timedOut = TIMEOUT_CODES.has(code) || e.statusCode === 504
        r.request.log.warn({ upstream: target.origin, code, err: e.message }, 'upstream request failed')
        fastify.metrics.upstreamError(target.origin, timedOut ? 'timeout' : 'refused')
        if (target.onUpstreamError?.(timedOut ? 'timeout' : 'refused', CONNECT_CODES.has(code)) === true) return
        const out = timedOut ? new codes.GW_ERR_UPSTREAM_TIMEOUT() : new codes.GW_ERR_UPSTREAM_UNAVAILABLE()
        void r.code(out.statusCode ?? 502).send(errorBody(out))
      }
    })
  })
}, { name: 'tollgate-http-proxy', fastify: '5.x', dependencies: ['tollgate-config', 'tollgate-metrics'] })
