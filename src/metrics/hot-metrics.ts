/**
 * Metrics counted on the hot path (every HTTP request, every handshake) in plain numbers, handed
 * to prom-client only when /metrics is scraped. A prom-client counter or histogram validates and
 * hashes its labels and allocates on every call (about 1 µs for an HTTP request's counter and
 * histogram, a few % of what the gateway spends on it); here a call is a Map lookup per label
 * value and an add.
 * The exposition is prom-client's own: the same text, types and aggregation across workers.
 */
import { Counter, type Registry } from 'prom-client'

/** One series: its label values (labelNames' order) and its count. */
interface Cell { values: string[], n: number }
/** Label value -> the next label's level, or at the last label the series. */
type Level = Map<string, Level | Cell>

/** A counter whose increments are summed per series and set into a prom-client Counter at scrape. */
export class HotCounter<L extends string> {
  /**
   * Found by one Map lookup per label value: no key string is built (and hashed) per call.
   * `cells` keeps the series in the order they were first counted, as prom-client lists them.
   */
  private readonly root: Level = new Map()
  private readonly cells: Cell[] = []
  private readonly depth: number

  constructor (opts: { name: string, help: string, labelNames: readonly L[], registers: Registry[] }) {
    const cells = this.cells
    const names = opts.labelNames
    this.depth = names.length
    new Counter<L>({
      name: opts.name,
      help: opts.help,
      labelNames: names,
      registers: opts.registers,
      collect () {
        this.reset()
        for (const cell of cells) {
          const labels: Partial<Record<L, string>> = {}
          for (let i = 0; i < names.length; i++) labels[names[i]] = cell.values[i]
          this.inc(labels, cell.n)
        }
      }
    })
  }

  /** Adds 1 for these label values, one per label, in labelNames' order. */
  inc (...values: string[]): void {
    if (values.length !== this.depth) throw new TypeError(`expected ${this.depth} label values, got ${values.length}`)
    let level = this.root
    const last = values.length - 1
    for (let i = 0; i < last; i++) {
      let next = level.get(values[i]) as Level | undefined
      if (next === undefined) {
        next = new Map()
        level.set(values[i], next)
      }
      level = next
    }
    const cell = level.get(values[last]) as Cell | undefined
    if (cell !== undefined) {
      cell.n++
      return
    }
    const created = { values, n: 1 }
    level.set(values[last], created)
    this.cells.push(created)
  }
}

interface Series { buckets: Float64Array, sum: number, count: number }
interface Value { labels: Record<string, string | number>, value: number, metricName: string, exemplar?: null }

/**
 * A histogram with one label, in prom-client's format (cumulative `_bucket` series with `le`,
 * then `_sum` and `_count`), registered as a custom metric: prom-client calls its get() at scrape.
 */
export class HotHistogram {
  readonly name: string
  readonly help: string
  readonly aggregator = 'sum' as const
  private readonly labelName: string
  private readonly bounds: number[]
  private readonly series = new Map<string, Series>()

  constructor (opts: { name: string, help: string, labelName: string, buckets: readonly number[], registers: Registry[] }) {
    this.name = opts.name
    this.help = opts.help
    this.labelName = opts.labelName
    this.bounds = [...opts.buckets].sort((a, b) => a - b)
    for (const r of opts.registers) r.registerMetric(this as never)
  }

  observe (label: string, value: number): void {
    if (!Number.isFinite(value)) return
    let s = this.series.get(label)
    if (s === undefined) {
      s = { buckets: new Float64Array(this.bounds.length), sum: 0, count: 0 }
      this.series.set(label, s)
    }
    const b = this.bounds
    for (let i = 0; i < b.length; i++) {
      if (value <= b[i]) { s.buckets[i]++; break }
    }
    s.sum += value
    s.count++
  }

  /** What prom-client's Histogram.get() returns for the same observations. */
  get (): { name: string, help: string, type: 'histogram', values: Value[], aggregator: 'sum' } {
    const values: Value[] = []
    for (const [label, s] of this.series) {
      let acc = 0
      for (let i = 0; i < this.bounds.length; i++) {
        acc += s.buckets[i]
        values.push({ labels: { le: this.bounds[i], [this.labelName]: label }, value: acc, metricName: `${this.name}_bucket`, exemplar: null })
      }
      values.push({ labels: { le: '+Inf', [this.labelName]: label }, value: s.count, metricName: `${this.name}_bucket`, exemplar: null })
      values.push({ labels: { [this.labelName]: label }, value: s.sum, metricName: `${this.name}_sum` })
      values.push({ labels: { [this.labelName]: label }, value: s.count, metricName: `${this.name}_count` })
    }
    return { name: this.name, help: this.help, type: 'histogram', values, aggregator: this.aggregator }
  }

  reset (): void { this.series.clear() }
}
