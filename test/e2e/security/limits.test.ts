/**
 * Limit bypass attempts and resource bounds: upgrade headers on plain requests, bad tokens,
 * per-route connection counts, bytes sent before the 101. Each asserts what the upstream got.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect as tcpConnect, type Socket } from 'node:net'
import { once } from 'node:events'
import type { IncomingMessage } from 'node:http'
import { WebSocketServer } from 'ws'
import { gatewayFor } from '../../helpers/gateway.js'
import { upstreamFor } from '../../helpers/upstream.js'
import { connect, type HandshakeError } from '../../helpers/ws.js'
import { SECRET, sign, now } from '../../helpers/jwt.js'
import { encodeFrame } from '../../helpers/raw-ws.js'
import { waitFor, within } from '../../helpers/resources.js'
import { rawRequest } from './raw-http.js'

const UPGRADE = { upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' }

test('rateLimit.http counts every request: GETs dressed as upgrades are counted too', async (t) => {
  const up = await upstreamFor(t, { rejectStatus: 403 })
  const gw = await gatewayFor(t, { rateLimit: { http: { max: 5, window: '1m' } }, routes: [{ prefix: '/', upstream: up.url }] })
  const statuses: number[] = []
  for (let i = 0; i < 8; i++) statuses.push((await rawRequest(gw.port, '/x', UPGRADE)).status)
  assert.deepEqual(statuses, [403, 403, 403, 403, 403, 429, 429, 429])
  assert.equal(up.upgrades.length, 5, 'the upstream saw only the requests under the limit')
  assert.equal((await rawRequest(gw.port, '/x')).status, 429, 'and plain requests share the count')
})

test('requests refused by auth count against the limit (by IP), so bad tokens are not free', async (t) => {
  for (const keyBy of ['ip', 'user'] as const) {
    const seen: string[] = []
    const up = await upstreamFor(t, { http: (req, res) => { seen.push(req.headers.authorization ?? ''); res.end('ok') } })
    const gw = await gatewayFor(t, {
      auth: { jwt: { secret: SECRET } },
      rateLimit: { keyBy, http: { max: 3, window: '1m' } },
      routes: [{ prefix: '/', upstream: up.url, auth: 'required' }]
    })
    const bad = { authorization: 'Bearer not.a.token' }
    const statuses: number[] = []
    for (let i = 0; i < 5; i++) statuses.push((await rawRequest(gw.port, '/x', bad)).status)
    assert.deepEqual(statuses, [401, 401, 401, 429, 429], `keyBy ${keyBy}`)
    assert.equal((await rawRequest(gw.port, '/x')).status, 429, `keyBy ${keyBy}: no token either`)
    const good = { authorization: `Bearer ${sign({ sub: 'alice', exp: now() + 60 })}` }
    // keyBy ip: the IP is over its limit whatever the token; keyBy user: alice has her own count.
    assert.equal((await rawRequest(gw.port, '/x', good)).status, keyBy === 'ip' ? 429 : 200, `keyBy ${keyBy}: a valid token`)
    assert.equal(seen.length, keyBy === 'ip' ? 0 : 1, `keyBy ${keyBy}: what reached the upstream`)
  }
})

test('a route\'s own rateLimit.concurrent counts on its own, not against the top-level counter', async (t) => {
  const up = await upstreamFor(t)
  const gw = await gatewayFor(t, {
    rateLimit: { concurrent: 3 },
    routes: [{ prefix: '/a', upstream: up.url }, { prefix: '/b', upstream: up.url, rateLimit: { concurrent: 1 } }]
  })
  const a = await connect(`${gw.wsUrl}/a`)
  t.after(() => a.terminate())
  const b = await connect(`${gw.wsUrl}/b`)
  t.after(() => b.terminate())
  const refused = await connect(`${gw.wsUrl}/b`).then((ws) => { ws.terminate(); return 101 }, (e: HandshakeError) => e.status)
  assert.equal(refused, 429, 'the second /b is over /b\'s own limit')
  const a2 = await connect(`${gw.wsUrl}/a`)
  const a3 = await connect(`${gw.wsUrl}/a`)
  t.after(() => { a2.terminate(); a3.terminate() })
  assert.equal(up.sockets.size, 4, '/a still has its 3 and /b its 1')
})

/** An upstream whose WebSocket handshakes wait until `release()`. */
async function heldUpstream (t: Parameters<typeof upstreamFor>[0]): Promise<{ port: number, arrived: Promise<void>, release: () => void, received: () => number }> {
  const up = await upstreamFor(t)
  const wss = new WebSocketServer({ noServer: true })
  let bytes = 0
  let release!: () => void
  const released = new Promise<void>((resolve) => { release = resolve })
  let arrivedResolve!: () => void
  const arrived = new Promise<void>((resolve) => { arrivedResolve = resolve })
  up.server.removeAllListeners('upgrade')
  up.server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    arrivedResolve()
    void released.then(() => wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (d: Buffer) => { bytes += d.length })
      t.after(async () => { ws.terminate() })
    }))
  })
  return { port: up.port, arrived, release, received: () => bytes }
}

/** A raw client that sends a WebSocket handshake and does not wait for its answer; the gateway's side of it. */
async function handshakeWithoutWaiting (t: Parameters<typeof upstreamFor>[0], gw: Awaited<ReturnType<typeof gatewayFor>>): Promise<{ client: Socket, serverSide: () => Socket | undefined }> {
  let server: Socket | undefined
  gw.app.server.prependListener('upgrade', (_req: IncomingMessage, s: Socket) => { server = s })
  const client = tcpConnect(gw.port, '127.0.0.1')
  t.after(async () => { client.destroy() })
  await once(client, 'connect')
  client.write(`GET /x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${UPGRADE['sec-websocket-key']}\r\nSec-WebSocket-Version: 13\r\n\r\n`)
  return { client, serverSide: () => server }
}

test('bytes sent before the 101 are held up to 64 KiB, then the client socket is not read (no unbounded buffering)', async (t) => {
  const up = await heldUpstream(t)
  const gw = await gatewayFor(t, { websocket: { connectTimeout: '3s' }, routes: [{ prefix: '/', upstream: `http://127.0.0.1:${up.port}` }] })
  const { client, serverSide } = await handshakeWithoutWaiting(t, gw)
  await up.arrived
  // 64 frames of 256 KiB: 16 MiB that the client pushes without waiting for its 101.
  const frame = encodeFrame(2, Buffer.alloc(256 * 1024, 7))
  for (let i = 0; i < 64; i++) client.write(frame)
  await waitFor(() => serverSide() !== undefined && serverSide()!.isPaused(), 'the gateway to stop reading the client')
  const read = serverSide()!.bytesRead
  assert.ok(read < 512 * 1024, `the gateway read ${read} bytes of 16 MiB before the upgrade`)
  // Once the upstream answers, everything the client sent arrives, in order, nothing lost.
  up.release()
  await waitFor(() => up.received() === 64 * 256 * 1024, () => `all 16 MiB relayed after the upgrade (got ${up.received()})`, 20_000)
  client.destroy()
})

test('the bytes before the 101 of a handshake that fails are dropped with the connection', async (t) => {
  const up = await upstreamFor(t, { hangUpgrades: true })
  const gw = await gatewayFor(t, { websocket: { connectTimeout: '300ms' }, routes: [{ prefix: '/', upstream: up.url }] })
  const { client, serverSide } = await handshakeWithoutWaiting(t, gw)
  let answer = ''
  client.on('data', (c: Buffer) => { answer += c.toString('latin1') })
  // The gateway closes the connection with the 504 while the client is still writing (the
  // unread bytes may turn its close into a reset).
  client.on('error', () => {})
  const closed = new Promise<void>((resolve) => client.once('close', () => resolve()))
  const frame = encodeFrame(2, Buffer.alloc(256 * 1024, 7))
  for (let i = 0; i < 32; i++) client.write(frame)
  await closed
  assert.ok(answer === '' || answer.startsWith('HTTP/1.1 504 '), answer.slice(0, 40))
  assert.ok((serverSide()?.bytesRead ?? Infinity) < 512 * 1024, `the gateway read ${serverSide()?.bytesRead} bytes of 8 MiB`)
})

test('a socket that never reads cannot stay alive by replaying another connection\'s heartbeat pong', async (t) => {
  const { RawClient } = await import('../../helpers/raw-ws.js')
  const up = await upstreamFor(t)
  const gw = await gatewayFor(t, { websocket: { pingInterval: '200ms', pongTimeout: '400ms' }, routes: [{ prefix: '/', upstream: up.url }] })
  const reader = await RawClient.open(gw.port, '/a')
  t.after(() => reader.socket.destroy())
  let ping = await reader.next(2000)
  while (ping.opcode !== 9) ping = await reader.next(2000)
  const silent = await RawClient.open(gw.port, '/b')
  t.after(() => silent.socket.destroy())
  silent.socket.pause()
  // The silent client answers every ping it never read with the payload another one got.
  const replay = setInterval(() => { if (!silent.socket.destroyed) silent.send(encodeFrame(10, ping.payload)) }, 50)
  t.after(() => clearInterval(replay))
  // Terminated as any peer that misses its pong: pongTimeout after its first unanswered ping.
  await within(new Promise<void>((resolve) => silent.socket.once('close', () => resolve())), 3000, 'the silent client to be terminated')
  clearInterval(replay)
})
