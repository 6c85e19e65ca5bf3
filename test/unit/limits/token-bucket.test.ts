/**
 * src/limits/token-bucket.ts: TokenBucket with injected time: a full bucket allows `burst`
 * messages at once, refills at `rate` a second (fractions carry over), never above `burst`, and
 * refused takes cost nothing (the count never goes negative).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { TokenBucket } from '../../../src/limits/token-bucket.js'

/** How many takes succeed at time `now` before the first refusal. */
function drain (b: TokenBucket, now: number): number {
  let n = 0
  while (b.take(now)) n++
  return n
}

test('starts full: `burst` takes succeed at once, the next is refused', () => {
  const b = new TokenBucket(10, 5, 1000)
  for (let i = 0; i < 5; i++) assert.equal(b.take(1000), true, `take ${i}`)
  assert.equal(b.take(1000), false)
})

test('refills at `rate` tokens a second', () => {
  const b = new TokenBucket(10, 5, 0)
  assert.equal(drain(b, 0), 5)
  assert.equal(b.take(99), false)
  assert.equal(b.take(100), true) // 100 ms at 10/s: one token
  assert.equal(b.take(100), false)
  assert.equal(drain(b, 400), 3) // 300 ms more: three
})

test('fractions of a token carry over between takes', () => {
  const b = new TokenBucket(1, 1, 0)
  assert.equal(b.take(0), true)
  assert.equal(b.take(400), false)
  assert.equal(b.take(800), false)
  assert.equal(b.take(1000), true)
})

test('never holds more than `burst`, however long it was idle', () => {
  const b = new TokenBucket(100, 3, 0)
  assert.equal(drain(b, 3_600_000), 3)
})

test('refused takes do not drive the count negative', () => {
  const b = new TokenBucket(10, 1, 0)
  assert.equal(b.take(0), true)
  for (let t = 1; t < 100; t++) assert.equal(b.take(t), false)
  // Had each refusal cost a token, 100 ms would not be enough for the next one.
  assert.equal(b.take(100), true)
})

test('a partly used bucket refills up to burst, not past it', () => {
  const b = new TokenBucket(10, 4, 0)
  assert.equal(b.take(0), true) // 3 left
  assert.equal(drain(b, 1000), 4) // +10 capped at 4
})

test('rate 0: only the initial burst, ever', () => {
  const b = new TokenBucket(0, 2, 0)
  assert.equal(drain(b, 0), 2)
  assert.equal(b.take(1e9), false)
})
