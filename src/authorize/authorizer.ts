/**
 * External authorization (forward auth, as nginx `auth_request`, Traefik ForwardAuth and Envoy
 * `ext_authz` in HTTP mode): before a request is proxied or a WebSocket's upstream handshake
 * starts, the gateway asks an auth service with a `GET` that describes the request, and the
 * service's status decides. This file is the question and the answer, without Fastify: what is
 * sent (`authorizeHeaders`), how the answer is read (`Authorizer.decide`), and the short decision
 * cache.
 */
import { createHash } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import { Agent, request, type Dispatcher } from 'undici'
import { readAtMost } from '../http/body.js'
import type { AuthorizeConfig } from '../config/types.js'
import { AUTHORIZE_CACHE_MAX, AUTHORIZE_CACHED_BODY, AUTHORIZE_CLAIMS_HEADER, AUTHORIZE_MAX_BODY } from '../config/defaults.js'

/** What the gateway knows of a request when it asks. */
export interface AuthorizeQuestion {
  method: string
  /** The normalised path and the query as sent upstream (the gateway's token parameter removed). */
  uri: string
  /** The client's address as the edge decided it (trustProxy applied): one address, never a chain. */
  clientIp: string
  /** The Host the client asked for ('' when none). */
  host: string
  proto: string
  requestId: string
  headers: IncomingHttpHeaders
  /** The verified JWT claims when the route also has `auth`, else null. */
  claims: Record<string, unknown> | null
}

export type Decision =
  /** 2xx: `headers` are the answer's `upstreamHeaders`; `userId` the `userHeader`'s value. */
  | { kind: 'allow', headers: Record<string, string>, userId: string | null }
  /** Any other status: passed to the client with its body and a few of its headers. */
  | { kind: 'deny', status: number, headers: Record<string, string | string[]>, body: Buffer }
  /**
   * No answer: timeout, connection error, a status outside 200-599. `local`: the question could
   * not be sent because of what the client sent (then never allowed by failOpen).
   */
  | { kind: 'unavailable', error: string, local?: boolean }

export interface DecisionResult {
  decision: Decision
  /** Taken from the cache: the service was not asked. */
  cached: boolean
  /** Time the service took (0 when cached). */
  seconds: number
}

/** Headers of a refusal that go to the client with it (what a login flow or a client needs). */
const DENY_HEADERS = ['content-type', 'www-authenticate', 'location', 'set-cookie', 'retry-after', 'cache-control']

/** A user id longer than this, or with control characters, is ignored (it goes into logs and Redis). */
const USER_ID = /^[\x20-\x7e\u00a0-\uffff]{1,256}$/

/**
 * The headers of the `GET` sent to the auth service: the listed client headers, then the
 * gateway's own (which win over a client's of the same name).
 */
export function authorizeHeaders (q: AuthorizeQuestion, forward: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {}
  for (const name of forward) {
    const v = q.headers[name]
    if (v === undefined) continue
    out[name] = Array.isArray(v) ? v.join(name === 'cookie' ? '; ' : ', ') : v
  }
  out['x-forwarded-method'] = q.method
  out['x-forwarded-uri'] = q.uri
  out['x-forwarded-for'] = q.clientIp
  out['x-forwarded-proto'] = q.proto
  if (q.host !== '') out['x-forwarded-host'] = q.host
  out['x-request-id'] = q.requestId
  if (q.claims !== null) out[AUTHORIZE_CLAIMS_HEADER] = Buffer.from(JSON.stringify(q.claims)).toString('base64url')
  return out
}

interface CacheEntry { expires: number, decision: Decision }

/**
 * One auth service configuration (a route's, or the top level's shared by the routes that
 * inherit it): asks the service and keeps decisions for `cacheTtl` when that is set.
 */
export class Authorizer {
  readonly config: AuthorizeConfig
  private readonly dispatcher: Dispatcher
  private readonly cache = new Map<string, CacheEntry>()
  /** The request id is different for every request: it is sent, not part of the cache key. */
  private readonly keyed: (headers: Record<string, string>) => string

  constructor (config: AuthorizeConfig, dispatcher: Dispatcher) {
    this.config = config
    this.dispatcher = dispatcher
    this.keyed = (headers) => {
      const h = createHash('sha256')
      for (const name in headers) if (name !== 'x-request-id') h.update(name).update('\0').update(headers[name]).update('\0')
      return h.digest('base64')
    }
  }

  /** Asks the service (or the cache) about one request. Never throws. */
  async decide (q: AuthorizeQuestion): Promise<DecisionResult> {
    const headers = authorizeHeaders(q, this.config.forwardHeaders)
    const ttl = this.config.cacheTtl
    let key: string | null = null
    if (ttl > 0) {
      // Keyed by everything the service is told (method, uri, client address, listed headers,
      // claims), so a decision is reused only for a question the service would see as the same.
      key = this.keyed(headers)
      const hit = this.cache.get(key)
      if (hit !== undefined) {
        if (hit.expires > Date.now()) return { decision: hit.decision, cached: true, seconds: 0 }
        this.cache.delete(key)
      }
    }
    const started = process.hrtime.bigint()
    const { decision, cacheable } = await this.ask(headers)
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    if (key !== null && cacheable && decision.kind !== 'unavailable') this.remember(key, decision, ttl)
    return { decision, cached: false, seconds }
  }

  private async ask (headers: Record<string, string>): Promise<{ decision: Decision, cacheable: boolean }> {
    const cfg = this.config
    let res: Dispatcher.ResponseData
    try {
      res = await request(cfg.url, { method: 'GET', headers, dispatcher: this.dispatcher, signal: AbortSignal.timeout(cfg.timeout) })
    } catch (err) {
      // A question undici refuses to send (a client header value it will not write) is the
      // client's fault, not the service's: never a reason to fail open.
      const local = (err as { code?: string }).code === 'UND_ERR_INVALID_ARG'
      return { decision: { kind: 'unavailable', error: errorName(err), local }, cacheable: false }
    }
    const status = res.statusCode
    if (status < 200 || status > 599) {
      discard(res.body)
      return { decision: { kind: 'unavailable', error: `status ${status}` }, cacheable: false }
    }
    // Reused only when the service allows it and only for its own decisions: a 5xx is not one.
    const cacheable = status < 500 && !/no-store|no-cache|private|max-age=0\b/i.test(String(res.headers['cache-control'] ?? ''))
    if (status < 300) {
      // Only the headers matter; the body is read away so the connection is reused (a body
      // that fails to arrive changes nothing: the decision is made).
      await res.body.dump({ limit: AUTHORIZE_MAX_BODY }).catch(() => {})
      const added: Record<string, string> = {}
      for (const name of cfg.upstreamHeaders) {
        const v = res.headers[name]
        if (v !== undefined) added[name] = Array.isArray(v) ? v.join(', ') : v
      }
      let userId: string | null = null
      if (cfg.userHeader !== null) {
        const v = res.headers[cfg.userHeader]
        const s = Array.isArray(v) ? v[0] : v
        if (s !== undefined && USER_ID.test(s)) userId = s
      }
      return { decision: { kind: 'allow', headers: added, userId }, cacheable }
    }
    // A refusal is a refusal once its status has come, whatever becomes of its body: a body
    // that is too long, too slow or cut keeps the status and goes without its body.
    const body = await readAtMost(res.body, AUTHORIZE_MAX_BODY).catch(() => null)
    if (body === null) discard(res.body)
    const passed: Record<string, string | string[]> = {}
    for (const name of DENY_HEADERS) {
      const v = res.headers[name]
      if (v !== undefined && !(name === 'content-type' && body === null)) passed[name] = v
    }
    return { decision: { kind: 'deny', status, headers: passed, body: body ?? Buffer.alloc(0) }, cacheable: cacheable && (body === null || body.length <= AUTHORIZE_CACHED_BODY) }
  }

  private remember (key: string, decision: Decision, ttl: number): void {
    // Oldest first out: a Map iterates in insertion order.
    if (this.cache.size >= AUTHORIZE_CACHE_MAX) this.cache.delete(this.cache.keys().next().value!)
    this.cache.set(key, { expires: Date.now() + ttl, decision })
  }
}

/** The dispatcher auth requests go through: keep-alive connections to the auth services. */
export function authorizeAgent (): Agent {
  return new Agent({ keepAliveTimeout: 10_000, connections: 256 })
}

/** Drops a body unread. Destroying it emits 'error', which must not go unheard (it would crash the process). */
function discard (body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => {})
  body.destroy()
}

function errorName (err: unknown): string {
  const e = err as { name?: string, code?: string, message?: string }
  if (e.name === 'TimeoutError' || e.name === 'AbortError') return 'timeout'
  return e.code ?? e.message ?? 'error'
}
