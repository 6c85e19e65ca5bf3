/**
 * src/metrics/hot-metrics.ts: the same exposition as prom-client's own Counter and Histogram fed
 * the same calls, in text and as JSON (which the --workers aggregation reads).
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { AggregatorRegistry, Counter, Histogram, Registry } from 'prom-client'
import { HotCounter, HotHistogram } from '../../../src/metrics/hot-metrics.js'

const BUCKETS = [0.001, 0.01, 0.1, 1]

/** JSON with every object's keys sorted. */
function sortedJson (value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => v !== null && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a < b ? -1 : 1)) : v)
}

function pair (): { hot: Registry, ref: Registry, counter: HotCounter<'route' | 'status'>, refCounter: Counter<'route' | 'status'>, histogram: HotHistogram, refHistogram: Histogram<'route'> } {
  const hot = new Registry()
  const ref = new Registry()
  const c = { name: 'x_requests_total', help: 'Requests', labelNames: ['route', 'status'] as const }
  const h = { name: 'x_seconds', help: 'Time' }
  return {
    hot,
    ref,
    counter: new HotCounter({ ...c, registers: [hot] }),
    refCounter: new Counter({ ...c, labelNames: [...c.labelNames], registers: [ref] }),
    histogram: new HotHistogram({ ...h, labelName: 'route', buckets: BUCKETS, registers: [hot] }),
    refHistogram: new Histogram({ ...h, labelNames: ['route'], buckets: BUCKETS, registers: [ref] })
  }
}

describe('hot metrics', () => {
  test('nothing counted yet: HELP and TYPE lines only, as prom-client', async () => {
    const p = pair()
    assert.equal(await p.hot.metrics(), await p.ref.metrics())
  })

  test('counts and observations come out as prom-client writes them', async () => {
    const p = pair()
    const calls: Array<[string, string, number]> = [['/a', '200', 0.0004], ['/a', '200', 0.02], ['/b', '502', 3], ['/a', '404', 0.001], ['/a "q"\\', '200', 0.5], ['/b', '502', 0.1]]
    for (const [route, status, s] of calls) {
      p.counter.inc(route, status)
      p.refCounter.inc({ route, status })
      p.histogram.observe(route, s)
      p.refHistogram.observe({ route }, s)
    }
    assert.equal(await p.hot.metrics(), await p.ref.metrics())
    // As JSON (what a worker sends the primary), whatever the key order.
    assert.equal(sortedJson(await p.hot.getMetricsAsJSON()), sortedJson(await p.ref.getMetricsAsJSON()))
    // Scraping twice changes nothing (the counter's collect starts from zero each time).
    assert.equal(await p.hot.metrics(), await p.ref.metrics())
  })

  test('three labels, series first seen in any order: listed as prom-client lists them; a call with the wrong number of values throws', async () => {
    const hot = new Registry()
    const ref = new Registry()
    const c = { name: 'x_closes_total', help: 'Closes', labelNames: ['route', 'side', 'code'] as const }
    const counter = new HotCounter({ ...c, registers: [hot] })
    const refCounter = new Counter({ ...c, labelNames: [...c.labelNames], registers: [ref] })
    const calls: Array<[string, string, string]> = [['/a', 'client', '1000'], ['/b', 'upstream', '1001'], ['/a', 'upstream', '1000'], ['/a', 'client', '1006'], ['/b', 'upstream', '1001'], ['/a', 'client', '1000']]
    for (const [route, side, code] of calls) {
      counter.inc(route, side, code)
      refCounter.inc({ route, side, code })
    }
    assert.equal(await hot.metrics(), await ref.metrics())
    assert.match(await hot.metrics(), /x_closes_total\{route="\/a",side="client",code="1000"\} 2\n/)
    assert.throws(() => { counter.inc('/a', 'client') }, TypeError)
    assert.equal(await hot.metrics(), await ref.metrics())
  })

  test('summed across workers as prom-client sums its own', async () => {
    const a = pair()
    const b = pair()
    for (const p of [a, b]) {
      p.counter.inc('/a', '200'); p.refCounter.inc({ route: '/a', status: '200' })
      p.histogram.observe('/a', 0.05); p.refHistogram.observe({ route: '/a' }, 0.05)
    }
    const hot = AggregatorRegistry.aggregate([await a.hot.getMetricsAsJSON(), await b.hot.getMetricsAsJSON()])
    const ref = AggregatorRegistry.aggregate([await a.ref.getMetricsAsJSON(), await b.ref.getMetricsAsJSON()])
    assert.equal(await hot.metrics(), await ref.metrics())
  })

  test('a value that is not a finite number is not observed (prom-client throws)', async () => {
    const p = pair()
    p.histogram.observe('/a', Number.NaN)
    p.histogram.observe('/a', Number.POSITIVE_INFINITY)
    assert.equal(await p.hot.metrics(), await p.ref.metrics())
  })
})
