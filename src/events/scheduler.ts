/**
 * Delivery order for lifecycle events: in order per connection, connections in parallel. Each
 * connection has a lane; a lane's head is delivered, and until it is, the rest of that lane
 * waits (so a `disconnect` never overtakes its `connect`), while other lanes go on. A failed
 * delivery is retried with exponential back-off and jitter; only its own lane waits for it.
 *
 * No timer per event: one per lane that is backing off, none otherwise.
 */

export interface SchedulerOptions<T> {
  /** Deliveries in flight at once. */
  concurrency: number
  /** Delivers one item: true when done, false (or a throw) to retry it later. */
  deliver: (item: T) => Promise<boolean>
  /** First retry delay (ms); doubled per failure up to `maxDelay`. */
  minDelay: number
  maxDelay: number
  /** Told of each retry (metrics, logs). */
  onRetry?: (item: T, attempt: number, delay: number) => void
  /** Told of each item delivered. */
  onDone?: (item: T) => void
  /** For tests: the jitter source (default Math.random). */
  random?: () => number
}

interface Lane<T> {
  items: T[]
  /** Failed deliveries of the head so far. */
  attempt: number
  timer: NodeJS.Timeout | null
}

export class OrderedScheduler<T> {
  private readonly lanes = new Map<string, Lane<T>>()
  /** Lanes whose head may be delivered now, in the order they became ready. */
  private readonly ready: string[] = []
  private running = 0
  private count = 0
  private stopped = false
  private emptyWaiters: Array<() => void> = []
  private readonly random: () => number

  constructor (private readonly opts: SchedulerOptions<T>) {
    this.random = opts.random ?? Math.random
  }

  /** Items queued or in flight. */
  get size (): number { return this.count }

  /** Queues `item` at the end of lane `key`. */
  add (key: string, item: T): void {
    if (this.stopped) return
    this.count++
    let lane = this.lanes.get(key)
    if (lane === undefined) {
      lane = { items: [], attempt: 0, timer: null }
      this.lanes.set(key, lane)
      this.ready.push(key)
    }
    lane.items.push(item)
    this.pump()
  }

  /** Resolves when nothing is queued or in flight. */
  whenEmpty (): Promise<void> {
    return this.count === 0 ? Promise.resolve() : new Promise((resolve) => { this.emptyWaiters.push(resolve) })
  }

  /**
   * Stops delivering: timers cleared, queued items dropped (deliveries in flight finish, and are
   * not reported). Returns what was not known to be delivered; size is 0 from then on, and
   * whenEmpty() resolves (a reader waiting for room must not wait for ever).
   */
  stop (): T[] {
    this.stopped = true
    const left: T[] = []
    for (const lane of this.lanes.values()) {
      if (lane.timer !== null) clearTimeout(lane.timer)
      left.push(...lane.items)
    }
    this.lanes.clear()
    this.ready.length = 0
    this.count = 0
    this.drained()
    return left
  }

  private pump (): void {
    while (!this.stopped && this.running < this.opts.concurrency && this.ready.length > 0) {
      const key = this.ready.shift()!
      const lane = this.lanes.get(key)
      if (lane === undefined || lane.items.length === 0) continue
      this.run(key, lane)
    }
  }

  private run (key: string, lane: Lane<T>): void {
    const item = lane.items[0]
    this.running++
    const settle = (ok: boolean): void => {
      this.running--
      if (this.stopped) return
      if (ok) {
        lane.items.shift()
        lane.attempt = 0
        this.count--
        this.opts.onDone?.(item)
        if (lane.items.length > 0) this.ready.push(key)
        else this.lanes.delete(key)
        if (this.count === 0) this.drained()
      } else {
        lane.attempt++
        const base = Math.min(this.opts.maxDelay, this.opts.minDelay * 2 ** Math.min(lane.attempt - 1, 30))
        // Full jitter on the upper half: retries of many lanes after one outage spread out.
        const delay = Math.round(base / 2 + this.random() * base / 2)
        this.opts.onRetry?.(item, lane.attempt, delay)
        lane.timer = setTimeout(() => {
          lane.timer = null
          this.ready.push(key)
          this.pump()
        }, delay)
        lane.timer.unref()
      }
      this.pump()
    }
    let p: Promise<boolean>
    try {
      p = this.opts.deliver(item)
    } catch {
      p = Promise.resolve(false)
    }
    p.then(settle, () => settle(false))
  }

  private drained (): void {
    const waiters = this.emptyWaiters
    this.emptyWaiters = []
    for (const w of waiters) w()
  }
}
