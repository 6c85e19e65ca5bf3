/**
 * The lifecycle events' delivery order (src/events/scheduler.ts): in order per key, keys in
 * parallel up to `concurrency`, retries with a growing and capped back-off that hold up only
 * their own lane, whenEmpty, and stop. Deliveries are controlled promises, delays a few ms.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { OrderedScheduler, type SchedulerOptions } from '../../../src/events/scheduler.js'
import { within } from '../../helpers/resources.js'

interface Item { key: string, n: number }

/** A delivery that the test settles by hand. */
interface Call { item: Item, resolve (ok: boolean): void, reject (err: Error): void }

/** A scheduler whose deliveries wait for the test; `calls` resolves as they start. */
function manual (opts: Partial<SchedulerOptions<Item>> = {}): { s: OrderedScheduler<Item>, calls: Call[], next (): Promise<Call>, inFlight (): number } {
  const calls: Call[] = []
  const waiters: Array<(c: Call) => void> = []
  let flying = 0
  const s = new OrderedScheduler<Item>({
    concurrency: 4,
    minDelay: 1,
    maxDelay: 4,
    random: () => 1,
    deliver: (item) => new Promise<boolean>((resolve, reject) => {
      flying++
      const c: Call = {
        item,
        resolve: (ok) => { flying--; resolve(ok) },
        reject: (err) => { flying--; reject(err) }
      }
      calls.push(c)
      const w = waiters.shift()
      if (w !== undefined) w(c)
    }),
    ...opts
  })
  let taken = 0
  const next = (): Promise<Call> => {
    const i = taken++
    if (i < calls.length) return Promise.resolve(calls[i])
    return within(new Promise<Call>((resolve) => waiters.push(resolve)), 2000, `delivery #${i + 1} to start`)
  }
  return { s, calls, next, inFlight: () => flying }
}

test('one lane delivers in order, one at a time: the next waits for the head', async () => {
  const { s, next, inFlight } = manual()
  for (let n = 0; n < 5; n++) s.add('a', { key: 'a', n })
  assert.equal(s.size, 5)
  for (let n = 0; n < 5; n++) {
    const c = await next()
    assert.equal(c.item.n, n)
    assert.equal(inFlight(), 1, 'never two of one lane in flight')
    c.resolve(true)
  }
  await within(s.whenEmpty(), 1000, 'empty')
  assert.equal(s.size, 0)
})

test('lanes run in parallel, never more than `concurrency` at once', async () => {
  const { s, calls, next, inFlight } = manual({ concurrency: 2 })
  for (const key of ['a', 'b', 'c', 'd']) s.add(key, { key, n: 0 })
  await next()
  await next()
  // Let the event loop turn: no third starts while two are in flight.
  await new Promise((resolve) => setImmediate(resolve))
  assert.equal(calls.length, 2)
  assert.equal(inFlight(), 2)
  assert.deepEqual(calls.map((c) => c.item.key), ['a', 'b'], 'lanes start in the order they were added')
  calls[1].resolve(true)
  const third = await next()
  assert.equal(third.item.key, 'c')
  assert.equal(inFlight(), 2)
  calls[0].resolve(true)
  third.resolve(true)
  ;(await next()).resolve(true)
  await within(s.whenEmpty(), 1000, 'empty')
  assert.equal(calls.length, 4)
})

test('items added to a lane while its head is in flight follow it, after it', async () => {
  const { s, next } = manual()
  s.add('a', { key: 'a', n: 0 })
  const head = await next()
  s.add('a', { key: 'a', n: 1 })
  s.add('b', { key: 'b', n: 0 })
  const b = await next()
  assert.equal(b.item.key, 'b', 'the other lane goes while a waits for its head')
  b.resolve(true)
  head.resolve(true)
  const second = await next()
  assert.deepEqual(second.item, { key: 'a', n: 1 })
  second.resolve(true)
  await within(s.whenEmpty(), 1000, 'empty')
})

test('a failure is retried (false, a rejection or a throw), the head again and not the next item', async () => {
  const order: string[] = []
  let attempts = 0
  const retries: number[] = []
  const done: number[] = []
  const s = new OrderedScheduler<Item>({
    concurrency: 4,
    minDelay: 1,
    maxDelay: 2,
    deliver: async (item) => {
      order.push(`${item.key}${item.n}`)
      if (item.n === 0) {
        attempts++
        if (attempts === 1) return false
        if (attempts === 2) throw new Error('boom')
        if (attempts === 3) return await Promise.reject(new Error('rejected'))
      }
      return true
    },
    onRetry: (_item, attempt) => { retries.push(attempt) },
    onDone: (item) => { done.push(item.n) }
  })
  s.add('a', { key: 'a', n: 0 })
  s.add('a', { key: 'a', n: 1 })
  await within(s.whenEmpty(), 2000, 'empty')
  assert.deepEqual(order, ['a0', 'a0', 'a0', 'a0', 'a1'])
  assert.deepEqual(retries, [1, 2, 3])
  assert.deepEqual(done, [0, 1])
})

test('a deliver that throws synchronously counts as a failure, not a crash', async () => {
  let n = 0
  const s = new OrderedScheduler<Item>({
    concurrency: 1,
    minDelay: 1,
    maxDelay: 1,
    deliver: (() => { if (n++ === 0) throw new Error('sync'); return Promise.resolve(true) }) as SchedulerOptions<Item>['deliver']
  })
  s.add('a', { key: 'a', n: 0 })
  await within(s.whenEmpty(), 1000, 'empty')
  assert.equal(n, 2)
})

test('back-off doubles from minDelay up to maxDelay, jitter on the upper half', async () => {
  const delays = async (random: number): Promise<number[]> => {
    const seen: number[] = []
    let fails = 8
    const s = new OrderedScheduler<Item>({
      concurrency: 1,
      minDelay: 2,
      maxDelay: 16,
      random: () => random,
      deliver: async () => fails-- <= 0,
      onRetry: (_item, _attempt, delay) => { seen.push(delay) }
    })
    s.add('a', { key: 'a', n: 0 })
    await within(s.whenEmpty(), 3000, 'empty')
    return seen
  }
  // random 1: the full delay; random 0: half of it.
  assert.deepEqual(await delays(1), [2, 4, 8, 16, 16, 16, 16, 16])
  assert.deepEqual(await delays(0), [1, 2, 4, 8, 8, 8, 8, 8])
  const half = await delays(0.5)
  assert.deepEqual(half, [2, 3, 6, 12, 12, 12, 12, 12])
})

test('the attempt count starts again for the next item of a lane', async () => {
  const seen: Array<[number, number]> = []
  const failsLeft = new Map([[0, 2], [1, 1]])
  const s = new OrderedScheduler<Item>({
    concurrency: 1,
    minDelay: 1,
    maxDelay: 100,
    random: () => 1,
    deliver: async (item) => {
      const left = failsLeft.get(item.n) ?? 0
      failsLeft.set(item.n, left - 1)
      return left <= 0
    },
    onRetry: (item, attempt, delay) => { seen.push([item.n, attempt]); assert.equal(delay, 2 ** (attempt - 1)) }
  })
  s.add('a', { key: 'a', n: 0 })
  s.add('a', { key: 'a', n: 1 })
  await within(s.whenEmpty(), 2000, 'empty')
  assert.deepEqual(seen, [[0, 1], [0, 2], [1, 1]])
})

test('a lane that keeps failing does not hold up the others', async () => {
  const delivered: string[] = []
  let badAttempts = 0
  let allDone: () => void = () => {}
  const twenty = new Promise<void>((resolve) => { allDone = resolve })
  const s = new OrderedScheduler<Item>({
    concurrency: 1,
    minDelay: 1,
    maxDelay: 5,
    random: () => 1,
    deliver: async (item) => {
      if (item.key === 'bad') { badAttempts++; return false }
      delivered.push(`${item.key}${item.n}`)
      if (delivered.length === 20) allDone()
      return true
    }
  })
  s.add('bad', { key: 'bad', n: 0 })
  for (let n = 0; n < 20; n++) s.add(`k${n % 4}`, { key: `k${n % 4}`, n })
  // With one delivery at a time, everything else still gets through while 'bad' backs off.
  await within(twenty, 2000, 'the 20 good items')
  for (let k = 0; k < 4; k++) {
    const lane = delivered.filter((d) => d.startsWith(`k${k}`)).map((d) => Number(d.slice(String(`k${k}`).length)))
    assert.deepEqual(lane, [...lane].sort((a, b) => a - b), `lane k${k} in order`)
  }
  assert.ok(badAttempts >= 1)
  assert.equal(s.size, 1, 'only the failing item is left')
  assert.deepEqual(s.stop(), [{ key: 'bad', n: 0 }])
})

test('whenEmpty: resolves at once when empty, else once everything is delivered (every waiter)', async () => {
  const { s, next } = manual()
  await within(s.whenEmpty(), 100, 'empty at once')
  s.add('a', { key: 'a', n: 0 })
  s.add('b', { key: 'b', n: 0 })
  let resolved = 0
  const w1 = s.whenEmpty().then(() => { resolved++ })
  const w2 = s.whenEmpty().then(() => { resolved++ })
  const a = await next()
  const b = await next()
  a.resolve(true)
  await new Promise((resolve) => setImmediate(resolve))
  assert.equal(resolved, 0, 'one item still in flight')
  b.resolve(false)
  await new Promise((resolve) => setImmediate(resolve))
  assert.equal(resolved, 0, 'a failed item is still pending')
  ;(await next()).resolve(true)
  await within(Promise.all([w1, w2]), 1000, 'both waiters')
  assert.equal(resolved, 2)
})

test('stop returns what was not delivered (in flight and queued), clears retry timers and takes no more', async () => {
  const { s, calls, next } = manual({ minDelay: 60_000, maxDelay: 60_000 })
  s.add('a', { key: 'a', n: 0 })
  s.add('a', { key: 'a', n: 1 })
  s.add('b', { key: 'b', n: 0 })
  s.add('c', { key: 'c', n: 0 })
  const a = await next()
  const b = await next()
  const c = await next()
  c.resolve(true)
  b.resolve(false) // backs off for a minute: stop must clear that timer (the test would hang otherwise)
  await new Promise((resolve) => setImmediate(resolve))
  const waiting = s.whenEmpty()
  const left = s.stop()
  assert.deepEqual(left.map((i) => `${i.key}${i.n}`).sort(), ['a0', 'a1', 'b0'])
  await within(waiting, 100, 'whenEmpty to resolve on stop (a reader waiting for room is released)')
  assert.equal(s.size, 0)
  await within(s.whenEmpty(), 100, 'whenEmpty after stop')
  // A delivery that finishes after stop does not start the next one.
  a.resolve(true)
  await new Promise((resolve) => setImmediate(resolve))
  s.add('d', { key: 'd', n: 0 })
  await new Promise((resolve) => setImmediate(resolve))
  assert.equal(calls.length, 3, 'nothing delivered after stop')
})
