/**
 * The frames the gateway writes itself, checked against ws's own receiver (the reference
 * decoder), and the reading of close frames.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as ws from 'ws'
import { closeFrame, encodeFrame, OP_BINARY, OP_PING, OP_TEXT, parseClose, unmask } from '../../src/bridge/frames.js'

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

test('parseClose: empty is 1005; a 1-byte payload, a code that may not be sent and invalid UTF-8 are refused', () => {
  assert.deepEqual(parseClose(Buffer.alloc(0)), { ok: true, code: 1005, reason: '' })
  const ok = Buffer.concat([Buffer.from([0x0f, 0xa1]), Buffer.from('fine')])
  assert.deepEqual(parseClose(ok), { ok: true, code: 4001, reason: 'fine' })
  assert.deepEqual(parseClose(Buffer.from([0x03])), { ok: false, code: 1002, reason: 'invalid close frame' })
  for (const code of [999, 1004, 1005, 1006, 1015, 2000, 5000]) {
    const b = Buffer.alloc(2)
    b.writeUInt16BE(code)
    assert.equal(parseClose(b).code, 1002, `code ${code}`)
  }
  assert.deepEqual(parseClose(Buffer.from([0x03, 0xe8, 0xff, 0xfe])), { ok: false, code: 1007, reason: 'invalid UTF-8' })
})
