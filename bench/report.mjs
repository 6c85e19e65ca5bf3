// Turns the raw records of bench/run.mjs into medians, the printed table and the JSON summary.

/**
 * The paths, in table order. `direct` has no proxy: its CPU and RSS figures are the upstream's.
 * `baseline` (--baseline DIR: another checkout's gateway) sits next to `gateway`, to be read
 * against it; its cells get the same ratios as the gateway's. `group`: the printed table is one
 * block of columns per group, one under the other (the gateway and its Node floor; the proxies
 * written in C and Go; the Node proxies), each split again if it would be wider than
 * TABLE_WIDTH.
 */
export const COLUMNS = [
  { key: 'direct', title: 'direct', group: 1 },
  { key: 'gateway', title: 'gateway', group: 1 },
  { key: 'baseline', title: 'baseline', group: 1 },
  { key: 'floor', title: 'node floor', group: 1 },
  { key: 'nginx', title: 'nginx', group: 2 },
  { key: 'haproxy', title: 'haproxy', group: 2 },
  { key: 'caddy', title: 'caddy', group: 2 },
  { key: 'fastify', title: '@fastify/http-proxy', group: 3 },
  { key: 'fast-gateway', title: 'fast-gateway', group: 3 },
  { key: 'http-proxy', title: 'http-proxy', group: 3 }
]

/** The columns whose cells also get the ratio to the node floor (`f`): the gateway's. */
const VS_FLOOR = new Set(['gateway', 'baseline'])

/** The peers the gateway's CPU is compared with, one by one (peerComparison). */
const PEERS = ['floor', 'nginx', 'haproxy', 'caddy', 'fastify', 'fast-gateway', 'http-proxy']

/** Width of the printed table (each block of columns fits in it). */
const TABLE_WIDTH = 120

const util = ['util', 'core use % proxy/load', 'util']
// The kernel's part of the CPU row: what the proxy's system calls cost (no ratio).
const sys = ['cpuSys', '  of which sys', 'count']

/**
 * Scenarios and their figures: [record field, label, kind]. Kinds: `rate` (ratio to direct and
 * to nginx), `lat`/`cpu`/`mem` (ratio to nginx), `count`/`util` (no ratio), `x` (a ratio
 * already, printed as `1.3x`). The gateway's and the baseline's cells also get the ratio to the
 * node floor on `rate`/`lat`/`cpu`/`mem` rows. `ratiosOf`: the scenario whose direct/nginx/floor
 * cells the ratios use (for rows measured on some paths only). `http`: measured with the HTTP
 * load tool (no WebSocket checks after the phase).
 */
const rttFigures = [['rate', 'msg/s', 'rate'], ['p50', 'p50 ms', 'lat'], ['p99', 'p99 ms', 'lat'], ['p999', 'p99.9 ms', 'lat'], ['cpu', 'CPU µs/msg', 'cpu'], sys, util]
const httpFigures = [['rate', 'requests/s', 'rate'], ['p99', 'p99 ms', 'lat'], ['cpu', 'CPU µs/request', 'cpu'], sys, util]
// Round trips beside other load: latency and rate only (the CPU is shared with that load).
const loadedRttFigures = (what) => [
  ['rate', 'msg/s', 'rate'], ['p50', 'p50 ms', 'lat'], ['p99', 'p99 ms', 'lat'], ['p999', 'p99.9 ms', 'lat'],
  ['p99VsRtt500', 'p99 / own rtt500 p99', 'x'], ['bgRate', what, 'rate'], util
]
export const SCENARIOS = [
  { key: 'rtt50', title: 'round trips, 50 conns, 64 B', figures: rttFigures },
  { key: 'rtt500', title: 'round trips, 500 conns, 64 B', figures: rttFigures },
  {
    key: 'rttStorm',
    title: 'round trips, 500 conns, during a handshake storm (16 loops) on other conns',
    figures: loadedRttFigures('storm handshakes/s')
  },
  {
    key: 'rttAdmin',
    title: 'round trips, 500 conns, during admin listings (GET /admin/connections?limit=100)',
    ratiosOf: 'rtt500',
    figures: loadedRttFigures('admin listings/s')
  },
  {
    key: 'stream',
    title: 'streaming 64 KiB binary',
    figures: [['rate', 'MB/s echoed', 'rate'], ['p99', 'p99 echo ms', 'lat'], ['cpu', 'CPU µs/64 KiB', 'cpu'], sys, util]
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
  { key: 'http', http: true, title: 'HTTP GET, 64 B answer, 50 conns (nginx: upstream keepalive)', figures: httpFigures },
  { key: 'httpPost', http: true, title: 'HTTP POST, 16 KiB body, 64 B answer, 50 conns', figures: httpFigures },
  { key: 'httpBig', http: true, title: 'HTTP GET, 64 KiB answer, 50 conns', figures: httpFigures },
  {
    key: 'httpClassic',
    http: true,
    title: 'HTTP GET, 50 conns, nginx classic (no upstream keepalive)',
    ratiosOf: 'http',
    figures: httpFigures
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

/** Table rows: { scenario, label, cells: { [path]: { value, text, vsDirect, vsFloor, vsNginx } } }. */
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
        if (kind === 'x') {
          cells[c.key] = { value, text: value === null ? (m.failed?.length ? 'failed' : '-') : fmtRatio(value, 'x') }
          continue
        }
        const ratioKind = ['rate', 'lat', 'cpu', 'mem'].includes(kind)
        const vsDirect = kind === 'rate' && c.key !== 'direct' ? ratio(value, base.direct?.[field]) : null
        const vsFloor = ratioKind && VS_FLOOR.has(c.key) ? ratio(value, base.floor?.[field]) : null
        const vsNginx = ratioKind && c.key !== 'nginx' && c.key !== 'direct' ? ratio(value, base.nginx?.[field]) : null
        const tags = [fmtRatio(vsDirect, 'd'), fmtRatio(vsFloor, 'f'), fmtRatio(vsNginx, 'n')].filter((t) => t !== '').join(' ')
        cells[c.key] = { value, vsDirect, vsFloor, vsNginx, text: value === null ? (m.failed?.length ? 'failed' : '-') : fmt(value) + (tags ? ` (${tags})` : '') }
      }
      rows.push({ scenario: s.key, field, label, kind, cells })
    }
  }
  return rows
}

/**
 * The gateway's (and the baseline's) CPU per unit of work divided by each peer's, row by row:
 * { [scenario]: { label, gateway: { [peer]: ratio }, baseline?: {...} } }. Below 1 the gateway
 * used less CPU than that peer for the same work. Rows measured on the gateway only (the JWT
 * handshake) are compared with the peers' rows of `ratiosOf`.
 */
export function peerComparison (summary) {
  const out = {}
  for (const s of SCENARIOS) {
    const sm = summary[s.key]
    const fig = s.figures.find((f) => f[2] === 'cpu')
    if (sm === undefined || fig === undefined) continue
    const base = summary[s.ratiosOf ?? s.key] ?? {}
    const entry = { label: fig[1] }
    for (const who of VS_FLOOR) {
      const own = sm[who]?.[fig[0]]
      if (own === undefined || own === null) continue
      const vs = {}
      for (const peer of PEERS) {
        const r = ratio(own, base[peer]?.[fig[0]])
        if (r !== null) vs[peer] = r
      }
      if (Object.keys(vs).length > 0) entry[who] = vs
    }
    if (Object.keys(entry).length > 1) out[s.key] = entry
  }
  return out
}

/** The peer comparison as printed: one line per CPU row (and one more under it for the baseline). */
export function renderPeerComparison (cmp) {
  const peers = COLUMNS.filter((c) => PEERS.includes(c.key) && Object.values(cmp).some((e) => e.gateway?.[c.key] !== undefined || e.baseline?.[c.key] !== undefined))
  if (peers.length === 0) return []
  const rows = []
  for (const [key, e] of Object.entries(cmp)) {
    for (const who of ['gateway', 'baseline']) {
      // The baseline's line goes under the gateway's, named only by itself.
      if (e[who] !== undefined) rows.push({ label: who === 'baseline' ? '    baseline' : `  ${key} ${e.label}`, vs: e[who] })
    }
  }
  const labelW = Math.max(...rows.map((r) => r.label.length)) + 1
  const colW = peers.map((c) => Math.max(c.title.length, 5) + 2)
  return [
    'gateway CPU / peer CPU, same row (below 1: the gateway used less CPU for the same work)',
    ''.padEnd(labelW) + peers.map((c, i) => c.title.padStart(colW[i])).join(''),
    ...rows.map((r) => r.label.padEnd(labelW) + peers.map((c, i) => fmtRatio(r.vs[c.key] ?? null, '').padStart(colW[i])).join(''))
  ]
}

/**
 * The printed table: the label column, then the columns in blocks (one per group, each split
 * again to fit TABLE_WIDTH), one block under the other.
 */
export function renderTable (rows, columns) {
  const labelW = 26
  const width = (c) => Math.max(c.title.length, ...rows.filter((r) => r.cells).map((r) => (r.cells[c.key]?.text ?? '').length)) + 2
  const blocks = []
  for (const c of columns) {
    const last = blocks.at(-1)
    const w = width(c)
    if (last !== undefined && last.group === c.group && last.width + w <= TABLE_WIDTH) {
      last.cols.push(c)
      last.widths.push(w)
      last.width += w
    } else {
      blocks.push({ group: c.group, cols: [c], widths: [w], width: labelW + w })
    }
  }
  const lines = []
  for (const b of blocks) {
    if (lines.length > 0) lines.push('')
    const head = ''.padEnd(labelW) + b.cols.map((c, i) => c.title.padStart(b.widths[i])).join('')
    lines.push(head)
    lines.push('-'.repeat(head.length))
    let heading = null
    for (const r of rows) {
      if (r.heading !== undefined) { heading = r.heading; continue }
      // A row no column of this block has (e.g. the JWT handshakes in the peers' block) is left
      // out, and so is a heading with no row left under it.
      if (!b.cols.some((c) => r.cells[c.key] !== undefined)) continue
      if (heading !== null) { lines.push(heading); heading = null }
      lines.push(('  ' + r.label).padEnd(labelW) + b.cols.map((c, i) => (r.cells[c.key]?.text ?? '').padStart(b.widths[i])).join(''))
    }
  }
  return lines.join('\n')
}
