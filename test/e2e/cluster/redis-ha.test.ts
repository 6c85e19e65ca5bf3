/**
 * Cluster mode on Redis as production runs it: a Sentinel set (a primary, a replica, one
 * Sentinel) with a primary failover while connections are open, and a Redis Cluster of three
 * masters. Real redis-server processes of the test's own (test/helpers/redis.ts), two gateway
 * instances each, real WebSocket clients through them to an echo upstream. Skipped (failed under
 * CI) without redis-server. And the configuration of both, refused when it does not fit.
 */
import { describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { Cluster, Redis } from 'ioredis'
import type WebSocket from 'ws'
import { startUpstream, type TestUpstream } from '../../helpers/upstream.js'
import { startGateway, type TestGateway } from '../../helpers/gateway.js'
import { connect, closed, nextMessage, type HandshakeError } from '../../helpers/ws.js'
import { needRedisServer, startRedisCluster, startSentinelSet } from '../../helpers/redis.js'
import { waitFor } from '../../helpers/resources.js'
import { resolveConfig } from '../../../src/config/resolve.js'
import type { GatewayConfigInput } from '../../../src/config/schema.js'

const TOKEN = 'cluster-ha-admin-token-01'
const auth = { authorization: `Bearer ${TOKEN}` }
const PREFIX = 'ha:'
const BASE = `${PREFIX}{${PREFIX}reg}:`

type Page = { total: number, partial?: boolean, connections: Array<{ id: string, instanceId: string, path: string }> }
async function list (gw: TestGateway, query = ''): Promise<Page> {
  return await (await fetch(`${gw.url}/admin/connections${query}`, { headers: auth })).json() as Page
}

async function instances (t: TestContext, redis: GatewayConfigInput['redis'], extra: Partial<GatewayConfigInput> = {}): Promise<{ up: TestUpstream, a: TestGateway, b: TestGateway }> {
  const up = await startUpstream()
  t.after(() => up.close())
  const config: GatewayConfigInput = {
    redis,
    admin: { token: TOKEN },
    websocket: { pingInterval: 300, pongTimeout: 1000 },
    routes: [{ prefix: '/chat', upstream: up.url }, { prefix: '/limited', upstream: up.url, rateLimit: { http: { max: 3, window: '1m' } } }],
    ...extra
  }
  const a = await startGateway(config)
  t.after(() => a.close())
  const b = await startGateway(config)
  t.after(() => b.close())
  await waitFor(async () => (await fetch(`${a.url}/ready`)).status === 200 && (await fetch(`${b.url}/ready`)).status === 200, 'redis ready', 10_000)
  return { up, a, b }
}

/** Sends `n` messages one after another, each waiting for its echo; resolves with what came back. */
async function echoes (ws: WebSocket, n: number, tag: string): Promise<string[]> {
  const got: string[] = []
  for (let i = 0; i < n; i++) {
    const m = nextMessage(ws)
    ws.send(`${tag}-${i}`)
    got.push((await m).data.toString())
  }
  return got
}

/** Pushes a text from `via` to connection `id` and checks that `ws` receives it. */
async function pushed (via: TestGateway, id: string, ws: WebSocket, text: string): Promise<void> {
  const m = nextMessage(ws)
  const r = await fetch(`${via.url}/admin/connections/${id}/messages`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ text }) })
  assert.equal(r.status, 202)
  assert.equal((await m).data.toString(), text)
}

describe('Redis Sentinel', () => {
  test('two instances share the registry through a Sentinel set; a primary failover with connections open: relays keep running, the registry catches up', { timeout: 60_000 }, async (t) => {
    if (!needRedisServer(t)) return
    const set = await startSentinelSet(t)
    const { a, b } = await instances(t, { sentinels: set.sentinels, name: set.name, keyPrefix: PREFIX })
    const onA = await connect(`${a.wsUrl}/chat/a1`)
    t.after(() => onA.terminate())
    const onB = await connect(`${b.wsUrl}/chat/b1`)
    t.after(() => onB.terminate())
    await waitFor(async () => (await list(a)).total === 2 && (await list(b)).total === 2, 'both connections listed everywhere')
    const idA = (await list(b)).connections.find((c) => c.path === '/chat/a1')!.id
    await pushed(b, idA, onA, 'before')

    // Messages flow both ways while the primary moves.
    const during = Promise.all([echoes(onA, 200, 'a'), echoes(onB, 200, 'b')])
    await set.failover()
    const [gotA, gotB] = await during
    assert.deepEqual(gotA, Array.from({ length: 200 }, (_, i) => `a-${i}`))
    assert.deepEqual(gotB, Array.from({ length: 200 }, (_, i) => `b-${i}`))
    assert.equal(onA.readyState, onA.OPEN)
    assert.equal(onB.readyState, onB.OPEN)

    // The new primary knows both instances' connections, new ones are written there, and by-id
    // commands work across instances again.
    const onB2 = await connect(`${b.wsUrl}/chat/b2`)
    t.after(() => onB2.terminate())
    const promoted = new Redis(set.replica.port, '127.0.0.1')
    t.after(() => { promoted.disconnect() })
    await waitFor(async () => {
      const [pa, pb] = [await list(a), await list(b)]
      return pa.total === 3 && pb.total === 3 && pa.partial === undefined && pb.partial === undefined &&
        await promoted.scard(`${BASE}ids:${a.app.instanceId}`) === 1 && await promoted.scard(`${BASE}ids:${b.app.instanceId}`) === 2
    }, 'the registry to catch up on the new primary', 15_000)
    await pushed(b, idA, onA, 'after')
    const idB2 = (await list(a)).connections.find((c) => c.path === '/chat/b2')!.id
    const c = closed(onB2)
    assert.equal((await fetch(`${a.url}/admin/connections/${idB2}`, { method: 'DELETE', headers: auth })).status, 204)
    assert.equal((await c).code, 1008)
  })
})

describe('Redis Cluster', () => {
  test('two instances on a Redis Cluster of three masters: listing, paging, totals, find, push, close, cluster-wide limits and rate-limit windows', { timeout: 60_000 }, async (t) => {
    if (!needRedisServer(t)) return
    const nodes = await startRedisCluster(t)
    const { a, b } = await instances(t, { cluster: nodes, keyPrefix: PREFIX }, { rateLimit: { concurrent: 3 } })
    // HTTP rate-limit windows live on the Cluster too: 3 requests in all, whichever instance.
    const statuses = []
    for (const gw of [a, b, a, b]) statuses.push((await fetch(`${gw.url}/limited/x`)).status)
    assert.deepEqual(statuses, [200, 200, 200, 429])
    const onA1 = await connect(`${a.wsUrl}/chat/a1`)
    t.after(() => onA1.terminate())
    const onA2 = await connect(`${a.wsUrl}/chat/a2`)
    t.after(() => onA2.terminate())
    const onB1 = await connect(`${b.wsUrl}/chat/b1`)
    t.after(() => onB1.terminate())
    // The concurrent limit is counted across instances (its script runs on the Cluster).
    await assert.rejects(connect(`${b.wsUrl}/chat/b2`), (e: HandshakeError) => e.status === 429)
    await waitFor(async () => (await list(a)).total === 3 && (await list(b)).total === 3, 'three connections listed everywhere')

    // Paging one by one from either instance: every connection once, in one order.
    const ids: string[] = []
    for (let offset = 0; offset < 3; offset++) {
      const page = await list(offset % 2 === 0 ? a : b, `?limit=1&offset=${offset}`)
      assert.equal(page.total, 3)
      ids.push(page.connections[0].id)
    }
    assert.equal(new Set(ids).size, 3)
    assert.deepEqual((await list(b)).connections.map((c) => c.id), ids)
    const totals = await (await fetch(`${b.url}/admin/connections/totals`, { headers: auth })).json() as { total: number, routes: Record<string, number>, instances: Array<{ instanceId: string, connections: number }> }
    assert.equal(totals.total, 3)
    assert.deepEqual(totals.routes, { '/chat': 3 })
    assert.deepEqual(new Map(totals.instances.map((i) => [i.instanceId, i.connections])), new Map([[a.app.instanceId, 2], [b.app.instanceId, 1]]))

    const all = (await list(b)).connections
    const idA1 = all.find((c) => c.path === '/chat/a1')!.id
    const one = await fetch(`${b.url}/admin/connections/${idA1}`, { headers: auth })
    assert.equal(one.status, 200)
    assert.equal(((await one.json()) as { path: string }).path, '/chat/a1')
    await pushed(b, idA1, onA1, 'over the cluster')
    assert.deepEqual(await echoes(onA1, 5, 'x'), ['x-0', 'x-1', 'x-2', 'x-3', 'x-4'])
    const c = closed(onA1)
    assert.equal((await fetch(`${b.url}/admin/connections/${idA1}?code=4002&reason=bye`, { method: 'DELETE', headers: auth })).status, 204)
    assert.deepEqual(await c, { code: 4002, reason: 'bye' })
    await waitFor(async () => (await list(a)).total === 2, 'the closed connection to leave the listing')
    // Its concurrent slot is free again, cluster-wide.
    const onB2 = await connect(`${b.wsUrl}/chat/b2`)
    t.after(() => onB2.terminate())

    // Everything the registry keeps sits in one slot (its one hash tag).
    const cluster = new Cluster(nodes.map((u) => ({ host: '127.0.0.1', port: Number(new URL(u).port) })))
    t.after(() => { cluster.disconnect() })
    const members = await cluster.smembers(`${BASE}instances`)
    assert.deepEqual(members.sort(), [a.app.instanceId, b.app.instanceId].sort())
    const slots = new Set<number>()
    for (const key of [`${BASE}instances`, `${BASE}ids:${a.app.instanceId}`, `${BASE}conc:127.0.0.1`]) slots.add(await cluster.call('CLUSTER', 'KEYSLOT', key) as number)
    assert.equal(slots.size, 1)
  })
})

describe('redis configuration', () => {
  const refused = (redis: unknown, path: string, detail: RegExp): void => {
    assert.throws(() => resolveConfig({ redis }), (err: Error & { code?: string }) => err.code === 'GW_ERR_CONFIG' && err.message.startsWith(`${path}: `) && detail.test(err.message), JSON.stringify(redis))
  }

  test('a Sentinel set or a Cluster resolves; defaults apply as with url', () => {
    assert.deepEqual(resolveConfig({ redis: { sentinels: [{ host: 's1', port: 26379 }], name: 'main' } }).redis, {
      sentinels: [{ host: 's1', port: 26379 }], name: 'main', failOpen: true, keyPrefix: 'gw:'
    })
    assert.deepEqual(resolveConfig({ redis: { cluster: ['redis://n1:7000', 'rediss://u:p@n2:7001'], failOpen: false } }).redis, {
      cluster: ['redis://n1:7000', 'rediss://u:p@n2:7001'], failOpen: false, keyPrefix: 'gw:'
    })
  })

  test('conflicting or incomplete Redis settings are refused, naming the key', () => {
    refused({ url: 'redis://x', sentinels: [{ host: 's', port: 1 }], name: 'n' }, 'redis.sentinels', /only one of/)
    refused({ url: 'redis://x', cluster: ['redis://y'] }, 'redis.cluster', /only one of/)
    refused({ sentinels: [{ host: 's', port: 1 }] }, 'redis.name', /required with redis.sentinels/)
    refused({ url: 'redis://x', name: 'n' }, 'redis.name', /only used with redis.sentinels/)
    refused({ sentinels: [] }, 'redis.sentinels', /./)
    refused({ sentinels: [{ host: 's', port: 0 }], name: 'n' }, 'redis.sentinels[0].port', /./)
    refused({ sentinels: [{ host: 's', port: 1, password: 'x' }], name: 'n' }, 'redis.sentinels[0].password', /unknown key/)
    refused({ cluster: ['n1:7000'] }, 'redis.cluster[0]', /./)
    refused({ cluster: [] }, 'redis.cluster', /./)
    refused({ url: 'redis://x', keyPrefix: 'a{b}:' }, 'redis.keyPrefix', /./)
  })
})
