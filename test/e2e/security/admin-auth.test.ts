/**
 * Failed admin authentications are rate limited per IP: after ADMIN_AUTH_FAILURES_PER_MINUTE
 * (10) requests with wrong credentials within a minute, every admin request from that IP gets 429
 * with Retry-After until its window ends, the right token included (so a guesser learns nothing
 * from the answers meanwhile). Successes and requests without credentials do not count; the
 * admin API and protected /metrics share the counts; other IPs are not affected.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { AdminAuthFailures, authenticateAdmin, bearerMatches } from '../../../src/admin/auth.js'
import { ADMIN_AUTH_FAILURES_PER_MINUTE } from '../../../src/config/defaults.js'
import { gatewayFor, type TestGateway } from '../../helpers/gateway.js'
import { upstreamFor } from '../../helpers/upstream.js'
import { connect } from '../../helpers/ws.js'
import type { GatewayConfigInput } from '../../../src/config/schema.js'

const TOKEN = 'admin-token-of-some-length'
const GOOD = { authorization: `Bearer ${TOKEN}` }
const BAD = { authorization: 'Bearer not-the-token' }

async function gateway (t: TestContext, extra: Partial<GatewayConfigInput> = {}): Promise<TestGateway> {
  return await gatewayFor(t, { admin: { token: TOKEN }, routes: [], ...extra })
}

async function status (url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number, retryAfter: string | null, code: string | null }> {
  const res = await fetch(url, { headers, method })
  const text = await res.text()
  const json = (res.headers.get('content-type') ?? '').startsWith('application/json')
  return { status: res.status, retryAfter: res.headers.get('retry-after'), code: json ? (JSON.parse(text) as { code: string }).code : null }
}

async function failTimes (url: string, n: number, headers: Record<string, string> = BAD): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) out.push((await status(url, headers)).status)
  return out
}

test('the 11th failure in a minute gets 429 with Retry-After, and so does the right token until the window passes', { timeout: 30_000 }, async (t) => {
  assert.equal(ADMIN_AUTH_FAILURES_PER_MINUTE, 10)
  const up = await upstreamFor(t)
  const gw = await gateway(t, { routes: [{ prefix: '/chat', upstream: up.url }] })
  const ws = await connect(`${gw.wsUrl}/chat`)
  t.after(() => ws.terminate())
  const list = await (await fetch(`${gw.url}/admin/connections`, { headers: GOOD })).json() as { connections: Array<{ id: string }> }
  const id = list.connections[0].id

  assert.deepEqual(await failTimes(`${gw.url}/admin/connections`, 10), Array(10).fill(401))
  for (const headers of [BAD, GOOD, {}]) {
    const r = await status(`${gw.url}/admin/connections`, headers)
    assert.equal(r.status, 429, JSON.stringify(headers))
    assert.equal(r.code, 'GW_ERR_RATE_LIMITED')
    const after = Number(r.retryAfter)
    assert.ok(Number.isInteger(after) && after >= 1 && after <= 60, `Retry-After: ${r.retryAfter}`)
  }
  // A locked-out request with the right token does nothing: the connection stays open.
  assert.equal((await status(`${gw.url}/admin/connections/${id}`, GOOD, 'DELETE')).status, 429)
  assert.equal(ws.readyState, ws.OPEN)
  assert.equal(up.sockets.size, 1)
  // Every admin route, and the dashboard's own assets stay public (they hold no data).
  for (const path of ['/admin/upstreams', '/admin/openapi.json', `/admin/connections/${id}`]) assert.equal((await status(`${gw.url}${path}`, GOOD)).status, 429, path)
  assert.equal((await fetch(`${gw.url}/admin/ui`)).status, 200)
  // The proxy and /health are not the admin API.
  assert.equal((await fetch(`${gw.url}/health`)).status, 200)
})

test('successes and requests without credentials do not count', { timeout: 30_000 }, async (t) => {
  const gw = await gateway(t)
  const url = `${gw.url}/admin/upstreams`
  for (let i = 0; i < 30; i++) assert.equal((await status(url, GOOD)).status, 200)
  assert.deepEqual(await failTimes(url, 30, {}), Array(30).fill(401), 'no Authorization header: the 401 challenge, not a failure')
  assert.equal((await status(url, GOOD)).status, 200)
  // Wrong credentials of any form count.
  const wrong = [BAD, { authorization: TOKEN }, { authorization: `Basic ${TOKEN}` }, { authorization: `Bearer ${TOKEN}x` }, { authorization: 'Bearer' }]
  const seen: number[] = []
  for (let i = 0; i < 9; i++) seen.push((await status(url, wrong[i % wrong.length])).status)
  assert.deepEqual(seen, Array(9).fill(401))
  assert.equal((await status(url, GOOD)).status, 200, 'under the limit, the right token works')
  assert.equal((await status(url, BAD)).status, 401, 'the 10th failure')
  assert.equal((await status(url, GOOD)).status, 429, 'past it, locked out')
})

test('the admin API and protected /metrics share one count per IP; other IPs are not affected', { timeout: 30_000 }, async (t) => {
  const gw = await gateway(t, { server: { trustProxy: true }, metrics: { protected: true } })
  const from = (ip: string, headers: Record<string, string> = {}): Record<string, string> => ({ ...headers, 'x-forwarded-for': ip })
  for (let i = 0; i < 5; i++) assert.equal((await status(`${gw.url}/metrics`, from('198.51.100.1', BAD))).status, 401)
  for (let i = 0; i < 5; i++) assert.equal((await status(`${gw.url}/admin/upstreams`, from('198.51.100.1', BAD))).status, 401)
  const locked = await status(`${gw.url}/metrics`, from('198.51.100.1', GOOD))
  assert.equal(locked.status, 429)
  assert.ok(Number(locked.retryAfter) >= 1)
  assert.equal((await status(`${gw.url}/admin/upstreams`, from('198.51.100.1', GOOD))).status, 429)
  // Another client is served as usual.
  assert.equal((await status(`${gw.url}/metrics`, from('198.51.100.2', GOOD))).status, 200)
  assert.equal((await status(`${gw.url}/admin/upstreams`, from('198.51.100.2', GOOD))).status, 200)
  assert.equal((await status(`${gw.url}/admin/upstreams`, from('198.51.100.2', BAD))).status, 401)
})

test('with admin.port, the admin server counts the same way', { timeout: 30_000 }, async (t) => {
  const gw = await gateway(t, { admin: { token: TOKEN, port: 1 }, metrics: { protected: true } })
  assert.notEqual(gw.adminUrl, gw.url)
  assert.deepEqual(await failTimes(`${gw.adminUrl}/admin/upstreams`, 10), Array(10).fill(401))
  assert.equal((await status(`${gw.adminUrl}/metrics`, GOOD)).status, 429)
  assert.equal((await status(`${gw.adminUrl}/admin/upstreams`, GOOD)).status, 429)
})

test('with admin.port behind a proxy (trustProxy), the admin server counts by the forwarded client IP', { timeout: 30_000 }, async (t) => {
  const gw = await gateway(t, { server: { trustProxy: '127.0.0.1' }, admin: { token: TOKEN, port: 1 } })
  const from = (ip: string): Record<string, string> => ({ 'x-forwarded-for': ip })
  assert.deepEqual(await failTimes(`${gw.adminUrl}/admin/upstreams`, 10, { ...BAD, ...from('198.51.100.7') }), Array(10).fill(401))
  assert.equal((await status(`${gw.adminUrl}/admin/upstreams`, { ...GOOD, ...from('198.51.100.7') })).status, 429, 'the guesser is locked out')
  assert.equal((await status(`${gw.adminUrl}/admin/upstreams`, { ...GOOD, ...from('198.51.100.8') })).status, 200, 'another operator behind the same proxy is not')
})

test('AdminAuthFailures: the window, its end, and bounded memory', () => {
  const f = new AdminAuthFailures({ max: 3, windowMs: 60_000, maxKeys: 100 })
  const t0 = 1_000_000
  for (let i = 0; i < 3; i++) {
    assert.equal(f.lockedFor('a', t0 + i), 0)
    f.fail('a', t0 + i)
  }
  assert.equal(f.lockedFor('a', t0 + 10), 60, 'locked until the window that began at the first failure ends')
  assert.equal(f.lockedFor('a', t0 + 59_001), 1)
  assert.equal(f.lockedFor('a', t0 + 60_000), 0, 'the window has passed')
  f.fail('a', t0 + 60_000)
  assert.equal(f.lockedFor('a', t0 + 60_001), 0, 'a new window, one failure in it')
  assert.equal(f.lockedFor('b', t0), 0)

  // Expired windows are dropped as new failures come in; the map never holds more than maxKeys.
  for (let i = 0; i < 1000; i++) f.fail(`ip-${i}`, t0 + 200_000)
  assert.equal(f.size, 100)
  f.fail('late', t0 + 300_000)
  assert.equal(f.size, 1, 'every earlier window had ended')
  // Filling the map evicts the oldest windows, never the newest.
  for (let i = 0; i < 3; i++) f.fail('newest', t0 + 300_001)
  for (let i = 0; i < 99; i++) f.fail(`x-${i}`, t0 + 300_002)
  assert.equal(f.size, 100)
  assert.ok(f.lockedFor('newest', t0 + 300_003) > 0)
})

test('authenticateAdmin and bearerMatches: lockout before the token is looked at; any token length', () => {
  const f = new AdminAuthFailures({ max: 2 })
  assert.deepEqual(authenticateAdmin(f, 'ip', `Bearer ${TOKEN}`, TOKEN), { ok: true })
  assert.deepEqual(authenticateAdmin(f, 'ip', undefined, TOKEN), { ok: false, retryAfter: 0 })
  assert.deepEqual(authenticateAdmin(f, 'ip', 'Bearer x', TOKEN), { ok: false, retryAfter: 0 })
  assert.deepEqual(authenticateAdmin(f, 'ip', 'Bearer y', TOKEN), { ok: false, retryAfter: 0 })
  const r = authenticateAdmin(f, 'ip', `Bearer ${TOKEN}`, TOKEN)
  assert.equal(r.ok, false)
  assert.ok(!r.ok && r.retryAfter > 0)
  // Digests are compared: tokens of any length are just wrong, never an exception.
  for (const guess of ['', 'a', TOKEN.slice(0, -1), TOKEN + 'a', 'x'.repeat(10_000)]) assert.equal(bearerMatches(`Bearer ${guess}`, TOKEN), false)
  assert.equal(bearerMatches(`bearer ${TOKEN}`, TOKEN), true)
})

test('a lockout does not outlive its window (clock moved on)', { timeout: 30_000 }, async (t) => {
  t.mock.timers.enable({ apis: ['Date'], now: Date.now() })
  const gw = await gateway(t)
  const url = `${gw.url}/admin/upstreams`
  assert.deepEqual(await failTimes(url, 10), Array(10).fill(401))
  assert.equal((await status(url, GOOD)).status, 429)
  t.mock.timers.tick(59_000)
  assert.equal((await status(url, GOOD)).status, 429)
  t.mock.timers.tick(1_000)
  assert.equal((await status(url, GOOD)).status, 200)
})

test('the dashboard\'s token-free routes are no way around the token: targets that climb out of /ui reach the API only with it', async (t) => {
  const { rawRequest } = await import('./raw-http.js')
  const gw = await gateway(t)
  // The page itself needs no token (a browser navigation cannot send one).
  assert.equal((await status(`${gw.url}/admin/ui`)).status, 200)
  for (const target of ['/admin/ui/../connections', '/admin/ui/%2e%2e/connections', '/admin/ui/.%2E/connections', '/admin/ui//../connections', '/admin/ui/app.js/../../connections', '/ADMIN/ui/../connections']) {
    const res = await rawRequest(gw.port, target)
    assert.ok(res.status === 401 || res.status === 404 || res.status === 400, `${target}: ${res.status}`)
    assert.doesNotMatch(res.body, /"connections"\s*:/, `${target}: no listing without the token`)
  }
  const withToken = await rawRequest(gw.port, '/admin/ui/%2e%2e/connections', GOOD)
  assert.equal(withToken.status, 200)
  assert.match(withToken.body, /"connections":\[\]/)
})
