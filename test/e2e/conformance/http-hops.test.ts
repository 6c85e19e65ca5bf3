/**
 * HTTP/1.1 at both hops, header by header: hop-by-hop headers (those the Connection header
 * names, and the standard ones) stay on their own hop in both directions, Via gets the gateway's
 * entry both ways, and an absolute-form request target wins over a Host header that disagrees
 * with it. Requests are written as raw bytes; the upstream records exactly what reached it.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { gatewayFor } from './support/lab.js'
import { rawHttpUpstream, rawRequest, recordingUpstream } from './support/http.js'
import { openRawClient } from './support/raw.js'
import { startUpstream } from '../../helpers/upstream.js'

const names = (lines: Array<[string, string]>): string[] => lines.map(([n]) => n.toLowerCase())

test('HTTP hop-by-hop: headers the client\'s Connection header names (in two Connection lines, any case) are not forwarded; other headers are', { timeout: 10_000 }, async (t) => {
  const up = await recordingUpstream(t)
  const gw = await gatewayFor(t, { routes: [{ prefix: '/h', upstream: up.url, websocket: false }] })
  const res = await rawRequest(gw.port, 'GET /h/conn HTTP/1.1\r\nHost: gw.example\r\nConnection: keep-alive, X-Drop-One\r\nconnection: x-DROP-two\r\n' +
    'X-Drop-One: 1\r\nX-Drop-Two: 2\r\nX-Keep: 3\r\n\r\n')
  assert.equal(res.status, 200)
  const seen = up.seen[0]
  assert.ok(!names(seen.lines).includes('x-drop-one'), 'X-Drop-One was forwarded')
  assert.ok(!names(seen.lines).includes('x-drop-two'), 'X-Drop-Two (named in the second Connection line) was forwarded')
  assert.equal(seen.headers['x-keep'], '3')
  assert.doesNotMatch(String(seen.headers.connection ?? ''), /x-drop/i, 'the client\'s Connection tokens went upstream')
})

test('HTTP hop-by-hop: TE, Trailer, Proxy-Authorization, Proxy-Connection, Keep-Alive, Upgrade and HTTP2-Settings are not forwarded, even when Connection does not name them', { timeout: 10_000 }, async (t) => {
  const up = await recordingUpstream(t)
  const gw = await gatewayFor(t, { routes: [{ prefix: '/h', upstream: up.url, websocket: false }] })
  const res = await rawRequest(gw.port, 'GET /h/hop HTTP/1.1\r\nHost: gw.example\r\nTE: trailers\r\nTrailer: X-Checksum\r\n' +
    'Proxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nUpgrade: h2c\r\n' +
    'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nX-Keep: yes\r\n\r\n')
  assert.equal(res.status, 200)
  const got = names(up.seen[0].lines)
  for (const h of ['te', 'trailer', 'proxy-authorization', 'proxy-connection', 'keep-alive', 'upgrade', 'http2-settings']) {
    assert.ok(!got.includes(h), `${h} was forwarded upstream`)
  }
  assert.equal(up.seen[0].headers['x-keep'], 'yes')
})

test('HTTP hop-by-hop: the upstream\'s Connection-named headers (two lines), Keep-Alive, Proxy-Authenticate, Proxy-Connection, Upgrade and an empty Trailer announcement do not reach the client', { timeout: 10_000 }, async (t) => {
  const up = await rawHttpUpstream(t, () => 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: X-Resp-One\r\nConnection: x-RESP-two\r\n' +
    'X-Resp-One: 1\r\nX-Resp-Two: 2\r\nX-Resp-Keep: 3\r\nKeep-Alive: timeout=99, max=7\r\nProxy-Authenticate: Basic realm="up"\r\n' +
    'Proxy-Connection: keep-alive\r\nUpgrade: h2c\r\nTrailer: X-Sum\r\n\r\nok')
  const gw = await gatewayFor(t, { routes: [{ prefix: '/h', upstream: up.url, websocket: false }] })
  const res = await rawRequest(gw.port, 'GET /h/resp HTTP/1.1\r\nHost: gw.example\r\n\r\n')
  assert.equal(res.status, 200)
  assert.equal(res.body.toString(), 'ok')
  assert.equal(res.headers['x-resp-keep'], '3')
  const got = names(res.lines)
  for (const h of ['x-resp-one', 'x-resp-two', 'proxy-authenticate', 'proxy-connection', 'upgrade', 'trailer']) assert.ok(!got.includes(h), `${h} reached the client`)
  assert.doesNotMatch(res.headers['keep-alive'] ?? '', /99|max=7/, 'the upstream\'s Keep-Alive values reached the client')
  assert.doesNotMatch(res.headers.connection ?? '', /x-resp/i)
})

test('HTTP Via: the gateway appends "1.1 tollgate" to the request\'s Via upstream (starting one when there is none)', { timeout: 10_000 }, async (t) => {
  const up = await recordingUpstream(t)
  const gw = await gatewayFor(t, { routes: [{ prefix: '/h', upstream: up.url }] })
  assert.equal((await rawRequest(gw.port, 'GET /h/via HTTP/1.1\r\nHost: gw.example\r\n\r\n')).status, 200)
  assert.equal(up.seen[0].headers.via, '1.1 tollgate')
  assert.equal((await rawRequest(gw.port, 'GET /h/via HTTP/1.1\r\nHost: gw.example\r\nVia: 1.0 fred, 1.1 p.example\r\n\r\n')).status, 200)
  assert.equal(up.seen[1].headers.via, '1.0 fred, 1.1 p.example, 1.1 tollgate')
})

test('HTTP Via: the gateway appends "1.1 tollgate" to the response\'s Via (starting one when the upstream sent none)', { timeout: 10_000 }, async (t) => {
  const up = await recordingUpstream(t, (req, res) => {
    if (req.url === '/h/cached') res.writeHead(200, { via: '1.1 cache.example', 'content-length': 2 }).end('ok')
    else res.writeHead(200, { 'content-length': 2 }).end('ok')
  })
  const gw = await gatewayFor(t, { routes: [{ prefix: '/h', upstream: up.url }] })
  const plain = await rawRequest(gw.port, 'GET /h/plain HTTP/1.1\r\nHost: gw.example\r\n\r\n')
  assert.equal(plain.headers.via, '1.1 tollgate')
  const cached = await rawRequest(gw.port, 'GET /h/cached HTTP/1.1\r\nHost: gw.example\r\n\r\n')
  assert.equal(cached.headers.via, '1.1 cache.example, 1.1 tollgate')
})

test('HTTP absolute-form: "GET http://a.example/h/abs?q=1" with "Host: b.example" is routed by the target\'s path, and the upstream sees the target\'s authority (X-Forwarded-Host a.example), never b.example', { timeout: 10_000 }, async (t) => {
  const up = await recordingUpstream(t)
  const other = await recordingUpstream(t)
  const gw = await gatewayFor(t, { routes: [{ prefix: '/h', upstream: up.url }, { prefix: '/', upstream: other.url }] })
  const res = await rawRequest(gw.port, 'GET http://a.example/h/abs?q=1 HTTP/1.1\r\nHost: b.example\r\n\r\n')
  assert.equal(res.status, 200)
  assert.equal(other.seen.length, 0, 'routed by something else than the target\'s path')
  const seen = up.seen[0]
  assert.equal(seen.url, '/h/abs?q=1', 'the upstream gets the origin form of the target')
  assert.equal(seen.headers['x-forwarded-host'], 'a.example')
  assert.equal(seen.headers.host, new URL(up.url).host, 'Host is the upstream\'s own, as for every request')
  assert.ok(!seen.lines.some(([, v]) => v.includes('b.example')), `b.example reached the upstream: ${JSON.stringify(seen.lines)}`)
})

test('HTTP absolute-form: a WebSocket handshake to "http://a.example/h/abs" with "Host: b.example" is routed by the path and the upstream sees X-Forwarded-Host a.example', { timeout: 10_000 }, async (t) => {
  const up = await startUpstream()
  t.after(() => up.close())
  const gw = await gatewayFor(t, { routes: [{ prefix: '/h', upstream: up.url }] })
  const { peer } = await openRawClient(gw.port, 'http://a.example/h/abs', '', 'b.example')
  t.after(() => peer.destroy())
  const req = up.upgrades[0]
  assert.equal(req.url, '/h/abs')
  assert.equal(req.headers['x-forwarded-host'], 'a.example')
})
