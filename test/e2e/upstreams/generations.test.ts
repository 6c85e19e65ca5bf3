/**
 * Live targets across app generations and handshakes in flight: connections opened before a
 * reload are drained (closeWithin), closed by DELETE ?close=true and rebalanced like the others;
 * only the newest generation listens on the cluster bus, and a reload whose app fails to get
 * ready leaves no subscriber behind; a handshake whose target is removed, or drained with a
 * close, while it waits for the upstream's 101 is closed with 1012 as soon as it opens, and the
 * counts stay right; routes naming one upstream URL share its pool.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { WebSocketServer } from 'ws'
import { stringify } from 'yaml'
import { start, type RunningGateway } from '../../../src/gateway/server.js'
import type { GatewayConfigInput } from '../../../src/config/schema.js'
import { gatewayFor } from '../../helpers/gateway.js'
import { connect, closed } from '../../helpers/ws.js'
import { needRedis, REDIS_URL, testPrefix } from '../../helpers/redis.js'
import { ADMIN, admin, namedUpstream, targetsOf, tracked, waitFor, type TrackedClient } from './live-helpers.js'

/** A gateway from a config file (as the CLI runs it), reloadable by rewriting the file. */
async function fileGateway (t: TestContext, config: GatewayConfigInput): Promise<{ gw: RunningGateway, base: string, wsBase: string, write: (c: GatewayConfigInput) => void }> {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-generations-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'gateway.yaml')
  const write = (c: GatewayConfigInput): void => { writeFileSync(file, stringify(c)) }
  write(config)
  const gw = await start([], { GATEWAY_CONFIG: file, HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'silent' })
  t.after(async () => { await gw.stop() })
  const base = `http://127.0.0.1:${(gw.runtime.server.address() as AddressInfo).port}`
  return { gw, base, wsBase: base.replace('http', 'ws'), write }
}

test('connections opened before a reload are drained, removed with close and rebalanced', { timeout: 20_000 }, async (t) => {
  const a = await namedUpstream(t, 'a')
  const b = await namedUpstream(t, 'b')
  const config = (extra: GatewayConfigInput['routes'] = []): GatewayConfigInput => ({
    admin: { token: ADMIN },
    upstreams: { chat: { targets: [a.url, b.url] } },
    routes: [{ prefix: '/chat', upstream: 'chat' }, ...extra]
  })
  const { gw, base, wsBase, write } = await fileGateway(t, config())
  // Four before the reload: round-robin gives a and b two each.
  const before = await Promise.all([1, 2, 3, 4].map(async () => await tracked(`${wsBase}/chat`)))
  t.after(() => { for (const c of before) c.ws.terminate() })
  const reasons = new Map<TrackedClient, string>()
  for (const c of before) c.ws.once('close', (_code: number, reason: Buffer) => { reasons.set(c, reason.toString()) })
  write(config([{ prefix: '/other', upstream: a.url }]))
  assert.equal((await gw.runtime.reload()).ok, true)
  const onB = before.filter((c) => c.upstream === 'b')
  const onA = before.filter((c) => c.upstream === 'a')
  assert.equal(onB.length, 2)

  const drained = await admin(base, 'PATCH', `/upstreams/chat/targets/127.0.0.1:${b.port}`, { state: 'drain', closeWithin: 200 })
  assert.equal(drained.status, 200)
  assert.equal(drained.body.closing?.total, 2)
  await waitFor(() => onB.every((c) => c.code === 1012), 'the old connections to b closed')
  assert.deepEqual(onB.map((c) => reasons.get(c)), ['upstream target drained', 'upstream target drained'])
  await waitFor(() => b.sockets.size === 0, 'b\'s side closed too')

  // Rebalance with b back: a has both old connections, over its share of 1.
  await admin(base, 'PATCH', `/upstreams/chat/targets/127.0.0.1:${b.port}`, { state: 'active' })
  const r = await admin(base, 'POST', '/upstreams/chat/rebalance', { minAgeMs: 0 })
  assert.equal(r.status, 200)
  assert.equal(r.body.total, 2)
  assert.equal(r.body.closing?.total, 1)
  await waitFor(() => onA.filter((c) => c.code === 1012).length === 1, 'one old connection to a rebalanced')
  const left = onA.find((c) => c.code === null)!
  const removed = await admin(base, 'DELETE', `/upstreams/chat/targets/127.0.0.1:${a.port}?close=true`)
  assert.equal(removed.status, 200)
  assert.equal(removed.body.closing?.total, 1)
  await waitFor(() => left.code === 1012, 'the last old connection closed by the removal')
  assert.equal(reasons.get(left), 'upstream target removed')
})

test('only the newest generation listens on the bus; a reload that fails to get ready leaves no subscriber', { timeout: 20_000 }, async (t) => {
  if (!await needRedis(t)) return
  const prefix = testPrefix(t)
  const up = await namedUpstream(t, 'a')
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-failing-plugin-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const plugin = join(dir, 'fail-on-ready.mjs')
  writeFileSync(plugin, 'export default async function (fastify) { fastify.addHook(\'onReady\', async () => { throw new Error(\'not ready\') }) }\n')
  const config = (plugins: string[] = []): GatewayConfigInput => ({
    redis: { url: REDIS_URL, keyPrefix: prefix },
    admin: { token: ADMIN },
    upstreams: { chat: { targets: [up.url] } },
    routes: [{ prefix: '/chat', upstream: 'chat' }],
    plugins
  })
  const { gw, wsBase, write } = await fileGateway(t, config())
  const redis = new Redis(REDIS_URL)
  t.after(() => { redis.disconnect() })
  const subscribers = async (): Promise<number> => {
    const [, n] = await redis.pubsub('NUMSUB', `${prefix}upstreams`) as [string, number]
    return n
  }
  await waitFor(async () => await subscribers() === 1, 'the first generation subscribed')
  // A connection keeps the old generation alive (retiring) after the reload.
  const client = await tracked(`${wsBase}/chat`)
  t.after(() => { client.ws.terminate() })
  write(config([]))
  assert.equal((await gw.runtime.reload()).ok, true)
  await waitFor(async () => await subscribers() === 1, 'one subscriber after the reload, not two')
  assert.equal(client.code, null, 'the old generation still relays its connection')

  write(config([plugin]))
  const failed = await gw.runtime.reload()
  assert.equal(failed.ok, false)
  await waitFor(async () => await subscribers() === 1, 'the failed generation\'s subscriber gone')
  // Still exactly one: held for a moment, in case a subscriber were still connecting.
  for (let i = 0; i < 5; i++) assert.equal(await subscribers(), 1)
})

/**
 * An upstream whose 101 can be held: while `hold` is on, upgrade requests wait until `release()`
 * (which also turns holding off). `arrival()` resolves at the next upgrade request.
 */
interface SlowUpstream { url: string, port: number, hold: boolean, arrival: () => Promise<void>, release: () => void, open: () => number }

async function slowUpstream (t: TestContext): Promise<SlowUpstream> {
  const wss = new WebSocketServer({ noServer: true })
  const tcp = new Set<Socket>()
  let open = 0
  let held: Array<() => void> = []
  let arrived: Array<() => void> = []
  const server = createServer((_req, res) => { res.end('ok') })
  server.on('connection', (s: Socket) => { tcp.add(s); s.on('close', () => tcp.delete(s)) })
  const slow: SlowUpstream = {
    url: '',
    port: 0,
    hold: false,
    arrival: () => new Promise<void>((resolve) => { arrived.push(resolve) }),
    release: () => { slow.hold = false; const h = held; held = []; for (const f of h) f() },
    open: () => open
  }
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    socket.on('error', () => {})
    const answer = (): void => wss.handleUpgrade(req, socket, head, (ws) => {
      open++
      ws.on('close', () => { open-- })
      ws.on('error', () => {})
    })
    if (slow.hold) held.push(answer)
    else answer()
    const a = arrived
    arrived = []
    for (const f of a) f()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  slow.port = (server.address() as AddressInfo).port
  slow.url = `http://127.0.0.1:${slow.port}`
  t.after(() => new Promise<void>((resolve) => { for (const s of tcp) s.destroy(); wss.close(); server.close(() => resolve()) }))
  return slow
}

test('a handshake in flight when its target is removed with close is closed with 1012 once open; counts stay right', { timeout: 15_000 }, async (t) => {
  const slow = await slowUpstream(t)
  const gw = await gatewayFor(t, { admin: { token: ADMIN }, upstreams: { chat: { targets: [slow.url] } }, routes: [{ prefix: '/chat', upstream: 'chat' }] })
  slow.hold = true
  const arrived = slow.arrival()
  const pending = connect(`${gw.wsUrl}/chat`)
  await arrived
  const removed = await admin(gw.url, 'DELETE', `/upstreams/chat/targets/127.0.0.1:${slow.port}?close=true`)
  assert.equal(removed.status, 200)
  assert.equal(removed.body.closing, null, 'nothing was open to close')
  slow.release()
  const ws = await pending
  assert.deepEqual(await closed(ws), { code: 1012, reason: 'upstream target removed' })
  await waitFor(() => slow.open() === 0, 'the upstream side closed too')
  await waitFor(() => gw.app.connections.size === 0, 'no bridge left')
  // Added again under the same URL: it starts from nothing, and a new connection counts once.
  assert.equal((await admin(gw.url, 'POST', '/upstreams/chat/targets', { url: slow.url })).status, 201)
  assert.equal((await targetsOf(gw.url)).find((x) => x.id === `127.0.0.1:${slow.port}`)?.openConnections, 0)
  const again = await connect(`${gw.wsUrl}/chat`)
  t.after(() => { again.terminate() })
  assert.equal((await targetsOf(gw.url)).find((x) => x.id === `127.0.0.1:${slow.port}`)?.openConnections, 1)
})

test('a handshake in flight while its target\'s connections are closed by a drain pace is closed with 1012', { timeout: 15_000 }, async (t) => {
  const slow = await slowUpstream(t)
  const gw = await gatewayFor(t, { admin: { token: ADMIN }, upstreams: { chat: { targets: [slow.url] } }, routes: [{ prefix: '/chat', upstream: 'chat' }] })
  // Five open connections over a 5 s window: the pace is still running after 4 s at least.
  const open = await Promise.all([1, 2, 3, 4, 5].map(async () => await connect(`${gw.wsUrl}/chat`)))
  t.after(() => { for (const c of open) c.terminate() })
  slow.hold = true
  const arrived = slow.arrival()
  const pending = connect(`${gw.wsUrl}/chat`)
  await arrived
  const drained = await admin(gw.url, 'PATCH', `/upstreams/chat/targets/127.0.0.1:${slow.port}`, { state: 'drain', closeWithin: '5s' })
  assert.equal(drained.body.closing?.total, 5)
  const t0 = performance.now()
  slow.release()
  const late = await pending
  assert.deepEqual(await closed(late), { code: 1012, reason: 'upstream target drained' })
  assert.ok(performance.now() - t0 < 2000, 'closed when it opened, not at the end of the window')
  // Back to active: the pace stops, the connections it had not reached stay open.
  await admin(gw.url, 'PATCH', `/upstreams/chat/targets/127.0.0.1:${slow.port}`, { state: 'active' })
  const stillOpen = open.filter((c) => c.readyState === c.OPEN).length
  assert.ok(stillOpen >= 1, 'the last slot of the window was not reached')
  const closing = await (await fetch(`${gw.url}/admin/closing`, { headers: { authorization: `Bearer ${ADMIN}` } })).json() as { closing: Array<{ cause: string, state: string }> }
  assert.equal(closing.closing.find((c) => c.cause === 'drain')?.state, 'cancelled')
})

test('routes naming the same upstream URL share one pool: listed once, changed and counted together', { timeout: 15_000 }, async (t) => {
  const a = await namedUpstream(t, 'a')
  const gw = await gatewayFor(t, { admin: { token: ADMIN }, routes: [{ prefix: '/one', upstream: a.url }, { prefix: '/two', upstream: a.url }] })
  const one = await tracked(`${gw.wsUrl}/one`)
  const two = await tracked(`${gw.wsUrl}/two`)
  t.after(() => { one.ws.terminate(); two.ws.terminate() })
  const res = await fetch(`${gw.url}/admin/upstreams`, { headers: { authorization: `Bearer ${ADMIN}` } })
  const listed = (await res.json() as { upstreams: Array<{ name: string, targets: Array<{ openConnections: number }> }> }).upstreams.filter((u) => u.name === a.url)
  assert.equal(listed.length, 1)
  assert.equal(listed[0].targets[0].openConnections, 2)
  // The name has slashes, which no admin path may carry: the manager is called as the API would.
  const removed = await gw.app.upstreamTargets.remove(a.url, `127.0.0.1:${a.port}`, true)
  assert.equal(removed.closing?.total, 2)
  await waitFor(() => one.code === 1012 && two.code === 1012, 'both routes\' connections closed')
})
