/**
 * ui/metrics.js, the dashboard's Prometheus text parser and what it computes from a scrape: a pure
 * browser module, imported here as it is served (its types are ui/metrics.d.ts).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { counterRate, dashboardMetrics, samples, unescapeLabel } from '../../../ui/metrics.js'

// As prom-client writes it: HELP and TYPE comments, labels, escapes in label values (\" \\ \n),
// NaN and infinities, a histogram, a sample with a timestamp.
const TEXT = String.raw`# HELP tollgate_websocket_messages_total WebSocket messages relayed, by route and direction
# TYPE tollgate_websocket_messages_total counter
tollgate_websocket_messages_total{route="/chat",direction="client_to_upstream"} 12
tollgate_websocket_messages_total{route="/chat",direction="upstream_to_client"} 30
tollgate_websocket_messages_total{route="/a \"b\" c\\d\ne",direction="client_to_upstream"} 3.5e1
# HELP tollgate_websocket_connections_active Open bridged WebSocket connections
# TYPE tollgate_websocket_connections_active gauge
tollgate_websocket_connections_active{route="/chat"} 2
tollgate_websocket_connections_active{route="/news"} 0
tollgate_websocket_connections_active{route="/{id},x=\"1\""} 1
# TYPE tollgate_websocket_handshakes_total counter
tollgate_websocket_handshakes_total{route="/news",result="ok"} 4
tollgate_websocket_handshakes_total{route="/chat",result="401"} 1
tollgate_websocket_handshakes_total{result="ok"} 9
# TYPE tollgate_odd gauge
tollgate_odd NaN
tollgate_odd{kind="inf"} +Inf
tollgate_odd{kind="minus-inf"} -Inf
tollgate_odd{kind="finite"} -0.5
# TYPE tollgate_handshake_seconds histogram
tollgate_handshake_seconds_bucket{le="0.005",route="/chat"} 1
tollgate_handshake_seconds_bucket{le="0.1",route="/chat"} 2
tollgate_handshake_seconds_bucket{le="+Inf",route="/chat"} 3
tollgate_handshake_seconds_sum{route="/chat"} 0.25
tollgate_handshake_seconds_count{route="/chat"} 3
tollgate_up 1 1700000000000
`

test('samples: labels, escaped label values, values in any notation; comments skipped', () => {
  assert.deepEqual(samples(TEXT, 'tollgate_websocket_messages_total'), [
    { labels: { route: '/chat', direction: 'client_to_upstream' }, value: 12 },
    { labels: { route: '/chat', direction: 'upstream_to_client' }, value: 30 },
    { labels: { route: '/a "b" c\\d\ne', direction: 'client_to_upstream' }, value: 35 }
  ])
  // A '}' or '=' inside a quoted value is part of the value.
  assert.deepEqual(samples(TEXT, 'tollgate_websocket_connections_active').map((s) => s.labels.route), ['/chat', '/news', '/{id},x="1"'])
  assert.deepEqual(samples(TEXT, 'tollgate_websocket_handshakes_total')[2], { labels: { result: 'ok' }, value: 9 })
})

test('samples: NaN and infinities are left out', () => {
  assert.deepEqual(samples(TEXT, 'tollgate_odd'), [{ labels: { kind: 'finite' }, value: -0.5 }])
})

test('samples: a histogram is read by its series names; the family name alone matches none', () => {
  assert.deepEqual(samples(TEXT, 'tollgate_handshake_seconds'), [])
  assert.deepEqual(samples(TEXT, 'tollgate_handshake_seconds_bucket'), [
    { labels: { le: '0.005', route: '/chat' }, value: 1 },
    { labels: { le: '0.1', route: '/chat' }, value: 2 },
    { labels: { le: '+Inf', route: '/chat' }, value: 3 }
  ])
  assert.deepEqual(samples(TEXT, 'tollgate_handshake_seconds_sum'), [{ labels: { route: '/chat' }, value: 0.25 }])
  assert.deepEqual(samples(TEXT, 'tollgate_handshake_seconds_count'), [{ labels: { route: '/chat' }, value: 3 }])
})

test('samples: without labels; a timestamp after the value is ignored; an unknown name gives nothing', () => {
  assert.deepEqual(samples(TEXT, 'tollgate_up'), [{ labels: {}, value: 1 }])
  assert.deepEqual(samples(TEXT, 'tollgate_nope'), [])
  assert.deepEqual(samples('', 'tollgate_up'), [])
})

test('unescapeLabel: \\" \\\\ and \\n, read left to right', () => {
  assert.equal(unescapeLabel(String.raw`a\"b\\c\nd`), 'a"b\\c\nd')
  // An escaped backslash followed by n is a backslash and an n, not a newline.
  assert.equal(unescapeLabel(String.raw`x\\ny`), 'x\\ny')
  assert.equal(unescapeLabel('plain'), 'plain')
})

test('dashboardMetrics: messages summed over routes and directions, open connections by route, route names', () => {
  const m = dashboardMetrics(TEXT)
  assert.equal(m.messages, 77)
  assert.deepEqual(m.byRoute, new Map([['/chat', 2], ['/{id},x="1"', 1]]))
  assert.deepEqual(m.routeNames, new Set(['/chat', '/{id},x="1"', '/news']))
  assert.deepEqual(dashboardMetrics('# nothing yet\n'), { messages: 0, byRoute: new Map(), routeNames: new Set() })
})

test('counterRate: per second between two readings; none without a previous one, or after a reset', () => {
  assert.equal(counterRate(null, 10, 1000), null)
  assert.equal(counterRate({ value: 10, at: 1000 }, 30, 3000), 10)
  assert.equal(counterRate({ value: 10, at: 1000 }, 10, 1500), 0)
  // The counter went down: the gateway restarted.
  assert.equal(counterRate({ value: 10, at: 1000 }, 4, 3000), null)
  assert.equal(counterRate({ value: 10, at: 1000 }, 20, 1000), null)
})
