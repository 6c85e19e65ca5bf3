/**
 * Autobahn 7.x (close handling): a close frame's code and reason reach the other peer exactly as
 * sent, both ways; nothing a peer sends after its close frame is relayed (a second close, pings,
 * data); a close payload of 1 byte, over 125 bytes or with a code no endpoint may send fails the
 * connection with 1002, and a reason that is not UTF-8 with 1007.
 */
import { after, before, describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { makeLab, type Lab } from './support/lab.js'
import { OP, cframe, closeBody, fragments, parseCloseFrame, sframe, type Frame } from './support/frames.js'
import { badBothWays } from './support/cases.js'
import type { RawPeer } from './support/frames.js'

/** Frames a peer received until its TCP connection ended (waits for the end, at most 3 s). */
async function allUntilEnd (peer: RawPeer): Promise<Frame[]> {
  await peer.tcpEnds(3000)
  return peer.received
}

const describeFrames = (frames: Frame[]): string[] => frames.map((f) => f.opcode === OP.CLOSE ? `close ${f.payload.toString('hex')}` : `${f.opcode}:${f.payload.toString()}`)

describe('7.x close handling', () => {
  let lab: Lab
  before(async () => { lab = await makeLab() })
  after(() => lab.close())

  test('7.1.1 close: a text message then a close 1000 from the client: the upstream gets both, the client gets its close answered and its TCP ended by the gateway', { timeout: 10_000 }, async (t) => {
    const { client, up } = await lab.rawToRaw(t)
    client.send(cframe(OP.TEXT, 'Hello World!'), cframe(OP.CLOSE, closeBody(1000)))
    const got = [await up.peer.next(), await up.peer.next()]
    assert.deepEqual(describeFrames(got), [`${OP.TEXT}:Hello World!`, 'close 03e8'])
    up.peer.send(sframe(OP.CLOSE, closeBody(1000)))
    const answer = await client.nextClose()
    assert.equal(answer.code, 1000)
    await client.tcpEnds(1000)
  })

  test('7.1.1 close: a text message then a close 1000 from the upstream: the client gets both, the upstream gets the close answer (masked)', { timeout: 10_000 }, async (t) => {
    const { client, up } = await lab.rawToRaw(t)
    up.peer.send(sframe(OP.TEXT, 'Hello World!'), sframe(OP.CLOSE, closeBody(1000)))
    const got = [await client.next(), await client.next()]
    assert.deepEqual(describeFrames(got), [`${OP.TEXT}:Hello World!`, 'close 03e8'])
    client.send(cframe(OP.CLOSE, closeBody(1000)))
    const answer = await up.peer.nextClose()
    assert.deepEqual([answer.code, answer.frame.masked], [1000, true])
    await client.tcpEnds(1000)
  })

  const afterClose: Array<[string, string, (masked: boolean) => Buffer[]]> = [
    ['7.1.2', 'a second close frame', (m) => [m ? cframe(OP.CLOSE, closeBody(1001, 'again')) : sframe(OP.CLOSE, closeBody(1001, 'again'))]],
    ['7.1.3', 'a ping', (m) => [m ? cframe(OP.PING, 'after close') : sframe(OP.PING, 'after close')]],
    ['7.1.4', 'a text message', (m) => [m ? cframe(OP.TEXT, 'after close') : sframe(OP.TEXT, 'after close')]]
  ]
  for (const [id, what, extra] of afterClose) {
    test(`${id} close: ${what} sent by the client after its close frame is not relayed: the upstream sees one close and nothing after it`, { timeout: 10_000 }, async (t) => {
      const { client, up } = await lab.rawToRaw(t)
      client.send(cframe(OP.CLOSE, closeBody(1000)), ...extra(true))
      assert.equal((await up.peer.nextClose()).code, 1000)
      up.peer.send(sframe(OP.CLOSE, closeBody(1000)))
      await client.nextClose()
      await client.tcpEnds(2000)
      assert.deepEqual(describeFrames(await allUntilEnd(up.peer)), ['close 03e8'])
    })
    test(`${id} close: ${what} sent by the upstream after its close frame is not relayed: the client sees one close and nothing after it`, { timeout: 10_000 }, async (t) => {
      const { client, up } = await lab.rawToRaw(t)
      up.peer.send(sframe(OP.CLOSE, closeBody(1000)), ...extra(false))
      assert.equal((await client.nextClose()).code, 1000)
      client.send(cframe(OP.CLOSE, closeBody(1000)))
      assert.deepEqual(describeFrames(await allUntilEnd(client)), ['close 03e8'])
    })
  }

  test('7.1.5 close: a first fragment, a close, then the last fragment from the client: the upstream gets the fragment and the close, never the last fragment', { timeout: 10_000 }, async (t) => {
    const { client, up } = await lab.rawToRaw(t)
    const [a, b] = fragments(OP.TEXT, ['fragment1', 'fragment2'], true)
    client.send(a, cframe(OP.CLOSE, closeBody(1000)), b)
    assert.equal((await up.peer.nextClose()).code, 1000)
    up.peer.send(sframe(OP.CLOSE, closeBody(1000)))
    await client.nextClose()
    assert.deepEqual(describeFrames(await allUntilEnd(up.peer)), [`${OP.TEXT}:fragment1`, 'close 03e8'])
  })

  test('7.1.6 close: a 256 KiB message, a close, then a ping from the client: the message arrives whole before the close, the ping never', { timeout: 10_000 }, async (t) => {
    const { client, up } = await lab.rawToRaw(t)
    const big = Buffer.alloc(256 * 1024, 0x42)
    client.send(cframe(OP.TEXT, big), cframe(OP.CLOSE, closeBody(1000)), cframe(OP.PING, 'late'))
    const m = await up.peer.nextMessage()
    assert.ok(m.data.equals(big))
    assert.equal((await up.peer.nextClose()).code, 1000)
    up.peer.send(sframe(OP.CLOSE, closeBody(1000)))
    await client.nextClose()
    const frames = await allUntilEnd(up.peer)
    assert.deepEqual(frames.map((f) => f.opcode), [OP.TEXT, OP.CLOSE])
  })

  /** The close payload sent by one side reaches the other exactly; the sender gets an answer with its code. */
  async function relays (t: TestContext, from: 'client' | 'upstream', payload: Buffer): Promise<void> {
    const { client, up } = await lab.rawToRaw(t)
    const [sender, receiver] = from === 'client' ? [client, up.peer] : [up.peer, client]
    sender.send(from === 'client' ? cframe(OP.CLOSE, payload) : sframe(OP.CLOSE, payload))
    const got = await receiver.nextClose()
    assert.equal(got.frame.payload.toString('hex'), payload.toString('hex'), 'the close payload as sent')
    assert.equal(got.frame.masked, from === 'client', 'masked towards the upstream only')
    receiver.send(from === 'client' ? sframe(OP.CLOSE, payload) : cframe(OP.CLOSE, payload))
    const answer = await sender.nextClose()
    assert.equal(answer.code, parseCloseFrame({ ...got.frame, payload }).code, 'the close answer carries the same code')
  }

  const payloads: Array<[string, string, Buffer]> = [
    ['7.3.1', 'an empty close payload (no status code)', Buffer.alloc(0)],
    ['7.3.3', 'a close with code 1000 and no reason', closeBody(1000)],
    ['7.3.4', 'a close with code 1000 and a reason', closeBody(1000, 'Hello World!')],
    ['7.3.5', 'a close with code 1000 and a 123-byte reason (125-byte payload, the largest)', closeBody(1000, '*'.repeat(123))],
    ['7.3.5', 'a close with code 4000 and a 123-byte reason in 2- and 3-byte characters', closeBody(4000, 'é'.repeat(60) + '✓')]
  ]
  for (const [id, what, payload] of payloads) {
    test(`${id} close: ${what} from the client reaches the upstream as sent`, { timeout: 10_000 }, (t) => relays(t, 'client', payload))
    test(`${id} close: ${what} from the upstream reaches the client as sent`, { timeout: 10_000 }, (t) => relays(t, 'upstream', payload))
  }

  badBothWays(() => lab, '7.3.2 close', 'a close payload of 1 byte', {
    send: (m) => [m ? cframe(OP.CLOSE, Buffer.from([0x03])) : sframe(OP.CLOSE, Buffer.from([0x03]))]
  })
  badBothWays(() => lab, '7.3.6 close', 'a close with a 124-byte reason (126-byte payload)', {
    send: (m) => [m ? cframe(OP.CLOSE, closeBody(1000, '*'.repeat(124))) : sframe(OP.CLOSE, closeBody(1000, '*'.repeat(124)))]
  })
  badBothWays(() => lab, '7.5.1 close', 'a close with code 1000 and a reason that is not UTF-8', {
    send: (m) => [m ? cframe(OP.CLOSE, closeBody(1000, Buffer.from('cebae1bdb9cf83cebcceb5eda080656469746564', 'hex'))) : sframe(OP.CLOSE, closeBody(1000, Buffer.from('cebae1bdb9cf83cebcceb5eda080656469746564', 'hex')))],
    code: 1007
  })

  const VALID = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]
  VALID.forEach((code, i) => {
    const payload = closeBody(code, `code ${code}`)
    test(`7.7.${i + 1} close: code ${code} from the client reaches the upstream with its reason`, { timeout: 10_000 }, (t) => relays(t, 'client', payload))
    test(`7.7.${i + 1} close: code ${code} from the upstream reaches the client with its reason`, { timeout: 10_000 }, (t) => relays(t, 'upstream', payload))
  })

  const INVALID = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
  INVALID.forEach((code, i) => {
    badBothWays(() => lab, `7.9.${i + 1} close`, `a close with code ${code}, which no endpoint may send`, {
      send: (m) => [m ? cframe(OP.CLOSE, closeBody(code)) : sframe(OP.CLOSE, closeBody(code))]
    })
  })
})
