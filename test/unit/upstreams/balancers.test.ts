/**
 * Balancers (spec section 3, `upstreams.*.balance` and `hashOn`): exact round-robin, least
 * connections with round-robin ties, and the hash key taken from the ip, the user, a header or a
 * cookie, each falling back to the ip.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import {
  HashBalancer, LeastConnectionsBalancer, RoundRobinBalancer, cookieValue, createBalancer, hashKeyFn, type PickContext
} from '../../../src/upstreams/balancers.js'
import { HashRing } from '../../../src/upstreams/hash-ring.js'

const A = 'http://127.0.0.1:9001'
const B = 'http://127.0.0.1:9002'
const C = 'http://127.0.0.1:9003'
const ALL = [A, B, C]
const ctx: PickContext = { ip: '203.0.113.7', headers: {} }
const any = (): boolean => true

function picks (pick: () => string | null, n: number): Array<string | null> {
  return Array.from({ length: n }, pick)
}

describe('RoundRobinBalancer', () => {
  test('rotates exactly over the targets', () => {
    const b = new RoundRobinBalancer(ALL)
    assert.deepEqual(picks(() => b.pick(ctx, any), 7), [A, B, C, A, B, C, A])
  })

  test('skips unavailable targets: the others share their turns, and they come back', () => {
    const b = new RoundRobinBalancer(ALL)
    const down = new Set<string>()
    const ok = (t: string): boolean => !down.has(t)
    assert.equal(b.pick(ctx, ok), A)
    down.add(B)
    const without = picks(() => b.pick(ctx, ok), 20)
    assert.ok(!without.includes(B))
    // B's turn goes to the others; C, behind after the first pick, catches up by one.
    assert.ok(Math.abs(without.filter((t) => t === A).length - without.filter((t) => t === C).length) <= 2, without.join())
    down.clear()
    const back = picks(() => b.pick(ctx, ok), 30)
    assert.deepEqual([A, B, C].map((t) => back.filter((x) => x === t).length), [10, 10, 10])
  })

  test('null when nothing is available', () => {
    const b = new RoundRobinBalancer(ALL)
    assert.equal(b.pick(ctx, () => false), null)
    assert.equal(new RoundRobinBalancer([]).pick(ctx, any), null)
  })
})

describe('LeastConnectionsBalancer', () => {
  test('picks the least loaded available target', () => {
    const load = new Map([[A, 3], [B, 1], [C, 2]])
    const b = new LeastConnectionsBalancer(ALL, (t) => load.get(t)!)
    assert.equal(b.pick(ctx, any), B)
    assert.equal(b.pick(ctx, (t) => t !== B), C)
    load.set(A, 0)
    assert.equal(b.pick(ctx, any), A)
    assert.equal(b.pick(ctx, () => false), null)
  })

  test('equal loads take turns', () => {
    const b = new LeastConnectionsBalancer(ALL, () => 0)
    assert.deepEqual(picks(() => b.pick(ctx, any), 6), [A, B, C, A, B, C])
  })

  test('ties after a load change continue from the last pick', () => {
    const load = new Map([[A, 1], [B, 1], [C, 1]])
    const b = new LeastConnectionsBalancer(ALL, (t) => load.get(t)!)
    assert.equal(b.pick(ctx, any), A)
    load.set(A, 2)
    assert.equal(b.pick(ctx, any), B)
    load.set(B, 2)
    assert.equal(b.pick(ctx, any), C)
    load.set(C, 2)
    assert.equal(b.pick(ctx, any), A)
  })
})

describe('hashKeyFn', () => {
  test('ip', () => {
    assert.equal(hashKeyFn('ip')(ctx), '203.0.113.7')
  })

  test('user, falling back to the ip without a user', () => {
    const key = hashKeyFn('user')
    assert.equal(key({ ...ctx, userId: 'alice' }), 'alice')
    assert.equal(key({ ...ctx, userId: null }), ctx.ip)
    assert.equal(key({ ...ctx, userId: '' }), ctx.ip)
    assert.equal(key(ctx), ctx.ip)
  })

  test('header:<name> is case-insensitive and falls back to the ip', () => {
    const key = hashKeyFn('header:X-Tenant')
    assert.equal(key({ ...ctx, headers: { 'x-tenant': 'acme' } }), 'acme')
    assert.equal(key({ ...ctx, headers: { 'x-tenant': ['acme', 'b'] } }), 'acme, b')
    assert.equal(key({ ...ctx, headers: { 'x-tenant': '' } }), ctx.ip)
    assert.equal(key({ ...ctx, headers: { 'x-other': 'acme' } }), ctx.ip)
  })

  test('cookie:<name> reads the Cookie header and falls back to the ip', () => {
    const key = hashKeyFn('cookie:sid')
    assert.equal(key({ ...ctx, headers: { cookie: 'theme=dark; sid=abc123; xsid=no' } }), 'abc123')
    assert.equal(key({ ...ctx, headers: { cookie: 'xsid=no' } }), ctx.ip)
    assert.equal(key({ ...ctx, headers: { cookie: 'sid=' } }), ctx.ip)
    assert.equal(key(ctx), ctx.ip)
  })

  test('anything else is refused', () => {
    for (const bad of ['', 'host', 'header:', 'cookie: ', 'query:x']) {
      assert.throws(() => hashKeyFn(bad), TypeError, bad)
    }
  })
})

describe('cookieValue', () => {
  test('finds the named cookie, unquoted and decoded', () => {
    assert.equal(cookieValue('a=1; b=2', 'b'), '2')
    assert.equal(cookieValue('a=1;b=2', 'a'), '1')
    assert.equal(cookieValue('a="quoted value"', 'a'), 'quoted value')
    assert.equal(cookieValue('a=caf%C3%A9', 'a'), 'café')
    assert.equal(cookieValue('a=%E0%A4%A', 'a'), '%E0%A4%A', 'a malformed escape is kept as is')
    assert.equal(cookieValue('a=x=y', 'a'), 'x=y')
    assert.equal(cookieValue('a=1; a=2', 'a'), '1', 'the first wins, as browsers send the most specific first')
  })

  test('null when missing', () => {
    assert.equal(cookieValue(undefined, 'a'), null)
    assert.equal(cookieValue('', 'a'), null)
    assert.equal(cookieValue('ab=1; flag', 'a'), null)
  })
})

describe('HashBalancer', () => {
  test('is sticky per key and agrees with the ring', () => {
    const b = new HashBalancer(ALL, hashKeyFn('header:x-tenant'))
    const ring = new HashRing(ALL)
    const seen = new Set<string>()
    for (let i = 0; i < 200; i++) {
      const c: PickContext = { ...ctx, headers: { 'x-tenant': `tenant-${i}` } }
      const t = b.pick(c, any)!
      assert.equal(t, ring.lookup(`tenant-${i}`))
      assert.equal(b.pick(c, any), t)
      seen.add(t)
    }
    assert.equal(seen.size, 3, 'keys spread over every target')
  })

  test('walks to the next available target and comes back', () => {
    const b = new HashBalancer(ALL, hashKeyFn('ip'))
    const home = b.pick(ctx, any)!
    const other = b.pick(ctx, (t) => t !== home)!
    assert.notEqual(other, home)
    assert.equal(b.pick(ctx, (t) => t !== home), other)
    assert.equal(b.pick(ctx, any), home)
    assert.equal(b.pick(ctx, () => false), null)
  })
})

describe('createBalancer', () => {
  const load = (): number => 0

  test('one balancer per mode', () => {
    assert.ok(createBalancer('round-robin', ALL, { load }) instanceof RoundRobinBalancer)
    assert.ok(createBalancer('least-connections', ALL, { load }) instanceof LeastConnectionsBalancer)
    assert.ok(createBalancer('ip-hash', ALL, { load }) instanceof HashBalancer)
    assert.ok(createBalancer('hash', ALL, { load, hashOn: 'user' }) instanceof HashBalancer)
    assert.throws(() => createBalancer('random' as never, ALL, { load }), TypeError)
    assert.throws(() => createBalancer('hash', ALL, { load, hashOn: 'nope' }), TypeError)
  })

  test('ip-hash is hash on the ip, whatever hashOn says', () => {
    const ipHash = createBalancer('ip-hash', ALL, { load, hashOn: 'user' })
    const hash = createBalancer('hash', ALL, { load, hashOn: 'ip' })
    for (let i = 0; i < 100; i++) {
      const c: PickContext = { ip: `10.1.2.${i}`, userId: 'same-user', headers: {} }
      assert.equal(ipHash.pick(c, any), hash.pick(c, any))
    }
  })
})
