/**
 * Autobahn 3.x (reserved bits) and 4.x (opcodes): a frame with an RSV bit that no negotiated
 * extension defines, or with a reserved opcode (3-7, 11-15), fails the connection with 1002, from
 * either peer; what came before it is relayed, what comes after it is not.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { makeLab, type Lab } from './support/lab.js'
import { OP, RSV1, RSV2, RSV3, cframe, frame, sframe } from './support/frames.js'
import { badBothWays, trailingPing } from './support/cases.js'

describe('3.x reserved bits', () => {
  let lab: Lab
  before(async () => { lab = await makeLab() })
  after(() => lab.close())

  const text = (masked: boolean, payload: string, rsv = 0, opcode: number = OP.TEXT): Buffer => frame({ opcode, payload, rsv, mask: masked })
  badBothWays(() => lab, '3.1 reserved bits', 'a text frame with RSV1 set (no extension negotiated)', {
    send: (m) => [text(m, 'rsv1', RSV1)]
  })
  badBothWays(() => lab, '3.2 reserved bits', 'a text message, then a text frame with RSV2 set, then a ping', {
    send: (m) => [text(m, 'first'), text(m, 'rsv2', RSV2), trailingPing(m)],
    relayedFirst: ['first']
  })
  badBothWays(() => lab, '3.3 reserved bits', 'a text message, then a text frame with RSV3 set, then a ping, in chops of 1 byte', {
    send: (m) => [text(m, 'first'), text(m, 'rsv3', RSV3), trailingPing(m)],
    relayedFirst: ['first'],
    chop: 1
  })
  badBothWays(() => lab, '3.4 reserved bits', 'a text message, then a text frame with RSV1 and RSV3 set, then a ping', {
    send: (m) => [text(m, 'first'), text(m, 'rsv1+3', RSV1 | RSV3), trailingPing(m)],
    relayedFirst: ['first']
  })
  badBothWays(() => lab, '3.5 reserved bits', 'a binary frame with RSV1 and RSV2 set', {
    send: (m) => [frame({ opcode: OP.BINARY, payload: Buffer.from([0, 1, 2, 3]), rsv: RSV1 | RSV2, mask: m })]
  })
  badBothWays(() => lab, '3.6 reserved bits', 'a ping with RSV2 and RSV3 set', {
    send: (m) => [frame({ opcode: OP.PING, payload: 'rsv ping', rsv: RSV2 | RSV3, mask: m })]
  })
  badBothWays(() => lab, '3.7 reserved bits', 'a close frame with all three RSV bits set', {
    send: (m) => [frame({ opcode: OP.CLOSE, payload: Buffer.from([0x03, 0xe8]), rsv: RSV1 | RSV2 | RSV3, mask: m })]
  })

  test('3.x reserved bits: RSV bits clear on every kind of frame pass both ways (the check does not refuse good frames)', { timeout: 10_000 }, async (t) => {
    const { client, up } = await lab.rawToRaw(t)
    client.send(cframe(OP.TEXT, 'a'), cframe(OP.BINARY, Buffer.from([1])), cframe(OP.PING, 'p'), cframe(OP.PONG, 'q'))
    const seen = [await up.peer.next(), await up.peer.next(), await up.peer.next(), await up.peer.next()]
    assert.deepEqual(seen.map((f) => [f.opcode, f.rsv]), [[OP.TEXT, 0], [OP.BINARY, 0], [OP.PING, 0], [OP.PONG, 0]])
    up.peer.send(sframe(OP.TEXT, 'b'), sframe(OP.PING, 'r'))
    const back = [await client.next(), await client.next()]
    assert.deepEqual(back.map((f) => [f.opcode, f.rsv]), [[OP.TEXT, 0], [OP.PING, 0]])
  })
})

describe('4.x opcodes', () => {
  let lab: Lab
  before(async () => { lab = await makeLab() })
  after(() => lab.close())

  const reserved: Array<[string, number, 'empty' | 'payload' | 'echo-first' | 'chops']> = [
    ['4.1.1', 3, 'empty'], ['4.1.2', 4, 'payload'], ['4.1.3', 5, 'echo-first'], ['4.1.4', 6, 'echo-first'], ['4.1.5', 7, 'chops'],
    ['4.2.1', 11, 'empty'], ['4.2.2', 12, 'payload'], ['4.2.3', 13, 'echo-first'], ['4.2.4', 14, 'echo-first'], ['4.2.5', 15, 'chops']
  ]
  for (const [id, opcode, how] of reserved) {
    const kind = opcode < 8 ? 'non-control' : 'control'
    const what = how === 'empty'
      ? `a frame with the reserved ${kind} opcode ${opcode} and no payload`
      : how === 'payload'
        ? `a frame with the reserved ${kind} opcode ${opcode} and a payload`
        : how === 'echo-first'
          ? `a text message, then a frame with the reserved ${kind} opcode ${opcode}, then a ping`
          : `a text message, then a frame with the reserved ${kind} opcode ${opcode}, then a ping, in chops of 1 byte`
    const first = how === 'echo-first' || how === 'chops'
    badBothWays(() => lab, `${id} opcodes`, what, {
      send: (m) => [
        ...(first ? [frame({ opcode: OP.TEXT, payload: 'first', mask: m })] : []),
        frame({ opcode, payload: how === 'empty' ? '' : 'reserved opcode payload', mask: m }),
        ...(first ? [trailingPing(m)] : [])
      ],
      relayedFirst: first ? ['first'] : [],
      chop: how === 'chops' ? 1 : undefined
    })
  }
})
