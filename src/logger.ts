/**
 * Logger options: structured pino logs that never carry a token or secret. Headers that can hold
 * credentials are redacted, and the token query parameter is masked in every logged URL.
 */
import { queryPairs } from './http/query.js'
import type { FastifyRequest, FastifyServerOptions } from 'fastify'

/**
 * Credential headers in any logged `headers` object. Requests and replies are logged through the
 * serializers below, which never include headers (and mask the token in the URL), so `req` and
 * `res` need no redaction pass: that keeps the per-request access-log line cheap.
 */
export const REDACT_PATHS = [
  'headers.authorization',
  'headers.cookie',
  'headers["sec-websocket-protocol"]',
  'headers["proxy-authorization"]',
  'headers["set-cookie"]'
]

/** Masks the value of `param` (and of `token`-like params) in a URL path+query. */
export function redactUrl (url: string, param: string): string {
  const q = url.indexOf('?')
  if (q === -1) return url
  const names = new Set([param.toLowerCase(), 'access_token', 'token', 'id_token', 'jwt'])
  const parts = queryPairs(url).map((p) => names.has(p.name.toLowerCase()) && p.eq !== -1 ? `${p.rawName}=[REDACTED]` : p.raw)
  return `${url.slice(0, q)}?${parts.join('&')}`
}

/** Fastify logger options for the gateway at `level`. */
export function loggerOptions (level: string, tokenParam: string): NonNullable<FastifyServerOptions['logger']> {
  return {
    level,
    redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
    serializers: {
      req (req: FastifyRequest) {
        return {
          method: req.method,
          url: redactUrl(req.url, tokenParam),
          remoteAddress: req.ip,
          remotePort: req.socket?.remotePort
        }
      }
    }
  }
}
