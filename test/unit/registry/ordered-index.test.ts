/**
 * src/registry/ordered-index.ts against a plain array doing the same (a seeded random walk of
 * adds and deletes, through compactions): page() at any offset, size, has, values().
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { OrderedIndex } from '../../../src/registry/ordered-index.js'

/** A small deterministic generator (mulberry32), so that a failure replays. */
function random (seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

test('pages at any offset match an array, through thousands of adds and deletes and compactions', () => {
  const rnd = random(42)
  const index = new OrderedIndex<number>()
  let model: number[] = []
  let next = 0
  for (let step = 0; step < 20_000; step++) {
    // Mostly adds at first, then mostly deletes (so that holes pile up and compaction runs).
    const add = step < 8000 ? rnd() < 0.8 : rnd() < 0.3
    if (add || model.length === 0) {
      index.add(next)
      model.push(next++)
    } else {
      const v = model[Math.floor(rnd() * model.length)]
      assert.equal(index.delete(v), true)
      model = model.filter((x) => x !== v)
    }
    if (step % 97 === 0) {
      assert.equal(index.size, model.length)
      const offset = Math.floor(rnd() * (model.length + 3))
      const limit = 1 + Math.floor(rnd() * 60)
      assert.deepEqual(index.page(offset, limit), model.slice(offset, offset + limit), `step ${step}: page(${offset}, ${limit})`)
    }
  }
  assert.deepEqual([...index.values()], model)
  assert.equal(index.delete(-1), false)
  assert.equal(index.has(model[0]), true)
  index.add(model[0])
  assert.equal(index.size, model.length, 'adding an item twice keeps one')
})

test('empty and edge pages', () => {
  const index = new OrderedIndex<string>()
  assert.deepEqual(index.page(0, 10), [])
  for (const v of ['a', 'b', 'c']) index.add(v)
  assert.deepEqual(index.page(0, 0), [])
  assert.deepEqual(index.page(2, 10), ['c'])
  assert.deepEqual(index.page(3, 10), [])
  index.delete('a')
  index.delete('b')
  assert.deepEqual(index.page(0, 10), ['c'])
  index.delete('c')
  assert.equal(index.size, 0)
  index.add('a')
  assert.deepEqual(index.page(0, 10), ['a'], 'an item deleted can come back, at the end')
})
