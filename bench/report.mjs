// Turns the raw records of bench/run.mjs into medians, the printed table and the JSON summary.

/**
 * The paths, in table order. `direct` has no proxy: its CPU and RSS figures are the upstream's.
 * `baseline` (--baseline DIR: another checkout's gateway) sits next to `gateway`, to be read
 * against it; its cells get the same ratios as the gateway's.
 */
export const COLUMNS = [
  { key: 'direct', title: 'direct' },
  { key: 'gateway', title: 'gateway' },
  { key: 'baseline', title: 'baseline' },
  { key: 'floor', title: 'node floor' },
  { key: 'nginx', title: 'nginx' },
  { key: 'fastify', title: '@fastify/http-proxy' }
]

const util = ['util', 'core use % proxy/load', 'util']
// The kernel's part of the CPU row: what the proxy's system calls cost (no ratio).
const sys = ['cpuSys', '  of which sys', 'count']

/**
 * Scenarios and their figures: [record field, label, kind]. Kinds: `rate` (ratio to direct and
 * to nginx), `lat`/`cpu`/`mem` (ratio to nginx), `count`/`util` (no ratio). `ratiosOf`: the
 * scenario whose direct/nginx cells the ratios use (for rows measured on some paths only).
 */
export const SCENARIOS = [
  {
    key: 'rtt50',
    title: 'round trips, 50 conns, 64 B',
    figures: [['rate', 'msg/s', 'rate'], ['p50', 'p50 ms', 'lat'], ['p99', 'p99 ms', 'lat'], ['p999', 'p99.9 ms', 'lat'], ['cpu', 'CPU µs/msg', 'cpu'], sys, util]
  },
  {
    key: 'rtt500',
    title: 'round trips, 500 conns, 64 B',
    figures: [['rate', 'msg/s', 'rate'], ['p50', 'p50 ms', 'lat'], ['p99', 'p99 ms', 'lat'], ['p999', 'p99.9 ms', 'lat'], ['cpu', 'CPU µs/msg', 'cpu'], sys, util]
  },
  {
    key: 'stream',
    title: 'streaming 64 KiB binary',
    figures: [['rate', 'MB/s echoed', 'rate'], ['cpu', 'CPU µs/64 KiB', 'cpu'], sys, util]
  },
  {
    key: 'handshake',
    title: 'handshakes (open + close)',
    figures: [['rate', 'handshakes/s', 'rate'], ['p99', 'p99 open ms', 'lat'], ['cpu', 'CPU µs/handshake', 'cpu'], sys, ['leftover', 'upstream sockets left', 'count'], util]
  },
  {
    key: 'handshakeJwt',
    title: 'handshakes with a JWT (auth: required)',
    ratiosOf: 'handshake',
    figures: [['rate', 'handshakes/s', 'rate'], ['p99', 'p99 open ms', 'lat'], ['cpu', 'CPU µs/handshake', 'cpu'], sys, ['leftover', 'upstream sockets left', 'count'], util]
  },
  {
    key: 'idle',
    title: 'idle connections',
    figures: [['rssPerConn', 'RSS KiB/conn', 'mem'], ['held', 'conns held', 'count']]
  },
  {
    key: 'http',
    title: 'HTTP GET, 50 conns (nginx: upstream keepalive)',
    figures: [['rate', 'requests/s', 'rate'], ['p99', 'p99 ms', 'lat'], ['cpu', 'CPU µs/request', 'cpu'], sys, util]
  },
  {
    key: 'httpClassic',
    title: 'HTTP GET, 50 conns, nginx classic (no upstream keepalive)',
    ratiosOf: 'http',
    figures: [['rate', 'requests/s', 'rate'], ['p99', 'p99 ms', 'lat'], ['cpu', 'CPU µs/request', 'cpu'], sys, util]
  }
]

export function median (values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return null
  const m = v.length >> 1
  return v.length % 2 === 1 ? v[m] : (v[m - 1] + v[m]) / 2
}

/**
 * Medians per scenario and path: { [scenario]: { [path]: { runs, <field>: median, errors } } }.
 * `records` is { [scenario]: { [path]: record[] } }.
 */
export function summarize (records) {
  const out = {}
  for (const s of SCENARIOS) {
    const byPath = records[s.key]
    if (byPath === undefined) continue
    out[s.key] = {}
    for (const [path, list] of Object.entries(byPath)) {
      const fields = new Set(list.flatMap((r) => Object.keys(r)))
      const m = { runs: list.length }
      for (const f of fields) {
        if (typeof list.find((r) => r[f] !== undefined && r[f] !== null)?.[f] === 'number') m[f] = median(list.map((r) => r[f]))
      }
      m.errorCount = list.reduce((n, r) => n + (r.errorCount ?? 0), 0)
      m.failed = list.filter((r) => r.failed).map((r) => r.failed)
      out[s.key][path] = m
    }
  }
  return out
}

/** 3 significant digits, k/M suffixes for large numbers. */
export function fmt (x) {
  if (x === null || x === undefined || !Number.isFinite(x)) return '-'
  const a = Math.abs(x)
  if (a >= 1e6) return (x / 1e6).toPrecision(3) + 'M'
  if (a >= 1e4) return (x / 1e3).toPrecision(3) + 'k'
  if (a >= 1000) return Math.round(x).toString()
  if (a === 0) return '0'
  if (Number.isInteger(x) && a < 1000) return String(x)
  return x.toPrecision(3)
}

function ratio (x, base) {
  if (x === null || x === undefined || base === null || base === undefined || base === 0) return null
  return x / base
}

function fmtRatio (r, suffix) {
  if (r === null) return ''
  return (r >= 10 ? r.toFixed(0) : r >= 1 ? r.toFixed(1) : r.toFixed(2)) + suffix
}

/** Table rows: { scenario, label, cells: { [path]: { value, text, vsDirect, vsNginx } } }. */
export function tableRows (summary) {
  const rows = []
  for (const s of SCENARIOS) {
    const sm = summary[s.key]
    if (sm === undefined) continue
    const base = summary[s.ratiosOf ?? s.key] ?? {}
    rows.push({ scenario: s.key, heading: s.title })
    for (const [field, label, kind] of s.figures) {
      const cells = {}
      for (const c of COLUMNS) {
        const m = sm[c.key]
        if (m === undefined) continue
        if (kind === 'util') {
          const p = m.proxyUtil
          const l = m.loadUtil
          cells[c.key] = { value: null, text: p === null || p === undefined ? '-' : `${Math.round(p * 100)}/${Math.round((l ?? 0) * 100)}` }
          continue
        }
        const value = m[field] ?? null
        const vsDirect = kind === 'rate' && c.key !== 'direct' ? ratio(value, base.direct?.[field]) : null
        const vsNginx = ['rate', 'lat', 'cpu', 'mem'].includes(kind) && c.key !== 'nginx' && c.key !== 'direct' ? ratio(value, base.nginx?.[field]) : null
        const tags = [fmtRatio(vsDirect, 'd'), fmtRatio(vsNginx, 'n')].filter((t) => t !== '').join(' ')
        cells[c.key] = { value, vsDirect, vsNginx, text: value === null ? (m.failed?.length ? 'failed' : '-') : fmt(value) + (tags ? ` (${tags})` : '') }
      }
      rows.push({ scenario: s.key, field, label, kind, cells })
    }
  }
  return rows
}

/** The printed table. */
export function renderTable (rows, columns) {
  const labelW = 26
  const colW = columns.map((c) => Math.max(c.title.length, ...rows.filter((r) => r.cells).map((r) => (r.cells[c.key]?.text ?? '').length)) + 2)
  const lines = []
  const head = ''.padEnd(labelW) + columns.map((c, i) => c.title.padStart(colW[i])).join('')
  lines.push(head)
  lines.push('-'.repeat(head.length))
  for (const r of rows) {
    if (r.heading !== undefined) { lines.push(r.heading); continue }
    lines.push(('  ' + r.label).padEnd(labelW) + columns.map((c, i) => (r.cells[c.key]?.text ?? '').padStart(colW[i])).join(''))
  }
  return lines.join('\n')
}
