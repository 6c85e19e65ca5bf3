/**
 * The WebSocket bridge's relay (spec section 4): messages relay in order, text stays text, binary
 * stays binary, byte for byte, up to exactly maxPayload, both ways at once; fragmented messages
 * from a raw-frame client arrive upstream as one message, with control frames interleaved.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import { acceptKey } from '../../../src/bridge/upstream-handshake.js'
import { encodeFrame as serverFrame } from '../../../src/bridge/frames.js'
import WebSocket from 'ws'
import { type TestUpstream, upstreamFor as up } from '../../helpers/upstream.js'
import { type TestGateway, gatewayFor as gateway } from '../../helpers/gateway.js'
import { closed, collect } from '../../helpers/ws.js'
import { waitFor } from '../../helpers/resources.js'
import { closePayload, encodeFrame, RawClient } from '../../helpers/raw-ws.js'

async function drained (gw: TestGateway, u: TestUpstream): Promise<void> {
  await waitFor(() => gw.app.connections.size === 0 && gw.app.websocketBridge.active === 0, 'the registry to empty')
  await waitFor(() => u.sockets.size === 0 && u.openTcp() === 0, 'upstream sockets to close')
}

/**
 * A client whose listeners can be attached before it opens. (The shared `connect()` helper
 * resolves a promise on 'open', but ws emits messages that came glued to the 101 from a
 * nextTick, before an `await` resumes: a burst sent by the upstream at once would be missed.)
 */
function client (url: string, opts: { maxPayload?: number } = {}): { ws: WebSocket, open: Promise<void> } {
  const ws = new WebSocket(url, { perMessageDeflate: false, ...opts })
  const open = new Promise<void>((resolve, reject) => {
    ws.once('open', () => { ws.off('error', reject); ws.on('error', () => {}); resolve() })
    ws.once('error', reject)
  })
  return { ws, open }
}

/** Deterministic PRNG (mulberry32): a failing run can be replayed from its seed. */
function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

interface Msg { data: Buffer, isBinary: boolean }

/**
 * `n` messages, text and binary, of sizes from 0 to exactly `max` bytes: mostly small, some up to
 * `max`, and every 97th exactly `max`. Text is valid UTF-8 with 1- to 4-byte characters, cut
 * from a pool built of 4-byte units so that any 4-aligned slice is whole characters.
 */
function makeMessages (seed: number, n: number, max: number): Msg[] {
  const rnd = prng(seed)
  const int = (k: number): number => Math.floor(rnd() * k)
  const units = ['abcd', 'éé', 'a€', '€z', '🌍', 'ü\u0000b', '\u{10FFFF}'].map((u) => Buffer.from(u))
  for (const u of units) assert.equal(u.length, 4)
  const poolLen = max + 4096
  const textPool = Buffer.concat(Array.from({ length: poolLen / 4 }, () => units[int(units.length)]))
  const binPool = Buffer.from(Array.from({ length: poolLen }, () => int(256)))
  const out: Msg[] = []
  for (let i = 0; i < n; i++) {
    const isBinary = rnd() < 0.5
    const r = rnd()
    const size = i % 97 === 0 ? max : i % 89 === 0 ? 0 : r < 0.7 ? int(256) : r < 0.97 ? int(4096) : int(max + 1)
    let data: Buffer
    if (isBinary) {
      const off = int(poolLen - size)
      data = Buffer.from(binPool.subarray(off, off + size))
    } else {
      const whole = size - (size % 4)
      const off = 4 * int((poolLen - whole) / 4)
      data = Buffer.concat([textPool.subarray(off, off + whole), Buffer.from('xyz'.slice(0, size % 4))])
    }
    out.push({ data, isBinary })
  }
  return out
}

/**
 * Checks a stream of received messages against `expected`, in order; resolves after the last one,
 * rejects on the first mismatch or if the socket closes first.
 */
function expectStream (ws: WebSocket, expected: Msg[], side: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let i = 0
    const onMessage = (data: Buffer, isBinary: boolean): void => {
      const e = expected[i]
      if (isBinary !== e.isBinary || !data.equals(e.data)) {
        cleanup()
        reject(new Error(`${side}: message ${i} differs: got ${isBinary ? 'binary' : 'text'} of ${data.length} bytes, expected ${e.isBinary ? 'binary' : 'text'} of ${e.data.length} bytes`))
        return
      }
      if (++i === expected.length) { cleanup(); resolve() }
    }
    const onClose = (code: number): void => { cleanup(); reject(new Error(`${side}: closed (${code}) after ${i} of ${expected.length} messages`)) }
    const cleanup = (): void => { ws.off('message', onMessage); ws.off('close', onClose) }
    ws.on('message', onMessage)
    ws.on('close', onClose)
  })
}

test('10,000 mixed text/binary messages of 0..maxPayload bytes relay byte for byte, in order, both ways at once', { timeout: 60_000 }, async (t) => {
  const MAX = 64 * 1024
  const N = 10_000
  const seed = Number(process.env.RELAY_SEED ?? Date.now() % 1_000_000)
  t.diagnostic(`relay seed ${seed} (RELAY_SEED=${seed} replays it)`)
  const toUpstream = makeMessages(seed, N, MAX)
  const toClient = makeMessages(seed + 1, N, MAX)
  assert.ok(toUpstream.some((m) => m.data.length === MAX && m.isBinary) && toUpstream.some((m) => m.data.length === MAX && !m.isBinary))
  assert.ok(toUpstream.some((m) => m.data.length === 0))

  let upstreamChecked: Promise<void> | null = null
  const u = await up(t, {
    maxPayload: MAX,
    onConnection: (ws) => {
      upstreamChecked = expectStream(ws, toUpstream, 'upstream')
      // Sent at once, before the client is even answered: the gateway must hold them, not drop them.
      for (const m of toClient) ws.send(m.data, { binary: m.isBinary })
    }
  })
  const gw = await gateway(t, { routes: [{ prefix: '/relay', upstream: u.url }], websocket: { maxPayload: '64kb' } })
  const started = performance.now()
  const { ws, open } = client(`${gw.wsUrl}/relay`, { maxPayload: MAX })
  const clientChecked = expectStream(ws, toClient, 'client')
  await open
  for (const m of toUpstream) ws.send(m.data, { binary: m.isBinary })
  await Promise.all([clientChecked, upstreamChecked])
  const bytes = (ms: Msg[]): number => ms.reduce((n, m) => n + m.data.length, 0)
  t.diagnostic(`relayed ${2 * N} messages, ${((bytes(toUpstream) + bytes(toClient)) / 1e6).toFixed(1)} MB in ${Math.round(performance.now() - started)} ms`)

  const c = gw.app.connections.list().connections[0]
  assert.equal(c.messagesFromClient, N)
  assert.equal(c.messagesToClient, N)
  assert.equal(c.bytesFromClient, bytes(toUpstream))
  assert.equal(c.bytesToClient, bytes(toClient))

  const done = closed(ws)
  ws.close(1000)
  assert.equal((await done).code, 1000)
  await drained(gw, u)
})

test('a burst sent by the upstream right on connect is neither lost nor reordered', { timeout: 10_000 }, async (t) => {
  const u = await up(t, {
    onConnection: (ws) => { for (let i = 0; i < 200; i++) ws.send(`early ${i}`) }
  })
  const gw = await gateway(t, { routes: [{ prefix: '/early', upstream: u.url }] })
  const { ws, open } = client(`${gw.wsUrl}/early`)
  const burst = collect(ws, 200)
  await open
  const got = await burst
  assert.deepEqual(got.map((m) => m.data.toString()), Array.from({ length: 200 }, (_, i) => `early ${i}`))
  const done = closed(ws)
  ws.close(1000)
  await done
  await drained(gw, u)
})

test('frames that come in the same read as the upstream\'s 101 reach the client first, in order', { timeout: 10_000 }, async (t) => {
  // A raw upstream that writes its 101 and two frames with one write: they reach the gateway in
  // one read, so the frames are the handshake's leftover, relayed before anything read later.
  const server = http.createServer()
  const upstreamSockets: Duplex[] = []
  server.on('upgrade', (req, socket: Duplex) => {
    upstreamSockets.push(socket)
    socket.on('error', () => {})
    const accept = acceptKey(String(req.headers['sec-websocket-key']))
    socket.write(Buffer.concat([
      Buffer.from(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`),
      serverFrame(0x1, Buffer.from('glued one'), false),
      serverFrame(0x2, Buffer.from([1, 2, 3]), false)
    ]))
    setImmediate(() => socket.write(serverFrame(0x1, Buffer.from('later'), false)))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => { server.close() })
  const gw = await gateway(t, { routes: [{ prefix: '/glued', upstream: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }] })
  const { ws, open } = client(`${gw.wsUrl}/glued`)
  const got = collect(ws, 3)
  await open
  assert.deepEqual((await got).map((m) => [m.isBinary, m.isBinary ? [...m.data] : m.data.toString()]), [[false, 'glued one'], [true, [1, 2, 3]], [false, 'later']])
  // This upstream never answers a close: it drops the connection, and the client gets 1014.
  const done = closed(ws)
  for (const s of upstreamSockets) s.destroy()
  assert.equal((await done).code, 1014)
  await waitFor(() => gw.app.connections.size === 0 && gw.app.websocketBridge.active === 0, 'the registry to empty')
})

// ---------------------------------------------------------------------------------------------
// Raw-frame client: the fragments and control frames a ws client would never produce on its own.
// ---------------------------------------------------------------------------------------------

for (const kind of ['text', 'binary'] as const) {
  test(`a ${kind} message in 3 fragments with pings between them arrives upstream as one ${kind} message; the pings get pongs`, { timeout: 10_000 }, async (t) => {
    const u = await up(t)
    const gw = await gateway(t, { routes: [{ prefix: '/frag', upstream: u.url }] })
    const conn = u.nextConnection()
    const raw = await RawClient.open(gw.port, '/frag/x')
    t.after(() => raw.socket.destroy())
    const { ws: server } = await conn
    const received = new Promise<Msg>((resolve) => server.once('message', (data: Buffer, isBinary: boolean) => resolve({ data, isBinary })))

    // Text: fragment boundaries cut through multi-byte characters (valid only once joined).
    // Binary: a 1-byte, an empty and a 70,000-byte fragment (7-, 7- and 64-bit length forms).
    const whole = kind === 'text'
      ? Buffer.from('héllo → wörld 🌍, ünïcödé ✓'.repeat(20))
      : randomBytes(70_001)
    const parts = kind === 'text'
      ? [whole.subarray(0, 2), whole.subarray(2, 300), whole.subarray(300)]
      : [whole.subarray(0, 1), whole.subarray(1, 1), whole.subarray(1)]
    if (kind === 'text') assert.throws(() => new TextDecoder('utf-8', { fatal: true }).decode(parts[0]), 'the first fragment alone is not valid UTF-8')
    raw.send(encodeFrame(kind === 'text' ? 0x1 : 0x2, parts[0], false))
    raw.send(encodeFrame(0x9, Buffer.from('ping-1')))
    raw.send(encodeFrame(0x0, parts[1], false))
    raw.send(encodeFrame(0x9, Buffer.from('ping-2')))
    raw.send(encodeFrame(0x0, parts[2], true))

    const got = await received
    assert.equal(got.isBinary, kind === 'binary')
    assert.ok(got.data.equals(whole), 'payload is the concatenation of the fragments')

    // The pings pass through to the upstream, whose pongs (same payload) come back, then the echo.
    const frames = [await raw.next(), await raw.next(), await raw.next()]
    assert.deepEqual(frames.slice(0, 2).map((f) => [f.opcode, f.payload.toString()]), [[0xA, 'ping-1'], [0xA, 'ping-2']])
    const echo = frames[2]
    assert.equal(echo.opcode, kind === 'text' ? 0x1 : 0x2)
    assert.equal(echo.fin, true)
    assert.ok(echo.payload.equals(whole), 'the echo comes back whole')

    // A clean close from the raw client: its code reaches the upstream, the gateway answers in kind.
    const upClosed = closed(server)
    raw.send(encodeFrame(0x8, closePayload(4005, 'raw bye')))
    const reply = await raw.next()
    assert.equal(reply.opcode, 0x8)
    assert.equal(reply.payload.readUInt16BE(0), 4005)
    assert.deepEqual(await upClosed, { code: 4005, reason: 'raw bye' })
    raw.socket.end()
    await drained(gw, u)
  })
}

test('a fragmented message is relayed whole even when its fragments trickle in one TCP write at a time', { timeout: 10_000 }, async (t) => {
  const u = await up(t)
  const gw = await gateway(t, { routes: [{ prefix: '/frag', upstream: u.url }] })
  const conn = u.nextConnection()
  const raw = await RawClient.open(gw.port, '/frag')
  t.after(() => raw.socket.destroy())
  const { ws: server } = await conn
  const N = 20
  const got = collect(server, N)
  // N messages of 5 fragments each, every frame written separately and split mid-header.
  const expected: Buffer[] = []
  for (let m = 0; m < N; m++) {
    const parts = Array.from({ length: 5 }, (_, i) => Buffer.from(`m${m}f${i};`))
    expected.push(Buffer.concat(parts))
    for (let i = 0; i < 5; i++) {
      const f = encodeFrame(i === 0 ? 0x1 : 0x0, parts[i], i === 4)
      raw.send(f.subarray(0, 1))
      raw.send(f.subarray(1))
    }
  }
  const msgs = await got
  assert.deepEqual(msgs.map((m) => m.data.toString()), expected.map((b) => b.toString()))
  assert.ok(msgs.every((m) => !m.isBinary))
  raw.socket.destroy()
  await drained(gw, u)
})

test('a text message that is not valid UTF-8 passes through as sent; the upstream rejects it with 1007 and the client gets that 1007', { timeout: 10_000 }, async (t) => {
  // The frame-level relay leaves UTF-8 validation to the endpoints (ws validates text): the
  // close code they answer with passes through like any other.
  const u = await up(t)
  const gw = await gateway(t, { routes: [{ prefix: '/utf', upstream: u.url }] })
  const conn = u.nextConnection()
  const raw = await RawClient.open(gw.port, '/utf')
  t.after(() => raw.socket.destroy())
  const { ws: server } = await conn
  let relayed = 0
  server.on('message', () => { relayed++ })
  // ws stops reading a peer after refusing its frame, so its own 'close' says 1006: its error
  // is what shows that the upstream refused the message.
  const upError = new Promise<Error & { code?: string }>((resolve) => server.once('error', resolve))
  raw.send(encodeFrame(0x1, Buffer.from([0x68, 0xff, 0xfe, 0x69])))
  const reply = await raw.next()
  assert.equal(reply.opcode, 0x8)
  assert.equal(reply.payload.readUInt16BE(0), 1007)
  assert.equal((await upError).code, 'WS_ERR_INVALID_UTF8')
  assert.equal(relayed, 0, 'the upstream never took it as a message')
  raw.socket.end()
  await drained(gw, u)
})
