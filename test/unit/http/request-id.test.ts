/**
 * src/http/request-id.ts: random v4 UUIDs, in randomUUID()'s form, unique, every hex digit of
 * every random position in use, and past the pool's refill.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { requestId } from '../../../src/http/request-id.js'

const V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

test('version 4 UUIDs, unique across several refills of the random pool, each a new string', () => {
  const seen = new Set<string>()
  // 256 ids per pool: 40 refills.
  for (let i = 0; i < 10_240; i++) {
    const id = requestId()
    assert.match(id, V4)
    seen.add(id)
  }
  assert.equal(seen.size, 10_240)
  const a = requestId()
  const b = requestId()
  assert.notEqual(a, b)
  assert.match(a, V4)
})

test('every random position takes every hex digit; the variant digit takes 8, 9, a and b', () => {
  const digits: Array<Set<string>> = Array.from({ length: 36 }, () => new Set())
  for (let i = 0; i < 4_000; i++) {
    const id = requestId()
    for (let p = 0; p < 36; p++) digits[p].add(id[p])
  }
  for (let p = 0; p < 36; p++) {
    if (p === 8 || p === 13 || p === 18 || p === 23) assert.deepEqual([...digits[p]], ['-'])
    else if (p === 14) assert.deepEqual([...digits[p]], ['4'])
    else if (p === 19) assert.deepEqual([...digits[p]].sort(), ['8', '9', 'a', 'b'])
    else assert.equal(digits[p].size, 16, `position ${p}`)
  }
})
