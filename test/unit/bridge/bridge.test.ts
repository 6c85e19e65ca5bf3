/**
 * The Bridge core without Fastify: a test client (ws) <-> a raw upgraded socket on a plain HTTP
 * server, joined by a Bridge to the raw socket of an upstream handshake (openUpstream) <-> a test
 * upstream (ws server). Heartbeat decisions are driven by calling tick() with synthetic times,
 * performance.now() mocked so that the bridge's own timestamps (last ping, last data, pong
 * arrival) follow the same clock.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createHash, randomBytes } from 'node:crypto'
import { deflateRawSync, constants as zlibConstants } from 'node:zlib'
import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import WebSocket, { WebSocketServer, type ClientOptions, type ServerOptions } from 'ws'
import { Bridge, type BridgeEnd, type BridgeInfo, type HeartbeatSettings } from '../../../src/bridge/bridge.js'
import { acceptKey, openUpstream } from '../../../src/bridge/upstream-handshake.js'
import { closed, collect, nextMessage } from '../../helpers/ws.js'
import { settle, waitFor, within } from '../../helpers/resources.js'
import { wireFrame } from '../../helpers/raw-ws.js'

function noop (): void {}

async function listen (t: TestContext, opts: ServerOptions = {}): Promise<{ url: string, next: () => Promise<WebSocket> }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, ...opts })
  await once(wss, 'listening')
  const sockets = new Set<WebSocket>()
  wss.on('connection', (ws) => {
    sockets.add(ws)
    ws.on('error', noop)
    ws.on('close', () => sockets.delete(ws))
  })
  t.after(() => new Promise<void>((resolve) => { for (const s of sockets) s.terminate(); wss.close(() => resolve()) }))
  return {
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`,
    next: async () => ((await once(wss, 'connection')) as [WebSocket])[0]
  }
}

/**
 * The gateway's front door: answers each upgrade with a 101 (with `extensions()` as its
 * Sec-WebSocket-Extensions, when not empty) and hands over the raw socket, paused.
 */
async function frontDoor (t: TestContext, extensions: () => string = () => ''): Promise<{ url: string, next: () => Promise<Duplex> }> {
  const server = http.createServer()
  const waiting: Array<(s: Duplex) => void> = []
  const sockets = new Set<Duplex>()
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const ext = extensions()
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Accept: ${acceptKey(String(req.headers['sec-websocket-key']))}\r\n` +
      (ext === '' ? '' : `Sec-WebSocket-Extensions: ${ext}\r\n`) + '\r\n')
    socket.pause()
    if (head.length > 0) socket.unshift(head)
    sockets.add(socket)
    waiting.shift()?.(socket)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()) }))
  return {
    url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`,
    next: async () => await new Promise<Duplex>((resolve) => waiting.push(resolve))
  }
}

interface Harness {
  bridge: Bridge
  /** The test's client, talking to the gateway-side client socket. */
  client: WebSocket
  /** The test upstream's server-side socket, talking to the gateway-side upstream socket. */
  upstream: WebSocket
  /** The bridge's two raw sockets. */
  gwClient: Duplex
  gwUpstream: Duplex
  ends: BridgeEnd[]
  ended: Promise<BridgeEnd>
}

interface PairOptions {
  client?: ClientOptions
  upstream?: ServerOptions
  info?: Partial<BridgeInfo>
  highWaterMark?: number
  maxPayload?: number
  messageLimit?: { rate: number, burst: number }
}

/** Two connections joined by a Bridge, as the websocket-bridge plugin joins them. */
async function pair (t: TestContext, opts: PairOptions = {}): Promise<Harness> {
  const front = await frontDoor(t)
  const back = await listen(t, opts.upstream)
  const frontConn = front.next()
  const client = new WebSocket(front.url, { perMessageDeflate: false, ...opts.client })
  client.on('error', noop)
  t.after(() => client.terminate())
  const [gwClient] = await Promise.all([frontConn, once(client, 'open')])
  const backConn = back.next()
  const [result, upstream] = await Promise.all([openUpstream({ url: back.url, headers: {}, protocols: [], connectTimeout: 5000 }), backConn])
  if (!result.ok) throw new Error(`upstream handshake failed: ${result.reason}`)
  t.after(() => result.socket.destroy())
  const ends: BridgeEnd[] = []
  let resolveEnd!: (e: BridgeEnd) => void
  const ended = new Promise<BridgeEnd>((resolve) => { resolveEnd = resolve })
  const info: BridgeInfo = {
    id: 'conn-1', route: '/chat', path: '/chat/room', clientIp: '127.0.0.1', userId: null,
    subprotocol: null, upstream: back.url, instanceId: 'unit', ...opts.info
  }
  const bridge = new Bridge(gwClient, result.socket, result.head, info, {
    highWaterMark: opts.highWaterMark ?? 1024 * 1024,
    maxPayload: opts.maxPayload ?? 16 * 1024 * 1024,
    messageLimit: opts.messageLimit,
    upstreamReads: result.reads,
    onEnd: (_b, e) => { ends.push(e); resolveEnd(e) }
  })
  return { bridge, client, upstream, gwClient, gwUpstream: result.socket, ends, ended }
}

/** One message each way through the bridge: everything either peer sent before it has been read by the bridge. */
async function roundTrip (h: Harness): Promise<void> {
  h.client.send('probe up')
  assert.equal((await within(nextMessage(h.upstream), 5000, 'probe at the upstream')).data.toString(), 'probe up')
  h.upstream.send('probe down')
  assert.equal((await within(nextMessage(h.client), 5000, 'probe at the client')).data.toString(), 'probe down')
}

/** Counts 'ping' events. */
function pingCounter (ws: WebSocket): { count: number } {
  const c = { count: 0 }
  ws.on('ping', () => { c.count++ })
  return c
}

/** Mocks performance.now() (restored after the test); the clock only moves when the test sets it. */
function mockClock (t: TestContext, start = 10_000): { now: number } {
  const clock = { now: start }
  t.mock.method(performance, 'now', () => clock.now)
  return clock
}

test('relays both ways in order, text as text and binary as binary, and counts exactly', async (t) => {
  const h = await pair(t)
  const toUpstream = collect(h.upstream, 3)
  h.client.send('héllo')
  h.client.send(Buffer.from([0, 1, 2, 255]))
  h.client.send('')
  const up = await within(toUpstream, 5000, 'messages at the upstream')
  assert.deepEqual(up.map((m) => [m.data.toString('hex'), m.isBinary]), [
    [Buffer.from('héllo').toString('hex'), false], ['000102ff', true], ['', false]
  ])
  const toClient = collect(h.client, 2)
  h.upstream.send(Buffer.alloc(10, 7))
  h.upstream.send('ok')
  const down = await within(toClient, 5000, 'messages at the client')
  assert.deepEqual(down.map((m) => [m.data.toString('hex'), m.isBinary]), [['07'.repeat(10), true], [Buffer.from('ok').toString('hex'), false]])

  const b = h.bridge
  assert.deepEqual([b.messagesFromClient, b.bytesFromClient, b.messagesToClient, b.bytesToClient], [3, 6 + 4 + 0, 2, 10 + 2])
  const json = b.toJSON()
  assert.deepEqual(
    [json.id, json.route, json.path, json.upstream, json.messagesFromClient, json.bytesFromClient, json.messagesToClient, json.bytesToClient, json.rttMs, json.lastPongAt],
    ['conn-1', '/chat', '/chat/room', b.info.upstream, 3, 10, 2, 12, null, null]
  )
  assert.ok(Date.parse(json.lastActivityAt as string) >= Date.parse(json.connectedAt as string))
})

test('send() reaches the client only and counts toward messagesToClient and bytesToClient', async (t) => {
  const h = await pair(t)
  const got = collect(h.client, 2)
  assert.equal(h.bridge.send('ünï', false), true)
  assert.equal(h.bridge.send(Buffer.from([1, 2, 3]), true), true)
  const m = await within(got, 5000, 'pushed messages')
  assert.deepEqual(m.map((x) => [x.data.toString(), x.isBinary]), [['ünï', false], ['\u0001\u0002\u0003', true]])
  assert.equal(h.bridge.messagesToClient, 2)
  assert.equal(h.bridge.bytesToClient, Buffer.byteLength('ünï') + 3)
  assert.equal(h.bridge.messagesFromClient, 0)
  // Nothing went upstream: the next thing the upstream reads is the probe.
  await roundTrip(h)
  assert.equal(h.bridge.messagesToClient, 3)
})

test('close(code, reason) closes both sides with those codes and calls onEnd exactly once', async (t) => {
  const h = await pair(t)
  const c = closed(h.client)
  const u = closed(h.upstream)
  h.bridge.close(4001, 'maintenance')
  h.bridge.close(4002, 'again')
  assert.equal(h.bridge.closed, true)
  assert.equal(h.bridge.send('late', false), false)
  assert.deepEqual(await within(c, 5000, 'client closed'), { code: 4001, reason: 'maintenance' })
  assert.deepEqual(await within(u, 5000, 'upstream closed'), { code: 4001, reason: 'maintenance' })
  assert.deepEqual(await within(h.ended, 5000, 'onEnd'), { by: 'gateway', clientCode: 4001, upstreamCode: 4001, reason: 'maintenance' })
  h.bridge.close(4003, 'after the end')
  h.bridge.terminate()
  await settle()
  assert.equal(h.ends.length, 1)
})

test('close() with a separate upstream code and reason', async (t) => {
  const h = await pair(t)
  const c = closed(h.client)
  const u = closed(h.upstream)
  h.bridge.close(1008, 'closed by administrator', 1000, 'client removed')
  assert.deepEqual(await within(c, 5000, 'client closed'), { code: 1008, reason: 'closed by administrator' })
  assert.deepEqual(await within(u, 5000, 'upstream closed'), { code: 1000, reason: 'client removed' })
  assert.deepEqual(await within(h.ended, 5000, 'onEnd'), { by: 'gateway', clientCode: 1008, upstreamCode: 1000, reason: 'closed by administrator' })
  await settle()
  assert.equal(h.ends.length, 1)
})

test('a close by either peer ends the pair once: relayed code, or 1014 / 1001 for a dropped peer', async (t) => {
  const byClient = await pair(t)
  const u1 = closed(byClient.upstream)
  byClient.client.close(4100, 'client leaves')
  assert.deepEqual(await within(u1, 5000, 'upstream closed'), { code: 4100, reason: 'client leaves' })
  assert.deepEqual(await within(byClient.ended, 5000, 'onEnd'), { by: 'client', clientCode: 4100, upstreamCode: 4100, reason: 'client leaves' })

  const upstreamDrops = await pair(t)
  const c2 = closed(upstreamDrops.client)
  upstreamDrops.upstream.terminate()
  assert.deepEqual(await within(c2, 5000, 'client closed'), { code: 1014, reason: 'upstream connection lost' })
  assert.deepEqual(await within(upstreamDrops.ended, 5000, 'onEnd'), { by: 'upstream', clientCode: 1014, upstreamCode: 1006, reason: '' })

  const clientDrops = await pair(t)
  const u3 = closed(clientDrops.upstream)
  clientDrops.client.terminate()
  assert.deepEqual(await within(u3, 5000, 'upstream closed'), { code: 1001, reason: 'client connection lost' })
  assert.deepEqual(await within(clientDrops.ended, 5000, 'onEnd'), { by: 'client', clientCode: 1006, upstreamCode: 1001, reason: '' })

  await settle()
  assert.deepEqual([byClient.ends.length, upstreamDrops.ends.length, clientDrops.ends.length], [1, 1, 1])
})

test('terminate() drops both sockets at once and calls onEnd once', async (t) => {
  const h = await pair(t)
  const c = closed(h.client)
  const u = closed(h.upstream)
  h.bridge.terminate()
  assert.equal((await within(c, 5000, 'client closed')).code, 1006)
  assert.equal((await within(u, 5000, 'upstream closed')).code, 1006)
  assert.deepEqual(await within(h.ended, 5000, 'onEnd'), { by: 'gateway', clientCode: 1006, upstreamCode: 1006, reason: 'terminated' })
  await settle()
  assert.equal(h.ends.length, 1)
})

const HB: HeartbeatSettings = { pingInterval: 1000, pongTimeout: 500, idleTimeout: 0 }

test('tick() pings both sides when pingInterval has passed, and a pong sets rttMs and lastPongAt', async (t) => {
  const clock = mockClock(t)
  const h = await pair(t)
  const clientPings = pingCounter(h.client)
  const upstreamPings = pingCounter(h.upstream)

  h.bridge.tick(10_999, Date.now(), HB)
  await roundTrip(h)
  assert.deepEqual([clientPings.count, upstreamPings.count], [0, 0], 'no ping before pingInterval')

  const pinged = Promise.all([once(h.client, 'ping'), once(h.upstream, 'ping')])
  const before = Date.now()
  h.bridge.tick(11_000, Date.now(), HB)
  // The pongs come back 7 ms later on the bridge's clock.
  clock.now = 11_007
  await within(pinged, 5000, 'a ping on each side')
  await roundTrip(h)
  assert.equal(h.bridge.rttMs, 7)
  assert.ok(h.bridge.lastPongAt >= before && h.bridge.lastPongAt <= Date.now(), `lastPongAt ${h.bridge.lastPongAt}`)
  assert.equal(h.bridge.toJSON().rttMs, 7)
  assert.equal(h.bridge.toJSON().lastPongAt, new Date(h.bridge.lastPongAt).toISOString())

  // Both pongs arrived: the pong deadline passes without consequence.
  h.bridge.tick(11_500, Date.now(), HB)
  h.bridge.tick(11_999, Date.now(), HB)
  await roundTrip(h)
  assert.equal(h.bridge.closed, false)
  assert.deepEqual([clientPings.count, upstreamPings.count], [1, 1], 'the next ping waits for pingInterval after the last one')

  const again = Promise.all([once(h.client, 'ping'), once(h.upstream, 'ping')])
  h.bridge.tick(12_000, Date.now(), HB)
  await within(again, 5000, 'the second ping on each side')
  assert.deepEqual([clientPings.count, upstreamPings.count], [2, 2])
})

test('tick() terminates a client that missed its pong and closes the upstream with 1001', async (t) => {
  mockClock(t)
  const h = await pair(t, { client: { autoPong: false } })
  const pinged = Promise.all([once(h.client, 'ping'), once(h.upstream, 'ping')])
  h.bridge.tick(11_000, Date.now(), HB)
  await within(pinged, 5000, 'a ping on each side')
  await roundTrip(h)
  const c = closed(h.client)
  const u = closed(h.upstream)
  h.bridge.tick(11_499, Date.now(), HB)
  assert.equal(h.bridge.closed, false, 'terminated before pongTimeout')
  h.bridge.tick(11_500, Date.now(), HB)
  assert.equal(h.bridge.closed, true)
  assert.equal((await within(c, 5000, 'client dropped')).code, 1006)
  assert.deepEqual(await within(u, 5000, 'upstream closed'), { code: 1001, reason: 'client not responding' })
  assert.deepEqual(await within(h.ended, 5000, 'onEnd'), { by: 'gateway', clientCode: 1006, upstreamCode: 1001, reason: 'client not responding' })
})

test('tick() terminates an upstream that missed its pong and closes the client with 1014', async (t) => {
  mockClock(t)
  const h = await pair(t, { upstream: { autoPong: false } })
  const pinged = Promise.all([once(h.client, 'ping'), once(h.upstream, 'ping')])
  h.bridge.tick(11_000, Date.now(), HB)
  await within(pinged, 5000, 'a ping on each side')
  // The client's pong is read before its probe: only the upstream is late.
  await roundTrip(h)
  const c = closed(h.client)
  const u = closed(h.upstream)
  h.bridge.tick(11_499, Date.now(), HB)
  assert.equal(h.bridge.closed, false, 'terminated before pongTimeout')
  h.bridge.tick(11_500, Date.now(), HB)
  assert.deepEqual(await within(c, 5000, 'client closed'), { code: 1014, reason: 'upstream not responding' })
  assert.equal((await within(u, 5000, 'upstream dropped')).code, 1006)
  assert.deepEqual(await within(h.ended, 5000, 'onEnd'), { by: 'gateway', clientCode: 1014, upstreamCode: 1006, reason: 'upstream not responding' })
})

test('tick() closes both sides with 1001 "idle timeout" after idleTimeout without data either way', async (t) => {
  const clock = mockClock(t)
  const h = await pair(t)
  const s: HeartbeatSettings = { pingInterval: 60_000, pongTimeout: 1000, idleTimeout: 300 }
  h.bridge.tick(10_299, Date.now(), s)
  assert.equal(h.bridge.closed, false)
  // Data from the client at 10 200, then from the upstream at 10 400, each restart the idle time.
  clock.now = 10_200
  h.client.send('x')
  await within(nextMessage(h.upstream), 5000, 'x at the upstream')
  h.bridge.tick(10_499, Date.now(), s)
  assert.equal(h.bridge.closed, false)
  clock.now = 10_400
  h.upstream.send('y')
  await within(nextMessage(h.client), 5000, 'y at the client')
  h.bridge.tick(10_699, Date.now(), s)
  assert.equal(h.bridge.closed, false)
  const c = closed(h.client)
  const u = closed(h.upstream)
  h.bridge.tick(10_700, Date.now(), s)
  assert.deepEqual(await within(c, 5000, 'client closed'), { code: 1001, reason: 'idle timeout' })
  assert.deepEqual(await within(u, 5000, 'upstream closed'), { code: 1001, reason: 'idle timeout' })
  assert.deepEqual(await within(h.ended, 5000, 'onEnd'), { by: 'gateway', clientCode: 1001, upstreamCode: 1001, reason: 'idle timeout' })
})

test('tick() closes both sides with 1008 "token expired" once info.expiresAt passes', async (t) => {
  mockClock(t)
  const expiresAt = Date.now() + 60_000
  const h = await pair(t, { info: { expiresAt } })
  const s: HeartbeatSettings = { pingInterval: 60_000, pongTimeout: 1000, idleTimeout: 0 }
  h.bridge.tick(10_000, expiresAt - 1, s)
  assert.equal(h.bridge.closed, false)
  const c = closed(h.client)
  const u = closed(h.upstream)
  h.bridge.tick(10_000, expiresAt, s)
  assert.deepEqual(await within(c, 5000, 'client closed'), { code: 1008, reason: 'token expired' })
  assert.deepEqual(await within(u, 5000, 'upstream closed'), { code: 1008, reason: 'token expired' })
  assert.deepEqual(await within(h.ended, 5000, 'onEnd'), { by: 'gateway', clientCode: 1008, upstreamCode: 1008, reason: 'token expired' })
})

test('tick() without a token expiry never closes for expiry', async (t) => {
  mockClock(t)
  const h = await pair(t)
  h.bridge.tick(10_000, Number.MAX_SAFE_INTEGER, { pingInterval: 60_000, pongTimeout: 1000, idleTimeout: 0 })
  await roundTrip(h)
  assert.equal(h.bridge.closed, false)
})

test('tick() on a closing bridge does nothing', async (t) => {
  mockClock(t)
  const h = await pair(t, { info: { expiresAt: 1 } })
  const clientPings = pingCounter(h.client)
  const c = closed(h.client)
  h.bridge.close(4000, 'done')
  // Everything is due: expiry, idle, pings. None of it may change how the pair ends.
  h.bridge.tick(1e9, Number.MAX_SAFE_INTEGER, { pingInterval: 1, pongTimeout: 1, idleTimeout: 1 })
  assert.deepEqual(await within(c, 5000, 'client closed'), { code: 4000, reason: 'done' })
  assert.deepEqual(await within(h.ended, 5000, 'onEnd'), { by: 'gateway', clientCode: 4000, upstreamCode: 4000, reason: 'done' })
  assert.equal(clientPings.count, 0)
})

test('backpressure: the bridge stops reading one side while the other is over highWaterMark, then resumes', async (t) => {
  const highWaterMark = 64 * 1024
  const h = await pair(t, { highWaterMark })
  // 16 MiB: more than the kernel buffers on the way can hold, so the bridge's own buffer must fill.
  const n = 256
  const message = (i: number): Buffer => { const b = Buffer.alloc(64 * 1024, i & 0xff); b.writeUInt32BE(i, 0); return b }

  // Client -> slow upstream.
  h.upstream.pause()
  const atUpstream = collect(h.upstream, n)
  for (let i = 0; i < n; i++) h.client.send(message(i))
  await waitFor(() => h.gwClient.isPaused(), 'the bridge to stop reading the client', 15_000)
  assert.ok(h.gwUpstream.writableLength > highWaterMark)
  assert.ok(h.bridge.messagesFromClient < n, 'everything was read although the upstream reads nothing')
  h.upstream.resume()
  const up = await within(atUpstream, 30_000, 'every message at the upstream')
  up.forEach((m, i) => assert.ok(m.data.equals(message(i)), `message ${i}`))
  await waitFor(() => !h.gwClient.isPaused(), 'the bridge to read the client again', 15_000)

  // Upstream -> slow client.
  h.client.pause()
  const atClient = collect(h.client, n)
  for (let i = 0; i < n; i++) h.upstream.send(message(i))
  await waitFor(() => h.gwUpstream.isPaused(), 'the bridge to stop reading the upstream', 15_000)
  assert.ok(h.gwClient.writableLength > highWaterMark)
  h.client.resume()
  const down = await within(atClient, 30_000, 'every message at the client')
  down.forEach((m, i) => assert.ok(m.data.equals(message(i)), `message ${i}`))
  await waitFor(() => !h.gwUpstream.isPaused(), 'the bridge to read the upstream again', 15_000)
  assert.deepEqual([h.bridge.messagesFromClient, h.bridge.messagesToClient], [n, n])
})

test('close() while a large frame is half relayed: the close frame waits for the frame to end, and the client gets the whole message, then the close', async (t) => {
  const h = await pair(t, { highWaterMark: 64 * 1024 })
  const big = Buffer.alloc(8 * 1024 * 1024, 0x5a)
  // The client reads nothing, so the gateway stops reading the upstream mid-frame.
  h.client.pause()
  h.upstream.send(big)
  await waitFor(() => h.gwUpstream.isPaused(), 'the bridge to stop reading the upstream', 15_000)
  assert.ok(h.bridge.bytesToClient === big.length, 'the frame header was read (its length is counted when it starts)')
  const got = nextMessage(h.client)
  const c = closed(h.client)
  h.bridge.close(4000, 'bye')
  h.client.resume()
  const m = await within(got, 15_000, 'the message at the client')
  assert.ok(m.data.equals(big), 'the message arrived whole')
  assert.deepEqual(await within(c, 5000, 'client closed'), { code: 4000, reason: 'bye' })
  assert.equal((await within(h.ended, 5000, 'onEnd')).clientCode, 4000)
})

test('a peer that ends its TCP in the middle of a relayed frame: the other side is dropped (no close frame can follow a half frame)', async (t) => {
  const h = await pair(t)
  const c = closed(h.client)
  // The upstream announces a 4 KiB binary frame, sends 100 bytes of it and vanishes.
  const raw = (h.upstream as unknown as { _socket: Socket })._socket
  raw.write(Buffer.concat([Buffer.from([0x82, 126, 0x10, 0x00]), Buffer.alloc(100, 1)]))
  await waitFor(() => h.bridge.bytesToClient === 4096, 'the frame header to pass the gateway')
  raw.destroy()
  assert.equal((await within(c, 5000, 'client dropped')).code, 1006)
  assert.deepEqual(await within(h.ended, 5000, 'onEnd'), { by: 'upstream', clientCode: 1014, upstreamCode: 1006, reason: '' })
})

test('a heartbeat ping waiting behind a large frame goes out at the next frame boundary, not at the end of a burst', async (t) => {
  mockClock(t)
  const h = await pair(t)
  const n = 40
  const big = Buffer.alloc(100 * 1024 + 3, 7)
  let pingAt = -1
  let received = 0
  h.upstream.on('ping', () => { if (pingAt === -1) pingAt = received })
  const all = collect(h.upstream, n)
  h.upstream.on('message', () => { received++ })
  // Once the bridge has relayed a couple of frames, a ping falls due: checked right after each of
  // the bridge's reads (a listener added after its own), so the rest of the burst is still unread.
  let due = false
  h.gwClient.on('data', () => {
    if (due || h.bridge.messagesFromClient < 2) return
    due = true
    h.bridge.tick(11_000, Date.now(), HB)
  })
  for (let i = 0; i < n; i++) h.client.send(big)
  await within(all, 15_000, 'every message at the upstream')
  assert.ok(due, 'the ping fell due during the burst')
  assert.ok(pingAt !== -1, 'the upstream got the ping')
  // It fell due during the third message at the latest: it goes right after that one.
  assert.ok(pingAt <= 4, `the ping arrived after ${pingAt} of ${n} messages, not at the next frame boundary`)
})

test('an admin push queued behind an unfinished fragmented message, then a close: the client gets the close, never a frame inside the message', async (t) => {
  const h = await pair(t)
  const c = closed(h.client)
  h.upstream.send('first part, ', { fin: false })
  await waitFor(() => h.bridge.bytesToClient === 'first part, '.length, 'the first fragment to pass the gateway')
  assert.equal(h.bridge.send('pushed', false), true)
  h.bridge.close(4000, 'bye')
  h.upstream.send('the rest', { fin: true })
  assert.deepEqual(await within(c, 5000, 'client closed'), { code: 4000, reason: 'bye' })
})

test('upstream reads go into one reused buffer: 16 MiB of messages of mixed sizes reach a client that reads in bursts intact and in order', async (t) => {
  const h = await pair(t, { highWaterMark: 64 * 1024 })
  assert.equal(h.gwUpstream.listenerCount('data'), 0, 'the upstream socket is read with onread, not data events')
  const sizes = [1, 125, 126, 65_535, 65_536, 200_003, 3, 1_000_000]
  const messages: Buffer[] = []
  const sent = createHash('sha256')
  for (let total = 0, n = 0; total < 16 * 1024 * 1024; n++) {
    const m = Buffer.allocUnsafe(sizes[n % sizes.length])
    for (let i = 0; i < m.length; i++) m[i] = (i * 31 + n * 7) & 0xff
    messages.push(m)
    sent.update(m)
    total += m.length
  }
  const got = createHash('sha256')
  let received = 0
  const all = new Promise<void>((resolve, reject) => {
    h.client.on('message', (data: Buffer) => {
      got.update(data)
      if (++received === messages.length) resolve()
    })
    // A corrupted stream shows as a framing error: the connection closes early.
    h.client.once('close', (code) => { reject(new Error(`closed with ${code} after ${received} of ${messages.length} messages`)) })
  })
  // The client reads in bursts, so the gateway's writes to it back up and some cannot finish at
  // once: those still point into the read buffer, which must then not be read into again.
  const sock = (h.client as unknown as { _socket: Socket })._socket
  const timer = setInterval(() => { if (sock.isPaused()) sock.resume(); else sock.pause() }, 3)
  t.after(() => clearInterval(timer))
  for (const m of messages) h.upstream.send(m, { binary: true })
  await within(all, 30_000, 'every message at the client')
  assert.equal(got.digest('hex'), sent.digest('hex'))
})

interface DeflatePairOptions {
  /** The upstream's permessage-deflate settings (ws): what it accepts decides the parameters. */
  upstream: Exclude<ServerOptions['perMessageDeflate'], boolean | undefined>
  maxPayload?: number
  highWaterMark?: number
  /** What the Bridge is told: the negotiated value (default), or the older `compressed` flag. */
  tell?: 'extensions' | 'compressed'
}

/**
 * A ws client and a ws upstream with permessage-deflate negotiated end to end, as the plugin
 * does it: the upstream's answer to the client's offer goes to the client in its 101, and to
 * the Bridge as `extensions`.
 */
async function deflatePair (t: TestContext, opts: DeflatePairOptions): Promise<Harness & { extensions: string }> {
  let answer = ''
  const front = await frontDoor(t, () => answer)
  const back = await listen(t, { perMessageDeflate: opts.upstream })
  const backConn = back.next()
  const [result, upstream] = await Promise.all([
    openUpstream({ url: back.url, headers: {}, protocols: [], extensions: 'permessage-deflate; client_max_window_bits', connectTimeout: 5000 }),
    backConn
  ])
  if (!result.ok) throw new Error(`upstream handshake failed: ${result.reason}`)
  t.after(() => result.socket.destroy())
  answer = result.extensions
  const frontConn = front.next()
  const client = new WebSocket(front.url, { perMessageDeflate: { threshold: 0 } })
  client.on('error', noop)
  t.after(() => client.terminate())
  const [gwClient] = await Promise.all([frontConn, once(client, 'open')])
  assert.equal(client.extensions, upstream.extensions, 'both peers use the same parameters')
  const ends: BridgeEnd[] = []
  let resolveEnd!: (e: BridgeEnd) => void
  const ended = new Promise<BridgeEnd>((resolve) => { resolveEnd = resolve })
  const info: BridgeInfo = { id: 'conn-z', route: '/z', path: '/z', clientIp: '127.0.0.1', userId: null, subprotocol: null, upstream: back.url, instanceId: 'unit' }
  const bridge = new Bridge(gwClient, result.socket, result.head, info, {
    highWaterMark: opts.highWaterMark ?? 1024 * 1024,
    maxPayload: opts.maxPayload ?? 64 * 1024,
    ...(opts.tell === 'compressed' ? { compressed: true } : { extensions: result.extensions }),
    upstreamReads: result.reads,
    onEnd: (_b, e) => { ends.push(e); resolveEnd(e) }
  })
  return { bridge, client, upstream, gwClient, gwUpstream: result.socket, ends, ended, extensions: result.extensions }
}

/** The raw socket under a ws peer, for frames a ws peer would never write. */
const rawOf = (ws: WebSocket): Socket => (ws as unknown as { _socket: Socket })._socket

/** A payload as permessage-deflate senders write it: sync-flushed, the 00 00 ff ff tail removed. */
function deflated (data: Buffer): Buffer {
  const c = deflateRawSync(data, { finishFlush: zlibConstants.Z_SYNC_FLUSH })
  return c.subarray(0, c.length - 4)
}

/**
 * Messages of up to `max` bytes inflated, compressible in different ways, one of exactly `max`.
 * (Random bytes come out of deflate a little larger than they went in, and maxPayload holds
 * for the compressed size too: those stay a little under.)
 */
function deflateMessages (max: number, n: number): Buffer[] {
  const words = Buffer.from('lorem ipsum dolor sit amet, {"id":42,"ok":true} ')
  const out: Buffer[] = [Buffer.alloc(0), Buffer.from('x')]
  for (let i = 0; i < n; i++) {
    const len = Math.floor(((i * 7919) % 1000) / 1000 * max)
    const b = Buffer.allocUnsafe(len)
    for (let j = 0; j < len; j++) b[j] = i % 3 === 0 ? (j * 31 + i) & 0xff : words[(j + i) % words.length]
    out.push(b)
  }
  out.push(Buffer.alloc(max, 0x20), randomBytes(max - 256))
  return out
}

async function exchange (h: Harness, messages: Buffer[]): Promise<void> {
  const atUpstream = collect(h.upstream, messages.length)
  for (const m of messages) h.client.send(m, { binary: true })
  const up = await within(atUpstream, 15_000, 'every message at the upstream')
  up.forEach((m, i) => assert.ok(m.data.equals(messages[i]), `message ${i} (${messages[i].length} bytes) at the upstream`))
  const atClient = collect(h.client, messages.length)
  for (const m of messages) h.upstream.send(m, { binary: true })
  const down = await within(atClient, 15_000, 'every message at the client')
  down.forEach((m, i) => assert.ok(m.data.equals(messages[i]), `message ${i} (${messages[i].length} bytes) at the client`))
}

const MAXP = 64 * 1024

test('permessage-deflate, every parameter negotiated (no context takeover both ways, 10-bit windows): messages up to maxPayload inflated relay both ways; one that inflates to maxPayload + 1 is 1009 both ways', { timeout: 30_000 }, async (t) => {
  const h = await deflatePair(t, { upstream: { threshold: 0, serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 10, clientMaxWindowBits: 10 } })
  for (const p of ['client_no_context_takeover', 'server_no_context_takeover', 'client_max_window_bits=10', 'server_max_window_bits=10']) assert.ok(h.extensions.includes(p), `${p} in ${h.extensions}`)
  await exchange(h, deflateMessages(MAXP, 30))
  const c = closed(h.client)
  const u = closed(h.upstream)
  const got: number[] = []
  h.upstream.on('message', (d: Buffer) => got.push(d.length))
  h.client.send(Buffer.alloc(MAXP + 1, 0x20))
  assert.deepEqual(await within(c, 5000, 'client closed'), { code: 1009, reason: 'message too big' })
  assert.deepEqual(await within(u, 5000, 'upstream closed'), { code: 1009, reason: 'message too big' })
  assert.deepEqual(got, [])
  assert.deepEqual(await within(h.ended, 5000, 'onEnd'), { by: 'client', clientCode: 1009, upstreamCode: 1009, reason: 'message too big' })
})

test('permessage-deflate with context takeover (ws defaults): matches reach into earlier messages, sizes stay exact both ways; the upstream\'s message over maxPayload is 1009', { timeout: 30_000 }, async (t) => {
  const h = await deflatePair(t, { upstream: { threshold: 0 } })
  assert.equal(h.extensions, 'permessage-deflate')
  const quarter = randomBytes(MAXP / 4)
  const whole = Buffer.concat([quarter, quarter, quarter, quarter])
  // After the first, all back-references, the first of them into the message before.
  await exchange(h, [quarter, whole, whole, ...deflateMessages(MAXP, 20)])
  const c = closed(h.client)
  const got: number[] = []
  h.client.on('message', (d: Buffer) => got.push(d.length))
  h.upstream.send(Buffer.concat([whole, Buffer.from('!')]))
  assert.deepEqual(await within(c, 5000, 'client closed'), { code: 1009, reason: 'message too big' })
  assert.deepEqual(got, [])
  assert.deepEqual(await within(h.ended, 5000, 'onEnd'), { by: 'upstream', clientCode: 1009, upstreamCode: 1009, reason: 'message too big' })
})

for (const [who, tell] of [['the negotiated extensions', 'extensions'], ['only the older compressed flag', 'compressed']] as const) {
  test(`a deflate bomb from the client (the Bridge told ${who}): 60 MiB in 61 KB, refused with 1009 before any of it reaches the upstream`, { timeout: 15_000 }, async (t) => {
    const h = await deflatePair(t, { upstream: { threshold: 0 }, tell })
    const got: number[] = []
    h.upstream.on('message', (d: Buffer) => got.push(d.length))
    const u = closed(h.upstream)
    const c = closed(h.client)
    const bomb = deflated(Buffer.alloc(60 * 1024 * 1024))
    rawOf(h.client).write(wireFrame(0x80 | 0x40 | 0x2, bomb, randomBytes(4)))
    assert.deepEqual(await within(u, 5000, 'upstream closed'), { code: 1009, reason: 'message too big' })
    assert.equal((await within(c, 5000, 'client closed')).code, 1009)
    assert.deepEqual(got, [])
    assert.deepEqual([h.bridge.bytesFromClient, h.bridge.messagesFromClient], [0, 0], 'nothing relayed, nothing counted')
    assert.deepEqual(await within(h.ended, 5000, 'onEnd'), { by: 'client', clientCode: 1009, upstreamCode: 1009, reason: 'message too big' })
  })
}

test('a deflate bomb from the upstream: the client gets 1009 and never the message', { timeout: 15_000 }, async (t) => {
  const h = await deflatePair(t, { upstream: { threshold: 0 } })
  const got: number[] = []
  h.client.on('message', (d: Buffer) => got.push(d.length))
  const c = closed(h.client)
  const u = closed(h.upstream)
  rawOf(h.upstream).write(wireFrame(0x80 | 0x40 | 0x2, deflated(Buffer.alloc(10 * 1024 * 1024, 1)), null))
  assert.deepEqual(await within(c, 5000, 'client closed'), { code: 1009, reason: 'message too big' })
  assert.equal((await within(u, 5000, 'upstream closed')).code, 1009)
  assert.deepEqual(got, [])
})

test('a bomb that starts after part of its frame was relayed: the upstream\'s TCP is ended (it sees 1006, never the message), the client gets 1009', { timeout: 15_000 }, async (t) => {
  const h = await deflatePair(t, { upstream: { threshold: 0 } })
  const got: number[] = []
  h.upstream.on('message', (d: Buffer) => got.push(d.length))
  const u = closed(h.upstream)
  const c = closed(h.client)
  const stored = randomBytes(30_000)
  const lens = Buffer.alloc(5)
  lens.writeUInt16LE(stored.length, 1)
  lens.writeUInt16LE(~stored.length & 0xffff, 3)
  const payload = Buffer.concat([lens, stored, deflated(Buffer.alloc(10 * 1024 * 1024))])
  const bytes = wireFrame(0x80 | 0x40 | 0x2, payload, randomBytes(4))
  const cut = 8 + lens.length + stored.length
  rawOf(h.client).write(bytes.subarray(0, cut))
  // The frame's header and stored part reach the upstream's socket before the rest is sent.
  await waitFor(() => rawOf(h.upstream).bytesRead >= cut, 'the first part at the upstream')
  rawOf(h.client).write(bytes.subarray(cut))
  assert.equal((await within(u, 5000, 'upstream closed')).code, 1006)
  assert.deepEqual(await within(c, 5000, 'client closed'), { code: 1009, reason: 'message too big' })
  assert.deepEqual(got, [])
  assert.deepEqual(await within(h.ended, 5000, 'onEnd'), { by: 'client', clientCode: 1009, upstreamCode: 1006, reason: 'message too big' })
})

test('malformed compressed data fails the connection with 1007: the sender\'s TCP ends right after the close frame, the other side is closed with 1007', { timeout: 15_000 }, async (t) => {
  const h = await deflatePair(t, { upstream: { threshold: 0 } })
  const u = closed(h.upstream)
  const ended = once(h.gwClient, 'finish')
  const sent = performance.now()
  // A stored block whose NLEN does not match its LEN.
  rawOf(h.client).write(wireFrame(0x80 | 0x40 | 0x1, Buffer.from([0x00, 0x05, 0x00, 0x00, 0x00]), randomBytes(4)))
  await within(ended, 1000, 'the gateway to end the client\'s TCP')
  t.diagnostic(`client TCP ended ${(performance.now() - sent).toFixed(1)} ms after the bad frame was written`)
  assert.deepEqual(await within(u, 5000, 'upstream closed'), { code: 1007, reason: 'invalid stored block lengths' })
  assert.deepEqual(await within(h.ended, 5000, 'onEnd'), { by: 'client', clientCode: 1007, upstreamCode: 1007, reason: 'invalid stored block lengths' })
})

test('extensions: "" (nothing negotiated): a frame with RSV1 fails the connection with 1002', { timeout: 10_000 }, async (t) => {
  const h = await pair(t)
  const c = closed(h.client)
  const ended = once(h.gwClient, 'finish')
  rawOf(h.client).write(wireFrame(0x80 | 0x40 | 0x1, deflated(Buffer.from('hi')), randomBytes(4)))
  await within(ended, 1000, 'the gateway to end the client\'s TCP')
  assert.equal((await within(c, 5000, 'client closed')).code, 1002)
  assert.deepEqual(await within(h.ended, 5000, 'onEnd'), { by: 'client', clientCode: 1002, upstreamCode: 1002, reason: 'RSV1 must be clear' })
})

for (const [from, what] of [['client', 'an unmasked frame'], ['upstream', 'a masked frame']] as const) {
  test(`fail the connection (RFC 6455 7.1.7): ${what} from the ${from}: 1002 to it and its TCP ended within 1 s, without waiting for its answer; the other side closed with 1002`, { timeout: 10_000 }, async (t) => {
    const h = await pair(t)
    const bad = from === 'client' ? h.client : h.upstream
    const good = from === 'client' ? h.upstream : h.client
    const gwSide = from === 'client' ? h.gwClient : h.gwUpstream
    const badClosed = closed(bad)
    const goodClosed = closed(good)
    // The misbehaving peer will not answer: its end of TCP ending is the gateway's doing.
    const endedByGateway = once(rawOf(bad), 'end')
    const gwFinished = once(gwSide, 'finish')
    const sent = performance.now()
    rawOf(bad).write(wireFrame(0x81, Buffer.from('hi'), from === 'client' ? null : randomBytes(4)))
    await within(Promise.all([endedByGateway, gwFinished]), 1000, 'the gateway to end that TCP connection')
    t.diagnostic(`${from} TCP ended ${(performance.now() - sent).toFixed(1)} ms after the bad frame was written`)
    assert.equal((await within(badClosed, 3000, `${from} closed`)).code, 1002)
    assert.deepEqual(await within(goodClosed, 3000, 'the other side closed'), { code: 1002, reason: from === 'client' ? 'MASK must be set' : 'MASK must be clear' })
    const end = await within(h.ended, 3000, 'onEnd')
    assert.deepEqual(end, { by: from, clientCode: 1002, upstreamCode: 1002, reason: from === 'client' ? 'MASK must be set' : 'MASK must be clear' })
  })
}

test('a failed client whose close frame must wait behind a frame it does not read is destroyed after 1 s, not after the 10 s close timeout', { timeout: 15_000 }, async (t) => {
  const h = await pair(t, { highWaterMark: 64 * 1024 })
  // The client reads nothing, so the relay to it stops in the middle of an 8 MiB frame.
  h.client.pause()
  h.upstream.send(Buffer.alloc(8 * 1024 * 1024, 1))
  await waitFor(() => h.gwUpstream.isPaused(), 'the bridge to stop reading the upstream', 15_000)
  const u = closed(h.upstream)
  const gone = once(h.gwClient, 'close')
  const sent = performance.now()
  rawOf(h.client).write(wireFrame(0x81, Buffer.from('unmasked'), null))
  await within(gone, 3000, 'the client\'s socket to be destroyed')
  const ms = performance.now() - sent
  t.diagnostic(`destroyed ${ms.toFixed(0)} ms after the bad frame`)
  assert.ok(ms < 2500, `within about 1 s (${ms.toFixed(0)} ms)`)
  assert.equal((await within(u, 5000, 'upstream closed')).code, 1002)
  assert.equal((await within(h.ended, 5000, 'onEnd')).clientCode, 1002)
})
