/**
 * No socket, timer or registry entry outlives a connection, however it ends: 1,000 connections
 * opened and ended every way (client or upstream closes, client or upstream drops), 20 at a time,
 * then everything is counted again. Also clients that vanish while the gateway is still opening
 * their upstream.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import WebSocket from 'ws'
import { startUpstream } from '../../helpers/upstream.js'
import { startGateway, type TestGateway } from '../../helpers/gateway.js'
import { closed, connect, nextMessage } from '../../helpers/ws.js'
import { activeResources, settle, tcpSockets, trackTimers, waitFor, within } from '../../helpers/resources.js'

const CYCLES = 1000
const CONCURRENCY = 20

type Mode = 'client closes' | 'upstream closes' | 'client drops' | 'upstream drops'
const MODES: Mode[] = ['client closes', 'upstream closes', 'client drops', 'upstream drops']

/** Runs `fn(0..n-1)` with at most `concurrency` running at once; rejects on the first failure. */
async function pool (n: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < n) await fn(next++)
  }
  await Promise.all(Array.from({ length: Math.min(n, concurrency) }, worker))
}

/** What the gateway and the test servers hold once every connection has gone. */
async function settled (gw: TestGateway, upstreamOpen: () => number): Promise<void> {
  await waitFor(() => upstreamOpen() === 0 && gw.app.connections.size === 0 && gw.app.websocketBridge.active === 0,
    'upstream sockets, registry and bridges to reach zero', 10_000)
}

test(`${CYCLES} connections ended every way leave no socket, timer or registry entry behind`, { timeout: 90_000 }, async (t) => {
  const timers = trackTimers()
  t.after(() => timers.stop())
  const waiting = new Map<string, (ws: WebSocket) => void>()
  const up = await startUpstream({
    onConnection: (ws, req) => {
      ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }))
      const i = new URL(req.url ?? '/', 'http://x').searchParams.get('i') ?? ''
      waiting.get(i)?.(ws)
      waiting.delete(i)
    }
  })
  t.after(() => up.close())
  // Heartbeats run during the cycles (closing while a ping is out is a case too); the pong
  // deadline is generous so that a busy event loop never looks like a dead peer.
  const gw = await startGateway({ routes: [{ prefix: '/leak', upstream: up.url }], websocket: { pingInterval: 50, pongTimeout: 10_000 } })
  t.after(() => gw.close())

  const cycle = async (i: number): Promise<void> => {
    const mode = MODES[i % MODES.length]
    const upConn = new Promise<WebSocket>((resolve) => waiting.set(String(i), resolve))
    const client = await connect(`${gw.wsUrl}/leak?i=${i}`)
    const upWs = await within(upConn, 5000, `cycle ${i}: upstream connection`)
    if (i % 2 === 0) {
      // Half of the connections carry a message first, so that relaying state is set up too.
      client.send(`m${i}`)
      assert.equal((await nextMessage(client)).data.toString(), `m${i}`)
    }
    const clientClosed = closed(client)
    const upstreamClosed = closed(upWs)
    if (mode === 'client closes') client.close(1000, 'bye')
    else if (mode === 'upstream closes') upWs.close(4000, 'upstream bye')
    else if (mode === 'client drops') client.terminate()
    else upWs.terminate()
    const [c, u] = await within(Promise.all([clientClosed, upstreamClosed]), 5000, `cycle ${i} (${mode}): both sides closed`)
    const seen = { client: c.code, upstream: u.code }
    if (mode === 'client closes') assert.deepEqual(seen, { client: 1000, upstream: 1000 }, mode)
    else if (mode === 'upstream closes') assert.deepEqual(seen, { client: 4000, upstream: 4000 }, mode)
    else if (mode === 'client drops') assert.deepEqual(seen, { client: 1006, upstream: 1001 }, mode)
    else assert.deepEqual(seen, { client: 1014, upstream: 1006 }, mode)
  }

  // One cycle first, so that the baseline includes whatever is created once, lazily.
  await cycle(1)
  await settled(gw, up.openTcp)
  await waitFor(() => tcpSockets() === 0, 'the warm-up sockets to close')
  await settle()
  const baseline = { resources: activeResources(), timers: timers.live().length, intervals: timers.intervals().length }

  const started = performance.now()
  await pool(CYCLES, CONCURRENCY, cycle)
  t.diagnostic(`${CYCLES} cycles in ${Math.round(performance.now() - started)} ms`)

  await settled(gw, up.openTcp)
  assert.equal(up.sockets.size, 0)
  // Sockets of this process: the test's clients, both sides of the gateway, the upstream's.
  await waitFor(() => tcpSockets() === 0, 'every TCP socket of this process to close')
  await settle()
  const after = activeResources()
  t.diagnostic(`active resources before ${JSON.stringify(baseline.resources)}, after ${JSON.stringify(after)}`)
  assert.equal(after.Timeout ?? 0, baseline.resources.Timeout ?? 0, 'ref\'d timers')
  assert.equal(after.TCPServerWrap ?? 0, baseline.resources.TCPServerWrap ?? 0, 'listening servers')
  // Unref'd timers too (the heartbeat sweep, ws close timers): none left beyond the baseline.
  assert.equal(timers.intervals().length, baseline.intervals, 'live intervals')
  assert.ok(timers.live().length <= baseline.timers, `live timers: ${timers.live().length}, baseline ${baseline.timers}`)
})

/** An upstream that accepts TCP and upgrade requests but never answers them; it notices when the gateway hangs up. */
async function silentUpstream (): Promise<{ url: string, attempts: Array<{ socket: Socket, gone: Promise<void> }>, open: () => number, seen: (n: number) => Promise<void>, close: () => Promise<void> }> {
  const attempts: Array<{ socket: Socket, gone: Promise<void> }> = []
  const open = new Set<Socket>()
  let waiter: { n: number, resolve: () => void } | null = null
  const server = createServer()
  server.on('upgrade', (_req, socket: Socket) => {
    // Read, so that the gateway's FIN is seen; the server allows half-open sockets, so end ours too.
    socket.resume()
    socket.on('end', () => socket.destroy())
    socket.on('error', () => {})
    open.add(socket)
    const gone = once(socket, 'close').then(() => { open.delete(socket) })
    attempts.push({ socket, gone })
    if (waiter !== null && attempts.length >= waiter.n) { waiter.resolve(); waiter = null }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    attempts,
    open: () => open.size,
    seen: (n) => attempts.length >= n ? Promise.resolve() : new Promise((resolve) => { waiter = { n, resolve } }),
    close: () => new Promise((resolve) => { for (const s of open) s.destroy(); server.close(() => resolve()) })
  }
}

test('clients that vanish during the upstream handshake leave nothing open once connectTimeout passes', { timeout: 30_000 }, async (t) => {
  const up = await silentUpstream()
  t.after(() => up.close())
  const connectTimeout = 1000
  const gw = await startGateway({ routes: [{ prefix: '/leak', upstream: up.url }], websocket: { connectTimeout } })
  t.after(() => gw.close())
  const n = 20
  const clients = Array.from({ length: n }, () => {
    const ws = new WebSocket(`${gw.wsUrl}/leak`)
    ws.on('error', () => {})
    return ws
  })
  await within(up.seen(n), 5000, 'every upgrade request at the upstream')
  const started = performance.now()
  for (const c of clients) c.terminate()
  await within(Promise.all(up.attempts.map((a) => a.gone)), connectTimeout + 3000, 'the gateway to abandon every upstream attempt')
  t.diagnostic(`upstream attempts closed ${Math.round(performance.now() - started)} ms after the clients vanished`)
  await waitFor(() => tcpSockets() === 0, 'every TCP socket of this process to close')
  assert.equal(gw.app.connections.size, 0)
  assert.equal(gw.app.websocketBridge.active, 0)
})

test('a client that vanishes during the upstream handshake makes the gateway abandon the upstream at once', {
  timeout: 30_000,
}, async (t) => {
  const up = await silentUpstream()
  t.after(() => up.close())
  const gw = await startGateway({ routes: [{ prefix: '/leak', upstream: up.url }], websocket: { connectTimeout: 3000 } })
  t.after(() => gw.close())
  const client = new WebSocket(`${gw.wsUrl}/leak`)
  client.on('error', () => {})
  await within(up.seen(1), 5000, 'the upgrade request at the upstream')
  client.terminate()
  await within(up.attempts[0].gone, 1000, 'the gateway to abandon the upstream attempt')
})

test('clients that vanish just as the upstream accepts leave nothing open', { timeout: 30_000 }, async (t) => {
  const vanish = new Map<string, () => void>()
  const upstreamCloses: Array<Promise<{ code: number, reason: string }>> = []
  const up = await startUpstream({
    onConnection: (ws, req) => {
      upstreamCloses.push(closed(ws))
      // The client goes away while the gateway is between its upstream handshake and the upgrade.
      const i = new URL(req.url ?? '/', 'http://x').searchParams.get('i') ?? ''
      vanish.get(i)?.()
    }
  })
  t.after(() => up.close())
  const gw = await startGateway({ routes: [{ prefix: '/leak', upstream: up.url }] })
  t.after(() => gw.close())
  const n = 100
  await pool(n, CONCURRENCY, async (i) => {
    const ws = new WebSocket(`${gw.wsUrl}/leak?i=${i}`)
    ws.on('error', () => {})
    const gone = new Promise<void>((resolve) => ws.once('close', () => resolve()))
    vanish.set(String(i), () => ws.terminate())
    await within(gone, 5000, `client ${i} closed`)
  })
  const codes = await within(Promise.all(upstreamCloses), 5000, 'every upstream socket closed')
  assert.equal(codes.length, n)
  // Bridged before the gateway noticed: 1001 relayed; noticed before bridging: the upstream is dropped (1006).
  for (const c of codes) assert.ok(c.code === 1001 || c.code === 1006, `upstream saw ${c.code}`)
  await settled(gw, up.openTcp)
  await waitFor(() => tcpSockets() === 0, 'every TCP socket of this process to close')
})
