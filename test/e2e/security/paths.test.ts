/**
 * Crafted request targets against a protected prefix next to a public catch-all: each case
 * asserts the status and exactly what path (if any) reached the upstream.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { IncomingMessage } from 'node:http'
import { gatewayFor } from '../../helpers/gateway.js'
import { upstreamFor, type TestUpstream } from '../../helpers/upstream.js'
import { SECRET, sign, now } from '../../helpers/jwt.js'
import { rawRequest, rawExchange } from './raw-http.js'
import type { GatewayConfigInput } from '../../../src/config/schema.js'

/** An upstream that records every request line it is sent (HTTP and upgrades). */
async function recordingUpstream (t: Parameters<typeof upstreamFor>[0]): Promise<{ up: TestUpstream, seen: string[] }> {
  const seen: string[] = []
  const up = await upstreamFor(t, {
    http: (req: IncomingMessage, res) => {
      seen.push(req.url ?? '')
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ url: req.url, host: req.headers.host, xfh: req.headers['x-forwarded-host'] }))
    }
  })
  up.server.prependListener('upgrade', (req: IncomingMessage) => { seen.push(`WS ${req.url ?? ''}`) })
  return { up, seen }
}

function config (url: string, extra: Partial<GatewayConfigInput> = {}): GatewayConfigInput {
  return {
    auth: { jwt: { secret: SECRET } },
    routes: [
      { prefix: '/private', upstream: url, auth: 'required' },
      { prefix: '/api', upstream: url, rewritePrefix: '/v1' },
      { prefix: '/', upstream: url }
    ],
    ...extra
  }
}

// [target, status, what the upstream must have received (null: nothing)]
const MATRIX: Array<[string, number, string | null]> = [
  ['/private/secret', 401, null],
  ['/public/../private/secret', 401, null],
  ['/./private/secret', 401, null],
  ['/%2e/private/secret', 401, null],
  ['/%2E/private/secret', 401, null],
  ['//private/secret', 401, null],
  ['///private///secret', 401, null],
  ['/%70rivate/secret', 401, null],
  ['/private;jsessionid=x/secret', 401, null],
  ['/api/x/../../private/secret', 401, null],
  ['/private%2Fsecret', 400, null],
  ['/private%2fsecret', 400, null],
  ['/private%5Csecret', 400, null],
  ['/private\\secret', 400, null],
  ['/public/..%2Fprivate/secret', 400, null],
  ['/public/..;/private/secret', 400, null],
  ['/../private/secret', 400, null],
  ['/%2e%2e/private/secret', 400, null],
  ['/a/%2e%2e/%2e%2e/private', 400, null],
  ['/private%00/secret', 400, null],
  ['/x%zz', 400, null],
  ['/%C0%AE%C0%AE/private/secret', 400, null],
  ['/%C0?access_token=x', 400, null],
  ['*', 400, null],
  ['http://evil.example/private/secret', 401, null],
  ['ftp://evil.example/x', 400, null],
  ['http://user:pw@evil.example/x', 400, null],
  // Passed on: normalised, never through the protected route.
  ['/%7Euser/x', 200, '/~user/x'],
  ['/api/../admin', 200, '/admin'],
  ['/%61pi/x', 200, '/v1/x'],
  ['/api/a/./b//c', 200, '/v1/a/b/c'],
  ['/x?q=/../private/%2F', 200, '/x?q=/../private/%2F'],
  // Decoded once: a double-encoded dot stays an escaped percent sign.
  ['/%252e%252e/private', 200, '/%252e%252e/private'],
  // Under /private for a case-insensitive upstream (Express by default, IIS): refused.
  ['/PRIVATE/secret', 400, null],
  ['/Private/secret', 400, null],
  ['/private./secret', 400, null],
  ['/private%20/secret', 400, null],
  ['/API/x', 400, null],
  // Case within a route is the upstream's business.
  ['/api/X', 200, '/v1/X'],
  ['/Public/X', 200, '/Public/X']
]

test('crafted paths: normalised once, routed by the result, refused with 400 when ambiguous (what the upstream got)', async (t) => {
  const { up, seen } = await recordingUpstream(t)
  const gw = await gatewayFor(t, config(up.url))
  for (const [target, status, upstream] of MATRIX) {
    seen.length = 0
    const r = await rawRequest(gw.port, target)
    assert.equal(r.status, status, `${target}: ${r.body}`)
    assert.deepEqual(seen, upstream === null ? [] : [upstream], `${target}: what the upstream received`)
    if (status === 400) assert.equal(JSON.parse(r.body).code, 'GW_ERR_BAD_PATH', target)
  }
})

test('with a valid token, crafted paths to the protected prefix arrive normalised', async (t) => {
  const { up, seen } = await recordingUpstream(t)
  const gw = await gatewayFor(t, config(up.url))
  const auth = { authorization: `Bearer ${sign({ sub: 'u1', exp: now() + 60 })}` }
  for (const [target, want] of [['/public/../private/secret', '/private/secret'], ['//private//secret', '/private/secret'], ['/private;v=1/secret', '/private;v=1/secret']]) {
    seen.length = 0
    const r = await rawRequest(gw.port, target, auth)
    assert.equal(r.status, 200, target)
    assert.deepEqual(seen, [want], target)
  }
})

test('absolute-form target: routed by its path; its authority is the Host the gateway forwards (RFC 9112 3.2.2)', async (t) => {
  const { up, seen } = await recordingUpstream(t)
  const gw = await gatewayFor(t, config(up.url))
  const r = await rawRequest(gw.port, 'http://evil.example/api/x?y=1', { host: 'other.example' })
  assert.equal(r.status, 200)
  assert.deepEqual(seen, ['/v1/x?y=1'], 'not /v1://evil.example/api/x')
  const body = JSON.parse(r.body) as { host: string, xfh: string }
  assert.equal(body.host, `127.0.0.1:${up.port}`, 'the upstream gets its own Host')
  assert.equal(body.xfh, 'evil.example', 'X-Forwarded-Host comes from the target, not the disagreeing Host header')
})

test('WebSocket handshakes use the same normalised path: auth cannot be walked around, the upstream gets the normal form', async (t) => {
  const { up, seen } = await recordingUpstream(t)
  const gw = await gatewayFor(t, config(up.url))
  const hs = (target: string, extra = ''): Promise<{ status: number }> => rawExchange(gw.port,
    `GET ${target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`)
      .then((r) => ({ status: r.status }))
  for (const target of ['/public/../private/ws', '//private/ws', '/%2e/private/ws', '/private;x/ws']) {
    seen.length = 0
    assert.equal((await hs(target)).status, 401, target)
    assert.deepEqual(seen, [], target)
  }
  for (const target of ['/private%2Fws', '/../ws', '/a\\b']) {
    assert.equal((await hs(target)).status, 400, target)
    assert.deepEqual(seen, [], target)
  }
  seen.length = 0
  const token = sign({ sub: 'u1', exp: now() + 60 })
  const ok = await rawExchange(gw.port, `GET /public/../private/./ws?x=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`)
    .catch(() => null)
  // The 101 keeps the socket open until the test's own end; what matters is what went upstream.
  void ok
  assert.deepEqual(seen, ['WS /private/ws?x=1'])
})

test('encodedSlashes keep: %2F is routed as a slash (auth applies) and reaches the upstream encoded', async (t) => {
  const { up, seen } = await recordingUpstream(t)
  const gw = await gatewayFor(t, config(up.url, { server: { encodedSlashes: 'keep' } }))
  assert.equal((await rawRequest(gw.port, '/private%2Fsecret')).status, 401, 'not past the protected prefix')
  assert.deepEqual(seen, [])
  const auth = { authorization: `Bearer ${sign({ sub: 'u1', exp: now() + 60 })}` }
  assert.equal((await rawRequest(gw.port, '/private%2fsecret', auth)).status, 200)
  assert.deepEqual(seen, ['/private%2Fsecret'])
  seen.length = 0
  assert.equal((await rawRequest(gw.port, '/api/group%2Fproject/x')).status, 200)
  assert.deepEqual(seen, ['/v1/group%2Fproject/x'])
  assert.equal((await rawRequest(gw.port, '/a%00b')).status, 400, 'NUL stays refused')
})

test('static routes see the normalised path: no climbing out, no walking past a protected prefix', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'tollgate-static-'))
  await writeFile(join(root, 'hello.txt'), 'hello')
  const { up, seen } = await recordingUpstream(t)
  const gw = await gatewayFor(t, {
    auth: { jwt: { secret: SECRET } },
    routes: [{ prefix: '/private', upstream: up.url, auth: 'required' }, { prefix: '/static', static: root }]
  })
  assert.equal((await rawRequest(gw.port, '/static/./x/../hello.txt')).body, 'hello')
  assert.equal((await rawRequest(gw.port, '/static/%68ello.txt')).body, 'hello')
  assert.equal((await rawRequest(gw.port, '/static/../private/secret')).status, 401)
  for (const target of ['/static/../../etc/passwd', '/static/%2e%2e/%2e%2e/etc/passwd', '/static/..%2f..%2fetc/passwd', '/static/..%5c..%5cetc%5cpasswd']) {
    const r = await rawRequest(gw.port, target)
    assert.equal(r.status, 400, target)
    assert.doesNotMatch(r.body, /root:/, target)
  }
  assert.deepEqual(seen, [])
})

test('gatewayPlugin in an app of its own: targets not in normal form are refused, unless the app normalises with tollgateRewriteUrl', async (t) => {
  const { default: Fastify } = await import('fastify')
  const { gatewayPlugin } = await import('../../../src/gateway/plugin.js')
  const { tollgateRewriteUrl } = await import('../../../plugins/edge.js')
  const { up, seen } = await recordingUpstream(t)
  for (const normalising of [false, true]) {
    const app = Fastify(normalising ? { rewriteUrl: tollgateRewriteUrl() } : {})
    await app.register(gatewayPlugin, { config: config(up.url) })
    await app.listen({ host: '127.0.0.1', port: 0 })
    t.after(() => app.close())
    const port = (app.server.address() as { port: number }).port
    seen.length = 0
    assert.equal((await rawRequest(port, '/public/../private/secret')).status, normalising ? 401 : 400)
    assert.equal((await rawRequest(port, '/%7Eu')).status, normalising ? 200 : 400)
    assert.equal((await rawRequest(port, '/plain/path')).status, 200)
    assert.deepEqual(seen, normalising ? ['/~u', '/plain/path'] : ['/plain/path'])
  }
})

test('the admin port has the same edge: normalised targets, 400 for refused ones, a 404 that does not echo the query', async (t) => {
  const gw = await gatewayFor(t, { admin: { token: 'admin-token-0123456789', port: 1 }, routes: [] })
  const port = Number(new URL(gw.adminUrl).port)
  const auth = { authorization: 'Bearer admin-token-0123456789' }
  assert.equal((await rawRequest(port, '/x/../admin/upstreams', auth)).status, 200)
  assert.equal((await rawRequest(port, '/admin%2Fupstreams', auth)).status, 400)
  const missing = await rawRequest(port, '/nothing?access_token=SECRET-TOKEN')
  assert.equal(missing.status, 404)
  assert.doesNotMatch(missing.body, /SECRET-TOKEN/)
})
