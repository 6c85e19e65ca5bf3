/**
 * Logger options: structured pino logs that never carry a token or secret. Headers that can hold
 * credentials are redacted, and the token query parameter is masked in every logged URL.
 */
import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino'
import { queryPairs } from './http/query.js'
import type { FastifyBaseLogger, FastifyRequest, FastifyServerOptions } from 'fastify'

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

/** What a request's log lines say about it: never its headers, its URL with the token masked. */
export function requestFields (req: FastifyRequest, tokenParam: string): { method: string, url: string, remoteAddress: string, remotePort: number | undefined } {
  return {
    method: req.method,
    url: redactUrl(req.url, tokenParam),
    remoteAddress: req.ip,
    remotePort: req.socket?.remotePort
  }
}

/** Fastify logger options for the gateway at `level`. */
export function loggerOptions (level: string, tokenParam: string): NonNullable<FastifyServerOptions['logger']> {
  return {
    level,
    redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
    serializers: {
      req: (req: FastifyRequest) => requestFields(req, tokenParam)
    }
  }
}

/** What JSON.stringify escapes in a string: `"`, `\\`, control characters and (lone) surrogates. */
// eslint-disable-next-line no-control-regex -- control characters are what it looks for
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/

/**
 * JSON.stringify(s), without its setup cost for the usual string that needs no escape. (A loop
 * over the char codes measured slower than the pattern: about 45 instructions a character on a
 * 36-character id built by concatenation.)
 */
function quote (s: string): string {
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : `"${s}"`
}

/** JSON.stringify(n) for a number. */
function num (n: number): string {
  return Number.isFinite(n) ? `${n}` : 'null'
}

/** Largest count of µs millisText writes from integers (beyond: an ordinary number, also exact). */
const MAX_US = 2 ** 31 - 1

/** `ms` rounded to the microsecond: what the access lines say of a duration. */
export function toMicros (ms: number): number {
  return Math.round(ms * 1000) / 1000
}

/**
 * JSON.stringify(toMicros(ms)), written from integers: a float's shortest decimal form (V8's
 * dtoa) costs more than the rest of an access line's numbers, and it is written on every request.
 */
export function millisText (ms: number): string {
  const us = Math.round(ms * 1000)
  if (!(us >= 0 && us <= MAX_US)) return num(us / 1000)
  const whole = Math.floor(us / 1000)
  const frac = us - whole * 1000
  if (frac === 0) return `${whole}`
  // Trailing zeros left out, as JSON writes 0.5 and 0.05.
  const digits = frac % 100 === 0
    ? `${frac / 100}`
    : frac % 10 === 0 ? (frac < 100 ? `0${frac / 10}` : `${frac / 10}`) : frac < 10 ? `00${frac}` : frac < 100 ? `0${frac}` : `${frac}`
  return `${whole}.${digits}`
}

/** `requestFields(req, tokenParam)` as JSON.stringify writes it (undefined fields left out). */
function requestJson (req: FastifyRequest, tokenParam: string): string {
  const r = requestFields(req, tokenParam)
  return `{"method":${quote(r.method)},"url":${quote(r.url)}` +
    (r.remoteAddress === undefined ? '' : `,"remoteAddress":${quote(r.remoteAddress)}`) +
    (r.remotePort === undefined ? '' : `,"remotePort":${num(r.remotePort)}`) + '}'
}

/**
 * The access line's fields, the text pino writes for `{ req: requestFields(req, tokenParam),
 * res: { statusCode }, responseTime: toMicros(responseTime), trace_id }`, as writeInfoLine takes
 * it (`,"req":...`), written directly: a line per request, where pino's walk over the object (or
 * a generic stringify per value) costs about three times as much.
 */
export function accessFields (req: FastifyRequest, tokenParam: string, statusCode: number, responseTime: number, traceId: string | undefined): string {
  return `,"req":${requestJson(req, tokenParam)},"res":{"statusCode":${num(statusCode)}},"responseTime":${millisText(responseTime)}` +
    (traceId === undefined ? '' : `,"trace_id":${quote(traceId)}`)
}

/** What a `websocket closed` line says: the connection, how it ended, its totals. */
export interface ClosedLine {
  reqId: string
  /** Only traced connections have one. */
  trace_id: string | undefined
  /** The shape requestFields reads. */
  req: { method: string, url: string, ip: string | undefined, socket: { remotePort: number | undefined } }
  connId: string
  route: string
  upstream: string
  userId: string | null
  statusCode: number
  /** The handshake's, in ms (toMicros: to the microsecond). */
  responseTime: number | undefined
  durationMs: number
  by: string
  clientCode: number
  upstreamCode: number
  messagesFromClient: number
  messagesToClient: number
  bytesFromClient: number
  bytesToClient: number
}

/**
 * The `websocket closed` line's fields, the text pino writes for `{ ...line, req:
 * requestFields(line.req, tokenParam) }` (unit tests hold the two equal), written directly: a
 * line per connection, whose generic walk (a stringify per value) cost more than the rest of it.
 */
export function closedFields (l: ClosedLine, tokenParam: string): string {
  return `,"reqId":${quote(l.reqId)}` +
    (l.trace_id === undefined ? '' : `,"trace_id":${quote(l.trace_id)}`) +
    `,"req":${requestJson(l.req as unknown as FastifyRequest, tokenParam)}` +
    `,"connId":${quote(l.connId)},"route":${quote(l.route)},"upstream":${quote(l.upstream)}` +
    `,"userId":${l.userId === null ? 'null' : quote(l.userId)},"statusCode":${num(l.statusCode)}` +
    (l.responseTime === undefined ? '' : `,"responseTime":${millisText(l.responseTime)}`) +
    `,"durationMs":${num(l.durationMs)},"by":${quote(l.by)},"clientCode":${num(l.clientCode)},"upstreamCode":${num(l.upstreamCode)}` +
    `,"messagesFromClient":${num(l.messagesFromClient)},"messagesToClient":${num(l.messagesToClient)}` +
    `,"bytesFromClient":${num(l.bytesFromClient)},"bytesToClient":${num(l.bytesToClient)}`
}

/** Set on the loggers createLogger makes (and so on their children): their lines are plain pino JSON. */
const kPlainJson = Symbol('tollgate.plainJsonLogger')
const { streamSym, timeSym, chindingsSym, lsCacheSym, endSym } = pino.symbols
const INFO = 30

/** The `onChild` a logger had when createLogger made it (pino's no-op). */
const kOnChild = Symbol('tollgate.onChild')

/** The gateway's pino logger (loggerOptions at `level`), writing to `destination` (default: stdout). */
export function createLogger (level: string, tokenParam: string, destination?: DestinationStream): Logger {
  const logger = pino(loggerOptions(level, tokenParam) as LoggerOptions, destination)
  Object.defineProperty(logger, kPlainJson, { value: true })
  Object.defineProperty(logger, kOnChild, { value: logger.onChild })
  return logger
}

/**
 * `log.child({ reqId })`, for a logger createLogger made (or a child of one): the object pino's
 * child() makes for bindings without options (the parent as prototype, the bindings' JSON
 * appended to the parent's), without its generic path: a formatters object rebuilt and a
 * stringify per binding, on every request. Null for any other logger, or when an `onChild`
 * callback was set since (pino calls it): then the caller uses child().
 */
export function requestChild (log: FastifyBaseLogger, reqId: string): FastifyBaseLogger | null {
  const l = log as unknown as Logger & Record<symbol, unknown>
  if (l[kPlainJson] !== true || l.onChild !== l[kOnChild]) return null
  const child = Object.create(log) as Record<symbol, unknown>
  child[chindingsSym] = `${l[chindingsSym] as string},"reqId":${quote(reqId)}`
  return child as unknown as FastifyBaseLogger
}

/**
 * Writes one `info` line whose fields come already serialized (`,"a":1,"b":"x"`), byte for byte
 * the line pino would write for the same fields: its level, time and bindings (pid, hostname,
 * reqId) first, `msg` last. The access log writes a line per request and per WebSocket; pino's
 * walk over an object (serializers, redaction, a stringify per value) costs several µs of each.
 * Only for loggers createLogger made, whose options are known (no formatters, mixins, hooks or
 * redaction of these fields): returns false for any other logger, and the caller logs through
 * it as usual. `msg` must be JSON-safe text (a fixed message); `fields` is called only when the
 * line is written (the level is enabled).
 */
export function writeInfoLine (log: FastifyBaseLogger, msg: string, fields: () => string): boolean {
  const l = log as unknown as Logger & Record<symbol, unknown>
  if (l[kPlainJson] !== true) return false
  if (!l.isLevelEnabled('info')) return true
  const levels = l[lsCacheSym] as Record<number, string>
  const stream = l[streamSym] as DestinationStream
  const time = l[timeSym] as () => string
  stream.write(`${levels[INFO]}${time === epochTime ? epochText() : time()}${l[chindingsSym] as string}${fields()},"msg":"${msg}"${l[endSym] as string}`)
  return true
}

const epochTime = pino.stdTimeFunctions.epochTime
let lastMs = 0
let lastTimeText = ''

/**
 * What pino's default time function writes (`,"time":<ms since the epoch>`), made once per
 * millisecond: a 13-digit number is a double to V8, and its decimal form costs more than the
 * rest of the line's numbers (several access lines share each millisecond under load).
 */
function epochText (): string {
  const now = Date.now()
  if (now !== lastMs) {
    lastMs = now
    lastTimeText = `,"time":${now}`
  }
  return lastTimeText
}
