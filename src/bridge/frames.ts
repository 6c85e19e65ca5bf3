/**
 * RFC 6455 frame helpers for the frame-level relay: the few frames the gateway writes itself
 * (pings, closes, admin pushes), and the reading of a close frame's payload (a relayed frame's
 * header is read by frame-scanner.ts). Relayed frames are never built here: they pass through as the bytes
 * the peer sent.
 */
import { randomFillSync } from 'node:crypto'
import { isUtf8 } from 'node:buffer'
import { isSendableCode } from '../close-codes.js'
import { ProtocolError } from './protocol-errors.js'

/** Random bytes drawn from a pool refilled 4 KiB at a time: one RNG call per 256 handshake keys. */
const pool = Buffer.allocUnsafe(4096)
let poolAt = pool.length

/** Copies `n` (at most 4096) fresh random bytes into `target` at `offset`. */
export function randomInto (target: Buffer, offset: number, n: number): void {
  if (poolAt + n > pool.length) { randomFillSync(pool); poolAt = 0 }
  pool.copy(target, offset, poolAt, poolAt + n)
  poolAt += n
}

export const OP_CONTINUATION = 0x0
export const OP_TEXT = 0x1
export const OP_BINARY = 0x2
export const OP_CLOSE = 0x8
export const OP_PING = 0x9
export const OP_PONG = 0xa

/**
 * Builds one final frame. `masked`: frames to the upstream (the gateway is its client) are
 * masked with a fresh random key, as RFC 6455 5.3 asks of a client.
 */
export function encodeFrame (opcode: number, payload: Buffer, masked: boolean): Buffer {
  const len = payload.length
  const lenBytes = len < 126 ? 0 : len < 0x10000 ? 2 : 8
  const head = 2 + lenBytes + (masked ? 4 : 0)
  const out = Buffer.allocUnsafe(head + len)
  out[0] = 0x80 | opcode
  if (lenBytes === 0) out[1] = len
  else if (lenBytes === 2) { out[1] = 126; out.writeUInt16BE(len, 2) } else { out[1] = 127; out.writeUInt32BE(0, 2); out.writeUInt32BE(len, 6) }
  if (!masked) {
    payload.copy(out, head)
    return out
  }
  out[1] |= 0x80
  const keyAt = head - 4
  randomInto(out, keyAt, 4)
  for (let i = 0; i < len; i++) out[head + i] = payload[i] ^ out[keyAt + (i & 3)]
  return out
}

/** A close frame; `code` undefined: no status (the peer sees 1005). */
export function closeFrame (code: number | undefined, reason: string, masked: boolean): Buffer {
  if (code === undefined) return encodeFrame(OP_CLOSE, EMPTY, masked)
  // A control frame carries at most 125 bytes: 2 for the code, 123 for the reason.
  let r: Buffer = reason === '' ? EMPTY : Buffer.from(reason)
  if (r.length > 123) r = truncateUtf8(r, 123)
  // Built in place (one Buffer, not a payload copied into a frame): one is sent per side at
  // every close.
  const head = masked ? 6 : 2
  const len = 2 + r.length
  const out = Buffer.allocUnsafe(head + len)
  out[0] = 0x80 | OP_CLOSE
  out[1] = masked ? 0x80 | len : len
  out.writeUInt16BE(code, head)
  r.copy(out, head + 2)
  if (masked) {
    randomInto(out, 2, 4)
    for (let i = 0; i < len; i++) out[head + i] ^= out[2 + (i & 3)]
  }
  return out
}

/** The payload of a (possibly masked) frame as plain bytes; copies. */
export function unmask (buf: Buffer, start: number, len: number, maskAt: number): Buffer {
  const out = Buffer.allocUnsafe(len)
  if (maskAt < 0) { buf.copy(out, 0, start, start + len); return out }
  for (let i = 0; i < len; i++) out[i] = buf[start + i] ^ buf[maskAt + (i & 3)]
  return out
}

export type ParsedClose =
  | { ok: true, code: number, reason: string }
  | { ok: false, error: ProtocolError }

/** Reads a close frame's payload as ws's receiver does: 1005 when empty, a coded error (1002/1007) when invalid. */
export function parseClose (payload: Buffer): ParsedClose {
  if (payload.length === 0) return { ok: true, code: 1005, reason: '' }
  if (payload.length === 1) return { ok: false, error: new ProtocolError('WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH', 'invalid payload length 1') }
  const code = payload.readUInt16BE(0)
  if (!isSendableCode(code)) return { ok: false, error: new ProtocolError('WS_ERR_INVALID_CLOSE_CODE', `invalid status code ${code}`) }
  const reason = payload.subarray(2)
  if (!isUtf8(reason)) return { ok: false, error: new ProtocolError('WS_ERR_INVALID_UTF8') }
  return { ok: true, code, reason: reason.toString() }
}

/** Cuts a UTF-8 byte string to at most `max` bytes without splitting a character. */
function truncateUtf8 (b: Buffer, max: number): Buffer {
  let end = max
  while (end > 0 && (b[end] & 0xc0) === 0x80) end--
  return b.subarray(0, end)
}

const EMPTY = Buffer.alloc(0)
