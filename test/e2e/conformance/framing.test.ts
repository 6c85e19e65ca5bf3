/**
 * Autobahn 1.x (framing): text and binary frames of every length form (7-, 16- and 64-bit)
 * pass through both ways as the same frames, whole or written a few bytes at a time, and frames
 * whose masking breaks the rule for their direction fail the connection (1002).
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { connect as tcp } from 'node:net'
import { waitFor } from '../../helpers/resources.js'
import { makeLab, within, type Lab } from './support/lab.js'
import { OP, RawPeer, cframe, frame, sframe } from './support/frames.js'
import { readHead } from './support/raw.js'
import { badBothWays } from './support/cases.js'

const LENGTHS = [0, 125, 126, 127, 128, 65535, 65536]

function payloadOf (opcode: number, len: number): Buffer {
  if (opcode === OP.TEXT) return Buffer.from('*'.repeat(len))
  const b = Buffer.alloc(len)
  for (let i = 0; i < len; i++) b[i] = (i * 31 + 7) & 0xff
  return b
}

describe('1.x framing', () => {
  let lab: Lab
  before(async () => { lab = await makeLab() })
  after(() => lab.close())

  for (const [group, opcode, kind] of [['1.1', OP.TEXT, 'text'], ['1.2', OP.BINARY, 'binary']] as const) {
    LENGTHS.forEach((len, i) => {
      test(`${group}.${i + 1} framing: a ${kind} message of ${len} bytes in one frame passes as that frame both ways (client masked, upstream unmasked)`, { timeout: 10_000 }, async (t) => {
        const { client, up } = await lab.rawToRaw(t)
        const payload = payloadOf(opcode, len)
        client.send(cframe(opcode, payload))
        const got = await up.peer.next(3000, 'the client\'s frame at the upstream')
        assert.deepEqual({ fin: got.fin, rsv: got.rsv, opcode: got.opcode, masked: got.masked }, { fin: true, rsv: 0, opcode, masked: true })
        assert.ok(got.payload.equals(payload), 'payload at the upstream')
        up.peer.send(sframe(opcode, payload))
        const back = await client.next(3000, 'the upstream\'s frame at the client')
        assert.deepEqual({ fin: back.fin, rsv: back.rsv, opcode: back.opcode, masked: back.masked }, { fin: true, rsv: 0, opcode, masked: false })
        assert.ok(back.payload.equals(payload), 'payload at the client')
      })
    })

    test(`${group}.8 framing: a ${kind} message of 65536 bytes written in chops of 997 bytes reaches the correct peer whole, both ways`, { timeout: 10_000 }, async (t) => {
      const payload = payloadOf(opcode, 65536)
      // Client -> correct upstream (which echoes it).
      const a = await lab.rawToGood(t)
      await a.client.sendInChops(cframe(opcode, payload), 997)
      const echo = await a.client.nextMessage()
      assert.equal(a.server.messages.length, 1)
      assert.ok(a.server.messages[0].data.equals(payload), 'the upstream got the message whole')
      assert.equal(a.server.messages[0].isBinary, opcode === OP.BINARY)
      assert.ok(echo.data.equals(payload), 'the echo came back whole')
      // Upstream -> correct client.
      const b = await lab.goodToRaw(t)
      await b.up.peer.sendInChops(sframe(opcode, payload), 997)
      await waitFor(() => b.client.messages.length === 1, 'the message at the client', 3000)
      assert.ok(b.client.messages[0].data.equals(payload))
      assert.equal(b.client.messages[0].isBinary, opcode === OP.BINARY)
    })
  }

  test('1.x framing: a frame header split byte by byte (16-bit length, masked) is relayed once it is whole, and the upstream gets the same frame', { timeout: 10_000 }, async (t) => {
    const { client, up } = await lab.rawToRaw(t)
    const payload = Buffer.from('x'.repeat(300))
    await client.sendInChops(cframe(OP.TEXT, payload), 1)
    const got = await up.peer.next()
    assert.equal(got.opcode, OP.TEXT)
    assert.ok(got.payload.equals(payload))
    up.peer.send(sframe(OP.TEXT, payload).subarray(0, 1))
    up.peer.send(sframe(OP.TEXT, payload).subarray(1))
    assert.ok((await client.next()).payload.equals(payload))
  })

  test('1.x framing: 200 small frames in one TCP write arrive as 200 messages, in order, both ways', { timeout: 10_000 }, async (t) => {
    const { client, up } = await lab.rawToRaw(t)
    const texts = Array.from({ length: 200 }, (_, i) => `m${i}`)
    client.send(Buffer.concat(texts.map((s) => cframe(OP.TEXT, s))))
    const atUp: string[] = []
    for (let i = 0; i < texts.length; i++) atUp.push((await up.peer.next()).payload.toString())
    assert.deepEqual(atUp, texts)
    up.peer.send(Buffer.concat(texts.map((s) => sframe(OP.TEXT, s))))
    const atClient: string[] = []
    for (let i = 0; i < texts.length; i++) atClient.push((await client.next()).payload.toString())
    assert.deepEqual(atClient, texts)
  })

  test('1.x framing: frames the client sends right behind its handshake request (before its 101) reach the upstream after the 101', { timeout: 10_000 }, async (t) => {
    const path = '/r/early'
    const conn = lab.raw.connection(path)
    const s = tcp(lab.gw.port, '127.0.0.1')
    t.after(() => s.destroy())
    s.on('error', () => {})
    s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`)
    s.write(cframe(OP.TEXT, 'early'))
    const { head, rest } = await readHead(s)
    assert.match(head.line, /^HTTP\/1\.1 101/)
    const client = new RawPeer(s, rest)
    const up = await within(conn, 3000, 'the upstream connection')
    assert.equal((await up.peer.next()).payload.toString(), 'early')
    up.peer.send(sframe(OP.TEXT, 'ok'))
    assert.equal((await client.next()).payload.toString(), 'ok')
  })

  badBothWays(() => lab, '1.x framing', 'a frame whose mask bit is wrong for its direction (client: unmasked, upstream: masked)', {
    send: (masked) => [frame({ opcode: OP.TEXT, payload: 'wrongly masked', mask: !masked })]
  })
  badBothWays(() => lab, '1.x framing', 'a valid message, then a ping whose mask bit is wrong for its direction', {
    send: (masked) => [frame({ opcode: OP.TEXT, payload: 'fine', mask: masked }), frame({ opcode: OP.PING, payload: 'wrongly masked', mask: !masked })],
    relayedFirst: ['fine']
  })
})
