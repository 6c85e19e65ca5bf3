// `npm run bench:cluster -- --mode real [--conns N]`: the cluster registry with real processes.
// A private redis-server, an echo upstream (in this process), 3 gateway processes (the source,
// through tsx) sharing it, and N real WebSocket clients (default 3,000) spread over them, a third
// anonymous, the rest with an HS256 token naming one of N/3 users. Then, through the admin API of
// the gateways: the listing's total on each, paging through everything (each connection once, the
// same order from every gateway), totals per instance and route, listing p50/p99 per filter,
// find / push / close by id through a gateway that does not hold the connection, and the time a
// gateway killed with SIGKILL takes to leave the totals.
import { spawn } from 'node:child_process'
import { createHmac, randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import WebSocket, { WebSocketServer } from 'ws'
import { cleanEnv, freePort, sleep, waitHttp } from './util.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const TOKEN = 'bench-cluster-admin-token-0123'
const SECRET = 'bench-cluster-jwt-secret-0123456789'
const PING = 2000
const auth = { authorization: `Bearer ${TOKEN}` }

function jwt (sub) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url')
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, exp: Math.floor(Date.now() / 1000) + 3600 })}`
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`
}

async function api (base, path, init = {}) {
  const r = await fetch(`${base}/admin${path}`, { ...init, headers: { ...auth, ...(init.headers ?? {}) } })
  const text = await r.text()
  return { status: r.status, body: text === '' ? null : JSON.parse(text) }
}

async function until (check, ms, what) {
  const end = Date.now() + ms
  for (;;) {
    if (await check()) return
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

/**
 * @param {Record<string, string>} args the parsed flags (conns)
 * @param {{ startRedis: () => Promise<{ url: string, stop: () => void }>, pct: (xs: number[], p: number) => number }} tools
 */
export async function realRun (args, { startRedis, pct }) {
  const n = Number(args.conns)
  const redis = await startRedis()
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-bench-cluster-'))
  const upstream = http.createServer()
  const wss = new WebSocketServer({ server: upstream })
  wss.on('connection', (ws) => { ws.on('message', (d, isBinary) => ws.send(d, { binary: isBinary })); ws.on('error', () => {}) })
  await new Promise((resolve) => upstream.listen(0, '127.0.0.1', resolve))
  const upUrl = `http://127.0.0.1:${upstream.address().port}`
  const gateways = []
  const clients = []
  try {
    for (let i = 0; i < 3; i++) {
      const port = await freePort()
      const config = join(dir, `gw${i}.json`)
      writeFileSync(config, JSON.stringify({
        server: { host: '127.0.0.1', port },
        auth: { jwt: { secret: SECRET } },
        admin: { token: TOKEN },
        redis: { url: redis.url, keyPrefix: 'benchreal:' },
        websocket: { pingInterval: PING, pongTimeout: 2000 },
        routes: [{ prefix: '/chat', upstream: upUrl, auth: 'optional' }, { prefix: '/feed', upstream: upUrl, auth: 'optional' }]
      }))
      const proc = spawn(process.execPath, ['--import', 'tsx', join(root, 'src/gateway/cli.ts')], { cwd: root, env: cleanEnv({ GATEWAY_CONFIG: config, LOG_LEVEL: 'warn' }), stdio: ['ignore', 'ignore', 'inherit'] })
      gateways.push({ proc, base: `http://127.0.0.1:${port}`, ws: `ws://127.0.0.1:${port}` })
    }
    for (const g of gateways) await waitHttp(`${g.base}/ready`, 30_000, () => g.proc.exitCode === null)
    await until(async () => (await Promise.all(gateways.map((g) => fetch(`${g.base}/ready`)))).every((r) => r.status === 200), 10_000, 'redis ready')

    // Connect: 200 handshakes at a time.
    const users = Math.max(1, Math.floor(n / 3))
    for (let i = 0; i < n; i += 200) {
      await Promise.all(Array.from({ length: Math.min(200, n - i) }, (_, k) => {
        const j = i + k
        const g = j % 3
        const route = j % 2 === 0 ? '/chat' : '/feed'
        const user = j % 3 === 2 ? null : `user-${j % users}`
        return new Promise((resolve, reject) => {
          const ws = new WebSocket(`${gateways[g].ws}${route}/c${j}`, user === null ? {} : { headers: { authorization: `Bearer ${jwt(user)}` } })
          ws.once('open', () => { clients.push({ ws, j, g, route, user }); resolve() })
          ws.once('error', reject)
        })
      }))
    }
    // Relays work: every client gets its echo.
    await Promise.all(clients.map((c) => new Promise((resolve) => { c.ws.once('message', resolve); c.ws.send('ping') })))
    console.log(`real run: ${n} WebSocket connections over 3 gateway processes, each echoed`)

    await until(async () => (await Promise.all(gateways.map((g) => api(g.base, '/connections?limit=1')))).every((r) => r.body.total === n), 10_000, 'every gateway to list every connection')
    console.log(`  every gateway lists total ${n}`)

    // Paging through everything from gateway 0, and page by page the same from gateway 2.
    const seen = []
    for (let offset = 0; offset < n; offset += 500) {
      const page = (await api(gateways[0].base, `/connections?limit=500&offset=${offset}`)).body
      seen.push(...page.connections.map((c) => c.id))
    }
    const other = []
    for (let offset = 0; offset < n; offset += 500) other.push(...(await api(gateways[2].base, `/connections?limit=500&offset=${offset}`)).body.connections.map((c) => c.id))
    const unique = new Set(seen).size === n && seen.join() === other.join()
    console.log(`  paging: ${seen.length} rows, ${new Set(seen).size} distinct, same order from another gateway: ${seen.join() === other.join()}`)

    const totals = (await api(gateways[1].base, '/connections/totals')).body
    const byInstance = totals.instances.map((i) => i.connections).sort((a, b) => a - b)
    const expected = [0, 1, 2].map((g) => clients.filter((c) => c.g === g).length).sort((a, b) => a - b)
    const totalsOk = totals.total === n && byInstance.join() === expected.join() && totals.routes['/chat'] === clients.filter((c) => c.route === '/chat').length
    console.log(`  totals: ${JSON.stringify({ total: totals.total, routes: totals.routes, perInstance: byInstance })} ${totalsOk ? '(exact)' : '(WRONG)'}`)

    const sampleUser = clients.find((c) => c.user !== null).user
    const wantUser = clients.filter((c) => c.user === sampleUser).length
    for (const [q, want] of [['', n], ['route=/chat&', clients.filter((c) => c.route === '/chat').length], [`user=${sampleUser}&`, wantUser]]) {
      const times = []
      let exact = true
      for (let i = 0; i < 100; i++) {
        const offset = Math.floor(Math.random() * Math.ceil(want / 50)) * 50
        const t0 = performance.now()
        const page = (await api(gateways[i % 3].base, `/connections?${q}limit=50&offset=${offset}`)).body
        times.push(performance.now() - t0)
        if (page.total !== want) exact = false
      }
      console.log(`  GET /admin/connections?${q}limit=50 (HTTP, random offsets): p50 ${pct(times, 50).toFixed(1)} ms, p99 ${pct(times, 99).toFixed(1)} ms, total ${exact ? 'exact' : 'NOT exact'} (${want})`)
    }

    // By id through a gateway that does not hold the connection.
    const all = []
    for (let offset = 0; offset < n; offset += 1000) all.push(...(await api(gateways[0].base, `/connections?limit=1000&offset=${offset}`)).body.connections)
    const idOf = new Map(all.map((c) => [c.path, c]))
    const find = []
    const push = []
    let byIdOk = true
    for (let i = 0; i < 100; i++) {
      const c = clients[(i * 7919) % clients.length]
      const view = idOf.get(`${c.route}/c${c.j}`)
      const via = gateways[(c.g + 1) % 3]
      let t0 = performance.now()
      const found = await api(via.base, `/connections/${view.id}`)
      find.push(performance.now() - t0)
      const text = `push-${randomUUID()}`
      const got = new Promise((resolve) => { const on = (d) => { if (String(d) === text) { c.ws.off('message', on); resolve() } }; c.ws.on('message', on) })
      t0 = performance.now()
      const sent = await api(via.base, `/connections/${view.id}/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text }) })
      push.push(performance.now() - t0)
      await got
      if (found.status !== 200 || found.body.id !== view.id || sent.status !== 202) byIdOk = false
    }
    console.log(`  by id through another gateway: find p50 ${pct(find, 50).toFixed(1)} ms p99 ${pct(find, 99).toFixed(1)} ms; push p50 ${pct(push, 50).toFixed(1)} ms p99 ${pct(push, 99).toFixed(1)} ms ${byIdOk ? '(all delivered)' : '(SOME FAILED)'}`)
    const victim = clients.find((c) => c.g !== 0)
    const closedWith = new Promise((resolve) => victim.ws.once('close', (code) => resolve(code)))
    const del = await api(gateways[0].base, `/connections/${idOf.get(`${victim.route}/c${victim.j}`).id}`, { method: 'DELETE' })
    console.log(`  close through another gateway: ${del.status}, client closed with ${await closedWith}`)

    // A gateway killed: its connections leave the totals.
    const dead = gateways[2]
    const lost = clients.filter((c) => c.g === 2 && c.ws.readyState === WebSocket.OPEN).length
    const left = clients.filter((c) => c.g !== 2 && c.ws.readyState === WebSocket.OPEN).length
    const t0 = performance.now()
    dead.proc.kill('SIGKILL')
    await until(async () => (await api(gateways[0].base, '/connections/totals')).body.total === left, 4 * PING + 10_000, 'the dead gateway to be reaped')
    console.log(`  a gateway killed with SIGKILL: its ${lost} connections left the totals after ${((performance.now() - t0) / 1000).toFixed(1)} s (3 pingIntervals = ${(3 * PING / 1000).toFixed(0)} s)`)
    if (!unique || !totalsOk || !byIdOk) process.exitCode = 1
  } finally {
    for (const c of clients) c.ws.terminate()
    for (const g of gateways) if (g.proc.exitCode === null) g.proc.kill('SIGKILL')
    wss.close()
    upstream.close()
    redis.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}
