/**
 * The frame-header scanner and the framing rules (src/bridge/frame-scanner.ts), on plain bytes:
 * every length encoding, masks, headers split at every byte, and every rule in both directions.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { frameError, frameProblem, newFrameHeader, scanFrameHeader } from '../../../src/bridge/frame-scanner.js'
import { encodeFrame, OP_BINARY, OP_PING, OP_TEXT } from '../../../src/bridge/frames.js'

test('scanFrameHeader: 7-bit, 16-bit and 64-bit lengths, masked and not; FIN, RSV1 and opcode', () => {
  const cases: Array<[string, Buffer, Partial<ReturnType<typeof newFrameHeader>>]> = [
    ['5 bytes, unmasked', encodeFrame(OP_TEXT, Buffer.from('hello'), false), { fin: true, opcode: OP_TEXT, masked: false, length: 5, size: 2 }],
    ['5 bytes, masked', encodeFrame(OP_TEXT, Buffer.from('hello'), true), { masked: true, length: 5, size: 6 }],
    ['126 bytes (16-bit length)', encodeFrame(OP_BINARY, Buffer.alloc(126), false), { opcode: OP_BINARY, length: 126, size: 4 }],
    ['65536 bytes (64-bit length), masked', encodeFrame(OP_BINARY, Buffer.alloc(65536), true), { length: 65536, size: 14 }],
    ['a ping', encodeFrame(OP_PING, Buffer.from('p'), false), { opcode: OP_PING, length: 1 }],
    ['RSV1 on a non-final text frame', Buffer.from([0x41, 0x00]), { fin: false, rsv1: true, opcode: OP_TEXT, length: 0, size: 2 }]
  ]
  for (const [what, bytes, want] of cases) {
    const h = newFrameHeader()
    assert.equal(scanFrameHeader(bytes, 0, bytes.length, h), true, what)
    for (const [k, v] of Object.entries(want)) assert.equal(h[k as keyof typeof h], v, `${what}: ${k}`)
    assert.equal(h.b0, bytes[0], what)
  }
})

test('scanFrameHeader: a header split at any byte is incomplete until its last byte, at any offset', () => {
  const frame = encodeFrame(OP_BINARY, Buffer.alloc(70000), true) // 2 + 8 + 4 header bytes
  const buf = Buffer.concat([Buffer.from('xyz'), frame])
  const h = newFrameHeader()
  for (let end = 3; end < 3 + 14; end++) assert.equal(scanFrameHeader(buf, 3, end, h), false, `${end - 3} header bytes`)
  assert.equal(scanFrameHeader(buf, 3, 3 + 14, h), true)
  assert.equal(h.length, 70000)
  assert.equal(h.size, 14)
})

test('scanFrameHeader: a 64-bit length above 2^53 reads as MAX_SAFE_INTEGER (refused later by maxPayload)', () => {
  const h = newFrameHeader()
  const b = Buffer.from([0x82, 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
  assert.equal(scanFrameHeader(b, 0, b.length, h), true)
  assert.equal(h.length, Number.MAX_SAFE_INTEGER)
  const exact = Buffer.from([0x82, 127, 0, 0x1f, 0xff, 0xff, 0, 0, 0, 1])
  assert.equal(scanFrameHeader(exact, 0, exact.length, h), true)
  assert.equal(h.length, 0x1fffff * 2 ** 32 + 1)
})

const MASKED = true
const UNMASKED = false

test('frameError: every framing rule, in both directions, as plain bytes', () => {
  // [what, first byte, MASK bit, length, from the client, in a fragmented message, deflate negotiated, expected]
  const cases: Array<[string, number, boolean, number, boolean, boolean, boolean, string | null]> = [
    ['a masked text frame from the client', 0x81, MASKED, 5, true, false, false, null],
    ['an unmasked text frame from the upstream', 0x81, UNMASKED, 5, false, false, false, null],
    ['an unmasked frame from the client', 0x81, UNMASKED, 5, true, false, false, 'WS_ERR_EXPECTED_MASK'],
    ['a masked frame from the upstream', 0x82, MASKED, 5, false, false, false, 'WS_ERR_UNEXPECTED_MASK'],
    ['an unmasked ping from the client', 0x89, UNMASKED, 0, true, false, false, 'WS_ERR_EXPECTED_MASK'],
    ['a masked close from the upstream', 0x88, MASKED, 2, false, false, false, 'WS_ERR_UNEXPECTED_MASK'],
    ['RSV1 without an extension', 0xc1, MASKED, 5, true, false, false, 'WS_ERR_UNEXPECTED_RSV_1'],
    ['RSV1 on a first frame with permessage-deflate', 0xc1, MASKED, 5, true, false, true, null],
    ['RSV1 on a non-final first frame with permessage-deflate', 0x42, UNMASKED, 5, false, false, true, null],
    ['RSV1 on a continuation with permessage-deflate', 0xc0, MASKED, 5, true, true, true, 'WS_ERR_UNEXPECTED_RSV_1'],
    ['RSV1 on a ping with permessage-deflate', 0xc9, UNMASKED, 0, false, false, true, 'WS_ERR_UNEXPECTED_RSV_1'],
    ['RSV2', 0xa1, MASKED, 5, true, false, true, 'WS_ERR_UNEXPECTED_RSV_2_3'],
    ['RSV3', 0x91, UNMASKED, 5, false, false, true, 'WS_ERR_UNEXPECTED_RSV_2_3'],
    ['reserved data opcode 3', 0x83, MASKED, 1, true, false, false, 'WS_ERR_INVALID_OPCODE'],
    ['reserved data opcode 7', 0x87, UNMASKED, 1, false, false, false, 'WS_ERR_INVALID_OPCODE'],
    ['reserved control opcode 0xB', 0x8b, MASKED, 1, true, false, false, 'WS_ERR_INVALID_OPCODE'],
    ['reserved control opcode 0xF', 0x8f, UNMASKED, 1, false, false, false, 'WS_ERR_INVALID_OPCODE'],
    ['a fragmented ping', 0x09, MASKED, 1, true, false, false, 'WS_ERR_EXPECTED_FIN'],
    ['a fragmented close', 0x08, UNMASKED, 2, false, false, false, 'WS_ERR_EXPECTED_FIN'],
    ['a ping of 125 bytes', 0x89, MASKED, 125, true, false, false, null],
    ['a ping of 126 bytes', 0x89, MASKED, 126, true, false, false, 'WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH'],
    ['a pong of 65536 bytes', 0x8a, UNMASKED, 65536, false, false, false, 'WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH'],
    ['a close of 1 byte', 0x88, MASKED, 1, true, false, false, 'WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH'],
    ['a close of 0 bytes', 0x88, MASKED, 0, true, false, false, null],
    ['a continuation with no message', 0x80, MASKED, 1, true, false, false, 'WS_ERR_UNEXPECTED_CONTINUATION'],
    ['a continuation inside a message', 0x80, UNMASKED, 1, false, true, false, null],
    ['a text frame inside a message', 0x81, MASKED, 1, true, true, false, 'WS_ERR_EXPECTED_CONTINUATION'],
    ['a binary frame inside a message', 0x02, UNMASKED, 1, false, true, false, 'WS_ERR_EXPECTED_CONTINUATION'],
    ['a ping inside a message', 0x89, MASKED, 1, true, true, false, null]
  ]
  for (const [what, b0, masked, length, fromClient, inMessage, deflate, expected] of cases) {
    assert.equal(frameError(b0, masked, length, fromClient, inMessage, deflate), expected, what)
  }
  assert.equal(frameProblem('WS_ERR_INVALID_OPCODE', 0x83, 1).message, 'invalid opcode 3')
  assert.equal(frameProblem('WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH', 0x89, 126).message, 'invalid payload length 126')
  const e = frameProblem('WS_ERR_EXPECTED_MASK', 0x81, 5)
  assert.deepEqual([e.code, e.closeCode, e.fail, e.message], ['WS_ERR_EXPECTED_MASK', 1002, true, 'MASK must be set'])
})
