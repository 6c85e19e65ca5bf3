/**
 * Target weights in the balancers: smooth weighted round-robin (nginx's sequence, exact shares),
 * least connections by load per weight, weight 0 never picked, and the hash ring's virtual nodes
 * in proportion to weight.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { HashBalancer, LeastConnectionsBalancer, RoundRobinBalancer, createBalancer, hashKeyFn, type PickContext } from '../../../src/upstreams/balancers.js'

const ctx: PickContext = { ip: '203.0.113.7', headers: {} }
const any = (): boolean => true

function counts (pick: () => string | null, n: number): Map<string, number> {
  const out = new Map<string, number>()
  for (let i = 0; i < n; i++) {
    const t = pick()
    if (t !== null) out.set(t, (out.get(t) ?? 0) + 1)
  }
  return out
}

describe('smooth weighted round-robin', () => {
  test('weights 5, 1, 1 give nginx\'s sequence a a b a c a a', () => {
    const b = new RoundRobinBalancer([{ url: 'a', weight: 5 }, { url: 'b', weight: 1 }, { url: 'c', weight: 1 }])
    assert.deepEqual(Array.from({ length: 14 }, () => b.pick(ctx, any)), ['a', 'a', 'b', 'a', 'c', 'a', 'a', 'a', 'a', 'b', 'a', 'c', 'a', 'a'])
  })

  test('every cycle of sum(weights) picks gives each target exactly its weight, for random weights', () => {
    let seed = 7
    const rand = (): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31 }
    for (let round = 0; round < 50; round++) {
      const n = 1 + Math.floor(rand() * 6)
      const targets = Array.from({ length: n }, (_, i) => ({ url: `t${i}`, weight: 1 + Math.floor(rand() * 20) }))
      const total = targets.reduce((s, t) => s + t.weight, 0)
      const b = new RoundRobinBalancer(targets)
      for (let cycle = 0; cycle < 3; cycle++) {
        const c = counts(() => b.pick(ctx, any), total)
        for (const t of targets) assert.equal(c.get(t.url), t.weight, `${JSON.stringify(targets)} cycle ${cycle}`)
      }
    }
  })

  test('no target gets two picks in a row while another of equal weight waits (smooth, not in runs)', () => {
    const b = new RoundRobinBalancer([{ url: 'a', weight: 3 }, { url: 'b', weight: 3 }, { url: 'c', weight: 1 }])
    const seq = Array.from({ length: 14 }, () => b.pick(ctx, any))
    for (let i = 1; i < seq.length; i++) assert.notEqual(seq[i], seq[i - 1], seq.join(' '))
  })

  test('weight 0 is never picked; all weights 0 is null', () => {
    const b = new RoundRobinBalancer([{ url: 'a', weight: 0 }, { url: 'b', weight: 2 }])
    assert.deepEqual(counts(() => b.pick(ctx, any), 10), new Map([['b', 10]]))
    b.update([{ url: 'a', weight: 0 }, { url: 'b', weight: 0 }])
    assert.equal(b.pick(ctx, any), null)
  })

  test('update() re-weights: the new shares hold from the next cycle', () => {
    const b = new RoundRobinBalancer(['a', 'b'])
    counts(() => b.pick(ctx, any), 4)
    b.update([{ url: 'a', weight: 3 }, { url: 'b', weight: 1 }, { url: 'c', weight: 4 }])
    counts(() => b.pick(ctx, any), 8)
    assert.deepEqual(counts(() => b.pick(ctx, any), 80), new Map([['a', 30], ['b', 10], ['c', 40]]))
  })
})

describe('weighted least connections', () => {
  test('picks the least load per unit of weight', () => {
    const load = new Map([['a', 4], ['b', 3], ['c', 0]])
    const b = new LeastConnectionsBalancer([{ url: 'a', weight: 4 }, { url: 'b', weight: 1 }, { url: 'c', weight: 0 }], (t) => load.get(t)!)
    // a: 4/4 = 1 beats b: 3/1; c has weight 0 and is never picked, though idle.
    assert.equal(b.pick(ctx, any), 'a')
    load.set('a', 13)
    assert.equal(b.pick(ctx, any), 'b')
  })

  test('fills targets in proportion to their weights', () => {
    const load = new Map<string, number>()
    const b = new LeastConnectionsBalancer([{ url: 'a', weight: 1 }, { url: 'b', weight: 2 }, { url: 'c', weight: 3 }], (t) => load.get(t) ?? 0)
    for (let i = 0; i < 600; i++) {
      const t = b.pick(ctx, any)!
      load.set(t, (load.get(t) ?? 0) + 1)
    }
    assert.deepEqual([load.get('a'), load.get('b'), load.get('c')], [100, 200, 300])
  })
})

describe('weighted hash ring', () => {
  const keys = Array.from({ length: 20_000 }, (_, i) => ({ ...ctx, ip: `10.${i >> 16 & 255}.${i >> 8 & 255}.${i & 255}` }))

  test('a target of weight 3 gets about three times the keys of one of weight 1', () => {
    const b = new HashBalancer([{ url: 'http://a:1', weight: 3 }, { url: 'http://b:1', weight: 1 }], hashKeyFn('ip'))
    const c = counts((() => { let i = 0; return () => b.pick(keys[i++], any) })(), keys.length)
    const share = c.get('http://a:1')! / keys.length
    assert.ok(share > 0.68 && share < 0.82, `share ${share}`)
  })

  test('weight 0 is off the ring; equal weights keep the ring of unweighted targets', () => {
    const b = new HashBalancer([{ url: 'http://a:1', weight: 0 }, { url: 'http://b:1', weight: 2 }, { url: 'http://c:1', weight: 2 }], hashKeyFn('ip'))
    const plain = createBalancer('hash', ['http://b:1', 'http://c:1'], { hashOn: 'ip', load: () => 0 })
    for (const k of keys.slice(0, 2000)) {
      const t = b.pick(k, any)
      assert.notEqual(t, 'http://a:1')
      assert.equal(t, plain.pick(k, any))
    }
  })

  test('adding a target moves keys only to it', () => {
    const b = new HashBalancer(['http://a:1', 'http://b:1'], hashKeyFn('ip'))
    const before = keys.map((k) => b.pick(k, any))
    b.update(['http://a:1', 'http://b:1', 'http://c:1'])
    const after = keys.map((k) => b.pick(k, any))
    let moved = 0
    after.forEach((t, i) => { if (t !== before[i]) { moved++; assert.equal(t, 'http://c:1') } })
    assert.ok(moved > keys.length * 0.2 && moved < keys.length * 0.45, `moved ${moved}`)
  })
})
