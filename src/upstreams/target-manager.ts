/**
 * Runtime changes of upstream targets (the admin API's POST/PATCH/DELETE of targets and
 * rebalance): each change is applied to this instance's pool and, in cluster mode, sent to the
 * other instances (./target-bus.ts), which apply it to theirs. Closing connections (a drain with
 * closeWithin, a removal with close, a rebalance) is paced by the bridge (`closePaced`) and
 * acts on each instance's own connections.
 *
 * Changes live in the pools of the running app generation: the next reload builds new pools from
 * the configuration, and a restart starts from it too. Answers say so (`persisted`). Closing
 * acts on every connection of this instance to the target, whichever generation opened it; once
 * a newer generation is ready, an older one's manager is retired and applies nothing more.
 */
import type { Bridge } from '../bridge/bridge.js'
import type { PacedCause, PacedClose } from '../drain/paced-close.js'
import { codes } from '../errors.js'
import { CLOSE_SERVICE_RESTART, REASON_REBALANCE, REASON_TARGET_DRAINED, REASON_TARGET_REMOVED } from '../close-codes.js'
import { normaliseTarget } from '../config/resolve.js'
import { DEFAULT_REBALANCE_MIN_AGE, MAX_TARGETS_PER_UPSTREAM, REBALANCE_STEER_MS } from '../config/defaults.js'
import type { TargetMode, TargetState, UpstreamPool } from './pool.js'
import { planRebalance, type RebalancePlan, type TargetPlan } from './rebalance.js'
import { MAX_WINDOW_MS, type TargetCommand } from './target-bus.js'
import { parseDuration } from '../config/units.js'

/** How long a runtime change lasts, as every answer states it. */
export const PERSISTED = 'until the next reload or restart'

/** What closing the bridge offers the manager (plugins/bridge.ts's decorator). */
export interface Closer {
  connectionsOf (pool: UpstreamPool, target?: string): Bridge[]
  closePaced (opts: { code: number, reason: string, cause: PacedCause, bridges: Bridge[], windowMs?: number }): PacedClose
}

export interface ManagerLogger {
  info (o: object, msg: string): void
  warn (o: object, msg: string): void
}

/** A paced close as the answers show it. */
export interface ClosingView { id: string, total: number, windowMs: number, maxPerSecond: number }

export interface TargetAnswer {
  upstream: string
  target: TargetState
  /** The paced close of the target's connections on this instance, or null. */
  closing: ClosingView | null
  /** `cluster`: sent to every instance; `instance`: this one only (no Redis, or Redis unreachable). */
  scope: 'cluster' | 'instance'
  persisted: typeof PERSISTED
}

export interface RebalanceAnswer {
  upstream: string
  dryRun: boolean
  minAgeMs: number
  instanceId: string
  /** Connections of this instance on targets that take new ones. */
  total: number
  targets: TargetPlan[]
  closing: ClosingView | null
  scope: 'cluster' | 'instance'
}

export interface TargetManagerOptions {
  pools: Iterable<UpstreamPool>
  /** Resolved at call time: the bridge plugin registers after the upstreams plugin. */
  closer: () => Closer
  /** Whether a route (by prefix) lets a rebalance close its connections. */
  movable: (route: string) => boolean
  instanceId: string
  /** Sends a change to the other instances (cluster mode); absent without Redis. */
  publish?: (cmd: TargetCommand) => Promise<boolean>
  /** Counts the connections a rebalance picked (tollgate_rebalance_closes_total). */
  rebalanced?: (upstream: string, n: number) => void
  log?: ManagerLogger
  now?: () => number
  /** Called once by `retire` (the plugin stops its bus subscriber and DNS refreshes). */
  onRetire?: () => void
}

export class TargetManager {
  private readonly pools = new Map<string, UpstreamPool>()
  private readonly now: () => number
  /** Set once a newer app generation took over: bus messages and automatic rebalances stop. */
  private retired = false

  constructor (private readonly opts: TargetManagerOptions) {
    for (const p of opts.pools) if (!this.pools.has(p.name)) this.pools.set(p.name, p)
    this.now = opts.now ?? Date.now
    for (const pool of this.pools.values()) {
      const auto = pool.config.autoRebalance
      if (auto === null) continue
      // Each instance adds the target itself (the bus carries the addition), so each rebalances
      // its own connections; nothing more is sent.
      pool.onAdded((urls) => {
        if (this.retired) return
        const { closing } = this.applyRebalance(pool, auto.minAgeMs, false)
        this.opts.log?.info({ upstream: pool.name, added: urls, closing: closing?.total ?? 0 }, 'upstream rebalanced after a target was added')
      })
    }
  }

  /**
   * A newer app generation is ready: this one applies no more changes from the bus (the newer
   * one does) and rebalances nothing by itself, so no change is applied twice on this instance.
   */
  retire (): void {
    if (this.retired) return
    this.retired = true
    this.opts.onRetire?.()
  }

  /** The pool of the upstream `name`. @throws GW_ERR_UPSTREAM_NOT_FOUND */
  pool (name: string): UpstreamPool {
    const pool = this.pools.get(name)
    if (pool === undefined) throw new codes.GW_ERR_UPSTREAM_NOT_FOUND(JSON.stringify(name))
    return pool
  }

  /** Adds a target to `name`. @throws GW_ERR_UPSTREAM_NOT_FOUND, GW_ERR_BAD_TARGET, GW_ERR_TARGET_EXISTS */
  async add (name: string, rawUrl: string, weight: number): Promise<TargetAnswer> {
    const pool = this.pool(name)
    const url = targetUrl(rawUrl)
    const change = pool.addTarget(url, weight, 'admin')
    if (!change.ok && change.reason === 'full') throw new codes.GW_ERR_TOO_MANY_TARGETS(JSON.stringify(name), String(MAX_TARGETS_PER_UPSTREAM))
    if (!change.ok) throw new codes.GW_ERR_TARGET_EXISTS(JSON.stringify(name), JSON.stringify(rawUrl))
    const sent = await this.send({ op: 'add', upstream: name, url, weight })
    return this.answer(pool, change.target, null, sent)
  }

  /**
   * Changes a target's weight or state; with `closeWithinMs` (only for a target that ends up
   * drained) its open connections are closed with 1012, paced over that window.
   * @throws GW_ERR_UPSTREAM_NOT_FOUND, GW_ERR_TARGET_NOT_FOUND, GW_ERR_BAD_TARGET
   */
  async update (name: string, id: string, body: { weight?: number, state?: TargetMode, closeWithin?: number | string }): Promise<TargetAnswer> {
    const pool = this.pool(name)
    const closeWithinMs = body.closeWithin === undefined ? undefined : parseDuration(body.closeWithin)
    if (closeWithinMs === undefined && body.closeWithin !== undefined) {
      throw new codes.GW_ERR_BAD_TARGET(`invalid closeWithin ${JSON.stringify(body.closeWithin)} (use milliseconds or a string such as "500ms", "30s", "5m")`)
    }
    if (closeWithinMs !== undefined && closeWithinMs > MAX_WINDOW_MS) throw new codes.GW_ERR_BAD_TARGET('closeWithin is at most a day')
    // Whole milliseconds, as the bus carries them ("1.5ms" is rounded by the parser).
    if (closeWithinMs !== undefined && !Number.isInteger(closeWithinMs)) throw new codes.GW_ERR_BAD_TARGET('closeWithin is a whole number of milliseconds')
    const change = {
      ...(body.weight !== undefined ? { weight: body.weight } : {}),
      ...(body.state !== undefined ? { state: body.state } : {}),
      ...(closeWithinMs !== undefined ? { closeWithinMs } : {})
    }
    const url = pool.urlOf(id)
    const current = url === null ? undefined : pool.state().find((t) => t.url === url)
    if (current === undefined) throw new codes.GW_ERR_TARGET_NOT_FOUND(JSON.stringify(name), JSON.stringify(id))
    if (change.closeWithinMs !== undefined && (change.state ?? current.state) !== 'drain') {
      throw new codes.GW_ERR_BAD_TARGET('closeWithin applies to a target in the drain state')
    }
    const { target, closing } = this.applyUpdate(pool, id, change)!
    const sent = await this.send({ op: 'update', upstream: name, target: id, ...change })
    return this.answer(pool, target, closing, sent)
  }

  /** Removes a target; with `close`, its connections are closed with 1012, paced. */
  async remove (name: string, id: string, close: boolean): Promise<TargetAnswer> {
    const pool = this.pool(name)
    const applied = this.applyRemove(pool, id, close)
    if (applied === null) throw new codes.GW_ERR_TARGET_NOT_FOUND(JSON.stringify(name), JSON.stringify(id))
    const sent = await this.send({ op: 'remove', upstream: name, target: id, close })
    return this.answer(pool, applied.target, applied.closing, sent)
  }

  /**
   * What a rebalance of `name` closes on this instance (or would, with `dryRun`); not a dry run:
   * those connections are closed with 1012, paced, and every other instance rebalances its own.
   */
  async rebalance (name: string, opts: { dryRun?: boolean, minAgeMs?: number } = {}): Promise<RebalanceAnswer> {
    const pool = this.pool(name)
    const minAgeMs = opts.minAgeMs ?? DEFAULT_REBALANCE_MIN_AGE
    const dryRun = opts.dryRun === true
    const { plan, closing } = this.applyRebalance(pool, minAgeMs, dryRun)
    const sent = dryRun ? false : await this.send({ op: 'rebalance', upstream: name, minAgeMs })
    return { upstream: name, dryRun, minAgeMs, instanceId: this.opts.instanceId, total: plan.total, targets: plan.targets, closing, scope: sent ? 'cluster' : 'instance' }
  }

  /**
   * Another instance's change, from the bus: applied here the same way, without answering or
   * sending it on. Its outcome (a target that exists already or not any more) is only logged.
   */
  apply (cmd: TargetCommand, from: string): void {
    if (this.retired) return
    const pool = this.pools.get(cmd.upstream)
    if (pool === undefined) { this.opts.log?.warn({ upstream: cmd.upstream, op: cmd.op, from }, 'upstream change for an unknown upstream ignored'); return }
    let ok = true
    switch (cmd.op) {
      case 'add': {
        let url: string
        try { url = targetUrl(cmd.url) } catch { ok = false; break }
        const change = pool.addTarget(url, cmd.weight, 'admin')
        if (!change.ok && change.reason === 'full') {
          this.opts.log?.warn({ upstream: cmd.upstream, from, max: MAX_TARGETS_PER_UPSTREAM }, 'upstream change from another instance dropped: the upstream has the most targets it may have')
          return
        }
        ok = change.ok
        break
      }
      case 'update': ok = this.applyUpdate(pool, cmd.target, cmd) !== null; break
      case 'remove': ok = this.applyRemove(pool, cmd.target, cmd.close) !== null; break
      case 'rebalance': this.applyRebalance(pool, cmd.minAgeMs, false); break
    }
    if (!ok) this.opts.log?.info({ upstream: cmd.upstream, op: cmd.op, from }, 'upstream change from another instance did not apply here')
  }

  private applyUpdate (pool: UpstreamPool, id: string, change: { weight?: number, state?: TargetMode, closeWithinMs?: number }): { target: TargetState, closing: ClosingView | null } | null {
    const result = pool.updateTarget(id, { weight: change.weight, state: change.state })
    if (!result.ok) return null
    let closing: ClosingView | null = null
    const url = result.target.url
    // Back to active: the reason for closing its connections is gone.
    if (result.target.state === 'active' && pool.cancelPace(url, 'drain')) this.opts.log?.info({ upstream: pool.name, target: url }, 'target active again: its paced close stopped')
    if (change.closeWithinMs !== undefined && result.target.state === 'drain') {
      closing = this.close(pool, 'drain', REASON_TARGET_DRAINED, () => this.opts.closer().connectionsOf(pool, url), change.closeWithinMs, url)
    }
    return { target: result.target, closing }
  }

  private applyRemove (pool: UpstreamPool, id: string, close: boolean): { target: TargetState, closing: ClosingView | null } | null {
    const result = pool.removeTarget(id)
    if (!result.ok) return null
    const url = result.target.url
    let closing: ClosingView | null = null
    if (close) {
      // The removal's pace closes what a drain's would have.
      pool.cancelPace(url, 'drain')
      closing = this.close(pool, 'remove', REASON_TARGET_REMOVED, () => this.opts.closer().connectionsOf(pool, url), undefined, url)
    }
    return { target: { ...result.target, state: 'drain' }, closing }
  }

  private applyRebalance (pool: UpstreamPool, minAgeMs: number, dryRun: boolean): { plan: RebalancePlan, closing: ClosingView | null } {
    let bridges: Bridge[]
    try {
      bridges = this.opts.closer().connectionsOf(pool)
    } catch (err) {
      this.opts.log?.warn({ upstream: pool.name, err: (err as Error).message }, 'rebalance: listing the connections failed')
      bridges = []
    }
    const targets = pool.state().map((t) => ({ id: t.id, url: t.url, weight: t.weight, eligible: t.state === 'active' && t.weight > 0 && t.healthy }))
    const connections = bridges.map((b) => ({ id: b.info.id, target: b.info.upstream, connectedAt: b.connectedAt, movable: this.opts.movable(b.info.route) }))
    const plan = planRebalance(targets, connections, this.now(), minAgeMs)
    if (dryRun || plan.picked.length === 0) return { plan, closing: null }
    const ids = new Set(plan.picked)
    const chosen = bridges.filter((b) => ids.has(b.info.id))
    const closing = this.close(pool, 'rebalance', REASON_REBALANCE, () => chosen)
    // The reconnecting clients go to the targets below their share, no more of them than closed.
    pool.steer(capDeficits(plan.deficits, chosen.length), this.now() + (closing?.windowMs ?? 0) + REBALANCE_STEER_MS)
    this.opts.rebalanced?.(pool.name, chosen.length)
    this.opts.log?.info({ upstream: pool.name, total: plan.total, closing: chosen.length, minAgeMs }, 'upstream rebalance started')
    return { plan, closing }
  }

  /**
   * Starts the paced close of `which()` (kept on the pool for `target`'s drain or removal). The
   * change it follows is already applied and is sent on whatever happens here: a close that
   * fails is logged and answered as no close, rather than leave this instance changed and the
   * others not.
   */
  private close (pool: UpstreamPool, cause: PacedCause, reason: string, which: () => Bridge[], windowMs?: number, target?: string): ClosingView | null {
    let p: PacedClose
    try {
      const bridges = which()
      if (bridges.length === 0) return null
      p = this.opts.closer().closePaced({ code: CLOSE_SERVICE_RESTART, reason, cause, bridges, ...(windowMs !== undefined ? { windowMs } : {}) })
    } catch (err) {
      this.opts.log?.warn({ upstream: pool.name, cause, target, err: (err as Error).message }, 'closing upstream target connections failed')
      return null
    }
    if (target !== undefined && (cause === 'drain' || cause === 'remove')) pool.trackPace(target, cause, p)
    this.opts.log?.info({ upstream: pool.name, cause, total: p.total, windowMs: p.windowMs }, 'closing upstream target connections')
    return { id: p.id, total: p.total, windowMs: p.windowMs, maxPerSecond: p.maxPerSecond }
  }

  /**
   * Sends a change to the other instances; false without Redis or when Redis did not take it
   * (then the change holds on this instance only, and the answer says so).
   */
  private async send (cmd: TargetCommand): Promise<boolean> {
    if (this.opts.publish === undefined) return false
    const sent = await this.opts.publish(cmd)
    if (!sent) this.opts.log?.warn({ upstream: cmd.upstream, op: cmd.op }, 'upstream change applied on this instance only: the cluster bus is unreachable')
    return sent
  }

  private answer (pool: UpstreamPool, target: TargetState, closing: ClosingView | null, sent: boolean): TargetAnswer {
    return { upstream: pool.name, target, closing, scope: sent ? 'cluster' : 'instance', persisted: PERSISTED }
  }
}

/** A target URL from the admin API, normalised as the config's are. @throws GW_ERR_BAD_TARGET */
function targetUrl (raw: string): string {
  try {
    return normaliseTarget(raw, 'url')
  } catch (err) {
    throw new codes.GW_ERR_BAD_TARGET((err as Error).message)
  }
}

/** The deficits, largest first, until `n` connections are given out. */
export function capDeficits (deficits: ReadonlyMap<string, number>, n: number): Map<string, number> {
  const out = new Map<string, number>()
  let left = n
  for (const [url, d] of [...deficits].sort((a, b) => b[1] - a[1])) {
    if (left <= 0) break
    const give = Math.min(d, left)
    out.set(url, give)
    left -= give
  }
  return out
}
