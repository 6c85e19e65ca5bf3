import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { startUpstream, type TestUpstream } from '../../helpers/upstream.js'
import { startGateway, type TestGateway } from '../../helpers/gateway.js'
import { connect, closed, nextMessage, HandshakeError } from '../../helpers/ws.js'
import { SECRET, sign, unsigned, hmacWith, rsaPair, ecPair, now, startJwks } from '../../helpers/jwt.js'
import { waitFor } from '../../helpers/resources.js'
import { buildGateway } from '../../../src/gateway/app.js'
import type { GatewayConfigInput } from '../../../src/config/schema.js'

type T = { after: (fn: () => unknown) => void }

async function setup (t: T, extra: Partial<GatewayConfigInput> = {}, opts: { captureLogs?: boolean, level?: string } = {}): Promise<{ up: TestUpstream, gw: TestGateway }> {
  const up = await startUpstream()
  t.after(() => up.close())
  const gw = await startGateway({
    auth: { jwt: { secret: SECRET }, forwardClaims: { sub: 'x-user-id', tenant: 'x-tenant' } },
    routes: [
      { prefix: '/private', upstream: up.url, auth: 'required' },
      { prefix: '/maybe', upstream: up.url, auth: 'optional' },
      { prefix: '/public', upstream: up.url }
    ],
    admin: { token: 'admin-token-0123456789' },
    ...extra
  }, opts)
  t.after(() => gw.close())
  return { up, gw }
}

const valid = (claims: Record<string, unknown> = {}): string => sign({ sub: 'alice', exp: now() + 600, ...claims })

async function wsStatus (url: string, protocols?: string | string[], headers?: Record<string, string>): Promise<number> {
  try {
    const ws = await connect(url, protocols, { headers })
    ws.terminate()
    return 101
  } catch (e) {
    if (e instanceof HandshakeError) return e.status
    throw e
  }
}

test('required: no token gets 401 with WWW-Authenticate: Bearer (HTTP and WebSocket), upstream untouched', async (t) => {
  const { up, gw } = await setup(t)
  const res = await fetch(`${gw.url}/private/x`)
  assert.equal(res.status, 401)
  assert.equal(res.headers.get('www-authenticate'), 'Bearer')
  assert.equal(((await res.json()) as { code: string }).code, 'GW_ERR_AUTH_REQUIRED')
  await assert.rejects(connect(`${gw.wsUrl}/private`), (e: HandshakeError) => {
    assert.equal(e.status, 401)
    assert.equal(e.headers['www-authenticate'], 'Bearer')
    assert.equal(JSON.parse(e.body).code, 'GW_ERR_AUTH_REQUIRED')
    return true
  })
  assert.equal(up.upgrades.length, 0)
})

test('every kind of bad token gets 401 invalid_token before any upgrade', async (t) => {
  const { up, gw } = await setup(t, { auth: { jwt: { secret: SECRET, issuer: 'https://issuer.example', audience: 'my-api' } } })
  const good = { sub: 'a', iss: 'https://issuer.example', aud: 'my-api' }
  const cases: Record<string, [string, RegExp]> = {
    malformed: ['not.a.jwt', /malformed/],
    garbage: ['abc', /malformed/],
    'bad signature': [sign({ ...good, exp: now() + 60 }, { key: 'another-secret' }), /signature/],
    expired: [sign({ ...good, exp: now() - 10 }), /expired/],
    'not yet valid': [sign({ ...good, nbf: now() + 600, exp: now() + 900 }), /not yet valid/],
    'wrong issuer': [sign({ ...good, iss: 'https://evil.example', exp: now() + 60 }), /issuer/],
    'wrong audience': [sign({ ...good, aud: 'other', exp: now() + 60 }), /audience/],
    'alg none': [unsigned({ ...good, exp: now() + 60 }), /not signed/],
    'HS512 when only HS256 is allowed': [sign({ ...good, exp: now() + 60 }, { algorithm: 'HS512' }), /algorithm|signature/]
  }
  for (const [name, [token, reason]] of Object.entries(cases)) {
    const res = await fetch(`${gw.url}/private/x`, { headers: { authorization: `Bearer ${token}` } })
    assert.equal(res.status, 401, name)
    assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer error="invalid_token"/, name)
    const body = await res.json() as { code: string, message: string }
    assert.equal(body.code, 'GW_ERR_AUTH_INVALID', name)
    assert.match(body.message, reason, `${name}: ${body.message}`)
    assert.equal(await wsStatus(`${gw.wsUrl}/private`, undefined, { authorization: `Bearer ${token}` }), 401, name)
  }
  assert.equal(up.upgrades.length, 0)
  // The same issuer/audience with a good token passes.
  assert.equal((await fetch(`${gw.url}/private/x`, { headers: { authorization: `Bearer ${sign({ ...good, exp: now() + 60 })}` } })).status, 200)
})

test('each token source works; the query parameter and bearer offer never reach the upstream', async (t) => {
  const { up, gw } = await setup(t)
  const tok = valid()
  // header
  assert.equal((await fetch(`${gw.url}/private/h`, { headers: { authorization: `Bearer ${tok}` } })).status, 200)
  // query (HTTP): removed upstream, other parameters kept as sent
  const q = await fetch(`${gw.url}/private/q?a=1&access_token=${tok}&b=x%20y`)
  assert.equal(q.status, 200)
  const echoed = await q.json() as { url: string }
  assert.equal(echoed.url, '/private/q?a=1&b=x%20y')
  // cookie
  assert.equal((await fetch(`${gw.url}/private/c`, { headers: { cookie: `other=1; access_token=${tok}` } })).status, 200)
  // WebSocket: query
  let ws = await connect(`${gw.wsUrl}/private/ws?access_token=${tok}&keep=1`)
  assert.equal(up.upgrades.at(-1)!.url, '/private/ws?keep=1')
  ws.close()
  // WebSocket: cookie
  ws = await connect(`${gw.wsUrl}/private`, undefined, { headers: { cookie: `access_token=${tok}` } })
  ws.close()
  // WebSocket: subprotocol as the only offer: not sent upstream, and echoed back to the client
  ws = await connect(`${gw.wsUrl}/private`, [`bearer.${tok}`])
  assert.equal(up.upgrades.at(-1)!.headers['sec-websocket-protocol'], undefined)
  assert.equal(ws.protocol, `bearer.${tok}`)
  ws.send('hi')
  assert.equal((await nextMessage(ws)).data.toString(), 'hi')
  ws.close()
  // WebSocket: subprotocol next to a real one: upstream sees only the real one and picks it
  ws = await connect(`${gw.wsUrl}/private`, [`bearer.${tok}`, 'chat.v1'])
  assert.equal(up.upgrades.at(-1)!.headers['sec-websocket-protocol'], 'chat.v1')
  assert.equal(ws.protocol, 'chat.v1')
  ws.close()
  // A bearer offer on a plain HTTP request is not a token source
  assert.equal((await fetch(`${gw.url}/private/p`, { headers: { 'sec-websocket-protocol': `bearer.${tok}` } })).status, 401)
})

test('tokenSources order decides which token counts; sources not listed are ignored', async (t) => {
  const { gw } = await setup(t, { auth: { jwt: { secret: SECRET }, tokenSources: ['cookie', 'header'] } })
  const good = valid()
  const bad = sign({ sub: 'x', exp: now() - 100 })
  assert.equal((await fetch(`${gw.url}/private/x`, { headers: { cookie: `access_token=${good}`, authorization: `Bearer ${bad}` } })).status, 200)
  assert.equal((await fetch(`${gw.url}/private/x`, { headers: { cookie: `access_token=${bad}`, authorization: `Bearer ${good}` } })).status, 401)
  // query is not a source here
  assert.equal((await fetch(`${gw.url}/private/x?access_token=${good}`)).status, 401)
})

test('optional: none is fine, valid is used, invalid is 401', async (t) => {
  const { up, gw } = await setup(t)
  assert.equal((await fetch(`${gw.url}/maybe/x`)).status, 200)
  const res = await fetch(`${gw.url}/maybe/x`, { headers: { authorization: `Bearer ${valid()}` } })
  assert.equal(((await res.json()) as { headers: Record<string, string> }).headers['x-user-id'], 'alice')
  assert.equal((await fetch(`${gw.url}/maybe/x`, { headers: { authorization: 'Bearer junk' } })).status, 401)
  const anon = await connect(`${gw.wsUrl}/maybe`)
  const authed = await connect(`${gw.wsUrl}/maybe`, undefined, { headers: { authorization: `Bearer ${valid({ sub: 'bob' })}` } })
  const list = await (await fetch(`${gw.url}/admin/connections`, { headers: { authorization: 'Bearer admin-token-0123456789' } })).json() as { connections: Array<{ userId: string | null }> }
  assert.deepEqual(list.connections.map((c) => c.userId), [null, 'bob'])
  assert.equal(up.upgrades.at(-1)!.headers['x-user-id'], 'bob')
  anon.close(); authed.close()
})

test('forwardClaims become upstream headers; client-sent copies are always removed', async (t) => {
  const { up, gw } = await setup(t)
  const tok = valid({ tenant: 't-42' })
  const res = await fetch(`${gw.url}/private/x`, { headers: { authorization: `Bearer ${tok}`, 'x-user-id': 'mallory', 'X-Tenant': 'evil' } })
  const h = ((await res.json()) as { headers: Record<string, string> }).headers
  assert.equal(h['x-user-id'], 'alice')
  assert.equal(h['x-tenant'], 't-42')
  // On a public route, with no token: the spoofed headers are dropped, not forwarded.
  const pub = await fetch(`${gw.url}/public/x`, { headers: { 'x-user-id': 'mallory' } })
  assert.equal(((await pub.json()) as { headers: Record<string, string> }).headers['x-user-id'], undefined)
  const ws = await connect(`${gw.wsUrl}/private`, undefined, { headers: { authorization: `Bearer ${tok}`, 'x-user-id': 'mallory' } })
  assert.equal(up.upgrades.at(-1)!.headers['x-user-id'], 'alice')
  ws.close()
  const ws2 = await connect(`${gw.wsUrl}/public`, undefined, { headers: { 'x-user-id': 'mallory' } })
  assert.equal(up.upgrades.at(-1)!.headers['x-user-id'], undefined)
  ws2.close()
})

test('closeOnExpiry: an open WebSocket is closed with 1008 "token expired" on both sides', async (t) => {
  const { up, gw } = await setup(t)
  const upConn = up.nextConnection()
  const ws = await connect(`${gw.wsUrl}/private`, undefined, { headers: { authorization: `Bearer ${sign({ sub: 'a', exp: now() + 1 })}` } })
  const { ws: upWs } = await upConn
  const [c, u] = await Promise.all([closed(ws), closed(upWs)])
  assert.deepEqual(c, { code: 1008, reason: 'token expired' })
  assert.equal(u.code, 1008)
})

test('closeOnExpiry: false keeps the socket open past exp', async (t) => {
  const { gw } = await setup(t, { auth: { jwt: { secret: SECRET }, closeOnExpiry: false } })
  const ws = await connect(`${gw.wsUrl}/private`, undefined, { headers: { authorization: `Bearer ${sign({ sub: 'a', exp: now() + 1 })}` } })
  t.after(() => ws.terminate())
  const bridge = [...gw.app.connections.values()][0]
  assert.equal(bridge.info.expiresAt, 0)
})

test('RS256 public key (PEM text and file path), ES256, and algorithm confusion attempts', async (t) => {
  const rsa = rsaPair()
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-jwt-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'pub.pem'), rsa.publicPem)
  for (const publicKey of [rsa.publicPem, join(dir, 'pub.pem')]) {
    const { gw } = await setup(t, { auth: { jwt: { publicKey } } })
    const good = sign({ sub: 'a', exp: now() + 60 }, { key: rsa.privateKey, algorithm: 'RS256' })
    assert.equal((await fetch(`${gw.url}/private/x`, { headers: { authorization: `Bearer ${good}` } })).status, 200)
    // HS256 signed with the public key as the HMAC secret: the classic confusion attack.
    const confused = hmacWith({ sub: 'a', exp: now() + 60 }, rsa.publicPem)
    assert.equal((await fetch(`${gw.url}/private/x`, { headers: { authorization: `Bearer ${confused}` } })).status, 401)
    assert.equal((await fetch(`${gw.url}/private/x`, { headers: { authorization: `Bearer ${unsigned({ sub: 'a', exp: now() + 60 })}` } })).status, 401)
    const otherKey = rsaPair()
    const forged = sign({ sub: 'a', exp: now() + 60 }, { key: otherKey.privateKey, algorithm: 'RS256' })
    assert.equal((await fetch(`${gw.url}/private/x`, { headers: { authorization: `Bearer ${forged}` } })).status, 401)
  }
  const ec = ecPair()
  const { gw } = await setup(t, { auth: { jwt: { publicKey: ec.publicPem, algorithms: ['ES256'] } } })
  const es = sign({ sub: 'e', exp: now() + 60 }, { key: ec.privateKey, algorithm: 'ES256' })
  assert.equal((await fetch(`${gw.url}/private/x`, { headers: { authorization: `Bearer ${es}` } })).status, 200)
  const rs = sign({ sub: 'a', exp: now() + 60 }, { key: rsa.privateKey, algorithm: 'RS256' })
  assert.equal((await fetch(`${gw.url}/private/x`, { headers: { authorization: `Bearer ${rs}` } })).status, 401)
})

test('JWKS: keys by kid, cached, and rotation picked up without a restart', async (t) => {
  const k1 = rsaPair()
  const k2 = rsaPair()
  const jwks = await startJwks([{ kid: 'k1', key: k1.privateKey }])
  t.after(() => jwks.close())
  const { gw } = await setup(t, { auth: { jwt: { jwksUrl: jwks.url } } })
  const t1 = sign({ sub: 'a', exp: now() + 60 }, { key: k1.privateKey, algorithm: 'RS256', kid: 'k1' })
  for (let i = 0; i < 3; i++) assert.equal((await fetch(`${gw.url}/private/x`, { headers: { authorization: `Bearer ${t1}` } })).status, 200)
  assert.equal(jwks.requests, 1, 'the key is fetched once and cached')
  // Rotation: the provider now publishes k2 only. An unknown kid refetches at most once per
  // 10 s (test/e2e/security/jwks.test.ts): the clock moves past that interval.
  jwks.setKeys([{ kid: 'k2', key: k2.privateKey }])
  const t2 = sign({ sub: 'b', exp: now() + 60 }, { key: k2.privateKey, algorithm: 'RS256', kid: 'k2' })
  t.mock.timers.enable({ apis: ['Date'], now: Date.now() + 11_000 })
  assert.equal((await fetch(`${gw.url}/private/x`, { headers: { authorization: `Bearer ${t2}` } })).status, 200)
  assert.equal(jwks.requests, 2, 'one refetch found the new kid')
  const ws = await connect(`${gw.wsUrl}/private`, [`bearer.${t2}`])
  ws.close()
  // A kid nobody publishes, and a token signed by the right kid with the wrong key.
  const t3 = sign({ sub: 'c', exp: now() + 60 }, { key: k1.privateKey, algorithm: 'RS256', kid: 'k3' })
  assert.equal((await fetch(`${gw.url}/private/x`, { headers: { authorization: `Bearer ${t3}` } })).status, 401)
  const forged = sign({ sub: 'c', exp: now() + 60 }, { key: k1.privateKey, algorithm: 'RS256', kid: 'k2' })
  assert.equal((await fetch(`${gw.url}/private/x`, { headers: { authorization: `Bearer ${forged}` } })).status, 401)
})

test('websocket.allowedOrigins: other or missing Origin gets 403 before any upstream contact', async (t) => {
  const { up, gw } = await setup(t, { websocket: { allowedOrigins: ['https://app.example'] } })
  assert.equal(await wsStatus(`${gw.wsUrl}/public`, undefined, { origin: 'https://evil.example' }), 403)
  assert.equal(await wsStatus(`${gw.wsUrl}/public`), 403)
  assert.equal(up.upgrades.length, 0)
  assert.equal(await wsStatus(`${gw.wsUrl}/public`, undefined, { origin: 'https://APP.example' }), 101)
  // Plain HTTP is not subject to the WebSocket origin check.
  assert.equal((await fetch(`${gw.url}/public/x`, { headers: { origin: 'https://evil.example' } })).status, 200)
})

test('tokens never reach the logs (request logs, rejections, 404s, bridged sockets)', async (t) => {
  const { gw } = await setup(t, {}, { captureLogs: true, level: 'trace' })
  const good = valid()
  const bad = sign({ sub: 'x', exp: now() - 5 })
  await fetch(`${gw.url}/private/x?access_token=${good}`)
  await fetch(`${gw.url}/private/x?access_token=${bad}`)
  await fetch(`${gw.url}/private/x`, { headers: { authorization: `Bearer ${good}`, cookie: `access_token=${good}` } })
  await fetch(`${gw.url}/nowhere?access_token=${good}`)
  await fetch(`${gw.url}/private/x`, { headers: { authorization: `Bearer ${bad}` } })
  for (const tok of [good, bad]) {
    await wsStatus(`${gw.wsUrl}/private?access_token=${tok}`)
    await wsStatus(`${gw.wsUrl}/private`, [`bearer.${tok}`])
  }
  // The two sockets that opened (good token) log their line when they end.
  await waitFor(() => gw.logs.filter((l) => l.msg === 'websocket closed').length === 2, () => `two "websocket closed" lines (${gw.logs.filter((l) => l.msg === 'websocket closed').length})`)
  // Any headers object a plugin logs has its credential headers redacted.
  gw.app.log.info({ headers: { authorization: `Bearer ${good}`, cookie: `access_token=${good}`, 'sec-websocket-protocol': `bearer.${good}` } }, 'headers logged by a plugin')
  const text = gw.logText()
  assert.ok(text.length > 1000, 'logs were captured')
  assert.ok(text.includes('headers logged by a plugin'))
  for (const tok of [good, bad]) {
    assert.ok(!text.includes(tok), 'token found in logs')
    assert.ok(!text.includes(tok.split('.')[2]), 'token signature found in logs')
  }
  assert.ok(text.includes('[REDACTED]'))
})

test('a bridged WebSocket gets one access-log line, when it ends: request, user, 101, times, totals, codes; no token', async (t) => {
  const { up, gw } = await setup(t, {}, { captureLogs: true })
  const tok = valid({ sub: 'carol' })
  const ws = await connect(`${gw.wsUrl}/private/room?x=1&access_token=${tok}`)
  ws.send('hello')
  await nextMessage(ws)
  // The live bridge keeps the URL with its token already masked (plugins can read bridge info).
  const live = gw.app.connections.list().connections[0] as { id: string }
  assert.equal(gw.app.connections.get(live.id)?.info.url, '/private/room?x=1&access_token=[REDACTED]')
  ws.close(4001, 'bye')
  await closed(ws)
  await waitFor(() => gw.logs.some((l) => l.msg === 'websocket closed'), () => 'the "websocket closed" line')
  const line = gw.logs.find((l) => l.msg === 'websocket closed') as Record<string, unknown> & { req: Record<string, unknown> }
  assert.equal(line.reqId, line.connId)
  assert.deepEqual(line.req, { method: 'GET', url: '/private/room?x=1&access_token=[REDACTED]', remoteAddress: '127.0.0.1', remotePort: line.req.remotePort })
  assert.equal(typeof line.req.remotePort, 'number')
  assert.deepEqual(
    [line.route, line.userId, line.statusCode, line.by, line.clientCode, line.upstreamCode, line.messagesFromClient, line.messagesToClient, line.bytesFromClient, line.bytesToClient],
    ['/private', 'carol', 101, 'client', 4001, 4001, 1, 1, 5, 5])
  assert.equal(line.upstream, up.url)
  assert.ok(typeof line.responseTime === 'number' && typeof line.durationMs === 'number' && line.durationMs >= 0)
  // Info level: no separate line at the upgrade, and the token is nowhere.
  assert.equal(gw.logs.filter((l) => l.msg === 'websocket bridged').length, 0)
  assert.ok(!gw.logText().includes(tok.split('.')[2]))
})

test('custom plugins can require auth with fastify.authenticate and read the claims', async (t) => {
  const app = await buildGateway({ auth: { jwt: { secret: SECRET } } }, { logger: false })
  await app.register(async (scope) => {
    scope.get('/me', { onRequest: scope.authenticate }, async (request) => ({ sub: request.user.sub, source: request.tokenSource }))
    scope.get('/maybe-me', { onRequest: scope.authenticateOptional }, async (request) => ({ sub: (request as { user?: { sub?: string } }).user?.sub ?? null }))
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.after(() => app.close())
  const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  assert.equal((await fetch(`${base}/me`)).status, 401)
  const ok = await fetch(`${base}/me?access_token=${valid()}`)
  assert.deepEqual(await ok.json(), { sub: 'alice', source: 'query' })
  assert.deepEqual(await (await fetch(`${base}/maybe-me`)).json(), { sub: null })
})

test('config: auth required without auth.jwt fails to build with the key path', async () => {
  await assert.rejects(buildGateway({ routes: [{ prefix: '/x', upstream: 'http://127.0.0.1:1', auth: 'required' }] }, { logger: false }),
    /routes\[0\]\.auth: "required" needs auth\.jwt/)
  await assert.rejects(buildGateway({ auth: { jwt: { publicKey: rsaPair().publicPem, algorithms: ['HS256'] } } }, { logger: false }),
    /auth\.jwt\.algorithms\[0\]: "HS256" needs a secret/)
})
