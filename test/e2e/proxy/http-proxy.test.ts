/**
 * The HTTP reverse proxy end to end (spec sections 1-3, 7): what passes through and what does
 * not, prefix matching and rewriting, upstream failures, streaming of large bodies, /health and
 * /ready, and routes that serve only HTTP or only WebSocket. Real sockets on 127.0.0.1:0.
 */
import { describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { EventEmitter, once } from 'node:events'
import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { startUpstream, type TestUpstream } from '../../helpers/upstream.js'
import { gatewayFor as gateway } from '../../helpers/gateway.js'
import { closed, connect, HandshakeError, nextMessage } from '../../helpers/ws.js'

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const MiB = 1024 * 1024

interface Res { status: number, headers: IncomingHttpHeaders, body: Buffer }

/**
 * One HTTP request with node:http, which (unlike fetch) sends any header, including hop-by-hop
 * ones, and the raw path as given (no `..` normalisation).
 */
function request (url: string, opts: { method?: string, path?: string, headers?: OutgoingHttpHeaders, body?: string | Buffer, timeoutMs?: number } = {}): Promise<Res> {
  const u = new URL(url)
  const headers = { ...opts.headers }
  // node:http sends a DELETE/OPTIONS body without any framing unless told its length.
  if (opts.body !== undefined && headers['content-length'] === undefined && headers['transfer-encoding'] === undefined) {
    headers['content-length'] = Buffer.byteLength(opts.body)
  }
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: u.hostname,
      port: u.port,
      method: opts.method ?? 'GET',
      path: opts.path ?? `${u.pathname}${u.search}`,
      headers,
      signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000)
    }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(opts.body)
  })
}

function json<T = Record<string, unknown>> (res: Res): T {
  return JSON.parse(res.body.toString()) as T
}

interface Seen { name: string, method: string, url: string, headers: IncomingHttpHeaders, body: string }

/** An upstream that answers with a JSON record of the request and counts what it got. */
async function namedUpstream (t: TestContext, name: string): Promise<TestUpstream & { seen: Seen[] }> {
  const seen: Seen[] = []
  const up = await startUpstream({
    http: (req, res, body) => {
      const s = { name, method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: body.toString('base64') }
      seen.push(s)
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify(s))
    }
  })
  t.after(() => up.close())
  return Object.assign(up, { seen })
}

describe('HTTP pass-through', () => {
  test('method, path, query and body reach the upstream unchanged', { timeout: 30_000 }, async (t) => {
    const up = await namedUpstream(t, 'up')
    const gw = await gateway(t, { routes: [{ prefix: '/api', upstream: up.url }] })
    const binary = randomBytes(4096)
    const cases: Array<{ method: string, body?: Buffer, type?: string }> = [
      { method: 'GET' },
      { method: 'HEAD' },
      { method: 'OPTIONS' },
      { method: 'POST', body: Buffer.from('{"a":1}'), type: 'application/json' },
      { method: 'PUT', body: binary, type: 'application/octet-stream' },
      { method: 'PATCH', body: Buffer.from('a=1&b=2'), type: 'application/x-www-form-urlencoded' },
      { method: 'DELETE', body: Buffer.from('gone'), type: 'text/plain' },
      { method: 'DELETE' },
      // A body with no content-type at all is still forwarded, not parsed or refused.
      { method: 'POST', body: Buffer.from('untyped') }
    ]
    for (const c of cases) {
      const path = '/api/items/a%20b/%E2%9C%93?q=1&q=2&empty=&enc=%2F%26x&plus=a+b'
      const headers: OutgoingHttpHeaders = c.type !== undefined ? { 'content-type': c.type } : {}
      const res = await request(gw.url, { method: c.method, path, headers, body: c.body })
      const label = `${c.method} ${c.type ?? '(no body type)'}`
      assert.equal(res.status, 200, label)
      const s = up.seen.at(-1)!
      assert.equal(s.method, c.method, label)
      assert.equal(s.url, path, label)
      assert.equal(Buffer.from(s.body, 'base64').toString('hex'), (c.body ?? Buffer.alloc(0)).toString('hex'), label)
      if (c.type !== undefined) assert.equal(s.headers['content-type'], c.type, label)
      if (c.method === 'HEAD') assert.equal(res.body.length, 0, label)
      else assert.equal(json<Seen>(res).method, c.method, label)
    }
    assert.equal(up.seen.length, cases.length)
  })

  test('upstream status codes and bodies come back as they are', { timeout: 30_000 }, async (t) => {
    const up = await startUpstream({
      http: (req, res) => {
        const status = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('status'))
        if (status === 204) { res.writeHead(204).end(); return }
        if (status === 302) { res.writeHead(302, { location: '/elsewhere?x=1' }).end(); return }
        res.writeHead(status, { 'content-type': 'text/plain' }).end(`status ${status}`)
      }
    })
    t.after(() => up.close())
    const gw = await gateway(t, { routes: [{ prefix: '/s', upstream: up.url }] })
    for (const status of [201, 202, 400, 404, 409, 418, 500, 503]) {
      const res = await request(`${gw.url}/s?status=${status}`)
      assert.equal(res.status, status)
      assert.equal(res.body.toString(), `status ${status}`)
      assert.equal(res.headers['content-type'], 'text/plain')
    }
    const noContent = await request(`${gw.url}/s?status=204`)
    assert.equal(noContent.status, 204)
    assert.equal(noContent.body.length, 0)
    // Redirects are the client's business: passed back, not followed, Location untouched.
    const redirect = await request(`${gw.url}/s?status=302`)
    assert.equal(redirect.status, 302)
    assert.equal(redirect.headers.location, '/elsewhere?x=1')
  })

  test('request headers pass, X-Forwarded-* / X-Real-IP / X-Request-Id are set, hop-by-hop are dropped', { timeout: 30_000 }, async (t) => {
    const up = await namedUpstream(t, 'up')
    const gw = await gateway(t, { routes: [{ prefix: '/api', upstream: up.url }] })
    const res = await request(`${gw.url}/api/h`, {
      method: 'POST',
      body: 'with trailer',
      headers: {
        // Chunked, so that the client may announce trailers.
        'transfer-encoding': 'chunked',
        'x-custom': 'abc',
        authorization: 'Bearer not-a-jwt',
        cookie: 'a=1; b=2',
        'user-agent': 'tollgate-e2e',
        accept: 'text/plain',
        'accept-language': 'fr',
        'x-forwarded-for': '203.0.113.7',
        // Hop-by-hop: never forwarded, nor the custom header that Connection names.
        connection: 'keep-alive, X-Hop-Custom',
        'x-hop-custom': 'must-not-pass',
        'keep-alive': 'timeout=5',
        te: 'trailers',
        trailer: 'x-checksum',
        upgrade: 'h2c',
        'proxy-authorization': 'Basic c2VjcmV0',
        'proxy-connection': 'keep-alive'
      }
    })
    assert.equal(res.status, 200)
    assert.equal(Buffer.from(up.seen[0].body, 'base64').toString(), 'with trailer')
    const h = up.seen[0].headers
    assert.equal(h['x-custom'], 'abc')
    assert.equal(h.authorization, 'Bearer not-a-jwt')
    assert.equal(h.cookie, 'a=1; b=2')
    assert.equal(h['user-agent'], 'tollgate-e2e')
    assert.equal(h.accept, 'text/plain')
    assert.equal(h['accept-language'], 'fr')
    assert.equal(h['x-forwarded-for'], '203.0.113.7, 127.0.0.1')
    assert.equal(h['x-forwarded-proto'], 'http')
    assert.equal(h['x-forwarded-host'], `127.0.0.1:${gw.port}`)
    assert.equal(h['x-real-ip'], '127.0.0.1')
    assert.match(String(h['x-request-id']), UUID_RE)
    for (const name of ['x-hop-custom', 'keep-alive', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-connection']) {
      assert.equal(h[name], undefined, `${name} must not be forwarded`)
    }
    // The gateway's own connection to the upstream may say keep-alive; never the client's token list.
    assert.doesNotMatch(String(h.connection ?? ''), /x-hop-custom/i)

    // Without a client X-Forwarded-For the gateway starts the list; several are joined in order.
    await request(`${gw.url}/api/h2`)
    assert.equal(up.seen[1].headers['x-forwarded-for'], '127.0.0.1')
    await request(`${gw.url}/api/h3`, { headers: { 'x-forwarded-for': ['198.51.100.1', '198.51.100.2'] } })
    assert.equal(up.seen[2].headers['x-forwarded-for'], '198.51.100.1, 198.51.100.2, 127.0.0.1')
    // Each request gets its own id.
    assert.notEqual(up.seen[1].headers['x-request-id'], up.seen[2].headers['x-request-id'])
  })

  test('route headers are added upstream and win over the client\'s', { timeout: 30_000 }, async (t) => {
    const up = await namedUpstream(t, 'up')
    const gw = await gateway(t, {
      routes: [
        { prefix: '/tagged', upstream: up.url, headers: { 'X-Route-Tag': 'tagged', 'x-extra': 'from-route' } },
        { prefix: '/plain', upstream: up.url }
      ]
    })
    assert.equal((await request(`${gw.url}/tagged/a`, { headers: { 'x-extra': 'from-client' } })).status, 200)
    assert.equal(up.seen[0].headers['x-route-tag'], 'tagged')
    assert.equal(up.seen[0].headers['x-extra'], 'from-route')
    assert.equal((await request(`${gw.url}/plain/a`)).status, 200)
    assert.equal(up.seen[1].headers['x-route-tag'], undefined)
  })

  test('response headers pass back, hop-by-hop response headers do not', { timeout: 30_000 }, async (t) => {
    const up = await startUpstream({
      http: (_req, res) => {
        res.writeHead(200, {
          'content-type': 'text/plain; charset=utf-8',
          'x-upstream': 'yes',
          'set-cookie': ['a=1; Path=/', 'b=2; HttpOnly'],
          'cache-control': 'max-age=60',
          etag: '"v1"',
          // Hop-by-hop: meant for the gateway, not the client.
          connection: 'X-Hop-Resp',
          'x-hop-resp': 'must-not-pass',
          'keep-alive': 'timeout=1234, max=7',
          'proxy-authenticate': 'Basic realm="upstream"',
          trailer: 'x-checksum'
        })
        res.end('body')
      }
    })
    t.after(() => up.close())
    const gw = await gateway(t, { routes: [{ prefix: '/r', upstream: up.url }] })
    const res = await request(`${gw.url}/r`)
    assert.equal(res.status, 200)
    assert.equal(res.body.toString(), 'body')
    assert.equal(res.headers['content-type'], 'text/plain; charset=utf-8')
    assert.equal(res.headers['x-upstream'], 'yes')
    assert.deepEqual(res.headers['set-cookie'], ['a=1; Path=/', 'b=2; HttpOnly'])
    assert.equal(res.headers['cache-control'], 'max-age=60')
    assert.equal(res.headers.etag, '"v1"')
    assert.equal(res.headers['x-hop-resp'], undefined, 'a header named in the upstream\'s Connection must not pass')
    assert.equal(res.headers['proxy-authenticate'], undefined)
    assert.equal(res.headers.trailer, undefined)
    // The gateway's own server may send Keep-Alive for its hop; never the upstream's values.
    assert.doesNotMatch(String(res.headers['keep-alive'] ?? ''), /1234|max=7/)
    assert.doesNotMatch(String(res.headers.connection ?? ''), /x-hop-resp/i)
  })
})

describe('prefixes', () => {
  test('/chat matches /chat, /chat/ and /chat/x but not /chatroom', { timeout: 30_000 }, async (t) => {
    const up = await namedUpstream(t, 'chat')
    const gw = await gateway(t, { routes: [{ prefix: '/chat', upstream: up.url }] })
    for (const path of ['/chat', '/chat/', '/chat/x', '/chat/x/y', '/chat?x=1', '/chat/?x=1']) {
      const res = await request(`${gw.url}${path}`)
      assert.equal(res.status, 200, path)
      // rewritePrefix defaults to the prefix itself: the path goes upstream unchanged (like nginx).
      assert.equal(json<Seen>(res).url, path, path)
    }
    const before = up.seen.length
    for (const path of ['/chatroom', '/chatroom/x', '/chat-x', '/cha', '/']) {
      const res = await request(`${gw.url}${path}`)
      assert.equal(res.status, 404, path)
    }
    assert.equal(up.seen.length, before, 'no 404 path may reach the upstream')
  })

  test('/chat and /chatroom go to their own upstreams', { timeout: 30_000 }, async (t) => {
    const chat = await namedUpstream(t, 'chat')
    const room = await namedUpstream(t, 'room')
    const gw = await gateway(t, {
      upstreams: { rooms: { targets: [room.url] } },
      routes: [{ prefix: '/chat', upstream: chat.url }, { prefix: '/chatroom', upstream: 'rooms' }]
    })
    const expected: Array<[string, string]> = [['/chat', 'chat'], ['/chat/room', 'chat'], ['/chatroom', 'room'], ['/chatroom/x', 'room'], ['/chatroom/', 'room']]
    for (const [path, name] of expected) {
      const res = await request(`${gw.url}${path}`)
      assert.equal(res.status, 200, path)
      const s = json<Seen>(res)
      assert.equal(s.name, name, path)
      assert.equal(s.url, path, path)
    }
    assert.equal((await request(`${gw.url}/chatrooms`)).status, 404)
  })

  test('rewritePrefix: default keeps the path, "/" strips the prefix, "/v2" replaces it', { timeout: 30_000 }, async (t) => {
    const up = await namedUpstream(t, 'up')
    const gw = await gateway(t, {
      routes: [
        { prefix: '/keep', upstream: up.url },
        { prefix: '/strip', upstream: up.url, rewritePrefix: '/' },
        { prefix: '/swap', upstream: up.url, rewritePrefix: '/v2' },
        // A target URL with a base path: the rewritten path goes under it.
        { prefix: '/based', upstream: `${up.url}/base`, rewritePrefix: '/' }
      ]
    })
    const expected: Array<[string, string]> = [
      ['/keep', '/keep'], ['/keep/a/b?x=1', '/keep/a/b?x=1'],
      ['/strip', '/'], ['/strip/', '/'], ['/strip/a/b', '/a/b'], ['/strip/a?x=1&y=2', '/a?x=1&y=2'],
      ['/swap', '/v2'], ['/swap/', '/v2/'], ['/swap/a', '/v2/a'], ['/swap/a?x=1', '/v2/a?x=1'],
      ['/based/a', '/base/a'], ['/based', '/base']
    ]
    for (const [path, upstreamUrl] of expected) {
      const res = await request(`${gw.url}${path}`)
      assert.equal(res.status, 200, path)
      assert.equal(json<Seen>(res).url, upstreamUrl, path)
    }
  })

  test('a route "/" catches everything else; /health and /ready stay the gateway\'s', { timeout: 30_000 }, async (t) => {
    const api = await namedUpstream(t, 'api')
    const all = await namedUpstream(t, 'all')
    const gw = await gateway(t, { routes: [{ prefix: '/', upstream: all.url }, { prefix: '/api', upstream: api.url }] })
    for (const path of ['/', '/anything', '/deep/er/path?x=1', '/healthz', '/health/x', '/apix']) {
      const res = await request(`${gw.url}${path}`)
      assert.equal(res.status, 200, path)
      assert.equal(json<Seen>(res).name, 'all', path)
      assert.equal(json<Seen>(res).url, path, path)
    }
    assert.equal(json<Seen>(await request(`${gw.url}/api/x`)).name, 'api')
    const before = all.seen.length
    const health = await request(`${gw.url}/health`)
    assert.equal(health.status, 200)
    assert.deepEqual(json(health), { status: 'ok' })
    const ready = await request(`${gw.url}/ready`)
    assert.equal(ready.status, 200)
    assert.deepEqual(json(ready), { status: 'ready' })
    assert.equal(all.seen.length, before, '/health and /ready must not be proxied')
  })
})

describe('upstream failures', () => {
  test('nothing listening on the upstream port: 502 GW_ERR_UPSTREAM_UNAVAILABLE', { timeout: 30_000 }, async (t) => {
    const dead = createServer()
    await new Promise<void>((resolve) => dead.listen(0, '127.0.0.1', resolve))
    const port = (dead.address() as AddressInfo).port
    await new Promise<void>((resolve) => dead.close(() => resolve()))
    // One route (so one pool of targets) per method: each request is the first to find the
    // target down, before any back-off of the pool answers for it.
    const deadUrl = `http://127.0.0.1:${port}`
    const gw = await gateway(t, { routes: [{ prefix: '/down-get', upstream: deadUrl }, { prefix: '/down-post', upstream: deadUrl }] })
    for (const method of ['GET', 'POST']) {
      const res = await request(`${gw.url}/down-${method.toLowerCase()}/x`, { method, body: method === 'POST' ? 'payload' : undefined })
      assert.equal(res.status, 502, method)
      assert.match(String(res.headers['content-type']), /^application\/json/)
      const body = json<{ statusCode: number, code: string, message: string }>(res)
      assert.equal(body.code, 'GW_ERR_UPSTREAM_UNAVAILABLE', method)
      assert.equal(body.statusCode, 502)
    }
    // The gateway itself is fine.
    assert.equal((await request(`${gw.url}/health`)).status, 200)
  })

  test('an upstream that never answers: 504 GW_ERR_UPSTREAM_TIMEOUT after proxyTimeout', { timeout: 30_000 }, async (t) => {
    let arrived = 0
    const up = await startUpstream({ http: () => { arrived++ } }) // accepts, never answers
    t.after(() => up.close())
    const gw = await gateway(t, { server: { proxyTimeout: '300ms' }, routes: [{ prefix: '/slow', upstream: up.url }] })
    const started = performance.now()
    const res = await request(`${gw.url}/slow`)
    const elapsed = performance.now() - started
    assert.equal(res.status, 504)
    assert.match(String(res.headers['content-type']), /^application\/json/)
    assert.equal(json<{ code: string }>(res).code, 'GW_ERR_UPSTREAM_TIMEOUT')
    assert.equal(arrived, 1, 'the request reached the upstream')
    assert.ok(elapsed >= 250, `answered after ${elapsed} ms, before proxyTimeout`)
    assert.ok(elapsed < 10_000, `answered after ${elapsed} ms`)
  })
})

/** `gc()` without --expose-gc: the flag can be set at run time for contexts created afterwards. */
function getGc (): () => void {
  const g = (globalThis as { gc?: () => void }).gc
  if (typeof g === 'function') return g
  setFlagsFromString('--expose-gc')
  return runInNewContext('gc') as () => void
}

/**
 * Samples live memory (heap + ArrayBuffers, after a full GC) while `work` runs. The gateway,
 * client and upstream all run in this process, so a gateway that buffered a body would show
 * here. Returns the peak growth over the baseline, in bytes.
 */
async function peakGrowth (work: () => Promise<void>): Promise<number> {
  const gc = getGc()
  const live = (): number => { gc(); const m = process.memoryUsage(); return m.heapUsed + m.arrayBuffers }
  const baseline = live()
  let peak = baseline
  // A full GC per sample is costly: sample a few times a second (the streaming checks do the rest).
  const timer = setInterval(() => { peak = Math.max(peak, live()) }, 250)
  try {
    await work()
  } finally {
    clearInterval(timer)
  }
  return Math.max(peak, live()) - baseline
}

/**
 * An upstream that hashes and counts uploads without keeping them, and streams downloads: the
 * first half, then (once `gate` resolves) the rest.
 */
async function streamingUpstream (t: TestContext, downloadBytes: number, gate: Promise<void> = Promise.resolve()): Promise<{ url: string, progress: EventEmitter, received: () => number, sentHash: () => string }> {
  const progress = new EventEmitter()
  let received = 0
  let sentHash = ''
  const server: Server = createServer((req, res) => {
    if (req.url === '/big/upload') {
      const hash = createHash('sha256')
      let count = 0
      req.on('data', (c: Buffer) => { count += c.length; received = count; hash.update(c); progress.emit('bytes', count) })
      req.on('end', () => { res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ bytes: count, sha256: hash.digest('hex') })) })
      return
    }
    req.resume()
    const hash = createHash('sha256')
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    let sent = 0
    let gated = false
    const pump = (): void => {
      while (sent < downloadBytes) {
        if (!gated && sent >= downloadBytes / 2) { gated = true; void gate.then(pump); return }
        const chunk = randomBytes(Math.min(64 * 1024, downloadBytes - sent))
        sent += chunk.length
        hash.update(chunk)
        if (!res.write(chunk)) { res.once('drain', pump); return }
      }
      sentHash = hash.digest('hex')
      res.end()
    }
    pump()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, progress, received: () => received, sentHash: () => sentHash }
}

/** Resolves when `cond()` holds, re-checked on each `event` of `emitter`; rejects after `ms`. */
function waitFor (emitter: EventEmitter, event: string, cond: () => boolean, ms: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (cond()) { resolve(); return }
    const onEvent = (): void => { if (cond()) { cleanup(); resolve() } }
    const timer = setTimeout(() => { cleanup(); reject(new Error(`timed out waiting for ${what}`)) }, ms)
    const cleanup = (): void => { clearTimeout(timer); emitter.off(event, onEvent) }
    emitter.on(event, onEvent)
  })
}

describe('large bodies stream', () => {
  const SIZE = 64 * MiB

  test('a 64 MiB upload streams through without being buffered', { timeout: 100_000 }, async (t) => {
    const up = await streamingUpstream(t, 0)
    const gw = await gateway(t, { routes: [{ prefix: '/big', upstream: up.url }] })
    const u = new URL(gw.url)
    const hash = createHash('sha256')
    let answer: Res | undefined
    const growth = await peakGrowth(async () => {
      const req = httpRequest({ host: u.hostname, port: u.port, method: 'POST', path: '/big/upload', headers: { 'content-type': 'application/octet-stream' }, signal: AbortSignal.timeout(90_000) })
      const response = new Promise<Res>((resolve, reject) => {
        req.on('response', (res) => {
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => chunks.push(c))
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
        })
        req.on('error', reject)
      })
      let written = 0
      const write = async (upTo: number): Promise<void> => {
        while (written < upTo) {
          const chunk = randomBytes(64 * 1024)
          written += chunk.length
          hash.update(chunk)
          if (!req.write(chunk)) await Promise.race([once(req, 'drain'), response])
        }
      }
      await write(SIZE / 2)
      // Streaming, not store-and-forward: the upstream sees the first half before the client
      // sends the second one.
      await waitFor(up.progress, 'bytes', () => up.received() >= SIZE / 4, 30_000, 'the upstream to receive the first part of the body')
      await write(SIZE)
      req.end()
      answer = await response
    })
    assert.equal(answer?.status, 200)
    const got = json<{ bytes: number, sha256: string }>(answer!)
    assert.equal(got.bytes, SIZE)
    assert.equal(got.sha256, hash.digest('hex'))
    assert.ok(growth < 32 * MiB, `live memory grew by ${(growth / MiB).toFixed(1)} MiB during a ${SIZE / MiB} MiB upload`)
  })

  test('a 64 MiB download arrives intact and is not buffered', { timeout: 100_000 }, async (t) => {
    // Streaming, not store-and-forward: the upstream sends the second half only after the client
    // got part of the first.
    let openGate!: () => void
    const gate = new Promise<void>((resolve) => { openGate = resolve })
    const up = await streamingUpstream(t, SIZE, gate)
    const gw = await gateway(t, { routes: [{ prefix: '/big', upstream: up.url }] })
    const u = new URL(gw.url)
    const hash = createHash('sha256')
    let bytes = 0
    let status = 0
    const growth = await peakGrowth(() => new Promise<void>((resolve, reject) => {
      const stalled = setTimeout(() => {
        req.destroy()
        reject(new Error(`the client got ${bytes} bytes before the upstream sent the second half: the answer is not streamed`))
      }, 30_000)
      const req = httpRequest({ host: u.hostname, port: u.port, path: '/big/download', signal: AbortSignal.timeout(90_000) }, (res) => {
        status = res.statusCode ?? 0
        res.on('data', (c: Buffer) => {
          bytes += c.length
          hash.update(c)
          if (bytes >= SIZE / 4) { clearTimeout(stalled); openGate() }
        })
        res.on('end', resolve)
        res.on('error', reject)
      })
      req.on('error', (err) => { clearTimeout(stalled); reject(err) })
      req.end()
    }))
    assert.equal(status, 200)
    assert.equal(bytes, SIZE)
    assert.equal(hash.digest('hex'), up.sentHash())
    // The gate above is what shows streaming (a proxy that buffers never lets it open). This bound
    // catches one that streams and keeps copies: the three parties share this process, and their
    // chunks in flight measured 0.9 to 32.1 MiB (under load), so it is set below the whole body.
    t.diagnostic(`live memory growth during the download: ${(growth / MiB).toFixed(1)} MiB`)
    assert.ok(growth < 48 * MiB, `live memory grew by ${(growth / MiB).toFixed(1)} MiB during a ${SIZE / MiB} MiB download`)
  })
})

describe('client and upstream going away mid-answer', () => {
  /** A raw upstream whose handler gets the request and its response to do with as it likes. */
  async function rawUpstream (t: TestContext, onRequest: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
    const server = createServer(onRequest)
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    t.after(() => { server.closeAllConnections(); server.close() })
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  }

  test('a client that hangs up during a download: the upstream request is aborted at once', { timeout: 30_000 }, async (t) => {
    const upstreamGone = new EventEmitter()
    const url = await rawUpstream(t, (req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' })
      res.write(Buffer.alloc(1024, 1))
      // Never ends on its own: only the gateway giving up ends it.
      req.socket.once('close', () => upstreamGone.emit('gone'))
    })
    const gw = await gateway(t, { routes: [{ prefix: '/dl', upstream: url }] })
    const u = new URL(gw.url)
    const gone = once(upstreamGone, 'gone')
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest({ host: u.hostname, port: u.port, path: '/dl/x' }, (res) => {
        res.once('data', () => { req.destroy(); resolve() })
      })
      req.on('error', () => {})
      req.setTimeout(10_000, () => reject(new Error('no first chunk')))
      req.end()
    })
    await gone
    // The gateway is fine afterwards.
    assert.equal((await request(`${gw.url}/health`)).status, 200)
  })

  test('an upstream that dies in the middle of its body: the client\'s answer is cut off (never completed as if whole)', { timeout: 30_000 }, async (t) => {
    const url = await rawUpstream(t, (_req, res) => {
      res.writeHead(200, { 'content-length': '100000' })
      res.write(Buffer.alloc(1000, 1), () => res.socket?.destroy())
    })
    const gw = await gateway(t, { routes: [{ prefix: '/cut', upstream: url }] })
    const u = new URL(gw.url)
    const outcome = await new Promise<string>((resolve) => {
      const req = httpRequest({ host: u.hostname, port: u.port, path: '/cut/x' }, (res) => {
        let n = 0
        res.on('data', (c: Buffer) => { n += c.length })
        res.on('end', () => resolve(`ended after ${n} bytes`))
        res.on('error', () => resolve('error'))
        res.on('aborted', () => resolve('error'))
      })
      req.on('error', () => resolve('error'))
      req.end()
    })
    assert.equal(outcome, 'error')
    assert.equal((await request(`${gw.url}/health`)).status, 200)
  })

  test('Expect: 100-continue uploads are answered and proxied', { timeout: 30_000 }, async (t) => {
    const up = await namedUpstream(t, 'a')
    const gw = await gateway(t, { routes: [{ prefix: '/up', upstream: up.url }] })
    const u = new URL(gw.url)
    const res = await new Promise<Res>((resolve, reject) => {
      const req = httpRequest({ host: u.hostname, port: u.port, method: 'POST', path: '/up/x', headers: { expect: '100-continue', 'content-length': '5' } }, (r) => {
        const chunks: Buffer[] = []
        r.on('data', (c: Buffer) => chunks.push(c))
        r.on('end', () => resolve({ status: r.statusCode ?? 0, headers: r.headers, body: Buffer.concat(chunks) }))
      })
      req.on('continue', () => req.end('hello'))
      req.on('error', reject)
    })
    assert.equal(res.status, 200)
    assert.equal(Buffer.from(json<{ body: string }>(res).body, 'base64').toString(), 'hello')
  })
})

describe('/health and /ready', () => {
  test('both answer 200 on a running gateway; /ready says 503 once draining is set', { timeout: 30_000 }, async (t) => {
    const gw = await gateway(t, { routes: [] })
    const health = await request(`${gw.url}/health`)
    assert.equal(health.status, 200)
    assert.deepEqual(json(health), { status: 'ok' })
    const ready = await request(`${gw.url}/ready`)
    assert.equal(ready.status, 200)
    assert.deepEqual(json(ready), { status: 'ready' })
    gw.app.gatewayState.draining = true
    const draining = await request(`${gw.url}/ready`)
    assert.equal(draining.status, 503)
    assert.deepEqual(json(draining), { status: 'draining' })
    // Liveness does not depend on readiness.
    assert.equal((await request(`${gw.url}/health`)).status, 200)
  })

  test('/ready answers 503 during a real shutdown while a WebSocket drains', { timeout: 30_000 }, async (t) => {
    const up = await startUpstream()
    t.after(() => up.close())
    const gw = await gateway(t, { server: { drainTimeout: '10s' }, routes: [{ prefix: '/ws', upstream: up.url }] })
    assert.equal((await request(`${gw.url}/ready`)).status, 200)
    const ws = await connect(`${gw.wsUrl}/ws`)
    t.after(() => ws.terminate())
    ws.send('ping')
    assert.equal((await nextMessage(ws)).data.toString(), 'ping')
    // The client stops reading: the gateway's close frame goes unanswered, so the drain (and
    // with it app.close()) stays pending until the test lets the client read again.
    const raw = (ws as unknown as { _socket: Socket })._socket
    raw.pause()
    const clientClosed = closed(ws)
    let closeDone = false
    const closing = gw.close().then(() => { closeDone = true })
    // No event tells when close() has started the drain; poll /ready a bounded number of times.
    let status = 0
    for (let i = 0; i < 50 && status !== 503; i++) {
      status = (await request(`${gw.url}/ready`, { timeoutMs: 2000 })).status
      if (status !== 503) await new Promise((resolve) => setImmediate(resolve))
    }
    assert.equal(status, 503, '/ready must say 503 while draining')
    assert.equal(closeDone, false, 'the drain must still be waiting for the WebSocket')
    raw.resume()
    assert.equal((await clientClosed).code, 1001)
    await closing
  })
})

describe('shutdown with HTTP requests in flight', () => {
  test('an answer that starts once shutdown has begun says Connection: close', { timeout: 30_000 }, async (t) => {
    let arrived!: () => void
    const arrival = new Promise<void>((resolve) => { arrived = resolve })
    let release!: () => void
    const released = new Promise<void>((resolve) => { release = resolve })
    const up = await startUpstream({ http: (_req, res) => { arrived(); void released.then(() => res.writeHead(200, { 'content-type': 'text/plain' }).end('late')) } })
    t.after(() => up.close())
    const gw = await gateway(t, { routes: [{ prefix: '/slow', upstream: up.url }] })
    const pending = request(`${gw.url}/slow`, { headers: { connection: 'keep-alive' } })
    await arrival
    const closing = gw.close()
    await new Promise((resolve) => setImmediate(resolve))
    release()
    const res = await pending
    assert.equal(res.status, 200)
    assert.equal(res.body.toString(), 'late')
    assert.equal(res.headers.connection, 'close')
    await closing
  })

  // Node's server.close() only ends keep-alive sockets that are idle when it is called; these
  // requests are busy then, and must neither be cut nor hold close() once they are answered.
  for (const phase of ['before the response headers', 'in the middle of the response body']) {
    test(`app.close() lets a request ${phase} finish, then returns promptly`, { timeout: 30_000 }, async (t) => {
      let arrived!: () => void
      const arrival = new Promise<void>((resolve) => { arrived = resolve })
      let release!: () => void
      const released = new Promise<void>((resolve) => { release = resolve })
      const up = await startUpstream({
        http: (_req, res) => {
          if (phase.startsWith('before')) {
            arrived()
            void released.then(() => res.writeHead(200, { 'content-type': 'text/plain' }).end('complete'))
          } else {
            res.writeHead(200, { 'content-type': 'text/plain' })
            res.write('comp')
            arrived()
            void released.then(() => res.end('lete'))
          }
        }
      })
      t.after(() => up.close())
      const gw = await gateway(t, { routes: [{ prefix: '/slow', upstream: up.url }] })
      // A keep-alive client, as browsers and fetch are.
      const pending = fetch(`${gw.url}/slow`, { signal: AbortSignal.timeout(10_000) }).then(async (r) => ({ status: r.status, body: await r.text() }))
      await arrival
      let closeDone = false
      const closing = gw.close().then(() => { closeDone = true })
      // close() must wait for the request: let the event loop turn, then check it is still pending.
      await new Promise((resolve) => setImmediate(resolve))
      assert.equal(closeDone, false)
      const startedAt = performance.now()
      release()
      assert.deepEqual(await pending, { status: 200, body: 'complete' })
      await closing
      const took = performance.now() - startedAt
      assert.ok(took < 5000, `close() returned ${Math.round(took)} ms after the last answer`)
    })
  }
})

describe('HTTP-only and WebSocket-only routes', () => {
  test('websocket: false -> an upgrade request gets 404, HTTP still works', { timeout: 30_000 }, async (t) => {
    const up = await startUpstream()
    t.after(() => up.close())
    const gw = await gateway(t, { routes: [{ prefix: '/nows', upstream: up.url, websocket: false }] })
    await assert.rejects(connect(`${gw.wsUrl}/nows`), (err: unknown) => {
      assert.ok(err instanceof HandshakeError, String(err))
      assert.equal(err.status, 404)
      return true
    })
    await assert.rejects(connect(`${gw.wsUrl}/nows/deeper`), (err: unknown) => err instanceof HandshakeError && err.status === 404)
    assert.equal(up.upgrades.length, 0, 'no upgrade may reach the upstream')
    const res = await request(`${gw.url}/nows/x`)
    assert.equal(res.status, 200)
  })

  test('http: false -> a plain request gets 426 with Upgrade: websocket, WebSocket still works', { timeout: 30_000 }, async (t) => {
    const up = await namedUpstream(t, 'up')
    const gw = await gateway(t, { routes: [{ prefix: '/wsonly', upstream: up.url, http: false }] })
    for (const method of ['GET', 'POST', 'HEAD']) {
      const res = await request(`${gw.url}/wsonly/x`, { method, body: method === 'POST' ? 'x' : undefined })
      assert.equal(res.status, 426, method)
      assert.equal(res.headers.upgrade, 'websocket', method)
      if (method !== 'HEAD') assert.equal(json<{ code: string }>(res).code, 'GW_ERR_UPGRADE_REQUIRED', method)
    }
    assert.equal(up.seen.length, 0, 'no HTTP request may reach the upstream')
    const ws = await connect(`${gw.wsUrl}/wsonly/x`)
    t.after(() => ws.terminate())
    ws.send('hi')
    assert.equal((await nextMessage(ws)).data.toString(), 'hi')
    const c = closed(ws)
    ws.close(1000)
    assert.equal((await c).code, 1000)
  })
})
