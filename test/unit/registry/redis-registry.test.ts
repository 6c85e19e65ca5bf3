/**
 * src/registry/redis-registry.ts against a real Redis (REDIS_URL, default 127.0.0.1:6379;
 * skipped when unreachable, except under CI), with stand-in bridges and two registries with
 * their own instance ids in one key prefix (unique per test, deleted afterwards): what a flush
 * writes (opens and closes only, never per message), cluster-wide search (exact totals, pages
 * from the owners), totals, find, commands to another instance over pub/sub (close, send, busy
 * client, broadcast), junk from Redis and from the bus skipped, the rewrite after Redis lost the
 * keys, reaping of a dead instance (its concurrency shares given back, in bounded steps), the
 * partial fallback when Redis is not ready, and stop(). No timers are waited on: flush() is
 * called directly.
 */
import { describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { Redis } from 'ioredis'
import { FakeBridge as BaseFakeBridge } from '../../helpers/fake-bridge.js'
import { RedisRegistry } from '../../../src/registry/redis-registry.js'
import { needRedis, REDIS_URL, testPrefix } from '../../helpers/redis.js'
import { once } from 'node:events'

/** The shared stand-in, with the admin API's whole view (what flush publishes) and its connection time. */
class FakeBridge extends BaseFakeBridge {
  constructor (id: string, route: string, userId: string | null, instanceId: string, private readonly connectedAt: string) {
    super(id, route, userId, instanceId)
  }

  override toJSON (): Record<string, unknown> {
    return {
      id: this.info.id,
      route: this.info.route,
      path: `${this.info.route}/x`,
      clientIp: '198.51.100.1',
      userId: this.info.userId,
      subprotocol: null,
      upstream: 'http://127.0.0.1:9001',
      instanceId: this.info.instanceId,
      connectedAt: this.connectedAt,
      lastActivityAt: this.connectedAt,
      lastPongAt: null,
      rttMs: null,
      messagesFromClient: this.messagesFromClient,
      messagesToClient: this.messagesToClient,
      bytesFromClient: 0,
      bytesToClient: 0
    }
  }
}

const at = (s: number): string => new Date(Date.UTC(2024, 0, 1, 0, 0, s)).toISOString()

interface Warnings { lines: Array<[object, string]> }

/**
 * A registry on a client of its own. After the test it is stopped (unless the test did, through
 * `stop`), then its client disconnected.
 */
async function registry (t: TestContext, prefix: string, instanceId: string, extra: { commandTimeout?: number, pageTimeout?: number, maxPayload?: number, reconnect?: boolean } = {}): Promise<{ reg: RedisRegistry, redis: Redis, warnings: Warnings, stop: () => Promise<void> }> {
  const { reconnect, ...opts } = extra
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: reconnect === true ? () => 20 : () => null })
  redis.on('error', () => {})
  await redis.connect()
  const warnings: Warnings = { lines: [] }
  const log = { warn: (o: object, msg: string) => { warnings.lines.push([o, msg]) }, info: () => {} }
  const reg = new RedisRegistry({ redis, prefix, instanceId, pingInterval: 1000, log, ...opts })
  let stopped = false
  const stop = async (): Promise<void> => { if (!stopped) { stopped = true; await reg.stop() } }
  t.after(async () => { await stop(); redis.disconnect() })
  return { reg, redis, warnings, stop }
}

/** Two registries (inst-a, inst-b) on one fresh key prefix; null (the test skipped) without Redis. */
async function twoInstances (t: TestContext): Promise<{ prefix: string, a: Awaited<ReturnType<typeof registry>>, b: Awaited<ReturnType<typeof registry>> } | null> {
  if (!await needRedis(t)) return null
  const prefix = testPrefix(t)
  return { prefix, a: await registry(t, prefix, 'inst-a'), b: await registry(t, prefix, 'inst-b') }
}

/** The key base of a prefix: every registry key carries the cluster's one hash tag. */
const keys = (prefix: string): string => `${prefix}{${prefix}reg}:`

/** Counts the commands a client sends from now on (pipelines and transactions included). */
function countCommands (redis: Redis): { readonly n: number } {
  const c = { n: 0 }
  const send = redis.sendCommand.bind(redis)
  redis.sendCommand = ((...a: Parameters<Redis['sendCommand']>) => { c.n++; return send(...a) }) as Redis['sendCommand']
  return c
}

/**
 * Publishes the registries' connections, then starts them (subscribed to their command
 * channels). In that order: a flush asked for while one runs (start() kicks one off) returns at
 * once and leaves the work to a later timer, so awaiting it would prove nothing.
 */
async function published (...regs: RedisRegistry[]): Promise<void> {
  for (const r of regs) await r.flush()
  for (const r of regs) await r.start()
}

describe('RedisRegistry: what is written', () => {
  test('an open or a close is written once (id set and counts); counters moving write nothing', async (t) => {
    if (!await needRedis(t)) return
    const prefix = testPrefix(t)
    const k = keys(prefix)
    const { reg, redis } = await registry(t, prefix, 'inst-a')
    const c1 = new FakeBridge('c1', '/chat', 'alice', 'inst-a', at(1))
    const c2 = new FakeBridge('c2', '/feed', null, 'inst-a', at(2))
    reg.add(c1.bridge)
    reg.add(c2.bridge)
    assert.equal(reg.size, 2)
    assert.equal(reg.get('c1'), c1.bridge)
    await reg.flush()
    assert.deepEqual(await redis.smembers(`${k}instances`), ['inst-a'])
    const ttl = await redis.pttl(`${k}hb:inst-a`)
    assert.ok(ttl > 0 && ttl <= 2000, `heartbeat ttl ${ttl}`)
    assert.deepEqual((await redis.smembers(`${k}ids:inst-a`)).sort(), ['c1', 'c2'])
    assert.deepEqual(await redis.hgetall(`${k}n:inst-a`), { '*': '2', 'r:/chat': '1', 'r:/feed': '1' })
    assert.deepEqual(await redis.hgetall(`${k}u:inst-a`), { alice: '1' })

    const sent = countCommands(redis)
    c1.messagesFromClient = 10
    c1.lastPongAt = Date.now()
    await reg.flush()
    assert.equal(sent.n, 0, 'traffic and pongs are not written')
    // Opened and closed within one batch: nothing to write either.
    const c3 = new FakeBridge('c3', '/chat', 'bob', 'inst-a', at(3))
    reg.add(c3.bridge)
    reg.remove(c3.bridge)
    await reg.flush()
    assert.equal(sent.n, 0)

    reg.remove(c2.bridge)
    reg.add(new FakeBridge('c4', '/chat', 'alice', 'inst-a', at(4)).bridge)
    await reg.flush()
    assert.equal(sent.n, 1, 'one batch is one script call')
    assert.deepEqual((await redis.smembers(`${k}ids:inst-a`)).sort(), ['c1', 'c4'])
    assert.deepEqual(await redis.hgetall(`${k}n:inst-a`), { '*': '2', 'r:/chat': '2' }, 'a route at 0 is dropped')
    assert.deepEqual(await redis.hgetall(`${k}u:inst-a`), { alice: '2' })
    // Every key of the cluster carries the one hash tag (Redis Cluster: one slot for the scripts).
    for (const key of await redis.keys(`${prefix}*`)) assert.ok(key.startsWith(k), key)
  })

  test('thousands of opens and closes go in bounded batches and add up', async (t) => {
    if (!await needRedis(t)) return
    const prefix = testPrefix(t)
    const k = keys(prefix)
    const { reg, redis } = await registry(t, prefix, 'inst-a')
    await reg.flush()
    const bridges = Array.from({ length: 2500 }, (_, i) => new FakeBridge(`c${i}`, `/r${i % 3}`, i % 2 === 0 ? `u${i % 7}` : null, 'inst-a', at(i % 60)))
    for (const b of bridges) reg.add(b.bridge)
    const sent = countCommands(redis)
    await reg.flush()
    assert.equal(sent.n, 3, '2,500 opens: three script calls of at most 1,000')
    for (const b of bridges.slice(0, 1200)) reg.remove(b.bridge)
    await reg.flush()
    assert.equal(await redis.scard(`${k}ids:inst-a`), 1300)
    const n = await redis.hgetall(`${k}n:inst-a`)
    assert.equal(n['*'], '1300')
    assert.equal(Number(n['r:/r0']) + Number(n['r:/r1']) + Number(n['r:/r2']), 1300)
    assert.deepEqual(await reg.totals(), { total: 1300, routes: { '/r0': Number(n['r:/r0']), '/r1': Number(n['r:/r1']), '/r2': Number(n['r:/r2']) }, instances: [{ instanceId: 'inst-a', connections: 1300 }] })
  })

  test('keys lost in Redis (a failover to a stale replica, a restart) are rewritten from memory on reconnection', async (t) => {
    if (!await needRedis(t)) return
    const prefix = testPrefix(t)
    const k = keys(prefix)
    const { reg, redis } = await registry(t, prefix, 'inst-a', { reconnect: true })
    for (let i = 0; i < 2100; i++) reg.add(new FakeBridge(`c${i}`, i % 2 === 0 ? '/chat' : '/feed', `u${i % 5}`, 'inst-a', at(1)).bridge)
    await reg.flush()
    await redis.del(`${k}ids:inst-a`, `${k}n:inst-a`, `${k}u:inst-a`)
    await redis.sadd(`${k}ids:inst-a`, 'ghost')
    const id = await redis.client('ID')
    const ready = once(redis, 'ready')
    const killer = new Redis(REDIS_URL)
    t.after(() => { killer.disconnect() })
    await killer.client('KILL', 'ID', String(id))
    await ready
    await reg.flush() // the flush the reconnection started may still run: this one waits for the rewrite
    await reg.flush()
    assert.equal(await redis.scard(`${k}ids:inst-a`), 2100)
    assert.equal(await redis.sismember(`${k}ids:inst-a`, 'ghost'), 0)
    assert.deepEqual(await redis.hgetall(`${k}n:inst-a`), { '*': '2100', 'r:/chat': '1050', 'r:/feed': '1050' })
    assert.equal(await redis.hget(`${k}u:inst-a`, 'u0'), '420')
  })
})

describe('RedisRegistry: listing, totals and find', () => {
  test('search: exact totals, by instance then connection order, each part from its owner with live counters', async (t) => {
    const pair = await twoInstances(t)
    if (pair === null) return
    const { a, b } = pair
    const a1 = new FakeBridge('a1', '/chat', 'alice', 'inst-a', at(3))
    const a2 = new FakeBridge('a2', '/feed', 'bob', 'inst-a', at(1))
    const b1 = new FakeBridge('b1', '/chat', 'bob', 'inst-b', at(2))
    a.reg.add(a1.bridge)
    a.reg.add(a2.bridge)
    b.reg.add(b1.bridge)
    await published(a.reg, b.reg)
    // Not written anywhere: only the owner knows.
    b1.messagesFromClient = 7
    const all = await a.reg.search()
    assert.equal(all.partial, undefined)
    assert.equal(all.total, 3)
    assert.deepEqual(all.connections.map((c) => [c.id, c.instanceId]), [['a1', 'inst-a'], ['a2', 'inst-a'], ['b1', 'inst-b']])
    assert.deepEqual(all.connections[2], b1.toJSON())
    assert.equal(all.connections[2].messagesFromClient, 7)
    assert.deepEqual((await b.reg.search()).connections.map((c) => c.id), ['a1', 'a2', 'b1'], 'the same order from any instance')
    assert.deepEqual((await a.reg.search({ route: '/chat' })).connections.map((c) => c.id), ['a1', 'b1'])
    assert.deepEqual(await a.reg.search({ user: 'bob' }), { total: 2, connections: [a2.toJSON(), b1.toJSON()] })
    assert.deepEqual(await a.reg.search({ user: 'bob', route: '/chat' }), { total: 1, connections: [b1.toJSON()] })
    assert.deepEqual(await a.reg.search({ user: 'nobody' }), { total: 0, connections: [] })
    // A page across the boundary between two instances, and one past the end.
    assert.deepEqual(await a.reg.search({ offset: 1, limit: 2 }), { total: 3, connections: [a2.toJSON(), b1.toJSON()] })
    assert.deepEqual(await b.reg.search({ offset: 2, limit: 5 }), { total: 3, connections: [b1.toJSON()] })
    assert.deepEqual(await b.reg.search({ offset: 3 }), { total: 3, connections: [] })
    // list() stays local.
    assert.deepEqual(a.reg.list().connections.map((c) => c.id), ['a1', 'a2'])
  })

  test('totals: per route and per instance, without listing', async (t) => {
    const pair = await twoInstances(t)
    if (pair === null) return
    const { a, b } = pair
    a.reg.add(new FakeBridge('a1', '/chat', 'alice', 'inst-a', at(1)).bridge)
    a.reg.add(new FakeBridge('a2', '/feed', null, 'inst-a', at(2)).bridge)
    b.reg.add(new FakeBridge('b1', '/chat', 'bob', 'inst-b', at(3)).bridge)
    await published(a.reg, b.reg)
    const expected = { total: 3, routes: { '/chat': 2, '/feed': 1 }, instances: [{ instanceId: 'inst-a', connections: 2 }, { instanceId: 'inst-b', connections: 1 }] }
    assert.deepEqual(await a.reg.totals(), expected)
    assert.deepEqual(await b.reg.totals(), expected)
  })

  test('find: a local view, a remote one (from its owner), or null', async (t) => {
    const pair = await twoInstances(t)
    if (pair === null) return
    const { a, b } = pair
    const a1 = new FakeBridge('a1', '/chat', 'alice', 'inst-a', at(1))
    const b1 = new FakeBridge('b1', '/chat', 'bob', 'inst-b', at(2))
    a.reg.add(a1.bridge)
    b.reg.add(b1.bridge)
    await published(a.reg, b.reg)
    b1.messagesToClient = 4
    assert.deepEqual(await a.reg.find('a1'), a1.toJSON())
    assert.deepEqual(await a.reg.find('b1'), b1.toJSON())
    assert.equal(await a.reg.find('nope'), null)
    b.reg.remove(b1.bridge)
    await b.reg.flush()
    assert.equal(await a.reg.find('b1'), null)
    assert.deepEqual((await a.reg.search()).connections.map((c) => c.id), ['a1'])
  })

  test('an instance whose heartbeat expired is neither counted, listed nor found', async (t) => {
    const pair = await twoInstances(t)
    if (pair === null) return
    const { prefix, a, b } = pair
    b.reg.add(new FakeBridge('b1', '/chat', 'bob', 'inst-b', at(2)).bridge)
    await published(b.reg)
    await a.redis.del(`${keys(prefix)}hb:inst-b`)
    assert.deepEqual(await a.reg.search(), { total: 0, connections: [] })
    assert.equal(await a.reg.find('b1'), null)
    assert.equal((await a.reg.totals()).total, 0)
  })

  test('an instance that does not answer: its connections are counted, its part is missing, the page says partial', async (t) => {
    const pair = await twoInstances(t)
    if (pair === null) return
    const { a, b } = pair
    a.reg.add(new FakeBridge('a1', '/chat', 'alice', 'inst-a', at(1)).bridge)
    b.reg.add(new FakeBridge('b1', '/chat', 'bob', 'inst-b', at(2)).bridge)
    await b.reg.flush() // written, but b never subscribed
    await a.reg.start()
    const page = await a.reg.search()
    assert.equal(page.total, 2)
    assert.deepEqual(page.connections.map((c) => c.id), ['a1'])
    assert.equal(page.partial, true)
  })

  test('junk views in a reply are skipped with a warning; only views of the instance asked are shown', async (t) => {
    if (!await needRedis(t)) return
    const prefix = testPrefix(t)
    const k = keys(prefix)
    const a = await registry(t, prefix, 'inst-a', { pageTimeout: 5000 })
    await a.reg.start()
    // A hand-made "instance" that answers page requests with junk around one good view.
    const r = a.redis
    await r.sadd(`${k}instances`, 'inst-x')
    await r.set(`${k}hb:inst-x`, '1', 'PX', 10_000)
    await r.hset(`${k}n:inst-x`, '*', '4')
    const good = new FakeBridge('x1', '/chat', 'eve', 'inst-x', at(1)).toJSON()
    const sub = new Redis(REDIS_URL)
    t.after(() => { sub.disconnect() })
    await sub.subscribe(`${prefix}cmd:inst-x`)
    sub.on('message', (_channel: string, message: string) => {
      const { rid, from } = JSON.parse(message) as { rid: string, from: string }
      const views = [good, { ...good, id: 'x2', instanceId: 'inst-a' }, { ...good, id: 'x3', messagesToClient: -1 }, 'not a view']
      void r.publish(`${prefix}reply:${from}`, JSON.stringify({ rid, result: 4, views }))
    })
    const page = await a.reg.search()
    assert.equal(page.total, 4)
    assert.deepEqual(page.connections, [good])
    assert.ok(a.warnings.lines.some(([, msg]) => msg === 'cluster bus: message ignored'), 'a warning')
    // A count that is not a count is skipped too.
    await r.hset(`${k}n:inst-x`, '*', 'many')
    assert.deepEqual(await a.reg.search(), { total: 0, connections: [] })
  })
})

describe('RedisRegistry: commands to another instance', () => {
  test('closeById, sendById and broadcast reach the owner over pub/sub', async (t) => {
    const pair = await twoInstances(t)
    if (pair === null) return
    const { a, b } = pair
    const a1 = new FakeBridge('a1', '/chat', 'alice', 'inst-a', at(1))
    const b1 = new FakeBridge('b1', '/chat', 'bob', 'inst-b', at(2))
    const b2 = new FakeBridge('b2', '/feed', 'bob', 'inst-b', at(3))
    a.reg.add(a1.bridge)
    b.reg.add(b1.bridge)
    b.reg.add(b2.bridge)
    await published(a.reg, b.reg)

    assert.equal(await a.reg.sendById('b1', 'hello', false), true)
    assert.deepEqual(b1.sent, [['hello', false]])
    assert.equal(await a.reg.sendById('b2', Buffer.from([0, 255]), true), true)
    assert.deepEqual(b2.sent[0][0], Buffer.from([0, 255]))
    assert.equal(b2.sent[0][1], true)

    assert.equal(await a.reg.broadcast({ route: '/chat' }, 'chat', false), 2)
    assert.deepEqual(a1.sent.map((s) => s[0]), ['chat'])
    assert.deepEqual(b1.sent.map((s) => s[0]), ['hello', 'chat'])
    assert.equal(await a.reg.broadcast({ user: 'bob' }, 'bob', false), 2)
    assert.equal(await a.reg.broadcast({}, 'all', false), 3)

    b1.sendResult = 'busy'
    await assert.rejects(a.reg.sendById('b1', 'x', false), { code: 'GW_ERR_CLIENT_BUSY' })
    b1.sendResult = 'closed'
    assert.equal(await a.reg.sendById('b1', 'x', false), false)

    assert.equal(await a.reg.closeById('b1', 4000, 'bye'), true)
    assert.deepEqual(b1.closes, [[4000, 'bye']])
    assert.equal(await a.reg.closeById('b1', 4000, 'again'), false, 'already closing')
    assert.equal(await a.reg.closeById('nope', 4000, ''), false)
    assert.equal(await a.reg.sendById('nope', 'x', false), false)
  })

  test('a bad close code is refused before anything is sent; a long reason is cut to fit a close frame', async (t) => {
    const pair = await twoInstances(t)
    if (pair === null) return
    const { a, b } = pair
    const b1 = new FakeBridge('b1', '/chat', 'bob', 'inst-b', at(2))
    b.reg.add(b1.bridge)
    await published(a.reg, b.reg)
    await assert.rejects(a.reg.closeById('b1', 1005, ''), { code: 'GW_ERR_BAD_CLOSE_CODE' })
    assert.equal(b1.closes.length, 0)
    assert.equal(await a.reg.closeById('b1', 4000, 'é'.repeat(100)), true)
    const reason = b1.closes[0][1]
    assert.ok(Buffer.byteLength(reason) <= 123, `reason of ${Buffer.byteLength(reason)} bytes`)
    assert.ok(reason.length > 0 && 'é'.repeat(100).startsWith(reason))
  })

  test('a message over maxPayload is not sent to the owner', async (t) => {
    if (!await needRedis(t)) return
    const prefix = testPrefix(t)
    const a = await registry(t, prefix, 'inst-a', { maxPayload: 4 })
    const b = await registry(t, prefix, 'inst-b', { maxPayload: 4 })
    const b1 = new FakeBridge('b1', '/chat', 'bob', 'inst-b', at(2))
    b.reg.add(b1.bridge)
    await published(a.reg, b.reg)
    assert.equal(await a.reg.sendById('b1', '12345', false), false)
    assert.equal(await a.reg.broadcast({}, '12345', false), 0)
    assert.deepEqual(b1.sent, [])
    assert.equal(await a.reg.sendById('b1', '1234', false), true)
  })

  test('an owner that does not listen: the command gives false at once (no receivers)', async (t) => {
    if (!await needRedis(t)) return
    const prefix = testPrefix(t)
    const a = await registry(t, prefix, 'inst-a', { commandTimeout: 60_000 })
    const b = await registry(t, prefix, 'inst-b')
    b.reg.add(new FakeBridge('b1', '/chat', 'bob', 'inst-b', at(2)).bridge)
    await b.reg.flush() // written, but b never subscribed
    await a.reg.start()
    assert.equal(await a.reg.sendById('b1', 'x', false), false)
    assert.equal(await a.reg.find('b1'), null)
    assert.equal(await a.reg.closeById('b1', 4000, ''), false)
  })

  test('junk on the command channel is ignored with a warning, and nothing is executed', async (t) => {
    const pair = await twoInstances(t)
    if (pair === null) return
    const { prefix, a, b } = pair
    const b1 = new FakeBridge('b1', '/chat', 'bob', 'inst-b', at(2))
    b.reg.add(b1.bridge)
    await published(a.reg, b.reg)
    // One message the bus must refuse, then a good command: pub/sub keeps their order, so the
    // answer to the second shows the first was handled.
    await a.redis.publish(`${prefix}cmd:inst-b`, JSON.stringify({ rid: 'r1', from: 'inst-a', cmd: { op: 'close', id: 'b1', code: 1005, reason: '' } }))
    assert.equal(await a.reg.sendById('b1', 'x', false), true)
    assert.deepEqual(b1.closes, [])
    assert.ok(b.warnings.lines.some(([, msg]) => msg === 'cluster bus: message ignored'))
  })
})

describe('RedisRegistry: reaping and outages', () => {
  test('a dead instance is reaped: its keys go, its concurrency shares are given back', async (t) => {
    if (!await needRedis(t)) return
    const prefix = testPrefix(t)
    const k = keys(prefix)
    const a = await registry(t, prefix, 'inst-a')
    const r = a.redis
    // inst-dead: in the set, no heartbeat; 2 of the 3 connections of key k and 1 of key j are its.
    await r.sadd(`${k}instances`, 'inst-dead')
    await r.sadd(`${k}ids:inst-dead`, 'd1')
    await r.hset(`${k}n:inst-dead`, '*', '1')
    await r.hset(`${k}u:inst-dead`, 'dora', '1')
    await r.hset(`${k}conc:inst:inst-dead`, 'k', '2', 'j', '1', 'junk', 'x', 'neg', '-4')
    await r.set(`${k}conc:k`, '3')
    await r.set(`${k}conc:j`, '1')
    await r.set(`${k}conc:neg`, '5')
    await a.reg.flush()
    assert.equal(await r.get(`${k}conc:k`), '1')
    assert.equal(await r.exists(`${k}conc:j`), 0, 'a count reaped to 0 is deleted')
    assert.equal(await r.get(`${k}conc:neg`), '5', 'a share that is not a positive integer is skipped')
    assert.equal(await r.exists(`${k}conc:inst:inst-dead`, `${k}ids:inst-dead`, `${k}n:inst-dead`, `${k}u:inst-dead`), 0)
    assert.deepEqual(await r.smembers(`${k}instances`), ['inst-a'])
  })

  test('a dead instance with thousands of shares is reaped in bounded steps, each share once', async (t) => {
    if (!await needRedis(t)) return
    const prefix = testPrefix(t)
    const k = keys(prefix)
    const a = await registry(t, prefix, 'inst-a')
    const b = await registry(t, prefix, 'inst-b')
    const r = a.redis
    await r.sadd(`${k}instances`, 'inst-dead')
    const shares: string[] = []
    const counts: string[] = []
    for (let i = 0; i < 1800; i++) { shares.push(`key${i}`, '1'); counts.push(`${k}conc:key${i}`, '2') }
    await r.hset(`${k}conc:inst:inst-dead`, ...shares)
    await r.mset(...counts)
    const sent = countCommands(r)
    // Two survivors reaping at once never give a share back twice.
    await Promise.all([a.reg.flush(), b.reg.flush()])
    assert.ok(sent.n >= 4, `several steps (${sent.n} commands)`)
    assert.equal(await r.exists(`${k}conc:inst:inst-dead`), 0)
    const left = await r.mget(...Array.from({ length: 1800 }, (_, i) => `${k}conc:key${i}`))
    assert.ok(left.every((v) => v === '1'), 'every count lost exactly its one share')
    assert.deepEqual((await r.smembers(`${k}instances`)).sort(), ['inst-a', 'inst-b'])
  })

  test('a live instance is not reaped, and neither is this one', async (t) => {
    const pair = await twoInstances(t)
    if (pair === null) return
    const { prefix, a, b } = pair
    const k = keys(prefix)
    await b.reg.flush()
    await a.redis.hset(`${k}conc:inst:inst-b`, 'k', '1')
    await a.redis.set(`${k}conc:k`, '1')
    await a.reg.flush()
    assert.equal(await a.redis.get(`${k}conc:k`), '1')
    assert.deepEqual((await a.redis.smembers(`${k}instances`)).sort(), ['inst-a', 'inst-b'])
  })

  test('set members that cannot be instance ids are dropped with a warning', async (t) => {
    if (!await needRedis(t)) return
    const prefix = testPrefix(t)
    const k = keys(prefix)
    const a = await registry(t, prefix, 'inst-a')
    await a.redis.sadd(`${k}instances`, 'bad\nid', 'x'.repeat(300))
    await a.reg.flush()
    assert.deepEqual(await a.redis.smembers(`${k}instances`), ['inst-a'])
    assert.ok(a.warnings.lines.some(([o, msg]) => msg === 'cluster registry: stored value skipped' && (o as { reason?: string }).reason === 'bad-instance-id'))
  })

  test('keys of the wrong type left in Redis are replaced, not fatal', async (t) => {
    if (!await needRedis(t)) return
    const prefix = testPrefix(t)
    const k = keys(prefix)
    const a = await registry(t, prefix, 'inst-a')
    await a.reg.flush()
    await a.redis.set(`${k}ids:inst-a`, 'junk')
    await a.redis.set(`${k}u:inst-a`, 'junk')
    await a.redis.hset(`${k}n:inst-a`, 'r:/chat', 'NaN')
    a.reg.add(new FakeBridge('a1', '/chat', 'alice', 'inst-a', at(1)).bridge)
    await a.reg.flush()
    assert.deepEqual(await a.redis.smembers(`${k}ids:inst-a`), ['a1'])
    assert.deepEqual(await a.redis.hgetall(`${k}u:inst-a`), { alice: '1' })
    assert.equal(await a.redis.hget(`${k}n:inst-a`, 'r:/chat'), '1')
  })

  test('Redis not ready: listings and totals are this instance\'s with partial: true; remote lookups find nothing', async () => {
    // A client that never connects: no socket at all.
    const redis = new Redis(REDIS_URL, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null })
    redis.on('error', () => {})
    const reg = new RedisRegistry({ redis, prefix: 'unused:', instanceId: 'inst-a', pingInterval: 1000 })
    const a1 = new FakeBridge('a1', '/chat', 'alice', 'inst-a', at(1))
    reg.add(a1.bridge)
    await reg.flush() // does nothing, and does not throw
    assert.deepEqual(await reg.search(), { total: 1, connections: [a1.toJSON()], partial: true })
    assert.deepEqual(await reg.search({ route: '/feed' }), { total: 0, connections: [], partial: true })
    assert.deepEqual(await reg.totals(), { total: 1, routes: { '/chat': 1 }, instances: [{ instanceId: 'inst-a', connections: 1 }], partial: true })
    assert.deepEqual(await reg.find('a1'), a1.toJSON())
    assert.equal(await reg.find('b1'), null)
    assert.equal(await reg.closeById('b1', 4000, ''), false)
    assert.equal(await reg.sendById('b1', 'x', false), false)
    assert.equal(await reg.broadcast({}, 'x', false), 1)
    assert.equal(await reg.closeById('a1', 4000, 'local'), true)
    assert.deepEqual(a1.closes, [[4000, 'local']])
    await reg.stop()
    redis.disconnect()
  })

  test('stop removes this instance from Redis', async (t) => {
    if (!await needRedis(t)) return
    const prefix = testPrefix(t)
    const k = keys(prefix)
    const a = await registry(t, prefix, 'inst-a')
    a.reg.add(new FakeBridge('a1', '/chat', 'alice', 'inst-a', at(1)).bridge)
    await a.reg.flush()
    await a.reg.start()
    assert.equal(await a.redis.exists(`${k}ids:inst-a`), 1)
    await a.stop()
    assert.equal(await a.redis.exists(`${k}hb:inst-a`, `${k}ids:inst-a`, `${k}n:inst-a`, `${k}u:inst-a`), 0)
    assert.deepEqual(await a.redis.smembers(`${k}instances`), [])
    await a.reg.flush() // stopped: writes nothing
    assert.equal(await a.redis.exists(`${k}hb:inst-a`), 0)
  })
})
