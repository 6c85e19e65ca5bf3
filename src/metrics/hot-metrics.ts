/**
 * Metrics counted on the hot path (every HTTP request, every handshake) in plain numbers, handed
 * to prom-client only when /metrics is scraped. A prom-client counter or histogram validates and
 * hashes its labels and allocates on every call (about 1 µs for an HTTP request's counter and
 * histogram, a few % of what the gateway spends on it); here a call is a Map lookup and an add.
 * The exposition is prom-client's own: the same text, types and aggregation across workers.
 */
import { Counter, type Registry } from 'prom-client'

/** Label values joined into one Map key (no label value holds a NUL). */
const SEP = '\u0000'

/** A counter whose increments are summed in a Map and set into a prom-client Counter at scrape. */
export class HotCounter<L extends string> {
  private readonly counts = new Map<string, number>()

  constructor (opts: { name: string, help: string, labelNames: readonly L[], registers: Registry[] }) {
    const counts = this.counts
    const names = opts.labelNames
    new Counter<L>({
      name: opts.name,
      help: opts.help,
      labelNames: names,
      registers: opts.registers,
      collect () {
        this.reset()
        for (const [key, n] of counts) {
          const values = key.split(SEP)
          const labels: Partial<Record<L, string>> = {}
          for (let i = 0; i < names.length; i++) labels[names[i]] = values[i]
          this.inc(labels, n)
        }
      }
    })
  }

  /** Adds 1 for these label values, in labelNames' order. */
  inc (...values: string[]): void {
    const key = values.length === 1 ? values[0] : values.join(SEP)
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1)
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
