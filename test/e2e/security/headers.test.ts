/**
 * Header spoofing: what a client may not tell the upstream, on HTTP requests and WebSocket
 * handshakes alike. Each case asserts the headers the upstream received.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { IncomingHttpHeaders } from 'node:http'
import { gatewayFor } from '../../helpers/gateway.js'
import { upstreamFor } from '../../helpers/upstream.js'
import { SECRET, sign, now } from '../../helpers/jwt.js'
import { rawRequest, rawExchange } from './raw-http.js'
import type { GatewayConfigInput } from '../../../src/config/schema.js'

const SPOOFS: Record<string, string> = {
  x_user_id: 'admin',
  'x-user_id': 'admin',
  'x-user-id': 'admin',
  x_custom: 'kept only when asked',
  forwarded: 'for=1.2.3.4;proto=https;host=evil.example',
  'x-forwarded-port': '443',
  'x-forwarded-prefix': '/admin',
  'x-original-url': '/admin/delete',
  'x-rewrite-url': '/admin/delete',
  'true-client-ip': '1.2.3.4',
  'cf-connecting-ip': '1.2.3.4',
  'x-forwarded-host': 'evil.example',
  'x-forwarded-proto': 'https',
  'x-real-ip': '1.2.3.4'
}

async function setup (t: Parameters<typeof upstreamFor>[0], extra: Partial<GatewayConfigInput> = {}): Promise<{ port: number, http: IncomingHttpHeaders[], ws: IncomingHttpHeaders[] }> {
  const http: IncomingHttpHeaders[] = []
  const up = await upstreamFor(t, { http: (req, res) => { http.push(req.headers); res.end('ok') } })
  const ws: IncomingHttpHeaders[] = []
  up.server.prependListener('upgrade', (req) => { ws.push(req.headers) })
  const gw = await gatewayFor(t, {
    auth: { jwt: { secret: SECRET }, forwardClaims: { sub: 'x-user-id' } },
    routes: [{ prefix: '/', upstream: up.url, auth: 'optional' }],
    ...extra
  })
  return { port: gw.port, http, ws }
}

const handshake = (port: number, headers: Record<string, string>): Promise<unknown> => rawExchange(port,
  'GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n' +
  Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('') + '\r\n').catch(() => null)

function assertClean (h: IncomingHttpHeaders | undefined, what: string, user: string | undefined): void {
  assert.ok(h !== undefined, `${what}: the upstream got the request`)
  for (const n of ['x_user_id', 'x-user_id', 'x_custom', 'forwarded', 'x-forwarded-port', 'x-forwarded-prefix', 'x-original-url', 'x-rewrite-url', 'true-client-ip', 'cf-connecting-ip']) {
    assert.equal(h[n], undefined, `${what}: ${n}`)
  }
  assert.equal(h['x-user-id'], user, `${what}: x-user-id is the verified claim or absent`)
  assert.notEqual(h['x-forwarded-host'], 'evil.example', `${what}: X-Forwarded-Host is the gateway's own`)
  assert.equal(h['x-forwarded-proto'], 'http', `${what}: X-Forwarded-Proto`)
  assert.equal(h['x-real-ip'], '127.0.0.1', `${what}: X-Real-IP`)
  assert.match(String(h.via), /(^|, )1\.1 tollgate$/, `${what}: Via`)
}

test('spoofed identity and forwarding headers never reach the upstream (anonymous and authenticated, HTTP and WebSocket)', async (t) => {
  const { port, http, ws } = await setup(t)
  await rawRequest(port, '/x', SPOOFS)
  assertClean(http.at(-1), 'HTTP anonymous', undefined)
  await rawRequest(port, '/x', { ...SPOOFS, authorization: `Bearer ${sign({ sub: 'alice', exp: now() + 60 })}` })
  assertClean(http.at(-1), 'HTTP authenticated', 'alice')
  await handshake(port, SPOOFS)
  assertClean(ws.at(-1), 'WebSocket anonymous', undefined)
  await handshake(port, { ...SPOOFS, authorization: `Bearer ${sign({ sub: 'bob', exp: now() + 60 })}` })
  assertClean(ws.at(-1), 'WebSocket authenticated', 'bob')
})

test('underscoresInHeaders: true keeps names with _, but never a variant of a claim header', async (t) => {
  const { port, http, ws } = await setup(t, { server: { underscoresInHeaders: true } })
  await rawRequest(port, '/x', SPOOFS)
  const h = http.at(-1)!
  assert.equal(h.x_custom, 'kept only when asked')
  assert.equal(h.x_user_id, undefined)
  assert.equal(h['x-user_id'], undefined)
  assert.equal(h['x-user-id'], undefined)
  await handshake(port, SPOOFS)
  assert.equal(ws.at(-1)!.x_custom, 'kept only when asked')
  assert.equal(ws.at(-1)!.x_user_id, undefined)
})

test('trustProxy naming the peer keeps Forwarded and X-Forwarded-Port/-Prefix; a CIDR that does not, drops them', async (t) => {
  for (const [trustProxy, kept] of [['127.0.0.1', true], ['10.0.0.0/8', false]] as const) {
    const { port, http } = await setup(t, { server: { trustProxy } })
    await rawRequest(port, '/x', SPOOFS)
    const h = http.at(-1)!
    assert.equal(h.forwarded !== undefined, kept, `trustProxy ${trustProxy}: Forwarded`)
    assert.equal(h['x-forwarded-prefix'] !== undefined, kept, `trustProxy ${trustProxy}: X-Forwarded-Prefix`)
    assert.equal(h.x_user_id, undefined, 'underscores are dropped whoever sends them')
  }
})

test('X-Real-IP: the client X-Forwarded-For names when the peer is a trusted proxy, else the peer; X-Forwarded-For appended either way', async (t) => {
  const cases: Array<[GatewayConfigInput['server'], string]> = [
    // Every hop trusted: the first address in the list (as Fastify's request.ip).
    [{ trustProxy: true }, '198.51.100.1'],
    [{ trustProxy: '127.0.0.1' }, '203.0.113.9'],
    // A hop count cannot vouch for the peer: nothing is trusted (as Fastify's request.ip).
    [{ trustProxy: 1 }, '127.0.0.1'],
    [{ trustProxy: '10.0.0.0/8' }, '127.0.0.1'],
    [{ trustProxy: false }, '127.0.0.1']
  ]
  for (const [server, realIp] of cases) {
    const { port, http, ws } = await setup(t, { server })
    await rawRequest(port, '/x', { 'x-forwarded-for': '198.51.100.1, 203.0.113.9' })
    await handshake(port, { 'x-forwarded-for': '198.51.100.1, 203.0.113.9' })
    for (const [what, h] of [['HTTP', http.at(-1)], ['WebSocket', ws.at(-1)]] as const) {
      assert.equal(h?.['x-real-ip'], realIp, `${what}, trustProxy ${JSON.stringify(server?.trustProxy)}: X-Real-IP`)
      assert.equal(h?.['x-forwarded-for'], '198.51.100.1, 203.0.113.9, 127.0.0.1', `${what}: X-Forwarded-For`)
    }
  }
})
