/**
 * The choice of one target among the targets of an upstream and their weights, for each balance
 * mode (`upstreams.*.balance`). A balancer knows nothing of health or draining: the pool passes
 * a predicate that says which targets may be chosen right now, and a balancer only skips the
 * refused ones, so a target that comes back is chosen again without rebuilding anything. When
 * the targets themselves change (DNS, the admin API) the pool calls `update`.
 */
import { cookieValue } from '../http/cookie.js'
import type { IncomingHttpHeaders } from 'node:http'
import type { BalanceMode } from '../config/types.js'
import { DEFAULT_VIRTUAL_NODES, HashRing } from './hash-ring.js'

/** What a request or handshake offers to choose a target by. */
export interface PickContext {
  /** The client's address (after trustProxy). */
  ip: string
  /** The authenticated user (the token's subject), if any. */
  userId?: string | null
  headers: IncomingHttpHeaders
}

export type Available = (target: string) => boolean

/** A target and its weight (0: never picked). */
export interface WeightedTarget { url: string, weight: number }

export interface Balancer {
  /** A target that passes `available`, or null when none does. */
  pick (ctx: PickContext, available: Available): string | null
  /**
   * Replaces the targets and their weights (a target added, removed or re-weighted). What a
   * balancer knows of the targets that stay (rotation state) is kept.
   */
  update (targets: ReadonlyArray<string | WeightedTarget>): void
}

function weighted (targets: ReadonlyArray<string | WeightedTarget>): WeightedTarget[] {
  return targets.map((t) => typeof t === 'string' ? { url: t, weight: 1 } : { url: t.url, weight: t.weight })
}

/**
 * Smooth weighted round-robin, as nginx's `ngx_http_upstream_get_peer`: at each pick every
 * available target's current weight grows by its weight, the largest is chosen and loses the
 * total. Weights 5, 1, 1 give `a a b a c a a`, the exact shares spread out rather than in runs;
 * equal weights rotate exactly. A target that is unavailable is skipped and gains nothing while
 * skipped, so the others share its turns by their weights.
 */
export class RoundRobinBalancer implements Balancer {
  private targets: WeightedTarget[] = []
  private current = new Map<string, number>()

  constructor (targets: ReadonlyArray<string | WeightedTarget>) {
    this.update(targets)
  }

  update (targets: ReadonlyArray<string | WeightedTarget>): void {
    this.targets = weighted(targets)
    const current = new Map<string, number>()
    for (const t of this.targets) current.set(t.url, this.current.get(t.url) ?? 0)
    this.current = current
  }

  pick (_ctx: PickContext, available: Available): string | null {
    let best: string | null = null
    let bestWeight = -Infinity
    let total = 0
    for (const t of this.targets) {
      if (t.weight <= 0 || !available(t.url)) continue
      const w = this.current.get(t.url)! + t.weight
      this.current.set(t.url, w)
      total += t.weight
      if (w > bestWeight) {
        best = t.url
        bestWeight = w
      }
    }
    if (best !== null) this.current.set(best, bestWeight - total)
    return best
  }
}

/**
 * The available target with the least load per unit of weight (the pool counts open WebSockets
 * plus in-flight HTTP requests), as nginx's `least_conn`. The scan starts where the previous pick
 * left off, so equal ratios take turns instead of all going to the first target, which matters
 * when picks come faster than loads change.
 */
export class LeastConnectionsBalancer implements Balancer {
  private next = 0
  private targets: WeightedTarget[] = []

  constructor (targets: ReadonlyArray<string | WeightedTarget>, private readonly load: (target: string) => number) {
    this.update(targets)
  }

  update (targets: ReadonlyArray<string | WeightedTarget>): void {
    this.targets = weighted(targets)
    if (this.next >= this.targets.length) this.next = 0
  }

  pick (_ctx: PickContext, available: Available): string | null {
    const n = this.targets.length
    let best = -1
    let bestLoad = 0
    let bestWeight = 1
    for (let k = 0; k < n; k++) {
      const i = (this.next + k) % n
      const t = this.targets[i]
      if (t.weight <= 0 || !available(t.url)) continue
      const load = this.load(t.url)
      // load / weight < bestLoad / bestWeight, without dividing.
      if (best === -1 || load * bestWeight < bestLoad * t.weight) {
        best = i
        bestLoad = load
        bestWeight = t.weight
      }
    }
    if (best === -1) return null
    this.next = (best + 1) % n
    return this.targets[best].url
  }
}

/**
 * Sticky choice by a key taken from the request, on a consistent-hash ring. Targets of weight 0
 * are left off the ring; the others share a fixed budget of virtual nodes, DEFAULT_VIRTUAL_NODES
 * per target on average, in proportion to their weight (at least one each): equal weights give
 * DEFAULT_VIRTUAL_NODES each, and a rebuild costs the same whatever the weights (coprime weights
 * such as 1000 and 999 would otherwise ask for hundreds of thousands of nodes).
 */
export class HashBalancer implements Balancer {
  private ring: HashRing
  private key = ''

  constructor (targets: ReadonlyArray<string | WeightedTarget>, private readonly keyOf: (ctx: PickContext) => string, private readonly virtualNodes = DEFAULT_VIRTUAL_NODES) {
    this.ring = new HashRing([])
    this.update(targets)
  }

  update (targets: ReadonlyArray<string | WeightedTarget>): void {
    const live = weighted(targets).filter((t) => t.weight > 0)
    const key = JSON.stringify(live)
    // Rebuilding sorts every virtual node: only when the set or a weight changed.
    if (key === this.key) return
    this.key = key
    const nodes = virtualNodeCounts(live, this.virtualNodes)
    this.ring = new HashRing(live.map((t) => t.url), (t) => nodes.get(t)!)
  }

  pick (ctx: PickContext, available: Available): string | null {
    return this.ring.lookup(this.keyOf(ctx), available)
  }
}

/**
 * Virtual nodes per target (each weight > 0): `perTarget * targets` in all, shared by weight and
 * rounded, at least 1 each. Equal weights give `perTarget` each.
 */
export function virtualNodeCounts (targets: readonly WeightedTarget[], perTarget: number): Map<string, number> {
  const total = targets.reduce((n, t) => n + t.weight, 0)
  const budget = perTarget * targets.length
  return new Map(targets.map((t) => [t.url, Math.max(1, Math.round(budget * t.weight / total))]))
}

/**
 * The function that takes the hash key out of a request for `hashOn`: `ip`, `user` (the user id,
 * else the ip), `header:<name>` or `cookie:<name>` (each falling back to the ip when missing or
 * empty, so that anonymous clients still spread out and stay sticky per address).
 * @throws TypeError for any other `hashOn` (the config schema refuses those before this).
 */
export function hashKeyFn (hashOn: string): (ctx: PickContext) => string {
  if (hashOn === 'ip') return (ctx) => ctx.ip
  if (hashOn === 'user') return (ctx) => ctx.userId === undefined || ctx.userId === null || ctx.userId === '' ? ctx.ip : ctx.userId
  const colon = hashOn.indexOf(':')
  const kind = colon === -1 ? hashOn : hashOn.slice(0, colon)
  const name = colon === -1 ? '' : hashOn.slice(colon + 1).trim()
  if (kind === 'header' && name !== '') {
    const header = name.toLowerCase()
    return (ctx) => {
      const v = ctx.headers[header]
      const value = Array.isArray(v) ? v.join(', ') : v
      return value === undefined || value === '' ? ctx.ip : value
    }
  }
  if (kind === 'cookie' && name !== '') {
    return (ctx) => {
      const v = ctx.headers.cookie
      const value = cookieValue(Array.isArray(v) ? v.join('; ') : v, name)
      return value === null || value === '' ? ctx.ip : value
    }
  }
  throw new TypeError(`unknown hashOn "${hashOn}" (ip, user, header:<name> or cookie:<name>)`)
}

export { cookieValue }

/** The balancer for an upstream's `balance` mode (`ip-hash` is `hash` on the ip). */
export function createBalancer (balance: BalanceMode, targets: ReadonlyArray<string | WeightedTarget>, opts: { hashOn?: string, load: (target: string) => number }): Balancer {
  switch (balance) {
    case 'round-robin': return new RoundRobinBalancer(targets)
    case 'least-connections': return new LeastConnectionsBalancer(targets, opts.load)
    case 'ip-hash': return new HashBalancer(targets, hashKeyFn('ip'))
    case 'hash': return new HashBalancer(targets, hashKeyFn(opts.hashOn ?? 'ip'))
    default: throw new TypeError(`unknown balance "${String(balance)}"`)
  }
}
