/** Bearer token check for the admin API and protected metrics, in constant time. */
import { createHash, timingSafeEqual } from 'node:crypto'

/** Compares digests, so neither the token's content nor its length leaks through timing. */
export function bearerMatches (authorization: string | undefined, token: string): boolean {
  if (authorization === undefined) return false
  const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization)
  if (m === null) return false
  const a = createHash('sha256').update(m[1]).digest()
  const b = createHash('sha256').update(token).digest()
  return timingSafeEqual(a, b)
}
