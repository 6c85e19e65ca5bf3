/**
 * Autobahn 2.x (pings and pongs): a peer's ping passes end to end and the far peer's pong comes
 * back with the same payload (the gateway answers no ping itself); pongs nobody asked for pass on
 * and get no answer; a ping over 125 bytes fails the connection (1002).
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { waitFor } from '../../helpers/resources.js'
import { makeLab, type Lab } from './support/lab.js'
import { OP, cframe, frame, sframe } from './support/frames.js'
import { badBothWays } from './support/cases.js'

const BINARY = Buffer.from(Array.from({ length: 32 }, (_, i) => 0xff - i))

describe('2.x pings and pongs', () => {
  let lab: Lab
  before(async () => { lab = await makeLab() })
  after(() => lab.close())

  const payloads: Array<[string, string, Buffer]> = [
    ['2.1', 'no payload', Buffer.alloc(0)],
    ['2.2', 'a small text payload', Buffer.from('Hello, world!')],
    ['2.3', 'a small binary payload', BINARY],
    ['2.4', 'a 125-byte binary payload (the largest allowed)', Buffer.alloc(125, 0xfe)]
  ]
  for (const [id, what, payload] of payloads) {
    test(`${id} pings: a client ping with ${what} reaches the upstream, whose pong comes back with the same payload`, { timeout: 10_000 }, async (t) => {
      const { client, server } = await lab.rawToGood(t)
      client.send(cframe(OP.PING, payload))
      const pong = await client.next(3000, 'the pong')
      assert.equal(pong.opcode, OP.PONG)
      assert.ok(pong.payload.equals(payload), 'pong payload')
      assert.equal(server.pings.length, 1, 'the upstream got the ping (the gateway did not answer it itself)')
      assert.ok(server.pings[0].equals(payload))
    })
    test(`${id} pings: an upstream ping with ${what} reaches the client, whose pong comes back to the upstream with the same payload`, { timeout: 10_000 }, async (t) => {
      const { client, up } = await lab.goodToRaw(t)
      up.peer.send(sframe(OP.PING, payload))
      const pong = await up.peer.next(3000, 'the pong')
      assert.equal(pong.opcode, OP.PONG)
      assert.equal(pong.masked, true, 'frames to the upstream are masked')
      assert.ok(pong.payload.equals(payload), 'pong payload')
      assert.equal(client.pings.length, 1)
      assert.ok(client.pings[0].equals(payload))
    })
  }

  badBothWays(() => lab, '2.5 pings', 'a ping with a 126-byte payload (control frames carry at most 125)', {
    send: (masked) => [frame({ opcode: OP.PING, payload: Buffer.alloc(126, 0xfe), mask: masked })]
  })

  test('2.6 pings: a ping with a 125-byte payload written in chops of 1 byte gets its pong', { timeout: 10_000 }, async (t) => {
    const { client, server } = await lab.rawToGood(t)
    const payload = Buffer.alloc(125, 0xfe)
    await client.sendInChops(cframe(OP.PING, payload), 1)
    const pong = await client.next()
    assert.equal(pong.opcode, OP.PONG)
    assert.ok(pong.payload.equals(payload))
    assert.equal(server.pings.length, 1)
  })

  for (const [id, what, payload] of [['2.7', 'without payload', Buffer.alloc(0)], ['2.8', 'with a payload', Buffer.from('unsolicited pong payload')]] as const) {
    test(`${id} pings: an unsolicited pong ${what} from the client passes to the upstream and gets no answer`, { timeout: 10_000 }, async (t) => {
      const { client, up } = await lab.rawToRaw(t)
      client.send(cframe(OP.PONG, payload))
      const atUp = await up.peer.next()
      assert.equal(atUp.opcode, OP.PONG)
      assert.ok(atUp.payload.equals(payload))
      // Nothing came back for it: the next frame the client sees is the answer to this message.
      client.send(cframe(OP.TEXT, 'after the pong'))
      assert.equal((await up.peer.next()).payload.toString(), 'after the pong')
      up.peer.send(sframe(OP.TEXT, 'reply'))
      const next = await client.next()
      assert.deepEqual([next.opcode, next.payload.toString()], [OP.TEXT, 'reply'])
    })
    test(`${id} pings: an unsolicited pong ${what} from the upstream passes to the client and gets no answer`, { timeout: 10_000 }, async (t) => {
      const { client, up } = await lab.goodToRaw(t)
      up.peer.send(sframe(OP.PONG, payload))
      await waitFor(() => client.pongs.length === 1, 'the pong at the client', 3000)
      assert.ok(client.pongs[0].equals(payload))
      up.peer.send(sframe(OP.TEXT, 'after the pong'))
      await waitFor(() => client.messages.length === 1, 'the message at the client', 3000)
      client.ws.send('reply')
      const next = await up.peer.next()
      assert.deepEqual([next.opcode, next.payload.toString()], [OP.TEXT, 'reply'], 'the client sent no pong back')
    })
  }

  test('2.9 pings: an unsolicited pong then a ping from the client: only the ping\'s pong comes back', { timeout: 10_000 }, async (t) => {
    const { client, server } = await lab.rawToGood(t)
    client.send(cframe(OP.PONG, 'unsolicited'), cframe(OP.PING, 'solicited'))
    const pong = await client.next()
    assert.deepEqual([pong.opcode, pong.payload.toString()], [OP.PONG, 'solicited'])
    await waitFor(() => server.pongs.length === 1, 'the unsolicited pong at the upstream', 3000)
    assert.equal(server.pongs[0].toString(), 'unsolicited')
    client.send(cframe(OP.TEXT, 'end'))
    const echo = await client.next()
    assert.deepEqual([echo.opcode, echo.payload.toString()], [OP.TEXT, 'end'], 'no other frame came back')
  })

  for (const [id, chop] of [['2.10', undefined], ['2.11', 1]] as const) {
    const how = chop === undefined ? 'in one write' : 'in chops of 1 byte'
    test(`${id} pings: 10 client pings ${how} get 10 pongs, in order, with their payloads`, { timeout: 10_000 }, async (t) => {
      const { client } = await lab.rawToGood(t)
      const bytes = Buffer.concat(Array.from({ length: 10 }, (_, i) => cframe(OP.PING, `payload-${i}`)))
      if (chop === undefined) client.send(bytes)
      else await client.sendInChops(bytes, chop)
      const got: string[] = []
      for (let i = 0; i < 10; i++) {
        const f = await client.next()
        assert.equal(f.opcode, OP.PONG)
        got.push(f.payload.toString())
      }
      assert.deepEqual(got, Array.from({ length: 10 }, (_, i) => `payload-${i}`))
    })
    test(`${id} pings: 10 upstream pings ${how} get 10 pongs from the client, in order`, { timeout: 10_000 }, async (t) => {
      const { up } = await lab.goodToRaw(t)
      const bytes = Buffer.concat(Array.from({ length: 10 }, (_, i) => sframe(OP.PING, `payload-${i}`)))
      if (chop === undefined) up.peer.send(bytes)
      else await up.peer.sendInChops(bytes, chop)
      const got: string[] = []
      for (let i = 0; i < 10; i++) {
        const f = await up.peer.next()
        assert.equal(f.opcode, OP.PONG)
        got.push(f.payload.toString())
      }
      assert.deepEqual(got, Array.from({ length: 10 }, (_, i) => `payload-${i}`))
    })
  }

  test('2.x pings: the gateway\'s own heartbeat pings carry at most 125 bytes, are masked towards the upstream, and their pongs are not relayed', { timeout: 10_000 }, async (t) => {
    const hb = await makeLab({ config: { websocket: { pingInterval: '100ms', pongTimeout: '5s' } } })
    t.after(() => hb.close())
    const { client, up } = await hb.rawToRaw(t)
    const toClient = await client.next(3000, 'the heartbeat ping to the client')
    const toUp = await up.peer.next(3000, 'the heartbeat ping to the upstream')
    assert.deepEqual([toClient.opcode, toClient.masked], [OP.PING, false])
    assert.deepEqual([toUp.opcode, toUp.masked], [OP.PING, true])
    assert.ok(toClient.payload.length <= 125 && toUp.payload.length <= 125)
    client.send(cframe(OP.PONG, toClient.payload))
    up.peer.send(sframe(OP.PONG, toUp.payload))
    client.send(cframe(OP.TEXT, 'marker'))
    up.peer.send(sframe(OP.TEXT, 'marker'))
    let f = await up.peer.next()
    while (f.opcode === OP.PING) f = await up.peer.next()
    assert.deepEqual([f.opcode, f.payload.toString()], [OP.TEXT, 'marker'], 'the client\'s heartbeat pong stayed in the gateway')
    let g = await client.next()
    while (g.opcode === OP.PING) g = await client.next()
    assert.deepEqual([g.opcode, g.payload.toString()], [OP.TEXT, 'marker'], 'the upstream\'s heartbeat pong stayed in the gateway')
  })
})
