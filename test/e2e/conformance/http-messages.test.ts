/**
 * HTTP/1.1 message framing through the proxy, at the byte level on both hops: Expect:
 * 100-continue, answers that never have a body (HEAD, 204, 304) leave the connection usable,
 * chunked request bodies with trailers and chunked answers with extensions arrive whole, and
 * HTTP/1.0 clients (with and without Host, with keep-alive) get answers they can read.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { gatewayFor } from './support/lab.js'
import { RawHttp, rawHttpUpstream, recordingUpstream } from './support/http.js'

const route = (url: string): { routes: Array<{ prefix: string, upstream: string, websocket: boolean }> } => ({ routes: [{ prefix: '/h', upstream: url, websocket: false }] })

test('HTTP Expect: 100-continue: the client gets one "100 Continue" before it sends the body, then the final answer; the upstream gets the whole body', { timeout: 10_000 }, async (t) => {
  const up = await recordingUpstream(t, (_req, res, seen) => res.writeHead(201, { 'content-type': 'text/plain' }).end(`got ${seen.body.length}`))
  const gw = await gatewayFor(t, route(up.url))
  const c = await RawHttp.open(gw.port, t)
  c.write('POST /h/upload HTTP/1.1\r\nHost: gw.example\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n')
  const interim = await c.response('POST', 3000)
  assert.equal(interim.status, 100, 'the first answer is 100 Continue, before any body was sent')
  assert.equal(up.seen.length, 0)
  c.write('hello world')
  const final = await c.response('POST')
  assert.equal(final.status, 201, 'one 100 only, then the final answer')
  assert.equal(final.body.toString(), 'got 11')
  assert.equal(up.seen[0].body.toString(), 'hello world')
  assert.equal(c.pending().length, 0, 'nothing more on the connection')
})

test('HTTP HEAD: the answer has the upstream\'s Content-Length but no body, and the next request on the connection gets its own answer', { timeout: 10_000 }, async (t) => {
  const up = await recordingUpstream(t, (req, res) => res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 11 }).end(req.method === 'HEAD' ? undefined : 'hello world'))
  const gw = await gatewayFor(t, route(up.url))
  const c = await RawHttp.open(gw.port, t)
  c.write('HEAD /h/x HTTP/1.1\r\nHost: gw.example\r\n\r\n')
  const head = await c.response('HEAD')
  assert.equal(head.status, 200)
  assert.equal(head.headers['content-length'], '11')
  assert.equal(up.seen[0].method, 'HEAD')
  c.write('GET /h/x HTTP/1.1\r\nHost: gw.example\r\n\r\n')
  const get = await c.response('GET')
  assert.equal(get.status, 200, `the HEAD answer carried no body bytes (the next answer starts ${JSON.stringify(get.raw.subarray(0, 20).toString())})`)
  assert.equal(get.body.toString(), 'hello world')
})

test('HTTP 204 and 304: answered without a body (no chunked terminator either), the validators pass both ways, and the connection stays usable', { timeout: 10_000 }, async (t) => {
  const up = await recordingUpstream(t, (req, res) => {
    if (req.url === '/h/none') res.writeHead(204, { 'x-why': 'nothing' }).end()
    else if (req.headers['if-none-match'] === '"v1"') res.writeHead(304, { etag: '"v1"', 'cache-control': 'max-age=60' }).end()
    else res.writeHead(200, { etag: '"v1"', 'content-length': 4 }).end('body')
  })
  const gw = await gatewayFor(t, route(up.url))
  const c = await RawHttp.open(gw.port, t)
  c.write('DELETE /h/none HTTP/1.1\r\nHost: gw.example\r\n\r\n')
  const none = await c.response('DELETE')
  assert.equal(none.status, 204)
  assert.equal(none.headers['x-why'], 'nothing')
  assert.equal(none.headers['transfer-encoding'], undefined, 'a 204 says nothing of a body')
  c.write('GET /h/cached HTTP/1.1\r\nHost: gw.example\r\nIf-None-Match: "v1"\r\n\r\n')
  const notModified = await c.response('GET')
  assert.equal(notModified.status, 304)
  assert.equal(notModified.headers.etag, '"v1"')
  assert.equal(notModified.headers['cache-control'], 'max-age=60')
  assert.equal(up.seen[1].headers['if-none-match'], '"v1"')
  c.write('GET /h/cached HTTP/1.1\r\nHost: gw.example\r\n\r\n')
  const full = await c.response('GET')
  assert.equal(full.status, 200, `no body bytes came with the 204 or the 304 (next answer starts ${JSON.stringify(full.raw.subarray(0, 20).toString())})`)
  assert.equal(full.body.toString(), 'body')
})

test('HTTP chunked request: a body in chunks (one with a chunk extension) and trailers reaches the upstream whole, without the client\'s Trailer/TE headers; trailers, if passed, are the client\'s', { timeout: 10_000 }, async (t) => {
  const up = await recordingUpstream(t, (_req, res, seen) => res.writeHead(200, { 'content-type': 'text/plain' }).end(`got ${seen.body.length}`))
  const gw = await gatewayFor(t, route(up.url))
  const c = await RawHttp.open(gw.port, t)
  c.write('POST /h/chunks HTTP/1.1\r\nHost: gw.example\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\nTE: trailers\r\nContent-Type: text/plain\r\n\r\n')
  c.write('5\r\nhello\r\n')
  c.write('6;name=value\r\n world\r\n')
  c.write('0\r\nX-Checksum: abc123\r\n\r\n')
  const res = await c.response('POST')
  assert.equal(res.status, 200)
  assert.equal(res.body.toString(), 'got 11')
  const seen = up.seen[0]
  assert.equal(seen.body.toString(), 'hello world')
  assert.equal(seen.headers.trailer, undefined, 'Trailer is hop-by-hop')
  assert.equal(seen.headers.te, undefined, 'TE is hop-by-hop')
  assert.equal(seen.headers['content-type'], 'text/plain')
  for (const [name, value] of seen.trailers) assert.deepEqual([name.toLowerCase(), value], ['x-checksum', 'abc123'], 'a trailer the client did not send')
})

test('HTTP chunked answer: an upstream answer in chunks (with chunk extensions and trailers) reaches the client whole and framed, and the connection stays usable', { timeout: 10_000 }, async (t) => {
  const up = await rawHttpUpstream(t, () => 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n' +
    '1;ext=a\r\na\r\n2\r\nbb\r\n3;x="y"\r\nccc\r\n0\r\nX-Sum: 6\r\n\r\n')
  const gw = await gatewayFor(t, route(up.url))
  const c = await RawHttp.open(gw.port, t)
  for (let i = 0; i < 2; i++) {
    c.write('GET /h/chunked HTTP/1.1\r\nHost: gw.example\r\n\r\n')
    const res = await c.response('GET')
    assert.equal(res.status, 200)
    assert.equal(res.body.toString(), 'abbccc', 'the body without the chunk extensions')
    assert.ok(res.chunked || res.headers['content-length'] === '6', 'framed by chunks or by length')
    if (res.headers.trailer !== undefined) assert.deepEqual(res.trailers.map(([n, v]) => [n.toLowerCase(), v]), [['x-sum', '6']], 'a Trailer announcement without its trailers')
    assert.doesNotMatch(res.raw.toString('latin1'), /ext=a|x="y"/, 'chunk extensions are the upstream hop\'s')
  }
})

test('HTTP/1.0 client with Host: a chunked upstream answer reaches it unchunked and complete, then the connection closes', { timeout: 10_000 }, async (t) => {
  const up = await recordingUpstream(t, (_req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }); res.write('part one, '); res.end('part two') })
  const gw = await gatewayFor(t, route(up.url))
  const c = await RawHttp.open(gw.port, t)
  c.write('GET /h/old HTTP/1.0\r\nHost: gw.example\r\n\r\n')
  const res = await c.response('GET')
  assert.equal(res.status, 200)
  assert.equal(res.chunked, false, 'an HTTP/1.0 client cannot read chunked')
  assert.equal(res.body.toString(), 'part one, part two')
  await c.closedByServer()
  assert.equal(up.seen[0].url, '/h/old')
  assert.equal(up.seen[0].headers['x-forwarded-host'], 'gw.example')
})

test('HTTP/1.0 client without Host: the request is served (Host is optional in HTTP/1.0), and no empty or bogus X-Forwarded-Host goes upstream', { timeout: 10_000 }, async (t) => {
  const up = await recordingUpstream(t, (_req, res) => res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 }).end('ok'))
  const gw = await gatewayFor(t, { routes: [{ prefix: '/', upstream: up.url, websocket: false }] })
  const c = await RawHttp.open(gw.port, t)
  c.write('GET /old HTTP/1.0\r\n\r\n')
  const res = await c.response('GET')
  assert.equal(res.status, 200)
  assert.equal(res.body.toString(), 'ok')
  assert.equal(up.seen.length, 1)
  assert.equal(up.seen[0].headers.host, new URL(up.url).host)
  const xfh = up.seen[0].headers['x-forwarded-host']
  assert.ok(xfh === undefined || (xfh !== '' && xfh !== 'undefined'), `X-Forwarded-Host: ${JSON.stringify(xfh)}`)
})

test('HTTP/1.0 client with Connection: keep-alive: the answer has a length and says keep-alive, and a second request on the connection is answered', { timeout: 10_000 }, async (t) => {
  const up = await recordingUpstream(t, (req, res) => { const body = `answer to ${req.url}`; res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) }).end(body) })
  const gw = await gatewayFor(t, route(up.url))
  const c = await RawHttp.open(gw.port, t)
  for (const path of ['/h/one', '/h/two']) {
    c.write(`GET ${path} HTTP/1.0\r\nHost: gw.example\r\nConnection: keep-alive\r\n\r\n`)
    const res = await c.response('GET')
    assert.equal(res.status, 200)
    assert.equal(res.chunked, false)
    assert.equal(res.body.toString(), `answer to ${path}`)
    assert.match(res.headers.connection ?? '', /keep-alive/i)
  }
})
