/**
 * A consistent-hash ring with virtual nodes (ketama style), so that adding or removing one target
 * out of n moves only about 1/n of the keys instead of nearly all of them (as `hash % n` would).
 * Availability is checked during the lookup rather than by rebuilding the ring: a key whose target
 * is unavailable walks clockwise to the next available target, and returns to its own target as
 * soon as that target is available again.
 */

/** Points per target: ketama's 160 keeps each target's share within about ±20% of the mean. */
export const DEFAULT_VIRTUAL_NODES = 160

/** Room for the rank of a target in a ring's sort key (see the constructor). */
const RANK_SPAN = 2 ** 20

const FNV_OFFSET = 0x811c9dc5
const FNV_PRIME = 0x01000193

/**
 * A fast, stable 32-bit hash: FNV-1a over the string's UTF-16 code units, then murmur3's fmix32
 * finaliser. FNV-1a alone clusters strings that differ only in their last characters (such as
 * `target#1`, `target#2`), which would bunch a target's virtual nodes together; the finaliser
 * spreads them over the ring.
 */
export function hash32 (s: string): number {
  return fmix32(fnv(FNV_OFFSET, s))
}

/** FNV-1a from state `h` over `s` (incremental: fnv(fnv(h, a), b) is fnv(h, a + b)). */
function fnv (h: number, s: string): number {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    h = Math.imul(h ^ (c & 0xff), FNV_PRIME)
    if (c > 0xff) h = Math.imul(h ^ (c >>> 8), FNV_PRIME)
  }
  return h
}

function fmix32 (h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

export class HashRing {
  /** The distinct targets, in the order given. */
  readonly targets: readonly string[]
  /** Sorted positions of the virtual nodes on the ring. */
  private readonly points: Uint32Array
  /** owners[i] is the index in `targets` of the virtual node at points[i]. */
  private readonly owners: Uint16Array | Uint32Array

  /**
   * Builds the ring once for a fixed set of targets. A target's points depend only on its own
   * string, so the same target sits at the same places in every ring that contains it.
   * `virtualNodes`: points per target, or a function giving each target's count (weights).
   */
  constructor (targets: Iterable<string>, virtualNodes: number | ((target: string) => number) = DEFAULT_VIRTUAL_NODES) {
    const nodesOf = typeof virtualNodes === 'number' ? () => virtualNodes : virtualNodes
    this.targets = [...new Set(targets)]
    const counts = this.targets.map((target) => {
      const count = nodesOf(target)
      if (!Number.isInteger(count) || count < 1) throw new RangeError(`virtualNodes must be a positive integer, got ${count}`)
      return count
    })
    // Ties (two targets on the same point) are broken by the target string, not by the order of
    // the configuration, so every ring with these targets agrees: each node is one number,
    // point * 2^20 + the target's rank among the sorted strings (exact below 2^53), and a typed
    // array sorts those numerically, without a comparator.
    const byString = this.targets.map((_t, i) => i).sort((a, b) => this.targets[a] < this.targets[b] ? -1 : 1)
    const rank = new Uint32Array(this.targets.length)
    byString.forEach((owner, r) => { rank[owner] = r })
    if (this.targets.length > RANK_SPAN) throw new RangeError(`a ring holds at most ${RANK_SPAN} targets`)
    const keys = new Float64Array(counts.reduce((n, c) => n + c, 0))
    let k = 0
    this.targets.forEach((target, owner) => {
      // Node i of a target is at the same place whatever its count: a heavier weight adds points.
      // Its point is hash32(`${target}#${i}`), the common prefix hashed once.
      const prefix = fnv(FNV_OFFSET, `${target}#`)
      for (let i = 0; i < counts[owner]; i++) keys[k++] = fmix32(fnv(prefix, String(i))) * RANK_SPAN + rank[owner]
    })
    keys.sort()
    this.points = new Uint32Array(keys.length)
    this.owners = this.targets.length <= 0xffff ? new Uint16Array(keys.length) : new Uint32Array(keys.length)
    for (let i = 0; i < keys.length; i++) {
      const r = keys[i] % RANK_SPAN
      this.points[i] = (keys[i] - r) / RANK_SPAN
      this.owners[i] = byString[r]
    }
  }

  /**
   * The target owning `key`: the first virtual node clockwise from the key's hash whose target
   * passes `available` (every target when omitted). Null when no target is available.
   */
  lookup (key: string, available?: (target: string) => boolean): string | null {
    const n = this.points.length
    if (n === 0) return null
    let i = this.firstAtOrAfter(hash32(key))
    if (available === undefined) return this.targets[this.owners[i]]
    // Each target is tested once: after a refusal its other virtual nodes are skipped cheaply.
    const refused = new Uint8Array(this.targets.length)
    let left = this.targets.length
    for (let steps = 0; steps < n; steps++, i = i + 1 === n ? 0 : i + 1) {
      const owner = this.owners[i]
      if (refused[owner] === 1) continue
      const target = this.targets[owner]
      if (available(target)) return target
      refused[owner] = 1
      if (--left === 0) return null
    }
    return null
  }

  /** Index of the first point >= h, wrapping to 0 past the last point. */
  private firstAtOrAfter (h: number): number {
    const points = this.points
    let lo = 0
    let hi = points.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (points[mid] < h) lo = mid + 1
      else hi = mid
    }
    return lo === points.length ? 0 : lo
  }
}
