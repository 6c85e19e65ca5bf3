/**
 * Autobahn 12.x and 13.x (permessage-deflate). The gateway negotiates compression end to end:
 * the client's permessage-deflate offers go upstream unchanged (parameters included, other
 * extensions left out), the upstream's answer comes back to the client as the upstream chose it,
 * and compressed frames pass as they are. Whatever parameters the two peers agree on, messages
 * of every size, fragmented or not, arrive intact.
 */
import { after, before, describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { constants, deflateRawSync, inflateRawSync } from 'node:zlib'
import WebSocket, { type PerMessageDeflateOptions } from 'ws'
import { waitFor } from '../../helpers/resources.js'
import { assertClosedWith, makeLab, watch, within, type GoodPeer, type Lab } from './support/lab.js'
import { OP, RSV1, RSV2, fragments, frame, sframe } from './support/frames.js'
import { openRawClient } from './support/raw.js'

const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff])
/** A message compressed on its own (no shared window), as permessage-deflate sends it. */
const compress = (b: Buffer): Buffer => { const d = deflateRawSync(b, { finishFlush: constants.Z_SYNC_FLUSH }); return d.subarray(0, d.length - 4) }
const inflate = (b: Buffer): Buffer => inflateRawSync(Buffer.concat([b, TAIL]), { finishFlush: constants.Z_SYNC_FLUSH })

/** Answers of the hand-driven upstream, by request path: the test sets one before it connects. */
const answers = new Map<string, string | undefined>()

describe('12.x/13.x permessage-deflate', () => {
  let lab: Lab
  /** Sec-WebSocket-Extensions the correct (ws) upstream answered, by request path. */
  const goodAnswers = new Map<string, string | undefined>()
  before(async () => {
    lab = await makeLab({ good: { perMessageDeflate: true }, raw: { extensions: (_offer, head) => answers.get(head.line.split(' ')[1]) } })
    lab.good.wss.on('headers', (headers: string[], req) => {
      const line = headers.find((h) => h.toLowerCase().startsWith('sec-websocket-extensions:'))
      goodAnswers.set(req.url ?? '', line?.slice(line.indexOf(':') + 1).trim())
    })
  })
  after(() => lab.close())

  let n = 0
  /** A raw client to the hand-driven upstream, which answers `answer` (undefined: no extension). */
  async function negotiate (t: TestContext, offer: string | null, answer: string | undefined): Promise<{ seen: string | undefined, got: string | undefined, status: string }> {
    const path = `/r/pmd-${++n}`
    answers.set(path, answer)
    const conn = lab.raw.connection(path)
    try {
      const { peer, head } = await openRawClient(lab.gw.port, path, offer === null ? '' : `Sec-WebSocket-Extensions: ${offer}\r\n`)
      t.after(() => peer.destroy())
      const up = await conn
      t.after(() => up.peer.destroy())
      return { seen: up.request.headers['sec-websocket-extensions'], got: head.headers['sec-websocket-extensions'], status: head.line }
    } catch (err) {
      conn.catch(() => {})
      return { seen: lab.raw.requests.find((r) => r.line.includes(path))?.headers['sec-websocket-extensions'], got: undefined, status: String((err as Error).message).split('\r\n')[0] }
    }
  }

  test('12.x permessage-deflate: the client\'s offer with parameters (client_no_context_takeover; server_max_window_bits=10) reaches the upstream unchanged, and the upstream\'s answer reaches the client as it chose it', { timeout: 10_000 }, async (t) => {
    const r = await negotiate(t, 'permessage-deflate; client_no_context_takeover; server_max_window_bits=10', 'permessage-deflate; server_max_window_bits=10; client_no_context_takeover')
    assert.equal(r.seen, 'permessage-deflate; client_no_context_takeover; server_max_window_bits=10')
    assert.equal(r.got, 'permessage-deflate; server_max_window_bits=10; client_no_context_takeover')
  })

  test('12.x permessage-deflate: an upstream that narrows the offer (client_max_window_bits=12, server_no_context_takeover) is answered to the client exactly as it chose', { timeout: 10_000 }, async (t) => {
    const r = await negotiate(t, 'permessage-deflate; client_max_window_bits', 'permessage-deflate; client_max_window_bits=12; server_no_context_takeover')
    assert.equal(r.seen, 'permessage-deflate; client_max_window_bits')
    assert.equal(r.got, 'permessage-deflate; client_max_window_bits=12; server_no_context_takeover')
  })

  test('12.x permessage-deflate: several permessage-deflate offers reach the upstream in order; offers of other extensions are left out', { timeout: 10_000 }, async (t) => {
    const r = await negotiate(t, 'x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=10; client_max_window_bits, foo; bar=1, permessage-deflate; client_max_window_bits', 'permessage-deflate')
    assert.equal(r.seen, 'permessage-deflate; server_max_window_bits=10; client_max_window_bits, permessage-deflate; client_max_window_bits')
    assert.equal(r.got, 'permessage-deflate')
  })

  test('12.x permessage-deflate: no offer from the client, no offer upstream; an upstream that declines an offer gets the client a 101 without extensions', { timeout: 10_000 }, async (t) => {
    const none = await negotiate(t, null, undefined)
    assert.equal(none.seen, undefined)
    assert.equal(none.got, undefined)
    const declined = await negotiate(t, 'permessage-deflate', undefined)
    assert.equal(declined.seen, 'permessage-deflate')
    assert.match(declined.status, /^HTTP\/1\.1 101/)
    assert.equal(declined.got, undefined)
  })

  test('12.x permessage-deflate: an upstream that accepts an extension the client never offered, or permessage-deflate twice, gets the client a 502, not a 101', { timeout: 10_000 }, async (t) => {
    const unasked = await negotiate(t, null, 'permessage-deflate')
    assert.match(unasked.status, /502/)
    const twice = await negotiate(t, 'permessage-deflate', 'permessage-deflate, permessage-deflate')
    assert.match(twice.status, /502/)
  })

  test('12.x permessage-deflate: a client message compressed and split in 3 frames (RSV1 on the first only) reaches the upstream whole, and the compressed echo comes back', { timeout: 10_000 }, async (t) => {
    const path = `/w/pmd-frag-${++n}`
    const { peer: client, head } = await openRawClient(lab.gw.port, path, 'Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n')
    t.after(() => client.destroy())
    assert.match(String(head.headers['sec-websocket-extensions']), /^permessage-deflate/)
    const text = 'compressed and fragmented '.repeat(200)
    const z = compress(Buffer.from(text))
    const third = Math.ceil(z.length / 3)
    client.send(...fragments(OP.TEXT, [z.subarray(0, third), z.subarray(third, 2 * third), z.subarray(2 * third)], true, RSV1))
    const echo = await client.nextMessage()
    assert.equal(echo.frames[0].rsv, RSV1, 'the echo is compressed')
    assert.equal(inflate(echo.data).toString(), text)
  })

  test('12.x permessage-deflate: an upstream message compressed and split in 4 frames reaches a ws client whole', { timeout: 10_000 }, async (t) => {
    const path = `/r/pmd-${++n}`
    answers.set(path, 'permessage-deflate; server_no_context_takeover')
    const conn = lab.raw.connection(path)
    const ws = new WebSocket(lab.gw.wsUrl + path, { perMessageDeflate: true })
    const client = watch(ws)
    t.after(() => ws.terminate())
    const up = await conn
    t.after(() => up.peer.destroy())
    const text = 'from the upstream, compressed '.repeat(300)
    const z = compress(Buffer.from(text))
    const q = Math.ceil(z.length / 4)
    up.peer.send(...fragments(OP.TEXT, [0, 1, 2, 3].map((i) => z.subarray(i * q, (i + 1) * q)), false, RSV1))
    await waitFor(() => client.messages.length === 1, 'the message at the client', 3000)
    assert.equal(client.messages[0].data.toString(), text)
  })

  /** A ws client with these permessage-deflate options, to the ws upstream: what each side saw. */
  async function wsPair (t: TestContext, pmd: PerMessageDeflateOptions | true): Promise<{ client: GoodPeer, offer: string | undefined, answer: string | undefined, clientGot: string | undefined }> {
    const path = `/w/pmd-ws-${++n}`
    const ws = new WebSocket(lab.gw.wsUrl + path, { perMessageDeflate: pmd })
    let clientGot: string | undefined
    ws.once('upgrade', (res) => { clientGot = res.headers['sec-websocket-extensions'] })
    const client = watch(ws)
    t.after(() => ws.terminate())
    await within(new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) }), 3000, 'the client to open')
    const req = lab.good.upgrades.find((r) => r.url === path)
    return { client, offer: req?.headers['sec-websocket-extensions'] as string | undefined, answer: goodAnswers.get(path), clientGot }
  }

  /** Messages of each size, `count` of each, sent in a row and echoed: all intact, in order. */
  async function roundTrips (client: GoodPeer, sizes: number[], count: number, binary: boolean): Promise<void> {
    const sent: Buffer[] = []
    for (const size of sizes) {
      for (let i = 0; i < count; i++) {
        const b = Buffer.alloc(size)
        for (let j = 0; j < size; j++) b[j] = binary ? (j * 7 + i * 13 + size) & 0xff : 0x61 + ((j + i) % 26)
        sent.push(b)
        client.ws.send(binary ? b : b.toString(), { binary })
      }
    }
    await waitFor(() => client.messages.length === sent.length, () => `${sent.length} echoes (${client.messages.length} so far)`, 8000)
    client.messages.forEach((m, i) => assert.ok(m.data.equals(sent[i]), `message ${i} (${sent[i].length} bytes)`))
  }

  for (const [id, binary] of [['12.1', false], ['12.2', true]] as const) {
    test(`${id}.x permessage-deflate: ${binary ? 'binary' : 'text'} messages of 16 B to 256 KiB, 10 of each in a row, compressed end to end (ws to ws), are echoed intact`, { timeout: 15_000 }, async (t) => {
      const p = await wsPair(t, true)
      assert.match(String(p.clientGot), /^permessage-deflate/)
      assert.equal(p.clientGot, p.answer, 'the client got the upstream\'s answer as it was')
      await roundTrips(p.client, [16, 64, 256, 1024, 4096, 16384, 65536, 262144], 10, binary)
    })
  }

  const combos: Array<[string, string, PerMessageDeflateOptions, RegExp]> = [
    ['13.1', 'the default offer (client_max_window_bits)', {}, /client_max_window_bits/],
    ['13.2', 'client_no_context_takeover', { clientNoContextTakeover: true }, /client_no_context_takeover/],
    ['13.3', 'server_max_window_bits=9', { serverMaxWindowBits: 9 }, /server_max_window_bits=9/],
    ['13.4', 'server_max_window_bits=15', { serverMaxWindowBits: 15 }, /server_max_window_bits=15/],
    ['13.5', 'client_no_context_takeover with server_max_window_bits=9', { clientNoContextTakeover: true, serverMaxWindowBits: 9 }, /client_no_context_takeover.*server_max_window_bits=9/],
    ['13.6', 'server_no_context_takeover with client_max_window_bits=10', { serverNoContextTakeover: true, clientMaxWindowBits: 10 }, /server_no_context_takeover.*client_max_window_bits=10/]
  ]
  for (const [id, what, pmd, expected] of combos) {
    test(`${id}.x permessage-deflate: offering ${what}: the offer reaches the upstream unchanged, its answer reaches the client, and 3 sizes x 10 messages are echoed intact`, { timeout: 15_000 }, async (t) => {
      const p = await wsPair(t, pmd)
      assert.match(String(p.offer), expected, `the offer the upstream received: ${p.offer}`)
      assert.equal(p.clientGot, p.answer, 'the client got the upstream\'s answer as it was')
      await roundTrips(p.client, [64, 4096, 65536], 10, false)
    })
  }

  test('13.7 permessage-deflate: a client offering three variants gets the upstream\'s pick of them, and compressed messages then work both ways', { timeout: 10_000 }, async (t) => {
    const path = `/w/pmd-multi-${++n}`
    const offer = 'permessage-deflate; client_no_context_takeover; server_no_context_takeover; server_max_window_bits=9, permessage-deflate; client_no_context_takeover, permessage-deflate'
    const { peer: client, head } = await openRawClient(lab.gw.port, path, `Sec-WebSocket-Extensions: ${offer}\r\n`)
    t.after(() => client.destroy())
    assert.equal(lab.good.upgrades.find((r) => r.url === path)?.headers['sec-websocket-extensions'], offer)
    assert.equal(head.headers['sec-websocket-extensions'], goodAnswers.get(path))
    for (const text of ['first', 'second message, longer '.repeat(50), 'third']) {
      client.send(frame({ opcode: OP.TEXT, payload: compress(Buffer.from(text)), rsv: RSV1, mask: true }))
      const echo = await client.nextMessage()
      // ws compresses only messages of 1 KiB or more.
      assert.equal((echo.frames[0].rsv === RSV1 ? inflate(echo.data) : echo.data).toString(), text)
    }
  })

  test('12.x permessage-deflate: a compressed message sent fragmented by a ws client reaches a ws upstream whole, and one fragmented by the upstream reaches the client whole', { timeout: 10_000 }, async (t) => {
    const { client, server: up } = await lab.goodToGood(t, { perMessageDeflate: true })
    assert.match(client.ws.extensions, /permessage-deflate/)
    const server = up.ws
    const atServer: Buffer[] = []
    server.removeAllListeners('message')
    server.on('message', (d: Buffer) => atServer.push(Buffer.from(d)))
    for (const [i, part] of ['one, '.repeat(100), 'two, '.repeat(100), 'three'].entries()) client.ws.send(part, { fin: i === 2, compress: true })
    await waitFor(() => atServer.length === 1, 'the message at the upstream', 3000)
    assert.equal(atServer[0].toString(), 'one, '.repeat(100) + 'two, '.repeat(100) + 'three')
    for (const [i, part] of ['uno, '.repeat(100), 'dos'].entries()) server.send(part, { fin: i === 1, compress: true })
    await waitFor(() => client.messages.length === 1, 'the message at the client', 3000)
    assert.equal(client.messages[0].data.toString(), 'uno, '.repeat(100) + 'dos')
  })

  test('12.x permessage-deflate: a compressed client message that is not valid DEFLATE: the client gets 1007 (from the gateway or the upstream), and the upstream delivers no message', { timeout: 10_000 }, async (t) => {
    const path = `/w/pmd-bad-${++n}`
    const { peer: client, head } = await openRawClient(lab.gw.port, path, 'Sec-WebSocket-Extensions: permessage-deflate\r\n')
    t.after(() => client.destroy())
    assert.match(String(head.headers['sec-websocket-extensions']), /^permessage-deflate/)
    // Block type 3 (reserved): invalid in every DEFLATE stream.
    client.send(frame({ opcode: OP.TEXT, payload: Buffer.from([0xff, 0xff, 0xff, 0xff]), rsv: RSV1, mask: true }))
    const c = await client.nextClose()
    assert.equal(c.code, 1007, `close ${c.code} ${JSON.stringify(c.reason)}`)
    assert.equal(c.before.filter((f) => f.opcode < 8).length, 0, 'no echo: the upstream delivered no message')
  })

  test('12.x permessage-deflate: with compression negotiated, RSV1 on a continuation from the upstream, or RSV1+RSV2 on a first frame, fails the connection (1002) and the client is closed', { timeout: 10_000 }, async (t) => {
    for (const bad of [
      [sframe(OP.TEXT, compress(Buffer.from('a')), { fin: false, rsv: RSV1 }), sframe(OP.CONT, 'b', { rsv: RSV1 })],
      [sframe(OP.TEXT, compress(Buffer.from('a')), { rsv: RSV1 | RSV2 })]
    ]) {
      const path = `/r/pmd-${++n}`
      answers.set(path, 'permessage-deflate')
      const conn = lab.raw.connection(path)
      const ws = new WebSocket(lab.gw.wsUrl + path, { perMessageDeflate: true })
      const client = watch(ws)
      t.after(() => ws.terminate())
      const up = await conn
      t.after(() => up.peer.destroy())
      await within(new Promise((resolve) => ws.once('open', resolve)), 3000, 'the client to open')
      up.peer.send(...bad)
      const c = await up.peer.nextClose()
      assert.equal(c.code, 1002)
      await assertClosedWith(client, 1002, 'the client')
      assert.deepEqual(client.messages, [])
    }
  })
})

describe('12.x permessage-deflate and websocket.maxPayload (64kb)', () => {
  let lab: Lab
  before(async () => { lab = await makeLab({ config: { websocket: { maxPayload: '64kb' } }, good: { perMessageDeflate: true } }) })
  after(() => lab.close())

  test('12.x permessage-deflate: a compressed client message that inflates past maxPayload (1 MiB of zeros, about 1 KiB on the wire) is closed with 1009 and never reaches the upstream', { timeout: 10_000 }, async (t) => {
    const { client, server } = await lab.goodToGood(t, { perMessageDeflate: true })
    assert.match(client.ws.extensions, /permessage-deflate/)
    client.ws.send(Buffer.alloc(1024 * 1024), { binary: true, compress: true })
    await waitFor(() => client.closeInfo !== null || client.messages.length > 0, 'a close or an echo at the client', 3000)
    assert.deepEqual(server.messages.map((m) => m.data.length), [], 'the upstream got no message')
    assert.equal(client.closeInfo?.code, 1009, 'the client was closed with 1009')
  })
})
