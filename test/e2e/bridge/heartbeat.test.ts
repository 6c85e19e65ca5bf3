/**
 * Heartbeats through the gateway (spec section 4): both peers are pinged every pingInterval, RTT
 * and last pong are recorded, a peer that stops answering is terminated and the other side told
 * (1001 for a dead client, 1014 for a dead upstream), idleTimeout closes silent connections, and
 * one timer serves every connection. Intervals of a few hundred ms keep the tests short.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { setTimeout as delay } from 'node:timers/promises'
import WebSocket, { WebSocketServer } from 'ws'
import { startUpstream, type TestUpstream } from '../../helpers/upstream.js'
import { startGateway, type TestGateway } from '../../helpers/gateway.js'
import { closed, connect, nextMessage } from '../../helpers/ws.js'
import { activeResources, settle, trackTimers, waitFor, within } from '../../helpers/resources.js'
import type { GatewayConfigInput } from '../../../src/config/schema.js'

type WsSettings = NonNullable<GatewayConfigInput['websocket']>

async function setup (t: TestContext, websocket: WsSettings, upstream?: TestUpstream): Promise<{ up: TestUpstream, gw: TestGateway }> {
  const up = upstream ?? await startUpstream()
  if (upstream === undefined) t.after(() => up.close())
  const gw = await startGateway({ routes: [{ prefix: '/hb', upstream: up.url }], websocket })
  t.after(() => gw.close())
  return { up, gw }
}

/** Resolves after `n` 'ping' events on `ws`, with their arrival times. */
function pings (ws: WebSocket, n: number): Promise<number[]> {
  return new Promise((resolve) => {
    const at: number[] = []
    const on = (): void => {
      at.push(performance.now())
      if (at.length === n) { ws.off('ping', on); resolve(at) }
    }
    ws.on('ping', on)
  })
}

/** A client and its upstream socket; `id` is the connection id (the upstream sees it as X-Request-Id). */
async function open (gw: TestGateway, up: TestUpstream, opts: WebSocket.ClientOptions = {}): Promise<{ client: WebSocket, upWs: WebSocket, id: string }> {
  const next = up.nextConnection()
  const client = await connect(`${gw.wsUrl}/hb`, undefined, opts)
  const { ws: upWs, req } = await within(next, 5000, 'upstream connection')
  return { client, upWs, id: req.headers['x-request-id'] as string }
}

test('the gateway pings client and upstream every pingInterval and records RTT and last pong', { timeout: 20_000 }, async (t) => {
  // A generous pong deadline: this test is about pings and RTT, and a loaded machine must not
  // make a live peer look dead.
  const pongTimeout = 1000
  const { up, gw } = await setup(t, { pingInterval: 200, pongTimeout })
  const started = Date.now()
  const { client, upWs, id } = await open(gw, up)
  t.after(() => client.terminate())
  const fresh = gw.app.connections.get(id)?.toJSON()
  assert.ok(fresh !== undefined, 'connection listed under the id the upstream saw')
  assert.equal(fresh.rttMs, null)
  assert.equal(fresh.lastPongAt, null)

  const clientPings = pings(client, 3)
  const upstreamPings = pings(upWs, 3)
  // A further ping is only sent once the previous one was answered: the third ping on each side
  // means the gateway received two pongs from it, and the connection survived them.
  const [atClient] = await within(Promise.all([clientPings, upstreamPings]), 5000, 'three pings on each side')
  for (let i = 1; i < atClient.length; i++) {
    const gap = atClient[i] - atClient[i - 1]
    assert.ok(gap >= 150, `pings ${Math.round(gap)} ms apart, pingInterval 200`)
  }
  const c = gw.app.connections.get(id)?.toJSON()
  assert.ok(c !== undefined)
  assert.equal(typeof c.rttMs, 'number')
  assert.ok((c.rttMs as number) >= 0 && (c.rttMs as number) < pongTimeout, `rttMs ${String(c.rttMs)}`)
  assert.equal(typeof c.lastPongAt, 'string')
  const lastPong = Date.parse(c.lastPongAt as string)
  assert.ok(lastPong >= started && lastPong <= Date.now(), `lastPongAt ${String(c.lastPongAt)}`)
  assert.equal(client.readyState, WebSocket.OPEN)
  assert.equal(upWs.readyState, WebSocket.OPEN)
})

test('a client that stops answering pings is terminated and the upstream gets 1001', { timeout: 20_000 }, async (t) => {
  const { up, gw } = await setup(t, { pingInterval: 200, pongTimeout: 200 })
  const { client, upWs } = await open(gw, up, { autoPong: false })
  t.after(() => client.terminate())
  const started = performance.now()
  const clientClosed = closed(client)
  const upstreamClosed = closed(upWs)
  const [c, u] = await within(Promise.all([clientClosed, upstreamClosed]), 3000, 'both sides closed')
  assert.equal(c.code, 1006, 'the dead client is dropped without a close handshake')
  assert.deepEqual(u, { code: 1001, reason: 'client not responding' })
  const took = performance.now() - started
  assert.ok(took >= 350, `closed after ${Math.round(took)} ms: before pingInterval + pongTimeout`)
  await waitFor(() => gw.app.connections.size === 0 && gw.app.websocketBridge.active === 0, 'the registry to empty')
})

test('an upstream that stops answering pings is terminated and the client gets 1014', { timeout: 20_000 }, async (t) => {
  // The test upstream helper cannot turn autoPong off: a plain ws server here, still echoing data.
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, autoPong: false, perMessageDeflate: false })
  await once(wss, 'listening')
  const upSockets: WebSocket[] = []
  wss.on('connection', (ws) => {
    upSockets.push(ws)
    ws.on('error', () => {})
    ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }))
  })
  t.after(() => new Promise<void>((resolve) => { for (const s of upSockets) s.terminate(); wss.close(() => resolve()) }))
  const gw = await startGateway({
    routes: [{ prefix: '/hb', upstream: `http://127.0.0.1:${(wss.address() as AddressInfo).port}` }],
    // The client's pongs must never be late here (it would be the one found dead): a pong
    // deadline that a loaded machine meets.
    websocket: { pingInterval: 200, pongTimeout: 1000 }
  })
  t.after(() => gw.close())
  const upConn = once(wss, 'connection') as Promise<[WebSocket]>
  const client = await connect(`${gw.wsUrl}/hb`)
  t.after(() => client.terminate())
  const [upWs] = await within(upConn, 5000, 'upstream connection')
  const upstreamPinged = once(upWs, 'ping')
  const clientClosed = closed(client)
  const upstreamClosed = closed(upWs)
  // Data still flows: only the missing pong marks the upstream as dead.
  client.send('still here')
  assert.equal((await nextMessage(client)).data.toString(), 'still here')
  await within(upstreamPinged, 3000, 'a ping at the upstream')
  const [c, u] = await within(Promise.all([clientClosed, upstreamClosed]), 5000, 'both sides closed')
  assert.deepEqual(c, { code: 1014, reason: 'upstream not responding' })
  assert.equal(u.code, 1006, 'the dead upstream is dropped without a close handshake')
  await waitFor(() => gw.app.connections.size === 0 && gw.app.websocketBridge.active === 0, 'the registry to empty')
})

test('idleTimeout: no data frames either way closes both sides with 1001 "idle timeout"; pings do not count', { timeout: 20_000 }, async (t) => {
  const idleTimeout = 500
  const { up, gw } = await setup(t, { pingInterval: 100, pongTimeout: 1000, idleTimeout })
  const { client, upWs } = await open(gw, up)
  t.after(() => client.terminate())
  const started = performance.now()
  let clientPings = 0
  client.on('ping', () => { clientPings++ })
  const [c, u] = await within(Promise.all([closed(client), closed(upWs)]), 3000, 'both sides closed')
  const took = performance.now() - started
  assert.deepEqual(c, { code: 1001, reason: 'idle timeout' })
  assert.deepEqual(u, { code: 1001, reason: 'idle timeout' })
  assert.ok(took >= idleTimeout - 50, `idle close after ${Math.round(took)} ms, idleTimeout ${idleTimeout}`)
  assert.ok(clientPings >= 1, 'heartbeats ran while the connection was idle')
})

test('idleTimeout: traffic in either direction keeps the connection open past the idle time', { timeout: 20_000 }, async (t) => {
  // The upstream does not echo, so each phase has traffic in one direction only.
  const up = await startUpstream({ onConnection: () => {} })
  t.after(() => up.close())
  const idleTimeout = 400
  const { gw } = await setup(t, { pingInterval: 100, pongTimeout: 1000, idleTimeout }, up)
  const { client, upWs, id } = await open(gw, up)
  t.after(() => client.terminate())
  let closedEarly = false
  client.once('close', () => { closedEarly = true })
  const started = performance.now()
  // Each phase sends one message every 50 ms, one direction only, for twice the idle time.
  let sent = 0
  const phase = async (from: WebSocket, to: WebSocket): Promise<void> => {
    const end = performance.now() + 2 * idleTimeout
    while (performance.now() < end) {
      const text = `m${sent++}`
      from.send(text)
      assert.equal((await within(nextMessage(to), 2000, 'the message through the gateway')).data.toString(), text)
      await delay(50)
    }
  }
  await phase(upWs, client)
  await phase(client, upWs)
  const busy = performance.now() - started
  assert.ok(busy >= 4 * idleTimeout, `traffic lasted ${Math.round(busy)} ms`)
  assert.equal(closedEarly, false)
  assert.equal(client.readyState, WebSocket.OPEN)
  assert.ok(gw.app.connections.get(id) !== undefined)
  // Silence again: now the idle timeout applies.
  const c = await within(closed(client), 3000, 'idle close after the traffic stopped')
  assert.deepEqual(c, { code: 1001, reason: 'idle timeout' })
})

test('idleTimeout defaults to 0: a silent connection is never closed for idleness', { timeout: 20_000 }, async (t) => {
  const { up, gw } = await setup(t, { pingInterval: 100, pongTimeout: 1000 })
  assert.equal(gw.app.gatewayConfig.websocket.idleTimeout, 0)
  const { client, upWs, id } = await open(gw, up)
  t.after(() => client.terminate())
  let closedEarly = false
  client.once('close', () => { closedEarly = true })
  // Eight heartbeats (about 800 ms, many times what an idle timeout in these tests would be) with no data.
  await within(Promise.all([pings(client, 8), pings(upWs, 8)]), 5000, 'eight pings on each side')
  assert.equal(closedEarly, false)
  assert.equal(client.readyState, WebSocket.OPEN)
  assert.equal(gw.app.connections.get(id)?.toJSON().messagesFromClient, 0)
})

test('one sweep timer serves every connection: 200 connections, one interval', { timeout: 30_000 }, async (t) => {
  // process.getActiveResourcesInfo() does not list unref()'d timers, and the sweep's timer is
  // unref()'d: the async-hook tracker sees every timer.
  const timers = trackTimers()
  t.after(() => timers.stop())
  // pongTimeout is generous so that 200 connections opening on a busy machine are not taken
  // for dead; the sweep period is still a quarter of pingInterval (50 ms).
  const { up, gw } = await setup(t, { pingInterval: 200, pongTimeout: 2000 })
  await settle()
  const before = new Set(timers.intervals())
  const base = { intervals: before.size, ref: activeResources().Timeout ?? 0 }

  const clients: WebSocket[] = []
  t.after(() => { for (const c of clients) c.terminate() })
  clients.push(await connect(`${gw.wsUrl}/hb`))
  await settle()
  const one = timers.intervals()
  assert.equal(one.length, base.intervals + 1, 'the first connection starts the sweep')
  const sweep = one.find((x) => !before.has(x))
  assert.equal(sweep?._idleTimeout, 50, 'sweep period 50 ms for pingInterval 200')
  assert.equal(sweep!.hasRef(), false, 'the sweep timer is unref()\'d')
  const liveWithOne = timers.live().length

  const more = await Promise.all(Array.from({ length: 199 }, () => connect(`${gw.wsUrl}/hb`)))
  clients.push(...more)
  assert.equal(gw.app.websocketBridge.active, 200)
  await settle()
  assert.equal(timers.intervals().length, base.intervals + 1, 'still one sweep interval with 200 connections')
  assert.ok(timers.live().length <= liveWithOne + 2, `live timers: ${timers.live().length} with 200 connections, ${liveWithOne} with one`)
  assert.ok((activeResources().Timeout ?? 0) <= base.ref + 2, 'ref\'d timers do not grow with connections')

  // That one timer pings every connection.
  await within(Promise.all(clients.map((c) => once(c, 'ping'))), 5000, 'a ping on all 200 clients')

  for (const c of clients) c.close()
  await waitFor(() => gw.app.websocketBridge.active === 0 && up.openTcp() === 0, 'every connection to end', 10_000)
  await settle()
  assert.equal(timers.intervals().length, base.intervals, 'the sweep stops when the last connection ends')
})
