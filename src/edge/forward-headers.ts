/**
 * The request headers sent upstream, for HTTP and WebSocket alike: the client's headers minus
 * hop-by-hop ones, plus X-Forwarded-*, X-Real-IP, X-Request-Id and the route's own headers.
 */
import type { IncomingHttpHeaders } from 'node:http'
import proxyAddr from '@fastify/proxy-addr'

/** RFC 9110 7.6.1 hop-by-hop headers, plus the ones proxies conventionally drop. */
export const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection',
  'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings'
])

/**
 * Forwarding headers a client could use to tell the upstream a story of its own (scheme, port,
 * prefix, its IP as CDNs pass it, or a URL that some frameworks route by: X-Original-URL). Kept
 * only from a trusted proxy; the X-Forwarded-For/-Proto/-Host and X-Real-IP the gateway writes
 * itself.
 */
export const PROXY_ONLY = new Set([
  'forwarded', 'x-forwarded-port', 'x-forwarded-prefix', 'x-forwarded-server', 'x-forwarded-ssl',
  'x-forwarded-scheme', 'x-original-url', 'x-rewrite-url', 'x-forwarded', 'forwarded-for',
  'x-client-ip', 'x-cluster-client-ip', 'true-client-ip', 'cf-connecting-ip', 'fastly-client-ip'
])

/** What the gateway accepts of a client's headers, decided once per app from the configuration. */
export interface HeaderPolicy {
  /** Keep header names with `_` (default: dropped, as nginx's underscores_in_headers off). */
  underscores: boolean
  /** Whether the TCP peer is a trusted proxy (server.trustProxy), whose PROXY_ONLY headers are kept. */
  trusted: (address: string) => boolean
  /** No proxy at all is trusted (`trustProxy: false`, or a hop count): the client's IP is the TCP peer's address. */
  peerIsClient: boolean
}

/** No underscores, no proxy trusted: what applies when no policy is given. */
export const STRICT_POLICY: HeaderPolicy = { underscores: false, trusted: () => false, peerIsClient: true }

/** The policy for `server.underscoresInHeaders` and `server.trustProxy` (Fastify's meaning of it). */
export function headerPolicy (server: { underscoresInHeaders: boolean, trustProxy: boolean | number | string | string[] }): HeaderPolicy {
  const tp = server.trustProxy
  let trusted: (address: string) => boolean
  // A hop count cannot vouch for the peer itself: as Fastify does, it trusts no peer.
  if (tp === true) trusted = () => true
  else if (tp === false || typeof tp === 'number') trusted = () => false
  else {
    const fn = proxyAddr.compile(typeof tp === 'string' ? tp.split(',').map((x) => x.trim()) : tp)
    trusted = (address) => address !== '' && fn(address, 0)
  }
  // As `trusted`: a hop count trusts no peer, so Fastify's request.ip is the peer's address too.
  return { underscores: server.underscoresInHeaders, trusted, peerIsClient: tp === false || typeof tp === 'number' }
}

export interface ForwardContext {
  /** Address of the TCP peer (the client, or the proxy in front of us). */
  remoteAddress: string
  /** The client's IP as trustProxy resolves it. */
  clientIp: string
  /** "http" or "https" as trustProxy resolves it. */
  proto: string
  /** The Host the client asked for, as trustProxy resolves it. */
  host: string
  requestId: string
  /** Route headers and forwarded claims; set last, so they win. */
  extra?: Record<string, string>
  /** Header names removed before `extra` is applied (forwardClaims targets: no spoofing). */
  strip?: readonly string[]
  /** Underscores and trusted proxies; default STRICT_POLICY. */
  policy?: HeaderPolicy
  /** The client's HTTP version (`1.1`), for Via. */
  httpVersion?: string
}

/** The usual one-token Connection values, each read once (a handshake's, a keep-alive answer's). */
const COMMON_TOKENS = new Map<string, readonly string[]>(
  ['upgrade', 'Upgrade', 'keep-alive', 'Keep-Alive', 'close', 'Close'].map((v) => [v, Object.freeze([v.toLowerCase()])])
)
const NONE: readonly string[] = Object.freeze([])

/** Names listed in the Connection header are hop-by-hop too (RFC 9110 7.6.1); lower-case. */
export function connectionTokens (value: string | string[] | undefined): readonly string[] {
  if (value === undefined) return NONE
  if (typeof value === 'string') {
    const common = COMMON_TOKENS.get(value)
    if (common !== undefined) return common
  }
  const s = Array.isArray(value) ? value.join(',') : value
  return s.split(',').map((t) => t.trim().toLowerCase()).filter((t) => t !== '')
}

/**
 * Builds the headers for the upstream request.
 * @param skip lower-case names not to copy from the client (e.g. host, sec-websocket-*)
 */
export function forwardHeaders (headers: IncomingHttpHeaders, ctx: ForwardContext, skip?: (name: string) => boolean): Record<string, string | string[]> {
  const listed = connectionTokens(headers.connection)
  const policy = ctx.policy ?? STRICT_POLICY
  const trusted = policy.trusted(ctx.remoteAddress)
  const out: Record<string, string | string[]> = {}
  for (const name in headers) {
    const value = headers[name]
    if (value === undefined || HOP_BY_HOP.has(name) || (skip !== undefined && skip(name))) continue
    if (listed.length > 0 && listed.includes(name)) continue
    // x_user_id reaches a CGI/WSGI/Rack upstream as HTTP_X_USER_ID, the same as x-user-id.
    if (name.includes('_') && (!policy.underscores || stripped(name, ctx.strip))) continue
    if (!trusted && PROXY_ONLY.has(name)) continue
    out[name] = value
  }
  if (ctx.strip !== undefined) for (const name of ctx.strip) delete out[name]
  const prior = headers['x-forwarded-for']
  const priorList = Array.isArray(prior) ? prior.join(', ') : prior
  out['x-forwarded-for'] = priorList !== undefined && priorList !== '' ? `${priorList}, ${ctx.remoteAddress}` : ctx.remoteAddress
  out['x-forwarded-proto'] = ctx.proto
  // An HTTP/1.0 request may have no Host: then there is no host to tell (and none of the client's).
  if (ctx.host !== '') out['x-forwarded-host'] = ctx.host
  else delete out['x-forwarded-host']
  out['x-real-ip'] = ctx.clientIp
  out['x-request-id'] = ctx.requestId
  // RFC 9110 7.6.3: each proxy appends itself to Via.
  const via = `${ctx.httpVersion ?? '1.1'} tollgate`
  const priorVia = headers.via
  out.via = priorVia === undefined || priorVia === '' ? via : `${Array.isArray(priorVia) ? priorVia.join(', ') : priorVia}, ${via}`
  if (ctx.extra !== undefined) Object.assign(out, ctx.extra)
  return out
}

/** Whether `name` (with `_`) is a variant of a stripped name (`x_user_id` of `x-user-id`). */
function stripped (name: string, strip: readonly string[] | undefined): boolean {
  if (strip === undefined || strip.length === 0) return false
  const dashed = name.replace(/_/g, '-')
  return strip.includes(dashed)
}

/**
 * The path sent upstream: the part after `prefix` appended to `rewritePrefix`, under the
 * target's own base path. `/chat/x` with prefix `/chat` and rewritePrefix `/` gives `/x`.
 * `pathname` must be normalised (a route's `request.url` is).
 */
export function upstreamPath (pathname: string, prefix: string, rewritePrefix: string, targetBasePath = ''): string {
  return joinUpstreamPath(prefix === '/' ? pathname : pathname.slice(prefix.length), rewritePrefix, targetBasePath)
}

/** `rest` (what follows the route prefix, '' or starting with `/`) under rewritePrefix and the target's base path. */
export function joinUpstreamPath (rest: string, rewritePrefix: string, targetBasePath = ''): string {
  const head = rewritePrefix === '/' ? '' : rewritePrefix
  let p = head + rest
  if (p === '') p = '/'
  else if (p[0] !== '/') p = '/' + p
  return targetBasePath === '' ? p : targetBasePath + (p === '/' && rest === '' ? '' : p)
}

export interface TargetParts {
  origin: string
  /** The Host header for it: no default port. */
  host: string
  pathname: string
  /** https: or wss:. */
  secure: boolean
  /** What to connect to: the host name, an IPv6 address without its brackets. */
  hostname: string
  /** The port, the scheme's default when none is given. */
  port: number
  /**
   * The TLS server name when it is not `hostname`: an address found by DNS (upstreams.*.resolve)
   * is connected to by address, its certificate checked for the name.
   */
  servername?: string
}
/**
 * The parts of a target URL.
 * @throws when it is not a URL
 */
export function parseTarget (target: string): TargetParts {
  const url = new URL(target)
  const secure = url.protocol === 'https:' || url.protocol === 'wss:'
  return {
    origin: url.origin,
    host: url.host,
    pathname: url.pathname,
    secure,
    hostname: url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname,
    port: url.port === '' ? (secure ? 443 : 80) : Number(url.port)
  }
}

/**
 * Target URLs parsed once, for HTTP requests and WebSocket handshakes alike: one cache per app
 * (plugins/upstreams.ts), so it goes with the app. Targets come from the configuration (or a
 * plugin's few), so it stays small; it stops growing at 10,000 entries all the same.
 */
export class TargetCache {
  private readonly parsed = new Map<string, TargetParts>()

  /** @throws when `target` is not a URL */
  parts (target: string): TargetParts {
    let parts = this.parsed.get(target)
    if (parts === undefined) {
      parts = parseTarget(target)
      if (this.parsed.size < 10_000) this.parsed.set(target, parts)
    }
    return parts
  }

  /**
   * `target` is an address that `name` (a URL with the host name) resolved to: it is connected
   * to by address, while its Host header and TLS server name are the name's, as nginx sends its
   * upstream's name. Set for the target URL and its origin (both are looked up). Two names that
   * resolve to one address and port share the entry: the last one set wins.
   */
  alias (target: string, name: string): void {
    const n = parseTarget(name)
    for (const key of new Set([target, parseTarget(target).origin])) {
      this.parsed.set(key, { ...parseTarget(key), host: n.host, servername: n.hostname })
    }
  }

  /** Forgets `target` (and its origin): a DNS address that is no longer a target. */
  forget (target: string): void {
    this.parsed.delete(target)
    this.parsed.delete(parseTarget(target).origin)
  }
}
