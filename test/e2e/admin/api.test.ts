import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startUpstream, type TestUpstream } from '../../helpers/upstream.js'
import { startGateway, type TestGateway } from '../../helpers/gateway.js'
import { connect, nextMessage, closed, collect } from '../../helpers/ws.js'
import type WebSocket from 'ws'
import type { GatewayConfigInput } from '../../../src/config/schema.js'
import { waitFor } from '../../helpers/resources.js'

const TOKEN = 'admin-secret-token'
const auth = { authorization: `Bearer ${TOKEN}` }

async function setup (t: { after: (fn: () => Promise<void>) => void }, extra: Partial<GatewayConfigInput> = {}): Promise<{ up: TestUpstream, gw: TestGateway }> {
  const up = await startUpstream()
  t.after(() => up.close())
  const gw = await startGateway({
    upstreams: { chat: { targets: [up.url] } },
    routes: [{ prefix: '/chat', upstream: 'chat' }, { prefix: '/news', upstream: 'chat' }],
    admin: { token: TOKEN },
    ...extra
  })
  t.after(() => gw.close())
  return { up, gw }
}

async function open (gw: TestGateway, path: string, t: { after: (fn: () => void) => void }): Promise<WebSocket> {
  const ws = await connect(`${gw.wsUrl}${path}`)
  t.after(() => ws.terminate())
  return ws
}

async function get (url: string, headers: Record<string, string> = auth): Promise<{ status: number, body: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const res = await fetch(url, { headers })
  const text = await res.text()
  return { status: res.status, body: text === '' ? null : JSON.parse(text) }
}

test('admin routes need the bearer token: missing or wrong gets 401 JSON', async (t) => {
  // Each credential from an address of its own: more than 10 failures from one IP get 429
  // (test/e2e/security/admin-auth.test.ts).
  const { gw } = await setup(t, { server: { trustProxy: true } })
  let n = 0
  for (const headers of [{} as Record<string, string>, { authorization: 'Bearer nope' }, { authorization: TOKEN }, { authorization: `Basic ${TOKEN}` }]) {
    n++
    for (const path of ['/admin/connections', '/admin/connections/x', '/admin/upstreams', '/admin/openapi.json']) {
      const res = await fetch(`${gw.url}${path}`, { headers: { ...headers, 'x-forwarded-for': `192.0.2.${n}` } })
      assert.equal(res.status, 401, `${path} with ${JSON.stringify(headers)}`)
      assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer/)
      const body = await res.json() as { code: string }
      assert.equal(body.code, 'GW_ERR_ADMIN_UNAUTHORIZED')
    }
  }
  const del = await fetch(`${gw.url}/admin/connections/x`, { method: 'DELETE' })
  assert.equal(del.status, 401)
  const post = await fetch(`${gw.url}/admin/connections/x/messages`, { method: 'POST', body: '{"text":"a"}', headers: { 'content-type': 'application/json' } })
  assert.equal(post.status, 401)
})

test('no admin token configured: admin routes are absent (404) and a warning is logged', async (t) => {
  const up = await startUpstream()
  t.after(() => up.close())
  const gw = await startGateway({ routes: [{ prefix: '/chat', upstream: up.url }] }, { captureLogs: true })
  t.after(() => gw.close())
  assert.equal((await fetch(`${gw.url}/admin/connections`, { headers: auth })).status, 404)
  assert.ok(gw.logs.some((l) => l.level === 40 && String(l.msg).includes('admin API disabled')))
})

test('list, filter by route and user, page, sorted by connectedAt', async (t) => {
  const { gw } = await setup(t)
  const a = await open(gw, '/chat/a', t)
  const b = await open(gw, '/news', t)
  const c = await open(gw, '/chat/c?x=1', t)
  await waitFor(() => gw.app.connections.size === 3, '3 connections')
  const all = await get(`${gw.url}/admin/connections`)
  assert.equal(all.status, 200)
  assert.equal(all.body.total, 3)
  assert.deepEqual(all.body.connections.map((x: { path: string }) => x.path), ['/chat/a', '/news', '/chat/c'])
  const chat = await get(`${gw.url}/admin/connections?route=/chat`)
  assert.equal(chat.body.total, 2)
  assert.deepEqual(chat.body.connections.map((x: { route: string }) => x.route), ['/chat', '/chat'])
  const page = await get(`${gw.url}/admin/connections?limit=1&offset=1`)
  assert.equal(page.body.total, 3)
  assert.equal(page.body.connections.length, 1)
  assert.equal(page.body.connections[0].path, '/news')
  const none = await get(`${gw.url}/admin/connections?user=alice`)
  assert.deepEqual(none.body, { total: 0, connections: [] })
  const c0 = all.body.connections[0]
  assert.deepEqual(Object.keys(c0).sort(), ['bytesFromClient', 'bytesToClient', 'clientIp', 'connectedAt', 'id', 'instanceId', 'lastActivityAt', 'lastPongAt', 'messagesFromClient', 'messagesToClient', 'path', 'route', 'rttMs', 'subprotocol', 'upstream', 'userId'])
  assert.equal(c0.userId, null)
  assert.equal(c0.clientIp, '127.0.0.1')
  assert.equal(c0.instanceId, gw.app.instanceId)
  assert.match(c0.connectedAt, /^\d{4}-\d\d-\d\dT/)
  for (const ws of [a, b, c]) ws.close()
})

test('bad query values get 400 with a clear message', async (t) => {
  const { gw } = await setup(t)
  for (const q of ['limit=0', 'limit=1001', 'limit=abc', 'offset=-1', 'offset=x']) {
    const res = await get(`${gw.url}/admin/connections?${q}`)
    assert.equal(res.status, 400, q)
    assert.match(res.body.message, /querystring/, q)
  }
})

test('inspect one connection with exact counters after a known exchange; 404 for unknown ids', async (t) => {
  const { gw } = await setup(t)
  const ws = await open(gw, '/chat', t)
  ws.send('hello')            // 5 bytes, echoed back
  ws.send(Buffer.alloc(10))   // 10 bytes, echoed back
  await collect(ws, 2)
  const id = [...gw.app.connections.values()][0].info.id
  const res = await get(`${gw.url}/admin/connections/${id}`)
  assert.equal(res.status, 200)
  assert.equal(res.body.id, id)
  assert.equal(res.body.messagesFromClient, 2)
  assert.equal(res.body.messagesToClient, 2)
  assert.equal(res.body.bytesFromClient, 15)
  assert.equal(res.body.bytesToClient, 15)
  assert.equal(res.body.upstream, (gw.app.gatewayConfig.upstreams.chat.targets[0]))
  const missing = await get(`${gw.url}/admin/connections/does-not-exist`)
  assert.equal(missing.status, 404)
  assert.equal(missing.body.code, 'GW_ERR_CONNECTION_NOT_FOUND')
})

test('DELETE closes client (1008 "closed by administrator" by default) and upstream; entry gone', async (t) => {
  const { up, gw } = await setup(t)
  const upConn = up.nextConnection()
  const ws = await open(gw, '/chat', t)
  const { ws: upWs } = await upConn
  const upClosed = closed(upWs)
  const clientClosed = closed(ws)
  const id = [...gw.app.connections.values()][0].info.id
  const res = await fetch(`${gw.url}/admin/connections/${id}`, { method: 'DELETE', headers: auth })
  assert.equal(res.status, 204)
  assert.deepEqual(await clientClosed, { code: 1008, reason: 'closed by administrator' })
  assert.equal((await upClosed).code, 1008)
  await waitFor(() => gw.app.connections.size === 0, 'registry empty')
  assert.equal((await get(`${gw.url}/admin/connections/${id}`)).status, 404)
  assert.equal((await fetch(`${gw.url}/admin/connections/${id}`, { method: 'DELETE', headers: auth })).status, 404)
})

test('DELETE with a custom code and reason; invalid codes get 400', async (t) => {
  const { gw } = await setup(t)
  const ws = await open(gw, '/chat', t)
  await waitFor(() => gw.app.connections.size === 1, 'registered')
  const id = [...gw.app.connections.values()][0].info.id
  for (const code of [999, 1001, 1005, 1006, 1008, 2999, 5000]) {
    const res = await fetch(`${gw.url}/admin/connections/${id}?code=${code}`, { method: 'DELETE', headers: auth })
    assert.equal(res.status, 400, String(code))
  }
  const c = closed(ws)
  const res = await fetch(`${gw.url}/admin/connections/${id}?code=4000&reason=maintenance`, { method: 'DELETE', headers: auth })
  assert.equal(res.status, 204)
  assert.deepEqual(await c, { code: 4000, reason: 'maintenance' })
})

test('POST messages pushes text and binary to the client; 404 when gone; 400 on bad bodies', async (t) => {
  const { gw } = await setup(t)
  const ws = await open(gw, '/chat', t)
  await waitFor(() => gw.app.connections.size === 1, 'registered')
  const id = [...gw.app.connections.values()][0].info.id
  const post = (body: unknown): Promise<Response> => fetch(`${gw.url}/admin/connections/${id}/messages`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  let m = nextMessage(ws)
  assert.equal((await post({ text: 'from admin' })).status, 202)
  assert.deepEqual(await m, { data: Buffer.from('from admin'), isBinary: false })
  m = nextMessage(ws)
  assert.equal((await post({ binary: Buffer.from([0, 1, 2, 255]).toString('base64') })).status, 202)
  assert.deepEqual(await m, { data: Buffer.from([0, 1, 2, 255]), isBinary: true })
  assert.equal((await post({})).status, 400)
  assert.equal((await post({ text: 'a', binary: 'AA==' })).status, 400)
  assert.equal((await post({ binary: '***' })).status, 400)
  const conn = await get(`${gw.url}/admin/connections/${id}`)
  assert.equal(conn.body.messagesToClient, 2)
  const c = closed(ws)
  ws.close()
  await c
  await waitFor(() => gw.app.connections.size === 0, 'registry empty')
  assert.equal((await post({ text: 'late' })).status, 404)
})

test('GET upstreams lists targets with open connection counts', async (t) => {
  const { up, gw } = await setup(t)
  await open(gw, '/chat', t)
  await open(gw, '/news', t)
  await waitFor(() => gw.app.connections.size === 2, 'registered')
  const res = await get(`${gw.url}/admin/upstreams`)
  assert.equal(res.status, 200)
  const chat = res.body.upstreams.find((u: { name: string }) => u.name === 'chat')
  assert.deepEqual(chat, {
    name: 'chat',
    balance: 'round-robin',
    resolveMs: 0,
    targets: [{ id: new URL(up.url).host, url: up.url, weight: 1, state: 'active', source: 'config', resolvedFrom: null, healthy: true, health: 'unchecked', openConnections: 2, inFlight: 0, lastError: null, downUntil: null }]
  })
})

test('OpenAPI document is valid JSON listing every admin route', async (t) => {
  const { gw } = await setup(t)
  const res = await get(`${gw.url}/admin/openapi.json`)
  assert.equal(res.status, 200)
  assert.match(res.body.openapi, /^3\./)
  const paths = Object.keys(res.body.paths).sort()
  assert.deepEqual(paths, ['/closing', '/connections', '/connections/totals', '/connections/{id}', '/connections/{id}/messages', '/reload', '/upstreams', '/upstreams/{name}/rebalance', '/upstreams/{name}/targets', '/upstreams/{name}/targets/{target}', '/users/{id}/connections'])
  assert.ok(res.body.paths['/connections/{id}'].delete)
  assert.ok(res.body.components.schemas.Connection)
})

test('admin.prefix moves the admin API', async (t) => {
  const { gw } = await setup(t, { admin: { token: TOKEN, prefix: '/ops' } })
  assert.equal((await get(`${gw.url}/ops/connections`)).status, 200)
  assert.equal((await get(`${gw.url}/admin/connections`)).status, 404)
})

test('admin.port: admin API and /metrics on their own port, not on the public one', async (t) => {
  // The helper listens on port 0 for the admin server whatever admin.port says (>0 turns it on).
  const { gw } = await setup(t, { admin: { token: TOKEN, port: 1 } })
  assert.notEqual(gw.adminUrl, gw.url)
  assert.equal((await get(`${gw.adminUrl}/admin/connections`)).status, 200)
  assert.equal((await fetch(`${gw.adminUrl}/metrics`)).status, 200)
  assert.equal((await get(`${gw.url}/admin/connections`)).status, 404)
  assert.equal((await fetch(`${gw.url}/metrics`)).status, 404)
  assert.equal((await fetch(`${gw.url}/health`)).status, 200)
})

test('POST messages to a client that does not read: 503 GW_ERR_CLIENT_BUSY once highWaterMark waits for it, nothing queued beyond; 202 again once it reads', { timeout: 30_000 }, async (t) => {
  const { gw } = await setup(t, { websocket: { highWaterMark: '16kb' } })
  const ws = await open(gw, '/chat', t)
  const id = [...gw.app.connections.values()][0].info.id
  let received = 0
  ws.on('message', () => { received++ })
  // The client stops reading: its socket, then the kernel's buffers, then the gateway's fill up.
  ;(ws as unknown as { _socket: { pause: () => void } })._socket.pause()
  const text = 'x'.repeat(256 * 1024)
  const post = (): Promise<Response> => fetch(`${gw.url}/admin/connections/${id}/messages`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ text }) })
  let accepted = 0
  let busy: Response | undefined
  for (let i = 0; i < 400 && busy === undefined; i++) {
    const res = await post()
    if (res.status === 202) { accepted++; await res.arrayBuffer() } else busy = res
  }
  assert.ok(busy !== undefined, `a 503 after ${accepted} accepted pushes`)
  assert.equal(busy.status, 503)
  const body = await busy.json() as { code: string, message: string }
  assert.equal(body.code, 'GW_ERR_CLIENT_BUSY')
  assert.match(body.message, new RegExp(id))
  const bridge = gw.app.connections.get(id)!
  assert.equal(bridge.messagesToClient, accepted, 'refused pushes are not counted')
  // Once the client reads again, everything accepted arrives and pushes are taken again.
  ;(ws as unknown as { _socket: { resume: () => void } })._socket.resume()
  await waitFor(() => received === accepted, `the ${accepted} accepted pushes to arrive`, 20_000)
  assert.equal((await post()).status, 202)
})
