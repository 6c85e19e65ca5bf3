/**
 * The edge: each request target is normalised once, before routing (Fastify's `rewriteUrl`,
 * which also runs for WebSocket upgrades routed by @fastify/websocket), and the result is what
 * every later step reads: `request.url` becomes the normalised path plus the query as sent, and
 * `requestTarget(request)` gives the decided target (src/edge/request-target.ts). A target that
 * is refused is answered 400 by the first onRequest hook, before any route's own hooks.
 *
 * Inside another Fastify app (gatewayPlugin without buildGateway), routing has already happened
 * on the raw target: the gateway's routes then refuse a target that normalisation would change,
 * unless that app was built with `rewriteUrl: tollgateRewriteUrl()`.
 */
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { IncomingMessage } from 'node:http'
import { normaliseTarget, type EncodedSlashes, type RequestTarget, type TargetProblem } from '../src/edge/request-target.js'
import { codes } from '../src/errors.js'
import { headerPolicy, type ForwardContext, type HeaderPolicy } from '../src/edge/forward-headers.js'
import type { GatewayConfig } from '../src/config/types.js'

const kTarget = Symbol.for('tollgate.requestTarget')
type Marked = IncomingMessage & { [kTarget]?: RequestTarget | TargetProblem }

/**
 * A Fastify `rewriteUrl` that normalises the request target before routing (what buildGateway
 * uses). Pass it to your own `Fastify({ rewriteUrl })` when you register the gateway as a plugin.
 */
export function tollgateRewriteUrl (encodedSlashes: EncodedSlashes = 'refuse'): (req: IncomingMessage) => string {
  return function rewriteUrl (req: IncomingMessage): string {
    const url = req.url ?? '/'
    const t = normaliseTarget(url, encodedSlashes)
    ;(req as Marked)[kTarget] = t
    // A refused target is routed as `/` (the router must not parse it); the edge hook answers
    // 400 before any route's own hooks or handler.
    if (typeof t === 'string') return '/'
    // RFC 9112 3.2.2: with an absolute-form target, its authority is the Host.
    if (t.authority !== null) req.headers.host = t.authority
    return t.path + t.search
  }
}

/**
 * The 404 for a target no route serves. Fastify's default echoes the full URL, query included,
 * and a query can carry a token: this one names the method and path only.
 */
export function notFoundHandler (request: FastifyRequest, reply: FastifyReply): void {
  const path = request.url.split('?', 1)[0]
  void reply.send(new codes.GW_ERR_NOT_FOUND(`${request.method}:${path}`))
}

/**
 * Who the client is, as the edge decided (trustProxy applied), for the headers sent upstream:
 * the same for a proxied request and a WebSocket handshake. `extra` (route headers, claims) is
 * set last; `strip` names are removed first.
 */
export function forwardContext (request: FastifyRequest, extra?: Record<string, string>, strip?: readonly string[]): ForwardContext {
  const policy = request.server.headerPolicy
  // Node asks the socket for its peer on each read (megamorphic lookups on the way): read once
  // when request.ip would read the same.
  const peer = request.raw.socket.remoteAddress
  return {
    remoteAddress: peer ?? '',
    clientIp: policy.peerIsClient ? peer as string : request.ip,
    proto: request.protocol,
    host: request.host,
    requestId: request.id,
    extra,
    strip,
    policy,
    httpVersion: request.raw.httpVersion
  }
}

/** The request's decided target (normalised path, query, upstream form). */
export function requestTarget (request: FastifyRequest): RequestTarget {
  const t = (request.raw as Marked)[kTarget]
  if (t !== undefined && typeof t !== 'string') return t
  // Only reached for a request the edge hook did not see (a plugin's own route outside the
  // gateway's scope): its URL is taken as it is.
  const n = normaliseTarget(request.url)
  if (typeof n === 'string') throw new codes.GW_ERR_BAD_PATH(n)
  return n
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Which client headers go upstream (underscores, trusted proxies): server.underscoresInHeaders, server.trustProxy. */
    headerPolicy: HeaderPolicy
  }
}

export interface EdgeOptions { server: Pick<GatewayConfig['server'], 'encodedSlashes' | 'underscoresInHeaders' | 'trustProxy'> }

export default fp<EdgeOptions>(async function edgePlugin (fastify: FastifyInstance, opts) {
  const encodedSlashes = opts.server.encodedSlashes
  fastify.decorate('headerPolicy', headerPolicy(opts.server))
  // Callback style: it runs on every request, and an async hook costs a promise each time.
  fastify.addHook('onRequest', (request: FastifyRequest, _reply, done) => {
    const raw = request.raw as Marked
    let t = raw[kTarget]
    if (t === undefined) {
      // Routed on the raw target (no tollgate rewriteUrl): only a target already in normal form is safe.
      t = normaliseTarget(request.url, encodedSlashes)
      if (typeof t !== 'string' && t.path + t.search !== request.url) t = 'path not in normal form (build the app with rewriteUrl: tollgateRewriteUrl())' as TargetProblem
      raw[kTarget] = t
    }
    if (typeof t === 'string') {
      request.log.debug({ problem: t }, 'request target refused')
      done(new codes.GW_ERR_BAD_PATH(t))
      return
    }
    done()
  })
}, { name: 'tollgate-edge', fastify: '5.x' })
