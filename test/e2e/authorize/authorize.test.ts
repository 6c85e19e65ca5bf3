/**
 * External authorization against a real auth service on loopback: what the service is asked,
 * what the upstream then receives (or never receives), for HTTP requests and WebSocket
 * handshakes, and the failure paths (refusal, timeout, service gone, hostile answers).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { request as httpRequest } from 'node:http'
import type { IncomingMessage } from 'node:http'
import { upstreamFor } from '../../helpers/upstream.js'
import { gatewayFor } from '../../helpers/gateway.js'
import { authServiceFor, type AuthService } from '../../helpers/auth-service.js'
import { connect, HandshakeError, nextMessage } from '../../helpers/ws.js'
import { SECRET, sign, now } from '../../helpers/jwt.js'
import { freePort, waitFor } from '../../helpers/resources.js'
import { buildGateway } from '../../../src/gateway/app.js'
import type { GatewayConfigInput } from '../../../src/config/schema.js'

const ADMIN = 'admin-token-0123456789'
const admin = { authorization: `Bearer ${ADMIN}` }

interface Echo { method: string, url: string, path: string, headers: Record<string, string>, body: string }

/** A raw HTTP request (fetch would normalise the path itself). */
function raw (url: string, path: string, headers: Record<string, string> = {}, method = 'GET', body?: string): Promise<{ status: number, headers: IncomingMessage['headers'], body: string }> {
  const u = new URL(url)
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, path, method, headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

async function wsRefusal (url: string, headers?: Record<string, string>): Promise<HandshakeError> {
  try {
    const ws = await connect(url, undefined, { headers })
    ws.terminate()
  } catch (e) {
    if (e instanceof HandshakeError) return e
    throw e
  }
  throw new Error('the handshake was not refused')
}

type T = Parameters<typeof upstreamFor>[0]

async function setup (t: T, svc: AuthService, authorize: Record<string, unknown> = {}, extra: Partial<GatewayConfigInput> = {}) {
  const up = await upstreamFor(t)
  const gw = await gatewayFor(t, {
    authorize: { url: svc.url, ...authorize },
    routes: [{ prefix: '/api', upstream: up.url }],
    admin: { token: ADMIN },
    ...extra
  })
  return { up, gw }
}

test('allowed: the service is asked with the request\'s description, the upstream gets the granted headers and not the client\'s copies', async (t) => {
  const svc = await authServiceFor(t, () => ({ status: 200, headers: { 'x-user-id': 'u-42', 'x-tenant': 'acme', 'x-secret-internal': 'nope' } }))
  const { gw } = await setup(t, svc, { upstreamHeaders: ['x-tenant'], userHeader: 'x-user-id' })
  const res = await raw(gw.url, '/api/a/../b%7Ec?q=1', {
    authorization: 'Bearer opaque-token',
    cookie: 'session=abc',
    'x-tenant': 'evil',
    'x-user-id': 'admin',
    'x-forwarded-for': '6.6.6.6',
    'x-not-listed': 'private'
  })
  assert.equal(res.status, 200)
  // What the auth service was told.
  assert.equal(svc.asked.length, 1)
  const q = svc.asked[0]
  assert.equal(q.method, 'GET')
  assert.equal(q.url, '/check')
  assert.equal(q.headers['x-forwarded-method'], 'GET')
  assert.equal(q.headers['x-forwarded-uri'], '/api/b~c?q=1', 'the normalised path, the query as it came')
  assert.equal(q.headers['x-forwarded-for'], '127.0.0.1', 'the client\'s own address, not its claimed chain')
  assert.equal(q.headers['x-forwarded-host'], `127.0.0.1:${gw.port}`)
  assert.equal(q.headers.authorization, 'Bearer opaque-token')
  assert.equal(q.headers.cookie, 'session=abc')
  assert.equal(q.headers['x-not-listed'], undefined, 'only the listed client headers are sent')
  assert.equal(q.headers['x-tollgate-claims'], undefined, 'no claims on a route without auth')
  // What the upstream received.
  const echo = JSON.parse(res.body) as Echo
  assert.equal(echo.path, '/api/b~c')
  assert.equal(echo.headers['x-tenant'], 'acme', 'the service\'s value, not the client\'s')
  assert.equal(echo.headers['x-user-id'], undefined, 'userHeader alone is not forwarded, and the client\'s copy is dropped')
  assert.equal(echo.headers['x-secret-internal'], undefined, 'answer headers not listed stay out')
})

test('refused: the service\'s status, body and WWW-Authenticate reach the client; the upstream sees nothing', async (t) => {
  const svc = await authServiceFor(t, () => ({ status: 403, headers: { 'content-type': 'application/json', 'www-authenticate': 'Bearer realm="x"', 'x-internal': 'hidden' }, body: '{"error":"forbidden","why":"no plan"}' }))
  const { up, gw } = await setup(t, svc)
  let upstreamHits = 0
  up.server.prependListener('request', () => { upstreamHits++ })
  const res = await raw(gw.url, '/api/x', {}, 'POST', 'payload')
  assert.equal(res.status, 403)
  assert.equal(res.body, '{"error":"forbidden","why":"no plan"}')
  assert.equal(res.headers['content-type'], 'application/json')
  assert.equal(res.headers['www-authenticate'], 'Bearer realm="x"')
  assert.equal(res.headers['x-internal'], undefined)
  assert.equal(upstreamHits, 0)
  assert.equal(svc.asked[0].headers['x-forwarded-method'], 'POST')
})

test('a WebSocket handshake is refused before any upgrade, with the service\'s 401 and body', async (t) => {
  const svc = await authServiceFor(t, (req) => req.headers.authorization === 'Bearer good'
    ? { status: 204, headers: { 'x-user-id': 'alice' } }
    : { status: 401, headers: { 'content-type': 'text/plain' }, body: 'log in first' })
  const { up, gw } = await setup(t, svc, { userHeader: 'x-user-id', upstreamHeaders: ['x-user-id'] })
  const e = await wsRefusal(`${gw.wsUrl}/api/chat`, { authorization: 'Bearer bad' })
  assert.equal(e.status, 401)
  assert.equal(e.body, 'log in first')
  assert.equal(up.upgrades.length, 0, 'no upstream handshake')
  assert.equal(svc.asked.length, 1)
  assert.equal(svc.asked[0].headers['x-forwarded-uri'], '/api/chat')

  // Allowed: the user id the service named is the connection's, and the upstream is told.
  const ws = await connect(`${gw.wsUrl}/api/chat`, undefined, { headers: { authorization: 'Bearer good', 'x-user-id': 'mallory' } })
  t.after(() => ws.terminate())
  ws.send('hi')
  assert.equal((await nextMessage(ws)).data.toString(), 'hi')
  assert.equal(up.upgrades.length, 1)
  assert.equal(up.upgrades[0].headers['x-user-id'], 'alice')
  const list = await (await fetch(`${gw.url}/admin/connections`, { headers: admin })).json() as { connections: Array<{ userId: string }> }
  assert.deepEqual(list.connections.map((c) => c.userId), ['alice'])
  const mine = await (await fetch(`${gw.url}/admin/users/alice/connections`, { headers: admin })).json() as { total: number, connections: Array<{ userId: string }> }
  assert.equal(mine.total, 1)
  assert.equal(mine.connections[0].userId, 'alice')
})

test('a service that does not answer in time: 503 with a coded error, or through with failOpen', async (t) => {
  const svc = await authServiceFor(t, () => ({ status: 200, hang: true }))
  const { up, gw } = await setup(t, svc, { timeout: '150ms' })
  let upstreamHits = 0
  up.server.prependListener('request', () => { upstreamHits++ })
  const res = await raw(gw.url, '/api/x')
  assert.equal(res.status, 503)
  assert.equal(JSON.parse(res.body).code, 'GW_ERR_AUTHZ_UNAVAILABLE')
  assert.match(JSON.parse(res.body).message, /timeout/)
  const e = await wsRefusal(`${gw.wsUrl}/api/x`)
  assert.equal(e.status, 503)
  assert.equal(up.upgrades.length, 0)
  assert.equal(upstreamHits, 0)

  const open = await gatewayFor(t, { authorize: { url: svc.url, timeout: '150ms', failOpen: true, upstreamHeaders: ['x-user-id'] }, routes: [{ prefix: '/api', upstream: up.url }] })
  const ok = await raw(open.url, '/api/x', { 'x-user-id': 'spoofed' })
  assert.equal(ok.status, 200)
  assert.equal((JSON.parse(ok.body) as Echo).headers['x-user-id'], undefined, 'failing open grants no headers, and the client\'s copy is still dropped')
})

test('a service that is not there (connection refused) is 503; the metrics count each decision', async (t) => {
  const port = await freePort()
  const up = await upstreamFor(t)
  const gw = await gatewayFor(t, { authorize: { url: `http://127.0.0.1:${port}/auth` }, routes: [{ prefix: '/api', upstream: up.url }] })
  const res = await raw(gw.url, '/api/x')
  assert.equal(res.status, 503)
  assert.equal(JSON.parse(res.body).code, 'GW_ERR_AUTHZ_UNAVAILABLE')
  const metrics = await (await fetch(`${gw.url}/metrics`)).text()
  assert.match(metrics, /tollgate_authorize_decisions_total\{route="\/api",result="unavailable"\} 1/)
})

test('rate limits are checked before the service is asked: a flood past the limit costs it nothing', async (t) => {
  const svc = await authServiceFor(t)
  const { gw } = await setup(t, svc, {}, { rateLimit: { http: { max: 3, window: '1m' } } })
  const statuses: number[] = []
  for (let i = 0; i < 8; i++) statuses.push((await raw(gw.url, '/api/x')).status)
  assert.deepEqual(statuses, [200, 200, 200, 429, 429, 429, 429, 429])
  assert.equal(svc.asked.length, 3)
})

test('cache: the same question is answered from the cache until it expires; another one, or no-store, asks again', async (t) => {
  let stamp = 0
  const svc = await authServiceFor(t, (req) => ({
    status: 200,
    headers: { 'x-decision': String(++stamp), ...(req.headers.authorization === 'Bearer nostore' ? { 'cache-control': 'no-store' } : {}) }
  }))
  const { gw } = await setup(t, svc, { cache: '300ms', upstreamHeaders: ['x-decision'] })
  const a1 = JSON.parse((await raw(gw.url, '/api/x', { authorization: 'Bearer a' })).body) as Echo
  const a2 = JSON.parse((await raw(gw.url, '/api/x', { authorization: 'Bearer a' })).body) as Echo
  assert.equal(svc.asked.length, 1)
  assert.equal(a2.headers['x-decision'], a1.headers['x-decision'], 'the cached decision\'s headers')
  await raw(gw.url, '/api/x', { authorization: 'Bearer b' })
  await raw(gw.url, '/api/y', { authorization: 'Bearer a' })
  assert.equal(svc.asked.length, 3, 'another token or another path is another question')
  await raw(gw.url, '/api/x', { authorization: 'Bearer nostore' })
  await raw(gw.url, '/api/x', { authorization: 'Bearer nostore' })
  assert.equal(svc.asked.length, 5, 'Cache-Control: no-store is not cached')
  await waitFor(async () => { await raw(gw.url, '/api/x', { authorization: 'Bearer a' }); return svc.asked.length === 6 }, 'the cached decision to expire', 3000, 50)
  const metrics = await (await fetch(`${gw.url}/metrics`)).text()
  assert.match(metrics, /tollgate_authorize_decisions_total\{route="\/api",result="cached_allowed"\} [1-9]/)
  assert.match(metrics, /tollgate_authorize_duration_seconds_count\{route="\/api"\} 6/)
})

test('with auth: the service gets the verified claims; a client\'s own claims header never reaches it', async (t) => {
  const svc = await authServiceFor(t)
  const up = await upstreamFor(t)
  const gw = await gatewayFor(t, {
    auth: { jwt: { secret: SECRET } },
    authorize: { url: svc.url },
    routes: [{ prefix: '/private', upstream: up.url, auth: 'required' }, { prefix: '/open', upstream: up.url }]
  })
  const token = sign({ sub: 'alice', role: 'admin', exp: now() + 60 })
  assert.equal((await raw(gw.url, '/private/x?access_token=' + token + '&a=1')).status, 200)
  const claims = JSON.parse(Buffer.from(String(svc.asked[0].headers['x-tollgate-claims']), 'base64url').toString()) as Record<string, unknown>
  assert.equal(claims.sub, 'alice')
  assert.equal(claims.role, 'admin')
  assert.equal(svc.asked[0].headers['x-forwarded-uri'], '/private/x?a=1', 'the token parameter is not passed on')
  // Auth refuses first: the service is not asked for a request without a valid token.
  assert.equal((await raw(gw.url, '/private/x')).status, 401)
  assert.equal(svc.asked.length, 1)
  const forged = Buffer.from(JSON.stringify({ sub: 'root' })).toString('base64url')
  assert.equal((await raw(gw.url, '/open/x', { 'x-tollgate-claims': forged })).status, 200)
  assert.equal(svc.asked[1].headers['x-tollgate-claims'], undefined)
})

test('keyBy user with userHeader: open connections are counted per user the service named', async (t) => {
  const svc = await authServiceFor(t, (req) => ({ status: 200, headers: { 'x-user-id': String(req.headers.authorization).slice(7) } }))
  const up = await upstreamFor(t)
  const gw = await gatewayFor(t, {
    authorize: { url: svc.url, userHeader: 'x-user-id' },
    routes: [{ prefix: '/ws', upstream: up.url, rateLimit: { keyBy: 'user', concurrent: 1 } }]
  })
  const alice = await connect(`${gw.wsUrl}/ws`, undefined, { headers: { authorization: 'Bearer alice' } })
  t.after(() => alice.terminate())
  const again = await wsRefusal(`${gw.wsUrl}/ws`, { authorization: 'Bearer alice' })
  assert.equal(again.status, 429)
  const bob = await connect(`${gw.wsUrl}/ws`, undefined, { headers: { authorization: 'Bearer bob' } })
  t.after(() => bob.terminate())
  assert.equal(up.upgrades.length, 2)
})

test('authorize: false on a route turns the top-level default off; static routes are guarded too', async (t) => {
  const svc = await authServiceFor(t, () => ({ status: 403, body: 'no' }))
  const up = await upstreamFor(t)
  const gw = await gatewayFor(t, {
    authorize: { url: svc.url },
    routes: [
      { prefix: '/open', upstream: up.url, authorize: false },
      { prefix: '/files', static: new URL('.', import.meta.url).pathname }
    ]
  })
  assert.equal((await raw(gw.url, '/open/x')).status, 200)
  assert.equal(svc.asked.length, 0)
  const files = await raw(gw.url, '/files/authorize.test.ts')
  assert.equal(files.status, 403)
  assert.equal(files.body, 'no')
  assert.equal(svc.asked[0].headers['x-forwarded-uri'], '/files/authorize.test.ts')
})

test('hostile answers: a huge refusal keeps its status without its body; a redirect passes with its Location; a status past 599 is 503', async (t) => {
  let mode = 'huge'
  const svc = await authServiceFor(t, () => mode === 'huge'
    ? { status: 401, headers: { 'content-type': 'text/plain' }, body: Buffer.alloc(200 * 1024, 'a') }
    : mode === 'redirect' ? { status: 302, headers: { location: 'https://login.example/?next=/api' } } : { status: 799, body: 'what' })
  const { up, gw } = await setup(t, svc)
  let upstreamHits = 0
  up.server.prependListener('request', () => { upstreamHits++ })
  const huge = await raw(gw.url, '/api/x')
  assert.equal(huge.status, 401)
  assert.equal(huge.body, '')
  assert.equal(huge.headers['content-type'], undefined)
  mode = 'redirect'
  const redirect = await raw(gw.url, '/api/x')
  assert.equal(redirect.status, 302)
  assert.equal(redirect.headers.location, 'https://login.example/?next=/api')
  mode = 'junk'
  const junk = await raw(gw.url, '/api/x')
  assert.equal(junk.status, 503)
  assert.match(JSON.parse(junk.body).message, /status 799/)
  assert.equal(upstreamHits, 0)
})

test('a refusal whose body is cut is still a refusal, even with failOpen; a 5xx is not cached', async (t) => {
  let mode = 'cut'
  const svc = await authServiceFor(t, () => mode === 'cut'
    ? { status: 401, custom: (res) => { res.writeHead(401, { 'content-type': 'text/plain', 'content-length': '100' }); res.write('partial'); setImmediate(() => res.socket?.destroy()) } }
    : { status: 500, body: 'oops' })
  const { up, gw } = await setup(t, svc, { failOpen: true, cache: '1m' })
  let upstreamHits = 0
  up.server.prependListener('request', () => { upstreamHits++ })
  const cut = await raw(gw.url, '/api/x')
  assert.equal(cut.status, 401)
  assert.equal(cut.body, '')
  mode = 'error'
  assert.equal((await raw(gw.url, '/api/y')).status, 500)
  assert.equal((await raw(gw.url, '/api/y')).status, 500)
  assert.equal(svc.asked.length, 3, 'the 5xx was asked again, not cached')
  assert.equal(upstreamHits, 0)
})

test('an upstream header the service may not set, a reserved forwarded header, or a bad URL is a configuration error naming the key', async () => {
  const cases: Array<[GatewayConfigInput, RegExp]> = [
    [{ authorize: { url: 'http://a/x', upstreamHeaders: ['Host'] } }, /^authorize\.upstreamHeaders\[0\]/],
    [{ authorize: { url: 'http://a/x', forwardHeaders: ['x-tollgate-claims'] } }, /^authorize\.forwardHeaders\[0\]/],
    [{ authorize: { url: 'ftp://a/x' } }, /^authorize\.url/],
    [{ authorize: { url: 'http://a/x', forwardHeaders: ['Expect'] } }, /^authorize\.forwardHeaders\[0\]/],
    [{ authorize: { url: 'http://a/x', timeout: 'soon' } }, /^authorize\.timeout/],
    [{ authorize: { url: 'http://a/x', upstreamHeaders: ['bad header'] } }, /^authorize\.upstreamHeaders\[0\]/],
    [{ routes: [{ prefix: '/a', upstream: 'http://127.0.0.1:1', authorize: { url: 'http://a/x', bogus: 1 } as never }] }, /^routes\[0\]\.authorize\.bogus/]
  ]
  for (const [config, message] of cases) {
    await assert.rejects(buildGateway(config, { logger: false }), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'GW_ERR_CONFIG')
      assert.match(e.message, message)
      return true
    }, JSON.stringify(config))
  }
})

test('a long user id named by the service (200 characters) is listed and found by /users/:id/connections', async (t) => {
  const long = 'user-' + 'x'.repeat(195)
  const svc = await authServiceFor(t, () => ({ status: 200, headers: { 'x-user-id': long } }))
  const { gw } = await setup(t, svc, { userHeader: 'x-user-id' })
  const ws = await connect(`${gw.wsUrl}/api/x`)
  t.after(() => ws.terminate())
  const res = await fetch(`${gw.url}/admin/users/${long}/connections`, { headers: admin })
  assert.equal(res.status, 200)
  assert.equal(((await res.json()) as { total: number }).total, 1)
  assert.equal((await fetch(`${gw.url}/admin/users/${'y'.repeat(300)}/connections`, { headers: admin })).status, 400)
})
