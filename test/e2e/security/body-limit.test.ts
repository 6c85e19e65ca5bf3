/**
 * Request body limits (`server.maxBodySize`, a route's `maxBodySize`): a larger body gets 413 and
 * the upstream never sees a complete request. A declared Content-Length over the limit is refused
 * before the upstream is contacted; a chunked body is counted as it streams (it still streams:
 * the upstream gets the first bytes before the client has sent the rest) and, past the limit, the
 * upstream request is aborted mid-body. The upstream here records, per request, the bytes it got
 * and whether the request ended or was cut off.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { buildGateway } from '../../../src/gateway/app.js'
import { gatewayFor, type TestGateway } from '../../helpers/gateway.js'
import { waitFor } from '../../helpers/resources.js'
import type { GatewayConfigInput } from '../../../src/config/schema.js'

/** What the upstream saw of one request. */
interface Seen {
  url: string
  headers: IncomingHttpHeaders
  bytes: number
  /** 'end': the whole body arrived; 'aborted': the connection went before it did. */
  outcome: Promise<'end' | 'aborted'>
  /** Resolves once `bytes` reaches n. */
  reached (n: number): Promise<void>
}

interface RecordingUpstream {
  url: string
  seen: Seen[]
  /** TCP connections the upstream accepted. */
  connections: number
  nextRequest (): Promise<Seen>
}

/**
 * An upstream that answers once the body has ended (`early`: it answers 200 with the first body
 * bytes at once, and keeps its answer open until the body ends).
 */
async function recordingUpstream (t: TestContext, opts: { early?: boolean } = {}): Promise<RecordingUpstream> {
  const waiters: Array<(s: Seen) => void> = []
  const up: RecordingUpstream = { url: '', seen: [], connections: 0, nextRequest: async () => await new Promise<Seen>((resolve) => waiters.push(resolve)) }
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let bytes = 0
    const thresholds: Array<{ n: number, resolve: () => void }> = []
    const outcome = new Promise<'end' | 'aborted'>((resolve) => {
      req.on('end', () => resolve('end'))
      req.on('close', () => { if (!req.complete) resolve('aborted') })
    })
    const seen: Seen = {
      url: req.url ?? '',
      headers: req.headers,
      get bytes () { return bytes },
      outcome,
      reached: async (n) => { if (bytes < n) await new Promise<void>((resolve) => thresholds.push({ n, resolve })) }
    }
    up.seen.push(seen)
    waiters.shift()?.(seen)
    req.on('error', () => {})
    res.on('error', () => {})
    if (opts.early === true) {
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.write('started ')
    }
    req.on('data', (c: Buffer) => {
      bytes += c.length
      for (const th of thresholds.splice(0)) { if (bytes >= th.n) th.resolve(); else thresholds.push(th) }
    })
    req.on('end', () => {
      if (opts.early !== true) res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ bytes }))
    })
  })
  const sockets = new Set<Socket>()
  server.on('connection', (s: Socket) => { up.connections++; sockets.add(s); s.on('close', () => sockets.delete(s)) })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  up.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  t.after(async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return up
}

interface RawAnswer { status: number, head: string, body: string }

/**
 * A client on a raw socket, to send exactly what a test says and see exactly what comes back:
 * `send` writes more of the request, `answer` resolves with the status line's code, the head and
 * what followed, once the gateway has closed the socket.
 */
function rawClient (port: number): { socket: Socket, send: (s: string | Buffer) => void, answer: Promise<RawAnswer> } {
  const socket = netConnect(port, '127.0.0.1')
  socket.on('error', () => {})
  let data = ''
  const answer = new Promise<RawAnswer>((resolve, reject) => {
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`no answer: ${JSON.stringify(data)}`)) }, 10_000)
    const done = (): void => {
      clearTimeout(timer)
      const i = data.indexOf('\r\n\r\n')
      const head = i === -1 ? data : data.slice(0, i)
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), head, body: i === -1 ? '' : data.slice(i + 4) })
    }
    socket.setEncoding('latin1')
    socket.on('data', (s: string) => { data += s })
    socket.on('close', done)
  })
  return { socket, send: (s) => { socket.write(s) }, answer }
}

function chunk (payload: string): string {
  return `${Buffer.byteLength(payload).toString(16)}\r\n${payload}\r\n`
}

const LIMIT = 1000

/** The route's limit through the configuration. */
async function configured (t: TestContext, up: RecordingUpstream, config: Partial<GatewayConfigInput> = {}): Promise<TestGateway> {
  return await gatewayFor(t, { server: { maxBodySize: LIMIT }, routes: [{ prefix: '/api', upstream: up.url }], ...config })
}

/**
 * Every request the gateway started towards a target has been counted finished once its answer
 * closed (the least-connections load), refused bodies included.
 */
async function noneInFlight (gw: TestGateway): Promise<void> {
  const inFlight = (): number => [...gw.app.upstreamPools.values()].reduce((n, pool) => n + pool.state().reduce((m, target) => m + target.inFlight, 0), 0)
  await waitFor(() => inFlight() === 0, () => `${inFlight()} requests still counted in flight`)
}

function assertTooLarge (a: RawAnswer, limit = LIMIT): void {
  assert.equal(a.status, 413, a.head)
  assert.match(a.head, /\r\ncontent-type: application\/json/i)
  assert.match(a.head, /\r\nconnection: close/i)
  const body = JSON.parse(a.body) as { code: string, statusCode: number, message: string }
  assert.equal(body.code, 'GW_ERR_BODY_TOO_LARGE')
  assert.equal(body.statusCode, 413)
  assert.match(body.message, new RegExp(`${limit} bytes`))
}

test('a Content-Length over the limit: 413 before the upstream is contacted at all', { timeout: 30_000 }, async (t) => {
  const up = await recordingUpstream(t)
  const gw = await configured(t, up)
  // Only the head is sent: the gateway answers without waiting for the body.
  const c = rawClient(gw.port)
  c.send(`POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Type: application/octet-stream\r\nContent-Length: ${LIMIT + 1}\r\n\r\n`)
  assertTooLarge(await c.answer)
  // With the whole body sent too.
  const d = rawClient(gw.port)
  d.send(`PUT /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: ${10 * LIMIT}\r\n\r\n${'x'.repeat(10 * LIMIT)}`)
  assertTooLarge(await d.answer)
  assert.equal(up.connections, 0, 'the upstream was never connected to')
  assert.equal(up.seen.length, 0)
  // At the limit exactly, the body goes through whole.
  const e = rawClient(gw.port)
  e.send(`POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: ${LIMIT}\r\nConnection: close\r\n\r\n${'y'.repeat(LIMIT)}`)
  const ok = await e.answer
  assert.equal(ok.status, 200, ok.head)
  assert.equal(up.seen.length, 1)
  assert.equal(up.seen[0].bytes, LIMIT)
  assert.equal(await up.seen[0].outcome, 'end')
  await noneInFlight(gw)
})

test('a chunked body going past the limit: the upstream request is aborted mid-body and the client gets 413', { timeout: 30_000 }, async (t) => {
  const up = await recordingUpstream(t)
  const gw = await configured(t, up)
  const c = rawClient(gw.port)
  c.send('POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n')
  c.send(chunk('a'.repeat(600)))
  // Still streaming: the upstream has the first 600 bytes while the client has sent no more.
  const seen = await up.nextRequest()
  await seen.reached(600)
  c.send(chunk('b'.repeat(600)))
  assertTooLarge(await c.answer)
  assert.equal(await seen.outcome, 'aborted', 'the upstream never saw the request end')
  assert.equal(seen.bytes, 600, 'the chunk that went past the limit was not forwarded')
  assert.equal(up.seen.length, 1)
  await noneInFlight(gw)
})

test('a chunked body over the limit in one write, before the upstream connection is even up: never a complete request', { timeout: 30_000 }, async (t) => {
  const up = await recordingUpstream(t)
  const gw = await configured(t, up)
  for (let i = 0; i < 5; i++) {
    const c = rawClient(gw.port)
    c.send('POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n' + chunk('h'.repeat(3 * LIMIT)) + '0\r\n\r\n')
    assertTooLarge(await c.answer)
  }
  // Whatever reached the upstream (at most a cut-off request) never ended.
  for (const s of up.seen) {
    assert.equal(await s.outcome, 'aborted')
    assert.ok(s.bytes <= LIMIT, `${s.bytes} bytes`)
  }
})

test('a chunked body at or under the limit streams through whole', { timeout: 30_000 }, async (t) => {
  const up = await recordingUpstream(t)
  const gw = await configured(t, up)
  const c = rawClient(gw.port)
  c.send('POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n')
  c.send(chunk('a'.repeat(400)))
  const seen = await up.nextRequest()
  await seen.reached(400)
  c.send(chunk('b'.repeat(LIMIT - 400)) + '0\r\n\r\n')
  const a = await c.answer
  assert.equal(a.status, 200, a.head)
  assert.equal(await seen.outcome, 'end')
  assert.equal(seen.bytes, LIMIT)
})

test('past the limit after the upstream\'s answer has started: the client connection is closed, the upstream request aborted', { timeout: 30_000 }, async (t) => {
  const up = await recordingUpstream(t, { early: true })
  const gw = await configured(t, up)
  const c = rawClient(gw.port)
  c.send('POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n')
  c.send(chunk('a'.repeat(600)))
  const seen = await up.nextRequest()
  await seen.reached(600)
  c.send(chunk('b'.repeat(600)))
  const a = await c.answer
  assert.equal(a.status, 200, 'the answer had started')
  assert.ok(!a.body.endsWith('0\r\n\r\n'), `the chunked answer was cut off, not completed: ${JSON.stringify(a.body)}`)
  assert.equal(await seen.outcome, 'aborted')
  assert.equal(seen.bytes, 600)
})

test('a route\'s own maxBodySize wins over server.maxBodySize; without either, bodies are unlimited', { timeout: 30_000 }, async (t) => {
  const up = await recordingUpstream(t)
  const gw = await gatewayFor(t, {
    server: { maxBodySize: '1kb' },
    routes: [{ prefix: '/small', upstream: up.url, maxBodySize: 100 }, { prefix: '/big', upstream: up.url, maxBodySize: '4kb' }, { prefix: '/api', upstream: up.url }]
  })
  const post = async (path: string, n: number): Promise<number> => {
    const c = rawClient(gw.port)
    c.send(`POST ${path} HTTP/1.1\r\nHost: a\r\nContent-Length: ${n}\r\nConnection: close\r\n\r\n${'z'.repeat(n)}`)
    return (await c.answer).status
  }
  assert.equal(await post('/small/x', 101), 413)
  assert.equal(await post('/small/x', 100), 200)
  assert.equal(await post('/api/x', 1025), 413)
  assert.equal(await post('/api/x', 1024), 200)
  assert.equal(await post('/big/x', 4096), 200)
  assert.equal(await post('/big/x', 4097), 413)
  assert.deepEqual(up.seen.map((s) => s.bytes), [100, 1024, 4096])

  const unlimited = await recordingUpstream(t)
  const open = await gatewayFor(t, { routes: [{ prefix: '/api', upstream: unlimited.url }] })
  const c = rawClient(open.port)
  const big = 'q'.repeat(256 * 1024)
  c.send('POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n')
  for (let i = 0; i < 8; i++) c.send(chunk(big))
  c.send('0\r\n\r\n')
  assert.equal((await c.answer).status, 200)
  assert.equal(unlimited.seen[0].bytes, 8 * big.length)
})

test('a keep-alive client refused with 413 gets its connection closed; node:http sees the 413', { timeout: 30_000 }, async (t) => {
  const up = await recordingUpstream(t)
  const gw = await configured(t, up)
  const res = await new Promise<{ status: number, body: string, connection: string | undefined }>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: gw.port, method: 'POST', path: '/api/x', headers: { 'content-length': LIMIT * 2 }, signal: AbortSignal.timeout(10_000) }, (r) => {
      let body = ''
      r.setEncoding('utf8')
      r.on('data', (s: string) => { body += s })
      r.on('end', () => resolve({ status: r.statusCode ?? 0, body, connection: r.headers.connection }))
    })
    req.on('error', reject)
    req.end('x'.repeat(LIMIT * 2))
  })
  assert.equal(res.status, 413)
  assert.equal(res.connection, 'close')
  assert.equal((JSON.parse(res.body) as { code: string }).code, 'GW_ERR_BODY_TOO_LARGE')
  assert.equal(up.connections, 0)
})

/**
 * A custom route plugin that calls fastify.proxyHttp with maxBodySize itself (as users' plugins
 * may): the limit works the same without a configured route.
 */
test('fastify.proxyHttp with maxBodySize from a custom route plugin', { timeout: 30_000 }, async (t) => {
  const up = await recordingUpstream(t)
  const app: FastifyInstance = await buildGateway({ server: { host: '127.0.0.1', port: 0 } }, { logger: false })
  t.after(() => app.close())
  await app.register(async function customProxy (scope) {
    // Bodies pass through as streams, as in the gateway's own proxy scope.
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser('*', (_req, payload, done) => { done(null, payload) })
    scope.post('/custom/*', (request, reply) => scope.proxyHttp(request, reply, { origin: up.url, path: '/custom', maxBodySize: 50 }))
    scope.post('/open/*', (request, reply) => scope.proxyHttp(request, reply, { origin: up.url, path: '/open', maxBodySize: null }))
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const port = (app.server.address() as AddressInfo).port

  const declared = rawClient(port)
  declared.send(`POST /custom/x HTTP/1.1\r\nHost: a\r\nContent-Length: 51\r\n\r\n${'d'.repeat(51)}`)
  assertTooLarge(await declared.answer, 50)
  assert.equal(up.connections, 0)

  const chunked = rawClient(port)
  chunked.send('POST /custom/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n' + chunk('e'.repeat(30)))
  const seen = await up.nextRequest()
  await seen.reached(30)
  chunked.send(chunk('f'.repeat(30)))
  assertTooLarge(await chunked.answer, 50)
  assert.equal(await seen.outcome, 'aborted')
  assert.equal(seen.bytes, 30)

  const open = rawClient(port)
  open.send('POST /open/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n' + chunk('g'.repeat(3000)) + '0\r\n\r\n')
  assert.equal((await open.answer).status, 200)
  assert.equal(up.seen[1].bytes, 3000)
  assert.equal(await up.seen[1].outcome, 'end')
})
