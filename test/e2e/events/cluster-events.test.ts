/**
 * Lifecycle events in cluster mode (real Redis): the queue is a Redis stream per instance, so
 * what one instance could not deliver another does, including a disconnect for each connection
 * of an instance that was SIGKILLed. Entries written into Redis by anyone else are checked and
 * skipped; without Redis, events are delivered from memory.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cluster, Redis } from 'ioredis'
import { createServer, connect as tcp, type AddressInfo, type Socket } from 'node:net'
import type WebSocket from 'ws'
import { startGateway, type TestGateway } from '../../helpers/gateway.js'
import { startUpstream, type TestUpstream } from '../../helpers/upstream.js'
import { closed, connect, nextMessage } from '../../helpers/ws.js'
import { startEventsSink, type EventsSink } from '../../helpers/events-sink.js'
import { needRedis, needRedisServer, REDIS_URL, startRedisCluster, testPrefix } from '../../helpers/redis.js'
import { freePort, waitFor, within } from '../../helpers/resources.js'
import { SECRET, sign } from '../../helpers/jwt.js'
import { connectEvent } from '../../../src/events/payload.js'
import { eventStreamKey, RedisEventQueue } from '../../../src/events/redis-queue.js'
import type { ConnectEvent, DisconnectEvent } from '../../../src/events/payload.js'
import type { GatewayConfigInput } from '../../../src/config/schema.js'

const ADMIN = 'cluster-events-admin-0123'
const admin = { authorization: `Bearer ${ADMIN}` }

function config (up: TestUpstream, sink: EventsSink, keyPrefix: string, extra: Partial<GatewayConfigInput> = {}, redisUrl = REDIS_URL): GatewayConfigInput {
  return {
    redis: { url: redisUrl, keyPrefix },
    admin: { token: ADMIN },
    auth: { jwt: { secret: SECRET } },
    websocket: { pingInterval: '300ms', pongTimeout: '1s' },
    events: { url: sink.url, timeout: '1s' },
    routes: [{ prefix: '/chat', upstream: up.url, auth: 'optional' }],
    ...extra
  }
}

/** A Redis client of the test's own, disconnected after it. */
function redisFor (t: TestContext): Redis {
  const r = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 })
  r.on('error', () => {})
  t.after(() => { r.disconnect() })
  return r
}

/** Upstream, sink and the cleanup order: gateways first (they deliver what they hold), then the rest. */
async function base (t: TestContext): Promise<{ up: TestUpstream, sink: EventsSink, gateways: TestGateway[] }> {
  const up = await startUpstream()
  const sink = await startEventsSink()
  const gateways: TestGateway[] = []
  t.after(async () => {
    await Promise.all(gateways.map((g) => g.close()))
    await sink.close()
    await up.close()
  })
  return { up, sink, gateways }
}

async function ready (gw: TestGateway): Promise<void> {
  await waitFor(async () => (await fetch(`${gw.url}/ready`)).status === 200, 'redis ready')
}

const idOf = (up: TestUpstream, nth: number): string => String(up.upgrades[nth].headers['x-request-id'])

test('two instances sharing Redis deliver through their streams; the keys are there while events wait and gone after', async (t) => {
  if (!await needRedis(t)) return
  const prefix = testPrefix(t)
  const r = redisFor(t)
  const { up, sink, gateways } = await base(t)
  const a = await startGateway(config(up, sink, prefix))
  gateways.push(a)
  const b = await startGateway(config(up, sink, prefix))
  gateways.push(b)
  await ready(a)
  await ready(b)
  const [ia, ib] = [a.app.instanceId, b.app.instanceId]
  const stream = (id: string): string => eventStreamKey(prefix, id, sink.url)
  await waitFor(async () => (await r.exists(stream(ia), stream(ib))) === 2, 'both streams (made by the first heartbeat)')
  assert.deepEqual((await r.smembers(`${prefix}ev:instances`)).sort(), [ia, ib].sort())

  // While the endpoint hangs, the event waits in A's stream, read and not yet acknowledged.
  sink.hangNext(1)
  const onA = await connect(`${a.wsUrl}/chat/a`, undefined, { headers: { authorization: `Bearer ${sign({ sub: 'ann' })}` } })
  const idA = idOf(up, 0)
  await sink.until(() => sink.requests.length === 1, 'the first try')
  assert.equal(await r.xlen(stream(ia)), 1)
  const pending = await r.xpending(stream(ia), 'tollgate') as [number, ...unknown[]]
  assert.equal(pending[0], 1, 'read, in flight, not acknowledged')
  assert.equal(await r.hexists(`${prefix}ev:{${ia}}:open`, idA), 1, 'the open connection is recorded')
  await sink.until(() => sink.of(idA).length === 1, 'the connect, after the timeout')
  await waitFor(async () => (await r.xlen(stream(ia))) === 0, 'the delivered entry deleted')

  const onB = await connect(`${b.wsUrl}/chat/b`)
  const idB = idOf(up, 1)
  await sink.until(() => sink.of(idB).length === 1, 'B\'s connect')
  assert.equal(sink.of(idA)[0].instanceId, ia)
  assert.equal(sink.of(idB)[0].instanceId, ib)
  assert.equal((sink.of(idA)[0] as ConnectEvent).userId, 'ann')
  for (const ws of [onA, onB]) {
    const c = closed(ws)
    ws.close(1000, 'bye')
    await c
  }
  await sink.until(() => sink.disconnectOf(idA) !== undefined && sink.disconnectOf(idB) !== undefined, 'both disconnects')
  assert.deepEqual([sink.disconnectOf(idA)!.closedBy, sink.disconnectOf(idA)!.reason], ['client', 'bye'])
  assert.equal(await r.exists(`${prefix}ev:{${ia}}:open`), 0, 'closed connections leave the open hash')
  assert.deepEqual(sink.deduped().map((e) => `${e.id}:${e.type}`).sort(), [`${idA}:connect`, `${idA}:disconnect`, `${idB}:connect`, `${idB}:disconnect`].sort())
  assert.equal(sink.delivered().length, 4, 'each delivered once: one reader per stream')

  // A closes; its (empty) stream is gone, by A itself or by B taking it over; then B's too.
  await a.close()
  await waitFor(async () => (await r.keys(`${prefix}ev:{${ia}}*`)).length === 0 && !(await r.smembers(`${prefix}ev:instances`)).includes(ia), 'A\'s event keys to go', 5000)
  await b.close()
  assert.deepEqual(await r.keys(`${prefix}ev:*`), [], 'the last instance out leaves no event keys')
})

test('entries written into Redis by someone else are skipped with a warning; an unconfigured URL is never posted to', async (t) => {
  if (!await needRedis(t)) return
  const prefix = testPrefix(t)
  const r = redisFor(t)
  const { up, sink, gateways } = await base(t)
  const evil = await startEventsSink()
  t.after(() => evil.close())
  const gw = await startGateway(config(up, sink, prefix), { captureLogs: true })
  gateways.push(gw)
  await ready(gw)
  const id = gw.app.instanceId
  const own = eventStreamKey(prefix, id, sink.url)
  await waitFor(async () => (await r.exists(own)) === 1, 'the stream')
  const now = Date.now()
  const info = { id: 'x', route: '/chat', path: '/chat', clientIp: '192.0.2.1', userId: 'eve', subprotocol: null, upstream: up.url, instanceId: id }
  const good = connectEvent({ ...info, id: 'planted-good' }, now)
  const elsewhere = connectEvent({ ...info, id: 'planted-elsewhere' }, now)
  // Junk in this instance's own stream, then a well-formed entry for an unconfigured URL, then a good one.
  await r.xadd(own, '*', 'e', 'not json')
  await r.xadd(own, '*', 'e', JSON.stringify({ event: { ...good, type: 'explode' }, url: sink.url }))
  await r.xadd(own, '*', 'other', 'field')
  await r.xadd(own, '*', 'e', 'x'.repeat(70_000))
  await r.xadd(own, '*', 'e', JSON.stringify({ event: elsewhere, url: evil.url }))
  await r.xadd(own, '*', 'e', JSON.stringify({ event: good, url: sink.url }))
  await sink.until(() => sink.of('planted-good').length === 1, 'the good planted entry')
  await waitFor(async () => (await r.xlen(own)) === 0, 'every planted entry acknowledged and deleted')

  // A "dead instance" with junk in its open hash, next to one real connection.
  const dead = 'deadhost-4242-abcdef'
  const lostOne = connectEvent({ ...info, id: 'lost-one', instanceId: dead }, now - 5000)
  await r.hset(`${prefix}ev:{${dead}}:open`, {
    junk1: 'not json',
    junk2: JSON.stringify({ event: { id: 'j' }, url: sink.url }),
    junk3: JSON.stringify({ event: { ...lostOne, id: 'lost-ftp' }, url: 'ftp://x/y' }),
    'lost-elsewhere': JSON.stringify({ event: { ...lostOne, id: 'lost-elsewhere' }, url: evil.url }),
    'lost-disconnect': JSON.stringify({ event: { ...lostOne, id: 'lost-disconnect', type: 'disconnect' }, url: sink.url }),
    'lost-one': JSON.stringify({ event: lostOne, url: sink.url })
  })
  await r.sadd(`${prefix}ev:instances`, dead, '\u0001not-an-id')
  await sink.until(() => sink.disconnectOf('lost-one') !== undefined, 'the dead instance\'s disconnect', 5000)
  const d = sink.disconnectOf('lost-one')!
  assert.deepEqual([d.closedBy, d.instanceId, d.userId, d.clientCode, d.upstreamCode, d.connectedAt], ['instance-lost', dead, 'eve', 1006, 1006, lostOne.connectedAt])
  assert.ok(d.durationMs >= 5000)
  // Only the `taken` mark stays (an hour), for the instance in case it was only cut off.
  await waitFor(async () => (await r.keys(`${prefix}ev:{${dead}}*`)).join() === `${prefix}ev:{${dead}}:taken`, 'the dead instance\'s keys to go', 5000)
  await waitFor(async () => !(await r.smembers(`${prefix}ev:instances`)).some((m) => m === dead || m.startsWith('\u0001')), 'the instances set cleaned')

  // Nothing went anywhere else, nothing else was posted, nothing crashed: the gateway still relays and posts.
  assert.equal(evil.requests.length, 0, 'never posted to a URL only Redis named')
  assert.deepEqual(sink.deduped().map((e) => `${e.id}:${e.type}`).sort(), ['lost-one:disconnect', 'planted-good:connect'])
  const warn = gw.logs.filter((l) => l.msg === 'lifecycle event from Redis skipped')
  assert.ok(warn.length >= 1 && warn.every((l) => l.level === 40), 'skipped entries are warned about (rate-limited)')
  assert.ok(!gw.logText().includes('not json'), 'the junk itself is not logged')
  assert.ok(!gw.logs.some((l) => l.msg === 'lifecycle event queue full: events dropped'), 'an unconfigured URL is not reported as a full queue')
  const ws = await connect(`${gw.wsUrl}/chat/after`)
  const echo = nextMessage(ws)
  ws.send('fine')
  assert.equal((await echo).data.toString(), 'fine')
  await sink.until(() => sink.of(idOf(up, 0)).length === 1, 'a real connect still delivered')
  ws.terminate()
})

test('Redis unreachable: events are delivered from memory, in order', async (t) => {
  const prefix = 'gwtest-unreachable:'
  const { up, sink, gateways } = await base(t)
  const port = await freePort()
  const gw = await startGateway(config(up, sink, prefix, {}, `redis://127.0.0.1:${port}`))
  gateways.push(gw)
  assert.equal((await fetch(`${gw.url}/ready`)).status, 503)
  const ws = await connect(`${gw.wsUrl}/chat/offline`)
  const id = idOf(up, 0)
  const echo = nextMessage(ws)
  ws.send('x')
  await echo
  const c = closed(ws)
  ws.close(1000)
  await c
  await sink.until(() => sink.disconnectOf(id) !== undefined, 'the disconnect', 5000)
  assert.deepEqual(sink.delivered().map((r) => r.body.type), ['connect', 'disconnect'])
  assert.equal(sink.disconnectOf(id)!.messagesFromClient, 1)
})

test('a route with on: [connect] keeps no open-connection record; on: [disconnect] keeps one and streams no connect', async (t) => {
  if (!await needRedis(t)) return
  const prefix = testPrefix(t)
  const r = redisFor(t)
  const { up, sink, gateways } = await base(t)
  const gw = await startGateway(config(up, sink, prefix, {
    routes: [
      { prefix: '/in', upstream: up.url, events: { url: sink.url, on: ['connect'] } },
      { prefix: '/out', upstream: up.url, events: { url: sink.url, on: ['disconnect'] } }
    ]
  }))
  gateways.push(gw)
  await ready(gw)
  const open = `${prefix}ev:{${gw.app.instanceId}}:open`
  const inWs = await connect(`${gw.wsUrl}/in`)
  const inId = idOf(up, 0)
  await sink.until(() => sink.of(inId).length === 1, 'the /in connect')
  assert.equal(await r.hexists(open, inId), 0, 'no disconnect wanted: nothing kept for one')
  const outWs = await connect(`${gw.wsUrl}/out`)
  const outId = idOf(up, 1)
  await waitFor(async () => (await r.hexists(open, outId)) === 1, 'the /out connection recorded')
  for (const ws of [inWs, outWs]) {
    const c = closed(ws)
    ws.close(1000)
    await c
  }
  await sink.until(() => sink.disconnectOf(outId) !== undefined, 'the /out disconnect')
  assert.deepEqual(sink.deduped().map((e) => `${e.id}:${e.type}`).sort(), [`${inId}:connect`, `${outId}:disconnect`].sort())
  assert.equal(await r.exists(open), 0)
})

test('an instance SIGKILLed: each of its connections gets a disconnect (instance-lost) from a survivor within 3 pingIntervals', { timeout: 60_000 }, async (t) => {
  if (!await needRedis(t)) return
  const PING = 1000
  const N = 20
  const prefix = testPrefix(t)
  const { up, sink, gateways } = await base(t)
  const cfg = config(up, sink, prefix, { websocket: { pingInterval: `${PING}ms`, pongTimeout: '2s' } })
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-events-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'gateway.json'), JSON.stringify(cfg))
  const port = await freePort()
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/gateway/cli.ts', '--config', join(dir, 'gateway.json')], {
    cwd: process.cwd(),
    env: { PATH: process.env.PATH, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'pipe']
  })
  let stderr = ''
  child.stderr!.on('data', (c: Buffer) => { stderr += c.toString() })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  t.after(async () => { if (child.exitCode === null && child.signalCode === null) { child.kill('SIGKILL'); await exited } })
  // Two survivors: exactly one of them takes the dead instance over.
  const survivor = await startGateway(cfg)
  gateways.push(survivor)
  const other = await startGateway(cfg)
  gateways.push(other)
  await waitFor(async () => {
    try { return (await fetch(`http://127.0.0.1:${port}/ready`)).status === 200 } catch { return false }
  }, () => `the child gateway to start (stderr: ${stderr})`, 45_000, 50)
  await ready(survivor)
  await ready(other)

  const clients: WebSocket[] = []
  for (let i = 0; i < N; i++) {
    const ws = await connect(`ws://127.0.0.1:${port}/chat/${i}`, undefined, { headers: { authorization: `Bearer ${sign({ sub: `u${i % 5}` })}` } })
    ws.on('error', () => {})
    clients.push(ws)
  }
  const ids = Array.from({ length: N }, (_, i) => idOf(up, i))
  // A connection on a survivor, which must not be taken for lost.
  const kept = await connect(`${other.wsUrl}/chat/kept`)
  const keptId = idOf(up, N)
  await sink.until(() => [...ids, keptId].every((id) => sink.of(id).length === 1), 'the 21 connects', 10_000)
  const childId = sink.of(ids[0])[0].instanceId
  assert.notEqual(childId, survivor.app.instanceId)
  const users = async (u: string): Promise<number> => ((await (await fetch(`${survivor.adminUrl}/admin/users/${u}/connections`, { headers: admin })).json()) as { total: number }).total
  await waitFor(async () => (await users('u0')) === 4, 'the survivor to count the child\'s connections')

  const killedAt = performance.now()
  child.kill('SIGKILL')
  await within(exited, 5000, 'the child to die')
  await sink.until(() => ids.every((id) => sink.disconnectOf(id) !== undefined), () => `a disconnect for each of the ${N} (got ${ids.filter((id) => sink.disconnectOf(id) !== undefined).length})`, 3 * PING + 2000)
  const lastAt = Math.max(...ids.map((id) => sink.delivered().find((r) => r.body.id === id && r.body.type === 'disconnect')!.at))
  t.diagnostic(`last disconnect delivered ${Math.round(lastAt - killedAt)} ms after the kill (3 pingIntervals = ${3 * PING} ms)`)
  assert.ok(lastAt - killedAt <= 3 * PING, `within 3 pingIntervals: ${Math.round(lastAt - killedAt)} ms`)
  for (const [i, id] of ids.entries()) {
    const d = sink.disconnectOf(id) as DisconnectEvent
    const c = sink.of(id)[0] as ConnectEvent
    assert.deepEqual([d.closedBy, d.clientCode, d.upstreamCode, d.instanceId, d.userId, d.path, d.connectedAt], ['instance-lost', 1006, 1006, childId, `u${i % 5}`, `/chat/${i}`, c.connectedAt])
  }
  assert.deepEqual(sink.deduped().filter((e) => e.type === 'disconnect').length, N, 'one disconnect each, after de-duplication')
  t.diagnostic(`${sink.delivered().filter((r) => r.body.type === 'disconnect').length} disconnect POSTs for ${N} connections`)
  assert.equal(sink.disconnectOf(keptId), undefined, 'the survivor\'s own connection is not lost')
  const echo = nextMessage(kept)
  kept.send('still')
  assert.equal((await echo).data.toString(), 'still')
  // The registry reaps the dead instance too: backends that resync see nobody left.
  await waitFor(async () => {
    for (let u = 0; u < 5; u++) if (await users(`u${u}`) !== 0) return false
    return true
  }, 'the survivor to count 0 for every user', 3 * PING + 3000)
  for (const ws of clients) ws.terminate()
  kept.terminate()
})

test('close() returns while the endpoint is down and the backlog is over what is held in memory', { timeout: 30_000 }, async (t) => {
  if (!await needRedis(t)) return
  const prefix = testPrefix(t)
  const sink = await startEventsSink()
  t.after(() => sink.close())
  sink.failNext(Infinity, 503)
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 })
  redis.on('error', () => {})
  t.after(() => { redis.disconnect() })
  const logs: string[] = []
  const q = new RedisEventQueue({ redis, prefix, instanceId: 'backlog-1-abcdef', pingInterval: 300, maxSize: 5000, log: { info (_o, m) { logs.push(m) }, warn (_o, m) { logs.push(m) } }, minDelay: 60_000, maxDelay: 60_000, concurrency: 8 })
  const to = { url: sink.url, timeout: 1000 }
  q.allow([to])
  await q.start()
  const now = Date.now()
  const info = { route: '/chat', path: '/chat', clientIp: '127.0.0.1', userId: null, subprotocol: null, upstream: 'http://x', instanceId: 'backlog-1-abcdef' }
  for (let i = 0; i < 2100; i++) q.push(connectEvent({ ...info, id: `c${i}` }, now), to)
  // The reader holds at most 1000 in memory and waits for room; every delivery fails.
  await waitFor(() => q.pending === 2100 && sink.requests.length >= 8, () => `2100 pending and deliveries tried (${q.pending}, ${sink.requests.length})`, 10_000)
  await within(q.close(100), 3000, 'close with a full in-memory backlog')
  assert.ok(logs.includes('lifecycle events left for another instance to deliver'))
  assert.equal(await redis.xlen(eventStreamKey(prefix, 'backlog-1-abcdef', sink.url)), 2100, 'what was not delivered stays in the stream for another instance')
})

test('queueSize bounds each endpoint\'s stream, and an endpoint that is down holds back only its own events', { timeout: 30_000 }, async (t) => {
  if (!await needRedis(t)) return
  const prefix = testPrefix(t)
  const down = await startEventsSink()
  const fine = await startEventsSink()
  t.after(async () => { await down.close(); await fine.close() })
  down.failNext(Infinity, 503)
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 })
  redis.on('error', () => {})
  t.after(() => { redis.disconnect() })
  const counts: string[] = []
  const q = new RedisEventQueue({ redis, prefix, instanceId: 'hol-1-abcdef', pingInterval: 300, maxSize: 1500, log: { info () {}, warn () {} }, count: (_type, result) => { counts.push(result) }, minDelay: 60_000, maxDelay: 60_000, concurrency: 8 })
  const toDown = { url: down.url, timeout: 500 }
  const toFine = { url: fine.url, timeout: 500 }
  q.allow([toDown, toFine])
  await q.start()
  t.after(() => q.close(0))
  const info = { route: '/chat', path: '/chat', clientIp: '127.0.0.1', userId: null, subprotocol: null, upstream: 'http://x', instanceId: 'hol-1-abcdef' }
  for (let i = 0; i < 2000; i++) q.push(connectEvent({ ...info, id: `d${i}` }, Date.now()), toDown)
  await waitFor(() => counts.filter((c) => c === 'queued').length === 1500, 'the first 1500 queued')
  for (let i = 0; i < 10; i++) q.push(connectEvent({ ...info, id: `f${i}` }, Date.now()), toFine)
  await fine.until(() => fine.deduped().length === 10, 'the healthy endpoint\'s events, past the failing one\'s backlog', 5000)
  assert.equal(counts.filter((c) => c === 'dropped').length, 500, 'past queueSize, new events are dropped')
  assert.equal(await redis.xlen(eventStreamKey(prefix, 'hol-1-abcdef', down.url)), 1500, 'Redis holds at most queueSize per endpoint')
})

test('on a Redis Cluster of three masters: events delivered, a live instance never taken for lost, keys cleaned', { timeout: 60_000 }, async (t) => {
  if (!needRedisServer(t)) return
  const nodes = await startRedisCluster(t)
  const { up, sink, gateways } = await base(t)
  const cfg = (): GatewayConfigInput => ({ ...config(up, sink, 'evc:'), redis: { cluster: nodes, keyPrefix: 'evc:' } })
  const a = await startGateway(cfg(), { captureLogs: true })
  gateways.push(a)
  const b = await startGateway(cfg(), { captureLogs: true })
  gateways.push(b)
  await ready(a)
  await ready(b)
  const cluster = new Cluster(nodes.map((u) => ({ host: '127.0.0.1', port: Number(new URL(u).port) })))
  cluster.on('error', () => {})
  t.after(() => { cluster.disconnect() })
  const ws = await connect(`${a.wsUrl}/chat/on-cluster`)
  const id = idOf(up, 0)
  await sink.until(() => sink.of(id).length === 1, 'the connect, through A\'s stream on the Cluster')
  await waitFor(async () => (await cluster.exists(`evc:ev:{${a.app.instanceId}}:alive`)) === 1, 'A\'s alive key')
  await waitFor(async () => (await cluster.sismember('evc:ev:instances', a.app.instanceId)) === 1, 'A in the instances set')
  // Several liveness periods (300 ms pingInterval): B must not take A, which is alive, for lost.
  // What is awaited is an absence, so this one wait is on the clock.
  await new Promise((resolve) => setTimeout(resolve, 1500))
  assert.equal(sink.disconnectOf(id), undefined, 'no instance-lost disconnect for a live instance')
  assert.ok(!b.logs.some((l) => l.msg === 'delivering the lifecycle events of a lost instance'), 'B took nobody over')
  const c = closed(ws)
  ws.close(1000)
  await c
  await sink.until(() => sink.disconnectOf(id) !== undefined, 'the disconnect')
  assert.equal(sink.disconnectOf(id)!.closedBy, 'client')
  assert.equal(sink.delivered().length, 2)
  await a.close()
  await b.close()
  for (const g of [a, b]) assert.equal(await cluster.exists(eventStreamKey('evc:', g.app.instanceId, sink.url)), 0, 'streams removed at shutdown')
  assert.deepEqual(await cluster.smembers('evc:ev:instances'), [])
})

/** A TCP proxy to Redis that a test can cut (every connection dropped, new ones refused) and restore. */
async function cuttableRedis (t: TestContext): Promise<{ url: string, cut (): void, restore (): void }> {
  const target = new URL(REDIS_URL)
  const open = new Set<Socket>()
  let refusing = false
  const server = createServer((client) => {
    if (refusing) { client.destroy(); return }
    const upstream = tcp(Number(target.port || 6379), target.hostname)
    open.add(client)
    open.add(upstream)
    const end = (): void => { client.destroy(); upstream.destroy(); open.delete(client); open.delete(upstream) }
    client.on('error', end).on('close', end)
    upstream.on('error', end).on('close', end)
    client.pipe(upstream).pipe(client)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => { for (const s of open) s.destroy(); server.close() })
  const port = (server.address() as AddressInfo).port
  return {
    url: `redis://127.0.0.1:${port}`,
    cut () { refusing = true; for (const s of open) s.destroy() },
    restore () { refusing = false }
  }
}

test('an instance only cut off from Redis, declared lost by a survivor, closes what was declared lost when it is back', { timeout: 30_000 }, async (t) => {
  if (!await needRedis(t)) return
  const prefix = testPrefix(t)
  const { up, sink, gateways } = await base(t)
  const link = await cuttableRedis(t)
  const a = await startGateway(config(up, sink, prefix, {}, link.url), { captureLogs: true })
  gateways.push(a)
  const b = await startGateway(config(up, sink, prefix))
  gateways.push(b)
  await ready(a)
  await ready(b)
  const ws = await connect(`${a.wsUrl}/chat/cut`)
  const id = idOf(up, 0)
  await sink.until(() => sink.of(id).length === 1, 'the connect')
  const gone = closed(ws)
  link.cut()
  // B finds A's alive key expired (1.5 pingIntervals) and sends the connection's disconnect.
  await sink.until(() => sink.disconnectOf(id)?.closedBy === 'instance-lost', 'the instance-lost disconnect from B', 5000)
  assert.equal(ws.readyState, ws.OPEN, 'relays keep running while Redis is away')
  link.restore()
  // Back on Redis, A finds the mark and closes the connection the backends were told is gone.
  const c = await within(gone, 5000, 'A to close the connection declared lost')
  assert.deepEqual([c.code, c.reason], [1012, 'instance declared lost'])
  assert.ok(a.logs.some((l) => l.msg === 'this instance was declared lost while cut off from Redis: closing the connections whose disconnects were sent'))
  await sink.until(() => sink.delivered().filter((r) => r.body.id === id && r.body.type === 'disconnect').length >= 2, 'A\'s own disconnect, a duplicate by key')
  assert.deepEqual(sink.deduped().filter((e) => e.id === id).map((e) => e.type), ['connect', 'disconnect'], 'backends that drop duplicates see one connect and one disconnect')
  // A new connection on A is tracked again, normally.
  const again = await connect(`${a.wsUrl}/chat/again`)
  await sink.until(() => sink.of(idOf(up, 1)).length === 1, 'a new connect from A')
  again.terminate()
})

test('a Redis that comes back empty: the open-connection records are written again and delivery goes on', { timeout: 30_000 }, async (t) => {
  if (!await needRedis(t)) return
  const prefix = testPrefix(t)
  const sink = await startEventsSink()
  t.after(() => sink.close())
  const redis = redisFor(t)
  const logs: string[] = []
  const q = new RedisEventQueue({ redis, prefix, instanceId: 'reset-1-abcdef', pingInterval: 200, maxSize: 100, log: { info (_o, m) { logs.push(m) }, warn (_o, m) { logs.push(m) } } })
  const to = { url: sink.url, timeout: 1000 }
  q.allow([to])
  await q.start()
  t.after(() => q.close(0))
  const info = { route: '/chat', path: '/chat', clientIp: '127.0.0.1', userId: null, subprotocol: null, upstream: 'http://x', instanceId: 'reset-1-abcdef' }
  q.push(connectEvent({ ...info, id: 'kept' }, Date.now()), to)
  await sink.until(() => sink.of('kept').length === 1, 'the connect')
  const open = `${prefix}ev:{reset-1-abcdef}:open`
  await waitFor(async () => (await redis.hexists(open, 'kept')) === 1, 'the open record')
  // What a Redis restarted without persistence looks like to this instance: its keys are gone.
  const keys = await redis.keys(`${prefix}*`)
  await redis.del(...keys)
  await waitFor(async () => (await redis.hexists(open, 'kept')) === 1, 'the open record written again', 5000)
  assert.ok(logs.includes('lifecycle event streams were lost by Redis: events written there are not delivered'))
  q.push(connectEvent({ ...info, id: 'after' }, Date.now()), to)
  await sink.until(() => sink.of('after').length === 1, 'a connect after the reset')
})
