/**
 * Spreads N actions (closing connections) over a window so that clients reconnect at a bounded
 * rate instead of all at once. Pure: no sockets, no Fastify; the clock, the timer and the random
 * source are injectable, so the schedule is testable without waiting.
 *
 * The plan: the window is cut into N equal slots and each action gets a random time in its own
 * slot (jitter, without clumps). Then any action closer than one second to the M-th action before
 * it is pushed to that one second, M being the rate bound ceil(N / window in seconds). Pushing
 * never moves an action past its slot's end, because M slots last at least a second, so the
 * plan stays within the window. At run time the same bound is kept on the actual times (a ring
 * of the last M), so a late timer never fires a burst.
 */

/** The clock and timer the pacer runs on (the real ones by default). */
export interface PacerClock {
  now (): number
  setTimeout (fn: () => void, ms: number): unknown
  clearTimeout (handle: unknown): void
}

export const realClock: PacerClock = {
  now: () => performance.now(),
  // unref: a pace never keeps the process alive by itself (the connections it closes do).
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (h) => { clearTimeout(h as NodeJS.Timeout) }
}

export interface PacerOptions<T> {
  items: readonly T[]
  /** The window in milliseconds; 0 acts on every item at once, synchronously, in start(). */
  windowMs: number
  /** Acts on one item; returns false when there was nothing to do (it counts as done, not as acted). */
  act: (item: T) => boolean
  /** An act that threw: the item counts as done, not acted, and the pace goes on. */
  onError?: (err: unknown, item: T) => void
  /** After each item: how many are done so far (acted or skipped). */
  onProgress?: (done: number, total: number) => void
  clock?: PacerClock
  /** A number in [0, 1): the jitter in each slot. */
  random?: () => number
}

/** The rate bound for `total` items over `windowMs`: at most this many in any one-second span. */
export function maxPerSecond (total: number, windowMs: number): number {
  if (total === 0) return 0
  if (windowMs <= 0) return total
  return Math.ceil(total * 1000 / windowMs)
}

/**
 * The planned offsets (whole ms from the start, non-decreasing, each below windowMs) for `total` items:
 * one jittered time per slot, then held to at most `maxPerSecond` in any half-open second.
 */
export function plan (total: number, windowMs: number, random: () => number = Math.random): number[] {
  const out = new Array<number>(total)
  if (total === 0) return out
  if (windowMs <= 0) return out.fill(0)
  const slot = windowMs / total
  const m = maxPerSecond(total, windowMs)
  for (let i = 0; i < total; i++) {
    // Whole milliseconds: a gap of exactly one second stays exact (no float drift below it).
    const t = Math.floor((i + random()) * slot)
    out[i] = i >= m && t < out[i - m] + 1000 ? out[i - m] + 1000 : t
  }
  return out
}

/**
 * Runs a plan with one timer at a time: each wake-up acts on every item that is due and that
 * the rate bound allows, then sleeps until the next one.
 */
export class Pacer<T> {
  readonly total: number
  readonly windowMs: number
  readonly maxPerSecond: number
  /** When start() ran, on the pacer's clock. */
  startedAt = 0
  /** Items done (acted on or skipped). */
  done = 0
  /** Items acted on. */
  acted = 0
  cancelled = false
  /** Resolves once every item is done or the pacer is cancelled. */
  readonly finished: Promise<void>

  private items: readonly T[]
  private readonly offsets: number[]
  private readonly opts: PacerOptions<T>
  private readonly clock: PacerClock
  /** The times of the last maxPerSecond actions (a ring), for the bound on actual times. */
  private readonly recent: number[]
  private recentAt = 0
  private timer: unknown = null
  private resolve!: () => void
  private ended = false

  constructor (opts: PacerOptions<T>) {
    this.opts = opts
    this.items = opts.items
    this.total = opts.items.length
    // NaN or a negative window acts at once; Infinity would never act (a caller's bug).
    if (opts.windowMs === Infinity) throw new RangeError('the window of a pace must be finite')
    this.windowMs = opts.windowMs > 0 ? opts.windowMs : 0
    this.maxPerSecond = maxPerSecond(this.total, this.windowMs)
    this.clock = opts.clock ?? realClock
    this.offsets = plan(this.total, this.windowMs, opts.random)
    // The ring needs no more places than there are items: a tiny window (a bound of millions a
    // second) must not allocate millions of them.
    this.recent = new Array<number>(this.windowMs > 0 ? Math.min(this.maxPerSecond, this.total) : 0).fill(-Infinity)
    this.finished = new Promise((resolve) => { this.resolve = resolve })
  }

  /** Starts the pace; with a window of 0, every item is acted on before this returns. */
  start (): this {
    this.startedAt = this.clock.now()
    this.run()
    return this
  }

  /** Stops: no more items are acted on; `finished` resolves. */
  cancel (): void {
    if (this.ended) return
    this.cancelled = true
    if (this.timer !== null) this.clock.clearTimeout(this.timer)
    this.timer = null
    this.finish()
  }

  /** Items not done yet. */
  get pending (): number { return this.total - this.done }

  private run (): void {
    this.timer = null
    if (this.ended) return
    const paced = this.windowMs > 0
    while (this.done < this.total) {
      const now = this.clock.now()
      let wait = paced ? this.startedAt + this.offsets[this.done] - now : 0
      // The bound on actual times: the M-th last action must be a second old.
      if (paced && wait <= 0) wait = this.recent[this.recentAt] + 1000 - now
      if (wait > 0) {
        this.timer = this.clock.setTimeout(() => this.run(), Math.ceil(wait))
        return
      }
      const item = this.items[this.done]
      let acted = false
      // One item's failure must not stop the others (nor throw out of a timer).
      try { acted = this.opts.act(item) } catch (err) { this.opts.onError?.(err, item) }
      this.done++
      if (acted) {
        this.acted++
        if (paced) {
          this.recent[this.recentAt] = now
          this.recentAt = (this.recentAt + 1) % this.recent.length
        }
      }
      this.opts.onProgress?.(this.done, this.total)
      if (this.ended) return
    }
    this.finish()
  }

  private finish (): void {
    if (this.ended) return
    this.ended = true
    // Done with them: a finished pace that is still referenced holds no connection.
    this.items = []
    this.resolve()
  }
}
