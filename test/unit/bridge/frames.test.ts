/**
 * The frames the gateway writes itself, checked against ws's own receiver (the reference
 * decoder), and the reading of close frames.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as ws from 'ws'
import { closeFrame, encodeFrame, OP_BINARY, OP_PING, OP_TEXT, parseClose, unmask } from '../../../src/bridge/frames.js'
import { ProtocolError, protocolErrors, type ProtocolErrorCode } from '../../../src/bridge/protocol-errors.js'
import { isSendableCode } from '../../../src/close-codes.js'

/** ws's frame decoder (exported by ws, not declared by @types/ws). */
interface ReceiverLike {
  on (event: 'message', listener: (data: Buffer, binary: boolean) => void): void
  on (event: 'ping', listener: (data: Buffer) => void): void
  on (event: 'conclude', listener: (code: number, reason: Buffer) => void): void
  on (event: 'error', listener: (err: Error) => void): void
  write (chunk: Buffer): void
}
const Receiver = (ws as unknown as { Receiver: new (o: { isServer: boolean, maxPayload: number, skipUTF8Validation: boolean }) => ReceiverLike }).Receiver

interface Decoded { kind: string, data: Buffer | string, binary?: boolean, code?: number }

/** Decodes bytes with ws's Receiver, as a server (expects masked frames) or a client. */
function decode (bytes: Buffer, isServer: boolean): Decoded[] {
  const out: Decoded[] = []
  const r = new Receiver({ isServer, maxPayload: 0, skipUTF8Validation: false })
  r.on('message', (data: Buffer, binary: boolean) => out.push({ kind: 'message', data, binary }))
  r.on('ping', (data: Buffer) => out.push({ kind: 'ping', data }))
  r.on('conclude', (code: number, reason: Buffer) => out.push({ kind: 'close', code, data: reason.toString() }))
  r.on('error', (err: Error) => out.push({ kind: 'error', data: err.message }))
  r.write(bytes)
  return out
}

test('encodeFrame: every length form, masked and unmasked, decodes to the same payload', () => {
  for (const len of [0, 1, 125, 126, 65535, 65536, 200_000]) {
    const payload = Buffer.alloc(len, 0xab)
    for (const masked of [false, true]) {
      const frame = encodeFrame(OP_BINARY, payload, masked)
      const [m] = decode(frame, masked)
      assert.equal(m.kind, 'message', `len ${len} masked ${masked}`)
      assert.equal(m.binary, true)
      assert.ok((m.data as Buffer).equals(payload), `len ${len} masked ${masked}`)
    }
  }
  const text = decode(encodeFrame(OP_TEXT, Buffer.from('héllo'), false), false)
  assert.deepEqual(text.map((m) => [m.kind, m.data.toString(), m.binary]), [['message', 'héllo', false]])
})

test('encodeFrame: a masked frame gets a fresh key each time, and unmask() undoes it', () => {
  const payload = Buffer.from('the same payload')
  const a = encodeFrame(OP_PING, payload, true)
  const b = encodeFrame(OP_PING, payload, true)
  assert.notDeepEqual(a.subarray(2, 6), b.subarray(2, 6), 'two masking keys differ (random, 4 bytes)')
  assert.ok(unmask(a, 6, payload.length, 2).equals(payload))
  assert.ok(unmask(Buffer.concat([Buffer.from([0x89, payload.length]), payload]), 2, payload.length, -1).equals(payload))
})

test('closeFrame: code and reason, no status, and a reason cut to 123 bytes on a character boundary', () => {
  assert.deepEqual(decode(closeFrame(4001, 'bye', false), false), [{ kind: 'close', code: 4001, data: 'bye' }])
  assert.deepEqual(decode(closeFrame(1000, '', true), true), [{ kind: 'close', code: 1000, data: '' }])
  assert.deepEqual(decode(closeFrame(undefined, 'ignored', false), false), [{ kind: 'close', code: 1005, data: '' }])
  const long = 'é'.repeat(100) // 200 bytes
  const [c] = decode(closeFrame(1008, long, false), false)
  assert.equal(c.kind, 'close')
  assert.equal(Buffer.byteLength(c.data as string), 122, 'two-byte characters: 61 of them fit in 123 bytes')
  assert.equal(c.data, 'é'.repeat(61))
})

/** A parseClose refusal as { code, closeCode, fail, message }. */
function refused (payload: Buffer): { code: string, closeCode: number, fail: boolean, message: string } {
  const r = parseClose(payload)
  assert.equal(r.ok, false, `payload ${payload.toString('hex')} accepted`)
  if (r.ok) throw new Error('unreachable')
  assert.ok(r.error instanceof ProtocolError)
  return { code: r.error.code, closeCode: r.error.closeCode, fail: r.error.fail, message: r.error.message }
}

test('parseClose: empty is 1005; a 1-byte payload, a code that may not be sent and invalid UTF-8 are coded errors that fail the connection', () => {
  assert.deepEqual(parseClose(Buffer.alloc(0)), { ok: true, code: 1005, reason: '' })
  const ok = Buffer.concat([Buffer.from([0x0f, 0xa1]), Buffer.from('fine')])
  assert.deepEqual(parseClose(ok), { ok: true, code: 4001, reason: 'fine' })
  assert.deepEqual(refused(Buffer.from([0x03])), { code: 'WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH', closeCode: 1002, fail: true, message: 'invalid payload length 1' })
  for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535]) {
    const b = Buffer.alloc(2)
    b.writeUInt16BE(code)
    assert.deepEqual(refused(b), { code: 'WS_ERR_INVALID_CLOSE_CODE', closeCode: 1002, fail: true, message: `invalid status code ${code}` })
  }
  for (const code of [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999]) {
    const b = Buffer.alloc(2)
    b.writeUInt16BE(code)
    assert.deepEqual(parseClose(b), { ok: true, code, reason: '' })
  }
  assert.deepEqual(refused(Buffer.from([0x03, 0xe8, 0xff, 0xfe])), { code: 'WS_ERR_INVALID_UTF8', closeCode: 1007, fail: true, message: 'invalid UTF-8 sequence' })
})


test('protocol errors: each key is its code; framing errors fail the connection with 1002, bad data with 1007, only a big message is not failed (1009)', () => {
  for (const [key, spec] of Object.entries(protocolErrors)) {
    const e = new ProtocolError(key as ProtocolErrorCode)
    assert.equal(e.code, key)
    assert.equal(e.closeCode, spec.status)
    assert.ok(isSendableCode(e.closeCode), `${key}: ${e.closeCode} can be sent`)
    assert.ok(Buffer.byteLength(e.message) <= 123, `${key}: the reason fits a close frame`)
    assert.equal(e.fail, key !== 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', key)
    if (key === 'WS_ERR_INVALID_UTF8' || key === 'WS_ERR_INVALID_COMPRESSED_DATA') assert.equal(e.closeCode, 1007)
    else if (key === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') assert.deepEqual([e.closeCode, e.message], [1009, 'message too big'])
    else assert.equal(e.closeCode, 1002, key)
  }
})
