/**
 * Active health checks (spec section 3, `upstreams.*.healthCheck`) against real HTTP servers on
 * 127.0.0.1: unhealthy after `unhealthyAfter` failures (status, timeout, connection error),
 * healthy after `healthyAfter` successes, one log line and one onUnhealthy call per change,
 * unref()'d timers cleared by stop(), and the upstream's extra CA for https targets.
 */
import { describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { getEventListeners, once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { UpstreamConfig } from '../../../src/config/types.js'
import { UpstreamPool, type PickContext, type PoolLogger } from '../../../src/upstreams/pool.js'
import { HealthChecker, probe, type HealthChange } from '../../../src/upstreams/health.js'
import { settle, trackTimers } from '../../helpers/resources.js'
import { makeCert } from '../../helpers/tls.js'

const ctx: PickContext = { ip: '127.0.0.1', headers: {} }
type Hc = NonNullable<UpstreamConfig['healthCheck']>
// Probes of a local server answer in a few ms; the generous timeout keeps a loaded CI machine from
// failing the healthy ones.
const FAST: Hc = { path: '/healthz', interval: 50, timeout: 2000, unhealthyAfter: 2, healthyAfter: 2 }

interface HealthServer {
  url: string
  /** Status answered to the health path; 'hang' never answers. */
  status: number | 'hang'
  /** Requests received, by path. */
  requests: string[]
  server: Server
  /** Resolves at the next request whose path is `path`. */
  nextRequest (path?: string): Promise<IncomingMessage>
}

async function startServer (t: TestContext, opts: { status?: number, tls?: { key: string, cert: string }, handler?: (req: IncomingMessage, res: ServerResponse) => boolean } = {}): Promise<HealthServer> {
  const waiters: Array<{ path: string, resolve: (req: IncomingMessage) => void }> = []
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const path = req.url ?? '/'
    hs.requests.push(path)
    for (const w of waiters.filter((w) => w.path === path)) {
      waiters.splice(waiters.indexOf(w), 1)
      w.resolve(req)
    }
    if (opts.handler?.(req, res) === true) return
    if (hs.status === 'hang') return
    res.writeHead(hs.status, { 'content-type': 'text/plain' })
    res.end('ok')
  }
  const server = opts.tls !== undefined ? createHttpsServer(opts.tls, handler) : createServer(handler)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as AddressInfo).port
  const hs: HealthServer = {
    url: `${opts.tls !== undefined ? 'https' : 'http'}://127.0.0.1:${port}`,
    status: opts.status ?? 200,
    requests: [],
    server,
    nextRequest: (path = '/healthz') => new Promise((resolve) => { waiters.push({ path, resolve }) })
  }
  t.after(async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })
  return hs
}

/** A port with nothing listening (bound, then released). */
async function closedPort (): Promise<string> {
  const s = createServer().listen(0, '127.0.0.1')
  await once(s, 'listening')
  const port = (s.address() as AddressInfo).port
  await new Promise((resolve) => s.close(resolve))
  return `http://127.0.0.1:${port}`
}

function upstream (targets: string[], healthCheck: Hc | undefined = FAST, extra: Partial<UpstreamConfig> = {}): UpstreamConfig {
  return { name: 'api', targets, weights: targets.map(() => 1), resolve: 0, autoRebalance: null, balance: 'round-robin', hashOn: 'ip', healthCheck, closeOnUnhealthy: false, ...extra }
}

function recordingLog (): PoolLogger & { lines: Array<{ level: string, o: Record<string, unknown>, msg: string }>, count (msg: string): number } {
  const lines: Array<{ level: string, o: Record<string, unknown>, msg: string }> = []
  return {
    lines,
    info: (o, msg) => { lines.push({ level: 'info', o: o as Record<string, unknown>, msg }) },
    warn: (o, msg) => { lines.push({ level: 'warn', o: o as Record<string, unknown>, msg }) },
    count: (msg) => lines.filter((l) => l.msg === msg).length
  }
}

/** A pool that is started now and stopped when the test ends. */
function startedPool (t: TestContext, config: UpstreamConfig, opts: ConstructorParameters<typeof UpstreamPool>[1] = {}): UpstreamPool {
  const pool = new UpstreamPool(config, opts)
  t.after(() => { pool.stop() })
  pool.start()
  return pool
}

/** Resolves with the next target that the pool's checks turn unhealthy. */
function nextUnhealthy (pool: UpstreamPool): Promise<string> {
  return new Promise((resolve) => {
    let done = false
    pool.onUnhealthy((target) => { if (!done) { done = true; resolve(target) } })
  })
}

/** Polls `fn` until it returns true, failing after `ms`. */
async function waitFor (fn: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms}ms waiting for ${what}`)
    await sleep(5)
  }
}

function health (pool: UpstreamPool, target: string): string {
  return pool.state().find((s) => s.url === target)!.health
}

describe('active health checks', () => {
  test('a failing target turns unhealthy, is skipped, and recovers after healthyAfter successes', async (t) => {
    const good = await startServer(t)
    const bad = await startServer(t, { status: 503 })
    const log = recordingLog()
    const pool = startedPool(t, upstream([good.url, bad.url]), { log })
    const unhealthyCalls: string[] = []
    pool.onUnhealthy((target) => unhealthyCalls.push(target))

    assert.equal(await nextUnhealthy(pool), bad.url)
    assert.ok(bad.requests.length >= 2, 'after unhealthyAfter (2) failed probes')
    await waitFor(() => health(pool, good.url) === 'healthy', 'the good target\'s first probe')
    assert.deepEqual(pool.state().map((s) => [s.health, s.healthy, s.lastError]), [['healthy', true, null], ['unhealthy', false, 'status 503']])
    assert.deepEqual([pool.pick(ctx), pool.pick(ctx), pool.pick(ctx)], [good.url, good.url, good.url])

    // More failed rounds change nothing: still one log line and one listener call.
    const seen = bad.requests.length
    await waitFor(() => bad.requests.length >= seen + 3, 'three more probes')
    assert.equal(log.count('upstream target unhealthy'), 1)
    assert.deepEqual(unhealthyCalls, [bad.url])
    const warn = log.lines.find((l) => l.msg === 'upstream target unhealthy')!
    assert.deepEqual(warn, { level: 'warn', msg: 'upstream target unhealthy', o: { upstream: 'api', target: bad.url, error: 'status 503' } })

    bad.status = 200
    const firstOk = bad.requests.length
    await waitFor(() => health(pool, bad.url) === 'healthy', 'the target to recover')
    assert.ok(bad.requests.length - firstOk >= 2, 'after healthyAfter (2) successful probes')
    assert.ok(pool.state()[1].healthy)
    assert.deepEqual([pool.pick(ctx), pool.pick(ctx)].sort(), [good.url, bad.url].sort())
    const healthyLines = log.lines.filter((l) => l.msg === 'upstream target healthy').map((l) => l.o.target)
    assert.deepEqual(healthyLines.sort(), [good.url, bad.url].sort(), 'one line per change: good at its first success, bad on recovery')
    assert.equal(log.count('upstream target unhealthy'), 1)
  })

  test('a timeout is a failure', async (t) => {
    const slow = await startServer(t)
    slow.status = 'hang'
    const pool = startedPool(t, upstream([slow.url], { ...FAST, timeout: 40, unhealthyAfter: 1 }))
    assert.equal(await nextUnhealthy(pool), slow.url)
    assert.equal(pool.state()[0].lastError, 'timeout after 40ms')
    assert.equal(pool.pick(ctx), null, 'no target left')
  })

  test('a connection error is a failure', async (t) => {
    const nothing = await closedPort()
    const pool = startedPool(t, upstream([nothing], { ...FAST, unhealthyAfter: 1 }))
    assert.equal(await nextUnhealthy(pool), nothing)
    assert.equal(pool.state()[0].lastError, 'ECONNREFUSED')
    assert.equal(pool.state()[0].health, 'unhealthy')
  })

  test('a 3xx answer is a success and the redirect is not followed', async (t) => {
    const srv = await startServer(t, {
      handler: (req, res) => {
        if (req.url === '/healthz') { res.writeHead(302, { location: '/broken' }); res.end(); return true }
        res.writeHead(500); res.end(); return true
      }
    })
    const pool = startedPool(t, upstream([srv.url]))
    await waitFor(() => health(pool, srv.url) === 'healthy', 'healthy')
    await waitFor(() => srv.requests.length >= 3, 'a few probes')
    assert.ok(srv.requests.every((p) => p === '/healthz'), srv.requests.join(' '))
    assert.equal(health(pool, srv.url), 'healthy')
  })

  test('the path is appended to the target\'s base path', async (t) => {
    const srv = await startServer(t)
    const seen = srv.nextRequest('/base/healthz')
    startedPool(t, upstream([`${srv.url}/base`]))
    const req = await seen
    assert.equal(req.method, 'GET')
    assert.equal(req.headers['user-agent'], 'tollgate-health-check')
  })

  test('active and passive health together: both must allow the target', async (t) => {
    const a = await startServer(t)
    const b = await startServer(t, { status: 500 })
    const pool = startedPool(t, upstream([a.url, b.url], { ...FAST, unhealthyAfter: 1 }), { backoffMs: 60_000 })
    await nextUnhealthy(pool)
    await waitFor(() => health(pool, a.url) === 'healthy', 'a healthy')
    pool.markFailure(a.url, 'ECONNRESET')
    assert.equal(pool.pick(ctx), a.url, 'a is down, b unhealthy: the down one is tried anyway, the unhealthy one never')
    assert.deepEqual(pool.state().map((s) => s.health), ['down', 'unhealthy'])
    b.status = 200
    await waitFor(() => pool.pick(ctx) === b.url, 'b to recover')
    pool.markSuccess(a.url)
    assert.deepEqual(pool.state().map((s) => s.health), ['healthy', 'healthy'])
  })

  test('a throwing onUnhealthy listener does not stop the others', async (t) => {
    const bad = await startServer(t, { status: 500 })
    const log = recordingLog()
    const pool = startedPool(t, upstream([bad.url], { ...FAST, unhealthyAfter: 1 }), { log })
    pool.onUnhealthy(() => { throw new Error('boom') })
    assert.equal(await nextUnhealthy(pool), bad.url)
    assert.equal(log.count('onUnhealthy listener failed'), 1)
  })
})

describe('health check timers', () => {
  test('one unref()\'d interval per started pool, cleared by stop(); start() twice is one', async (t) => {
    const srv = await startServer(t)
    const timers = trackTimers()
    t.after(() => { timers.stop() })
    const pool = new UpstreamPool(upstream([srv.url], { ...FAST, interval: 60_000 }))
    pool.start()
    pool.start()
    await srv.nextRequest()
    const intervals = timers.intervals()
    assert.equal(intervals.length, 1)
    assert.equal(intervals[0]._idleTimeout, 60_000)
    assert.equal(intervals[0].hasRef(), false)
    pool.stop()
    pool.stop()
    await settle()
    assert.equal(timers.intervals().length, 0)
    assert.equal(srv.requests.length, 1, 'probed once at start, then only every interval')
  })

  test('stop() aborts a probe in flight, and its outcome is ignored', async (t) => {
    const srv = await startServer(t)
    srv.status = 'hang'
    const pool = new UpstreamPool(upstream([srv.url], { ...FAST, timeout: 60_000, unhealthyAfter: 1 }))
    let unhealthy = 0
    pool.onUnhealthy(() => { unhealthy++ })
    pool.start()
    const req = await srv.nextRequest()
    const closed = once(req.socket, 'close')
    pool.stop()
    await closed
    await settle()
    assert.equal(unhealthy, 0)
    assert.equal(pool.state()[0].health, 'unchecked')
    assert.equal(pool.state()[0].lastError, null)
  })

  test('a restarted pool keeps checking', async (t) => {
    const srv = await startServer(t, { status: 500 })
    const pool = startedPool(t, upstream([srv.url], { ...FAST, unhealthyAfter: 1 }))
    await nextUnhealthy(pool)
    pool.stop()
    srv.status = 200
    pool.start()
    await waitFor(() => health(pool, srv.url) === 'healthy', 'recovery after restart')
  })
})

describe('health checks over https', () => {
  test('the upstream\'s ca is trusted; without it the certificate is refused', async (t) => {
    const cert = makeCert()
    t.after(() => { cert.cleanup() })
    const srv = await startServer(t, { tls: { key: cert.key, cert: cert.cert } })
    const withCa = startedPool(t, upstream([srv.url], { ...FAST, unhealthyAfter: 1 }, { ca: cert.cert }))
    const withoutCa = startedPool(t, upstream([srv.url], { ...FAST, unhealthyAfter: 1 }))
    assert.equal(await nextUnhealthy(withoutCa), srv.url)
    assert.match(withoutCa.state()[0].lastError ?? '', /CERT|SELF_SIGNED|certificate/i)
    await waitFor(() => health(withCa, srv.url) === 'healthy', 'the https target to be healthy')
  })
})

describe('probe and HealthChecker with an injected fetch', () => {
  test('probe: status ranges, the timeout signal, the cause of a fetch error', async () => {
    const calls: Array<{ url: string, init: RequestInit | undefined }> = []
    const fake = (status: number): typeof fetch => (async (url: string, init?: RequestInit) => {
      calls.push({ url, init })
      return new Response(null, { status })
    }) as typeof fetch
    assert.deepEqual(await probe('http://h/healthz', 100, fake(204)), { ok: true, error: null })
    assert.deepEqual(await probe('http://h/healthz', 100, fake(399)), { ok: true, error: null })
    assert.deepEqual(await probe('http://h/healthz', 100, fake(404)), { ok: false, error: 'status 404' })
    assert.equal(calls[0].url, 'http://h/healthz')
    assert.equal(calls[0].init?.redirect, 'manual')
    assert.ok(calls[0].init?.signal instanceof AbortSignal)

    const refused = (async () => { throw new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) }) }) as typeof fetch
    assert.deepEqual(await probe('http://h/', 100, refused), { ok: false, error: 'ECONNREFUSED' })
    const plain = (async () => { throw new Error('nope') }) as typeof fetch
    assert.deepEqual(await probe('http://h/', 100, plain), { ok: false, error: 'nope' })
  })

  test('probe: an outside abort ends it, and finished probes leave no listener on that signal', async () => {
    const outside = new AbortController()
    for (let i = 0; i < 20; i++) await probe('http://h/', 1000, (async () => new Response(null, { status: 200 })) as typeof fetch, outside.signal)
    assert.equal(getEventListeners(outside.signal, 'abort').length, 0)
    // Like fetch: rejects with the signal's reason when it aborts, at once if it already has.
    const hanging = ((_url: string, init?: RequestInit) => new Promise((_resolve, reject) => {
      const signal = init!.signal!
      if (signal.aborted) reject(signal.reason)
      signal.addEventListener('abort', () => { reject(signal.reason) })
    })) as typeof fetch
    const pending = probe('http://h/', 60_000, hanging, outside.signal)
    outside.abort(new Error('stopped'))
    assert.deepEqual(await pending, { ok: false, error: 'stopped' })
    assert.deepEqual(await probe('http://h/', 60_000, hanging, outside.signal), { ok: false, error: 'stopped' })
  })

  test('HealthChecker counts consecutive results and reports each change once', async () => {
    let status = 500
    const fetchImpl = (async () => new Response(null, { status })) as typeof fetch
    const changes: HealthChange[] = []
    const failures: string[] = []
    const checker = new HealthChecker(['http://t'], { path: '/h', interval: 60_000, timeout: 100, unhealthyAfter: 3, healthyAfter: 2 }, {
      fetchImpl, onChange: (c) => changes.push(c), onProbeFailure: (_t, e) => failures.push(e)
    })
    assert.equal(checker.status('http://t'), 'unchecked')
    await checker.round()
    assert.equal(failures.length, 0, 'round() does nothing while stopped')
    checker.start()
    try {
      // start() ran the first round; the rest run by hand (the interval is a minute away).
      await waitFor(() => failures.length === 1, 'the first round')
      await checker.round()
      assert.equal(checker.status('http://t'), 'unchecked', 'two failures of three')
      await checker.round()
      assert.equal(checker.status('http://t'), 'unhealthy')
      await checker.round()
      status = 200
      await checker.round()
      assert.equal(checker.status('http://t'), 'unhealthy', 'one success of two')
      status = 500
      await checker.round()
      status = 200
      await checker.round()
      assert.equal(checker.status('http://t'), 'unhealthy', 'successes must be consecutive')
      await checker.round()
      assert.equal(checker.status('http://t'), 'healthy')
      assert.deepEqual(changes, [
        { target: 'http://t', from: 'unchecked', to: 'unhealthy', error: 'status 500' },
        { target: 'http://t', from: 'unhealthy', to: 'healthy', error: null }
      ])
      assert.equal(failures.length, 5)
    } finally {
      checker.stop()
    }
  })
})
