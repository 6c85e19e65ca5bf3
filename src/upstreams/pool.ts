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
 *
 * The set of targets is live: the config's, the addresses of the config's host names when the
 * upstream has `resolve` (./resolver.ts calls `setResolved`), and what the admin API adds. Each
 * target has a weight (0: no new connections) and a mode: `active`, or `drain` (no new
 * connections, open ones stay). A target taken away while connections to it are open (an
 * address DNS no longer gives, a target the admin API removed) is retired: it gets nothing new
 * and is forgotten once its last connection and request have ended, so its counts stay right
 * until then and a target added again under the same URL picks them up.
 */
import type { UpstreamConfig } from '../config/types.js'
import { createBalancer, type Balancer, type PickContext, type WeightedTarget } from './balancers.js'
import { HealthChecker, type HealthChange } from './health.js'
import { DEFAULT_UPSTREAM_BACKOFF, MAX_TARGETS_PER_UPSTREAM } from '../config/defaults.js'
import { targetId } from '../config/resolve.js'

export type { PickContext } from './balancers.js'

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

/** Where a target comes from. */
export type TargetSource = 'config' | 'dns' | 'admin'
/** `drain`: no new connections, open ones stay. */
export type TargetMode = 'active' | 'drain'

/** A target as the admin API shows it. */
export interface TargetState {
  /** `host:port`, the target's name in the admin API. */
  id: string
  url: string
  weight: number
  /** `drain` also for an address DNS no longer gives that still has connections. */
  state: TargetMode
  source: TargetSource
  /** For a DNS target: the configured URL whose host name resolved to this address. */
  resolvedFrom: string | null
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

/** What a change of the targets did, for the caller's answer and logs. */
export type TargetChange =
  | { ok: true, target: TargetState }
  | { ok: false, reason: 'exists' | 'not-found' | 'full' }

/** Why a target's connections are being closed, paced (see `trackPace`). */
export type TargetPaceCause = 'drain' | 'remove' | 'unhealthy'

/** What the pool keeps of a paced close of a target's connections: a way to stop it. */
export interface TargetPace {
  cancel (): void
  readonly done: Promise<void>
}

interface Target {
  url: string
  id: string
  /** Unique per target object: a connection counted on a target is uncounted on that one only. */
  seq: number
  weight: number
  mode: TargetMode
  source: TargetSource
  /** For a DNS target: the configured URL (with the host name) it came from. */
  resolvedFrom: string | null
  /** Taken away with connections still open: `dns` (shown, as draining) or `removed` (hidden). */
  retired: 'dns' | 'removed' | null
  openConnections: number
  inFlight: number
  lastError: string | null
  /** Passively down since the last failure and not yet seen to succeed (drives the logs). */
  down: boolean
  /** Epoch ms until which the target is not picked; 0 when never failed. */
  downUntil: number
}

/** A configured target whose host name is resolved into targets (upstreams.*.resolve). */
export interface ResolvedName {
  /** The configured URL, e.g. http://chat.svc:9000 */
  url: string
  /** The host name to resolve. */
  hostname: string
  weight: number
}

const NO_EXCLUDE: ReadonlySet<string> = new Set()

let targetSeq = 0

/** Whether `hostname` (as URL.hostname gives it) is an IP address rather than a name. */
function isAddress (hostname: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(hostname) || hostname.startsWith('[')
}

/** `url` with its host replaced by `address` (IPv6 in brackets), port and path kept. */
export function addressUrl (url: string, address: string): string {
  const u = new URL(url)
  u.hostname = address.includes(':') ? `[${address}]` : address
  return `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`
}

export class UpstreamPool {
  readonly config: UpstreamConfig
  private readonly targets = new Map<string, Target>()
  private readonly balancer: Balancer
  private readonly checker: HealthChecker | null
  private readonly log: PoolLogger | undefined
  private readonly backoffMs: number
  private readonly unhealthyListeners: Array<(target: string) => void> = []
  private readonly changeListeners: Array<() => void> = []
  private readonly addedListeners: Array<(urls: string[]) => void> = []
  private readonly healthyListeners: Array<(target: string) => void> = []
  /**
   * Addresses of DNS names that the admin API removed: later answers do not bring them back
   * (until this pool is rebuilt by a reload or restart, or the admin API adds the URL again).
   */
  private readonly removedByAdmin = new Set<string>()
  /** The paced closes of each target's connections now running, by cause. */
  private readonly paces = new Map<string, Map<TargetPaceCause, TargetPace>>()
  /** Picks owed to targets below their fair share after a rebalance (see `steer`). */
  private steering: { left: Map<string, number>, until: number } | null = null
  /** The configured targets whose names are resolved into addresses (empty without `resolve`). */
  readonly names: readonly ResolvedName[]

  constructor (config: UpstreamConfig, opts: UpstreamPoolOptions = {}) {
    this.config = config
    this.log = opts.log
    this.backoffMs = opts.backoffMs ?? DEFAULT_UPSTREAM_BACKOFF
    const names: ResolvedName[] = []
    config.targets.forEach((url, i) => {
      const weight = config.weights?.[i] ?? 1
      const hostname = new URL(url).hostname
      // With `resolve`, a host name stands for the addresses it resolves to, not a target itself.
      if (config.resolve > 0 && !isAddress(hostname)) names.push({ url, hostname, weight })
      else if (!this.targets.has(url)) this.targets.set(url, this.newTarget(url, weight, 'config', null))
    })
    this.names = names
    this.balancer = createBalancer(config.balance, this.weighted(), { hashOn: config.hashOn, load: (t) => this.load(t) })
    this.checker = config.healthCheck === undefined
      ? null
      : new HealthChecker([...this.targets.keys()], config.healthCheck, {
        fetchImpl: opts.fetchImpl,
        ca: config.ca,
        // A DNS address's certificate is the name's, as for traffic (TLS server name).
        servernameOf: (url) => {
          const from = this.targets.get(url)?.resolvedFrom
          return from === null || from === undefined ? undefined : new URL(from).hostname
        },
        onChange: (change) => { this.healthChanged(change) },
        onProbeFailure: (target, error) => {
          const t = this.targets.get(target)
          if (t !== undefined) t.lastError = error
        }
      })
  }

  get name (): string { return this.config.name }

  /**
   * A target for this request/handshake, skipping targets that are down (passive) or unhealthy
   * (active), draining, retired or of weight 0, and any in `exclude` (those already tried for
   * this request); null when none is left.
   */
  pick (ctx: PickContext, exclude: ReadonlySet<string> = NO_EXCLUDE): string | null {
    const now = Date.now()
    if (this.steering !== null) {
      const steered = this.steered(exclude, now)
      if (steered !== null) return steered
    }
    const picked = this.balancer.pick(ctx, (url) => !exclude.has(url) && this.isAvailable(url, now))
    if (picked !== null) return picked
    // Every target is in passive back-off: try them anyway (as nginx does) rather than refuse
    // traffic for the whole back-off after one failure, e.g. of a single-target upstream that
    // restarted. Targets the active checks call unhealthy stay out, and so do drained ones.
    return this.balancer.pick(ctx, (url) => !exclude.has(url) && this.isPickable(url) && (this.checker === null || this.checker.status(url) !== 'unhealthy'))
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

  /**
   * A WebSocket to the target opened (least-connections load, admin counts). Returns what to
   * give `connectionClosed` when it ends, or 0 when the pool has no such target (nothing counted).
   */
  connectionOpened (target: string): number {
    const t = this.targets.get(target)
    if (t === undefined) return 0
    t.openConnections++
    return t.seq
  }

  /**
   * A WebSocket counted by `connectionOpened` (which returned `counted`) ended. A target that was
   * forgotten and added again under the same URL is a new target: the old connection does not
   * take from its count.
   */
  connectionClosed (target: string, counted?: number): void {
    const t = this.targets.get(target)
    if (t === undefined || (counted !== undefined && counted !== t.seq)) return
    if (t.openConnections > 0) t.openConnections--
    this.forgetIfIdle(t)
  }

  /** An HTTP request to the target started (least-connections load). */
  requestStarted (target: string): void {
    const t = this.targets.get(target)
    if (t !== undefined) t.inFlight++
  }

  requestFinished (target: string): void {
    const t = this.targets.get(target)
    if (t === undefined) return
    if (t.inFlight > 0) t.inFlight--
    this.forgetIfIdle(t)
  }

  /**
   * After a rebalance: the next picks go to the targets below their fair share, `deficits` of
   * them each (largest first), until they are used up or `untilMs` (epoch) passes, and only
   * while those targets are available. Without this, round-robin would spread the reconnecting
   * clients over every target by weight, and the targets that lost connections would get back
   * their share of them. Hash balancing is never steered: a key keeps its target.
   */
  steer (deficits: ReadonlyMap<string, number>, untilMs: number): void {
    if (this.config.balance === 'hash' || this.config.balance === 'ip-hash') return
    const left = new Map([...deficits].filter(([url, n]) => n > 0 && this.targets.has(url)))
    this.steering = left.size === 0 ? null : { left, until: untilMs }
  }

  /** A target the current steering still owes connections to, or null. */
  private steered (exclude: ReadonlySet<string>, now: number): string | null {
    const s = this.steering!
    if (now > s.until) { this.steering = null; return null }
    let best: string | null = null
    let most = 0
    for (const [url, n] of s.left) {
      if (n > most && !exclude.has(url) && this.isAvailable(url, now)) { best = url; most = n }
    }
    if (best === null) return null
    if (most === 1) s.left.delete(best)
    else s.left.set(best, most - 1)
    if (s.left.size === 0) this.steering = null
    return best
  }

  /** The URL of the target named `id` (`host:port`), or null; retired targets have none. */
  urlOf (id: string): string | null {
    for (const t of this.targets.values()) if (t.id === id && t.retired === null) return t.url
    return null
  }

  /** The configured URL with the host name that `url` (a DNS target) was resolved from, or null. */
  resolvedFrom (url: string): string | null {
    return this.targets.get(url)?.resolvedFrom ?? null
  }

  /**
   * Adds a target (the admin API). `url` must be normalised (src/config/resolve.ts
   * `normaliseTarget`). A target of that URL or `host:port` that exists already is refused
   * (`exists`); one that was removed while its connections stayed open comes back with them.
   */
  addTarget (url: string, weight: number, source: TargetSource = 'admin'): TargetChange {
    const id = targetId(url)
    const existing = this.targets.get(url)
    for (const t of this.targets.values()) {
      if (t.id === id && t.retired !== 'removed' && !(t.retired === 'dns' && t.url === url)) return { ok: false, reason: 'exists' }
    }
    if (existing === undefined && this.targets.size >= MAX_TARGETS_PER_UPSTREAM) return { ok: false, reason: 'full' }
    this.removedByAdmin.delete(url)
    if (existing !== undefined) {
      existing.retired = null
      existing.weight = weight
      existing.mode = 'active'
      existing.source = source
      existing.resolvedFrom = null
    } else {
      this.targets.set(url, this.newTarget(url, weight, source, null))
    }
    this.checker?.add(url)
    this.changed()
    this.log?.info({ upstream: this.name, target: url, weight, source }, 'upstream target added')
    this.added([url])
    return { ok: true, target: this.stateOf(this.targets.get(url)!, Date.now()) }
  }

  /** Changes the weight or mode of the target named `id`. */
  updateTarget (id: string, change: { weight?: number, state?: TargetMode }): TargetChange {
    const url = this.urlOf(id)
    if (url === null) return { ok: false, reason: 'not-found' }
    const t = this.targets.get(url)!
    if (change.weight !== undefined) t.weight = change.weight
    if (change.state !== undefined) t.mode = change.state
    this.changed()
    this.log?.info({ upstream: this.name, target: url, weight: t.weight, state: t.mode }, 'upstream target changed')
    return { ok: true, target: this.stateOf(t, Date.now()) }
  }

  /**
   * Removes the target named `id`: nothing new goes to it; it is forgotten once its open
   * connections and requests have ended (they are not closed here).
   */
  removeTarget (id: string): TargetChange {
    const url = this.urlOf(id)
    if (url === null) return { ok: false, reason: 'not-found' }
    const t = this.targets.get(url)!
    const before = this.stateOf(t, Date.now())
    // A DNS address stays removed: the next answer that gives it again does not undo this.
    if (t.source === 'dns') this.removedByAdmin.add(url)
    this.retire(t, 'removed')
    this.changed()
    this.log?.info({ upstream: this.name, target: url, openConnections: t.openConnections }, 'upstream target removed')
    return { ok: true, target: before }
  }

  /**
   * The addresses `name` (one of `names`) resolves to now. New addresses become targets (the
   * name's weight, source `dns`); addresses no longer given are retired (no new connections;
   * open ones stay). An address that is also a target of its own (config, admin) is left alone.
   * Returns what changed.
   */
  setResolved (name: ResolvedName, addresses: readonly string[]): { added: string[], removed: string[] } {
    const wanted = new Set<string>()
    for (const a of addresses) {
      // A zone-scoped IPv6 address (fe80::1%eth0) has no URL form: the URL would keep the name.
      if (a.includes('%')) continue
      const url = addressUrl(name.url, a)
      if (new URL(url).hostname !== new URL(name.url).hostname) wanted.add(url)
    }
    const added: string[] = []
    const removed: string[] = []
    let full = 0
    for (const url of wanted) {
      if (this.removedByAdmin.has(url)) continue
      const t = this.targets.get(url)
      if (t !== undefined && t.retired === null) continue
      if (t !== undefined && t.retired === 'dns' && t.resolvedFrom === name.url) {
        t.retired = null
        // Retiring stopped its probes: it is checked again like any target.
        this.checker?.add(url)
        added.push(url)
        continue
      }
      if (t !== undefined) continue
      // Another target of this upstream already has this host:port (a config or admin one).
      if (this.urlOf(targetId(url)) !== null) continue
      if (this.targets.size >= MAX_TARGETS_PER_UPSTREAM) { full++; continue }
      this.targets.set(url, this.newTarget(url, name.weight, 'dns', name.url))
      this.checker?.add(url)
      added.push(url)
    }
    for (const t of [...this.targets.values()]) {
      if (t.source !== 'dns' || t.resolvedFrom !== name.url || t.retired !== null || wanted.has(t.url)) continue
      removed.push(t.url)
      this.retire(t, 'dns')
    }
    if (full > 0) this.log?.warn({ upstream: this.name, name: name.hostname, ignored: full, max: MAX_TARGETS_PER_UPSTREAM }, 'upstream has the most targets it may have: addresses ignored')
    if (added.length > 0 || removed.length > 0) {
      this.changed()
      this.log?.info({ upstream: this.name, name: name.hostname, added, removed }, 'upstream targets resolved')
    }
    if (added.length > 0) this.added(added)
    return { added, removed }
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

  /** Called when the active checks turn a target healthy again (ends a closeOnUnhealthy pace). */
  onHealthy (listener: (target: string) => void): void {
    this.healthyListeners.push(listener)
  }

  /**
   * Keeps `pace` as the paced close of `target`'s connections for `cause` while it runs; one
   * already running for that target and cause is cancelled (the new one replaces it).
   */
  trackPace (target: string, cause: TargetPaceCause, pace: TargetPace): void {
    let byCause = this.paces.get(target)
    if (byCause === undefined) this.paces.set(target, byCause = new Map())
    const before = byCause.get(cause)
    byCause.set(cause, pace)
    if (before !== undefined && before !== pace) before.cancel()
    void pace.done.then(() => {
      const m = this.paces.get(target)
      if (m?.get(cause) !== pace) return
      m.delete(cause)
      if (m.size === 0) this.paces.delete(target)
    })
  }

  /** Cancels the paced close of `target`'s connections for `cause`; whether one was running. */
  cancelPace (target: string, cause: TargetPaceCause): boolean {
    const pace = this.paces.get(target)?.get(cause)
    if (pace === undefined) return false
    this.paces.get(target)!.delete(cause)
    if (this.paces.get(target)!.size === 0) this.paces.delete(target)
    pace.cancel()
    return true
  }

  /** Whether a paced close of `target`'s connections for `cause` is running. */
  pacing (target: string, cause: TargetPaceCause): boolean {
    return this.paces.get(target)?.has(cause) === true
  }

  /**
   * Whether a WebSocket to `target` that has just opened may stay: `removed` when the target was
   * removed (or is gone from the pool) meanwhile, the cause of a paced close of its connections
   * that is running, or null. A handshake in flight when its target was removed or drained with
   * a close would otherwise stay open, missed by that close.
   */
  refuses (target: string): 'removed' | TargetPaceCause | null {
    const t = this.targets.get(target)
    if (t === undefined || t.retired === 'removed') return 'removed'
    const byCause = this.paces.get(target)
    if (byCause === undefined) return null
    for (const cause of ['remove', 'drain', 'unhealthy'] as const) if (byCause.has(cause)) return cause
    return null
  }

  /** Called with the URLs of targets that were added (the admin API, a DNS answer). */
  onAdded (listener: (urls: string[]) => void): void {
    this.addedListeners.push(listener)
  }

  /** Called after the targets or their weights or modes changed. */
  onChange (listener: () => void): void {
    this.changeListeners.push(listener)
  }

  /**
   * Every target with its health and load: the configured ones in the order of the
   * configuration, then the others in the order they came. Removed targets are not shown.
   */
  state (): TargetState[] {
    const now = Date.now()
    const out: TargetState[] = []
    for (const t of this.targets.values()) if (t.retired !== 'removed') out.push(this.stateOf(t, now))
    return out
  }

  private stateOf (t: Target, now: number): TargetState {
    const active = this.checker?.status(t.url) ?? 'unchecked'
    const backingOff = t.downUntil > now
    return {
      id: t.id,
      url: t.url,
      weight: t.weight,
      state: t.retired === null ? t.mode : 'drain',
      source: t.source,
      resolvedFrom: t.resolvedFrom,
      healthy: t.retired === null && this.isAvailable(t.url, now),
      health: active === 'unhealthy' ? 'unhealthy' : backingOff ? 'down' : active,
      openConnections: t.openConnections,
      inFlight: t.inFlight,
      lastError: t.lastError,
      downUntil: backingOff ? new Date(t.downUntil).toISOString() : null
    }
  }

  private newTarget (url: string, weight: number, source: TargetSource, resolvedFrom: string | null): Target {
    return { url, id: targetId(url), seq: ++targetSeq, weight, mode: 'active', source, resolvedFrom, retired: null, openConnections: 0, inFlight: 0, lastError: null, down: false, downUntil: 0 }
  }

  private retire (t: Target, how: 'dns' | 'removed'): void {
    t.retired = how
    this.checker?.remove(t.url)
    this.forgetIfIdle(t)
  }

  private forgetIfIdle (t: Target): void {
    if (t.retired === null || t.openConnections > 0 || t.inFlight > 0) return
    this.targets.delete(t.url)
    this.changed()
  }

  /** The targets the balancer chooses among, with their weights (drained and retired ones weigh 0). */
  private weighted (): WeightedTarget[] {
    return [...this.targets.values()].filter((t) => t.retired === null).map((t) => ({ url: t.url, weight: t.weight }))
  }

  private added (urls: string[]): void {
    for (const listener of this.addedListeners) {
      try {
        listener(urls)
      } catch (err) {
        this.log?.warn({ upstream: this.name, err }, 'upstream target listener failed')
      }
    }
  }

  private changed (): void {
    this.balancer.update(this.weighted())
    for (const listener of this.changeListeners) {
      try {
        listener()
      } catch (err) {
        this.log?.warn({ upstream: this.name, err }, 'upstream change listener failed')
      }
    }
  }

  /** Not retired, not drained, of a positive weight: may get new traffic when healthy. */
  private isPickable (url: string): boolean {
    const t = this.targets.get(url)
    return t !== undefined && t.retired === null && t.mode === 'active' && t.weight > 0
  }

  private isAvailable (url: string, now: number): boolean {
    const t = this.targets.get(url)
    if (t === undefined || t.downUntil > now || !this.isPickable(url)) return false
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
      for (const listener of this.healthyListeners) {
        try {
          listener(target)
        } catch (err) {
          this.log?.warn({ upstream: this.name, target, err }, 'onHealthy listener failed')
        }
      }
    }
  }
}

/**
 * One pool per upstream. A route whose upstream is a URL gets a pool of its own, except that
 * routes naming the same URL share one (the same name and settings): runtime changes and
 * rebalances of that name then act on all of them at once. Several keys of the map may thus
 * hold the same pool.
 */
export function buildPools (upstreams: Iterable<UpstreamConfig>, opts?: UpstreamPoolOptions): Map<UpstreamConfig, UpstreamPool> {
  const pools = new Map<UpstreamConfig, UpstreamPool>()
  const byName = new Map<string, { key: string, pool: UpstreamPool }>()
  for (const u of upstreams) {
    if (pools.has(u)) continue
    const key = JSON.stringify(u)
    const same = byName.get(u.name)
    if (same !== undefined && same.key === key) { pools.set(u, same.pool); continue }
    const pool = new UpstreamPool(u, opts)
    pools.set(u, pool)
    if (same === undefined) byName.set(u.name, { key, pool })
  }
  return pools
}

/** Each pool of `pools` once (buildPools may give several configs the same pool). */
export function distinctPools (pools: Map<UpstreamConfig, UpstreamPool>): UpstreamPool[] {
  return [...new Set(pools.values())]
}
