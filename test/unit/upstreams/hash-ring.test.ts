/**
 * The consistent-hash ring (spec section 3, `balance: hash` / `ip-hash`): a stable hash, an even
 * spread, about 1/n of the keys moving when one target of n is removed or added, and unavailable
 * targets skipped by walking the ring.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { DEFAULT_VIRTUAL_NODES, HashRing, hash32 } from '../../../src/upstreams/hash-ring.js'

const TARGETS = Array.from({ length: 11 }, (_, i) => `http://10.0.0.${i + 1}:8080`)
const TEN = TARGETS.slice(0, 10)
const KEYS = Array.from({ length: 100_000 }, (_, i) => `user-${i}`)

/** Fraction of KEYS whose target differs between two rings, and the (from, to) pairs that moved. */
function moved (a: HashRing, b: HashRing): { fraction: number, pairs: Map<string, number> } {
  let n = 0
  const pairs = new Map<string, number>()
  for (const k of KEYS) {
    const x = a.lookup(k)
    const y = b.lookup(k)
    if (x === y) continue
    n++
    const pair = `${x} -> ${y}`
    pairs.set(pair, (pairs.get(pair) ?? 0) + 1)
  }
  return { fraction: n / KEYS.length, pairs }
}

describe('hash32', () => {
  test('is stable across processes and versions (every gateway instance must agree)', () => {
    assert.equal(hash32(''), 0xab3e7c0b)
    assert.equal(hash32('a'), 0x1a80b1b3)
    assert.equal(hash32('tollgate'), 0x0f9a4da1)
    assert.equal(hash32('é€'), 0x703a50fb)
  })

  test('returns unsigned 32-bit integers', () => {
    for (const k of KEYS.slice(0, 1000)) {
      const h = hash32(k)
      assert.ok(Number.isInteger(h) && h >= 0 && h <= 0xffffffff, String(h))
    }
  })
})

describe('HashRing', () => {
  test('spreads 100,000 keys over 10 targets within ±25% of the mean', () => {
    const ring = new HashRing(TEN)
    const counts = new Map<string, number>()
    for (const k of KEYS) {
      const t = ring.lookup(k)!
      counts.set(t, (counts.get(t) ?? 0) + 1)
    }
    assert.equal(counts.size, 10)
    const mean = KEYS.length / 10
    for (const [t, c] of counts) assert.ok(Math.abs(c - mean) <= 0.25 * mean, `${t}: ${c} keys, mean ${mean}`)
  })

  test('removing one target of 10 moves only that target\'s keys (about 1/10)', () => {
    const before = new HashRing(TEN)
    const removed = TEN[4]
    const after = new HashRing(TEN.filter((t) => t !== removed))
    const { fraction, pairs } = moved(before, after)
    assert.ok(fraction >= 0.07 && fraction <= 0.13, `moved ${fraction}`)
    for (const pair of pairs.keys()) assert.ok(pair.startsWith(`${removed} -> `), pair)
    // Its keys are shared out among the others rather than all landing on one neighbour.
    assert.ok(pairs.size >= 5, `moved to ${pairs.size} targets`)
  })

  test('adding an 11th target moves about 1/11 of the keys, all to the new target', () => {
    const before = new HashRing(TEN)
    const after = new HashRing(TARGETS)
    const { fraction, pairs } = moved(before, after)
    assert.ok(Math.abs(fraction - 1 / 11) <= 0.03, `moved ${fraction}`)
    for (const pair of pairs.keys()) assert.ok(pair.endsWith(` -> ${TARGETS[10]}`), pair)
  })

  test('the order of the targets does not matter', () => {
    const a = new HashRing(TEN)
    const b = new HashRing([...TEN].reverse())
    for (const k of KEYS.slice(0, 5000)) assert.equal(a.lookup(k), b.lookup(k))
  })

  test('an unavailable target is skipped exactly as if it were not on the ring', () => {
    const ring = new HashRing(TEN)
    const down = TEN[2]
    const without = new HashRing(TEN.filter((t) => t !== down))
    for (const k of KEYS.slice(0, 20_000)) assert.equal(ring.lookup(k, (t) => t !== down), without.lookup(k))
  })

  test('a key returns to its own target when that target is available again', () => {
    const ring = new HashRing(TEN)
    const key = 'session-42'
    const home = ring.lookup(key)!
    const elsewhere = ring.lookup(key, (t) => t !== home)
    assert.ok(elsewhere !== null && elsewhere !== home)
    // Several targets down: still one deterministic choice among the rest.
    const downs = new Set([home, elsewhere])
    const third = ring.lookup(key, (t) => !downs.has(t))!
    assert.ok(!downs.has(third))
    assert.equal(ring.lookup(key, (t) => !downs.has(t)), third)
    assert.equal(ring.lookup(key, () => true), home)
    assert.equal(ring.lookup(key), home)
  })

  test('null when no target is available, or when there are no targets', () => {
    const ring = new HashRing(TEN)
    let asked = 0
    assert.equal(ring.lookup('k', () => { asked++; return false }), null)
    assert.equal(asked, 10, 'each target is asked once')
    assert.equal(new HashRing([]).lookup('k'), null)
  })

  test('one target takes every key; a duplicate target is one target', () => {
    const one = new HashRing(['http://a'])
    for (const k of KEYS.slice(0, 100)) assert.equal(one.lookup(k), 'http://a')
    const dup = new HashRing(['http://a', 'http://b', 'http://a'])
    assert.deepEqual(dup.targets, ['http://a', 'http://b'])
    const plain = new HashRing(['http://a', 'http://b'])
    for (const k of KEYS.slice(0, 1000)) assert.equal(dup.lookup(k), plain.lookup(k))
  })

  test('the number of virtual nodes is configurable and validated', () => {
    assert.equal(DEFAULT_VIRTUAL_NODES, 160)
    const coarse = new HashRing(TEN, 1)
    assert.ok(TEN.includes(coarse.lookup('x')!))
    assert.throws(() => new HashRing(TEN, 0), RangeError)
    assert.throws(() => new HashRing(TEN, 1.5), RangeError)
  })
})
