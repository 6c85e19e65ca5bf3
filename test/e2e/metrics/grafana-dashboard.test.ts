/**
 * docs/grafana-dashboard.json queries only metrics the gateway exports: every `tollgate_*` name
 * in its PromQL is a metric of a running gateway's /metrics (a histogram's _bucket/_sum/_count
 * included), and it has a panel for each subject operators look at.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { gatewayFor } from '../../helpers/gateway.js'
import { upstreamFor } from '../../helpers/upstream.js'

const DASHBOARD = fileURLToPath(new URL('../../../docs/grafana-dashboard.json', import.meta.url))

interface Panel { id: number, title: string, targets: Array<{ expr: string, datasource: { uid: string } }> }

test('every metric the Grafana dashboard queries is one the gateway exports', async (t) => {
  const dash = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: Panel[], templating: { list: Array<{ query: unknown }> } }
  const up = await upstreamFor(t)
  const gw = await gatewayFor(t, { upstreams: { api: { targets: [up.url] } }, routes: [{ prefix: '/api', upstream: 'api' }] })
  const text = await (await fetch(`${gw.url}/metrics`)).text()
  const exported = new Set<string>()
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    exported.add(m[1])
    if (m[2] === 'histogram') for (const s of ['_bucket', '_sum', '_count']) exported.add(m[1] + s)
  }
  const queries = [
    ...dash.panels.flatMap((p) => p.targets.map((x) => x.expr)),
    ...dash.templating.list.map((v) => typeof v.query === 'string' ? v.query : '')
  ]
  const used = new Set(queries.flatMap((q) => [...q.matchAll(/\btollgate_[a-z0-9_]+/g)].map((m) => m[0])))
  assert.ok(used.size >= 10, `the dashboard queries ${used.size} metrics`)
  for (const name of used) assert.ok(exported.has(name), `${name} is queried by the dashboard but not exported`)
  // A panel for each subject.
  for (const name of ['tollgate_websocket_connections_active', 'tollgate_websocket_messages_total', 'tollgate_websocket_bytes_total',
    'tollgate_websocket_closes_total', 'tollgate_websocket_rtt_seconds_bucket', 'tollgate_websocket_handshakes_total',
    'tollgate_http_requests_total', 'tollgate_http_request_duration_seconds_bucket', 'tollgate_upstream_target_up']) {
    assert.ok(used.has(name), `a panel on ${name}`)
  }
  assert.equal(new Set(dash.panels.map((p) => p.id)).size, dash.panels.length, 'panel ids are unique')
  for (const p of dash.panels) for (const x of p.targets) assert.equal(x.datasource.uid, '${datasource}', `${p.title}: the datasource chosen at import`)
})

test('the new series: HTTP latency by route, and each upstream target up or down', async (t) => {
  const up = await upstreamFor(t)
  const gw = await gatewayFor(t, { upstreams: { api: { targets: [up.url, 'http://127.0.0.1:1'] } }, routes: [{ prefix: '/api', upstream: 'api' }] })
  // Round robin: one request lands on the dead target, which goes down (and the request is retried).
  for (let i = 0; i < 2; i++) assert.equal((await fetch(`${gw.url}/api/x`)).status, 200)
  const text = await (await fetch(`${gw.url}/metrics`)).text()
  assert.match(text, /^tollgate_http_request_duration_seconds_count\{route="\/api"\} 2$/m)
  assert.match(text, new RegExp(`^tollgate_upstream_target_up\\{upstream="api",target="${up.url.replace(/[.:/]/g, '\\$&')}"\\} 1$`, 'm'))
  assert.match(text, /^tollgate_upstream_target_up\{upstream="api",target="http:\/\/127\.0\.0\.1:1"\} 0$/m)
})
