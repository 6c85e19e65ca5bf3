/**
 * The request headers sent upstream, for HTTP and WebSocket alike: the client's headers minus
 * hop-by-hop ones, plus X-Forwarded-*, X-Real-IP, X-Request-Id and the route's own headers.
 */
import type { IncomingHttpHeaders } from 'node:http'

/** RFC 9110 7.6.1 hop-by-hop headers, plus the ones proxies conventionally drop. */
export const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection',
  'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings'
])

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
}

/** Names listed in the Connection header are hop-by-hop too (RFC 9110 7.6.1). */
export function connectionTokens (value: string | string[] | undefined): string[] {
  if (value === undefined) return []
  const s = Array.isArray(value) ? value.join(',') : value
  return s.split(',').map((t) => t.trim().toLowerCase()).filter((t) => t !== '')
}

/**
 * Builds the headers for the upstream request.
 * @param skip lower-case names not to copy from the client (e.g. host, sec-websocket-*)
 */
export function forwardHeaders (headers: IncomingHttpHeaders, ctx: ForwardContext, skip?: (name: string) => boolean): Record<string, string | string[]> {
  const listed = connectionTokens(headers.connection)
  const out: Record<string, string | string[]> = {}
  for (const name in headers) {
    const value = headers[name]
    if (value === undefined || HOP_BY_HOP.has(name) || (skip !== undefined && skip(name))) continue
    if (listed.length > 0 && listed.includes(name)) continue
    out[name] = value
  }
  if (ctx.strip !== undefined) for (const name of ctx.strip) delete out[name]
  const prior = headers['x-forwarded-for']
  const priorList = Array.isArray(prior) ? prior.join(', ') : prior
  out['x-forwarded-for'] = priorList !== undefined && priorList !== '' ? `${priorList}, ${ctx.remoteAddress}` : ctx.remoteAddress
  out['x-forwarded-proto'] = ctx.proto
  out['x-forwarded-host'] = ctx.host
  out['x-real-ip'] = ctx.clientIp
  out['x-request-id'] = ctx.requestId
  if (ctx.extra !== undefined) Object.assign(out, ctx.extra)
  return out
}

/**
 * The path sent upstream: the part after `prefix` appended to `rewritePrefix`, under the
 * target's own base path. `/chat/x` with prefix `/chat` and rewritePrefix `/` gives `/x`.
 */
export function upstreamPath (pathname: string, prefix: string, rewritePrefix: string, targetBasePath = ''): string {
  const rest = prefix === '/' ? pathname : pathname.slice(prefix.length)
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
}
const parsedTargets = new Map<string, TargetParts>()

/**
 * The parts of a target URL, parsed once, for HTTP requests and WebSocket handshakes alike:
 * targets come from the configuration (or a plugin's few), so the cache stays small; it stops
 * growing at 10,000 entries all the same.
 * @throws when it is not a URL
 */
export function targetParts (target: string): TargetParts {
  let parts = parsedTargets.get(target)
  if (parts === undefined) {
    const url = new URL(target)
    const secure = url.protocol === 'https:' || url.protocol === 'wss:'
    parts = {
      origin: url.origin,
      host: url.host,
      pathname: url.pathname,
      secure,
      hostname: url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname,
      port: url.port === '' ? (secure ? 443 : 80) : Number(url.port)
    }
    if (parsedTargets.size < 10_000) parsedTargets.set(target, parts)
  }
  return parts
}
