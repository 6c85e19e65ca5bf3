/**
 * Upgrade requests that are not WebSocket handshakes. On an HTTP-only route an `Upgrade: h2c`
 * request is an ordinary request: served over HTTP/1.1 with Upgrade and HTTP2-Settings dropped,
 * never switched. On a WebSocket route an upgrade request whose Upgrade does not list
 * `websocket`, or whose Connection does not list `upgrade`, gets 400 and nothing reaches the
 * upstream; tokens are matched case-insensitively, and only `websocket` is ever asked upstream.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import type { TestGateway } from '../../helpers/gateway.js'
import { gatewayFor } from './support/lab.js'
import { rawRequest, recordingUpstream, RawHttp } from './support/http.js'
import { startUpstream, type TestUpstream } from '../../helpers/upstream.js'

const KEY = 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n'

test('HTTP upgrade: "Upgrade: h2c" on an HTTP-only route is served as plain HTTP/1.1 (never 101): the upstream gets the request without Upgrade or HTTP2-Settings', { timeout: 10_000 }, async (t) => {
  const up = await recordingUpstream(t)
  const gw = await gatewayFor(t, { routes: [{ prefix: '/h', upstream: up.url, websocket: false }] })
  const c = await RawHttp.open(gw.port, t)
  c.write('GET /h/h2c HTTP/1.1\r\nHost: gw.example\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n')
  const res = await c.response('GET')
  assert.notEqual(res.status, 101, 'switched to h2c')
  assert.equal(up.upgrades.length, 0, 'an upgrade request reached the upstream')
  assert.equal(res.status, 200, `an ordinary answer (got ${res.status} ${res.body.toString().slice(0, 200)})`)
  assert.equal(up.seen.length, 1)
  const names = up.seen[0].lines.map(([n]) => n.toLowerCase())
  assert.ok(!names.includes('upgrade') && !names.includes('http2-settings'), `forwarded: ${names.join(', ')}`)
  // Still HTTP/1.1 on this connection: the next request is answered, unless the answer said
  // "Connection: close" and the connection then closed.
  if (/\bclose\b/i.test(res.headers.connection ?? '')) {
    await c.closedByServer()
  } else {
    c.write('GET /h/after HTTP/1.1\r\nHost: gw.example\r\n\r\n')
    assert.equal((await c.response('GET')).status, 200, 'the connection did not stay HTTP/1.1 (and the answer did not say Connection: close)')
  }
})

async function wsRoute (t: TestContext): Promise<{ up: TestUpstream, gw: TestGateway, httpSeen: string[] }> {
  const httpSeen: string[] = []
  const up = await startUpstream({ http: (req, res) => { httpSeen.push(`${req.method} ${req.url}`); res.writeHead(200).end('ok') } })
  t.after(() => up.close())
  const gw = await gatewayFor(t, { routes: [{ prefix: '/w', upstream: up.url }] })
  return { up, gw, httpSeen }
}

const refused: Array<[string, string]> = [
  ['"Upgrade: h2c" with "Connection: Upgrade, HTTP2-Settings" and a WebSocket key', `Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n${KEY}`],
  ['"Upgrade: h2c" with "Connection: Upgrade" and no WebSocket key', 'Connection: Upgrade\r\nUpgrade: h2c\r\n'],
  ['"Upgrade: websockets" (not the websocket token) with "Connection: Upgrade"', `Connection: Upgrade\r\nUpgrade: websockets\r\n${KEY}`],
  ['"Upgrade: websocket" with "Connection: keep-alive" (no upgrade token)', `Connection: keep-alive\r\nUpgrade: websocket\r\n${KEY}`],
  ['"Upgrade: websocket" with no Connection header', `Upgrade: websocket\r\n${KEY}`]
]
for (const [what, headers] of refused) {
  test(`HTTP upgrade: ${what} on a WebSocket route gets 400, and the upstream sees nothing`, { timeout: 10_000 }, async (t) => {
    const { up, gw, httpSeen } = await wsRoute(t)
    const res = await rawRequest(gw.port, `GET /w/x HTTP/1.1\r\nHost: gw.example\r\n${headers}\r\n`)
    assert.equal(res.status, 400, `answered ${res.status} ${res.body.toString().slice(0, 200)}`)
    assert.deepEqual(up.upgrades.map((r) => `${r.headers.upgrade}`), [], 'an upgrade request reached the upstream')
    assert.deepEqual(httpSeen, [], 'a plain request reached the upstream')
  })
}

test('HTTP upgrade: tokens match case-insensitively ("Upgrade: WebSocket", "Connection: keep-alive, UPGRADE"): 101, and the upstream is asked for "websocket" only', { timeout: 10_000 }, async (t) => {
  const { up, gw } = await wsRoute(t)
  const c = await RawHttp.open(gw.port, t)
  c.write(`GET /w/case HTTP/1.1\r\nHost: gw.example\r\nConnection: keep-alive, UPGRADE\r\nUpgrade: WebSocket\r\n${KEY}\r\n`)
  const res = await c.response('GET')
  assert.equal(res.status, 101)
  assert.equal(up.upgrades.length, 1)
  assert.equal(up.upgrades[0].headers.upgrade, 'websocket')
})

test('HTTP upgrade: "Upgrade: h2c, websocket" on a WebSocket route: switched to WebSocket, and h2c is never forwarded upstream', { timeout: 10_000 }, async (t) => {
  const { up, gw } = await wsRoute(t)
  const c = await RawHttp.open(gw.port, t)
  c.write(`GET /w/both HTTP/1.1\r\nHost: gw.example\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c, websocket\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n${KEY}\r\n`)
  const res = await c.response('GET')
  assert.equal(res.status, 101)
  assert.equal(res.headers.upgrade?.toLowerCase(), 'websocket')
  assert.equal(up.upgrades.length, 1)
  assert.equal(up.upgrades[0].headers.upgrade, 'websocket', 'only websocket is asked upstream')
  assert.equal(up.upgrades[0].headers['http2-settings'], undefined)
})
