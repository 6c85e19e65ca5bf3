/**
 * src/limits/concurrency.ts: MemoryConcurrency (acquire up to the limit, release gives one back,
 * a lease released twice counts once) and RedisConcurrency against a real Redis (REDIS_URL,
 * default 127.0.0.1:6379; skipped when unreachable, except under CI): cluster-wide counts shared
 * by instances with their own ids, each instance's share in its hash, idempotent release, junk
 * values or keys of the wrong type counted as 0, and releases owed while Redis was away.
 * Every test uses a key prefix of its own, deleted afterwards.
 */
import { describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { Redis } from 'ioredis'
import { MemoryConcurrency, RedisConcurrency, type Lease } from '../../../src/limits/concurrency.js'
import { needRedis, REDIS_URL, testPrefix } from '../../helpers/redis.js'

describe('MemoryConcurrency', () => {
  test('acquires up to max per key, then null', async () => {
    const c = new MemoryConcurrency()
    const a = await c.acquire('k', 2)
    const b = await c.acquire('k', 2)
    assert.notEqual(a, null)
    assert.notEqual(b, null)
    assert.equal(await c.acquire('k', 2), null)
    assert.equal(await c.count('k'), 2)
  })

  test('keys count apart', async () => {
    const c = new MemoryConcurrency()
    await c.acquire('a', 1)
    assert.notEqual(await c.acquire('b', 1), null)
    assert.equal(await c.acquire('a', 1), null)
    assert.equal(await c.count('a'), 1)
    assert.equal(await c.count('b'), 1)
    assert.equal(await c.count('none'), 0)
  })

  test('release gives the slot back', async () => {
    const c = new MemoryConcurrency()
    const a = await c.acquire('k', 1)
    assert.equal(await c.acquire('k', 1), null)
    a!.release()
    assert.equal(await c.count('k'), 0)
    assert.notEqual(await c.acquire('k', 1), null)
  })

  test('releasing a lease twice counts once', async () => {
    const c = new MemoryConcurrency()
    const a = await c.acquire('k', 3)
    await c.acquire('k', 3)
    a!.release()
    a!.release()
    assert.equal(await c.count('k'), 1)
  })

  test('max 0 refuses everything', async () => {
    const c = new MemoryConcurrency()
    assert.equal(await c.acquire('k', 0), null)
    assert.equal(await c.count('k'), 0)
  })
})

/** A connected client, disconnected after the test. */
async function client (t: TestContext, extra: Record<string, unknown> = {}): Promise<Redis> {
  const r = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, ...extra })
  r.on('error', () => {})
  await r.connect()
  t.after(() => { r.disconnect() })
  return r
}

describe('RedisConcurrency', () => {
  test('acquire, count and release; the instance hash holds its share', async (t) => {
    if (!await needRedis(t)) return
    const prefix = testPrefix(t)
    const r = await client(t)
    const c = new RedisConcurrency(r, prefix, 'inst-a')
    assert.equal(c.countKey('u1'), `${prefix}{${prefix}reg}:conc:u1`)
    assert.equal(c.instanceKey, `${prefix}{${prefix}reg}:conc:inst:inst-a`)
    const a = await c.acquire('u1', 2)
    const b = await c.acquire('u1', 2)
    assert.notEqual(a, null)
    assert.notEqual(b, null)
    assert.equal(await c.acquire('u1', 2), null)
    assert.equal(await c.count('u1'), 2)
    assert.equal(await r.hget(c.instanceKey, 'u1'), '2')
    a!.release()
    // Commands on one connection run in order: the release is done when count answers.
    assert.equal(await c.count('u1'), 1)
    assert.equal(await r.hget(c.instanceKey, 'u1'), '1')
    b!.release()
    assert.equal(await c.count('u1'), 0)
    assert.equal(await r.exists(c.countKey('u1')), 0, 'the count key goes at 0')
    assert.equal(await r.hexists(c.instanceKey, 'u1'), 0, 'the share goes at 0')
  })

  test('the limit is cluster-wide across instances with different ids', async (t) => {
    if (!await needRedis(t)) return
    const prefix = testPrefix(t)
    const ra = await client(t)
    const rb = await client(t)
    const a = new RedisConcurrency(ra, prefix, 'inst-a')
    const b = new RedisConcurrency(rb, prefix, 'inst-b')
    const la = await a.acquire('k', 2)
    const lb = await b.acquire('k', 2)
    assert.notEqual(la, null)
    assert.notEqual(lb, null)
    assert.equal(await a.acquire('k', 2), null)
    assert.equal(await b.acquire('k', 2), null)
    assert.equal(await a.count('k'), 2)
    assert.equal(await b.count('k'), 2)
    assert.equal(await ra.hget(a.instanceKey, 'k'), '1')
    assert.equal(await ra.hget(b.instanceKey, 'k'), '1')
    la!.release()
    await a.count('k') // a's release is through
    assert.notEqual(await b.acquire('k', 2), null)
    assert.equal(await b.count('k'), 2)
    assert.equal(await ra.hexists(a.instanceKey, 'k'), 0)
    assert.equal(await ra.hget(b.instanceKey, 'k'), '2')
  })

  test('a refused acquisition leaves the count and the share as they were', async (t) => {
    if (!await needRedis(t)) return
    const prefix = testPrefix(t)
    const r = await client(t)
    const c = new RedisConcurrency(r, prefix, 'inst-a')
    await c.acquire('k', 1)
    for (let i = 0; i < 5; i++) assert.equal(await c.acquire('k', 1), null)
    assert.equal(await r.get(c.countKey('k')), '1')
    assert.equal(await r.hget(c.instanceKey, 'k'), '1')
  })

  test('releasing a lease twice counts once', async (t) => {
    if (!await needRedis(t)) return
    const prefix = testPrefix(t)
    const r = await client(t)
    const c = new RedisConcurrency(r, prefix, 'inst-a')
    const a = await c.acquire('k', 5)
    await c.acquire('k', 5)
    a!.release()
    a!.release()
    assert.equal(await c.count('k'), 1)
    assert.equal(await r.hget(c.instanceKey, 'k'), '1')
  })

  test('a release after the share was given back (instance reaped) does not subtract again', async (t) => {
    if (!await needRedis(t)) return
    const prefix = testPrefix(t)
    const r = await client(t)
    const a = new RedisConcurrency(r, prefix, 'inst-a')
    const b = new RedisConcurrency(r, prefix, 'inst-b')
    const la = await a.acquire('k', 5)
    await b.acquire('k', 5)
    // What a reaper does for inst-a: its share subtracted from the count, its hash deleted.
    await r.decrby(a.countKey('k'), 1)
    await r.del(a.instanceKey)
    la!.release()
    assert.equal(await b.count('k'), 1, 'inst-b\'s connection still counts')
    assert.equal(await r.hexists(a.instanceKey, 'k'), 0)
  })

  for (const junk of ['abc', '1.5', '-7', '0', '']) {
    test(`a junk count ${JSON.stringify(junk)} counts as 0: neither the limit off nor every acquisition refused`, async (t) => {
      if (!await needRedis(t)) return
      const prefix = testPrefix(t)
      const r = await client(t)
      const c = new RedisConcurrency(r, prefix, 'inst-a')
      await r.set(c.countKey('k'), junk)
      assert.equal(await c.count('k'), 0)
      const l = await c.acquire('k', 1)
      assert.notEqual(l, null)
      assert.equal(await c.count('k'), 1)
      assert.equal(await c.acquire('k', 1), null, 'the limit holds after the junk')
      l!.release()
      assert.equal(await c.count('k'), 0)
    })
  }

  test('a huge integer count is a count: it refuses (nothing can tell it from real connections)', async (t) => {
    if (!await needRedis(t)) return
    const prefix = testPrefix(t)
    const r = await client(t)
    const c = new RedisConcurrency(r, prefix, 'inst-a')
    await r.set(c.countKey('k'), '1000')
    assert.equal(await c.acquire('k', 10), null)
    assert.equal(await r.get(c.countKey('k')), '1000')
  })

  test('a count key of another type is replaced on acquire', async (t) => {
    if (!await needRedis(t)) return
    const prefix = testPrefix(t)
    const r = await client(t)
    const c = new RedisConcurrency(r, prefix, 'inst-a')
    await r.hset(c.countKey('k'), 'x', '99')
    const l = await c.acquire('k', 1)
    assert.notEqual(l, null)
    assert.equal(await r.type(c.countKey('k')), 'string')
    assert.equal(await c.count('k'), 1)
    l!.release()
    assert.equal(await c.count('k'), 0)
  })

  test('an instance hash of another type, or a junk share, does not block acquire or release', async (t) => {
    if (!await needRedis(t)) return
    const prefix = testPrefix(t)
    const r = await client(t)
    const c = new RedisConcurrency(r, prefix, 'inst-a')
    await r.set(c.instanceKey, 'not a hash')
    const l1 = await c.acquire('k', 3)
    assert.notEqual(l1, null)
    assert.equal(await r.type(c.instanceKey), 'hash')
    assert.equal(await r.hget(c.instanceKey, 'k'), '1')
    await r.hset(c.instanceKey, 'k', 'junk')
    const l2 = await c.acquire('k', 3)
    assert.notEqual(l2, null)
    assert.equal(await r.hget(c.instanceKey, 'k'), '1')
    assert.equal(await c.count('k'), 2)
    await r.hset(c.instanceKey, 'k', 'junk')
    l2!.release()
    assert.equal(await c.count('k'), 1, 'a junk share still gives the count back')
    assert.equal(await r.hexists(c.instanceKey, 'k'), 0)
  })

  test('count() of a count key of another type is 0', async (t) => {
    if (!await needRedis(t)) return
    const prefix = testPrefix(t)
    const r = await client(t)
    const c = new RedisConcurrency(r, prefix, 'inst-a')
    await r.hset(c.countKey('k'), 'x', '1')
    assert.equal(await c.count('k'), 0)
  })

  test('two RedisConcurrency on one client share its scripts', async (t) => {
    if (!await needRedis(t)) return
    const prefix = testPrefix(t)
    const r = await client(t)
    const a = new RedisConcurrency(r, prefix, 'inst-a')
    const b = new RedisConcurrency(r, prefix, 'inst-b')
    assert.notEqual(await a.acquire('k', 2), null)
    assert.notEqual(await b.acquire('k', 2), null)
    assert.equal(await a.acquire('k', 2), null)
  })

  test('a release while Redis is away is owed, and sent when it is back', async (t) => {
    if (!await needRedis(t)) return
    const prefix = testPrefix(t)
    const r = await client(t, { enableOfflineQueue: false })
    const c = new RedisConcurrency(r, prefix, 'inst-a')
    const leases: Lease[] = []
    for (let i = 0; i < 2; i++) leases.push((await c.acquire('k', 5))!)
    const ended = once(r, 'end')
    r.disconnect()
    await ended
    for (const l of leases) l.release()
    // The failed releases are recorded once their rejection is handled.
    for (let i = 0; i < 20 && c.owed < 2; i++) await new Promise((resolve) => setImmediate(resolve))
    assert.equal(c.owed, 2)
    await r.connect()
    assert.equal(c.owed, 0)
    assert.equal(await c.count('k'), 0)
    assert.equal(await r.hexists(c.instanceKey, 'k'), 0)
  })

  test('acquire rejects when Redis is unreachable', async (t) => {
    if (!await needRedis(t)) return
    const prefix = testPrefix(t)
    const r = await client(t, { enableOfflineQueue: false })
    const c = new RedisConcurrency(r, prefix, 'inst-a')
    r.disconnect()
    await assert.rejects(c.acquire('k', 1))
  })
})
