/**
 * The pacer (src/drain/pacer.ts) on a fake clock: the plan spreads N closes across the window
 * with jitter and never puts more than ceil(N / seconds) in any one-second span; the runner keeps
 * that bound on the actual times even when its timer fires late, uses one timer at a time, acts
 * on everything at once for a window of 0, skips what has nothing to do, reports progress and
 * stops when cancelled.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { maxPerSecond, Pacer, plan, type PacerClock } from '../../../src/drain/pacer.js'

/** A seeded PRNG (mulberry32): the property tests are random but repeatable. */
function seeded (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** The most points of sorted `times` in any half-open span [a, a + span). */
function densest (times: readonly number[], span: number): number {
  let best = 0
  let lo = 0
  for (let hi = 0; hi < times.length; hi++) {
    while (times[hi] - times[lo] >= span) lo++
    best = Math.max(best, hi - lo + 1)
  }
  return best
}

/**
 * A fake clock with one pending timer at most (the pacer's promise: one timer at a time).
 * `lateness` is added to every timer, as a busy event loop would.
 */
class FakeClock implements PacerClock {
  t = 0
  timers = 0
  maxPending = 0
  private pending: { at: number, fn: () => void } | null = null
  constructor (private readonly lateness: () => number = () => 0) {}
  now (): number { return this.t }
  setTimeout (fn: () => void, ms: number): unknown {
    assert.equal(this.pending, null, 'a second timer while one is pending')
    assert.ok(ms > 0, 'a timer of 0 ms would spin')
    this.timers++
    this.pending = { at: this.t + ms + this.lateness(), fn }
    return this.pending
  }
  clearTimeout (h: unknown): void { if (this.pending === h) this.pending = null }
  get waiting (): boolean { return this.pending !== null }
  /** Runs timers until none is left; returns how many fired. */
  runAll (limit = 1_000_000): number {
    let n = 0
    while (this.pending !== null && n < limit) {
      const p = this.pending
      this.pending = null
      this.t = Math.max(this.t, p.at)
      p.fn()
      n++
    }
    return n
  }
}

describe('maxPerSecond', () => {
  test('is ceil(n / seconds), n for a window of 0, 0 for no items', () => {
    assert.equal(maxPerSecond(500, 1000), 500)
    assert.equal(maxPerSecond(500, 3000), 167)
    assert.equal(maxPerSecond(3, 10_000), 1)
    assert.equal(maxPerSecond(10, 500), 20)
    assert.equal(maxPerSecond(7, 0), 7)
    assert.equal(maxPerSecond(0, 1000), 0)
  })
})

describe('plan', () => {
  test('one time per slot, increasing, inside the window, with jitter', () => {
    const times = plan(100, 10_000, seeded(1))
    assert.equal(times.length, 100)
    for (let i = 0; i < times.length; i++) {
      assert.ok(times[i] >= i * 100 && times[i] < (i + 1) * 100, `item ${i} at ${times[i]} is outside its slot`)
      assert.ok(Number.isInteger(times[i]))
      if (i > 0) assert.ok(times[i] > times[i - 1])
    }
    // Jitter: not the evenly spaced grid, and another seed gives another plan.
    assert.ok(times.some((t, i) => Math.abs(t - i * 100) > 1))
    assert.notDeepEqual(plan(100, 10_000, seeded(2)), times)
  })

  test('window 0: everything at 0', () => {
    assert.deepEqual(plan(4, 0), [0, 0, 0, 0])
    assert.deepEqual(plan(0, 1000), [])
  })

  test('property: never more than ceil(n / seconds) in any second, and inside the window', () => {
    const rnd = seeded(42)
    for (let run = 0; run < 400; run++) {
      const n = 1 + Math.floor(rnd() * 2000)
      const w = 1 + Math.floor(rnd() * 20_000)
      // Extreme jitter draws too: all at a slot's start, or all at its end.
      const jitter = run % 10 === 0 ? () => 0 : run % 10 === 1 ? () => 0.999999 : seeded(run)
      const times = plan(n, w, jitter)
      const m = maxPerSecond(n, w)
      assert.ok(densest(times, 1000) <= m, `n=${n} w=${w}: ${densest(times, 1000)} in a second > ${m}`)
      assert.ok(times[n - 1] < w, `n=${n} w=${w}: last at ${times[n - 1]}`)
      assert.ok(times[0] >= 0)
      for (let i = 1; i < n; i++) assert.ok(times[i] >= times[i - 1])
    }
  })
})

describe('Pacer', () => {
  function run (n: number, windowMs: number, clock: FakeClock, seed = 7): { times: number[], order: number[], pacer: Pacer<number> } {
    const times: number[] = []
    const order: number[] = []
    const items = Array.from({ length: n }, (_, i) => i)
    const pacer = new Pacer({ items, windowMs, clock, random: seeded(seed), act: (i) => { times.push(clock.now()); order.push(i); return true } })
    pacer.start()
    clock.runAll()
    return { times, order, pacer }
  }

  test('500 over 1 s: every item once, in order, spread over the window, one timer at a time', async () => {
    const clock = new FakeClock()
    const { times, order, pacer } = run(500, 1000, clock)
    assert.deepEqual(order, Array.from({ length: 500 }, (_, i) => i))
    assert.equal(pacer.done, 500)
    assert.equal(pacer.acted, 500)
    assert.ok(times[times.length - 1] - times[0] >= 900, `spread ${times[times.length - 1] - times[0]} ms`)
    assert.ok(times[times.length - 1] <= 1001)
    // Far fewer timers than items would be N timers; the fake clock also refused overlapping ones.
    assert.ok(clock.timers <= 500)
    assert.ok(densest(times, 1000) <= 500)
    // No quarter of the window holds much more than a quarter of the closes.
    for (let q = 0; q < 4; q++) {
      const inQ = times.filter((t) => t >= q * 250 && t < (q + 1) * 250).length
      assert.ok(inQ <= 126 + 1, `quarter ${q}: ${inQ}`)
    }
    await pacer.finished
  })

  test('property: actual times keep the bound even when every timer fires late', () => {
    const rnd = seeded(99)
    for (let r = 0; r < 150; r++) {
      const n = 1 + Math.floor(rnd() * 800)
      const w = 200 + Math.floor(rnd() * 8000)
      const late = seeded(r + 1000)
      const clock = new FakeClock(() => Math.floor(late() * 400))
      const { times, pacer } = run(n, w, clock, r)
      assert.equal(times.length, n)
      assert.equal(pacer.done, n)
      const m = maxPerSecond(n, w)
      assert.ok(densest(times, 1000) <= m, `n=${n} w=${w}: ${densest(times, 1000)} in a second > ${m}`)
    }
  })

  test('window 0: everything inside start(), no timer', async () => {
    const clock = new FakeClock()
    let n = 0
    const pacer = new Pacer({ items: [1, 2, 3], windowMs: 0, clock, act: () => { n++; return true } })
    pacer.start()
    assert.equal(n, 3)
    assert.equal(clock.timers, 0)
    assert.equal(pacer.maxPerSecond, 3)
    await pacer.finished
  })

  test('a tiny window (a rate bound far above the items) allocates nothing big and acts on every item', async () => {
    const clock = new FakeClock()
    const acted: number[] = []
    // 10 items over 1e-7 ms: a bound of 1e11 a second, an array length no engine allows.
    const tiny = new Pacer({ items: Array.from({ length: 10 }, (_, i) => i), windowMs: 1e-7, clock, act: (i) => { acted.push(i); return true } })
    tiny.start()
    clock.runAll()
    await tiny.finished
    assert.deepEqual(acted, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    // drainPace 1 ms with 50k connections: a bound of 5e7, built in well under a second.
    const t0 = performance.now()
    const big = new Pacer({ items: Array.from({ length: 50_000 }, (_, i) => i), windowMs: 1, clock, act: () => true })
    assert.ok(performance.now() - t0 < 1000, `built in ${Math.round(performance.now() - t0)} ms`)
    assert.equal(big.maxPerSecond, 50_000_000)
    big.start()
    clock.runAll()
    await big.finished
    assert.equal(big.acted, 50_000)
    assert.throws(() => new Pacer({ items: [1], windowMs: Infinity, act: () => true }), RangeError)
  })

  test('no items: finished at once', async () => {
    const pacer = new Pacer({ items: [], windowMs: 1000, clock: new FakeClock(), act: () => true }).start()
    assert.equal(pacer.total, 0)
    await pacer.finished
  })

  test('skipped items count as done, not acted, and take no place in the rate bound', async () => {
    const clock = new FakeClock()
    const progress: number[] = []
    const pacer = new Pacer({
      items: [0, 1, 2, 3, 4, 5],
      windowMs: 6000,
      clock,
      random: () => 0.5,
      act: (i) => i % 2 === 0,
      onProgress: (done, total) => { assert.equal(total, 6); progress.push(done) }
    }).start()
    clock.runAll()
    await pacer.finished
    assert.equal(pacer.done, 6)
    assert.equal(pacer.acted, 3)
    assert.deepEqual(progress, [1, 2, 3, 4, 5, 6])
  })

  test('cancel stops it: nothing more is acted on, the timer is cleared, finished resolves', async () => {
    const clock = new FakeClock()
    const acted: number[] = []
    const pacer = new Pacer({ items: Array.from({ length: 10 }, (_, i) => i), windowMs: 10_000, clock, random: () => 0.5, act: (i) => { acted.push(i); return true } }).start()
    // Run until 3 are done, then cancel.
    while (acted.length < 3) clock.runAll(1)
    pacer.cancel()
    assert.equal(clock.waiting, false)
    assert.equal(pacer.cancelled, true)
    assert.equal(clock.runAll(), 0)
    assert.deepEqual(acted, [0, 1, 2])
    assert.equal(pacer.pending, 7)
    await pacer.finished
    pacer.cancel()
  })

  test('an act that throws: reported, counted as done, and the pace goes on', async () => {
    const clock = new FakeClock()
    const errors: Array<[string, number]> = []
    const pacer = new Pacer({
      items: [0, 1, 2],
      windowMs: 3000,
      clock,
      act: (i) => { if (i === 1) throw new Error('boom'); return true },
      onError: (err, i) => { errors.push([(err as Error).message, i]) }
    }).start()
    clock.runAll()
    await pacer.finished
    assert.deepEqual(errors, [['boom', 1]])
    assert.equal(pacer.done, 3)
    assert.equal(pacer.acted, 2)
  })
})
