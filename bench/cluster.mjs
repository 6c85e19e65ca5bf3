#!/usr/bin/env node
// `npm run bench:cluster -- [--size N] [--instances K]`: the cluster registry at scale, simulated.
// A private redis-server (started here, on a free port, in a temp dir) and K worker threads, each
// one gateway instance: the real RedisRegistry on its own ioredis client, holding size/K synthetic
// connections (no sockets) whose counters move all the time (half of them have traffic, every
// connection gets a pong per pingInterval). One more instance with no connections, in the main
// thread, is the admin side. Prints:
//   - Redis memory per connection (used_memory after loading, minus before, divided by size);
//   - Redis write bytes/s at steady state, per instance (total_net_input_bytes, no churn);
//   - under churn: Redis commands per open or close;
//   - the longest event-loop block of each instance (monitorEventLoopDelay, 1 ms resolution);
//   - GET /admin/connections-like listings (limit 50): p50/p99 for each filter (none, route,
//     user) at random offsets that paging reaches, each checked for an exact total;
//   - find, close and push by id of another instance's connection: p50/p99;
//   - reap time: one instance's thread is terminated (no clean stop) and the time until its
//     connections leave the listing and its keys leave Redis is measured.
//
// `--mode real`: 3 gateway processes (tsx, one Redis), a few thousand real WebSocket connections
// through them to one echo upstream, and the admin API of each answering the same listing,
// totals, find, push and close.
//
// Usage: npm run bench:cluster -- [--mode sim|real] [--size N] [--instances K] [--steady SEC]
//        [--samples N] [--ping MS] [--registry PATH] [--conns N]
// `--registry` loads another RedisRegistry (e.g. an older tree's src/registry/redis-registry.ts)
// into the same harness, for before/after figures.
import { register } from 'tsx/esm/api'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { randomUUID } from 'node:crypto'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { Redis } from 'ioredis'
import { freePort, sleep } from './util.mjs'

// The registry is TypeScript: loaded through tsx, in the main thread and in every worker.
register()
const self = fileURLToPath(import.meta.url)
const root = fileURLToPath(new URL('..', import.meta.url))
const ROUTES = ['/chat', '/feed', '/games', '/admin-ws']
const PAGE = 50

const redisOptions = { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 2000, lazyConnect: true }

// ------------------------------------------------------------------ one instance (a worker thread)

class SimBridge {
  constructor (id, route, userId, instanceId, now) {
    this.info = { id, route, userId, instanceId, path: route + '/room', clientIp: '10.1.2.3', subprotocol: null, upstream: 'http://10.0.0.7:9001' }
    this.connectedAt = now
    this.lastActivityAt = now
    this.lastPongAt = 0
    this.rttMs = null
    this.messagesFromClient = 0
    this.messagesToClient = 0
    this.bytesFromClient = 0
    this.bytesToClient = 0
    this.closed = false
    this.received = 0
  }

  toJSON () {
    const i = this.info
    return {
      id: i.id, route: i.route, path: i.path, clientIp: i.clientIp, userId: i.userId, subprotocol: i.subprotocol,
      upstream: i.upstream, instanceId: i.instanceId, connectedAt: new Date(this.connectedAt).toISOString(),
      lastActivityAt: new Date(this.lastActivityAt).toISOString(),
      lastPongAt: this.lastPongAt === 0 ? null : new Date(this.lastPongAt).toISOString(), rttMs: this.rttMs,
      messagesFromClient: this.messagesFromClient, messagesToClient: this.messagesToClient,
      bytesFromClient: this.bytesFromClient, bytesToClient: this.bytesToClient
    }
  }

  close () { this.closed = true; this.onClose?.() }
  trySend () { if (this.closed) return 'closed'; this.received++; return 'sent' }
  send () { return this.trySend() === 'sent' }
}

async function instanceMain () {
  const { url, prefix, count, index, registryPath, ping, userBase, instances } = workerData
  const { RedisRegistry } = await import(pathToFileURL(registryPath).href)
  const instanceId = `sim-${index}-${randomUUID().slice(0, 6)}`
  const redis = new Redis(url, redisOptions)
  redis.on('error', () => {})
  await redis.connect()
  // Commands this instance sends (pipelines and transactions included: each goes through sendCommand).
  let sent = 0
  const sendCommand = redis.sendCommand.bind(redis)
  redis.sendCommand = (...a) => { sent++; return sendCommand(...a) }
  const warnings = []
  const log = { warn: (o, msg) => { if (warnings.length < 5) warnings.push(`${msg} ${JSON.stringify(o)}`) }, info: () => {} }
  const registry = new RedisRegistry({ redis, prefix, instanceId, pingInterval: ping, log })
  // The registry's own blocks: the synchronous part of each call into it (timers, bus messages and
  // the bridge's add/remove all enter through these). The event-loop delay is printed too, but on
  // a shared 2-core machine it also counts the time a thread waits for a core.
  let maxSync = 0
  for (const name of ['flush', 'onMessage', 'add', 'remove']) {
    const f = registry[name]
    if (typeof f !== 'function') continue
    registry[name] = function (...a) {
      const t = performance.now()
      try { return f.apply(this, a) } finally { maxSync = Math.max(maxSync, performance.now() - t) }
    }
  }
  await registry.start()
  const bridges = []
  const open = (i) => {
    const g = index + i * instances
    const b = new SimBridge(randomUUID(), ROUTES[g % ROUTES.length], g % 5 === 4 ? null : `user-${userBase + Math.floor(g / 4)}`, instanceId, Date.now())
    b.onClose = () => { registry.remove(b) }
    registry.add(b)
    return b
  }
  const l0 = performance.now()
  for (let i = 0; i < count; i++) {
    bridges.push(open(i))
    if (i % 1000 === 999) await new Promise((resolve) => setImmediate(resolve))
    if (index === 0 && i % 10000 === 9999) console.log(`  instance 0: ${i + 1} connections opened after ${((performance.now() - l0) / 1000).toFixed(1)} s`)
  }
  let next = count
  const loop = monitorEventLoopDelay({ resolution: 1 })
  let traffic = null
  let churn = null
  let churned = 0
  parentPort.on('message', async (m) => {
    switch (m.op) {
      case 'traffic': {
        // Every 20 ms: 1/50 of the busy half gets a message each way; 1/(ping/20) of all get a pong.
        let tick = 0
        const ticksPerPing = Math.max(1, Math.round(ping / 20))
        traffic = setInterval(() => {
          const now = Date.now()
          const busy = bridges.length >> 1
          for (let k = 0; k < Math.ceil(busy / 50); k++) {
            const b = bridges[(Math.random() * busy) | 0]
            b.messagesFromClient++; b.messagesToClient++; b.bytesFromClient += 120; b.bytesToClient += 240; b.lastActivityAt = now
          }
          const slice = Math.ceil(bridges.length / ticksPerPing)
          const from = (tick++ % ticksPerPing) * slice
          for (let k = from; k < Math.min(bridges.length, from + slice); k++) { bridges[k].lastPongAt = now; bridges[k].rttMs = 0.4 }
        }, 20)
        loop.reset(); loop.enable()
        parentPort.postMessage({ op: 'ok' })
        break
      }
      case 'churn': {
        // m.rate opens and as many closes per second, in 10 ms steps.
        churned = 0
        const per = Math.max(1, Math.round(m.rate / 100))
        churn = setInterval(() => {
          for (let k = 0; k < per; k++) {
            const j = (Math.random() * bridges.length) | 0
            const old = bridges[j]
            if (old.closed) continue
            old.close()
            bridges[j] = open(next++)
            churned += 2
          }
        }, 10)
        parentPort.postMessage({ op: 'ok' })
        break
      }
      case 'sent': parentPort.postMessage({ op: 'sent', sent }); break
      case 'pause': clearInterval(traffic); traffic = null; parentPort.postMessage({ op: 'ok' }); break
      case 'isolated': {
        // Alone on the machine (the others paused): churn at m.rate for a second while the main
        // thread pages through this instance's share; the longest registry block meanwhile.
        maxSync = 0
        const per = Math.max(1, Math.round(m.rate / 100))
        const t = setInterval(() => {
          for (let k = 0; k < per; k++) {
            const j = (Math.random() * bridges.length) | 0
            if (bridges[j].closed) continue
            bridges[j].close()
            bridges[j] = open(next++)
          }
        }, 10)
        setTimeout(() => { clearInterval(t); parentPort.postMessage({ op: 'isolated', syncMs: maxSync }); maxSync = 0 }, 1000)
        break
      }
      case 'stop-churn': clearInterval(churn); churn = null; parentPort.postMessage({ op: 'ok', churned }); break
      case 'loop': parentPort.postMessage({ op: 'loop', maxMs: loop.max / 1e6, p99Ms: loop.percentile(99) / 1e6, syncMs: maxSync }); loop.reset(); maxSync = 0; break
      case 'ids': {
        // Distinct open connections (a second close of one would fail, rightly).
        const picked = new Set()
        while (picked.size < Math.min(m.n, bridges.length)) picked.add(bridges[(Math.random() * bridges.length) | 0])
        parentPort.postMessage({ op: 'ids', ids: [...picked].filter((b) => !b.closed).map((b) => b.info.id), instanceId, live: bridges.filter((b) => !b.closed).length })
        break
      }
      case 'users': parentPort.postMessage({ op: 'users', users: bridges.slice(0, m.n).map((b) => b.info.userId).filter((u) => u !== null) }); break
      case 'stop': clearInterval(traffic); await registry.stop?.(); redis.disconnect(); parentPort.postMessage({ op: 'ok' }); break
    }
  })
  parentPort.postMessage({ op: 'loaded', instanceId, warnings })
}

// ------------------------------------------------------------------ the harness (main thread)

function ask (worker, msg, op = 'ok') {
  return new Promise((resolve) => {
    const on = (m) => { if (m.op === op) { worker.off('message', on); resolve(m) } }
    worker.on('message', on)
    worker.postMessage(msg)
  })
}

function pct (xs, p) {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]
}

const ms = (x) => `${x.toFixed(x < 10 ? 2 : 1)} ms`
const fmtList = (xs) => xs.map((x) => x.toFixed(1)).join(', ')

async function info (redis, section) {
  const out = {}
  for (const line of (await redis.info(section)).split('\r\n')) {
    const i = line.indexOf(':')
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1)
  }
  return out
}

async function startRedis () {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-bench-redis-'))
  const port = await freePort()
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' })
  const url = `redis://127.0.0.1:${port}`
  const end = Date.now() + 10_000
  let probe
  for (;;) {
    probe = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 })
    probe.on('error', () => {})
    try { await probe.connect(); await probe.ping(); break } catch { probe.disconnect(); if (Date.now() > end) throw new Error('redis-server did not start') }
    await sleep(100)
  }
  return { url, redis: probe, stop: () => { probe.disconnect(); proc.kill('SIGKILL'); rmSync(dir, { recursive: true, force: true }) } }
}

async function simulate (args) {
  const size = Number(args.size)
  const k = Number(args.instances)
  const ping = Number(args.ping)
  const samples = Number(args.samples)
  const registryPath = resolve(args.registry)
  const prefix = 'bench:'
  const server = await startRedis()
  const redis = server.redis
  const report = { size, instances: k, registry: args.registry, ping }
  const workers = []
  try {
    const base = Number((await info(redis, 'memory')).used_memory)
    const per = Math.floor(size / k)
    const t0 = performance.now()
    for (let i = 0; i < k; i++) {
      const w = new Worker(self, { workerData: { role: 'instance', url: server.url, prefix, count: per, index: i, registryPath, ping, userBase: 0, instances: k } })
      w.on('error', (err) => { console.error('instance failed:', err) })
      workers.push(w)
    }
    const loaded = await Promise.all(workers.map((w) => new Promise((resolve) => w.once('message', resolve))))
    const ids = loaded.map((m) => m.instanceId)
    for (const m of loaded) for (const w of m.warnings) console.log(`instance ${m.instanceId} warned while loading: ${w}`)
    console.log(`instances loaded their connections after ${((performance.now() - t0) / 1000).toFixed(1)} s`)
    const { RedisRegistry } = await import(pathToFileURL(registryPath).href)
    const adminRedis = new Redis(server.url, redisOptions)
    adminRedis.on('error', () => {})
    await adminRedis.connect()
    const admin = new RedisRegistry({ redis: adminRedis, prefix, instanceId: `sim-admin-${randomUUID().slice(0, 6)}`, pingInterval: ping })
    await admin.start()
    const expected = per * k
    // Loaded once every instance's connections are listed.
    const loadDeadline = performance.now() + 600_000
    for (let tries = 0; ; tries++) {
      const page = await admin.search({ limit: 1 })
      if (page.total === expected) break
      if (performance.now() > loadDeadline) throw new Error(`listing total ${page.total}, expected ${expected}`)
      if (tries % 40 === 39) console.log(`  ... ${page.total} of ${expected} written after ${((performance.now() - t0) / 1000).toFixed(0)} s`)
      await sleep(250)
    }
    report.loadSeconds = (performance.now() - t0) / 1000
    await sleep(Math.min(2000, ping))
    const mem = Number((await info(redis, 'memory')).used_memory)
    report.redisBytesPerConnection = (mem - base) / expected
    console.log(`loaded ${expected} connections on ${k} instances in ${report.loadSeconds.toFixed(1)} s; Redis memory ${((mem - base) / 1048576).toFixed(1)} MiB = ${report.redisBytesPerConnection.toFixed(0)} B per connection`)

    // Steady state: traffic on, no churn, no listings.
    await Promise.all(workers.map((w) => ask(w, { op: 'traffic' })))
    await sleep(2000)
    await Promise.all(workers.map((w) => ask(w, { op: 'loop' }, 'loop')))
    const steady = Number(args.steady) * 1000
    const in0 = Number((await info(redis, 'stats')).total_net_input_bytes)
    const s0 = performance.now()
    await sleep(steady)
    const in1 = Number((await info(redis, 'stats')).total_net_input_bytes)
    const secs = (performance.now() - s0) / 1000
    // The admin instance's own heartbeat is in there too: counted as one more instance.
    report.writeBytesPerSecondPerInstance = (in1 - in0) / secs / (k + 1)
    report.writeBytesPerSecondTotal = (in1 - in0) / secs
    const loops = await Promise.all(workers.map((w) => ask(w, { op: 'loop' }, 'loop')))
    report.loopMaxMsSteady = loops.map((l) => l.maxMs)
    report.registryBlockMsSteady = loops.map((l) => l.syncMs)
    console.log(`steady state: Redis writes ${(report.writeBytesPerSecondTotal / 1024).toFixed(1)} KiB/s in all = ${(report.writeBytesPerSecondPerInstance / 1024).toFixed(2)} KiB/s per instance`)
    console.log(`  longest registry block per instance: ${fmtList(report.registryBlockMsSteady)} ms (event-loop delay max, CPU waits included: ${fmtList(report.loopMaxMsSteady)} ms)`)

    // Churn: opens and closes, Redis commands per open/close.
    const rate = Number(args.churn)
    const sentBy = async () => (await Promise.all(workers.map((w) => ask(w, { op: 'sent' }, 'sent')))).reduce((n, m) => n + m.sent, 0)
    const c0 = await sentBy()
    const b0 = Number((await info(redis, 'stats')).total_net_input_bytes)
    const ch0 = performance.now()
    await Promise.all(workers.map((w) => ask(w, { op: 'churn', rate })))
    await sleep(5000)
    const done = await Promise.all(workers.map((w) => ask(w, { op: 'stop-churn' })))
    await sleep(Math.min(2000, ping))
    const churnSecs = (performance.now() - ch0) / 1000
    const calls = await sentBy() - c0
    const bytes = Number((await info(redis, 'stats')).total_net_input_bytes) - b0
    const events = done.reduce((n, d) => n + d.churned, 0)
    // Heartbeats and reaping checks run meanwhile and are counted in.
    report.churn = { eventsPerSecond: events / churnSecs, commandsPerOpenOrClose: calls / Math.max(1, events), bytesPerOpenOrClose: bytes / Math.max(1, events) }
    const churnLoops = await Promise.all(workers.map((w) => ask(w, { op: 'loop' }, 'loop')))
    report.loopMaxMsChurn = churnLoops.map((l) => l.maxMs)
    report.registryBlockMsChurn = churnLoops.map((l) => l.syncMs)
    console.log(`churn: ${report.churn.eventsPerSecond.toFixed(0)} opens+closes/s, ${report.churn.commandsPerOpenOrClose.toFixed(3)} commands sent to Redis and ${report.churn.bytesPerOpenOrClose.toFixed(0)} bytes written per open or close (heartbeats included)`)
    console.log(`  longest registry block per instance: ${fmtList(report.registryBlockMsChurn)} ms (event-loop delay max: ${fmtList(report.loopMaxMsChurn)} ms)`)

    // Listings.
    const users = (await ask(workers[1 % k], { op: 'users', n: 20 }, 'users')).users
    const listing = {}
    for (const [name, filter] of [['none', {}], ['route', { route: ROUTES[1] }], ['user', { user: users[0] }]]) {
      const first = await admin.search({ ...filter, limit: PAGE })
      const total = first.total
      const times = []
      let exact = true
      for (let i = 0; i < samples; i++) {
        const offset = Math.floor(Math.random() * Math.max(1, Math.ceil(total / PAGE))) * PAGE
        const a = performance.now()
        const page = await admin.search({ ...filter, limit: PAGE, offset })
        times.push(performance.now() - a)
        if (page.total !== total || page.partial === true) exact = false
      }
      // Order stable across pages: two consecutive pages share no id, and page 0 read twice is the same.
      const p0 = await admin.search({ ...filter, limit: PAGE, offset: 0 })
      const p1 = await admin.search({ ...filter, limit: PAGE, offset: PAGE })
      const again = await admin.search({ ...filter, limit: PAGE, offset: 0 })
      const seen = new Set(p0.connections.map((c) => c.id))
      const stable = p1.connections.every((c) => !seen.has(c.id)) && again.connections.map((c) => c.id).join() === p0.connections.map((c) => c.id).join()
      listing[name] = { total, p50: pct(times, 50), p99: pct(times, 99), exact, stable }
      console.log(`listing limit=${PAGE} filter=${name}: total ${total}, p50 ${ms(pct(times, 50))}, p99 ${ms(pct(times, 99))} (${samples} samples), totals ${exact ? 'exact' : 'NOT exact'}, order ${stable ? 'stable' : 'NOT stable'}`)
    }
    report.listing = listing

    // One instance at a time, the others paused: its longest registry block under churn while
    // listings page through its share, and those listings' latency. On a machine with fewer cores
    // than instances, this separates the registry's own work from the time threads wait for a core.
    await Promise.all(workers.map((w) => ask(w, { op: 'pause' })))
    const order = [...ids].sort()
    const alone = []
    const aloneTimes = []
    for (let i = 0; i < k; i++) {
      const start = order.indexOf(ids[i]) * per
      const done = ask(workers[i], { op: 'isolated', rate }, 'isolated')
      let finished = false
      void done.then(() => { finished = true })
      while (!finished) {
        const a = performance.now()
        await admin.search({ limit: PAGE, offset: start + Math.floor(Math.random() * (per - PAGE)) })
        aloneTimes.push(performance.now() - a)
      }
      alone.push((await done).syncMs)
    }
    report.registryBlockMsAlone = alone
    report.listingAlone = { samples: aloneTimes.length, p50: pct(aloneTimes, 50), p99: pct(aloneTimes, 99) }
    console.log(`one instance at a time (others paused), ${rate} opens/s and as many closes while listings page through its share:`)
    console.log(`  longest registry block per instance: ${fmtList(alone)} ms; listing limit=${PAGE} p50 ${ms(pct(aloneTimes, 50))}, p99 ${ms(pct(aloneTimes, 99))} (${aloneTimes.length} samples)`)

    // By id (connections of instance 1, asked from the admin instance).
    const { ids: sample } = await ask(workers[1 % k], { op: 'ids', n: samples }, 'ids')
    const byId = { find: [], push: [], close: [] }
    let okAll = true
    for (const id of sample) {
      let a = performance.now()
      const v = await admin.find(id)
      byId.find.push(performance.now() - a)
      a = performance.now()
      const pushed = await admin.sendById(id, 'hello', false)
      byId.push.push(performance.now() - a)
      a = performance.now()
      const closed = await admin.closeById(id, 1008, 'bench')
      byId.close.push(performance.now() - a)
      if (v?.id !== id || !pushed || !closed) okAll = false
    }
    report.byId = Object.fromEntries(Object.entries(byId).map(([n, xs]) => [n, { p50: pct(xs, 50), p99: pct(xs, 99) }]))
    console.log(`by id (${sample.length} ids of another instance): ${Object.entries(report.byId).map(([n, r]) => `${n} p50 ${ms(r.p50)} p99 ${ms(r.p99)}`).join('; ')}${okAll ? '' : ' (SOME FAILED)'}`)
    const listLoops = await Promise.all(workers.map((w) => ask(w, { op: 'loop' }, 'loop')))
    report.loopMaxMsListing = listLoops.map((l) => l.maxMs)
    report.registryBlockMsListing = listLoops.map((l) => l.syncMs)
    console.log(`while serving listings and commands: longest registry block per instance ${fmtList(report.registryBlockMsListing)} ms (event-loop delay max: ${fmtList(report.loopMaxMsListing)} ms)`)

    // Reap: instance 0 dies without a clean stop.
    // Settled first: the last closes above are written within a flush or two.
    await sleep(1000)
    const { live: dying } = await ask(workers[0], { op: 'ids', n: 0 }, 'ids')
    const before = (await admin.search({ limit: 1 })).total
    const r0 = performance.now()
    await workers[0].terminate()
    let gone = NaN
    const deadline = r0 + 4 * ping + 10_000
    let lastTotal = before
    while (performance.now() < deadline) {
      lastTotal = (await admin.search({ limit: 1 })).total
      if (lastTotal === before - dying) { gone = (performance.now() - r0) / 1000; break }
      await sleep(100)
    }
    if (Number.isNaN(gone)) console.log(`reap: listing total ${lastTotal}, expected ${before - dying} (${before} - ${dying})`)
    let keysGone = NaN
    while (performance.now() < deadline) {
      const left = (await redis.keys(`*${ids[0]}*`)).length
      if (left === 0) { keysGone = (performance.now() - r0) / 1000; break }
      await sleep(100)
    }
    report.reap = { listingSeconds: gone, keysSeconds: keysGone, limitSeconds: 3 * ping / 1000 }
    console.log(`reap: a dead instance's ${dying} connections left the listing after ${gone.toFixed(1)} s and its keys left Redis after ${keysGone.toFixed(1)} s (limit: 3 pingIntervals = ${(3 * ping / 1000).toFixed(0)} s)`)

    await Promise.all(workers.slice(1).map((w) => ask(w, { op: 'stop' })))
    await admin.stop()
    adminRedis.disconnect()
    console.log(JSON.stringify(report))
  } finally {
    for (const w of workers) await w.terminate()
    server.stop()
  }
}

// ------------------------------------------------------------------ main

if (!isMainThread && workerData?.role === 'instance') {
  await instanceMain()
} else if (isMainThread) {
  const { values: args } = parseArgs({
    options: {
      mode: { type: 'string', default: 'sim' },
      size: { type: 'string', default: '100000' },
      instances: { type: 'string', default: '4' },
      steady: { type: 'string', default: '10' },
      samples: { type: 'string', default: '200' },
      ping: { type: 'string', default: '5000' },
      churn: { type: 'string', default: '200' },
      conns: { type: 'string', default: '3000' },
      registry: { type: 'string', default: join(root, 'src/registry/redis-registry.ts') },
      help: { type: 'boolean', default: false }
    }
  })
  if (args.help) {
    console.log('npm run bench:cluster -- [--mode sim|real] [--size N] [--instances K] [--steady SEC] [--samples N] [--ping MS] [--churn OPENS_PER_S] [--registry PATH] [--conns N]')
  } else if (args.mode === 'real') {
    const { realRun } = await import('./cluster-real.mjs')
    await realRun(args, { startRedis, pct })
  } else {
    await simulate(args)
  }
  process.exit(process.exitCode ?? 0)
}
