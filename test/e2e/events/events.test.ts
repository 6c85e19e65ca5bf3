/**
 * Lifecycle events without Redis (the in-memory queue): a real loopback endpoint receives a POST
 * for each WebSocket opened and closed, with every field, its Idempotency-Key, retries when it
 * fails or hangs, and the in-process onConnect/onClose hooks; plus the users' connections
 * listing that backends resync from.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import type WebSocket from 'ws'
import { gatewayFor, startGateway, type TestGateway } from '../../helpers/gateway.js'
import { startUpstream, upstreamFor, type TestUpstream, type UpstreamOptions } from '../../helpers/upstream.js'
import { closed, collect, connect, nextMessage, type HandshakeError } from '../../helpers/ws.js'
import { eventsSinkFor, startEventsSink, type EventsSink } from '../../helpers/events-sink.js'
import { authServiceFor } from '../../helpers/auth-service.js'
import { SECRET, sign } from '../../helpers/jwt.js'
import { freePort, waitFor, within } from '../../helpers/resources.js'
import { resolveConfig } from '../../../src/config/resolve.js'
import { ConfigError } from '../../../src/errors.js'
import { MemoryEventQueue } from '../../../src/events/queue.js'
import type { ConnectEvent, DisconnectEvent, LifecycleEvent } from '../../../src/events/payload.js'
import type { GatewayConfigInput } from '../../../src/config/schema.js'

const ADMIN = 'events-admin-token-0123'
const admin = { authorization: `Bearer ${ADMIN}` }
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/
const CONNECT_KEYS = ['type', 'id', 'route', 'path', 'userId', 'clientIp', 'instanceId', 'connectedAt', 'at'].sort()
const DISCONNECT_KEYS = [...CONNECT_KEYS, 'closedBy', 'clientCode', 'upstreamCode', 'reason', 'durationMs', 'messagesFromClient', 'messagesToClient', 'bytesFromClient', 'bytesToClient'].sort()

interface Setup { gw: TestGateway, up: TestUpstream, sink: EventsSink }

/** An echo upstream, a sink and a gateway with `/chat` sending its events to the sink. */
async function setup (t: TestContext, opts: { events?: Record<string, unknown>, route?: Record<string, unknown>, extra?: Partial<GatewayConfigInput>, upstream?: UpstreamOptions, captureLogs?: boolean } = {}): Promise<Setup> {
  const up = await startUpstream(opts.upstream)
  const sink = await startEventsSink()
  // Closed in this order: the gateway delivers what it still holds before the sink goes.
  const started: { gw?: TestGateway } = {}
  t.after(async () => { await started.gw?.close(); await sink.close(); await up.close() })
  const gw = started.gw = await startGateway({
    admin: { token: ADMIN },
    auth: { jwt: { secret: SECRET } },
    events: { url: sink.url, timeout: '1s', ...opts.events },
    routes: [{ prefix: '/chat', upstream: up.url, auth: 'optional', ...opts.route }],
    ...opts.extra
  }, { captureLogs: opts.captureLogs })
  return { gw, up, sink }
}

/** The id the gateway gave the connection: the X-Request-Id its upstream was sent. */
function idOf (up: TestUpstream, nth: number): string {
  return String(up.upgrades[nth].headers['x-request-id'])
}

function bearer (claims: Record<string, unknown>): { headers: Record<string, string> } {
  return { headers: { authorization: `Bearer ${sign(claims)}` } }
}

async function metrics (gw: TestGateway): Promise<string> {
  return await (await fetch(`${gw.url}/metrics`)).text()
}

function sample (text: string, name: string, labels: Record<string, string>): number {
  for (const line of text.split('\n')) {
    const m = /^([a-z_:]+)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (m === null || m[1] !== name) continue
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]))
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3])
  }
  return 0
}

test('connect and disconnect: every field, JSON POST with Idempotency-Key; a client close 1000 and the counters', async (t) => {
  const { gw, up, sink } = await setup(t)
  const before = Date.now()
  const ws = await connect(`${gw.wsUrl}/chat/room/1?lang=en`, undefined, bearer({ sub: 'user-1' }))
  const after = Date.now()
  const id = idOf(up, 0)
  await sink.until(() => sink.of(id).length === 1, 'the connect')
  const [req] = sink.requests
  assert.equal(req.method, 'POST')
  assert.equal(req.path, '/events')
  assert.match(String(req.headers['content-type']), /^application\/json/)
  assert.equal(req.headers['idempotency-key'], `${id}:connect`)
  const c = req.body as ConnectEvent
  assert.deepEqual(Object.keys(c).sort(), CONNECT_KEYS)
  assert.deepEqual({ ...c, connectedAt: '', at: '' }, {
    type: 'connect', id, route: '/chat', path: '/chat/room/1', userId: 'user-1', clientIp: '127.0.0.1', instanceId: gw.app.instanceId, connectedAt: '', at: ''
  })
  assert.match(c.connectedAt, ISO)
  assert.equal(c.at, c.connectedAt, 'a connect happens when the client gets its 101')
  assert.ok(Date.parse(c.connectedAt) >= before && Date.parse(c.connectedAt) <= after, `${c.connectedAt} within the handshake`)

  // Two messages each way, then the client closes.
  const echoes = collect(ws, 2)
  ws.send('hello')
  ws.send(Buffer.from([1, 2, 3]))
  await echoes
  const bye = closed(ws)
  const closing = Date.now()
  ws.close(1000, 'done')
  assert.equal((await bye).code, 1000)
  await sink.until(() => sink.disconnectOf(id) !== undefined, 'the disconnect')
  const dreq = sink.requests[1]
  assert.equal(dreq.headers['idempotency-key'], `${id}:disconnect`)
  const d = dreq.body as DisconnectEvent
  assert.deepEqual(Object.keys(d).sort(), DISCONNECT_KEYS)
  assert.deepEqual({ ...d, at: '', durationMs: 0 }, {
    type: 'disconnect',
    id,
    route: '/chat',
    path: '/chat/room/1',
    userId: 'user-1',
    clientIp: '127.0.0.1',
    instanceId: gw.app.instanceId,
    connectedAt: c.connectedAt,
    at: '',
    closedBy: 'client',
    clientCode: 1000,
    upstreamCode: 1000,
    reason: 'done',
    durationMs: 0,
    messagesFromClient: 2,
    messagesToClient: 2,
    bytesFromClient: 8,
    bytesToClient: 8
  })
  assert.match(d.at, ISO)
  assert.ok(Date.parse(d.at) >= closing && Date.parse(d.at) <= Date.now())
  assert.equal(d.durationMs, Date.parse(d.at) - Date.parse(d.connectedAt))
  assert.equal(sink.requests.length, 2, 'one POST each, nothing retried')
  const m = await metrics(gw)
  assert.equal(sample(m, 'tollgate_events_total', { type: 'connect', result: 'delivered' }), 1)
  assert.equal(sample(m, 'tollgate_events_total', { type: 'disconnect', result: 'delivered' }), 1)
  assert.equal(sample(m, 'tollgate_events_total', { type: 'disconnect', result: 'queued' }), 1)
  assert.equal(sample(m, 'tollgate_events_pending', {}), 0)
})

test('the user id from an auth service (authorize.userHeader)', async (t) => {
  const svc = await authServiceFor(t, () => ({ status: 200, headers: { 'x-user-id': 'u-77' } }))
  const { gw, up, sink } = await setup(t, { route: { authorize: { url: svc.url, userHeader: 'x-user-id' } } })
  const ws = await connect(`${gw.wsUrl}/chat`)
  await sink.until(() => sink.of(idOf(up, 0)).length === 1, 'the connect')
  assert.equal(sink.deduped()[0].userId, 'u-77')
  ws.terminate()
  await sink.until(() => sink.disconnectOf(idOf(up, 0)) !== undefined, 'the disconnect')
  assert.equal(sink.disconnectOf(idOf(up, 0))!.userId, 'u-77')
})

test('no token: userId null; events.claims copies only the listed claims the token has', async (t) => {
  const { gw, up, sink } = await setup(t, { events: { claims: ['sub', 'tenant', 'absent'] } })
  const anon = await connect(`${gw.wsUrl}/chat/anon`)
  await sink.until(() => sink.of(idOf(up, 0)).length === 1, 'the anonymous connect')
  const a = sink.deduped()[0] as ConnectEvent
  assert.equal(a.userId, null)
  assert.equal(a.claims, undefined, 'no token, no claims')
  const ws = await connect(`${gw.wsUrl}/chat/who`, undefined, bearer({ sub: 'user-2', tenant: 'acme', role: 'admin', exp: Math.floor(Date.now() / 1000) + 60 }))
  await sink.until(() => sink.of(idOf(up, 1)).length === 1, 'the connect')
  const c = sink.of(idOf(up, 1))[0] as ConnectEvent
  assert.deepEqual(c.claims, { sub: 'user-2', tenant: 'acme' })
  // A token with none of the listed claims: no `claims` at all (not an empty object).
  const none = await connect(`${gw.wsUrl}/chat/none`, undefined, bearer({ role: 'viewer' }))
  await sink.until(() => sink.of(idOf(up, 2)).length === 1, 'the third connect')
  assert.equal('claims' in sink.of(idOf(up, 2))[0], false)
  anon.terminate()
  ws.terminate()
  none.terminate()
})

test('the upstream closes: closedBy upstream with its code; an upstream TCP drop: 1014 to the client, 1006', async (t) => {
  const { gw, up, sink } = await setup(t, {
    upstream: {
      onConnection: (ws) => ws.on('message', (m) => {
        if (String(m) === 'close') ws.close(4002, 'server bye')
        else ws.terminate()
      })
    }
  })
  const a = await connect(`${gw.wsUrl}/chat/a`)
  const aClosed = closed(a)
  a.send('close')
  assert.deepEqual(await aClosed, { code: 4002, reason: 'server bye' })
  const b = await connect(`${gw.wsUrl}/chat/b`)
  const bClosed = closed(b)
  b.send('drop')
  assert.equal((await bClosed).code, 1014)
  const [ida, idb] = [idOf(up, 0), idOf(up, 1)]
  await sink.until(() => sink.disconnectOf(ida) !== undefined && sink.disconnectOf(idb) !== undefined, 'both disconnects')
  const da = sink.disconnectOf(ida)!
  assert.deepEqual([da.closedBy, da.clientCode, da.upstreamCode, da.reason, da.messagesFromClient, da.bytesFromClient, da.messagesToClient], ['upstream', 4002, 4002, 'server bye', 1, 5, 0])
  const db = sink.disconnectOf(idb)!
  assert.deepEqual([db.closedBy, db.clientCode, db.upstreamCode], ['upstream', 1014, 1006])
})

test('an abnormal end of the client (its socket destroyed): clientCode 1006, the upstream told 1001', async (t) => {
  const { gw, up, sink } = await setup(t)
  const upstreamSide = up.nextConnection()
  const ws = await connect(`${gw.wsUrl}/chat`)
  const server = await within(upstreamSide, 2000, 'the upstream connection')
  const upClosed = once(server.ws, 'close') as Promise<[number, Buffer]>
  const id = idOf(up, 0)
  await sink.until(() => sink.of(id).length === 1, 'the connect')
  ;(ws as unknown as { _socket: { destroy (): void } })._socket.destroy()
  const [code] = await within(upClosed, 3000, 'the upstream to be closed')
  assert.equal(code, 1001, 'what the upstream received')
  await sink.until(() => sink.disconnectOf(id) !== undefined, 'the disconnect')
  const d = sink.disconnectOf(id)!
  assert.deepEqual([d.closedBy, d.clientCode, d.upstreamCode], ['client', 1006, 1001])
})

test('closed by the admin API: closedBy gateway, the code and reason given (default 1008)', async (t) => {
  const { gw, up, sink } = await setup(t)
  const a = await connect(`${gw.wsUrl}/chat/a`)
  const b = await connect(`${gw.wsUrl}/chat/b`)
  const [ida, idb] = [idOf(up, 0), idOf(up, 1)]
  const aClosed = closed(a)
  const bClosed = closed(b)
  assert.equal((await fetch(`${gw.adminUrl}/admin/connections/${ida}`, { method: 'DELETE', headers: admin })).status, 204)
  assert.equal((await fetch(`${gw.adminUrl}/admin/connections/${idb}?code=4001&reason=moved`, { method: 'DELETE', headers: admin })).status, 204)
  assert.equal((await aClosed).code, 1008)
  assert.deepEqual(await bClosed, { code: 4001, reason: 'moved' })
  await sink.until(() => sink.disconnectOf(ida) !== undefined && sink.disconnectOf(idb) !== undefined, 'both disconnects')
  const da = sink.disconnectOf(ida)!
  assert.deepEqual([da.closedBy, da.clientCode, da.upstreamCode, da.reason], ['gateway', 1008, 1008, 'closed by administrator'])
  const db = sink.disconnectOf(idb)!
  assert.deepEqual([db.closedBy, db.clientCode, db.upstreamCode, db.reason], ['gateway', 4001, 4001, 'moved'])
})

test('on: [disconnect] sends no connect; a route with events: false sends nothing; a route\'s own events go to its own URL', async (t) => {
  const up = await upstreamFor(t)
  const top = await eventsSinkFor(t)
  const own = await eventsSinkFor(t)
  const gw = await gatewayFor(t, {
    events: { url: top.url, on: ['disconnect'] },
    routes: [
      { prefix: '/chat', upstream: up.url },
      { prefix: '/quiet', upstream: up.url, events: false },
      { prefix: '/own', upstream: up.url, events: { url: own.url, on: ['connect'] } }
    ]
  })
  for (const path of ['/quiet/x', '/own/x', '/chat/x']) {
    const ws = await connect(`${gw.wsUrl}${path}`)
    const c = closed(ws)
    ws.close(1000)
    await c
  }
  await waitFor(() => gw.app.websocketBridge.active === 0, 'every bridge to end')
  // A graceful close delivers whatever is still queued: after it, nothing more can arrive.
  await gw.close()
  const [quiet, ownId, chat] = [idOf(up, 0), idOf(up, 1), idOf(up, 2)]
  assert.deepEqual(top.deduped().map((e) => `${e.id}:${e.type}`), [`${chat}:disconnect`], 'only the disconnect of /chat')
  assert.deepEqual(own.deduped().map((e) => `${e.id}:${e.type}`), [`${ownId}:connect`], 'only the connect of /own')
  assert.equal([...top.requests, ...own.requests].some((r) => r.body.id === quiet), false, 'nothing for /quiet')
})

test('a refused handshake (401, upstream 403, no upstream) sends no event: only bridged connections have a lifecycle', async (t) => {
  const up = await upstreamFor(t)
  const refusing = await upstreamFor(t, { rejectStatus: 403 })
  const sink = await eventsSinkFor(t)
  const gw = await gatewayFor(t, {
    auth: { jwt: { secret: SECRET } },
    events: { url: sink.url },
    routes: [
      { prefix: '/chat', upstream: up.url, auth: 'required' },
      { prefix: '/refused', upstream: refusing.url },
      { prefix: '/dead', upstream: `http://127.0.0.1:${await freePort()}` },
      { prefix: '/open', upstream: up.url }
    ]
  })
  await assert.rejects(connect(`${gw.wsUrl}/chat`), (e: HandshakeError) => e.status === 401)
  await assert.rejects(connect(`${gw.wsUrl}/refused`), (e: HandshakeError) => e.status === 403)
  await assert.rejects(connect(`${gw.wsUrl}/dead`), (e: HandshakeError) => e.status === 502)
  const ws = await connect(`${gw.wsUrl}/open`)
  ws.close(1000)
  await waitFor(() => gw.app.websocketBridge.active === 0, 'the bridge to end')
  // A graceful close delivers everything queued: after it, nothing more can arrive.
  await gw.close()
  assert.deepEqual(sink.deduped().map((e) => `${e.path}:${e.type}`), ['/open:connect', '/open:disconnect'])
  assert.equal(sink.requests.length, 2)
})

test('an endpoint that fails then recovers gets every event, each once after de-duplication by key, connect before disconnect', async (t) => {
  const { gw, up, sink } = await setup(t)
  sink.failNext(7)
  const N = 4
  for (let i = 0; i < N; i++) {
    const ws = await connect(`${gw.wsUrl}/chat/${i}`)
    ws.send(`m${i}`)
    await nextMessage(ws)
    const c = closed(ws)
    ws.close(1000)
    await c
  }
  const ids = Array.from({ length: N }, (_, i) => idOf(up, i))
  await sink.until(() => ids.every((id) => sink.disconnectOf(id) !== undefined), 'every disconnect', 8000)
  assert.ok(sink.requests.filter((r) => r.answer === 500).length === 7, 'the failures happened')
  // Every event, once each by key, and no key that is not one of them.
  const keys = sink.deduped().map((e) => `${e.id}:${e.type}`)
  assert.deepEqual([...keys].sort(), ids.flatMap((id) => [`${id}:connect`, `${id}:disconnect`]).sort())
  assert.equal(sink.delivered().length, 2 * N, 'a 500 is not a delivery: each event accepted exactly once')
  for (const id of ids) {
    const firsts = sink.delivered().filter((r) => r.body.id === id).map((r) => r.body.type)
    assert.deepEqual(firsts, ['connect', 'disconnect'], `order for ${id}`)
    // A retry carries the same key and the same body.
    const tries = sink.requests.filter((r) => r.headers['idempotency-key'] === `${id}:connect`)
    assert.ok(tries.every((r) => r.raw === tries[0].raw))
  }
  for (let i = 0; i < N; i++) assert.equal(sink.disconnectOf(ids[i])!.messagesFromClient, 1)
  const m = await metrics(gw)
  assert.ok(sample(m, 'tollgate_events_total', { type: 'connect', result: 'retried' }) + sample(m, 'tollgate_events_total', { type: 'disconnect', result: 'retried' }) === 7)
})

test('a failing endpoint is warned about without its URL\'s query (webhook secrets stay out of the logs)', async (t) => {
  const up = await startUpstream()
  const sink = await startEventsSink()
  const started: { gw?: TestGateway } = {}
  t.after(async () => { await started.gw?.close(); await sink.close(); await up.close() })
  const gw = started.gw = await startGateway({
    events: { url: `${sink.url}?key=s3cr3t-webhook-key`, timeout: '1s' },
    routes: [{ prefix: '/chat', upstream: up.url }]
  }, { captureLogs: true })
  sink.failNext(1, 503)
  const ws = await connect(`${gw.wsUrl}/chat`)
  await sink.until(() => sink.delivered().length === 1, 'the connect, after one 503')
  assert.equal(sink.requests[0].path, '/events?key=s3cr3t-webhook-key', 'the query is sent')
  const warn = gw.logs.find((l) => l.msg === 'lifecycle event delivery failed: retrying')
  assert.ok(warn !== undefined, 'a warning for the failure')
  assert.deepEqual([warn.outcome, warn.type, warn.url], ['503', 'connect', sink.url])
  assert.ok(!gw.logText().includes('s3cr3t'), 'the query is not logged')
  ws.terminate()
})

test('an endpoint that answers after the timeout: retried; the backend sees duplicates that the key removes', async (t) => {
  const { gw, up, sink } = await setup(t, { events: { timeout: '150ms' } })
  sink.hangNext(2)
  const ws = await connect(`${gw.wsUrl}/chat`)
  const id = idOf(up, 0)
  await sink.until(() => sink.of(id).length === 1, 'the connect, after two timeouts', 5000)
  const tries = sink.requests.filter((r) => r.headers['idempotency-key'] === `${id}:connect`)
  assert.deepEqual(tries.map((r) => r.answer), ['hang', 'hang', 204])
  assert.ok(tries[1].at - tries[0].at >= 150, `retried only after the timeout (${Math.round(tries[1].at - tries[0].at)} ms)`)
  ws.terminate()
  await sink.until(() => sink.disconnectOf(id) !== undefined, 'the disconnect')
  assert.deepEqual(sink.deduped().map((e) => e.type), ['connect', 'disconnect'])
})

test('a full queue drops new events (metric and warning), and the relay goes on', async (t) => {
  const { gw, sink } = await setup(t, { events: { queueSize: 2, timeout: '300ms' }, captureLogs: true })
  sink.hangNext(Infinity)
  const sockets: WebSocket[] = []
  for (let i = 0; i < 4; i++) sockets.push(await connect(`${gw.wsUrl}/chat/${i}`))
  t.after(() => { for (const s of sockets) s.terminate() })
  await sink.until(() => sink.requests.length >= 2, 'the two queued events to be tried')
  let m = await metrics(gw)
  assert.equal(sample(m, 'tollgate_events_total', { type: 'connect', result: 'dropped' }), 2)
  assert.equal(sample(m, 'tollgate_events_total', { type: 'connect', result: 'queued' }), 2)
  assert.equal(sample(m, 'tollgate_events_pending', {}), 2)
  const warn = gw.logs.find((l) => l.msg === 'lifecycle event queue full: events dropped')
  assert.ok(warn !== undefined, 'a warning')
  assert.equal(warn.level, 40)
  assert.equal(warn.maxSize, 2)
  // Every connection still relays, both ways.
  for (const [i, s] of sockets.entries()) {
    const echo = nextMessage(s)
    s.send(`still here ${i}`)
    assert.equal((await echo).data.toString(), `still here ${i}`)
  }
  // Recovered: the two queued get through; the dropped never will (they are counted, not retried).
  sink.recover()
  await sink.until(() => sink.delivered().length === 2, 'the queued two', 5000)
  m = await metrics(gw)
  assert.equal(sample(m, 'tollgate_events_pending', {}), 0)
})

test('a graceful close delivers what is still queued: the disconnects of the connections it closes too', async (t) => {
  const { gw, up, sink } = await setup(t)
  const sockets = [await connect(`${gw.wsUrl}/chat/a`), await connect(`${gw.wsUrl}/chat/b`)]
  const ids = [idOf(up, 0), idOf(up, 1)]
  await sink.until(() => sink.deduped().length === 2, 'the connects')
  sink.failNext(3)
  const codes = sockets.map((s) => closed(s))
  const started = Date.now()
  await gw.close()
  assert.ok(Date.now() - started < 4000, 'within the shutdown grace')
  for (const c of await Promise.all(codes)) assert.equal(c.code, 1001)
  for (const id of ids) {
    const d = sink.disconnectOf(id)
    assert.ok(d !== undefined, `the disconnect of ${id} was delivered before close() returned`)
    assert.deepEqual([d.closedBy, d.clientCode], ['gateway', 1001])
  }
})

test('without Redis, events still queued when the grace runs out are lost, and a warning says how many', async (t) => {
  const sink = await eventsSinkFor(t)
  sink.hangNext(Infinity)
  const warnings: Array<[object, string]> = []
  const q = new MemoryEventQueue({ maxSize: 10, log: { info () {}, warn (o, m) { warnings.push([o, m]) } } })
  await q.start()
  const e: LifecycleEvent = { type: 'connect', id: 'c1', route: '/chat', path: '/chat', userId: null, clientIp: '127.0.0.1', instanceId: 'i-1', connectedAt: new Date().toISOString(), at: new Date().toISOString() }
  q.push(e, { url: sink.url, timeout: 5000 })
  q.push({ ...e, id: 'c2' }, { url: sink.url, timeout: 5000 }, false)
  assert.equal(q.pending, 1, 'deliver: false records nothing without Redis')
  await sink.until(() => sink.requests.length === 1, 'the POST')
  const started = Date.now()
  await q.close(100)
  assert.ok(Date.now() - started < 2000, 'close does not wait for the hanging POST')
  assert.deepEqual(warnings.map(([o, m]) => [m, (o as { lost: number }).lost]), [['lifecycle events not delivered before shutdown (no Redis: they are lost)', 1]])
  q.push(e, { url: sink.url, timeout: 5000 })
  assert.equal(sink.requests.length, 1, 'nothing posted after close')
})

test('in-process hooks: onConnect/onClose get the same payloads; a throwing listener breaks nothing', async (t) => {
  const { gw, up, sink } = await setup(t, { captureLogs: true })
  const opened: Array<{ event: ConnectEvent, path: string, auth: string | undefined }> = []
  const ended: DisconnectEvent[] = []
  gw.app.websocketBridge.onConnect(() => { throw new Error('listener bug') })
  gw.app.websocketBridge.onConnect((event, request) => { opened.push({ event, path: request.url, auth: request.headers.authorization }) })
  gw.app.websocketBridge.onClose(() => { throw new Error('listener bug') })
  gw.app.websocketBridge.onClose((event) => { ended.push(event) })
  const token = sign({ sub: 'user-3' })
  const ws = await connect(`${gw.wsUrl}/chat/hooks`, undefined, { headers: { authorization: `Bearer ${token}` } })
  const echo = nextMessage(ws)
  ws.send('ping?')
  assert.equal((await echo).data.toString(), 'ping?', 'the connection works')
  const id = idOf(up, 0)
  assert.equal(opened.length, 1)
  assert.equal(opened[0].path, '/chat/hooks')
  assert.equal(opened[0].auth, `Bearer ${token}`, 'the handshake request is given')
  const c = closed(ws)
  ws.close(1000, 'x')
  await c
  await sink.until(() => sink.disconnectOf(id) !== undefined, 'the posted disconnect')
  assert.deepEqual(opened[0].event, sink.of(id)[0], 'the hook\'s connect is what was posted')
  assert.equal(ended.length, 1)
  assert.deepEqual(ended[0], sink.disconnectOf(id), 'the hook\'s disconnect is what was posted')
  assert.ok(gw.logs.some((l) => l.msg === 'onConnect listener failed' && l.level === 50))
  assert.ok(gw.logs.some((l) => l.msg === 'onClose listener failed' && l.connId === id))
})

test('in-process hooks work without any events configured', async (t) => {
  const up = await upstreamFor(t)
  const gw = await gatewayFor(t, { routes: [{ prefix: '/chat', upstream: up.url }] })
  const got: LifecycleEvent[] = []
  gw.app.websocketBridge.onConnect((e) => { got.push(e) })
  gw.app.websocketBridge.onClose((e) => { got.push(e) })
  const ws = await connect(`${gw.wsUrl}/chat/x`)
  ws.close(1000)
  await waitFor(() => got.length === 2, 'both hooks')
  assert.deepEqual(got.map((e) => [e.type, e.id, e.route, e.path]), [['connect', idOf(up, 0), '/chat', '/chat/x'], ['disconnect', idOf(up, 0), '/chat', '/chat/x']])
  assert.equal((got[1] as DisconnectEvent).closedBy, 'client')
})

test('GET /admin/users/:id/connections: the user\'s connections and their count; admin token; bad input 400', async (t) => {
  const { gw, up } = await setup(t)
  const a1 = await connect(`${gw.wsUrl}/chat/1`, undefined, bearer({ sub: 'alice' }))
  const b1 = await connect(`${gw.wsUrl}/chat/2`, undefined, bearer({ sub: 'bob' }))
  const a2 = await connect(`${gw.wsUrl}/chat/3`, undefined, bearer({ sub: 'alice' }))
  t.after(() => { for (const s of [a1, b1, a2]) s.terminate() })
  type Page = { total: number, partial?: boolean, connections: Array<{ id: string, userId: string | null, path: string }> }
  const get = async (user: string, query = '', headers: Record<string, string> = admin): Promise<{ status: number, body: Page }> => {
    const res = await fetch(`${gw.adminUrl}/admin/users/${user}/connections${query}`, { headers })
    return { status: res.status, body: await res.json() as Page }
  }
  const alice = await get('alice')
  assert.equal(alice.status, 200)
  assert.equal(alice.body.total, 2)
  assert.deepEqual(alice.body.connections.map((c) => c.id).sort(), [idOf(up, 0), idOf(up, 2)].sort())
  assert.ok(alice.body.connections.every((c) => c.userId === 'alice'))
  assert.deepEqual((await get('bob')).body.connections.map((c) => c.path), ['/chat/2'])
  // Paging: total stays the user's count.
  const page = await get('alice', '?limit=1&offset=1')
  assert.deepEqual([page.body.total, page.body.connections.length], [2, 1])
  assert.deepEqual(await get('nobody'), { status: 200, body: { total: 0, connections: [] } })
  // A closed connection leaves the count.
  const c = closed(a1)
  a1.close(1000)
  await c
  await waitFor(async () => (await get('alice')).body.total === 1, 'alice down to one')
  // The admin token is required.
  assert.equal((await fetch(`${gw.adminUrl}/admin/users/alice/connections`)).status, 401)
  assert.equal((await get('alice', '', { authorization: 'Bearer wrong-token-0000' })).status, 401)
  // Hostile input.
  // Longer than a user id may be (256 characters).
  assert.equal((await fetch(`${gw.adminUrl}/admin/users/${'x'.repeat(257)}/connections`, { headers: admin })).status, 400)
  assert.equal((await get('alice', '?limit=0')).status, 400)
  assert.equal((await get('alice', '?limit=100000')).status, 400)
  assert.equal((await get('alice', '?offset=-1')).status, 400)
  assert.equal((await get('alice', '?limit=abc')).status, 400)
  const odd = await get(encodeURIComponent('<script>"a b"\'; DROP'))
  assert.deepEqual(odd, { status: 200, body: { total: 0, connections: [] } }, 'an id is only an id')
  assert.equal((await get(encodeURIComponent('a/../../connections'))).status, 400, 'an encoded slash is refused at the edge')
})

test('bad events configuration is refused with GW_ERR_CONFIG naming the key', () => {
  const route = { prefix: '/chat', upstream: 'http://127.0.0.1:9001' }
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ events: { url: 'ftp://example.com/hook' }, routes: [route] }, 'events.url'],
    [{ events: { url: 'http://x/hook', queueSize: 0 }, routes: [route] }, 'events.queueSize'],
    [{ events: { url: 'http://x/hook', retries: 3 }, routes: [route] }, 'events.retries'],
    [{ events: { url: 'http://x/hook', timeout: 'soon' }, routes: [route] }, 'events.timeout'],
    [{ routes: [{ ...route, events: { url: 'http://x/hook', on: ['open'] } }] }, 'routes[0].events.on'],
    [{ routes: [{ ...route, events: { url: 'http://x/hook', on: [] } }] }, 'routes[0].events.on'],
    [{ routes: [{ ...route, events: { on: ['connect'] } }] }, 'routes[0].events'],
    [{ routes: [{ ...route, events: { url: 'http://x/hook', claims: [''] } }] }, 'routes[0].events.claims'],
    [{ routes: [{ ...route, events: true }] }, 'routes[0].events']
  ]
  for (const [cfg, path] of cases) {
    assert.throws(() => resolveConfig(cfg as GatewayConfigInput), (err: unknown) => {
      assert.ok(err instanceof ConfigError, `${path}: expected a ConfigError, got ${String(err)}`)
      assert.equal(err.code, 'GW_ERR_CONFIG')
      assert.ok(err.message.startsWith(path), `${path}: ${err.message}`)
      return true
    })
  }
})
