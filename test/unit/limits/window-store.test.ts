/**
 * src/limits/window-store.ts: WindowStore's fixed windows (counts within one, a new window at
 * its end, ttl left), keys apart, the maxKeys bound (the oldest window goes first), and the
 * @fastify/rate-limit store class it hands out (shared counts, per-route children).
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { WindowStore } from '../../../src/limits/window-store.js'

describe('WindowStore.incr', () => {
  test('counts hits within one window, with the ms left', () => {
    const s = new WindowStore()
    assert.deepEqual(s.incr('k', 1000, 5000), { current: 1, ttl: 1000 })
    assert.deepEqual(s.incr('k', 1000, 5200), { current: 2, ttl: 800 })
    assert.deepEqual(s.incr('k', 1000, 5999), { current: 3, ttl: 1 })
  })

  test('a new window starts when the old one ends (at resetAt exactly)', () => {
    const s = new WindowStore()
    s.incr('k', 1000, 0)
    s.incr('k', 1000, 500)
    assert.deepEqual(s.incr('k', 1000, 1000), { current: 1, ttl: 1000 })
    assert.deepEqual(s.incr('k', 1000, 1500), { current: 2, ttl: 500 })
    assert.deepEqual(s.incr('k', 1000, 99_999), { current: 1, ttl: 1000 })
  })

  test('keys count apart', () => {
    const s = new WindowStore()
    s.incr('a', 1000, 0)
    s.incr('a', 1000, 0)
    assert.equal(s.incr('b', 1000, 0).current, 1)
    assert.equal(s.incr('a', 1000, 0).current, 3)
    assert.equal(s.size, 2)
  })

  test('the window length is fixed when it starts', () => {
    const s = new WindowStore()
    s.incr('k', 1000, 0)
    assert.deepEqual(s.incr('k', 60_000, 100), { current: 2, ttl: 900 })
  })

  test('defaults `now` to Date.now()', (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: 10_000 })
    const s = new WindowStore()
    assert.deepEqual(s.incr('k', 1000), { current: 1, ttl: 1000 })
    t.mock.timers.tick(400)
    assert.deepEqual(s.incr('k', 1000), { current: 2, ttl: 600 })
    t.mock.timers.tick(600)
    assert.deepEqual(s.incr('k', 1000), { current: 1, ttl: 1000 })
  })
})

describe('WindowStore bound', () => {
  test('never holds more than maxKeys; the oldest key goes first', () => {
    const s = new WindowStore(2)
    s.incr('a', 1000, 0)
    s.incr('a', 1000, 0)
    s.incr('b', 1000, 0)
    s.incr('c', 1000, 0)
    assert.equal(s.size, 2)
    assert.equal(s.incr('c', 1000, 0).current, 2)
    assert.equal(s.incr('b', 1000, 0).current, 2)
    // 'a' was evicted: it starts over, and evicts the now-oldest, 'b' (hits do not refresh a key).
    assert.equal(s.incr('a', 1000, 0).current, 1)
    assert.equal(s.size, 2)
    assert.equal(s.incr('c', 1000, 0).current, 3)
    assert.equal(s.incr('b', 1000, 0).current, 1)
  })

  test('a key whose window restarts counts as the newest', () => {
    const s = new WindowStore(2)
    s.incr('a', 100, 0)
    s.incr('b', 1000, 0)
    s.incr('a', 100, 200) // new window for 'a': now newer than 'b'
    s.incr('c', 1000, 200) // evicts 'b'
    assert.equal(s.size, 2)
    assert.equal(s.incr('a', 100, 250).current, 2)
    assert.equal(s.incr('b', 1000, 250).current, 1)
  })

  test('the default bound is large', () => {
    const s = new WindowStore()
    for (let i = 0; i < 1000; i++) s.incr(`k${i}`, 1000, 0)
    assert.equal(s.size, 1000)
    assert.equal(s.incr('k0', 1000, 0).current, 2)
  })
})

describe('WindowStore.storeClass', () => {
  type Res = { current: number, ttl: number }
  interface Store {
    incr (key: string, cb: (err: Error | null, res: Res) => void, timeWindow: number): void
    child (params: { routeInfo?: { method?: string | string[], url?: string } }): Store
  }
  const hit = (store: Store, key: string, windowMs = 60_000): Res => {
    let out: Res | undefined
    store.incr(key, (err, res) => { assert.equal(err, null); out = res }, windowMs)
    assert.ok(out !== undefined, 'the callback is called synchronously')
    return out
  }

  test('stores of one WindowStore share the counts (a reload keeps them)', () => {
    const ws = new WindowStore()
    const Store = ws.storeClass() as new () => Store
    const a = new Store()
    const b = new Store()
    assert.equal(hit(a, '1.2.3.4').current, 1)
    assert.equal(hit(b, '1.2.3.4').current, 2)
    assert.equal(hit(new (ws.storeClass() as new () => Store)(), '1.2.3.4').current, 3)
    assert.equal(ws.size, 1)
  })

  test('the time window given by the caller is the window', (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: 0 })
    const Store = new WindowStore().storeClass() as new () => Store
    const s = new Store()
    assert.deepEqual(hit(s, 'k', 500), { current: 1, ttl: 500 })
    t.mock.timers.tick(500)
    assert.deepEqual(hit(s, 'k', 500), { current: 1, ttl: 500 })
  })

  test('a child for a route counts apart from its parent and from other routes', () => {
    const ws = new WindowStore()
    const Store = ws.storeClass() as new () => Store
    const root = new Store()
    const getA = root.child({ routeInfo: { method: 'GET', url: '/a' } })
    const getB = root.child({ routeInfo: { method: 'GET', url: '/b' } })
    hit(root, 'ip')
    assert.equal(hit(getA, 'ip').current, 1)
    assert.equal(hit(getA, 'ip').current, 2)
    assert.equal(hit(getB, 'ip').current, 1)
    assert.equal(hit(root, 'ip').current, 2)
    assert.equal(hit(root.child({ routeInfo: { method: 'GET', url: '/a' } }), 'ip').current, 3)
  })

  test('a child without a route url shares its parent\'s counts', () => {
    const Store = new WindowStore().storeClass() as new () => Store
    const root = new Store()
    hit(root, 'ip')
    assert.equal(hit(root.child({}), 'ip').current, 2)
  })
})
