/**
 * The WebSocket bridge's handshake (spec section 4): the upstream handshake completes before the
 * client is answered, failures become plain HTTP statuses, what is sent upstream, subprotocol
 * selection, malformed handshakes (with a bounded fuzz) and wss upstreams.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import type { ClientRequest, IncomingMessage } from 'node:http'
import { connect as tcpConnect, type AddressInfo, type Socket } from 'node:net'
import WebSocket from 'ws'
import { type TestUpstream, upstreamFor as up } from '../../helpers/upstream.js'
import { type TestGateway, gatewayFor as gateway } from '../../helpers/gateway.js'
import { connect, nextMessage, closed, collect } from '../../helpers/ws.js'
import { makeCert } from '../../helpers/tls.js'
import { buildGateway } from '../../../src/index.js'
import { freePort, waitFor } from '../../helpers/resources.js'

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

/** Every bridge closed and no upstream socket left open. */
async function drained (gw: TestGateway, u: TestUpstream): Promise<void> {
  await waitFor(() => gw.app.connections.size === 0 && gw.app.websocketBridge.active === 0, 'the registry to empty')
  await waitFor(() => u.sockets.size === 0 && u.openTcp() === 0, () => `upstream sockets to close (${u.sockets.size} WebSockets, ${u.openTcp()} TCP open)`)
}

interface Refusal { status: number, body: string, headers: IncomingMessage['headers'], sawUpgrade: boolean, sawOpen: boolean }

/**
 * A handshake that must be refused: resolves with the status, and whether a 101 ('upgrade') or
 * 'open' was ever seen (checked after the socket is torn down, so a late 101 would show).
 */
async function refused (url: string, protocols?: string[]): Promise<Refusal> {
  const ws = new WebSocket(url, protocols, { perMessageDeflate: false })
  let sawUpgrade = false
  let sawOpen = false
  ws.on('upgrade', () => { sawUpgrade = true })
  ws.on('open', () => { sawOpen = true })
  const [, res] = await once(ws, 'unexpected-response') as [ClientRequest, IncomingMessage]
  const chunks: Buffer[] = []
  for await (const c of res) chunks.push(c as Buffer)
  ws.on('error', () => {})
  const done = new Promise((resolve) => ws.once('close', resolve))
  ws.terminate()
  await done
  return { status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), headers: res.headers, sawUpgrade, sawOpen }
}

interface RawResponse { status: number, headers: Record<string, string>, body: string, socket: Socket }

/**
 * Sends `request` on a new TCP connection; resolves with the response head (and the body, by
 * Content-Length, for a non-101). On a 101 the socket is left open for the caller.
 */
function rawExchange (port: number, request: string | Buffer, timeoutMs = 3000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect(port, '127.0.0.1')
    let buf = Buffer.alloc(0)
    let head: { status: number, headers: Record<string, string>, bodyAt: number } | null = null
    const timer = setTimeout(() => { socket.destroy(); reject(new Error('no response in time')) }, timeoutMs)
    const done = (r: RawResponse): void => { clearTimeout(timer); socket.removeAllListeners('data'); resolve(r) }
    socket.on('error', (err) => { clearTimeout(timer); reject(err) })
    socket.on('connect', () => socket.write(request))
    socket.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c])
      if (head === null) {
        const end = buf.indexOf('\r\n\r\n')
        if (end === -1) return
        const [statusLine, ...lines] = buf.subarray(0, end).toString('latin1').split('\r\n')
        const headers: Record<string, string> = {}
        for (const l of lines) {
          const i = l.indexOf(':')
          headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim()
        }
        head = { status: Number(statusLine.split(' ')[1]), headers, bodyAt: end + 4 }
      }
      if (head.status === 101) { done({ status: 101, headers: head.headers, body: '', socket }); return }
      const len = Number(head.headers['content-length'] ?? 0)
      if (buf.length - head.bodyAt >= len) {
        done({ status: head.status, headers: head.headers, body: buf.subarray(head.bodyAt, head.bodyAt + len).toString(), socket })
        socket.destroy()
      }
    })
  })
}

function wsKey (): string { return randomBytes(16).toString('base64') }

/** An upgrade request; `headers` replace the defaults of the same name (value null: left out). */
function upgradeRequest (port: number, path: string, headers: Record<string, string | null> = {}): string {
  const base: Record<string, string | null> = {
    Host: `127.0.0.1:${port}`,
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': wsKey(),
    'Sec-WebSocket-Version': '13'
  }
  const lower = new Set(Object.keys(headers).map((k) => k.toLowerCase()))
  const all: Array<[string, string | null]> = [
    ...Object.entries(base).filter(([k]) => !lower.has(k.toLowerCase())),
    ...Object.entries(headers)
  ]
  return `GET ${path} HTTP/1.1\r\n` + all.filter(([, v]) => v !== null).map(([k, v]) => `${k}: ${v}\r\n`).join('') + '\r\n'
}

// ---------------------------------------------------------------------------------------------
// 1. Handshake first, upgrade second
// ---------------------------------------------------------------------------------------------

test('handshake first: the client gets its 101 only after the upstream handshake completed', { timeout: 10_000 }, async (t) => {
  // An upstream that answers the upgrade 300 ms late (the delay is the upstream's behaviour, not a test sleep).
  const u = await up(t, { hangUpgrades: true })
  const order: string[] = []
  let client: WebSocket | null = null
  let clientStateAt101 = -1
  const timers = new Set<NodeJS.Timeout>()
  t.after(() => { for (const tm of timers) clearTimeout(tm) })
  u.server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    order.push('upstream-upgrade-request')
    const tm = setTimeout(() => {
      timers.delete(tm)
      clientStateAt101 = client?.readyState ?? -1
      u.wss.handleUpgrade(req, socket, head, (ws) => {
        order.push('upstream-101-sent')
        u.sockets.add(ws)
        ws.on('close', () => u.sockets.delete(ws))
        ws.on('message', (d, isBinary) => ws.send(d as Buffer, { binary: isBinary }))
      })
    }, 300)
    timers.add(tm)
  })
  const gw = await gateway(t, { routes: [{ prefix: '/slow', upstream: u.url }] })
  const started = performance.now()
  client = new WebSocket(`${gw.wsUrl}/slow`, { perMessageDeflate: false })
  client.on('upgrade', () => order.push('client-101'))
  await once(client, 'open')
  const elapsed = performance.now() - started
  assert.deepEqual(order, ['upstream-upgrade-request', 'upstream-101-sent', 'client-101'])
  assert.equal(clientStateAt101, WebSocket.CONNECTING, 'client still connecting when the upstream answered')
  assert.ok(elapsed >= 290, `client opened after ${elapsed} ms, before the upstream's delayed 101`)
  client.send('after')
  assert.equal((await nextMessage(client)).data.toString(), 'after')
  const c = closed(client)
  client.close(1000)
  await c
  await drained(gw, u)
})

test('upstream refused (closed port): 502 GW_ERR_UPSTREAM_UNAVAILABLE, never a 101', { timeout: 10_000 }, async (t) => {
  const port = await freePort()
  const gw = await gateway(t, { routes: [{ prefix: '/dead', upstream: `http://127.0.0.1:${port}` }] })
  const r = await refused(`${gw.wsUrl}/dead`)
  assert.equal(r.status, 502)
  assert.equal((JSON.parse(r.body) as { code: string }).code, 'GW_ERR_UPSTREAM_UNAVAILABLE')
  assert.equal(r.sawUpgrade, false)
  assert.equal(r.sawOpen, false)
  assert.equal(gw.app.connections.size, 0)
})

test('upstream never answers the upgrade: 504 after connectTimeout, upstream socket closed', { timeout: 10_000 }, async (t) => {
  const u = await up(t, { hangUpgrades: true })
  // The helper leaves a hung upgrade socket half-open when its peer ends; what matters is that
  // the gateway ends its side, which the upstream sees as 'end' (FIN) or 'close' (RST).
  let released = 0
  u.server.on('upgrade', (_req: IncomingMessage, socket: Socket) => {
    let done = false
    const release = (): void => { if (!done) { done = true; released++; socket.destroy() } }
    socket.once('end', release)
    socket.once('close', release)
  })
  const gw = await gateway(t, { routes: [{ prefix: '/hang', upstream: u.url }], websocket: { connectTimeout: 300 } })
  const started = performance.now()
  const r = await refused(`${gw.wsUrl}/hang`)
  const elapsed = performance.now() - started
  assert.equal(r.status, 504)
  assert.equal((JSON.parse(r.body) as { code: string }).code, 'GW_ERR_UPSTREAM_TIMEOUT')
  assert.equal(r.sawUpgrade, false)
  assert.equal(r.sawOpen, false)
  // Not the 10 s default: the configured 300 ms (with room for a loaded machine).
  assert.ok(elapsed >= 280 && elapsed < 5000, `answered after ${elapsed} ms`)
  assert.equal(u.upgrades.length, 1)
  // The gateway gave up on the upstream attempt: its TCP connection must not be left open.
  await waitFor(() => released === 1, 'the gateway to drop the hung upstream connection')
  await drained(gw, u)
})

for (const status of [403, 404, 401, 503]) {
  test(`upstream rejects the upgrade with ${status}: the client gets ${status}, never a 101`, { timeout: 10_000 }, async (t) => {
    const u = await up(t, { rejectStatus: status })
    const gw = await gateway(t, { routes: [{ prefix: '/r', upstream: u.url }] })
    const r = await refused(`${gw.wsUrl}/r/x`)
    assert.equal(r.status, status)
    assert.equal(r.sawUpgrade, false)
    assert.equal(r.sawOpen, false)
    assert.equal(u.upgrades.length, 1)
    await drained(gw, u)
  })
}

for (const status of [200, 302]) {
  test(`upstream answers the upgrade with ${status} (not a WebSocket server): the client gets 502, never a 101`, { timeout: 10_000 }, async (t) => {
    const u = await up(t, { rejectStatus: status })
    const gw = await gateway(t, { routes: [{ prefix: '/r', upstream: u.url }] })
    const r = await refused(`${gw.wsUrl}/r/x`)
    assert.equal(r.status, 502)
    const body = JSON.parse(r.body) as { code: string, message: string }
    assert.equal(body.code, 'GW_ERR_UPSTREAM_REJECTED')
    assert.match(body.message, new RegExp(`status ${status}$`))
    assert.equal(r.sawOpen, false)
    await drained(gw, u)
  })
}

// ---------------------------------------------------------------------------------------------
// 2. What goes upstream
// ---------------------------------------------------------------------------------------------

test('path and query sent upstream follow rewritePrefix and the target base path', { timeout: 10_000 }, async (t) => {
  const u = await up(t)
  const gw = await gateway(t, {
    routes: [
      { prefix: '/keep', upstream: u.url },
      { prefix: '/strip', upstream: u.url, rewritePrefix: '/' },
      { prefix: '/ver', upstream: u.url, rewritePrefix: '/v2' },
      { prefix: '/based', upstream: `${u.url}/base`, rewritePrefix: '/' },
      { prefix: '/based-keep', upstream: `${u.url}/base/` }
    ]
  })
  const cases: Array<[string, string]> = [
    ['/keep/a/b?x=1&y=%20z', '/keep/a/b?x=1&y=%20z'],
    ['/keep', '/keep'],
    ['/keep/', '/keep/'],
    ['/strip/a/b?x=1', '/a/b?x=1'],
    ['/strip', '/'],
    ['/strip?x=1', '/?x=1'],
    ['/strip/', '/'],
    ['/ver/a?q', '/v2/a?q'],
    ['/ver', '/v2'],
    ['/based/a', '/base/a'],
    ['/based', '/base'],
    ['/based-keep/a?k=v', '/base/based-keep/a?k=v']
  ]
  for (const [i, [asked, expected]] of cases.entries()) {
    const ws = await connect(gw.wsUrl + asked)
    assert.equal(u.upgrades[i].url, expected, `${asked} -> ${expected}`)
    const c = closed(ws)
    ws.close(1000)
    await c
  }
  await drained(gw, u)
})

test('headers sent upstream: forwarded, added, and hop-by-hop/handshake ones not copied', { timeout: 10_000 }, async (t) => {
  const u = await up(t)
  const gw = await gateway(t, { routes: [{ prefix: '/h', upstream: u.url, headers: { 'x-route': 'from-route', 'x-route-2': 'r2' } }] })
  const clientKey = wsKey()
  const res = await rawExchange(gw.port, upgradeRequest(gw.port, '/h/room?user=7', {
    Connection: 'Upgrade, X-Hop-Custom',
    'Sec-WebSocket-Key': clientKey,
    // Version 8 (hybi-08) is still accepted; the upstream must get the gateway's own 13.
    'Sec-WebSocket-Version': '8',
    'Sec-WebSocket-Protocol': 'chat.v1, chat.v2',
    'Sec-WebSocket-Extensions': 'permessage-deflate; client_max_window_bits',
    Origin: 'https://app.example',
    Cookie: 'a=1; b=2',
    Authorization: 'Basic dXNlcjpwYXNz',
    'User-Agent': 'tollgate-test/1.0',
    'X-Forwarded-For': '203.0.113.7',
    'X-Hop-Custom': 'must-not-pass',
    'Keep-Alive': 'timeout=5',
    'Proxy-Authorization': 'Basic Zm9vOmJhcg==',
    TE: 'trailers',
    'X-Request-Id': 'client-chosen',
    'X-Route': 'from-client',
    'X-Plain': 'kept'
  }))
  t.after(() => { res.socket.destroy() })
  assert.equal(res.status, 101)
  // The client's accept key answers the client's own key, whatever key went upstream.
  assert.equal(res.headers['sec-websocket-accept'], createHash('sha1').update(clientKey + WS_GUID).digest('base64'))
  assert.equal(res.headers['sec-websocket-protocol'], 'chat.v1')
  assert.equal(res.headers['sec-websocket-extensions'], undefined)
  assert.equal(u.upgrades.length, 1)
  const req = u.upgrades[0]
  const h = req.headers
  assert.equal(req.url, '/h/room?user=7')
  assert.equal(h.host, `127.0.0.1:${u.port}`)
  assert.deepEqual(h['sec-websocket-protocol']?.split(',').map((p) => p.trim()), ['chat.v1', 'chat.v2'])
  assert.equal(h.origin, 'https://app.example')
  assert.equal(h.cookie, 'a=1; b=2')
  assert.equal(h.authorization, 'Basic dXNlcjpwYXNz')
  assert.equal(h['user-agent'], 'tollgate-test/1.0')
  assert.equal(h['x-forwarded-for'], '203.0.113.7, 127.0.0.1')
  assert.equal(h['x-forwarded-proto'], 'http')
  assert.equal(h['x-forwarded-host'], `127.0.0.1:${gw.port}`)
  assert.equal(h['x-real-ip'], '127.0.0.1')
  assert.match(h['x-request-id'] as string, UUID_RE)
  assert.equal(h['x-route'], 'from-route', 'route headers win over the client\'s')
  assert.equal(h['x-route-2'], 'r2')
  assert.equal(h['x-plain'], 'kept')
  // Not copied: hop-by-hop (also those named in Connection) and the client's handshake values.
  assert.equal(h['x-hop-custom'], undefined)
  assert.equal(h['keep-alive'], undefined)
  assert.equal(h['proxy-authorization'], undefined)
  assert.equal(h.te, undefined)
  // permessage-deflate offers go upstream (negotiated end to end); this upstream declines them.
  assert.equal(h['sec-websocket-extensions'], 'permessage-deflate; client_max_window_bits')
  assert.equal(h.connection?.toLowerCase(), 'upgrade', 'the upstream gets its own Connection header')
  assert.equal(h['sec-websocket-version'], '13', 'not the client\'s 8')
  assert.match(h['sec-websocket-key'] as string, /^[+/0-9A-Za-z]{22}==$/)
  assert.notEqual(h['sec-websocket-key'], clientKey, 'the upstream handshake uses its own key')
  res.socket.destroy()
  await drained(gw, u)
})

test('X-Request-Id sent upstream is the connection id: a UUID, distinct per connection', { timeout: 10_000 }, async (t) => {
  const u = await up(t)
  const gw = await gateway(t, { routes: [{ prefix: '/id', upstream: u.url }] })
  const a = await connect(`${gw.wsUrl}/id`)
  const b = await connect(`${gw.wsUrl}/id`)
  const ids = u.upgrades.map((r) => r.headers['x-request-id'] as string)
  assert.equal(ids.length, 2)
  for (const id of ids) {
    assert.match(id, UUID_RE)
    assert.equal(gw.app.connections.get(id)?.info.id, id, 'registry entry under the same id')
  }
  assert.notEqual(ids[0], ids[1])
  const ca = closed(a)
  const cb = closed(b)
  a.close(1000)
  b.close(1000)
  await Promise.all([ca, cb])
  await drained(gw, u)
})

// ---------------------------------------------------------------------------------------------
// 3. Subprotocol
// ---------------------------------------------------------------------------------------------

test('subprotocol: the upstream\'s choice (the second offer) is what the client gets', { timeout: 10_000 }, async (t) => {
  const u = await up(t, { handleProtocols: (offered) => [...offered][1] ?? false })
  const gw = await gateway(t, { routes: [{ prefix: '/p', upstream: u.url }] })
  const ws = await connect(`${gw.wsUrl}/p`, ['first', 'second', 'third'])
  assert.equal(ws.protocol, 'second')
  assert.equal(gw.app.connections.list().connections[0].subprotocol, 'second')
  const c = closed(ws)
  ws.close(1000)
  await c
  await drained(gw, u)
})

test('subprotocol: the upstream choosing none gives the client none', { timeout: 10_000 }, async (t) => {
  const u = await up(t, { handleProtocols: () => false })
  const gw = await gateway(t, { routes: [{ prefix: '/p', upstream: u.url }] })
  // A client that offers some: the 101 carries no Sec-WebSocket-Protocol (as the upstream's did).
  const res = await rawExchange(gw.port, upgradeRequest(gw.port, '/p', { 'Sec-WebSocket-Protocol': 'a, b' }))
  t.after(() => { res.socket.destroy() })
  assert.equal(res.status, 101)
  assert.equal(res.headers['sec-websocket-protocol'], undefined)
  assert.deepEqual(u.upgrades[0].headers['sec-websocket-protocol']?.split(',').map((p) => p.trim()), ['a', 'b'])
  res.socket.destroy()
  // A client that offers none.
  const ws = await connect(`${gw.wsUrl}/p`)
  assert.equal(ws.protocol, '')
  const c = closed(ws)
  ws.close(1000)
  await c
  await drained(gw, u)
})

test('subprotocol: an upstream selecting one that was not offered is a bad gateway (502)', { timeout: 10_000 }, async (t) => {
  const u = await up(t, { handleProtocols: () => 'not-offered' })
  const gw = await gateway(t, { routes: [{ prefix: '/p', upstream: u.url }] })
  const r = await refused(`${gw.wsUrl}/p`, ['a'])
  assert.equal(r.status, 502)
  assert.equal(r.sawUpgrade, false)
  await drained(gw, u)
})

test('subprotocol: invalid or duplicated offers get 400 before any upstream connection', { timeout: 10_000 }, async (t) => {
  const u = await up(t)
  const gw = await gateway(t, { routes: [{ prefix: '/p', upstream: u.url }] })
  for (const offer of ['bad proto', 'a, a', '(', 'ok, b@d']) {
    const res = await rawExchange(gw.port, upgradeRequest(gw.port, '/p', { 'Sec-WebSocket-Protocol': offer }))
    assert.equal(res.status, 400, offer)
    assert.equal((JSON.parse(res.body) as { code: string }).code, 'GW_ERR_BAD_HANDSHAKE', offer)
  }
  assert.equal(u.upgrades.length, 0)
  await drained(gw, u)
})

// ---------------------------------------------------------------------------------------------
// 6. Not a WebSocket, broken handshakes, fuzz
// ---------------------------------------------------------------------------------------------

test('a plain GET on a WebSocket-only route gets 426', { timeout: 10_000 }, async (t) => {
  const u = await up(t)
  const gw = await gateway(t, { routes: [{ prefix: '/only', upstream: u.url, http: false }] })
  const res = await fetch(`${gw.url}/only/x`)
  assert.equal(res.status, 426)
  assert.equal(res.headers.get('upgrade'), 'websocket')
  assert.equal((await res.json() as { code: string }).code, 'GW_ERR_UPGRADE_REQUIRED')
  assert.equal(u.upgrades.length, 0)
})

test('broken upgrade requests get 400 and no upstream connection is attempted', { timeout: 10_000 }, async (t) => {
  const u = await up(t)
  const gw = await gateway(t, { routes: [{ prefix: '/ws', upstream: u.url }, { prefix: '/nows', upstream: u.url, websocket: false }] })
  const cases: Array<[string, Record<string, string | null>, number]> = [
    ['bad version 99', { 'Sec-WebSocket-Version': '99' }, 400],
    ['empty version', { 'Sec-WebSocket-Version': '' }, 400],
    ['missing version', { 'Sec-WebSocket-Version': null }, 400],
    ['missing key', { 'Sec-WebSocket-Key': null }, 400],
    ['short key', { 'Sec-WebSocket-Key': 'abc' }, 400],
    ['key of 15 bytes', { 'Sec-WebSocket-Key': randomBytes(15).toString('base64') }, 400]
  ]
  for (const [what, headers, status] of cases) {
    const res = await rawExchange(gw.port, upgradeRequest(gw.port, '/ws/x', headers))
    assert.equal(res.status, status, what)
    assert.equal((JSON.parse(res.body) as { code: string }).code, 'GW_ERR_BAD_HANDSHAKE', what)
    if (what === 'bad version 99') assert.match(res.headers['sec-websocket-version'] ?? '', /13/)
  }
  const noWs = await rawExchange(gw.port, upgradeRequest(gw.port, '/nows'))
  assert.equal(noWs.status, 404)
  assert.equal(u.upgrades.length, 0, 'no upstream handshake for a broken one')
  assert.equal(u.openTcp(), 0)
  // Still bridges a correct one afterwards.
  const ws = await connect(`${gw.wsUrl}/ws`)
  const c = closed(ws)
  ws.close(1000)
  await c
  await drained(gw, u)
})

test('a plugin route that calls websocketBridge.connect() without checkHandshake still refuses a broken upgrade with 400, before any upstream contact', { timeout: 10_000 }, async (t) => {
  const u = await up(t)
  const app = await buildGateway({}, { logger: false })
  t.after(() => app.close())
  await app.register(async (scope) => {
    scope.route({
      method: 'GET',
      url: '/raw',
      handler: async () => 'upgrade required',
      preHandler: async (request, reply) => { await scope.websocketBridge.connect(request, reply, { target: u.url, path: '/', route: '/raw' }) },
      wsHandler: (socket, request) => scope.websocketBridge.attach(socket, request)
    })
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as AddressInfo).port
  for (const headers of [{ 'Sec-WebSocket-Key': null }, { 'Sec-WebSocket-Version': '99' }] as Array<Record<string, string | null>>) {
    const res = await rawExchange(port, upgradeRequest(port, '/raw', headers))
    assert.equal(res.status, 400, JSON.stringify(headers))
    assert.equal((JSON.parse(res.body) as { code: string }).code, 'GW_ERR_BAD_HANDSHAKE')
  }
  assert.equal(u.upgrades.length, 0)
  // A correct one is bridged.
  const ws = await connect(`ws://127.0.0.1:${port}/raw`)
  const c = closed(ws)
  ws.close(1000)
  assert.equal((await c).code, 1000)
})

/** Deterministic PRNG (mulberry32), so that a failing fuzz run can be replayed from its seed. */
function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

test('fuzz: 2,000 random and malformed upgrade requests leave the gateway healthy and leak no socket', { timeout: 30_000 }, async (t) => {
  const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000)
  t.diagnostic(`fuzz seed ${seed} (FUZZ_SEED=${seed} replays the same requests)`)
  const rnd = prng(seed)
  const int = (n: number): number => Math.floor(rnd() * n)
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]
  const randCase = (s: string): string => [...s].map((c) => rnd() < 0.5 ? c.toUpperCase() : c.toLowerCase()).join('')
  const junk = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(256)))
  const key = (bytes = 16): string => junk(bytes).toString('base64')

  const u = await up(t)
  const gw = await gateway(t, { routes: [{ prefix: '/ws', upstream: u.url }, { prefix: '/only', upstream: u.url, http: false }] })
  const port = gw.port
  // Every TCP connection the gateway accepted, with the case that opened it (by client port), and
  // every upgrade connection the upstream got: all must be closed at the end. (The upstream's
  // other TCP connections are the HTTP proxy's keep-alive pool, not leaks.)
  const gwSockets = new Map<number, Socket>()
  gw.app.server.on('connection', (so: Socket) => { gwSockets.set(so.remotePort ?? 0, so) })
  const upUpgradeSockets = new Set<Socket>()
  u.server.on('upgrade', (_req: IncomingMessage, so: Socket) => { upUpgradeSockets.add(so); so.once('close', () => upUpgradeSockets.delete(so)) })
  const caseByPort = new Map<number, number>()

  // No malformed percent-encoding ('/%zz'): such an upgrade socket leaks (see the todo test below).
  const paths = ['/ws', '/ws/', '/ws/a/b', '/ws?x=1&y', '/ws?%zz', '/only', '/only/z', '/nope', '/', '*', '/ws/%00', `/ws/${'a'.repeat(3000)}`, 'http://127.0.0.1/ws', '/ws#frag', '//ws', '/ws/..%2f..']
  const versions = ['13', '13', '13', '8', '99', '', '0013', '13, 8', 'abc', '-1', '12']
  const keys = (): string => pick([
    key(), key(), key(), '', 'abc', key(15), key(17), `${key()}, ${key()}`, '!!!!!!!!!!!!!!!!!!!!!!==',
    junk(24).toString('latin1').replace(/[\r\n]/g, 'x')
  ])
  const protocols = (): string | null => pick([null, null, 'chat', 'a, b, c', 'bad proto', 'a,,b', 'a, a', Array.from({ length: 300 }, (_, i) => `p${i}`).join(', '), '(', 'bearer.x'])

  type After = 'wait' | 'destroy' | 'end' | 'junk-after-101'
  interface Case { chunks: Buffer[], after: After, post: Buffer }
  /** One request: its bytes, how the client behaves after writing them, and what it sends after a 101. */
  function makeCase (): Case {
    const kind = int(10)
    const headers: Array<[string, string]> = []
    const add = (k: string, v: string): void => { headers.push([rnd() < 0.5 ? randCase(k) : k, v]) }
    const method = rnd() < 0.9 ? 'GET' : pick(['POST', 'HEAD', 'OPTIONS', 'get', 'GE T', 'CONNECT'])
    const httpVersion = rnd() < 0.92 ? 'HTTP/1.1' : pick(['HTTP/1.0', 'HTTP/2.0', 'HTTP/1.1 extra', 'HTTP/9', ''])
    add('Host', rnd() < 0.95 ? `127.0.0.1:${port}` : pick(['', 'evil.example', 'a'.repeat(500)]))
    if (rnd() < 0.95) add('Upgrade', pick(['websocket', 'websocket', 'WebSocket', 'h2c', 'websocket, h2c', '']))
    if (rnd() < 0.95) add('Connection', pick(['Upgrade', 'upgrade', 'keep-alive, Upgrade', 'close', 'Upgrade, X-Foo']))
    if (rnd() < 0.9) add('Sec-WebSocket-Key', keys())
    if (rnd() < 0.9) add('Sec-WebSocket-Version', pick(versions))
    const p = protocols()
    if (p !== null) add('Sec-WebSocket-Protocol', p)
    if (rnd() < 0.2) add('Sec-WebSocket-Extensions', pick(['permessage-deflate', 'x-unknown; a=1', ';;;']))
    if (rnd() < 0.2) add('Origin', pick(['https://a.example', 'null', '']))
    if (rnd() < 0.1) add('X-Forwarded-For', pick(['1.2.3.4', 'not-an-ip', '1.1.1.1, 2.2.2.2']))
    if (kind === 0) add('X-Big', 'v'.repeat(8000 + int(60_000))) // mostly over Node's 16 KiB header limit: 431
    if (kind === 1) { for (let i = 0; i < 50 + int(100); i++) add(`X-H${i}`, 'x'.repeat(int(200))) }
    if (kind === 2) headers.push([`Bad Header${junk(3).toString('latin1')}`, 'x'])
    const head = Buffer.from(`${method} ${pick(paths)} ${httpVersion}\r\n` + headers.map(([k, v]) => `${k}: ${v}\r\n`).join('') + '\r\n', 'latin1')
    const post = junk(1 + int(40))
    switch (kind) {
      case 3: return { chunks: [junk(1 + int(2000))], after: pick(['wait', 'destroy', 'end'] as const), post }
      case 4: return { chunks: [head.subarray(0, int(head.length))], after: pick(['destroy', 'end'] as const), post } // truncated
      case 5: return { chunks: [head], after: 'destroy', post } // abrupt destroy while the gateway handshakes upstream
      case 6: return { chunks: [head, junk(int(64))], after: 'junk-after-101', post } // frames glued to the request
      case 7: {
        const cut = int(head.length)
        return { chunks: [head.subarray(0, 1), head.subarray(1, cut), head.subarray(cut)].filter((c) => c.length > 0), after: 'wait', post }
      }
      default: return { chunks: [head], after: pick(['wait', 'wait', 'junk-after-101'] as const), post }
    }
  }

  /** Runs one case; resolves with the status seen (or how it ended) once our socket is closed. */
  function fire (c: Case, index: number): Promise<string> {
    return new Promise((resolve) => {
      const s = tcpConnect(port, '127.0.0.1')
      s.once('connect', () => caseByPort.set(s.localPort ?? 0, index))
      let got = Buffer.alloc(0)
      let outcome = 'closed'
      let answered = false
      // A request the gateway does not answer (e.g. one we half-closed) is given up after 1 s.
      const deadline = setTimeout(() => { outcome = answered ? outcome : 'no answer'; s.destroy() }, 1000)
      s.on('error', () => {})
      s.on('close', () => { clearTimeout(deadline); resolve(outcome) })
      s.on('connect', () => {
        for (const ch of c.chunks) s.write(ch)
        if (c.after === 'destroy') s.destroy()
        else if (c.after === 'end') s.end()
      })
      s.on('data', (d: Buffer) => {
        if (answered) return
        got = Buffer.concat([got, d])
        if (got.indexOf('\r\n\r\n') === -1) return
        answered = true
        outcome = got.subarray(9, 12).toString()
        if (outcome === '101' && c.after === 'junk-after-101') {
          // Garbage frames after a real 101: the gateway must close the pair, not crash.
          s.end(c.post)
          return
        }
        s.destroy()
      })
    })
  }

  const N = 2000
  const cases = Array.from({ length: N }, makeCase)
  const CONCURRENCY = 64
  // Bounded in time whatever the machine's load: no new request after the budget.
  const BUDGET_MS = 12_000
  const started = performance.now()
  const outcomes = new Map<string, number>()
  let next = 0
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < N && performance.now() - started < BUDGET_MS) {
      const i = next++
      const o = await fire(cases[i], i)
      outcomes.set(o, (outcomes.get(o) ?? 0) + 1)
    }
  }))
  const elapsed = performance.now() - started
  t.diagnostic(`fuzz: ${next} of ${N} requests in ${Math.round(elapsed)} ms, outcomes ${JSON.stringify(Object.fromEntries(outcomes))}`)
  assert.ok(next >= 200, `only ${next} requests ran within the budget`)
  assert.ok((outcomes.get('101') ?? 0) > 0, 'some requests were valid and bridged')
  assert.equal(outcomes.get('500') ?? 0, 0, 'no request makes the gateway fail with 500')

  // Nothing left behind: no bridge, no upstream WebSocket, no client socket on the gateway.
  const leftOpen = (): string => {
    const open = [...gwSockets].filter(([, so]) => !so.destroyed)
    const sample = open.slice(0, 3).map(([p]) => JSON.stringify(Buffer.concat(cases[caseByPort.get(p) ?? 0].chunks).toString('latin1').slice(0, 200)))
    return `gateway sockets to close: ${open.length} open, e.g. ${sample.join(' | ')}`
  }
  await waitFor(() => [...gwSockets.values()].every((so) => so.destroyed), leftOpen, 5000)
  await waitFor(() => gw.app.connections.size === 0 && gw.app.websocketBridge.active === 0, 'the registry to empty')
  await waitFor(() => u.sockets.size === 0 && upUpgradeSockets.size === 0, () => `upstream WebSockets to close (${u.sockets.size} open, ${upUpgradeSockets.size} upgrade sockets)`)

  // Still healthy and still bridging.
  const health = await fetch(`${gw.url}/health`)
  assert.equal(health.status, 200)
  const ws = await connect(`${gw.wsUrl}/ws/after-fuzz`, ['chat'])
  assert.equal(ws.protocol, 'chat')
  ws.send('still alive')
  assert.equal((await nextMessage(ws)).data.toString(), 'still alive')
  const c = closed(ws)
  ws.close(1000)
  await c
  await waitFor(() => gw.app.connections.size === 0 && u.sockets.size === 0 && upUpgradeSockets.size === 0, 'the last pair to close')
})

test('an upgrade request with an undecodable URL (/%zz) gets 400 and its socket is closed', {
  timeout: 10_000,
}, async (t) => {
  const u = await up(t)
  const gw = await gateway(t, { routes: [{ prefix: '/ws', upstream: u.url }] })
  const gwSockets = new Set<Socket>()
  gw.app.server.on('connection', (so: Socket) => gwSockets.add(so))
  try {
    const res = await rawExchange(gw.port, upgradeRequest(gw.port, '/ws/%zz'))
    assert.equal(res.status, 400)
    assert.equal(u.upgrades.length, 0)
    // The client is done with it (destroyed); the gateway's side must not stay open.
    await waitFor(() => [...gwSockets].every((so) => so.destroyed), 'the gateway to close the upgrade socket', 1000)
  } finally {
    // Otherwise the leaked socket keeps the gateway's close() waiting.
    for (const so of gwSockets) so.destroy()
  }
})

// ---------------------------------------------------------------------------------------------
// 7. wss upstream
// ---------------------------------------------------------------------------------------------

test('wss upstream with a configured CA: the handshake completes and messages relay', { timeout: 10_000 }, async (t) => {
  const cert = makeCert()
  t.after(() => cert.cleanup())
  const u = await up(t, { tls: { key: cert.key, cert: cert.cert } })
  const gw = await gateway(t, {
    upstreams: { secure: { targets: [`wss://127.0.0.1:${u.port}`], ca: cert.certPath } },
    routes: [{ prefix: '/secure', upstream: 'secure' }]
  })
  const ws = await connect(`${gw.wsUrl}/secure/x?y=1`)
  assert.equal(u.upgrades[0].url, '/secure/x?y=1')
  assert.equal(u.upgrades[0].headers['x-forwarded-proto'], 'http', 'the client side is plain http')
  // Both echoes may arrive in one TCP read: collect them with one listener.
  const echoes = collect(ws, 2)
  ws.send('over tls')
  ws.send(Buffer.from([0, 1, 2, 255]))
  const [a, b] = await echoes
  assert.deepEqual([a.data.toString(), a.isBinary], ['over tls', false])
  assert.deepEqual([[...b.data], b.isBinary], [[0, 1, 2, 255], true])
  const c = closed(ws)
  ws.close(4001, 'tls bye')
  assert.deepEqual(await c, { code: 4001, reason: 'tls bye' })
  await drained(gw, u)
})

test('wss upstream without the CA: the certificate is refused and the client gets 502', { timeout: 10_000 }, async (t) => {
  const cert = makeCert()
  t.after(() => cert.cleanup())
  const u = await up(t, { tls: { key: cert.key, cert: cert.cert } })
  const gw = await gateway(t, {
    upstreams: { secure: { targets: [`wss://127.0.0.1:${u.port}`] } },
    routes: [{ prefix: '/secure', upstream: 'secure' }]
  })
  const r = await refused(`${gw.wsUrl}/secure`)
  assert.equal(r.status, 502)
  assert.equal(r.sawUpgrade, false)
  assert.equal(r.sawOpen, false)
  assert.equal(u.upgrades.length, 0, 'the upstream never got past TLS')
  await drained(gw, u)
})
