/**
 * Cluster mode (spec section 8): several instances sharing the registry, commands and limits
 * through Redis; an instance that dies vanishing; Redis going away and coming back.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startUpstream, type TestUpstream } from '../../helpers/upstream.js'
import { startGateway, type TestGateway } from '../../helpers/gateway.js'
import { connect, closed, nextMessage, type HandshakeError } from '../../helpers/ws.js'
import { needRedis, REDIS_URL, testPrefix } from '../../helpers/redis.js'
import type WebSocket from 'ws'
import type { GatewayConfigInput } from '../../../src/config/schema.js'
import { freePort, waitFor } from '../../helpers/resources.js'

const TOKEN = 'cluster-admin-token-0123'
const auth = { authorization: `Bearer ${TOKEN}` }
const PING = 300

type Page = { total: number, partial?: boolean, connections: Array<{ id: string, instanceId: string, path: string }> }
async function list (gw: TestGateway, query = ''): Promise<Page> {
  return await (await fetch(`${gw.url}/admin/connections${query}`, { headers: auth })).json() as Page
}

function config (up: TestUpstream, keyPrefix: string, redisUrl = REDIS_URL, extra: Partial<GatewayConfigInput> = {}): GatewayConfigInput {
  return {
    redis: { url: redisUrl, keyPrefix },
    admin: { token: TOKEN },
    websocket: { pingInterval: PING, pongTimeout: 1000 },
    routes: [{ prefix: '/chat', upstream: up.url }],
    ...extra
  }
}

async function twoInstances (t: TestContext): Promise<{ up: TestUpstream, a: TestGateway, b: TestGateway, prefix: string }> {
  const prefix = testPrefix(t)
  const up = await startUpstream()
  t.after(() => up.close())
  const a = await startGateway(config(up, prefix))
  t.after(() => a.close())
  const b = await startGateway(config(up, prefix))
  t.after(() => b.close())
  await waitFor(async () => (await fetch(`${a.url}/ready`)).status === 200 && (await fetch(`${b.url}/ready`)).status === 200, 'redis ready')
  return { up, a, b, prefix }
}

test('any instance lists, inspects, closes and messages the connections of every instance', async (t) => {
  if (!await needRedis(t)) return
  const { a, b } = await twoInstances(t)
  const onA = await connect(`${a.wsUrl}/chat/a1`)
  t.after(() => onA.terminate())
  const onB = await connect(`${b.wsUrl}/chat/b1`)
  t.after(() => onB.terminate())
  await waitFor(async () => (await list(a)).total === 2 && (await list(b)).total === 2, 'both instances to list both connections')
  const page = await list(b)
  const fromA = page.connections.find((c) => c.path === '/chat/a1')!
  assert.equal(fromA.instanceId, a.app.instanceId)
  assert.equal(page.connections.find((c) => c.path === '/chat/b1')!.instanceId, b.app.instanceId)
  assert.equal((await list(b, '?limit=1&offset=1')).connections.length, 1)
  // Inspect on the other instance.
  const one = await fetch(`${b.url}/admin/connections/${fromA.id}`, { headers: auth })
  assert.equal(one.status, 200)
  assert.equal(((await one.json()) as { id: string }).id, fromA.id)
  // Push from B to A's client (text and binary).
  let m = nextMessage(onA)
  const post = (body: unknown): Promise<Response> => fetch(`${b.url}/admin/connections/${fromA.id}/messages`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  assert.equal((await post({ text: 'héllo from b' })).status, 202)
  assert.deepEqual(await m, { data: Buffer.from('héllo from b'), isBinary: false })
  m = nextMessage(onA)
  assert.equal((await post({ binary: Buffer.from([1, 2, 3]).toString('base64') })).status, 202)
  assert.deepEqual(await m, { data: Buffer.from([1, 2, 3]), isBinary: true })
  // Close from B: A's client gets 1008 "closed by administrator".
  const c = closed(onA)
  assert.equal((await fetch(`${b.url}/admin/connections/${fromA.id}?code=4001&reason=moved`, { method: 'DELETE', headers: auth })).status, 204)
  assert.deepEqual(await c, { code: 4001, reason: 'moved' })
  await waitFor(async () => (await list(b)).total === 1, 'the closed connection to leave the listing')
  // Nobody has it any more: 404 everywhere.
  assert.equal((await fetch(`${b.url}/admin/connections/${fromA.id}`, { headers: auth })).status, 404)
  assert.equal((await fetch(`${b.url}/admin/connections/${fromA.id}`, { method: 'DELETE', headers: auth })).status, 404)
  assert.equal((await post({ text: 'late' })).status, 404)
  // broadcast through the registry reaches every instance's clients of the route.
  const onA2 = await connect(`${a.wsUrl}/chat/a2`)
  t.after(() => onA2.terminate())
  await waitFor(async () => (await list(b)).total === 2, 'the new connection to be listed')
  const got = [nextMessage(onA2), nextMessage(onB)]
  assert.equal(await b.app.connections.broadcast({ route: '/chat' }, 'to all', false), 2)
  for (const g of await Promise.all(got)) assert.equal(g.data.toString(), 'to all')
})

test('concurrent-connection limits are cluster-wide', async (t) => {
  if (!await needRedis(t)) return
  const prefix = testPrefix(t)
  const up = await startUpstream()
  t.after(() => up.close())
  const a = await startGateway(config(up, prefix, REDIS_URL, { rateLimit: { concurrent: 1 } }))
  t.after(() => a.close())
  const b = await startGateway(config(up, prefix, REDIS_URL, { rateLimit: { concurrent: 1 } }))
  t.after(() => b.close())
  await waitFor(async () => (await fetch(`${a.url}/ready`)).status === 200 && (await fetch(`${b.url}/ready`)).status === 200, 'redis ready')
  const ws = await connect(`${a.wsUrl}/chat`)
  await assert.rejects(connect(`${b.wsUrl}/chat`), (e: HandshakeError) => e.status === 429)
  ws.terminate()
  await waitFor(async () => {
    try { (await connect(`${b.wsUrl}/chat`)).terminate(); return true } catch { return false }
  }, 'the slot to be free on the other instance')
})

test('an instance killed with SIGKILL vanishes from listings within 3 pingIntervals; its concurrent counts are released', { timeout: 60_000 }, async (t) => {
  if (!await needRedis(t)) return
  const prefix = testPrefix(t)
  const up = await startUpstream()
  t.after(() => up.close())
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-cluster-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const cfg = config(up, prefix, REDIS_URL, { rateLimit: { concurrent: 1 } })
  writeFileSync(join(dir, 'gateway.json'), JSON.stringify(cfg))
  const port = await freePort()
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'src/gateway/cli.ts', '--config', join(dir, 'gateway.json')], {
    cwd: process.cwd(),
    env: { PATH: process.env.PATH, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn' },
    stdio: 'ignore'
  })
  t.after(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  const b = await startGateway(cfg)
  t.after(() => b.close())
  await waitFor(async () => {
    try { return (await fetch(`http://127.0.0.1:${port}/ready`)).status === 200 } catch { return false }
  }, 'the child gateway to start', 45_000)
  const ws = await connect(`ws://127.0.0.1:${port}/chat/child`)
  ws.on('error', () => {})
  await waitFor(async () => (await list(b)).total === 1, 'the child connection to be listed on b')
  assert.equal((await list(b)).connections[0].path, '/chat/child')
  // The child holds the only slot of this client (concurrent: 1).
  await assert.rejects(connect(`${b.wsUrl}/chat`), (e: HandshakeError) => e.status === 429)
  const killedAt = Date.now()
  child.kill('SIGKILL')
  await waitFor(async () => (await list(b)).total === 0, 'the dead instance to vanish', 3 * PING + 3000)
  t.diagnostic(`vanished after ${Date.now() - killedAt} ms (3 pingIntervals = ${3 * PING} ms, plus one publish period)`)
  // Its share of the concurrent count was given back by the reaper.
  await waitFor(async () => {
    try { (await connect(`${b.wsUrl}/chat`)).terminate(); return true } catch { return false }
  }, 'the dead instance\'s slot to be released')
})

test('Redis going away: relays continue, /ready says 503, listings are partial; all is republished when it returns', { timeout: 60_000 }, async (t) => {
  let hasServer = true
  try { execFileSync('redis-server', ['--version'], { stdio: 'ignore' }) } catch { hasServer = false }
  if (!hasServer) {
    if (process.env.CI !== undefined && process.env.CI !== '') throw new Error('redis-server is required under CI')
    t.skip('redis-server not installed: skipped')
    return
  }
  const port = await freePort()
  const startRedis = (): ChildProcess => spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
  let redis = startRedis()
  t.after(() => { redis.kill('SIGKILL') })
  const url = `redis://127.0.0.1:${port}`
  const up = await startUpstream()
  t.after(() => up.close())
  const a = await startGateway(config(up, 'gw:', url))
  t.after(() => a.close())
  const b = await startGateway(config(up, 'gw:', url))
  t.after(() => b.close())
  await waitFor(async () => (await fetch(`${a.url}/ready`)).status === 200 && (await fetch(`${b.url}/ready`)).status === 200, 'redis ready', 15_000)
  const ws = await connect(`${a.wsUrl}/chat/x`)
  t.after(() => ws.terminate())
  await waitFor(async () => (await list(b)).total === 1, 'the connection to be listed on b')

  redis.kill('SIGKILL')
  await waitFor(async () => (await fetch(`${a.url}/ready`)).status === 503, '/ready to turn 503')
  // The open connection keeps relaying.
  for (let i = 0; i < 5; i++) {
    ws.send(`m${i}`)
    assert.equal((await nextMessage(ws)).data.toString(), `m${i}`)
  }
  const partial = await list(a)
  assert.equal(partial.partial, true)
  assert.equal(partial.total, 1)
  // New handshakes follow failOpen (default true).
  const extra = await connect(`${a.wsUrl}/chat/y`)
  extra.terminate()

  // Redis returns empty: both instances republish, and b lists a's connection again.
  redis = startRedis()
  await waitFor(async () => (await fetch(`${a.url}/ready`)).status === 200 && (await fetch(`${b.url}/ready`)).status === 200, 'redis back', 15_000)
  await waitFor(async () => { const p = await list(b); return p.partial !== true && p.total === 1 }, 'the connection to be republished')
})

test('--workers 2: two processes share the port and, through Redis, one registry; SIGTERM stops both', { timeout: 90_000 }, async (t) => {
  if (!await needRedis(t)) return
  const prefix = testPrefix(t)
  const up = await startUpstream()
  t.after(() => up.close())
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-workers-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'gateway.json'), JSON.stringify(config(up, prefix)))
  const port = await freePort()
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/gateway/cli.ts', '--config', join(dir, 'gateway.json'), '--workers', '2'], {
    cwd: process.cwd(),
    env: { PATH: process.env.PATH, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn' },
    stdio: 'ignore'
  })
  t.after(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const base = `http://127.0.0.1:${port}`
  const sockets: WebSocket[] = []
  t.after(() => { for (const s of sockets) s.terminate() })
  // Both workers are up once connections land on two instance ids (the primary hands them out in turn).
  let ids = new Set<string>()
  await waitFor(async () => {
    try {
      sockets.push(await connect(`ws://127.0.0.1:${port}/chat`))
      const page = await (await fetch(`${base}/admin/connections?limit=1000`, { headers: auth })).json() as Page
      ids = new Set(page.connections.map((c) => c.instanceId))
      return ids.size === 2 && page.total === sockets.length
    } catch { return false }
  }, 'connections on both workers, listed by either', 60_000)
  assert.equal(ids.size, 2)
  child.kill('SIGTERM')
  assert.equal(await exited, 0)
})

test('Redis unreachable with failOpen false: new handshakes get 503 even on a route without limits; true lets them through', async (t) => {
  const port = await freePort()
  const up = await startUpstream()
  t.after(() => up.close())
  for (const failOpen of [false, true]) {
    const gw = await startGateway({ redis: { url: `redis://127.0.0.1:${port}`, failOpen }, routes: [{ prefix: '/chat', upstream: up.url }] })
    t.after(() => gw.close())
    if (failOpen) {
      (await connect(`${gw.wsUrl}/chat`)).terminate()
    } else {
      await assert.rejects(connect(`${gw.wsUrl}/chat`), (e: HandshakeError) => {
        assert.equal(e.status, 503)
        assert.equal(JSON.parse(e.body).code, 'GW_ERR_CLUSTER_UNAVAILABLE')
        return true
      })
    }
    assert.equal((await fetch(`${gw.url}/ready`)).status, 503)
  }
})

test('a push through another instance to a client that does not read: 503 GW_ERR_CLIENT_BUSY there too', { timeout: 60_000 }, async (t) => {
  if (!await needRedis(t)) return
  const prefix = testPrefix(t)
  const up = await startUpstream()
  t.after(() => up.close())
  const a = await startGateway(config(up, prefix, REDIS_URL, { websocket: { pingInterval: 60_000, pongTimeout: 1000, highWaterMark: '16kb' } }))
  t.after(() => a.close())
  const b = await startGateway(config(up, prefix))
  t.after(() => b.close())
  await waitFor(async () => (await fetch(`${a.url}/ready`)).status === 200 && (await fetch(`${b.url}/ready`)).status === 200, 'redis ready')
  const onA = await connect(`${a.wsUrl}/chat/slow`)
  t.after(() => onA.terminate())
  await waitFor(async () => (await list(b)).total === 1, 'B to list A\'s connection')
  const id = (await list(b)).connections[0].id
  ;(onA as unknown as { _socket: { pause: () => void } })._socket.pause()
  const text = 'y'.repeat(256 * 1024)
  let status = 202
  for (let i = 0; i < 400 && status === 202; i++) {
    const res = await fetch(`${b.url}/admin/connections/${id}/messages`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ text }) })
    status = res.status
    const body = await res.json() as { code?: string }
    if (status !== 202) assert.equal(body.code, 'GW_ERR_CLIENT_BUSY')
  }
  assert.equal(status, 503)
  // A client that never reads would hold A's shutdown until drainTimeout.
  onA.terminate()
})
