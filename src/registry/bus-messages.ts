/**
 * The messages of the cluster bus (Redis pub/sub between instances) and the values the cluster
 * registry reads back from Redis, checked before use. Anything that can write to Redis can put
 * anything there (a bug in another version, a stray script, a tenant sharing the server), so
 * every message and stored value is parsed here as hostile input: a value that does not fit is
 * refused with a reason, never thrown on, and no field of it is used.
 *
 *   command  <prefix>cmd:<id>    { rid, from, cmd: { op: 'close', id, code, reason } }
 *                                { rid, from, cmd: { op: 'send', id, data, binary } }
 *                                { rid, from, cmd: { op: 'broadcast', route?, user?, data, binary } }
 *                                { rid, from, cmd: { op: 'find', id } }
 *                                { rid, from, cmd: { op: 'count', route?, user? } }
 *                                { rid, from, cmd: { op: 'page', route?, user?, offset, limit } }
 *   reply    <prefix>reply:<id>  { rid, result, views? }
 *
 * `find` and `page` are answered with the owner's own views of its connections (`views`, checked
 * with parseConnectionView: each must name the instance that was asked), so that a listing shows
 * counters as they are at that moment.
 *
 * `data` is the message in base64. Fields this version does not know are ignored, so that
 * instances of two versions can run side by side during a rolling upgrade.
 */
import { Buffer, isUtf8 } from 'node:buffer'
import { isSendableCode } from '../close-codes.js'

/** A command as it travels (data in base64). */
export type WireCommand =
  | { op: 'close', id: string, code: number, reason: string }
  | { op: 'send', id: string, data: string, binary: boolean }
  | { op: 'broadcast', route?: string, user?: string, data: string, binary: boolean }
  | QueryCommand

/** A question about an instance's connections (nothing in it needs decoding). */
export type QueryCommand =
  | { op: 'find', id: string }
  | { op: 'count', route?: string, user?: string }
  | { op: 'page', route?: string, user?: string, offset: number, limit: number }

/** A command once checked (data decoded: a Buffer when binary, else a string). */
export type Command =
  | { op: 'close', id: string, code: number, reason: string }
  | { op: 'send', id: string, payload: Buffer | string, binary: boolean }
  | { op: 'broadcast', route?: string, user?: string, payload: Buffer | string, binary: boolean }
  | QueryCommand

export interface Envelope { rid: string, from: string, cmd: Command }
export interface Reply { rid: string, result: number, views?: unknown[] }

/** Why a message or stored value was refused (a log field). */
export type Refusal =
  | 'too-large' | 'not-json' | 'not-object' | 'bad-rid' | 'bad-from' | 'bad-op' | 'bad-id'
  | 'bad-close-code' | 'bad-reason' | 'bad-binary' | 'bad-data' | 'data-too-large' | 'bad-text'
  | 'bad-filter' | 'bad-result' | 'bad-field' | 'wrong-owner' | 'bad-page' | 'bad-views'

export type Parsed<T> = { ok: true, value: T } | { ok: false, reason: Refusal }

/** Request ids are UUIDs; some room for other generators. */
export const MAX_RID_LENGTH = 64
/** Instance ids are `<hostname>-<pid>-<hex>`; a hostname is at most 253 characters. */
export const MAX_INSTANCE_ID_LENGTH = 256
/** Connection ids are request ids (UUIDs); the admin API accepts at most 128 characters. */
export const MAX_CONNECTION_ID_LENGTH = 128
/** A route prefix or user id in a broadcast filter. */
export const MAX_FILTER_LENGTH = 4096
/** A close frame holds 125 bytes: 2 for the code, 123 for the reason. */
export const MAX_REASON_BYTES = 123
/** Everything of a message but its data (ids, filter, field names), with room to spare. */
const ENVELOPE_OVERHEAD = 16 * 1024
/** One connection's JSON view in a registry hash (the real ones are well under 1 KiB). */
export const MAX_ENTRY_LENGTH = 64 * 1024
/** The most views a page request may ask for (the admin API's largest limit). */
export const MAX_PAGE_LIMIT = 1000
/** A reply with views: a page of MAX_PAGE_LIMIT views of a few hundred bytes each, with room. */
export const MAX_REPLY_LENGTH = 8 * 1024 * 1024

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/

/** The longest bus message worth parsing when messages carry at most `maxPayload` bytes. */
export function maxMessageLength (maxPayload: number): number {
  return Math.ceil(maxPayload / 3) * 4 + ENVELOPE_OVERHEAD
}

/** The wire form of a command from this instance. */
export function encodeEnvelope (rid: string, from: string, cmd: WireCommand): string {
  return JSON.stringify({ rid, from, cmd })
}

/** A message's bytes in base64, for a command's `data`. */
export function encodeData (data: Buffer | string): string {
  return (typeof data === 'string' ? Buffer.from(data) : data).toString('base64')
}

/** `reason` cut to what a close frame holds (123 bytes of UTF-8), at a character boundary. */
export function fitReason (reason: string): string {
  if (reason.length <= MAX_REASON_BYTES / 3) return reason
  const b = Buffer.from(reason)
  if (b.length <= MAX_REASON_BYTES) return reason
  let end = MAX_REASON_BYTES
  while (end > 0 && (b[end] & 0xc0) === 0x80) end--
  return b.subarray(0, end).toString('utf8')
}

export function encodeReply (rid: string, result: number, views?: unknown[]): string {
  return JSON.stringify(views === undefined ? { rid, result } : { rid, result, views })
}

/**
 * Checks a message from the command channel.
 * @param maxPayload the most bytes a pushed message may have once decoded (websocket.maxPayload)
 */
export function parseEnvelope (message: string, maxPayload: number): Parsed<Envelope> {
  const o = parseObject(message, maxMessageLength(maxPayload))
  if (!o.ok) return o
  const { rid, from, cmd } = o.value
  if (!isToken(rid, MAX_RID_LENGTH)) return refuse('bad-rid')
  if (!isToken(from, MAX_INSTANCE_ID_LENGTH)) return refuse('bad-from')
  if (!isRecord(cmd)) return refuse('bad-op')
  const c = parseCommand(cmd, maxPayload)
  if (!c.ok) return c
  return { ok: true, value: { rid, from, cmd: c.value } }
}

/**
 * Checks a message from the reply channel. A result is a count, or -1 (client busy); `views`, when
 * there, is an array of at most MAX_PAGE_LIMIT items, each to be checked with parseConnectionView.
 */
export function parseReply (message: string): Parsed<Reply> {
  const o = parseObject(message, MAX_REPLY_LENGTH)
  if (!o.ok) return o
  const { rid, result, views } = o.value
  if (!isToken(rid, MAX_RID_LENGTH)) return refuse('bad-rid')
  if (typeof result !== 'number' || !Number.isSafeInteger(result) || result < -1) return refuse('bad-result')
  if (views === undefined) return { ok: true, value: { rid, result } }
  if (!Array.isArray(views) || views.length > MAX_PAGE_LIMIT) return refuse('bad-views')
  return { ok: true, value: { rid, result, views } }
}

function parseCommand (cmd: Record<string, unknown>, maxPayload: number): Parsed<Command> {
  switch (cmd.op) {
    case 'close': {
      const { id, code, reason } = cmd
      if (!isToken(id, MAX_CONNECTION_ID_LENGTH)) return refuse('bad-id')
      // Only what ws would put in a close frame: 1005/1006/1015 and out-of-range codes are not.
      if (typeof code !== 'number' || !Number.isInteger(code) || !isSendableCode(code)) return refuse('bad-close-code')
      if (typeof reason !== 'string' || reason.length > MAX_REASON_BYTES || Buffer.byteLength(reason) > MAX_REASON_BYTES) return refuse('bad-reason')
      return { ok: true, value: { op: 'close', id, code, reason } }
    }
    case 'send': {
      if (!isToken(cmd.id, MAX_CONNECTION_ID_LENGTH)) return refuse('bad-id')
      const p = parsePayload(cmd.data, cmd.binary, maxPayload)
      if (!p.ok) return p
      return { ok: true, value: { op: 'send', id: cmd.id, payload: p.value, binary: cmd.binary as boolean } }
    }
    case 'broadcast': {
      const { route, user } = cmd
      if (!isOptionalFilter(route) || !isOptionalFilter(user)) return refuse('bad-filter')
      const p = parsePayload(cmd.data, cmd.binary, maxPayload)
      if (!p.ok) return p
      const value: Command = { op: 'broadcast', payload: p.value, binary: cmd.binary as boolean }
      if (route !== undefined) value.route = route
      if (user !== undefined) value.user = user
      return { ok: true, value }
    }
    case 'find':
      if (!isToken(cmd.id, MAX_CONNECTION_ID_LENGTH)) return refuse('bad-id')
      return { ok: true, value: { op: 'find', id: cmd.id } }
    case 'count':
    case 'page': {
      const { route, user } = cmd
      if (!isOptionalFilter(route) || !isOptionalFilter(user)) return refuse('bad-filter')
      const filter: { route?: string, user?: string } = {}
      if (route !== undefined) filter.route = route
      if (user !== undefined) filter.user = user
      if (cmd.op === 'count') return { ok: true, value: { op: 'count', ...filter } }
      const { offset, limit } = cmd
      if (!Number.isSafeInteger(offset) || (offset as number) < 0 || !Number.isSafeInteger(limit) || (limit as number) < 1 || (limit as number) > MAX_PAGE_LIMIT) return refuse('bad-page')
      return { ok: true, value: { op: 'page', ...filter, offset: offset as number, limit: limit as number } }
    }
    default:
      return refuse('bad-op')
  }
}

/** Decodes `data` (strict base64, at most `maxPayload` bytes; UTF-8 when not binary). */
function parsePayload (data: unknown, binary: unknown, maxPayload: number): Parsed<Buffer | string> {
  if (typeof binary !== 'boolean') return refuse('bad-binary')
  if (typeof data !== 'string' || data.length % 4 !== 0 || !BASE64.test(data)) return refuse('bad-data')
  // Counted before decoding, so that an oversized message costs no buffer.
  const pad = data.endsWith('==') ? 2 : data.endsWith('=') ? 1 : 0
  if (data.length / 4 * 3 - pad > maxPayload) return refuse('data-too-large')
  const buf = Buffer.from(data, 'base64')
  if (binary) return { ok: true, value: buf }
  if (!isUtf8(buf)) return refuse('bad-text')
  return { ok: true, value: buf.toString('utf8') }
}

/** One connection's view as the admin API shows it (the `Connection` schema). */
export type ConnectionView = Record<string, unknown>

const STRING_FIELDS = ['route', 'path', 'clientIp', 'upstream'] as const
const NULLABLE_STRING_FIELDS = ['userId', 'subprotocol'] as const
const COUNTER_FIELDS = ['messagesFromClient', 'messagesToClient', 'bytesFromClient', 'bytesToClient'] as const

/**
 * Checks one connection entry read back from a registry hash. Only the known fields are kept,
 * so whatever else an entry carries never reaches a listing.
 * @param expect the hash's owner (`instanceId`) and, when read by field, the field (`id`)
 */
export function parseConnectionEntry (raw: string, expect: { instanceId: string, id?: string }): Parsed<ConnectionView> {
  const o = parseObject(raw, MAX_ENTRY_LENGTH)
  if (!o.ok) return o
  return parseConnectionView(o.value, expect)
}

/**
 * Checks one connection view another instance sent (a `find` or `page` reply). Only the known
 * fields are kept.
 * @param expect the instance that was asked (`instanceId`) and, for a `find`, the id (`id`)
 */
export function parseConnectionView (v: unknown, expect: { instanceId: string, id?: string }): Parsed<ConnectionView> {
  if (!isRecord(v)) return refuse('not-object')
  const e = v
  if (!isToken(e.id, MAX_CONNECTION_ID_LENGTH) || typeof e.instanceId !== 'string') return refuse('bad-field')
  if (e.instanceId !== expect.instanceId || (expect.id !== undefined && e.id !== expect.id)) return refuse('wrong-owner')
  const out: ConnectionView = { id: e.id }
  for (const k of STRING_FIELDS) {
    if (typeof e[k] !== 'string') return refuse('bad-field')
    out[k] = e[k]
  }
  for (const k of NULLABLE_STRING_FIELDS) {
    if (e[k] !== null && typeof e[k] !== 'string') return refuse('bad-field')
    out[k] = e[k]
  }
  out.instanceId = e.instanceId
  if (!isDate(e.connectedAt) || !isDate(e.lastActivityAt) || (e.lastPongAt !== null && !isDate(e.lastPongAt))) return refuse('bad-field')
  out.connectedAt = e.connectedAt
  out.lastActivityAt = e.lastActivityAt
  out.lastPongAt = e.lastPongAt
  if (e.rttMs !== null && (typeof e.rttMs !== 'number' || !Number.isFinite(e.rttMs))) return refuse('bad-field')
  out.rttMs = e.rttMs
  for (const k of COUNTER_FIELDS) {
    const n = e[k]
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) return refuse('bad-field')
    out[k] = n
  }
  return { ok: true, value: out }
}

/** Whether a member of the instances set can be an instance id (and so part of a key name). */
export function isInstanceId (s: unknown): s is string {
  return isToken(s, MAX_INSTANCE_ID_LENGTH)
}

function parseObject (text: string, maxLength: number): Parsed<Record<string, unknown>> {
  // Checked before parsing: JSON.parse of a huge string would cost its size again, and more.
  if (text.length > maxLength) return refuse('too-large')
  let v: unknown
  try { v = JSON.parse(text) } catch { return refuse('not-json') }
  return isRecord(v) ? { ok: true, value: v } : refuse('not-object')
}

function isRecord (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** A non-empty string of at most `max` characters with no control character (it ends up in key and channel names and logs). */
function isToken (s: unknown, max: number): s is string {
  if (typeof s !== 'string' || s.length === 0 || s.length > max) return false
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x20 || c === 0x7f) return false
  }
  return true
}

function isOptionalFilter (v: unknown): v is string | undefined {
  return v === undefined || (typeof v === 'string' && v.length <= MAX_FILTER_LENGTH)
}

function isDate (v: unknown): v is string {
  return typeof v === 'string' && v.length <= 64 && !Number.isNaN(Date.parse(v))
}

function refuse (reason: Refusal): { ok: false, reason: Refusal } {
  return { ok: false, reason }
}

/**
 * One warning per `intervalMs` at most, whatever the rate of what it reports: a flood of junk
 * costs one log line per interval, which says how many were suppressed since the previous one.
 */
export class RateLimitedWarning {
  private last = -Infinity
  private suppressed = 0

  /**
   * @param warn where the line goes (a pino logger's `warn`, bound)
   * @param msg the static message of every line
   */
  constructor (
    private readonly warn: (o: object, msg: string) => void,
    private readonly msg: string,
    private readonly intervalMs = 10_000,
    private readonly now: () => number = () => performance.now()
  ) {}

  /** Reports one occurrence; logs it with `fields` unless a line went out less than `intervalMs` ago. */
  hit (fields: Record<string, unknown>): void {
    const t = this.now()
    if (t - this.last < this.intervalMs) { this.suppressed++; return }
    this.last = t
    const suppressed = this.suppressed
    this.suppressed = 0
    this.warn({ ...fields, suppressed }, this.msg)
  }
}
