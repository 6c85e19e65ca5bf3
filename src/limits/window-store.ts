/**
 * Fixed-window request counters in memory, as a store for @fastify/rate-limit. One instance can
 * outlive the app that uses it (a hot reload keeps the counts). Bounded: the oldest keys go first.
 */
export class WindowStore {
  private readonly entries = new Map<string, { count: number, resetAt: number }>()

  constructor (private readonly maxKeys = 100_000) {}

  /** Counts one hit for `key` in a window of `windowMs`; returns the count and ms left. */
  incr (key: string, windowMs: number, now = Date.now()): { current: number, ttl: number } {
    let e = this.entries.get(key)
    if (e === undefined || e.resetAt <= now) {
      e = { count: 0, resetAt: now + windowMs }
      this.entries.delete(key)
      this.entries.set(key, e)
      if (this.entries.size > this.maxKeys) this.entries.delete(this.entries.keys().next().value as string)
    }
    e.count++
    return { current: e.count, ttl: e.resetAt - now }
  }

  get size (): number { return this.entries.size }

  /**
   * A store class for @fastify/rate-limit's `store` option that counts in this WindowStore.
   * Limiters keep their counters apart through their own key prefixes.
   */
  storeClass (): new () => object {
    const incr = (key: string, windowMs: number): { current: number, ttl: number } => this.incr(key, windowMs)
    return class SharedWindowStore {
      constructor (private readonly prefix = '') {}

      incr (key: string, cb: (err: Error | null, res: { current: number, ttl: number }) => void, timeWindow: number): void {
        cb(null, incr(this.prefix + key, timeWindow))
      }

      /** Per-route limits (users' `config.rateLimit`) count apart, as @fastify/rate-limit's own stores do. */
      child (params: { routeInfo?: { method?: string | string[], url?: string } }): SharedWindowStore {
        const r = params.routeInfo
        return new SharedWindowStore(r?.url === undefined ? this.prefix : `${this.prefix}${String(r.method)}${r.url}-`)
      }
    }
  }
}
