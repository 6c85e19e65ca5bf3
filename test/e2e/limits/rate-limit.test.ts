import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import { startUpstream, type TestUpstream } from '../../helpers/upstream.js'
import { startGateway, type TestGateway } from '../../helpers/gateway.js'
import { connect, closed, collect, HandshakeError } from '../../helpers/ws.js'
import { SECRET, sign, now } from '../../helpers/jwt.js'
import { needRedis, REDIS_URL, testPrefix } from '../../helpers/redis.js'
import { buildGateway } from '../../../src/gateway/app.js'
import type { GatewayConfigInput } from '../../../src/config/schema.js'
import { freePort, waitFor } from '../../helpers/resources.js'

async function setup (t: TestContext, config: Partial<GatewayConfigInput>): Promise<{ up: TestUpstream, gw: TestGateway }> {
  const up = await startUpstream()
  t.after(() => up.close())
  const gw = await startGateway({ routes: [{ prefix: '/a', upstream: up.url }, { prefix: '/b', upstream: up.url }], ...config })
  t.after(() => gw.close())
  return { up, gw }
}

async function wsStatus (url: string, headers?: Record<string, string>): Promise<{ status: number, headers?: Record<string, unknown> }> {
  try {
    const ws = await connect(url, undefined, { headers })
    ws.terminate()
    return { status: 101 }
  } catch (e) {
    if (e instanceof HandshakeError) return { status: e.status, headers: e.headers }
    throw e
  }
}

test('HTTP over the limit: 429 with Retry-After, x-ratelimit-* headers and a JSON body; recovers after the window', async (t) => {
  const { gw } = await setup(t, { rateLimit: { http: { max: 3, window: '400ms' } } })
  for (let i = 0; i < 3; i++) {
    const ok = await fetch(`${gw.url}/a/x`)
    assert.equal(ok.status, 200)
    assert.equal(ok.headers.get('x-ratelimit-limit'), '3')
    assert.equal(ok.headers.get('x-ratelimit-remaining'), String(2 - i))
  }
  const res = await fetch(`${gw.url}/a/x`)
  assert.equal(res.status, 429)
  assert.equal(res.headers.get('x-ratelimit-limit'), '3')
  assert.equal(res.headers.get('x-ratelimit-remaining'), '0')
  assert.ok(Number(res.headers.get('retry-after')) >= 1)
  assert.ok(res.headers.get('x-ratelimit-reset') !== null)
  const body = await res.json() as { statusCode: number, code: string }
  assert.equal(body.statusCode, 429)
  assert.equal(body.code, 'GW_ERR_RATE_LIMITED')
  await waitFor(async () => (await fetch(`${gw.url}/a/x`)).status === 200, 'the window to pass')
})

test('limits are per key across routes; /health, /ready and /metrics are never limited', async (t) => {
  const { gw } = await setup(t, { rateLimit: { http: { max: 3, window: '1m' } } })
  assert.equal((await fetch(`${gw.url}/a/1`)).status, 200)
  assert.equal((await fetch(`${gw.url}/b/1`)).status, 200)
  assert.equal((await fetch(`${gw.url}/a/2`)).status, 200)
  assert.equal((await fetch(`${gw.url}/b/2`)).status, 429)
  for (let i = 0; i < 10; i++) {
    for (const p of ['/health', '/ready', '/metrics']) assert.equal((await fetch(`${gw.url}${p}`)).status, 200, p)
  }
})

test('WebSocket handshakes over the limit get 429 before any upgrade; recovers after the window', async (t) => {
  const { up, gw } = await setup(t, { rateLimit: { handshake: { max: 2, window: '400ms' } } })
  assert.equal((await wsStatus(`${gw.wsUrl}/a`)).status, 101)
  assert.equal((await wsStatus(`${gw.wsUrl}/b`)).status, 101)
  const r = await wsStatus(`${gw.wsUrl}/a`)
  assert.equal(r.status, 429)
  assert.equal(r.headers?.['x-ratelimit-limit'], '2')
  assert.ok(r.headers?.['retry-after'] !== undefined)
  assert.equal(up.upgrades.length, 2, 'no upstream contact for the refused handshake')
  // Plain HTTP is not counted against the handshake limit.
  assert.equal((await fetch(`${gw.url}/a/x`)).status, 200)
  await waitFor(async () => (await wsStatus(`${gw.wsUrl}/a`)).status === 101, 'the window to pass')
})

test('concurrent connections per key: 429 over the limit; the count drops however a connection ends', async (t) => {
  const { up, gw } = await setup(t, { rateLimit: { concurrent: 2 } })
  const a = await connect(`${gw.wsUrl}/a`)
  const b = await connect(`${gw.wsUrl}/b`)
  assert.equal((await wsStatus(`${gw.wsUrl}/a`)).status, 429)
  const before = up.upgrades.length
  assert.equal((await wsStatus(`${gw.wsUrl}/a`)).status, 429)
  assert.equal(up.upgrades.length, before)
  // A clean close frees a slot.
  const c = closed(a)
  a.close()
  await c
  await waitFor(async () => (await wsStatus(`${gw.wsUrl}/a`)).status === 101, 'the slot freed by a close')
  // A client that vanishes (TCP drop) frees its slot too.
  const d = await connect(`${gw.wsUrl}/a`)
  assert.equal((await wsStatus(`${gw.wsUrl}/a`)).status, 429)
  d.terminate()
  await waitFor(async () => (await wsStatus(`${gw.wsUrl}/a`)).status === 101, 'the slot freed by a dropped client')
  // An upstream that drops frees it as well.
  const e = await connect(`${gw.wsUrl}/a`)
  assert.equal((await wsStatus(`${gw.wsUrl}/a`)).status, 429)
  const ec = closed(e)
  for (const s of up.sockets) s.terminate()
  assert.equal((await ec).code, 1014)
  await waitFor(async () => (await wsStatus(`${gw.wsUrl}/a`)).status === 101, 'the slot freed by a dropped upstream')
  b.terminate()
  // Failed handshakes (upstream down) never hold a slot.
  await up.close()
  for (let i = 0; i < 4; i++) assert.equal((await wsStatus(`${gw.wsUrl}/a`)).status, 502)
})

test('message rate: a client over its bucket is closed with 1008 "message rate exceeded" on both sides', async (t) => {
  const { up, gw } = await setup(t, { rateLimit: { messages: { rate: 20, burst: 5 } } })
  const upConn = up.nextConnection()
  const ws = await connect(`${gw.wsUrl}/a`)
  const { ws: upWs } = await upConn
  let got = 0
  upWs.on('message', () => { got++ })
  const [c, u] = [closed(ws), closed(upWs)]
  for (let i = 0; i < 50; i++) ws.send(`m${i}`)
  assert.deepEqual(await c, { code: 1008, reason: 'message rate exceeded' })
  assert.equal((await u).code, 1008)
  assert.ok(got >= 5 && got < 50, `the burst got through, the excess did not (${got})`)
})

test('message rate: traffic within the rate keeps flowing', async (t) => {
  const { gw } = await setup(t, { rateLimit: { messages: { rate: 100, burst: 5 } } })
  const ws = await connect(`${gw.wsUrl}/a`)
  t.after(() => ws.terminate())
  // 20 messages paced at 50/s (half the rate): the bucket never runs dry.
  const echoes = collect(ws, 20)
  for (let i = 0; i < 20; i++) {
    ws.send(`m${i}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  assert.equal((await echoes).length, 20)
  assert.equal(ws.readyState, ws.OPEN)
})

test('keyBy user: tokens of different users from one IP have separate counters; no token falls back to the IP', async (t) => {
  const { gw } = await setup(t, { auth: { jwt: { secret: SECRET } }, rateLimit: { keyBy: 'user', http: { max: 2, window: '1m' } } })
  const alice = { authorization: `Bearer ${sign({ sub: 'alice', exp: now() + 60 })}` }
  const bob = { authorization: `Bearer ${sign({ sub: 'bob', exp: now() + 60 })}` }
  assert.equal((await fetch(`${gw.url}/a/x`, { headers: alice })).status, 200)
  assert.equal((await fetch(`${gw.url}/a/x`, { headers: alice })).status, 200)
  assert.equal((await fetch(`${gw.url}/a/x`, { headers: alice })).status, 429)
  assert.equal((await fetch(`${gw.url}/a/x`, { headers: bob })).status, 200)
  assert.equal((await fetch(`${gw.url}/a/x`)).status, 200)
  assert.equal((await fetch(`${gw.url}/a/x`)).status, 200)
  assert.equal((await fetch(`${gw.url}/a/x`)).status, 429)
  // An invalid token on a route without auth is keyed by IP (already exhausted), not rejected with 401.
  assert.equal((await fetch(`${gw.url}/a/x`, { headers: { authorization: 'Bearer junk' } })).status, 429)
})

test('keyBy ip: users behind one IP share a counter', async (t) => {
  const { gw } = await setup(t, { auth: { jwt: { secret: SECRET } }, rateLimit: { keyBy: 'ip', http: { max: 2, window: '1m' } } })
  assert.equal((await fetch(`${gw.url}/a/x`, { headers: { authorization: `Bearer ${sign({ sub: 'alice', exp: now() + 60 })}` } })).status, 200)
  assert.equal((await fetch(`${gw.url}/a/x`, { headers: { authorization: `Bearer ${sign({ sub: 'bob', exp: now() + 60 })}` } })).status, 200)
  assert.equal((await fetch(`${gw.url}/a/x`)).status, 429)
})

test('route overrides: a route limit replaces the top level for that route; rateLimit false turns it off', async (t) => {
  const up = await startUpstream()
  t.after(() => up.close())
  const gw = await startGateway({
    rateLimit: { http: { max: 1, window: '1m' } },
    routes: [
      { prefix: '/strict', upstream: up.url },
      { prefix: '/loose', upstream: up.url, rateLimit: { http: { max: 3, window: '1m' } } },
      { prefix: '/free', upstream: up.url, rateLimit: false }
    ]
  })
  t.after(() => gw.close())
  assert.equal((await fetch(`${gw.url}/strict`)).status, 200)
  assert.equal((await fetch(`${gw.url}/strict`)).status, 429)
  for (let i = 0; i < 3; i++) assert.equal((await fetch(`${gw.url}/loose`)).status, 200)
  assert.equal((await fetch(`${gw.url}/loose`)).status, 429)
  for (let i = 0; i < 10; i++) assert.equal((await fetch(`${gw.url}/free`)).status, 200)
})

test('X-Forwarded-For decides the key only with trustProxy', async (t) => {
  for (const trustProxy of [false, true]) {
    const up = await startUpstream()
    t.after(() => up.close())
    const gw = await startGateway({ server: { trustProxy }, rateLimit: { http: { max: 1, window: '1m' } }, routes: [{ prefix: '/a', upstream: up.url }] })
    t.after(() => gw.close())
    assert.equal((await fetch(`${gw.url}/a`, { headers: { 'x-forwarded-for': '203.0.113.1' } })).status, 200)
    const second = await fetch(`${gw.url}/a`, { headers: { 'x-forwarded-for': '203.0.113.2' } })
    assert.equal(second.status, trustProxy ? 200 : 429, `trustProxy ${trustProxy}`)
  }
})

test('custom route plugins use the same limiter through config.rateLimit', async (t) => {
  const app = await buildGateway({}, { logger: false })
  await app.register(async (scope) => {
    scope.get('/limited', { config: { rateLimit: { max: 1, timeWindow: 60_000 } } }, async () => ({ ok: true }))
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.after(() => app.close())
  const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  assert.equal((await fetch(`${base}/limited`)).status, 200)
  const res = await fetch(`${base}/limited`)
  assert.equal(res.status, 429)
  assert.equal(((await res.json()) as { code: string }).code, 'GW_ERR_RATE_LIMITED')
})

test('Redis: two instances share request, handshake and concurrent-connection counts', async (t) => {
  if (!await needRedis(t)) return
  const keyPrefix = testPrefix(t)
  const up = await startUpstream()
  t.after(() => up.close())
  const config: GatewayConfigInput = {
    redis: { url: REDIS_URL, keyPrefix },
    // Handshakes count against rateLimit.http too: the HTTP counts are on a route of their own.
    rateLimit: { handshake: { max: 4, window: '1m' }, concurrent: 2 },
    routes: [{ prefix: '/a', upstream: up.url }, { prefix: '/h', upstream: up.url, rateLimit: { http: { max: 3, window: '1m' } } }]
  }
  const one = await startGateway(config)
  t.after(() => one.close())
  const two = await startGateway(config)
  t.after(() => two.close())
  await waitFor(async () => (await fetch(`${one.url}/ready`)).status === 200 && (await fetch(`${two.url}/ready`)).status === 200, 'redis connected')
  assert.equal((await fetch(`${one.url}/h`)).status, 200)
  assert.equal((await fetch(`${two.url}/h`)).status, 200)
  assert.equal((await fetch(`${one.url}/h`)).status, 200)
  assert.equal((await fetch(`${two.url}/h`)).status, 429, 'the fourth request, on the other instance, is over the shared limit')
  // Concurrent connections are counted cluster-wide.
  const a = await connect(`${one.wsUrl}/a`)
  const b = await connect(`${two.wsUrl}/a`)
  assert.equal((await wsStatus(`${one.wsUrl}/a`)).status, 429)
  const c = closed(b)
  b.close()
  await c
  await waitFor(async () => (await wsStatus(`${one.wsUrl}/a`)).status !== 429, 'the shared slot to be freed')
  a.terminate()
  // Handshakes: 2 + 1 (refused) + 1 above = 4 counted; the next one is over the shared handshake limit.
  assert.equal((await wsStatus(`${two.wsUrl}/a`)).status, 429)
})

test('Redis unreachable: failOpen true lets traffic through, false answers 503; /ready says 503 either way', async (t) => {
  const port = await freePort()
  const up = await startUpstream()
  t.after(() => up.close())
  for (const failOpen of [true, false]) {
    const gw = await startGateway({
      redis: { url: `redis://127.0.0.1:${port}`, failOpen },
      rateLimit: { http: { max: 100, window: '1m' }, handshake: { max: 100, window: '1m' }, concurrent: 10 },
      routes: [{ prefix: '/a', upstream: up.url }]
    }, { captureLogs: true })
    t.after(() => gw.close())
    const expected = failOpen ? 200 : 503
    for (let i = 0; i < 5; i++) assert.equal((await fetch(`${gw.url}/a`)).status, expected, `failOpen ${failOpen}`)
    assert.equal((await wsStatus(`${gw.wsUrl}/a`)).status, failOpen ? 101 : 503)
    assert.equal((await fetch(`${gw.url}/ready`)).status, 503)
    assert.equal((await fetch(`${gw.url}/health`)).status, 200)
    const warnings = gw.logs.filter((l) => l.level === 40 && /unreachable/.test(String(l.msg)))
    assert.ok(warnings.length >= 1 && warnings.length <= 2, `one warning per outage, not per request (${warnings.length})`)
  }
})
