/** Small readings of request headers shared by auth, the admin API and the proxy. */
import type { IncomingHttpHeaders } from 'node:http'

/** The token of `Authorization: Bearer <token>` (scheme case-insensitive), or null. */
export function bearerToken (authorization: string | undefined): string | null {
  if (authorization === undefined) return null
  return /^Bearer\s+(\S+)\s*$/i.exec(authorization)?.[1] ?? null
}

/** Whether a request declares a body: chunked, or a Content-Length other than 0. */
export function declaresBody (headers: IncomingHttpHeaders): boolean {
  const len = headers['content-length']
  return headers['transfer-encoding'] !== undefined || (len !== undefined && len !== '0')
}
