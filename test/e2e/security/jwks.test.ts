/**
 * JWKS key handling and required claims, end to end: a gateway on 127.0.0.1:0, a real JWKS
 * endpoint whose requests are counted and whose answers the test switches (keys, 500, garbage,
 * down), and an upstream that records what reached it. The 10 s refetch interval passes on a
 * mocked Date (node:test MockTimers, Date only: real timers and sockets run as usual).
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createPublicKey, type KeyObject } from 'node:crypto'
import { startUpstream, type TestUpstream } from '../../helpers/upstream.js'
import { startGateway, type TestGateway } from '../../helpers/gateway.js'
import { connect, HandshakeError } from '../../helpers/ws.js'
import { SECRET, sign, rsaPair, ecPair, now } from '../../helpers/jwt.js'
import { JWKS_REFETCH_INTERVAL_MS } from '../../../src/auth/jwks.js'
import type { GatewayConfigInput } from '../../../src/config/schema.js'

type T = TestContext

interface Provider {
  url: string
  requests: number
  mode: 'ok' | 'status500' | 'garbage'
  setKeys (keys: Array<{ kid: string, key: KeyObject }>): void
  close (): Promise<void>
}

async function startProvider (t: T, keys: Array<{ kid: string, key: KeyObject }>): Promise<Provider> {
  let doc = ''
  const p: Provider = {
    url: '',
    requests: 0,
    mode: 'ok',
    setKeys (ks) { doc = JSON.stringify({ keys: ks.map(({ kid, key }) => ({ ...createPublicKey(key).export({ format: 'jwk' }), kid, use: 'sig' })) }) },
    close: async () => {}
  }
  p.setKeys(keys)
  const server: Server = createServer((_req, res) => {
    p.requests++
    if (p.mode === 'status500') res.writeHead(500, { 'content-type': 'text/plain' }).end('down for maintenance')
    else if (p.mode === 'garbage') res.writeHead(200, { 'content-type': 'application/json' }).end('<html>not json')
    else res.writeHead(200, { 'content-type': 'application/json' }).end(doc)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  p.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`
  let closed = false
  p.close = () => new Promise<void>((resolve) => {
    if (closed) { resolve(); return }
    closed = true
    server.closeAllConnections()
    server.close(() => resolve())
  })
  t.after(() => p.close())
  return p
}

interface Seen { up: TestUpstream, http: string[] }

async function setup (t: T, jwt: NonNullable<GatewayConfigInput['auth']>['jwt'], opts: { captureLogs?: boolean } = {}): Promise<Seen & { gw: TestGateway }> {
  const http: string[] = []
  const up = await startUpstream({ http: (req, res) => { http.push(req.url ?? ''); res.writeHead(200).end('ok') } })
  t.after(() => up.close())
  const gw = await startGateway({ auth: { jwt }, routes: [{ prefix: '/private', upstream: up.url, auth: 'required' }] }, opts)
  t.after(() => gw.close())
  return { up, http, gw }
}

/** Lets the refetch interval pass for the gateway (and everything else reading Date). */
function mockClock (t: T): { pass (): void } {
  t.mock.timers.enable({ apis: ['Date'], now: Date.now() })
  return { pass: () => t.mock.timers.tick(JWKS_REFETCH_INTERVAL_MS) }
}

async function get (gw: TestGateway, token: string, path = '/private/x'): Promise<{ status: number, message: string }> {
  const res = await fetch(`${gw.url}${path}`, { headers: { authorization: `Bearer ${token}` } })
  const text = await res.text()
  return { status: res.status, message: res.status === 200 ? text : (JSON.parse(text) as { message: string }).message }
}

async function handshake (gw: TestGateway, token: string): Promise<{ status: number, body: string }> {
  try {
    const ws = await connect(`${gw.wsUrl}/private`, [`bearer.${token}`])
    ws.terminate()
    return { status: 101, body: '' }
  } catch (e) {
    if (e instanceof HandshakeError) return { status: e.status, body: e.body }
    throw e
  }
}

const rs = (key: KeyObject, kid: string, claims: Record<string, unknown> = {}): string =>
  sign({ sub: 'u', exp: now() + 3600, ...claims }, { key, algorithm: 'RS256', kid })

test('50 tokens with distinct unknown kids cost one JWKS fetch in all and never reach the upstream', async (t) => {
  const k1 = rsaPair()
  const jwks = await startProvider(t, [{ kid: 'k1', key: k1.privateKey }])
  const { gw, up, http } = await setup(t, { jwksUrl: jwks.url })
  const results = await Promise.all(Array.from({ length: 50 }, (_, i) => get(gw, rs(k1.privateKey, `bogus-${i}`), `/private/bogus-${i}`)))
  for (const r of results) assert.deepEqual(r, { status: 401, message: 'invalid token: unknown signing key' })
  for (let i = 0; i < 10; i++) assert.equal((await handshake(gw, rs(k1.privateKey, `ws-bogus-${i}`))).status, 401)
  assert.equal(jwks.requests, 1, 'one fetch for 60 unknown kids')
  assert.deepEqual(http, [])
  assert.equal(up.upgrades.length, 0)
  // The fetch the bogus kids caused brought the real key: it works without another.
  assert.equal((await get(gw, rs(k1.privateKey, 'k1'), '/private/real')).status, 200)
  assert.deepEqual(http, ['/private/real'])
  assert.equal(jwks.requests, 1)
  // Tokens no JWKS key could verify are refused before any lookup.
  const es = sign({ sub: 'u', exp: now() + 60 }, { key: ecPair().privateKey, algorithm: 'ES256', kid: 'es-kid' })
  assert.deepEqual(await get(gw, es), { status: 401, message: 'invalid token: token algorithm not allowed' })
  assert.equal(jwks.requests, 1)
})

test('200 bogus kids, in and after the interval, leave the real key working without a new fetch', async (t) => {
  const k1 = rsaPair()
  const jwks = await startProvider(t, [{ kid: 'k1', key: k1.privateKey }])
  const { gw, http } = await setup(t, { jwksUrl: jwks.url })
  const clock = mockClock(t)
  const real = rs(k1.privateKey, 'k1')
  assert.equal((await get(gw, real)).status, 200)
  assert.equal(jwks.requests, 1)
  const flood = async (tag: string): Promise<void> => {
    const statuses = await Promise.all(Array.from({ length: 200 }, (_, i) => get(gw, rs(k1.privateKey, `${tag}-${i}`)).then((r) => r.status)))
    assert.deepEqual(new Set(statuses), new Set([401]))
  }
  await flood('inside')
  assert.equal(jwks.requests, 1, 'inside the interval: no fetch at all')
  clock.pass()
  await flood('after')
  assert.equal(jwks.requests, 2, 'after it: one fetch for 200 kids')
  assert.equal((await get(gw, real)).status, 200)
  assert.equal((await handshake(gw, real)).status, 101)
  assert.equal(jwks.requests, 2, 'the real key was not evicted')
  assert.equal(http.length, 2, 'only the two real requests reached the upstream')
})

test('JWKS endpoint answering 500, garbage, then refusing connections: known keys keep working, failures are logged', async (t) => {
  const k1 = rsaPair()
  const jwks = await startProvider(t, [{ kid: 'k1', key: k1.privateKey }])
  const { gw, http } = await setup(t, { jwksUrl: jwks.url }, { captureLogs: true })
  const clock = mockClock(t)
  const real = rs(k1.privateKey, 'k1')
  assert.equal((await get(gw, real)).status, 200)
  for (const stage of ['status500', 'garbage', 'refused'] as const) {
    if (stage === 'refused') await jwks.close()
    else jwks.mode = stage
    clock.pass()
    const unknown = rs(k1.privateKey, `new-${stage}`)
    assert.deepEqual(await get(gw, unknown), { status: 401, message: 'invalid token: unknown signing key' }, stage)
    assert.equal((await handshake(gw, unknown)).status, 401, stage)
    assert.equal((await get(gw, real)).status, 200, `${stage}: the known key still works`)
    assert.equal((await handshake(gw, real)).status, 101, stage)
  }
  assert.equal(jwks.requests, 3, 'first fetch, the 500 and the garbage (the refused one never arrived)')
  assert.equal(http.length, 4, 'the first real request and one per stage')
  const failed = gw.logs.filter((l) => l.msg === 'JWKS fetch failed')
  assert.equal(failed.length, 3)
  for (const l of failed) {
    assert.equal(l.level, 40)
    assert.equal(l.jwksUrl, jwks.url)
    assert.equal(l.knownKeys, 1)
  }
  assert.equal(gw.logs.filter((l) => l.level === 50 || l.level === 60).length, 0, 'no error-level logs (no 500s)')
  assert.ok(!gw.logText().includes(real.split('.')[2]), 'no token in the logs')
})

test('JWKS endpoint down from the start: 401 unknown signing key, never a 500', async (t) => {
  const k1 = rsaPair()
  const jwks = await startProvider(t, [{ kid: 'k1', key: k1.privateKey }])
  await jwks.close()
  const { gw, http } = await setup(t, { jwksUrl: jwks.url })
  const results = await Promise.all(Array.from({ length: 20 }, () => get(gw, rs(k1.privateKey, 'k1'))))
  for (const r of results) assert.deepEqual(r, { status: 401, message: 'invalid token: unknown signing key' })
  assert.equal((await handshake(gw, rs(k1.privateKey, 'k1'))).status, 401)
  assert.deepEqual(http, [])
})

test('rotation: a kid published after the last fetch is found once the interval has passed', async (t) => {
  const k1 = rsaPair()
  const k2 = rsaPair()
  const jwks = await startProvider(t, [{ kid: 'k1', key: k1.privateKey }])
  const { gw, http, up } = await setup(t, { jwksUrl: jwks.url })
  const clock = mockClock(t)
  assert.equal((await get(gw, rs(k1.privateKey, 'k1'))).status, 200)
  jwks.setKeys([{ kid: 'k1', key: k1.privateKey }, { kid: 'k2', key: k2.privateKey }])
  const t2 = rs(k2.privateKey, 'k2')
  assert.equal((await get(gw, t2)).status, 401, 'inside the interval the new kid is not fetched')
  assert.equal(jwks.requests, 1)
  clock.pass()
  assert.equal((await get(gw, t2, '/private/rotated')).status, 200)
  assert.equal((await handshake(gw, t2)).status, 101)
  assert.equal(jwks.requests, 2)
  assert.deepEqual(http, ['/private/x', '/private/rotated'])
  assert.equal(up.upgrades.length, 1)
  // The right kid with another key's signature is still refused.
  assert.equal((await get(gw, rs(k1.privateKey, 'k2'))).status, 401)
})

for (const keys of ['secret', 'jwks'] as const) {
  test(`requiredClaims [exp] (${keys}): a token without exp is 401 on HTTP and on the handshake; with exp it passes`, async (t) => {
    const k1 = rsaPair()
    const jwks = await startProvider(t, [{ kid: 'k1', key: k1.privateKey }])
    const jwt = keys === 'secret' ? { secret: SECRET, requiredClaims: ['exp'] } : { jwksUrl: jwks.url, requiredClaims: ['exp'] }
    const { gw, http, up } = await setup(t, jwt)
    const mint = (claims: Record<string, unknown>): string => keys === 'secret' ? sign(claims) : sign(claims, { key: k1.privateKey, algorithm: 'RS256', kid: 'k1' })
    const noExp = mint({ sub: 'forever' })
    const res = await fetch(`${gw.url}/private/no-exp`, { headers: { authorization: `Bearer ${noExp}` } })
    assert.equal(res.status, 401)
    assert.equal(res.headers.get('www-authenticate'), 'Bearer error="invalid_token", error_description="missing required claim exp"')
    assert.deepEqual(await res.json(), { statusCode: 401, code: 'GW_ERR_AUTH_INVALID', error: 'Unauthorized', message: 'invalid token: missing required claim exp' })
    const hs = await handshake(gw, noExp)
    assert.equal(hs.status, 401)
    assert.equal((JSON.parse(hs.body) as { message: string }).message, 'invalid token: missing required claim exp')
    assert.deepEqual(http, [])
    assert.equal(up.upgrades.length, 0)
    const withExp = mint({ sub: 'ok', exp: now() + 60 })
    assert.equal((await get(gw, withExp, '/private/with-exp')).status, 200)
    assert.equal((await handshake(gw, withExp)).status, 101)
    assert.deepEqual(http, ['/private/with-exp'])
    assert.equal(up.upgrades.length, 1)
  })
}

test('requiredClaims default []: a token without exp is accepted', async (t) => {
  const { gw, http } = await setup(t, { secret: SECRET })
  assert.equal((await get(gw, sign({ sub: 'forever' }))).status, 200)
  assert.equal(http.length, 1)
})
