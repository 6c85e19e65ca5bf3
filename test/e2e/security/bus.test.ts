/**
 * Hostile input on the cluster bus: whatever is published on an instance's channels or written
 * into the registry's keys, the process stays up, live connections keep relaying, valid commands
 * still work, listings skip junk, and the log gets one line per interval, not one per message.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import type WebSocket from 'ws'
import { startUpstream } from '../../helpers/upstream.js'
import { startGateway, type TestGateway } from '../../helpers/gateway.js'
import { closed, connect, nextMessage } from '../../helpers/ws.js'
import { needRedis, REDIS_URL, testPrefix } from '../../helpers/redis.js'
import { waitFor } from '../../helpers/resources.js'
import { DEFAULT_MAX_PAYLOAD } from '../../../src/config/defaults.js'

const TOKEN = 'bus-security-admin-token-0123'
const auth = { authorization: `Bearer ${TOKEN}` }
const BUS_WARNING = 'cluster bus: message ignored'
const STORE_WARNING = 'cluster registry: stored value skipped'
/** Appears in hostile messages; must never be echoed into a log line. */
const MARK = 'HOSTILE-7f3a'

type Page = { total: number, partial?: boolean, connections: Array<{ id: string, instanceId: string, path: string }> }
async function list (gw: TestGateway): Promise<Page> {
  return await (await fetch(`${gw.url}/admin/connections`, { headers: auth })).json() as Page
}

function redisClient (t: TestContext): Redis {
  const r = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 })
  r.on('error', () => {})
  t.after(() => r.disconnect())
  return r
}

/** Records unhandled rejections and uncaught exceptions while the test runs (either would end a gateway process). */
function watchProcess (t: TestContext): string[] {
  const seen: string[] = []
  const onRejection = (err: unknown): void => { seen.push(`unhandledRejection: ${(err as Error)?.message}`) }
  const onException = (err: Error): void => { seen.push(`uncaughtException: ${err.message}`) }
  process.on('unhandledRejection', onRejection)
  process.on('uncaughtException', onException)
  t.after(() => {
    process.off('unhandledRejection', onRejection)
    process.off('uncaughtException', onException)
  })
  return seen
}

const b64 = (b: Buffer | string): string => Buffer.from(b).toString('base64')

/** Messages for a command channel; `id` is a live connection's, so that any of them acted upon would show. */
function hostileCommands (id: string): string[] {
  const env = (cmd: unknown, extra: Record<string, unknown> = {}): string => JSON.stringify({ rid: randomUUID(), from: 'probe', cmd, ...extra })
  // Both fields always given (undefined: left out of the JSON), so that no default makes one valid.
  const close = (code: unknown, reason: unknown): string => env({ op: 'close', id, code, reason })
  const send = (data: unknown, binary: unknown): string => env({ op: 'send', id, data, binary })
  return [
    'null', '42', '-1', '1e999', 'true', '""', `"${MARK}"`, '[]', '[1,2,3]', '', '{', `{"rid":"${MARK}"`,
    MARK.repeat(300_000), // about 3 MiB of non-JSON
    JSON.stringify(MARK.repeat(300_000)), // the same as a JSON string
    '{}',
    JSON.stringify({ from: 'probe', cmd: { op: 'close', id, code: 1000, reason: MARK } }),
    JSON.stringify({ rid: 7, from: 'probe', cmd: { op: 'close', id, code: 1000, reason: MARK } }),
    JSON.stringify({ rid: randomUUID(), cmd: { op: 'close', id, code: 1000, reason: MARK } }),
    JSON.stringify({ rid: randomUUID(), from: 'x'.repeat(10_000), cmd: { op: 'close', id, code: 1000, reason: MARK } }),
    JSON.stringify({ rid: randomUUID(), from: 'a\r\nb', cmd: { op: 'close', id, code: 1000, reason: MARK } }),
    env(null), env([]), env('close'), env(42), env({}), env({ op: 'nuke', id }), env({ op: 'Close', id, code: 1000, reason: '' }),
    ...[70000, 1005, 1006, 1015, 1004, 999, 0, -1, 5000, 1000.5, 'abc', '1000', null, undefined].map((code) => close(code, MARK)),
    close(1000, 'r'.repeat(200)), close(4000, 'é'.repeat(62)), close(4000, 5), close(4000, null), close(4000, undefined),
    env({ op: 'close', code: 1000, reason: MARK }), env({ op: 'close', id: 42, code: 1000, reason: MARK }),
    env({ op: 'close', id: 'i'.repeat(5000), code: 1000, reason: MARK }),
    ...['***not base64***', 'QUJ', 'QU=D', `${b64(MARK)}\n`, 5, null, undefined, ['QUJD']].map((data) => send(data, false)),
    send(b64(MARK), 'yes'), send(b64(MARK), 1), send(b64(MARK), undefined),
    send(b64(Buffer.from([0xff, 0xfe, 0xfd])), false), // text that is not UTF-8
    send(b64(Buffer.alloc(DEFAULT_MAX_PAYLOAD + 1, 0x61)), false), // a push bigger than maxPayload
    send(b64(Buffer.alloc(DEFAULT_MAX_PAYLOAD + 1, 0x61)), true),
    env({ op: 'send', data: b64(MARK), binary: false }),
    env({ op: 'broadcast', route: 5, data: b64(MARK), binary: false }),
    env({ op: 'broadcast', user: null, data: b64(MARK), binary: false }),
    env({ op: 'broadcast', route: '/chat', data: '!!!', binary: false }),
    env({ op: 'broadcast', data: null, binary: true }),
    env({ op: 'broadcast', data: b64(Buffer.alloc(DEFAULT_MAX_PAYLOAD + 1)), binary: true }),
    env({ op: 'find' }), env({ op: 'find', id: 42 }), env({ op: 'find', id: `a\n${MARK}` }),
    env({ op: 'count', route: 5 }), env({ op: 'count', user: 'u'.repeat(5000) }),
    env({ op: 'page', offset: -1, limit: 10 }), env({ op: 'page', offset: 0, limit: 1e9 }), env({ op: 'page', offset: '0', limit: 1 }),
    env({ op: 'page', offset: 0, limit: 0 }), env({ op: 'page', route: [MARK], offset: 0, limit: 1 })
  ]
}

function hostileReplies (): string[] {
  return [
    'null', '7', '[]', '{}', '', '{', MARK.repeat(300_000),
    JSON.stringify({ rid: 5, result: 1 }), JSON.stringify({ rid: randomUUID() }),
    JSON.stringify({ rid: randomUUID(), result: 'one' }), JSON.stringify({ rid: randomUUID(), result: 2 ** 60 }),
    JSON.stringify({ rid: randomUUID(), result: -5 }), JSON.stringify({ rid: 'r'.repeat(5000), result: 1 }),
    JSON.stringify({ rid: randomUUID(), result: 1, views: MARK }), JSON.stringify({ rid: randomUUID(), result: 1, views: new Array(1001).fill(MARK) }),
    // Well-formed, but for a request nobody waits for: dropped silently.
    JSON.stringify({ rid: randomUUID(), result: 1 })
  ]
}

test('hostile messages on the bus and junk in the registry: nothing crashes, relays go on, valid commands still work', { timeout: 120_000 }, async (t) => {
  if (!await needRedis(t)) return
  const problems = watchProcess(t)
  const prefix = testPrefix(t)
  const up = await startUpstream()
  t.after(() => up.close())
  const config = {
    redis: { url: REDIS_URL, keyPrefix: prefix },
    admin: { token: TOKEN },
    websocket: { pingInterval: 300, pongTimeout: 1000 },
    routes: [{ prefix: '/chat', upstream: up.url }]
  }
  const a = await startGateway(config, { captureLogs: true })
  t.after(() => a.close())
  const b = await startGateway(config, { captureLogs: true })
  t.after(() => b.close())
  await waitFor(async () => (await fetch(`${a.url}/ready`)).status === 200 && (await fetch(`${b.url}/ready`)).status === 200, 'redis ready')
  const aId = a.app.instanceId
  const bId = b.app.instanceId

  // A live bridged connection on A, and its upstream end.
  const upstreamSide = up.nextConnection()
  const client: WebSocket = await connect(`${a.wsUrl}/chat/live`)
  t.after(() => client.terminate())
  const { ws: upWs } = await upstreamSide
  await waitFor(async () => (await list(b)).total === 1, 'B to list A\'s connection')
  const connId = (await list(b)).connections[0].id

  const redis = redisClient(t)
  // Every reply published under this prefix, to see that junk is never answered.
  const tap = redisClient(t)
  const replies: Array<{ channel: string, message: string }> = []
  const replyWaiters = new Map<string, (result: number) => void>()
  tap.on('pmessage', (_p: string, channel: string, message: string) => {
    replies.push({ channel, message })
    try {
      const r = JSON.parse(message) as { rid: string, result: number }
      replyWaiters.get(r.rid)?.(r.result)
    } catch { /* a reply of the gateways is always JSON; anything else shows in `replies` */ }
  })
  await tap.psubscribe(`${prefix}reply:*`)

  /**
   * A valid command on `instance`'s command channel, answered on reply:probe. Pub/sub keeps the
   * order of one publisher's messages, so once it is answered, everything published before it
   * on that channel has been handled.
   */
  async function probe (instance: string, cmd: Record<string, unknown>): Promise<number> {
    const rid = randomUUID()
    const answered = new Promise<number>((resolve) => replyWaiters.set(rid, resolve))
    await redis.publish(`${prefix}cmd:${instance}`, JSON.stringify({ rid, from: 'probe', cmd }))
    return await answered
  }

  // Junk in the registry's keys: A's id set and count hashes, a fake live instance (with a count
  // that is not a number, and an id nobody answers for), a dead one, bad set members.
  const k = `${prefix}{${prefix}reg}:`
  await redis.sadd(`${k}ids:${aId}`, 'j-not-there', 'j-junk', 'j'.repeat(5000))
  await redis.hset(`${k}n:${aId}`, 'r:/junk', MARK, MARK, '7')
  await redis.hset(`${k}u:${aId}`, 'ghost-user', MARK)
  await redis.sadd(`${k}instances`, 'fake-live', 'x'.repeat(300), `bad\n${MARK}`, 'fake-dead')
  await redis.set(`${k}hb:fake-live`, MARK, 'PX', 60_000)
  await redis.hset(`${k}n:fake-live`, '*', MARK, 'r:/chat', '-3')
  await redis.sadd(`${k}ids:fake-live`, 'f1')
  // A dead instance's share of concurrent counts, one of them junk: the rest is still given back.
  await redis.hset(`${k}conc:inst:fake-dead`, 'k-junk', MARK, 'k-good', '2', 'k-neg', '-4')
  await redis.set(`${k}conc:k-good`, '5')
  await redis.set(`${k}conc:k-junk`, '3')
  await redis.set(`${k}conc:k-neg`, '1')

  // Listings and totals skip the junk; inspecting a junk id is a 404, not a 500.
  for (const gw of [a, b]) {
    const page = await list(gw)
    assert.equal(page.partial, undefined)
    assert.equal(page.total, 1)
    assert.deepEqual(page.connections.map((c) => c.id), [connId])
    const totals = await (await fetch(`${gw.url}/admin/connections/totals`, { headers: auth })).json() as { total: number, routes: Record<string, number> }
    assert.deepEqual(totals.routes, { '/chat': 1 })
    assert.equal((await fetch(`${gw.url}/admin/connections?user=ghost-user`, { headers: auth })).status, 200)
  }
  for (const id of ['j-not-there', 'j-junk', 'f1']) {
    assert.equal((await fetch(`${b.url}/admin/connections/${encodeURIComponent(id)}`, { headers: auth })).status, 404, id)
  }
  assert.equal((await fetch(`${b.url}/admin/connections/${connId}`, { headers: auth })).status, 200)
  // The dead instance is reaped despite its junk share; bad members leave the set.
  await waitFor(async () => !(await redis.smembers(`${k}instances`)).some((m) => m === 'fake-dead' || m.startsWith('bad') || m.length > 256), 'the dead instance and bad members to leave the set')
  assert.equal(await redis.get(`${k}conc:k-good`), '3')
  assert.equal(await redis.get(`${k}conc:k-junk`), '3')
  assert.equal(await redis.get(`${k}conc:k-neg`), '1')

  // The bus: hostile messages on both instances' command and reply channels.
  const commands = hostileCommands(connId)
  const replyJunk = hostileReplies()
  const before = replies.length
  for (const inst of [aId, bId]) {
    for (const m of commands) await redis.publish(`${prefix}cmd:${inst}`, m)
    for (const m of replyJunk) await redis.publish(`${prefix}reply:${inst}`, m)
  }
  // A valid push through the bus after all that: it is the client's next message (neither the
  // oversized pushes nor any other junk reached it), and the only replies were to the probes.
  const next = nextMessage(client)
  assert.equal(await probe(aId, { op: 'send', id: connId, data: b64('after the junk'), binary: false }), 1)
  assert.deepEqual(await next, { data: Buffer.from('after the junk'), isBinary: false })
  assert.equal(await probe(bId, { op: 'send', id: connId, data: b64('x'), binary: false }), 0) // B does not hold it
  const answered = replies.slice(before)
  assert.equal(answered.length, 2 + replyJunk.length * 2, 'only the probes were answered (the rest are the junk replies themselves)')
  assert.deepEqual(answered.filter((r) => r.channel !== `${prefix}reply:${aId}` && r.channel !== `${prefix}reply:${bId}`).map((r) => r.channel), [`${prefix}reply:probe`, `${prefix}reply:probe`])

  // The bridged connection still relays both ways, and nothing closed it.
  const atUpstream = once(upWs, 'message')
  const echoed = nextMessage(client)
  client.send('still relaying')
  assert.equal(String((await atUpstream)[0]), 'still relaying')
  assert.equal((await echoed).data.toString(), 'still relaying')
  assert.equal(client.readyState, client.OPEN)
  assert.equal(upWs.readyState, upWs.OPEN)
  assert.equal((await fetch(`${a.url}/health`)).status, 200)
  assert.equal((await fetch(`${b.url}/health`)).status, 200)

  // Valid commands across instances still work: a push, then a close, from B's admin API.
  const pushed = nextMessage(client)
  const post = await fetch(`${b.url}/admin/connections/${connId}/messages`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ text: 'pushed via b' }) })
  assert.equal(post.status, 202)
  assert.equal((await pushed).data.toString(), 'pushed via b')
  const clientClosed = closed(client)
  const upstreamClosed = once(upWs, 'close')
  assert.equal((await fetch(`${b.url}/admin/connections/${connId}?code=4001&reason=moved`, { method: 'DELETE', headers: auth })).status, 204)
  assert.deepEqual(await clientClosed, { code: 4001, reason: 'moved' })
  await upstreamClosed

  assert.deepEqual(problems, [])
  // One warning line per kind and instance for the whole flood (they are rate-limited), with a
  // static message, and nothing of the junk itself in any log line.
  for (const gw of [a, b]) {
    const bus = gw.logs.filter((l) => l.msg === BUS_WARNING)
    assert.equal(bus.length, 1, `${BUS_WARNING} lines`)
    assert.equal(bus[0].level, 40)
    assert.equal(typeof bus[0].reason, 'string')
    assert.equal(gw.logs.filter((l) => l.msg === 'cluster registry: publish failed').length, 0)
    assert.ok(gw.logs.filter((l) => l.msg === STORE_WARNING).length <= 1)
    assert.ok(!gw.logText().includes(MARK), 'junk content is not logged')
  }
  assert.ok(a.logs.some((l) => l.msg === STORE_WARNING) || b.logs.some((l) => l.msg === STORE_WARNING))
})

test('junk in the shared connection counts neither turns the limit off nor wedges it', async (t) => {
  if (!await needRedis(t)) return
  const { RedisConcurrency } = await import('../../../src/limits/concurrency.js')
  const redis = new Redis(REDIS_URL, { lazyConnect: false })
  t.after(() => redis.disconnect())
  const prefix = testPrefix(t)
  const conc = new RedisConcurrency(redis, prefix, 'inst-a')
  await redis.set(conc.countKey('ip:1'), 'not a number')
  await redis.hset(conc.instanceKey, 'ip:1', 'junk')
  assert.equal(await conc.count('ip:1'), 0, 'a junk count reads as 0, not NaN')
  const a = await conc.acquire('ip:1', 2)
  const b = await conc.acquire('ip:1', 2)
  assert.ok(a !== null && b !== null, 'junk counts as 0: two leases under a limit of 2')
  assert.equal(await conc.acquire('ip:1', 2), null, 'and the limit holds')
  a.release()
  // A junk share at release time: the lease this instance holds is still given back.
  await redis.hset(conc.instanceKey, 'ip:1', 'junk again')
  b.release()
  await waitFor(async () => await conc.count('ip:1') === 0, 'both releases to go through')
  assert.equal(conc.owed, 0, 'nothing queued for a reconnect')
  // Keys of the wrong type, and a count far below zero: neither wedges the limit nor lifts it.
  await redis.set(conc.instanceKey, 'not a hash')
  await redis.set(conc.countKey('ip:2'), '-1000000')
  const leases = [await conc.acquire('ip:2', 2), await conc.acquire('ip:2', 2), await conc.acquire('ip:2', 2)]
  assert.deepEqual(leases.map((l) => l !== null), [true, true, false])
  for (const l of leases) l?.release()
  await waitFor(async () => await conc.count('ip:2') === 0, 'the wrong-typed share to be replaced and given back')
  await redis.del(conc.countKey('ip:1'), conc.countKey('ip:2'), conc.instanceKey)
})

test('reaping: a ghost instance with a key of the wrong type neither stops the real dead one being reaped nor floods the log', async (t) => {
  if (!await needRedis(t)) return
  const { RedisRegistry } = await import('../../../src/registry/redis-registry.js')
  const redis = new Redis(REDIS_URL)
  t.after(() => redis.disconnect())
  const p = testPrefix(t)
  // A dead instance that held two connections of one IP, and a ghost whose share is not a hash.
  const k = `${p}{${p}reg}:`
  await redis.sadd(`${k}instances`, 'ghost', 'dead')
  await redis.set(`${k}conc:inst:ghost`, 'not a hash')
  await redis.hset(`${k}conc:inst:dead`, 'ip:10.0.0.9', '2')
  await redis.set(`${k}conc:ip:10.0.0.9`, '2')
  const warnings: string[] = []
  const infos: Array<Record<string, unknown>> = []
  const reg = new RedisRegistry({ redis, prefix: p, instanceId: 'alive', pingInterval: 100, log: { warn: (_o, msg) => warnings.push(msg), info: (o) => infos.push(o as Record<string, unknown>) } })
  await reg.start()
  t.after(() => reg.stop())
  await waitFor(async () => (await redis.sismember(`${k}instances`, 'dead')) === 0 && (await redis.sismember(`${k}instances`, 'ghost')) === 0, 'both to be reaped')
  assert.equal(await redis.exists(`${k}conc:ip:10.0.0.9`), 0, 'the dead instance\'s counts were given back')
  assert.ok(infos.some((o) => o.instance === 'dead'))
  assert.ok(warnings.filter((m) => m === 'cluster registry: publish failed').length <= 1)
  await redis.del(`${k}conc:inst:ghost`)
})
