/**
 * src/registry/redis-registry.ts against a real Redis (REDIS_URL, default 127.0.0.1:6379;
 * skipped when unreachable, except under CI), with stand-in bridges and two registries with
 * their own instance ids in one key prefix (unique per test, deleted afterwards): what flush
 * publishes, cluster-wide search/find, removal, commands to another instance over pub/sub
 * (close, send, busy client, broadcast), junk read back from Redis skipped, reaping of a dead
 * instance (its concurrency shares given back), the partial fallback when Redis is not ready,
 * and stop(). No timers are waited on: flush() is called directly.
 */
import { describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { Redis } from 'ioredis'
import { FakeBridge as BaseFakeBridge } from '../../helpers/fake-bridge.js'
import { RedisRegistry } from '../../../src/registry/redis-registry.js'
import { needRedis, REDIS_URL, testPrefix } from '../../helpers/redis.js'

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
async function registry (t: TestContext, prefix: string, instanceId: string, extra: { commandTimeout?: number, maxPayload?: number } = {}): Promise<{ reg: RedisRegistry, redis: Redis, warnings: Warnings, stop: () => Promise<void> }> {
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
  redis.on('error', () => {})
  await redis.connect()
  const warnings: Warnings = { lines: [] }
  const log = { warn: (o: object, msg: string) => { warnings.lines.push([o, msg]) }, info: () => {} }
  const reg = new RedisRegistry({ redis, prefix, instanceId, pingInterval: 1000, log, ...extra })
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

describe('RedisRegistry: publishing and listing', () => {
  test('flush publishes the instance, its heartbeat and its connections', async (t) => {
    if (!await needRedis(t)) return
    const prefix = testPrefix(t)
    const { reg, redis } = await registry(t, prefix, 'inst-a')
    const b = new FakeBridge('c1', '/chat', 'alice', 'inst-a', at(1))
    reg.add(b.bridge)
    assert.equal(reg.size, 1)
    assert.equal(reg.get('c1'), b.bridge)
    await reg.flush()
    assert.deepEqual(await redis.smembers(`${prefix}instances`), ['inst-a'])
    const ttl = await redis.pttl(`${prefix}inst:inst-a`)
    assert.ok(ttl > 0 && ttl <= 3000, `heartbeat ttl ${ttl}`)
    const stored = await redis.hgetall(`${prefix}conns:inst-a`)
    assert.deepEqual(Object.keys(stored), ['c1'])
    assert.deepEqual(JSON.parse(stored.c1), b.toJSON())
    const connsTtl = await redis.pttl(`${prefix}conns:inst-a`)
    assert.ok(connsTtl > 0 && connsTtl <= 3000, `conns ttl ${connsTtl}`)
  })

  test('only changed connections are rewritten; removed ones are deleted', async (t) => {
    if (!await needRedis(t)) return
    const prefix = testPrefix(t)
    const { reg, redis } = await registry(t, prefix, 'inst-a')
    const b1 = new FakeBridge('c1', '/chat', 'alice', 'inst-a', at(1))
    const b2 = new FakeBridge('c2', '/chat', 'bob', 'inst-a', at(2))
    reg.add(b1.bridge)
    reg.add(b2.bridge)
    await reg.flush()
    // Overwritten behind its back: an unchanged connection is not written again...
    await redis.hset(`${prefix}conns:inst-a`, 'c1', 'stale')
    await reg.flush()
    assert.equal(await redis.hget(`${prefix}conns:inst-a`, 'c1'), 'stale')
    // ...a changed one is.
    b1.messagesFromClient = 3
    await reg.flush()
    assert.equal(JSON.parse((await redis.hget(`${prefix}conns:inst-a`, 'c1'))!).messagesFromClient, 3)
    reg.remove(b2.bridge)
    await reg.flush()
    assert.deepEqual(await redis.hkeys(`${prefix}conns:inst-a`), ['c1'])
  })

  test('search lists every live instance\'s connections, sorted by connectedAt, filtered and paged', async (t) => {
    const pair = await twoInstances(t)
    if (pair === null) return
    const { a, b } = pair
    const a1 = new FakeBridge('a1', '/chat', 'alice', 'inst-a', at(3))
    const a2 = new FakeBridge('a2', '/feed', 'bob', 'inst-a', at(1))
    const b1 = new FakeBridge('b1', '/chat', 'bob', 'inst-b', at(2))
    a.reg.add(a1.bridge)
    a.reg.add(a2.bridge)
    b.reg.add(b1.bridge)
    await a.reg.flush()
    await b.reg.flush()
    const all = await a.reg.search()
    assert.equal(all.partial, undefined)
    assert.equal(all.total, 3)
    assert.deepEqual(all.connections.map((c) => [c.id, c.instanceId]), [['a2', 'inst-a'], ['b1', 'inst-b'], ['a1', 'inst-a']])
    assert.deepEqual(all.connections[1], b1.toJSON())
    assert.deepEqual((await b.reg.search()).connections.map((c) => c.id), ['a2', 'b1', 'a1'])
    assert.deepEqual((await a.reg.search({ route: '/chat' })).connections.map((c) => c.id), ['b1', 'a1'])
    assert.deepEqual((await a.reg.search({ user: 'bob' })).connections.map((c) => c.id), ['a2', 'b1'])
    assert.deepEqual(await a.reg.search({ offset: 1, limit: 1 }), { total: 3, connections: [b1.toJSON()] })
    // list() stays local.
    assert.deepEqual(a.reg.list().connections.map((c) => c.id), ['a1', 'a2'])
  })

  test('find: a local view, a remote one, or null', async (t) => {
    const pair = await twoInstances(t)
    if (pair === null) return
    const { a, b } = pair
    const a1 = new FakeBridge('a1', '/chat', 'alice', 'inst-a', at(1))
    const b1 = new FakeBridge('b1', '/chat', 'bob', 'inst-b', at(2))
    a.reg.add(a1.bridge)
    b.reg.add(b1.bridge)
    await a.reg.flush()
    await b.reg.flush()
    assert.deepEqual(await a.reg.find('a1'), a1.toJSON())
    assert.deepEqual(await a.reg.find('b1'), b1.toJSON())
    assert.equal(await a.reg.find('nope'), null)
    b.reg.remove(b1.bridge)
    await b.reg.flush()
    assert.equal(await a.reg.find('b1'), null)
    assert.deepEqual((await a.reg.search()).connections.map((c) => c.id), ['a1'])
  })

  test('an instance whose heartbeat expired is not listed', async (t) => {
    const pair = await twoInstances(t)
    if (pair === null) return
    const { prefix, a, b } = pair
    b.reg.add(new FakeBridge('b1', '/chat', 'bob', 'inst-b', at(2)).bridge)
    await b.reg.flush()
    await a.redis.del(`${prefix}inst:inst-b`)
    assert.deepEqual(await a.reg.search(), { total: 0, connections: [] })
    assert.equal(await a.reg.find('b1'), null)
  })

  test('junk entries in another instance\'s hash are skipped with a warning', async (t) => {
    const pair = await twoInstances(t)
    if (pair === null) return
    const { prefix, a, b } = pair
    const b1 = new FakeBridge('b1', '/chat', 'bob', 'inst-b', at(2))
    b.reg.add(b1.bridge)
    await b.reg.flush()
    const conns = `${prefix}conns:inst-b`
    await a.redis.hset(conns, 'x1', 'not json', 'x2', '[1]', 'x3', JSON.stringify({ ...b1.toJSON(), id: 'x3', instanceId: 'inst-a' }), 'x4', JSON.stringify({ ...b1.toJSON(), id: 'x4', messagesToClient: -1 }))
    const page = await a.reg.search()
    assert.deepEqual(page.connections.map((c) => c.id), ['b1'])
    assert.equal(page.total, 1)
    assert.equal(await a.reg.find('x1'), null)
    assert.ok(a.warnings.lines.some(([, msg]) => msg === 'cluster registry: stored value skipped'), 'a warning')
  })
})

/**
 * Publishes the registries' connections, then starts them (subscribed to their command
 * channels). In that order: a flush asked for while one runs (start() kicks one off) returns at
 * once and leaves the work to a later timer, so awaiting it would prove nothing.
 */
async function published (...regs: RedisRegistry[]): Promise<void> {
  for (const r of regs) await r.flush()
  for (const r of regs) await r.start()
}

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
    await b.reg.flush() // published, but b never subscribed
    await a.reg.start()
    assert.equal(await a.reg.sendById('b1', 'x', false), false)
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
  test('a dead instance is reaped: its hash goes, its concurrency shares are given back', async (t) => {
    if (!await needRedis(t)) return
    const prefix = testPrefix(t)
    const a = await registry(t, prefix, 'inst-a')
    const r = a.redis
    // inst-dead: in the set, no heartbeat; 2 of the 3 connections of key k and 1 of key j are its.
    await r.sadd(`${prefix}instances`, 'inst-dead')
    await r.hset(`${prefix}conns:inst-dead`, 'd1', '{}')
    await r.hset(`${prefix}conc:inst:inst-dead`, 'k', '2', 'j', '1', 'junk', 'x', 'neg', '-4')
    await r.set(`${prefix}conc:k`, '3')
    await r.set(`${prefix}conc:j`, '1')
    await r.set(`${prefix}conc:neg`, '5')
    await a.reg.flush()
    assert.equal(await r.get(`${prefix}conc:k`), '1')
    assert.equal(await r.exists(`${prefix}conc:j`), 0, 'a count reaped to 0 is deleted')
    assert.equal(await r.get(`${prefix}conc:neg`), '5', 'a share that is not a positive integer is skipped')
    assert.equal(await r.exists(`${prefix}conc:inst:inst-dead`), 0)
    assert.equal(await r.exists(`${prefix}conns:inst-dead`), 0)
    assert.deepEqual(await r.smembers(`${prefix}instances`), ['inst-a'])
  })

  test('a live instance is not reaped, and neither is this one', async (t) => {
    const pair = await twoInstances(t)
    if (pair === null) return
    const { prefix, a, b } = pair
    await b.reg.flush()
    await a.redis.hset(`${prefix}conc:inst:inst-b`, 'k', '1')
    await a.redis.set(`${prefix}conc:k`, '1')
    await a.reg.flush()
    assert.equal(await a.redis.get(`${prefix}conc:k`), '1')
    assert.deepEqual((await a.redis.smembers(`${prefix}instances`)).sort(), ['inst-a', 'inst-b'])
  })

  test('set members that cannot be instance ids are dropped with a warning', async (t) => {
    if (!await needRedis(t)) return
    const prefix = testPrefix(t)
    const a = await registry(t, prefix, 'inst-a')
    await a.redis.sadd(`${prefix}instances`, 'bad\nid', 'x'.repeat(300))
    await a.reg.flush()
    assert.deepEqual(await a.redis.smembers(`${prefix}instances`), ['inst-a'])
    assert.ok(a.warnings.lines.some(([o, msg]) => msg === 'cluster registry: stored value skipped' && (o as { reason?: string }).reason === 'bad-instance-id'))
  })

  test('Redis not ready: listings are this instance\'s with partial: true; remote lookups find nothing', async () => {
    // A client that never connects: no socket at all.
    const redis = new Redis(REDIS_URL, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null })
    redis.on('error', () => {})
    const reg = new RedisRegistry({ redis, prefix: 'unused:', instanceId: 'inst-a', pingInterval: 1000 })
    const a1 = new FakeBridge('a1', '/chat', 'alice', 'inst-a', at(1))
    reg.add(a1.bridge)
    await reg.flush() // does nothing, and does not throw
    assert.deepEqual(await reg.search(), { total: 1, connections: [a1.toJSON()], partial: true })
    assert.deepEqual(await reg.search({ route: '/feed' }), { total: 0, connections: [], partial: true })
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
    const a = await registry(t, prefix, 'inst-a')
    a.reg.add(new FakeBridge('a1', '/chat', 'alice', 'inst-a', at(1)).bridge)
    await a.reg.flush()
    await a.reg.start()
    assert.equal(await a.redis.exists(`${prefix}conns:inst-a`), 1)
    await a.stop()
    assert.equal(await a.redis.exists(`${prefix}inst:inst-a`, `${prefix}conns:inst-a`), 0)
    assert.deepEqual(await a.redis.smembers(`${prefix}instances`), [])
    await a.reg.flush() // stopped: publishes nothing
    assert.equal(await a.redis.exists(`${prefix}inst:inst-a`), 0)
  })
})
