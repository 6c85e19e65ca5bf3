/**
 * Only a WebSocket upgrade is ever switched: h2c smuggling and look-alike tokens are refused on
 * WebSocket routes and ignored (served as HTTP/1.1) on HTTP-only routes.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { IncomingHttpHeaders } from 'node:http'
import { gatewayFor } from '../../helpers/gateway.js'
import { upstreamFor } from '../../helpers/upstream.js'
import { rawRequest } from './raw-http.js'

const KEY = { 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' }

test('WebSocket route: Upgrade other than websocket, or Connection without upgrade, gets 400 and nothing goes upstream', async (t) => {
  const http: IncomingHttpHeaders[] = []
  const up = await upstreamFor(t, { http: (req, res) => { http.push(req.headers); res.end('ok') } })
  const gw = await gatewayFor(t, { routes: [{ prefix: '/', upstream: up.url }] })
  const cases: Array<Record<string, string>> = [
    { upgrade: 'h2c', connection: 'Upgrade, HTTP2-Settings', 'http2-settings': 'AAMAAABkAAQAoAAAAAIAAAAA' },
    { upgrade: 'websockets', connection: 'Upgrade', ...KEY },
    { upgrade: 'h2c, websocket2', connection: 'upgrade', ...KEY },
    { upgrade: 'websocket', connection: 'keep-alive', ...KEY },
    { upgrade: 'websocket', connection: 'close', ...KEY }
  ]
  for (const h of cases) {
    const r = await rawRequest(gw.port, '/x', h)
    assert.equal(r.status, 400, JSON.stringify(h))
    assert.notEqual(r.status, 101)
  }
  assert.equal(up.upgrades.length, 0, 'no upgrade reached the upstream')
  assert.equal(http.length, 0, 'nor a plain request')
  // The real thing still works, whatever the case and list form.
  const ok = await rawRequest(gw.port, '/x', { upgrade: 'WebSocket', connection: 'keep-alive, Upgrade', ...KEY })
  assert.equal(ok.status, 101)
  assert.equal(up.upgrades.length, 1)
  assert.equal(up.upgrades[0].headers.upgrade, 'websocket', 'the gateway sends its own Upgrade upstream')
})

test('HTTP-only route: an h2c upgrade is ignored, the request is answered as HTTP/1.1 without Upgrade or HTTP2-Settings upstream', async (t) => {
  const http: IncomingHttpHeaders[] = []
  const up = await upstreamFor(t, { http: (req, res) => { http.push(req.headers); res.end('plain') } })
  const gw = await gatewayFor(t, { routes: [{ prefix: '/', upstream: up.url, websocket: false }] })
  const r = await rawRequest(gw.port, '/x', { upgrade: 'h2c', connection: 'Upgrade, HTTP2-Settings', 'http2-settings': 'AAMAAABkAAQAoAAAAAIAAAAA' })
  assert.equal(r.status, 200)
  assert.equal(r.body, 'plain')
  assert.equal(up.upgrades.length, 0)
  assert.equal(http.length, 1)
  for (const n of ['upgrade', 'http2-settings']) assert.equal(http[0][n], undefined, n)
  assert.doesNotMatch(String(http[0].connection ?? ''), /upgrade/i)
  // A WebSocket handshake on an HTTP-only route is a 404, and an h2c upgrade with a body a 400.
  assert.equal((await rawRequest(gw.port, '/x', { upgrade: 'websocket', connection: 'Upgrade', ...KEY })).status, 404)
  assert.equal((await rawRequest(gw.port, '/x', { upgrade: 'h2c', connection: 'Upgrade' }, { method: 'POST', body: 'x=1' })).status, 400)
  assert.equal(http.length, 1)
})

test('a WebSocket handshake on a route that bridges nothing (/health, a static route, an HTTP-only plugin route) is 404, never a 101', async (t) => {
  const { mkdtemp, writeFile } = await import('node:fs/promises')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const root = await mkdtemp(join(tmpdir(), 'tollgate-ws-static-'))
  await writeFile(join(root, 'a.txt'), 'a')
  const plugin = join(root, 'plain.mjs')
  await writeFile(plugin, "export default async function (app) { app.get('/plain', async () => 'plain') }\n")
  const gw = await gatewayFor(t, { routes: [{ prefix: '/static', static: root }], plugins: [plugin] })
  for (const path of ['/health', '/ready', '/static/a.txt', '/plain']) {
    const r = await rawRequest(gw.port, path, { upgrade: 'websocket', connection: 'Upgrade', ...KEY })
    assert.equal(r.status, 404, path)
    assert.equal(JSON.parse(r.body).code, 'GW_ERR_NO_WEBSOCKET', path)
  }
  // And the same paths still answer plain HTTP.
  assert.equal((await rawRequest(gw.port, '/plain')).body, 'plain')
})
