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
import { createHash } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import WebSocket, { WebSocketServer, type ClientOptions, type ServerOptions } from 'ws'
import { Bridge, type BridgeEnd, type BridgeInfo, type HeartbeatSettings } from '../../src/bridge/bridge.js'
import { acceptKey, openUpstream } from '../../src/bridge/upstream-handshake.js'
import { closed, collect, nextMessage } from '../helpers/ws.js'
import { settle, waitFor, within } from '../helpers/resources.js'

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

/** The gateway's front door: answers each upgrade with a 101 and hands over the raw socket, paused. */
async function frontDoor (t: TestContext): Promise<{ url: string, next: () => Promise<Duplex> }> {
  const server = http.createServer()
  const waiting: Array<(s: Duplex) => void> = []
  const sockets = new Set<Duplex>()
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Accept: ${acceptKey(String(req.headers['sec-websocket-key']))}\r\n\r\n`)
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
