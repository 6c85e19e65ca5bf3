/**
 * The targets of one upstream and the choice of a target per request or handshake, in the spirit
 * of undici's BalancedPool but without owning any connection: the caller reports what happened
 * (connect failures, opened and closed WebSockets, requests started and finished) and the pool
 * keeps the state that the balancers and the admin API read.
 *
 * Two kinds of health, kept apart:
 * - passive (`markFailure`): a connect failure or timeout takes the target out for `backoffMs`;
 *   after that it is tried again, and `markSuccess` (or the next failure) settles it;
 * - active (`start`): the configured health checks, see ./health.ts.
 * A target is available when it is neither passively down nor actively unhealthy.
 */
import type { UpstreamConfig } from '../config/types.js'
import { createBalancer, type Balancer, type PickContext } from './balancers.js'
import { HealthChecker, type HealthChange } from './health.js'
import { DEFAULT_UPSTREAM_BACKOFF } from '../config/defaults.js'

export type { PickContext } from './balancers.js'

/** How long a target that failed to connect is left out before it is tried again. */

export interface PoolLogger {
  info (o: object, msg: string): void
  warn (o: object, msg: string): void
}

export interface UpstreamPoolOptions {
  log?: PoolLogger
  /** Passive down period after a failure, in ms (default DEFAULT_UPSTREAM_BACKOFF). */
  backoffMs?: number
  /** The fetch used by active health checks (default: global fetch, or undici's with `config.ca`). */
  fetchImpl?: typeof fetch
}

/** A target as the admin API shows it. */
export interface TargetState {
  url: string
  /** Whether the target may be picked now (neither down nor unhealthy). */
  healthy: boolean
  /** `unhealthy` (active checks) wins over `down` (passive back-off); `unchecked` without active checks. */
  health: 'healthy' | 'unhealthy' | 'down' | 'unchecked'
  /** Open WebSocket connections of this instance to the target. */
  openConnections: number
  /** HTTP requests of this instance to the target that have not finished. */
  inFlight: number
  /** The last connect failure or failed health check, kept after recovery for diagnosis. */
  lastError: string | null
  /** End of the passive back-off (ISO 8601) while it lasts, else null. */
  downUntil: string | null
}

interface Target {
  openConnections: number
  inFlight: number
  lastError: string | null
  /** Passively down since the last failure and not yet seen to succeed (drives the logs). */
  down: boolean
  /** Epoch ms until which the target is not picked; 0 when never failed. */
  downUntil: number
}

const NO_EXCLUDE: ReadonlySet<string> = new Set()

export class UpstreamPool {
  readonly config: UpstreamConfig
  private readonly targets = new Map<string, Target>()
  private readonly balancer: Balancer
  private readonly checker: HealthChecker | null
  private readonly log: PoolLogger | undefined
  private readonly backoffMs: number
  private readonly unhealthyListeners: Array<(target: string) => void> = []

  constructor (config: UpstreamConfig, opts: UpstreamPoolOptions = {}) {
    this.config = config
    this.log = opts.log
    this.backoffMs = opts.backoffMs ?? DEFAULT_UPSTREAM_BACKOFF
    // A target listed twice is one target (one set of counters, one place on the hash ring).
    const urls = [...new Set(config.targets)]
    for (const url of urls) this.targets.set(url, { openConnections: 0, inFlight: 0, lastError: null, down: false, downUntil: 0 })
    this.balancer = createBalancer(config.balance, urls, { hashOn: config.hashOn, load: (t) => this.load(t) })
    this.checker = config.healthCheck === undefined
      ? null
      : new HealthChecker(urls, config.healthCheck, {
        fetchImpl: opts.fetchImpl,
        ca: config.ca,
        onChange: (change) => { this.healthChanged(change) },
        onProbeFailure: (target, error) => { this.targets.get(target)!.lastError = error }
      })
  }

  get name (): string { return this.config.name }

  /**
   * A target for this request/handshake, skipping targets that are down (passive) or unhealthy
   * (active) and any in `exclude` (those already tried for this request); null when none is left.
   */
  pick (ctx: PickContext, exclude: ReadonlySet<string> = NO_EXCLUDE): string | null {
    const now = Date.now()
    const picked = this.balancer.pick(ctx, (url) => !exclude.has(url) && this.isAvailable(url, now))
    if (picked !== null) return picked
    // Every target is in passive back-off: try them anyway (as nginx does) rather than refuse
    // traffic for the whole back-off after one failure, e.g. of a single-target upstream that
    // restarted. Targets the active checks call unhealthy stay out.
    return this.balancer.pick(ctx, (url) => !exclude.has(url) && this.targets.has(url) && (this.checker === null || this.checker.status(url) !== 'unhealthy'))
  }

  /**
   * Passive health: a connect failure or timeout marks the target down for the back-off period
   * (logged once per state change: further failures while down only extend the period).
   */
  markFailure (target: string, error: string): void {
    const t = this.targets.get(target)
    if (t === undefined) return
    t.lastError = error
    t.downUntil = Date.now() + this.backoffMs
    if (t.down) return
    t.down = true
    this.log?.warn({ upstream: this.name, target, error, backoffMs: this.backoffMs }, 'upstream target down')
  }

  /** A connection or request to the target succeeded: ends its passive back-off. */
  markSuccess (target: string): void {
    const t = this.targets.get(target)
    if (t === undefined || !t.down) return
    t.down = false
    t.downUntil = 0
    this.log?.info({ upstream: this.name, target }, 'upstream target up')
  }

  /** A WebSocket to the target opened (least-connections load, admin counts). */
  connectionOpened (target: string): void {
    const t = this.targets.get(target)
    if (t !== undefined) t.openConnections++
  }

  connectionClosed (target: string): void {
    const t = this.targets.get(target)
    if (t !== undefined && t.openConnections > 0) t.openConnections--
  }

  /** An HTTP request to the target started (least-connections load). */
  requestStarted (target: string): void {
    const t = this.targets.get(target)
    if (t !== undefined) t.inFlight++
  }

  requestFinished (target: string): void {
    const t = this.targets.get(target)
    if (t !== undefined && t.inFlight > 0) t.inFlight--
  }

  /**
   * Starts active health checks if the upstream has `healthCheck`: every target is probed now and
   * then every interval (timers unref()'d). Calling it again while started does nothing.
   */
  start (): void {
    this.checker?.start()
  }

  /** Stops the health checks and aborts probes in flight; the last states are kept. */
  stop (): void {
    this.checker?.stop()
  }

  /** Called when the active checks turn a target unhealthy (for closeOnUnhealthy). */
  onUnhealthy (listener: (target: string) => void): void {
    this.unhealthyListeners.push(listener)
  }

  /** Every target with its health and load, in the order of the configuration. */
  state (): TargetState[] {
    const now = Date.now()
    return [...this.targets].map(([url, t]) => {
      const active = this.checker?.status(url) ?? 'unchecked'
      const backingOff = t.downUntil > now
      return {
        url,
        healthy: this.isAvailable(url, now),
        health: active === 'unhealthy' ? 'unhealthy' : backingOff ? 'down' : active,
        openConnections: t.openConnections,
        inFlight: t.inFlight,
        lastError: t.lastError,
        downUntil: backingOff ? new Date(t.downUntil).toISOString() : null
      }
    })
  }

  private isAvailable (url: string, now: number): boolean {
    const t = this.targets.get(url)
    if (t === undefined || t.downUntil > now) return false
    return this.checker === null || this.checker.status(url) !== 'unhealthy'
  }

  private load (url: string): number {
    const t = this.targets.get(url)
    return t === undefined ? 0 : t.openConnections + t.inFlight
  }

  private healthChanged ({ target, to, error }: HealthChange): void {
    if (to === 'unhealthy') {
      this.log?.warn({ upstream: this.name, target, error }, 'upstream target unhealthy')
      for (const listener of this.unhealthyListeners) {
        try {
          listener(target)
        } catch (err) {
          this.log?.warn({ upstream: this.name, target, err }, 'onUnhealthy listener failed')
        }
      }
    } else if (to === 'healthy') {
      this.log?.info({ upstream: this.name, target }, 'upstream target healthy')
    }
  }
}

/** One pool per upstream; a route whose upstream is a URL gets a pool of its own. */
export function buildPools (upstreams: Iterable<UpstreamConfig>, opts?: UpstreamPoolOptions): Map<UpstreamConfig, UpstreamPool> {
  const pools = new Map<UpstreamConfig, UpstreamPool>()
  for (const u of upstreams) if (!pools.has(u)) pools.set(u, new UpstreamPool(u, opts))
  return pools
}
