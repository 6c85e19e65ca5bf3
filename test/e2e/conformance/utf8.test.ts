/**
 * Autobahn 6.x (UTF-8 handling). The gateway relays frames: it does not validate the UTF-8 of
 * text messages (it reads frame headers only), so valid text split anywhere, even inside a
 * character, passes; invalid text passes too, and the endpoint that receives it fails the
 * connection with 1007, which the gateway relays to the sender. (The gateway does check the UTF-8
 * of close reasons, which it reads itself: see close.test.ts, 7.5.1.)
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { waitFor } from '../../helpers/resources.js'
import { makeLab, within, type Lab } from './support/lab.js'
import { OP, chops, cframe, fragments, sframe } from './support/frames.js'

const HELLO = 'Hello-µ@ßöäüàá-UTF-8!!'
const KOSME = 'κόσμε'
/** 6.3.1: "κόσμε" followed by a UTF-16 surrogate (ED A0 80) and "edited". */
const INVALID = Buffer.from('cebae1bdb9cf83cebcceb5eda080656469746564', 'hex')

describe('6.x UTF-8', () => {
  let lab: Lab
  before(async () => { lab = await makeLab() })
  after(() => lab.close())

  test('6.1.1 utf-8: an empty text message reaches the upstream as an empty text message, and its echo comes back', { timeout: 10_000 }, async (t) => {
    const { client, server } = await lab.rawToGood(t)
    client.send(cframe(OP.TEXT, ''))
    const echo = await client.nextMessage()
    assert.deepEqual([echo.opcode, echo.data.length], [OP.TEXT, 0])
    assert.deepEqual(server.messages.map((m) => [m.data.length, m.isBinary]), [[0, false]])
  })

  test('6.1.2 utf-8: a text message of 3 empty fragments reaches the upstream as one empty text message', { timeout: 10_000 }, async (t) => {
    const { client, server } = await lab.rawToGood(t)
    client.send(...fragments(OP.TEXT, ['', '', ''], true))
    assert.equal((await client.nextMessage()).data.length, 0)
    assert.deepEqual(server.messages.map((m) => m.data.toString()), [''])
  })

  test('6.1.3 utf-8: a text message of fragments of 0, 6 and 0 bytes reaches the upstream as "middle"', { timeout: 10_000 }, async (t) => {
    const { client, server } = await lab.rawToGood(t)
    client.send(...fragments(OP.TEXT, ['', 'middle', ''], true))
    assert.equal((await client.nextMessage()).data.toString(), 'middle')
    assert.deepEqual(server.messages.map((m) => m.data.toString()), ['middle'])
  })

  const valid: Array<[string, string, string, number | 'cut']> = [
    ['6.2.1', 'in one frame', HELLO, 0],
    ['6.2.2', 'in 2 fragments cut between characters', HELLO, 'cut'],
    ['6.2.3', 'fragmented at every byte (characters cut across frames)', HELLO, 1],
    ['6.2.4', 'fragmented at every byte (characters cut across frames)', KOSME, 1]
  ]
  for (const [id, how, text, size] of valid) {
    test(`${id} utf-8: valid UTF-8 text "${text}" ${how} reaches the upstream whole, and its echo comes back`, { timeout: 10_000 }, async (t) => {
      const { client, server } = await lab.rawToGood(t)
      const bytes = Buffer.from(text)
      const parts = size === 0 ? [bytes] : size === 'cut' ? [Buffer.from(text.slice(0, 7)), Buffer.from(text.slice(7))] : chops(bytes, size)
      client.send(...fragments(OP.TEXT, parts, true))
      assert.equal((await client.nextMessage()).data.toString(), text)
      assert.deepEqual(server.messages.map((m) => m.data.toString()), [text])
    })
  }

  test('6.2.3 utf-8: valid UTF-8 text from the upstream fragmented at every byte reaches the client whole', { timeout: 10_000 }, async (t) => {
    const { client, up } = await lab.goodToRaw(t)
    up.peer.send(...fragments(OP.TEXT, chops(Buffer.from(HELLO), 1), false))
    await waitFor(() => client.messages.length === 1, 'the message at the client', 3000)
    assert.equal(client.messages[0].data.toString(), HELLO)
    assert.equal(client.closeInfo, null, 'the client is still open')
  })

  test('6.3.x utf-8: invalid UTF-8 text from the client (overlong, surrogate, above U+10FFFF, stray continuation, truncated) reaches the upstream byte for byte: the gateway leaves text validation to the endpoints', { timeout: 10_000 }, async (t) => {
    const { client, up } = await lab.rawToRaw(t)
    const samples = [INVALID, Buffer.from([0xc0, 0xaf]), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from([0xf4, 0x90, 0x80, 0x80]), Buffer.from([0x80]), Buffer.from([0x41, 0xe2, 0x82])]
    for (const s of samples) client.send(cframe(OP.TEXT, s))
    for (const s of samples) {
      const f = await up.peer.next()
      assert.equal(f.opcode, OP.TEXT)
      assert.equal(f.payload.toString('hex'), s.toString('hex'))
    }
    for (const s of samples) up.peer.send(sframe(OP.TEXT, s))
    for (const s of samples) assert.equal((await client.next()).payload.toString('hex'), s.toString('hex'))
  })

  for (const [id, how, parts] of [['6.3.1', 'in one frame', [INVALID]], ['6.3.2', 'fragmented at every byte', chops(INVALID, 1)]] as const) {
    test(`${id} utf-8: invalid UTF-8 text from the client ${how}: the upstream fails the connection with 1007, and that 1007 reaches the client`, { timeout: 10_000 }, async (t) => {
      const { client, server } = await lab.rawToGood(t)
      client.send(...fragments(OP.TEXT, [...parts], true))
      const c = await client.nextClose()
      assert.equal(c.code, 1007, `the client's close (reason ${JSON.stringify(c.reason)})`)
      // ws stops reading once it fails a connection, so its own close event says 1006.
      await within(server.closed, 3000, 'the upstream to close')
      assert.deepEqual(server.messages, [], 'the upstream (which validates) delivered no message')
    })
  }

  test('6.3.1 utf-8: invalid UTF-8 text from the upstream: the client fails the connection with 1007, and that 1007 reaches the upstream', { timeout: 10_000 }, async (t) => {
    const { client, up } = await lab.goodToRaw(t)
    up.peer.send(sframe(OP.TEXT, INVALID))
    const c = await up.peer.nextClose()
    assert.equal(c.code, 1007, `the upstream's close (reason ${JSON.stringify(c.reason)})`)
    assert.equal(c.frame.masked, true)
    await within(client.closed, 3000, 'the client to close')
    assert.deepEqual(client.messages, [])
  })
})
