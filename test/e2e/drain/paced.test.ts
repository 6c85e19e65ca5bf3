/**
 * Paced closes inside the gateway: closeOnUnhealthy and reloadDrain close their connections with
 * 1012 spread over `server.drainPace`, shutdown (app.close()) with 1001; drainPace 0 closes them
 * all at once as before. While a pace runs, GET {prefix}/closing lists it, and /metrics counts
 * tollgate_paced_closes_total and tollgate_paced_close_pending by cause.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import type WebSocket from 'ws'
import { stringify } from 'yaml'
import { start } from '../../../src/gateway/server.js'
import type { GatewayConfigInput } from '../../../src/config/schema.js'
import { gatewayFor, startGateway } from '../../helpers/gateway.js'
import { upstreamFor } from '../../helpers/upstream.js'
import { connect } from '../../helpers/ws.js'
import { waitFor, within } from '../../helpers/resources.js'

const TOKEN = 'paced-admin-token-0123456'
const auth = { authorization: `Bearer ${TOKEN}` }

interface Closed { code: number, reason: string, at: number }
interface ClosingView { id: string, cause: string, state: string, code: number, total: number, closed: number, skipped: number, windowMs: number, maxPerSecond: number, startedAt: string, finishedAt: string | null }

async function openMany (url: string, n: number): Promise<WebSocket[]> {
  return await Promise.all(Array.from({ length: n }, async () => await connect(url)))
}

function closeTimes (clients: WebSocket[]): Array<Promise<Closed>> {
  return clients.map(async (ws) => await new Promise<Closed>((resolve) => {
    ws.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString(), at: performance.now() }))
  }))
}

function spreadOf (rs: Closed[]): number {
  const at = rs.map((r) => r.at)
  return Math.max(...at) - Math.min(...at)
}

async function closing (base: string): Promise<{ instanceId: string, closing: ClosingView[] }> {
  const res = await fetch(`${base}/admin/closing`, { headers: auth })
  assert.equal(res.status, 200)
  return await res.json() as { instanceId: string, closing: ClosingView[] }
}

/** One sample of a metric with these labels, or undefined. */
function sample (text: string, name: string, labels: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`))
  return line === undefined ? undefined : Number(line.split(' ').at(-1))
}

test('closeOnUnhealthy: the target\'s connections get 1012 paced over drainPace; /closing and /metrics show it', { timeout: 20_000 }, async (t) => {
  let healthy = true
  const up = await upstreamFor(t, { http: (_req, res) => { res.writeHead(healthy ? 200 : 500).end() } })
  const N = 30
  const gw = await gatewayFor(t, {
    server: { drainPace: '1500ms' },
    admin: { token: TOKEN },
    upstreams: { chat: { targets: [up.url], healthCheck: { path: '/healthz', interval: 50, timeout: 1000, unhealthyAfter: 1, healthyAfter: 1 }, closeOnUnhealthy: true } },
    routes: [{ prefix: '/chat', upstream: 'chat' }]
  }, { captureLogs: true })
  const clients = await openMany(`${gw.wsUrl}/chat`, N)
  t.after(() => { for (const c of clients) c.terminate() })
  await waitFor(() => up.sockets.size === N, () => `${up.sockets.size} upstream sockets`)
  const upstreamCodes: number[] = []
  for (const s of up.sockets) s.once('close', (code: number) => upstreamCodes.push(code))
  const closes = closeTimes(clients)
  const first = Promise.race(closes)
  healthy = false
  await within(first, 5000, 'a first close')

  // In progress: listed, with its window and rate, and counted as pending.
  const during = await closing(gw.url)
  assert.equal(typeof during.instanceId, 'string')
  const p = during.closing.find((c) => c.cause === 'unhealthy')
  assert.ok(p !== undefined, JSON.stringify(during))
  assert.equal(p.state, 'running')
  assert.equal(p.code, 1012)
  assert.equal(p.total, N)
  assert.equal(p.windowMs, 1500)
  assert.equal(p.maxPerSecond, 20)
  assert.ok(p.closed >= 1 && p.closed < N, `closed ${p.closed}`)
  assert.ok(!Number.isNaN(Date.parse(p.startedAt)))
  assert.equal(p.finishedAt, null)
  const midMetrics = await (await fetch(`${gw.url}/metrics`)).text()
  const pending = sample(midMetrics, 'tollgate_paced_close_pending', 'cause="unhealthy"')
  assert.ok(pending !== undefined && pending > 0 && pending < N, `pending ${pending}`)
  assert.equal(sample(midMetrics, 'tollgate_paced_close_pending', 'cause="shutdown"'), 0)

  const rs = await within(Promise.all(closes), 5000, 'every client closed')
  for (const r of rs) assert.deepEqual([r.code, r.reason], [1012, 'upstream unhealthy'])
  assert.ok(spreadOf(rs) >= 800, `spread ${Math.round(spreadOf(rs))} ms`)
  await waitFor(() => upstreamCodes.length === N, () => `${upstreamCodes.length} upstream closes`)
  assert.deepEqual([...new Set(upstreamCodes)], [1012])

  await waitFor(async () => (await closing(gw.url)).closing.find((c) => c.id === p.id)?.state === 'finished', 'the pace listed as finished')
  const after = (await closing(gw.url)).closing.find((c) => c.id === p.id)!
  assert.equal(after.closed, N)
  assert.equal(after.skipped, 0)
  assert.ok(after.finishedAt !== null)
  const text = await (await fetch(`${gw.url}/metrics`)).text()
  assert.equal(sample(text, 'tollgate_paced_closes_total', 'cause="unhealthy"'), N)
  assert.equal(sample(text, 'tollgate_paced_close_pending', 'cause="unhealthy"'), 0)
  const started = gw.logs.find((l) => l.msg === 'paced close started')
  assert.ok(started !== undefined)
  assert.deepEqual([started.cause, started.total, started.windowMs, started.maxPerSecond], ['unhealthy', N, 1500, 20])
  assert.ok(gw.logs.some((l) => l.msg === 'paced close ended' && l.paceId === p.id && l.closed === N && typeof l.elapsedMs === 'number'))
  assert.ok(gw.logs.some((l) => l.msg === 'closing connections of an unhealthy target' && l.upstream === up.url && l.connections === N))
})

test('GET /closing needs the admin token, and is empty when nothing was paced', async (t) => {
  const up = await upstreamFor(t)
  const gw = await gatewayFor(t, { admin: { token: TOKEN }, routes: [{ prefix: '/chat', upstream: up.url }] })
  assert.equal((await fetch(`${gw.url}/admin/closing`)).status, 401)
  assert.equal((await fetch(`${gw.url}/admin/closing`, { headers: { authorization: 'Bearer wrong-token-0000000000' } })).status, 401)
  assert.deepEqual((await closing(gw.url)).closing, [])
  assert.equal((await fetch(`${gw.url}/admin/closing`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: '{}' })).status, 404)
  const doc = await (await fetch(`${gw.url}/admin/openapi.json`, { headers: auth })).json() as { paths: Record<string, unknown> }
  assert.ok('/closing' in doc.paths, Object.keys(doc.paths).join(', '))
})

test('shutdown with drainPace: 1001 spread over the window; a connection that left first is skipped', { timeout: 15_000 }, async (t) => {
  const up = await upstreamFor(t)
  const N = 40
  const gw = await startGateway({ server: { drainPace: '800ms', drainTimeout: '5s' }, routes: [{ prefix: '/chat', upstream: up.url }] }, { captureLogs: true })
  t.after(() => gw.close())
  const clients = await openMany(`${gw.wsUrl}/chat`, N)
  t.after(() => { for (const c of clients) c.terminate() })
  await waitFor(() => up.sockets.size === N, () => `${up.sockets.size} upstream sockets`)
  // The connection paced last (oldest first) leaves by itself while the pace runs.
  const lastPort = [...gw.app.connections.values()].at(-1)!.info.remotePort
  const leaver = clients.find((c) => (c as unknown as { _socket: { localPort: number } })._socket.localPort === lastPort)!
  const closes = closeTimes(clients)
  const t0 = performance.now()
  const closing = gw.close()
  await within(Promise.race(closes), 3000, 'a first close')
  leaver.close(1000, 'bye')
  await within(closing, 8000, 'app.close()')
  const rs = await Promise.all(closes)
  assert.equal(rs[clients.indexOf(leaver)].code, 1000, 'the leaver closed with its own code')
  const others = rs.filter((_r, i) => clients[i] !== leaver)
  for (const r of others) assert.equal(r.code, 1001)
  assert.ok(spreadOf(others) >= 450, `spread ${Math.round(spreadOf(others))} ms`)
  assert.ok(performance.now() - t0 < 3000)
  const ended = gw.logs.find((l) => l.msg === 'paced close ended')
  assert.ok(ended !== undefined)
  assert.equal(ended.cause, 'shutdown')
  assert.equal((ended.closed as number) + (ended.skipped as number), N)
  assert.ok((ended.skipped as number) >= 1, JSON.stringify(ended))
  assert.equal(ended.state, 'finished')
})

test('drainPace 0 (the default): shutdown closes every connection at once with 1001, as before', { timeout: 15_000 }, async (t) => {
  const up = await upstreamFor(t)
  const N = 40
  const gw = await startGateway({ routes: [{ prefix: '/chat', upstream: up.url }] }, { captureLogs: true })
  t.after(() => gw.close())
  const clients = await openMany(`${gw.wsUrl}/chat`, N)
  t.after(() => { for (const c of clients) c.terminate() })
  await waitFor(() => up.sockets.size === N, () => `${up.sockets.size} upstream sockets`)
  const closes = closeTimes(clients)
  await within(gw.close(), 5000, 'app.close()')
  const rs = await Promise.all(closes)
  for (const r of rs) assert.deepEqual([r.code, r.reason], [1001, 'going away'])
  assert.ok(spreadOf(rs) < 400, `spread ${Math.round(spreadOf(rs))} ms`)
  const started = gw.logs.find((l) => l.msg === 'paced close started')
  assert.ok(started !== undefined)
  assert.deepEqual([started.cause, started.total, started.windowMs, started.maxPerSecond], ['shutdown', N, 0, N])
})

test('reloadDrain: connections of a removed route get 1012 paced over drainPace; other routes stay', { timeout: 20_000 }, async (t) => {
  const up = await upstreamFor(t)
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-pace-reload-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'gateway.yaml')
  const config = (routes: GatewayConfigInput['routes']): GatewayConfigInput => ({ admin: { token: TOKEN }, server: { reloadDrain: 50, drainPace: '800ms' }, routes })
  writeFileSync(file, stringify(config([{ prefix: '/a', upstream: up.url }, { prefix: '/keep', upstream: up.url }])))
  const gw = await start([], { GATEWAY_CONFIG: file, HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'silent' })
  t.after(() => gw.stop())
  const base = `http://127.0.0.1:${(gw.runtime.server.address() as AddressInfo).port}`
  const wsBase = base.replace('http', 'ws')
  const N = 24
  const removed = await openMany(`${wsBase}/a`, N)
  const kept = await openMany(`${wsBase}/keep`, 3)
  t.after(() => { for (const c of [...removed, ...kept]) c.terminate() })
  const closes = closeTimes(removed)
  let keptClosed = false
  for (const c of kept) c.once('close', () => { keptClosed = true })

  writeFileSync(file, stringify(config([{ prefix: '/keep', upstream: up.url }])))
  assert.equal((await gw.runtime.reload()).ok, true)
  await within(Promise.race(closes), 3000, 'a first close')
  const p = (await closing(base)).closing.find((c) => c.cause === 'reload' && c.total > 0)
  assert.ok(p !== undefined)
  assert.deepEqual([p.state, p.code, p.total, p.windowMs, p.maxPerSecond], ['running', 1012, N, 800, 30])
  const rs = await within(Promise.all(closes), 5000, 'every removed-route client closed')
  for (const r of rs) assert.deepEqual([r.code, r.reason], [1012, 'service restart'])
  assert.ok(spreadOf(rs) >= 450, `spread ${Math.round(spreadOf(rs))} ms`)
  assert.equal(keptClosed, false)
  assert.ok(kept.every((c) => c.readyState === c.OPEN))
  const text = await (await fetch(`${base}/metrics`)).text()
  assert.equal(sample(text, 'tollgate_paced_closes_total', 'cause="reload"'), N)
})

test('closePaced: an explicit `bridges` list wins over `which`; windowMs overrides drainPace; a shutdown takes over a pace in progress', { timeout: 15_000 }, async (t) => {
  const up = await upstreamFor(t)
  const gw = await startGateway({ admin: { token: TOKEN }, routes: [{ prefix: '/chat', upstream: up.url }] })
  t.after(() => gw.close())
  const clients = await openMany(`${gw.wsUrl}/chat`, 8)
  t.after(() => { for (const c of clients) c.terminate() })
  await waitFor(() => gw.app.connections.size === 8, 'eight bridges')
  const bridges = [...gw.app.connections.values()]
  const portOf = (c: WebSocket): number => (c as unknown as { _socket: { localPort: number } })._socket.localPort
  const byPort = new Map(clients.map((c) => [portOf(c), c]))
  const times = closeTimes(clients)
  const closes = new Map(clients.map((c, i) => [c, times[i]]))

  // Two chosen bridges, over 300 ms; `which` (everything) is ignored.
  const chosen = bridges.slice(0, 2)
  const p = gw.app.websocketBridge.closePaced({ code: 1012, reason: 'service restart', cause: 'drain', bridges: chosen, which: () => true, windowMs: 300 })
  assert.deepEqual([p.cause, p.total, p.windowMs, p.maxPerSecond], ['drain', 2, 300, 7])
  assert.ok(p.id.length > 0)
  await within(p.done, 3000, 'the pace')
  assert.equal(p.closed, 2)
  for (const b of chosen) assert.deepEqual(await closes.get(byPort.get(b.info.remotePort!)!)!.then((r) => [r.code, r.reason]), [1012, 'service restart'])
  await waitFor(() => gw.app.connections.size === 6, 'six bridges left')

  // A long pace over the rest, then shutdown (drainPace 0): it cancels the pace and closes them all with 1001.
  const rest = bridges.slice(2)
  const long = gw.app.websocketBridge.closePaced({ code: 1012, reason: 'service restart', cause: 'rebalance', windowMs: 60_000 })
  assert.equal(long.total, 6)
  await within(gw.close(), 5000, 'app.close()')
  await within(long.done, 1000, 'the long pace ended')
  for (const b of rest) {
    const r = await closes.get(byPort.get(b.info.remotePort!)!)!
    // Its first slot may have come up before the shutdown: 1012 for that one, 1001 for the others.
    assert.ok(r.code === 1001 || r.code === 1012, String(r.code))
  }
  const codes = await Promise.all(rest.map(async (b) => (await closes.get(byPort.get(b.info.remotePort!)!)!).code))
  assert.ok(codes.filter((c) => c === 1001).length >= 5, codes.join(','))
  const view = gw.app.metrics.pacedCloses.list().find((v) => v.id === long.id)
  assert.ok(view !== undefined)
  // Shutdown closed what the pace had left, so nothing it was given stayed open.
  assert.equal(view.state, 'finished')
  assert.equal(view.closed, 6)
  assert.ok(view.skipped >= 5, JSON.stringify(view))
  const shutdown = gw.app.metrics.pacedCloses.list().find((v) => v.cause === 'shutdown')
  assert.ok(shutdown !== undefined && shutdown.windowMs === 0 && shutdown.total >= 5)
})
