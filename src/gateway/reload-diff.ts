/**
 * What a reload changes: the settings it cannot change (kept at their running values and
 * reported), and which sections, routes and upstreams differ. Pure: configurations in, lists out.
 */
import type { GatewayConfig } from '../config/types.js'
import type { GatewayConfigInput } from '../config/schema.js'

/** Settings a reload cannot change; reported, and kept at their running values. */
export function restartOnly (a: GatewayConfig, b: GatewayConfig): string[] {
  const out: string[] = []
  if (a.server.host !== b.server.host) out.push('server.host')
  if (a.server.port !== b.server.port) out.push('server.port')
  if ((a.server.tls === undefined) !== (b.server.tls === undefined)) out.push('server.tls')
  if (a.admin.port !== b.admin.port) out.push('admin.port')
  if (JSON.stringify(a.redis) !== JSON.stringify(b.redis)) out.push('redis')
  if (a.server.trustProxy !== b.server.trustProxy && JSON.stringify(a.server.trustProxy) !== JSON.stringify(b.server.trustProxy)) out.push('server.trustProxy')
  // The process's logger masks this query parameter in every logged URL; it is set at start.
  if (a.auth.queryParam !== b.auth.queryParam) out.push('auth.queryParam')
  return out
}

/** `next` with the restart-only settings of `prev`. */
export function keepRestartOnly (next: GatewayConfig, prev: GatewayConfig): GatewayConfig {
  return {
    ...next,
    server: { ...next.server, host: prev.server.host, port: prev.server.port, trustProxy: prev.server.trustProxy, tls: prev.server.tls === undefined ? undefined : next.server.tls ?? prev.server.tls },
    admin: { ...next.admin, port: prev.admin.port },
    auth: { ...next.auth, queryParam: prev.auth.queryParam },
    redis: prev.redis
  }
}

/** Which top-level sections, routes and upstreams differ. */
export function diff (a: GatewayConfigInput, b: GatewayConfigInput): string[] {
  const out: string[] = []
  const ra = new Map((a.routes ?? []).map((r) => [r.prefix, JSON.stringify(r)]))
  const rb = new Map((b.routes ?? []).map((r) => [r.prefix, JSON.stringify(r)]))
  for (const [p, v] of rb) if (!ra.has(p)) out.push(`routes[${p}] added`); else if (ra.get(p) !== v) out.push(`routes[${p}] changed`)
  for (const p of ra.keys()) if (!rb.has(p)) out.push(`routes[${p}] removed`)
  const ua = a.upstreams ?? {}
  const ub = b.upstreams ?? {}
  for (const n of new Set([...Object.keys(ua), ...Object.keys(ub)])) {
    if (JSON.stringify(ua[n]) !== JSON.stringify(ub[n])) out.push(`upstreams.${n}`)
  }
  for (const k of ['server', 'auth', 'websocket', 'rateLimit', 'admin', 'redis', 'metrics', 'plugins'] as const) {
    if (JSON.stringify(a[k]) !== JSON.stringify(b[k])) out.push(k)
  }
  return out
}
