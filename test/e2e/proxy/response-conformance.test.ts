/**
 * The response side of the HTTP/1.1 proxy (RFC 9110 7.6, RFC 9112): hop-by-hop headers of the
 * upstream's answer (Connection and the names it lists, Keep-Alive, Proxy-Authenticate,
 * Proxy-Connection, Transfer-Encoding, Upgrade) never reach the client; the gateway appends
 * itself to Via; HEAD, 204 and 304 answers carry no body whatever the upstream sends; trailers of
 * a chunked answer reach an HTTP/1.1 client that sent `TE: trailers`; an HTTP/1.0 client gets an
 * answer it can read (no chunked coding, the body up to the connection's end or its
 * Content-Length).
 *
 * The upstream is a raw TCP server writing exact bytes, and the client a raw socket reading them.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { request as httpRequest } from 'node:http'
import { connect as netConnect, createServer, type AddressInfo, type Socket } from 'node:net'
import { gatewayFor, type TestGateway } from '../../helpers/gateway.js'

/** Raw answers by request path; each ends its connection (`Connection: close`). */
const ANSWERS: Record<string, string> = {
  '/hop': [
    'HTTP/1.1 200 OK',
    'Content-Type: text/plain',
    'Connection: close, X-Secret, x-other',
    'X-Secret: must-not-pass',
    'X-Other: nor-this',
    'Keep-Alive: timeout=5, max=100',
    'Proxy-Authenticate: Basic realm="upstream"',
    'Proxy-Connection: keep-alive',
    'Upgrade: h2c',
    'X-Kept: yes',
    'Content-Length: 2',
    '', 'ok'
  ].join('\r\n'),
  // The same, with names in cases no table knows (field names are case-insensitive).
  '/hop-case': [
    'HTTP/1.1 200 OK',
    'cOnNeCtIoN: close, X-sEcReT',
    'x-SECRET: must-not-pass',
    'KEEP-ALIVE: timeout=5',
    'pRoXy-CoNnEcTiOn: keep-alive',
    'VIA: 1.0 fred',
    'X-KEPT: yes',
    'CONTENT-LENGTH: 2',
    '', 'ok'
  ].join('\r\n'),
  // Names the gateway sets itself (a rate-limited route), sent by the upstream in other cases.
  '/own-case': [
    'HTTP/1.1 200 OK',
    'X-RATELIMIT-LIMIT: 999',
    'x-RateLimit-Remaining: 999',
    'X-KEPT: yes',
    // No Connection header: nothing listed, so only the gateway's own names make each name compared.
    'Content-Length: 2',
    '', 'ok'
  ].join('\r\n'),
  '/chunked': [
    'HTTP/1.1 200 OK',
    'Content-Type: text/plain',
    'Transfer-Encoding: chunked',
    'Connection: close',
    '', '6', 'hello ', '5', 'world', '0', '', ''
  ].join('\r\n'),
  '/via': [
    'HTTP/1.1 200 OK',
    'Via: 1.0 fred, 1.1 p.example.net',
    'Via: 1.1 third',
    'Content-Length: 0',
    'Connection: close',
    '', ''
  ].join('\r\n'),
  '/no-via': 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n',
  // Bodies where none may be: the upstream's extra bytes must never reach the client.
  '/204': 'HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nConnection: close\r\n\r\nBOGUS',
  '/204-plain': 'HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\nBOGUS',
  '/304': 'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nBOGUS\r\n0\r\n\r\n',
  '/head': 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nConnection: close\r\n\r\n',
  '/trailers': [
    'HTTP/1.1 200 OK',
    'Content-Type: text/plain',
    'Transfer-Encoding: chunked',
    'Trailer: X-Checksum, X-Status',
    'Connection: close',
    '', '6', 'hello ', '5', 'world', '0',
    'X-Checksum: sha256=abc',
    'X-Status: done',
    'Keep-Alive: timeout=1',
    '', ''
  ].join('\r\n'),
  // A Trailer header on an answer that cannot carry trailers (it has a Content-Length).
  '/trailer-with-length': 'HTTP/1.1 200 OK\r\nTrailer: X-Checksum\r\nContent-Length: 5\r\nConnection: close\r\n\r\nfixed'
}

async function rawUpstream (t: TestContext): Promise<{ url: string, methods: string[] }> {
  const methods: string[] = []
  const server = createServer((socket: Socket) => {
    socket.on('error', () => {})
    let head = ''
    socket.setEncoding('latin1')
    socket.on('data', (s: string) => {
      head += s
      if (!head.includes('\r\n\r\n')) return
      const [method, path] = head.split(' ', 2)
      methods.push(method)
      const answer = ANSWERS[path.split('?')[0]] ?? 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'
      // A HEAD answer is the head alone.
      socket.end(method === 'HEAD' ? answer.slice(0, answer.indexOf('\r\n\r\n') + 4) : answer)
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, methods }
}

/** Writes `request` (one or more requests) on a new socket and returns all that came back until the gateway closed it. */
function raw (gw: TestGateway, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(gw.port, '127.0.0.1')
    let out = ''
    socket.setEncoding('latin1')
    socket.setTimeout(10_000, () => { socket.destroy(); reject(new Error(`no end of answer: ${JSON.stringify(out)}`)) })
    socket.on('data', (s: string) => { out += s })
    socket.on('close', () => resolve(out))
    socket.on('error', reject)
    socket.write(request)
  })
}

interface Parsed { status: number, version: string, headers: Array<[string, string]>, rest: string }

function parse (text: string): Parsed {
  const i = text.indexOf('\r\n\r\n')
  assert.ok(i !== -1, `no head in ${JSON.stringify(text)}`)
  const [statusLine, ...lines] = text.slice(0, i).split('\r\n')
  const m = /^HTTP\/(1\.[01]) (\d{3})/.exec(statusLine)
  assert.ok(m !== null, statusLine)
  return {
    version: m[1],
    status: Number(m[2]),
    headers: lines.map((l) => { const c = l.indexOf(':'); return [l.slice(0, c).toLowerCase(), l.slice(c + 1).trim()] as [string, string] }),
    rest: text.slice(i + 4)
  }
}

function header (p: Parsed, name: string): string[] {
  return p.headers.filter(([n]) => n === name).map(([, v]) => v)
}

function get (path: string, opts: { method?: string, version?: string, extra?: string } = {}): string {
  return `${opts.method ?? 'GET'} ${path} HTTP/${opts.version ?? '1.1'}\r\nHost: gw\r\n${opts.extra ?? ''}Connection: close\r\n\r\n`
}

async function setup (t: TestContext): Promise<{ gw: TestGateway, up: { url: string, methods: string[] } }> {
  const up = await rawUpstream(t)
  const gw = await gatewayFor(t, { routes: [{ prefix: '/', upstream: up.url }] })
  return { gw, up }
}

test('hop-by-hop headers of the answer, and the names its Connection lists, do not reach the client', { timeout: 30_000 }, async (t) => {
  const { gw } = await setup(t)
  const p = parse(await raw(gw, get('/hop')))
  assert.equal(p.status, 200)
  const names = p.headers.map(([n]) => n)
  for (const name of ['x-secret', 'x-other', 'keep-alive', 'proxy-authenticate', 'proxy-connection', 'upgrade', 'transfer-encoding']) {
    assert.ok(!names.includes(name), `${name} passed to the client`)
  }
  assert.deepEqual(header(p, 'x-kept'), ['yes'])
  // The only Connection header is the gateway's own, about its own connection to the client.
  assert.deepEqual(header(p, 'connection'), ['close'])
  assert.equal(p.rest, 'ok')
})

test('hop-by-hop headers of the answer are dropped whatever the case of their names', { timeout: 30_000 }, async (t) => {
  const { gw } = await setup(t)
  const text = await raw(gw, get('/hop-case'))
  const p = parse(text)
  assert.equal(p.status, 200)
  const names = p.headers.map(([n]) => n)
  for (const name of ['x-secret', 'keep-alive', 'proxy-connection']) assert.ok(!names.includes(name), `${name} passed to the client`)
  assert.ok(!text.includes('must-not-pass'))
  // Kept names keep the upstream's spelling; VIA is merged into the gateway's Via.
  assert.ok(text.includes('\r\nX-KEPT: yes\r\n'), text)
  assert.deepEqual(header(p, 'via'), ['1.0 fred, 1.1 tollgate'])
  assert.deepEqual(header(p, 'content-length'), ['2'])
  assert.deepEqual(header(p, 'connection'), ['close'])
  assert.equal(p.rest, 'ok')
})

test('headers the gateway sets itself win over the upstream\'s, whatever the case of the upstream\'s names', { timeout: 30_000 }, async (t) => {
  const up = await rawUpstream(t)
  const gw = await gatewayFor(t, { routes: [{ prefix: '/', upstream: up.url, rateLimit: { http: { max: 5, window: '1m' } } }] })
  const text = await raw(gw, get('/own-case'))
  const p = parse(text)
  assert.equal(p.status, 200)
  assert.deepEqual(header(p, 'x-ratelimit-limit'), ['5'])
  assert.deepEqual(header(p, 'x-ratelimit-remaining'), ['4'])
  assert.ok(!text.includes('999'), text)
  assert.ok(text.includes('\r\nX-KEPT: yes\r\n'), text)
  assert.equal(p.rest, 'ok')
})

test('the upstream\'s Transfer-Encoding is not passed on: the gateway frames the body itself', { timeout: 30_000 }, async (t) => {
  const { gw } = await setup(t)
  const p = parse(await raw(gw, get('/chunked')))
  // Node's own chunked coding towards this HTTP/1.1 client, once, re-framed.
  assert.deepEqual(header(p, 'transfer-encoding'), ['chunked'])
  assert.equal(p.rest, '6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n')
})

test('Via: the gateway appends "1.1 tollgate" to the upstream\'s Via', { timeout: 30_000 }, async (t) => {
  const { gw } = await setup(t)
  assert.deepEqual(header(parse(await raw(gw, get('/via'))), 'via'), ['1.0 fred, 1.1 p.example.net, 1.1 third, 1.1 tollgate'])
  assert.deepEqual(header(parse(await raw(gw, get('/no-via'))), 'via'), ['1.1 tollgate'])
})

test('HEAD, 204 and 304 answers have no body, whatever the upstream sends after the head', { timeout: 30_000 }, async (t) => {
  const { gw, up } = await setup(t)
  // Each is followed by a second request on the same connection: the next bytes after the head
  // must be the second answer's status line, nothing in between.
  for (const [path, method, status] of [['/head', 'HEAD', 200], ['/204', 'GET', 204], ['/204-plain', 'DELETE', 204], ['/304', 'GET', 304], ['/trailers', 'HEAD', 200]] as const) {
    const text = await raw(gw, `${method} ${path} HTTP/1.1\r\nHost: gw\r\nTE: trailers\r\n\r\n` + get('/no-via'))
    const first = parse(text)
    assert.equal(first.status, status, path)
    assert.ok(first.rest.startsWith('HTTP/1.1 200 OK\r\n'), `${method} ${path}: bytes after the head: ${JSON.stringify(first.rest.slice(0, 40))}`)
    assert.ok(!text.includes('BOGUS'), path)
    assert.deepEqual(header(first, 'transfer-encoding'), [], path)
    assert.deepEqual(header(first, 'trailer'), [], `${path}: no Trailer header on an answer without a body`)
    if (path === '/head') assert.deepEqual(header(first, 'content-length'), ['11'], 'HEAD keeps the Content-Length the GET would have')
    if (path === '/304') assert.deepEqual(header(first, 'etag'), ['"v1"'])
  }
  assert.ok(up.methods.includes('HEAD'), 'HEAD went upstream as HEAD')
})

test('trailers of a chunked answer reach an HTTP/1.1 client that takes them (TE: trailers); hop-by-hop trailer fields do not', { timeout: 30_000 }, async (t) => {
  const { gw } = await setup(t)
  const p = parse(await raw(gw, get('/trailers', { extra: 'TE: trailers\r\n' })))
  assert.deepEqual(header(p, 'trailer'), ['X-Checksum, X-Status'])
  assert.deepEqual(header(p, 'transfer-encoding'), ['chunked'])
  assert.equal(p.rest, '6\r\nhello \r\n5\r\nworld\r\n0\r\nX-Checksum: sha256=abc\r\nX-Status: done\r\n\r\n')
  // node:http, as a client, sees them as trailers.
  const { body, trailers } = await new Promise<{ body: string, trailers: NodeJS.Dict<string> }>((resolve, reject) => {
    httpRequest({ host: '127.0.0.1', port: gw.port, path: '/trailers', headers: { te: 'deflate;q=0.5, trailers' }, signal: AbortSignal.timeout(10_000) }, (res) => {
      let b = ''
      res.setEncoding('utf8')
      res.on('data', (s: string) => { b += s })
      res.on('end', () => resolve({ body: b, trailers: res.trailers }))
    }).on('error', reject).end()
  })
  assert.equal(body, 'hello world')
  assert.deepEqual(trailers, { 'x-checksum': 'sha256=abc', 'x-status': 'done' })
  // A client that did not say it takes trailers gets the body without them (and no Trailer header).
  const plain = parse(await raw(gw, get('/trailers')))
  assert.deepEqual(header(plain, 'trailer'), [])
  assert.equal(plain.rest, '6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n')
  // A Trailer header on an answer with a Content-Length: not passed on (it could not be honoured), no failure.
  const fixed = parse(await raw(gw, get('/trailer-with-length', { extra: 'TE: trailers\r\n' })))
  assert.equal(fixed.status, 200)
  assert.deepEqual(header(fixed, 'trailer'), [])
  assert.equal(fixed.rest, 'fixed')
})

test('an HTTP/1.0 client gets an answer it can read: no chunked coding, no trailers', { timeout: 30_000 }, async (t) => {
  const { gw } = await setup(t)
  for (const path of ['/chunked', '/trailers']) {
    const p = parse(await raw(gw, `GET ${path} HTTP/1.0\r\nHost: gw\r\nTE: trailers\r\n\r\n`))
    assert.equal(p.status, 200, path)
    assert.deepEqual(header(p, 'transfer-encoding'), [], path)
    assert.deepEqual(header(p, 'trailer'), [], path)
    // The body is delimited by the end of the connection.
    assert.deepEqual(header(p, 'connection'), ['close'], path)
    assert.equal(p.rest, 'hello world', path)
  }
  const withLength = parse(await raw(gw, 'GET /hop HTTP/1.0\r\nHost: gw\r\n\r\n'))
  assert.deepEqual(header(withLength, 'content-length'), ['2'])
  assert.equal(withLength.rest, 'ok')
  // HEAD from an HTTP/1.0 client: the head alone.
  const head = parse(await raw(gw, 'HEAD /trailers HTTP/1.0\r\nHost: gw\r\nTE: trailers\r\n\r\n'))
  assert.equal(head.status, 200)
  assert.equal(head.rest, '')
})
