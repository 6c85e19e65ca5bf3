import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startUpstream } from '../../helpers/upstream.js'
import { startGateway } from '../../helpers/gateway.js'
import { connect, closed, collect, type HandshakeError } from '../../helpers/ws.js'
import { freePort } from '../../helpers/resources.js'

/** The value of one sample line, e.g. metric('x_total{route="/a"}'). */
function sample (text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue
    const m = /^([a-z_:]+)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (m === null || m[1] !== name) continue
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]))
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3])
  }
  return undefined
}

test('metrics after a known scenario: handshakes, messages, bytes, closes, HTTP, upstream errors', async (t) => {
  const up = await startUpstream()
  t.after(() => up.close())
  const dead = await freePort()
  const gw = await startGateway({
    routes: [{ prefix: '/chat', upstream: up.url }, { prefix: '/down', upstream: `http://127.0.0.1:${dead}` }],
    websocket: { pingInterval: 100, pongTimeout: 1000 }
  })
  t.after(() => gw.close())

  const ws = await connect(`${gw.wsUrl}/chat`)
  ws.send('abc')                  // 3 bytes each way
  ws.send(Buffer.alloc(7))        // 7 bytes each way
  await collect(ws, 2)
  // Wait for one heartbeat round trip so the RTT histogram has a sample.
  const bridge = [...gw.app.connections.values()][0]
  while (bridge.rttMs === null) await new Promise((resolve) => ws.once('ping', () => setImmediate(resolve)))

  let text = await (await fetch(`${gw.url}/metrics`)).text()
  assert.equal(sample(text, 'tollgate_websocket_connections_active', { route: '/chat' }), 1)
  assert.equal(sample(text, 'tollgate_websocket_messages_total', { route: '/chat', direction: 'client_to_upstream' }), 2)
  assert.equal(sample(text, 'tollgate_websocket_messages_total', { route: '/chat', direction: 'upstream_to_client' }), 2)
  assert.equal(sample(text, 'tollgate_websocket_bytes_total', { route: '/chat', direction: 'client_to_upstream' }), 10)

  const c = closed(ws)
  ws.close(4001, 'bye')
  await c
  await (async () => { while (gw.app.connections.size > 0) await new Promise((resolve) => setImmediate(resolve)) })()

  await assert.rejects(connect(`${gw.wsUrl}/down`), (e: HandshakeError) => e.status === 502)
  assert.equal((await fetch(`${gw.url}/chat/x`)).status, 200)
  assert.equal((await fetch(`${gw.url}/chat/y`, { method: 'POST', body: 'z' })).status, 200)
  assert.equal((await fetch(`${gw.url}/down/x`)).status, 502)

  text = await (await fetch(`${gw.url}/metrics`)).text()
  assert.equal(sample(text, 'tollgate_websocket_connections_active', { route: '/chat' }), undefined)
  // Totals survive the connection's end.
  assert.equal(sample(text, 'tollgate_websocket_messages_total', { route: '/chat', direction: 'client_to_upstream' }), 2)
  assert.equal(sample(text, 'tollgate_websocket_bytes_total', { route: '/chat', direction: 'upstream_to_client' }), 10)
  assert.equal(sample(text, 'tollgate_websocket_handshakes_total', { route: '/chat', result: 'ok' }), 1)
  assert.equal(sample(text, 'tollgate_websocket_handshakes_total', { route: '/down', result: '502' }), 1)
  assert.equal(sample(text, 'tollgate_websocket_closes_total', { route: '/chat', side: 'client', code: '4001' }), 1)
  assert.equal(sample(text, 'tollgate_websocket_closes_total', { route: '/chat', side: 'upstream', code: '4001' }), 1)
  assert.equal(sample(text, 'tollgate_http_requests_total', { route: '/chat', status: '200' }), 2)
  assert.equal(sample(text, 'tollgate_http_requests_total', { route: '/down', status: '502' }), 1)
  assert.equal(sample(text, 'tollgate_upstream_errors_total', { target: `http://127.0.0.1:${dead}`, kind: 'refused' }), 2)
  assert.equal(sample(text, 'tollgate_websocket_handshake_duration_seconds_count', { route: '/chat' }), 1)
  assert.ok((sample(text, 'tollgate_websocket_rtt_seconds_count') ?? 0) >= 1, 'an RTT sample')
  assert.ok(sample(text, 'tollgate_process_resident_memory_bytes') !== undefined, 'default process metrics')
})

test('/metrics is public by default; metrics.protected requires the admin token', async (t) => {
  const up = await startUpstream()
  t.after(() => up.close())
  const gw = await startGateway({ routes: [{ prefix: '/chat', upstream: up.url }], admin: { token: 'admin-token-0123456789' }, metrics: { protected: true } })
  t.after(() => gw.close())
  assert.equal((await fetch(`${gw.url}/metrics`)).status, 401)
  assert.equal((await fetch(`${gw.url}/metrics`, { headers: { authorization: 'Bearer wrong' } })).status, 401)
  const ok = await fetch(`${gw.url}/metrics`, { headers: { authorization: 'Bearer admin-token-0123456789' } })
  assert.equal(ok.status, 200)
  assert.match(ok.headers.get('content-type') ?? '', /^text\/plain/)
})
