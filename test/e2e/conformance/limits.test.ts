/**
 * Autobahn 9.x (limits and performance): large messages in one frame and in many frames, and
 * bursts of small ones, relay intact both ways within a few seconds once websocket.maxPayload
 * allows them; a message over maxPayload, whole or fragmented, from either peer, closes both sides
 * with 1009, and a frame header announcing a huge payload does so at once.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { waitFor } from '../../helpers/resources.js'
import { assertClosedWith, makeLab, within, type Lab } from './support/lab.js'
import { OP, fragments, frame } from './support/frames.js'

const KiB = 1024
const MiB = 1024 * KiB
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

function data (size: number, text: boolean): Buffer {
  const b = Buffer.allocUnsafe(size)
  for (let i = 0; i < size; i++) b[i] = text ? 0x20 + (i % 95) : (i * 131 + 17) & 0xff
  return b
}

describe('9.x limits and large messages (websocket.maxPayload 8mb)', () => {
  let lab: Lab
  before(async () => { lab = await makeLab({ config: { websocket: { maxPayload: '8mb' } } }) })
  after(() => lab.close())

  for (const [group, text] of [['9.1', true], ['9.2', false]] as const) {
    const kind = text ? 'text' : 'binary'
    for (const [n, size] of [[3, 1 * MiB], [4, 4 * MiB]] as const) {
      test(`${group}.${n} limits: a ${kind} message of ${size / MiB} MiB in one frame goes to the upstream and its echo comes back intact, within a few seconds`, { timeout: 15_000 }, async (t) => {
        const { client, server } = await lab.goodToGood(t)
        const payload = data(size, text)
        const started = performance.now()
        const echoed = once(client.ws, 'message') as Promise<[Buffer, boolean]>
        client.ws.send(text ? payload.toString('latin1') : payload, { binary: !text })
        const [back, isBinary] = await within(echoed, 5000, 'the echo')
        const ms = performance.now() - started
        assert.equal(isBinary, !text)
        assert.equal(sha(Buffer.from(back)), sha(payload))
        assert.equal(server.messages.length, 1)
        assert.equal(sha(server.messages[0].data), sha(payload))
        assert.ok(ms < 5000, `round trip took ${Math.round(ms)} ms`)
      })
    }
  }

  for (const [group, opcode] of [['9.3', OP.TEXT], ['9.4', OP.BINARY]] as const) {
    const kind = opcode === OP.TEXT ? 'text' : 'binary'
    test(`${group}.1 limits: a 4 MiB ${kind} message in 65536 frames of 64 bytes passes as those frames both ways, within a few seconds`, { timeout: 15_000 }, async (t) => {
      // Between two hand-driven ends: ws as an endpoint refuses more than 16384 fragments (1008).
      const { client, up } = await lab.rawToRaw(t)
      const payload = data(4 * MiB, opcode === OP.TEXT)
      const parts: Buffer[] = []
      for (let i = 0; i < payload.length; i += 64) parts.push(payload.subarray(i, i + 64))
      const started = performance.now()
      client.send(Buffer.concat(fragments(opcode, parts, true)))
      const atUp = await up.peer.nextMessage(5000)
      assert.equal(atUp.frames.length, 65536)
      assert.equal(sha(atUp.data), sha(payload))
      up.peer.send(Buffer.concat(fragments(opcode, parts, false)))
      const back = await client.nextMessage(5000)
      assert.equal(back.frames.length, 65536)
      assert.equal(sha(back.data), sha(payload))
      const ms = performance.now() - started
      assert.ok(ms < 5000, `round trip took ${Math.round(ms)} ms`)
    })

    for (const [n, frameSize] of [[4, 4 * KiB], [6, 64 * KiB]] as const) {
      test(`${group}.${n} limits: a 4 MiB ${kind} message in ${4 * MiB / frameSize} frames of ${frameSize} bytes reaches the upstream whole and its echo comes back, within a few seconds`, { timeout: 15_000 }, async (t) => {
        const { client, server } = await lab.rawToGood(t)
        const payload = data(4 * MiB, opcode === OP.TEXT)
        const parts: Buffer[] = []
        for (let i = 0; i < payload.length; i += frameSize) parts.push(payload.subarray(i, i + frameSize))
        const started = performance.now()
        client.send(Buffer.concat(fragments(opcode, parts, true)))
        const echo = await client.nextMessage(5000)
        const ms = performance.now() - started
        assert.equal(echo.opcode, opcode)
        assert.equal(sha(echo.data), sha(payload))
        assert.equal(server.messages.length, 1)
        assert.equal(sha(server.messages[0].data), sha(payload))
        assert.ok(ms < 5000, `round trip took ${Math.round(ms)} ms`)
      })
    }
  }

  test('9.4.x limits: a 4 MiB binary message from the upstream in 1024 frames of 4 KiB reaches the client whole', { timeout: 15_000 }, async (t) => {
    const { client, up } = await lab.goodToRaw(t)
    const payload = data(4 * MiB, false)
    const parts: Buffer[] = []
    for (let i = 0; i < payload.length; i += 4 * KiB) parts.push(payload.subarray(i, i + 4 * KiB))
    up.peer.send(Buffer.concat(fragments(OP.BINARY, parts, false)))
    await waitFor(() => client.messages.length === 1, 'the message at the client', 5000)
    assert.equal(sha(client.messages[0].data), sha(payload))
  })

  for (const [group, binary] of [['9.7', false], ['9.8', true]] as const) {
    test(`${group}.x limits: 1000 small ${binary ? 'binary' : 'text'} messages sent in one burst are echoed intact and in order, within a few seconds`, { timeout: 15_000 }, async (t) => {
      const { client } = await lab.goodToGood(t)
      const started = performance.now()
      for (let i = 0; i < 1000; i++) client.ws.send(binary ? Buffer.from(`message ${i}`) : `message ${i}`, { binary })
      await waitFor(() => client.messages.length === 1000, () => `1000 echoes (${client.messages.length} so far)`, 5000)
      assert.deepEqual(client.messages.map((m) => m.data.toString()), Array.from({ length: 1000 }, (_, i) => `message ${i}`))
      assert.ok(client.messages.every((m) => m.isBinary === binary))
      assert.ok(performance.now() - started < 5000)
    })
  }
})

describe('9.x limits: over websocket.maxPayload (64kb)', () => {
  let lab: Lab
  before(async () => { lab = await makeLab({ config: { websocket: { maxPayload: '64kb' } } }) })
  after(() => lab.close())

  test('9.x limits: an upstream message over maxPayload in fragments each under it: both sides get 1009, the client never gets a message', { timeout: 10_000 }, async (t) => {
    const { client, up } = await lab.goodToRaw(t)
    up.peer.send(...fragments(OP.BINARY, [Buffer.alloc(40 * KiB, 1), Buffer.alloc(40 * KiB, 2)], false))
    const c = await up.peer.nextClose()
    assert.equal(c.code, 1009)
    await assertClosedWith(client, 1009, 'the client')
    assert.deepEqual(client.messages, [])
  })

  test('9.x limits: a client frame header announcing a 1 TiB payload gets 1009 at once, before any of the payload; the upstream is closed with 1009 and gets nothing', { timeout: 10_000 }, async (t) => {
    const { client, server } = await lab.rawToGood(t)
    const huge = Buffer.alloc(14)
    huge[0] = 0x82
    huge[1] = 0x80 | 127
    huge.writeBigUInt64BE(2n ** 40n, 2)
    huge.set([1, 2, 3, 4], 10)
    const started = performance.now()
    client.send(huge)
    const c = await client.nextClose(2000)
    assert.equal(c.code, 1009)
    assert.ok(performance.now() - started < 1000, 'the 1009 came without waiting for the payload')
    await assertClosedWith(server, 1009, 'the upstream')
    assert.deepEqual(server.messages, [])
  })

  test('9.x limits: an upstream frame header announcing a 1 TiB payload gets 1009 at once; the client is closed with 1009 and gets nothing', { timeout: 10_000 }, async (t) => {
    const { client, up } = await lab.goodToRaw(t)
    const huge = Buffer.alloc(10)
    huge[0] = 0x82
    huge[1] = 127
    huge.writeBigUInt64BE(2n ** 40n, 2)
    up.peer.send(huge)
    const c = await up.peer.nextClose(2000)
    assert.equal(c.code, 1009)
    await assertClosedWith(client, 1009, 'the client')
    assert.deepEqual(client.messages, [])
  })

  test('9.x limits: a message of exactly maxPayload in 16 fragments passes both ways; one byte more in the same shape gets 1009', { timeout: 10_000 }, async (t) => {
    const { client, up } = await lab.rawToRaw(t)
    const parts = Array.from({ length: 16 }, (_, i) => Buffer.alloc(4 * KiB, i))
    client.send(...fragments(OP.BINARY, parts, true))
    assert.equal((await up.peer.nextMessage()).data.length, 64 * KiB)
    up.peer.send(...fragments(OP.BINARY, parts, false))
    assert.equal((await client.nextMessage()).data.length, 64 * KiB)
    client.send(...fragments(OP.BINARY, [...parts, Buffer.alloc(1)], true))
    const c = await client.nextClose()
    assert.equal(c.code, 1009)
    const u = await up.peer.nextClose()
    assert.equal(u.code, 1009)
    // What reached the upstream of the oversized message never ended as a message.
    assert.ok(u.before.every((f) => !f.fin || f.opcode >= 8), 'no final fragment of the oversized message reached the upstream')
  })

  test('9.x limits: a client message over maxPayload whose first bytes arrive 7 at a time gets 1009 as soon as its header is read, before the rest of the payload', { timeout: 10_000 }, async (t) => {
    const { client, server } = await lab.rawToGood(t)
    await client.sendInChops(frame({ opcode: OP.TEXT, payload: Buffer.alloc(65 * KiB, 0x41), mask: true }).subarray(0, 4096), 7)
    const c = await client.nextClose()
    assert.equal(c.code, 1009)
    await assertClosedWith(server, 1009, 'the upstream')
    assert.deepEqual(server.messages, [])
  })
})
