/**
 * The queue of lifecycle events waiting for delivery. Without Redis it is in memory, bounded by
 * `events.queueSize`: a crash loses what it holds (a graceful shutdown first waits a little for
 * it to drain). In cluster mode it is a Redis stream per instance (./redis-queue.ts), which the
 * other instances deliver from when this one dies.
 *
 * Delivery, either way, is at least once: a POST that fails or times out is retried with
 * back-off, in order per connection (./scheduler.ts), until it gets a 2xx.
 */
import { EVENTS_CONCURRENCY, EVENTS_RETRY_MAX, EVENTS_RETRY_MIN } from '../config/defaults.js'
import { RateLimitedWarning } from '../registry/bus-messages.js'
import { EventPoster } from './deliver.js'
import type { LifecycleEvent } from './payload.js'
import { OrderedScheduler } from './scheduler.js'

/** Where one configuration sends its events. */
export interface EventDestination {
  url: string
  timeout: number
}

export interface EventQueueLog {
  info (o: object, msg: string): void
  warn (o: object, msg: string): void
}

export interface EventQueueOptions {
  /** Events this instance holds at most; past that new ones are dropped (a metric and a warning). */
  maxSize: number
  log: EventQueueLog
  /** Told of each event queued, delivered, retried or dropped. */
  count?: (type: string, result: 'queued' | 'delivered' | 'retried' | 'dropped') => void
  /** Delivery settings (tests make retries fast). */
  concurrency?: number
  minDelay?: number
  maxDelay?: number
}

export interface EventQueue {
  /**
   * The endpoints that may be posted to (each configuration's `events`; a reload adds its
   * own). An event read back from Redis for another URL is dropped: Redis does not decide where
   * the gateway sends requests.
   */
  allow (destinations: Iterable<EventDestination>): void
  /**
   * Queues an event for delivery to `to`. Never blocks, never throws. `deliver: false` (a
   * route whose events are only `disconnect`) records a connect without posting it, so that a
   * lost instance's connections still get their disconnect. `track: false` (a route whose
   * events are only `connect`) keeps no record of the connection for that disconnect.
   */
  push (event: LifecycleEvent, to: EventDestination, deliver?: boolean, track?: boolean): void
  /** Events of this instance waiting for delivery or in flight. */
  readonly pending: number
  start (): Promise<void>
  /**
   * Stops: waits up to `graceMs` for the queue to drain, then gives up on the rest (in memory:
   * lost, and logged; in Redis: left for another instance).
   */
  close (graceMs: number): Promise<void>
}

/** An event as the scheduler holds it. */
export interface Delivery {
  event: LifecycleEvent
  url: string
  timeout: number
  /** In cluster mode: the stream entry to acknowledge once delivered. */
  stream?: string
  entryId?: string
}

/**
 * The delivery half that both queues share: the scheduler, the POSTs, the counts and the full
 * queue's warning.
 */
export class Deliverer {
  readonly scheduler: OrderedScheduler<Delivery>
  private readonly poster = new EventPoster()
  readonly full: RateLimitedWarning
  private readonly failing: RateLimitedWarning
  /** Set once draining has given up: POSTs cut off then are not failures worth a warning. */
  private stopping = false
  /** Items queued by add() (memory only, no stream entry behind them), per endpoint. */
  private readonly perUrl = new Map<string, number>()
  private memory = 0

  constructor (private readonly opts: EventQueueOptions, onDone?: (d: Delivery) => void) {
    this.full = new RateLimitedWarning((o, m) => opts.log.warn(o, m), 'lifecycle event queue full: events dropped')
    this.failing = new RateLimitedWarning((o, m) => opts.log.warn(o, m), 'lifecycle event delivery failed: retrying')
    this.scheduler = new OrderedScheduler<Delivery>({
      concurrency: opts.concurrency ?? EVENTS_CONCURRENCY,
      minDelay: opts.minDelay ?? EVENTS_RETRY_MIN,
      maxDelay: opts.maxDelay ?? EVENTS_RETRY_MAX,
      deliver: async (d) => {
        const r = await this.poster.post(d.url, d.event, d.timeout)
        // An event that cannot even be written (claims nested past what JSON.stringify takes)
        // would be retried for ever and hold its connection's lane: it is dropped instead.
        if (r.outcome === 'unserialisable') { this.dropped(d.event.type, 'event cannot be serialised'); return true }
        if (!r.ok && !this.stopping) this.failing.hit({ url: urlForLogs(d.url), outcome: r.outcome, type: d.event.type })
        return r.ok
      },
      onRetry: (d) => { opts.count?.(d.event.type, 'retried') },
      onDone: (d) => {
        if (d.stream === undefined) this.forget(d.url)
        opts.count?.(d.event.type, 'delivered')
        onDone?.(d)
      }
    })
  }

  /** Events queued in memory only (not in a Redis stream) and not yet delivered. */
  get memoryOnly (): number { return this.memory }

  /**
   * Queues `d` unless its endpoint's queue is full (then dropped, counted and warned about):
   * `maxSize` per endpoint, so that one endpoint that is down cannot take every other's room.
   */
  add (d: Delivery): boolean {
    const n = this.perUrl.get(d.url) ?? 0
    if (n >= this.opts.maxSize) {
      this.dropped(d.event.type, 'queue full')
      return false
    }
    this.perUrl.set(d.url, n + 1)
    this.memory++
    this.scheduler.add(d.event.id, d)
    return true
  }

  private forget (url: string): void {
    const n = (this.perUrl.get(url) ?? 1) - 1
    if (n > 0) this.perUrl.set(url, n)
    else this.perUrl.delete(url)
    this.memory = Math.max(0, this.memory - 1)
  }

  dropped (type: string, why: string): void {
    this.opts.count?.(type, 'dropped')
    this.full.hit({ why, maxSize: this.opts.maxSize })
  }

  /** Waits up to `graceMs` for the queue to drain; returns what is left. */
  async drain (graceMs: number): Promise<number> {
    if (this.scheduler.size > 0 && graceMs > 0) {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([this.scheduler.whenEmpty(), new Promise<void>((resolve) => { timer = setTimeout(resolve, graceMs) })])
      clearTimeout(timer)
    }
    this.stopping = true
    const left = this.scheduler.stop().length
    this.perUrl.clear()
    this.memory = 0
    await this.poster.close().catch(() => {})
    return left
  }
}

/** An endpoint's URL for logs: without credentials or query, where webhook secrets often are. */
export function urlForLogs (url: string): string {
  try {
    const u = new URL(url)
    return `${u.origin}${u.pathname}`
  } catch {
    return '(invalid url)'
  }
}

/** The queue of an instance without Redis. */
export class MemoryEventQueue implements EventQueue {
  private readonly deliverer: Deliverer

  constructor (private readonly opts: EventQueueOptions) {
    this.deliverer = new Deliverer(opts)
  }

  allow (): void {}

  get pending (): number { return this.deliverer.memoryOnly }

  push (event: LifecycleEvent, to: EventDestination, deliver = true): void {
    if (deliver && this.deliverer.add({ event, url: to.url, timeout: to.timeout })) this.opts.count?.(event.type, 'queued')
  }

  async start (): Promise<void> {}

  async close (graceMs: number): Promise<void> {
    const left = await this.deliverer.drain(graceMs)
    if (left > 0) this.opts.log.warn({ lost: left }, 'lifecycle events not delivered before shutdown (no Redis: they are lost)')
  }
}
