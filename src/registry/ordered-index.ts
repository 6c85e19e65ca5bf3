/**
 * An insertion-ordered set with access by rank: `page(offset, limit)` costs O(log n + limit)
 * whatever the offset, so that a listing page of one instance never walks the connections before
 * it. Items sit in an array in the order they were added (a removed one leaves a hole) and a
 * Fenwick tree counts the live items, so the k-th live item is found by descending the tree. When
 * holes outnumber live items (and there are more than COMPACT_MIN of them) the array is rebuilt:
 * O(n) once per n/2 removals, so removal stays O(log n) amortised.
 */
const COMPACT_MIN = 1024

export class OrderedIndex<T> {
  private items: Array<T | undefined> = []
  /** Fenwick tree over `items` (1-based): tree[i] counts the live items of (i - lowbit(i), i]. */
  private tree: number[] = [0]
  private readonly slot = new Map<T, number>()
  private holes = 0

  get size (): number { return this.slot.size }

  has (item: T): boolean { return this.slot.has(item) }

  add (item: T): void {
    if (this.slot.has(item)) return
    const i = this.items.length
    this.items.push(item)
    this.slot.set(item, i)
    // The new node covers (j - lowbit(j), j]: the live items before it in that range, plus itself.
    const j = i + 1
    this.tree.push(1 + this.prefix(j - 1) - this.prefix(j - (j & -j)))
  }

  delete (item: T): boolean {
    const i = this.slot.get(item)
    if (i === undefined) return false
    this.slot.delete(item)
    this.items[i] = undefined
    for (let j = i + 1; j < this.tree.length; j += j & -j) this.tree[j]--
    this.holes++
    if (this.holes > COMPACT_MIN && this.holes > this.slot.size) this.compact()
    return true
  }

  /** Up to `limit` live items from rank `offset` on, in insertion order. */
  page (offset: number, limit: number): T[] {
    const out: T[] = []
    if (offset >= this.slot.size || limit <= 0) return out
    for (let i = this.find(offset); i < this.items.length && out.length < limit; i++) {
      const v = this.items[i]
      if (v !== undefined) out.push(v)
    }
    return out
  }

  * values (): IterableIterator<T> {
    for (const v of this.items) if (v !== undefined) yield v
  }

  /** The number of live items in items[0 .. n-1]. */
  private prefix (n: number): number {
    let s = 0
    for (let j = n; j > 0; j -= j & -j) s += this.tree[j]
    return s
  }

  /** The array index of the live item of rank `k` (0-based; k < size). */
  private find (k: number): number {
    let pos = 0
    let rest = k + 1
    let step = 1
    while (step * 2 < this.tree.length) step *= 2
    for (; step > 0; step >>= 1) {
      const next = pos + step
      if (next < this.tree.length && this.tree[next] < rest) {
        pos = next
        rest -= this.tree[next]
      }
    }
    return pos
  }

  private compact (): void {
    const live: T[] = []
    for (const v of this.items) if (v !== undefined) live.push(v)
    this.items = live
    this.holes = 0
    this.slot.clear()
    // Every node starts at 1 (its own item) and hands its sum to its parent: O(n).
    const n = live.length
    this.tree = new Array<number>(n + 1).fill(1)
    this.tree[0] = 0
    for (let i = 1; i <= n; i++) {
      this.slot.set(live[i - 1], i - 1)
      const parent = i + (i & -i)
      if (parent <= n) this.tree[parent] += this.tree[i]
    }
  }
}
