/**
 * The targets of one upstream and the choice of a target per request or handshake.
 */
import type { UpstreamConfig } from '../config/types.js'

export class UpstreamPool {
  private next = 0

  constructor (readonly config: UpstreamConfig) {}

  get name (): string { return this.config.name }

  /** Round-robin over the targets. */
  pick (): string {
    const targets = this.config.targets
    const t = targets[this.next % targets.length]
    this.next = (this.next + 1) % targets.length
    return t
  }
}

/** One pool per upstream; a route whose upstream is a URL gets a pool of its own. */
export function buildPools (upstreams: Iterable<UpstreamConfig>): Map<UpstreamConfig, UpstreamPool> {
  const pools = new Map<UpstreamConfig, UpstreamPool>()
  for (const u of upstreams) if (!pools.has(u)) pools.set(u, new UpstreamPool(u))
  return pools
}
