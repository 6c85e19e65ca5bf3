/**
 * The choice of one target among a fixed list, for each balance mode of an upstream
 * (`upstreams.*.balance`). A balancer knows nothing of health: the pool passes a predicate that
 * says which targets may be chosen right now, and a balancer only skips the refused ones, so a
 * target that comes back is chosen again without rebuilding anything.
 */
import { cookieValue } from '../http/cookie.js'
import type { IncomingHttpHeaders } from 'node:http'
import type { BalanceMode } from '../config/types.js'
import { HashRing } from './hash-ring.js'

/** What a request or handshake offers to choose a target by. */
export interface PickContext {
  /** The client's address (after trustProxy). */
  ip: string
  /** The authenticated user (the token's subject), if any. */
  userId?: string | null
  headers: IncomingHttpHeaders
}

export type Available = (target: string) => boolean

export interface Balancer {
  /** A target that passes `available`, or null when none does. */
  pick (ctx: PickContext, available: Available): string | null
}

/** Exact rotation over the targets, skipping unavailable ones without losing the turn order. */
export class RoundRobinBalancer implements Balancer {
  private next = 0

  constructor (private readonly targets: readonly string[]) {}

  pick (_ctx: PickContext, available: Available): string | null {
    const n = this.targets.length
    for (let k = 0; k < n; k++) {
      const i = (this.next + k) % n
      if (available(this.targets[i])) {
        this.next = (i + 1) % n
        return this.targets[i]
      }
    }
    return null
  }
}

/**
 * The available target with the least load (the pool counts open WebSockets plus in-flight HTTP
 * requests). The scan starts where the previous pick left off, so equal loads take turns instead
 * of all going to the first target, which matters when picks come faster than loads change.
 */
export class LeastConnectionsBalancer implements Balancer {
  private next = 0

  constructor (private readonly targets: readonly string[], private readonly load: (target: string) => number) {}

  pick (_ctx: PickContext, available: Available): string | null {
    const n = this.targets.length
    let best = -1
    let bestLoad = Infinity
    for (let k = 0; k < n; k++) {
      const i = (this.next + k) % n
      const target = this.targets[i]
      if (!available(target)) continue
      const load = this.load(target)
      if (load < bestLoad) {
        best = i
        bestLoad = load
      }
    }
    if (best === -1) return null
    this.next = (best + 1) % n
    return this.targets[best]
  }
}

/** Sticky choice by a key taken from the request, on a consistent-hash ring. */
export class HashBalancer implements Balancer {
  private readonly ring: HashRing

  constructor (targets: readonly string[], private readonly keyOf: (ctx: PickContext) => string, virtualNodes?: number) {
    this.ring = new HashRing(targets, virtualNodes)
  }

  pick (ctx: PickContext, available: Available): string | null {
    return this.ring.lookup(this.keyOf(ctx), available)
  }
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
export function createBalancer (balance: BalanceMode, targets: readonly string[], opts: { hashOn?: string, load: (target: string) => number }): Balancer {
  switch (balance) {
    case 'round-robin': return new RoundRobinBalancer(targets)
    case 'least-connections': return new LeastConnectionsBalancer(targets, opts.load)
    case 'ip-hash': return new HashBalancer(targets, hashKeyFn('ip'))
    case 'hash': return new HashBalancer(targets, hashKeyFn(opts.hashOn ?? 'ip'))
    default: throw new TypeError(`unknown balance "${String(balance)}"`)
  }
}
