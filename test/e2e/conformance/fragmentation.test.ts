/**
 * Autobahn 5.x (fragmentation): fragmented messages reach the far peer whole, with control frames
 * between their fragments answered on the way, and (the gateway relays frames, it does not
 * reassemble messages) with their fragment boundaries as sent. Fragmented control frames, a
 * continuation with nothing to continue and a new data frame inside a message fail the connection.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { waitFor } from '../../helpers/resources.js'
import { makeLab, type Lab } from './support/lab.js'
import { OP, cframe, fragments, frame, sframe } from './support/frames.js'
import { badBothWays } from './support/cases.js'

describe('5.x fragmentation', () => {
  let lab: Lab
  before(async () => { lab = await makeLab() })
  after(() => lab.close())

  badBothWays(() => lab, '5.1 fragmentation', 'a ping in 2 fragments', {
    send: (m) => [frame({ opcode: OP.PING, payload: 'fragment1', fin: false, mask: m }), frame({ opcode: OP.CONT, payload: 'fragment2', mask: m })]
  })
  badBothWays(() => lab, '5.2 fragmentation', 'a pong in 2 fragments', {
    send: (m) => [frame({ opcode: OP.PONG, payload: 'fragment1', fin: false, mask: m }), frame({ opcode: OP.CONT, payload: 'fragment2', mask: m })]
  })

  test('5.3 fragmentation: a text message in 2 fragments passes as those 2 frames, both ways', { timeout: 10_000 }, async (t) => {
    const { client, up } = await lab.rawToRaw(t)
    client.send(...fragments(OP.TEXT, ['fragment1', 'fragment2'], true))
    const m = await up.peer.nextMessage()
    assert.deepEqual(m.frames.map((f) => [f.opcode, f.fin, f.payload.toString()]), [[OP.TEXT, false, 'fragment1'], [OP.CONT, true, 'fragment2']])
    up.peer.send(...fragments(OP.TEXT, ['fragment1', 'fragment2'], false))
    const back = await client.nextMessage()
    assert.deepEqual(back.frames.map((f) => [f.opcode, f.fin, f.payload.toString()]), [[OP.TEXT, false, 'fragment1'], [OP.CONT, true, 'fragment2']])
  })

  test('5.4 fragmentation: a text message in 2 fragments written in chops of 1 byte reaches the upstream whole', { timeout: 10_000 }, async (t) => {
    const { client, server } = await lab.rawToGood(t)
    await client.sendInChops(Buffer.concat(fragments(OP.TEXT, ['fragment1', 'fragment2'], true)), 1)
    assert.equal((await client.nextMessage()).data.toString(), 'fragment1fragment2')
    assert.deepEqual(server.messages.map((x) => x.data.toString()), ['fragment1fragment2'])
  })

  for (const [id, chop] of [['5.6', undefined], ['5.7', 1]] as const) {
    const how = chop === undefined ? '' : ', in chops of 1 byte'
    test(`${id} fragmentation: a client text message in 2 fragments with a ping between them${how}: the pong comes back and the upstream gets the message whole`, { timeout: 10_000 }, async (t) => {
      const { client, server } = await lab.rawToGood(t)
      const [a, b] = fragments(OP.TEXT, ['fragment1', 'fragment2'], true)
      const bytes = Buffer.concat([a, cframe(OP.PING, 'between'), b])
      if (chop === undefined) client.send(bytes)
      else await client.sendInChops(bytes, chop)
      const m = await client.nextMessage()
      assert.deepEqual(m.controls.map((f) => [f.opcode, f.payload.toString()]), [[OP.PONG, 'between']])
      assert.equal(m.data.toString(), 'fragment1fragment2')
      assert.deepEqual(server.messages.map((x) => x.data.toString()), ['fragment1fragment2'])
      assert.deepEqual(server.pings.map(String), ['between'])
    })
  }

  test('5.x fragmentation: client text message in 3 fragments with a ping between them reaches the upstream intact', { timeout: 10_000 }, async (t) => {
    const { client, server } = await lab.rawToGood(t)
    const [a, b, c] = fragments(OP.TEXT, ['one ', 'two ', 'three'], true)
    client.send(a, cframe(OP.PING, 'p1'), b, cframe(OP.PING, 'p2'), c)
    const m = await client.nextMessage()
    assert.equal(m.data.toString(), 'one two three')
    assert.deepEqual(server.messages.map((x) => [x.data.toString(), x.isBinary]), [['one two three', false]])
    assert.deepEqual(server.pings.map(String), ['p1', 'p2'])
  })

  test('5.x fragmentation: upstream binary message in 3 fragments with a ping between them reaches the client intact, and the client\'s pong reaches the upstream', { timeout: 10_000 }, async (t) => {
    const { client, up } = await lab.goodToRaw(t)
    const [a, b, c] = fragments(OP.BINARY, [Buffer.from([1, 2]), Buffer.from([3]), Buffer.from([4, 5, 6])], false)
    up.peer.send(a, sframe(OP.PING, 'between'), b, c)
    const pong = await up.peer.next()
    assert.deepEqual([pong.opcode, pong.payload.toString()], [OP.PONG, 'between'])
    await waitFor(() => client.messages.length === 1, 'the message at the client', 3000)
    assert.deepEqual([...client.messages[0].data], [1, 2, 3, 4, 5, 6])
    assert.equal(client.messages[0].isBinary, true)
  })

  badBothWays(() => lab, '5.9 fragmentation', 'a continuation frame with FIN set and nothing to continue, then a text message', {
    send: (m) => [frame({ opcode: OP.CONT, payload: 'non-continuation payload', mask: m }), frame({ opcode: OP.TEXT, payload: 'Hello, world!', mask: m })]
  })
  badBothWays(() => lab, '5.10 fragmentation', 'a continuation frame with FIN set and nothing to continue, in chops of 1 byte', {
    send: (m) => [frame({ opcode: OP.CONT, payload: 'non-continuation payload', mask: m }), frame({ opcode: OP.TEXT, payload: 'Hello, world!', mask: m })],
    chop: 1
  })
  badBothWays(() => lab, '5.12 fragmentation', 'a continuation frame without FIN and nothing to continue, then a text message', {
    send: (m) => [frame({ opcode: OP.CONT, payload: 'non-continuation payload', fin: false, mask: m }), frame({ opcode: OP.TEXT, payload: 'Hello, world!', mask: m })]
  })
  badBothWays(() => lab, '5.15 fragmentation', 'a text message in 2 fragments, then a continuation without FIN and nothing to continue, then a text message', {
    send: (m) => [...fragments(OP.TEXT, ['fragment1', 'fragment2'], m), frame({ opcode: OP.CONT, payload: 'fragment3', fin: false, mask: m }), frame({ opcode: OP.TEXT, payload: 'fragment4', mask: m })],
    relayedFirst: ['fragment1fragment2']
  })
  badBothWays(() => lab, '5.16 fragmentation', 'twice: a continuation without FIN and nothing to continue, then a text message in 2 fragments', {
    send: (m) => [0, 1].flatMap(() => [frame({ opcode: OP.CONT, payload: 'fragment1', fin: false, mask: m }), ...fragments(OP.TEXT, ['fragment2', 'fragment3'], m)])
  })
  badBothWays(() => lab, '5.17 fragmentation', 'twice: a continuation with FIN and nothing to continue, then a text message in 2 fragments', {
    send: (m) => [0, 1].flatMap(() => [frame({ opcode: OP.CONT, payload: 'fragment1', mask: m }), ...fragments(OP.TEXT, ['fragment2', 'fragment3'], m)])
  })
  badBothWays(() => lab, '5.18 fragmentation', 'a text message in 2 fragments whose second frame is a text frame, not a continuation', {
    send: (m) => [frame({ opcode: OP.TEXT, payload: 'fragment1', fin: false, mask: m }), frame({ opcode: OP.TEXT, payload: 'fragment2', mask: m })]
  })
  badBothWays(() => lab, '5.18 fragmentation', 'a binary fragment followed by a text frame (messages interleaved)', {
    send: (m) => [frame({ opcode: OP.BINARY, payload: 'fragment1', fin: false, mask: m }), frame({ opcode: OP.TEXT, payload: 'other message', mask: m })]
  })

  for (const [id, chop] of [['5.19', undefined], ['5.20', 1]] as const) {
    const how = chop === undefined ? '' : ', in chops of 1 byte'
    test(`${id} fragmentation: a client text message in 5 fragments with pings after the 2nd and 4th, the rest sent only once each pong is back${how}: the upstream gets the message whole`, { timeout: 10_000 }, async (t) => {
      const { client, server } = await lab.rawToGood(t)
      const f = fragments(OP.TEXT, ['fragment1', 'fragment2', 'fragment3', 'fragment4', 'fragment5'], true)
      const write = async (...b: Buffer[]): Promise<void> => { if (chop === undefined) client.send(...b); else await client.sendInChops(Buffer.concat(b), chop) }
      await write(f[0], f[1], cframe(OP.PING, 'pongme 1!'))
      const p1 = await client.next(3000, 'the first pong')
      assert.deepEqual([p1.opcode, p1.payload.toString()], [OP.PONG, 'pongme 1!'], 'the pong arrives while the message is still open: fragments are not held back')
      await write(f[2], f[3], cframe(OP.PING, 'pongme 2!'))
      const p2 = await client.next(3000, 'the second pong')
      assert.deepEqual([p2.opcode, p2.payload.toString()], [OP.PONG, 'pongme 2!'])
      await write(f[4])
      assert.equal((await client.nextMessage()).data.toString(), 'fragment1fragment2fragment3fragment4fragment5')
      assert.deepEqual(server.messages.map((x) => x.data.toString()), ['fragment1fragment2fragment3fragment4fragment5'])
    })
  }

  test('5.19 fragmentation: the upstream\'s message in 5 fragments with pings between: the client answers each ping before the message ends, and gets the message whole', { timeout: 10_000 }, async (t) => {
    const { client, up } = await lab.goodToRaw(t)
    const f = fragments(OP.TEXT, ['fragment1', 'fragment2', 'fragment3', 'fragment4', 'fragment5'], false)
    up.peer.send(f[0], f[1], sframe(OP.PING, 'pongme 1!'))
    assert.equal((await up.peer.next()).payload.toString(), 'pongme 1!')
    up.peer.send(f[2], f[3], sframe(OP.PING, 'pongme 2!'))
    assert.equal((await up.peer.next()).payload.toString(), 'pongme 2!')
    assert.equal(client.messages.length, 0)
    up.peer.send(f[4])
    await waitFor(() => client.messages.length === 1, 'the message at the client', 3000)
    assert.equal(client.messages[0].data.toString(), 'fragment1fragment2fragment3fragment4fragment5')
  })

  test('5.x fragmentation: fragments reach the upstream as they arrive (before the message is complete), with their boundaries as sent', { timeout: 10_000 }, async (t) => {
    const { client, up } = await lab.rawToRaw(t)
    const f = fragments(OP.BINARY, [Buffer.alloc(1, 1), Buffer.alloc(0), Buffer.alloc(5, 2), Buffer.alloc(3, 3)], true)
    client.send(f[0], f[1])
    const first = [await up.peer.next(), await up.peer.next()]
    assert.deepEqual(first.map((x) => [x.opcode, x.fin, x.payload.length]), [[OP.BINARY, false, 1], [OP.CONT, false, 0]], 'the first two fragments, before the rest is sent')
    client.send(f[2], f[3])
    const rest = [await up.peer.next(), await up.peer.next()]
    assert.deepEqual(rest.map((x) => [x.opcode, x.fin, x.payload.length]), [[OP.CONT, false, 5], [OP.CONT, true, 3]])
  })
})
