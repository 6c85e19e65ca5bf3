#!/usr/bin/env node
// `npm run bench:features`: what the gateway's optional features cost per message and per
// handshake, in one run. Reuses bench/loadgen.mjs, bench/upstream.mjs and bench/proc.mjs like
// bench/run.mjs does (same pinning: gateways on the first allowed CPU, load generator + echo
// upstream on the second), and compares, with 50 connections and 64-byte round trips:
//   baseline   one route /ws, admin token (registry + /metrics on), LOG_LEVEL=info
//   ratelimit  baseline + rateLimit.messages { rate: 100000, burst: 100000 } (never trips)
//   redis      baseline + redis { url, keyPrefix: gwbench:<random>: } (cluster mode)
//   direct     client -> echo upstream, no proxy (CPU = the upstream's own, for scale)
// and handshakes/s + CPU µs per handshake for baseline vs a route with `auth: required` (HS256)
// and vs `authorize` (an auth service asked per handshake, answering 200: the echo upstream's
// own HTTP handler, on the load core), plus HTTP GET requests/s + CPU µs per request (autocannon,
// 50 connections) for baseline vs `authorize`, and `authorize` with its decision cache on.
// Each figure is the median of the runs (2 by default, variants alternating). Every gateway runs
// for the whole bench (idle ones cost nothing measurable); all children are stopped by PID at
// the end, on Ctrl-C and on SIGTERM. JSON: bench/results/features-<timestamp>.json.
//
// Usage: node bench/features.mjs [--runs N] [--duration SEC] [--warmup SEC] [--no-pin]
//        env REDIS_BENCH_URL (default redis://127.0.0.1:6379)
import { createChildren } from './children.mjs'
import { allowedCpus, cleanEnv, freePort, ipc, waitHttp, waitReady, which, withTimeout } from './util.mjs'
import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, release, tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { createSigner } from 'fast-jwt'
import { CLK_TCK, childPids, cpuTimes } from './proc.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const benchDir = fileURLToPath(new URL('.', import.meta.url))
const started = Date.now()
const load0 = loadavg()

// ---------------------------------------------------------------- options

const o = { runs: 2, duration: 8, warmup: 2, pin: true }
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i]
  const num = () => { const v = Number(process.argv[++i]); if (!(v > 0)) { console.error(`${a}: a positive number`); process.exit(2) } return v }
  if (a === '--runs') o.runs = Math.round(num())
  else if (a === '--duration') o.duration = num()
  else if (a === '--warmup') o.warmup = num()
  else if (a === '--no-pin') o.pin = false
  else { console.error('Usage: node bench/features.mjs [--runs N] [--duration SEC] [--warmup SEC] [--no-pin]'); process.exit(2) }
}
const S = { conns: 50, size: 64, handshakeConcurrency: 16, warmupMs: o.warmup * 1000, durationMs: o.duration * 1000, runs: o.runs }
const redisUrl = process.env.REDIS_BENCH_URL ?? 'redis://127.0.0.1:6379'

const log = (msg) => process.stdout.write(`[${String(Math.round((Date.now() - started) / 1000)).padStart(4)}s] ${msg}\n`)
const problems = []
const problem = (msg) => { if (!interrupted) { problems.push(msg); log(`PROBLEM: ${msg}`) } }

// ---------------------------------------------------------------- pinning (as run.mjs)

const cpuList = which('taskset') !== null ? allowedCpus() : []
const pin = o.pin && cpuList.length >= 2
const PROXY_CORE = pin ? cpuList[0] : null
const LOAD_CORE = pin ? cpuList[1] : null
const pinNote = pin
  ? `pinned with taskset: gateways on CPU ${PROXY_CORE}; load generator + echo upstream on CPU ${LOAD_CORE}`
  : 'not pinned: rates mix the proxy with the load side'
if (pin) spawnSync('taskset', ['-pc', String(LOAD_CORE), String(process.pid)], { stdio: 'ignore' })

// ---------------------------------------------------------------- children

let interrupted = false
let stopping = null // the signal handler's stop: it exits with 130 when done
const tmp = mkdtempSync(join(tmpdir(), 'tollgate-features-'))

const children = createChildren({ cwd: root, onProblem: problem })
const { launch, stopAll } = children
process.on('exit', () => children.killAll())
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    if (interrupted) process.exit(130)
    interrupted = true
    process.stdout.write(`\nbench:features: ${sig}: stopping every child process...\n`)
    stopping = withTimeout(stopAll(), 10_000, 'stop').catch(() => {}).finally(() => { cleanupRedis(); rmTemp(); process.exit(130) })
  })
}
const rmTemp = () => { if (problems.length === 0) { try { rmSync(tmp, { recursive: true, force: true }) } catch { /* best effort */ } } }

const keyPrefix = `gwbench:${randomBytes(6).toString('hex')}:`
let redisUsed = false
function cleanupRedis () {
  if (!redisUsed || which('redis-cli') === null) return
  // Drop the keys this run's gateway wrote (its prefix is unique to the run).
  spawnSync('sh', ['-c', 'redis-cli -u "$1" --scan --pattern "$2*" | xargs -r redis-cli -u "$1" del >/dev/null', 'sh', redisUrl, keyPrefix], { timeout: 10_000, stdio: 'ignore' })
}

// ---------------------------------------------------------------- setup

const jwtSecret = randomBytes(24).toString('hex')
const adminToken = randomBytes(18).toString('hex')
const jwt = createSigner({ key: jwtSecret, algorithm: 'HS256', expiresIn: 3 * 3600 * 1000 })({ sub: 'bench-user' })

const VARIANTS = [
  { key: 'baseline', label: 'baseline (/ws, admin+registry+metrics, info log)' },
  { key: 'ratelimit', label: '+ rateLimit.messages 100k/s (never trips)', extra: { rateLimit: { messages: { rate: 100000, burst: 100000 } } } },
  { key: 'redis', label: '+ Redis cluster mode', extra: () => ({ redis: { url: redisUrl, keyPrefix } }) },
  { key: 'jwt', label: 'route auth: required (HS256)', extra: { auth: { jwt: { secret: jwtSecret } } }, routeAuth: 'required', handshakeOnly: true },
  { key: 'authorize', label: '+ authorize (auth service asked each time)', extra: () => ({ authorize: { url: authzUrl, upstreamHeaders: ['x-user-id'] } }) },
  { key: 'authzcache', label: '+ authorize with cache: 10s', extra: () => ({ authorize: { url: authzUrl, upstreamHeaders: ['x-user-id'], cache: '10s' } }) }
]
let authzUrl = ''
const HTTP_CONNS = 50

let upstream, loadgen
const gateways = {} // key -> { proc, port, url, pids }
const records = { rtt: {}, handshake: {}, http: {} }

async function startGateway (v, upPort) {
  const port = await freePort()
  const route = { prefix: '/ws', upstream: 'echo' }
  if (v.routeAuth) route.auth = v.routeAuth
  const extra = typeof v.extra === 'function' ? v.extra() : (v.extra ?? {})
  const cfg = {
    server: { host: '127.0.0.1', port },
    upstreams: { echo: { targets: [`http://127.0.0.1:${upPort}`] } },
    routes: [route],
    admin: { token: adminToken },
    ...extra
  }
  const file = join(tmp, `gateway-${v.key}.json`)
  writeFileSync(file, JSON.stringify(cfg, null, 2))
  const logFile = join(tmp, `gateway-${v.key}.log`)
  const p = launch(`gateway ${v.key}`, [process.execPath, join(root, 'dist/src/gateway/cli.js')], {
    core: PROXY_CORE, env: cleanEnv({ GATEWAY_CONFIG: file, LOG_LEVEL: 'info', PORT: String(port), HOST: '127.0.0.1' }), logFile
  })
  await waitHttp(`http://127.0.0.1:${port}/health`, 20_000, () => !p.exited)
  return { proc: p, port, url: `ws://127.0.0.1:${port}/ws`, logFile, pids: () => [p.pid, ...childPids(p.pid)] }
}

const timeout = () => S.warmupMs + S.durationMs + 60_000

async function rtt (key, url, proxyPids) {
  const r = await ipc(loadgen, {
    cmd: 'rtt', url, conns: S.conns, size: S.size, warmupMs: S.warmupMs, durationMs: S.durationMs,
    pids: { proxy: proxyPids, upstream: [upstream.pid] }, cores: LOAD_CORE !== null ? [LOAD_CORE] : null
  }, timeout())
  if (r.connections < S.conns) problem(`rtt ${key}: only ${r.connections}/${S.conns} connections opened ${JSON.stringify(r.errors)}`)
  if (r.errorCount > 0) problem(`rtt ${key}: client errors ${JSON.stringify(r.errors)}`)
  if (r.messages === 0) throw new Error(`rtt ${key}: nothing echoed ${JSON.stringify(r.errors)}`)
  return {
    rate: r.messages / r.seconds,
    cpu: r.proxyCpuUs / r.messages,
    proxyUtil: r.proxyCpuUs / (r.seconds * 1e6),
    loadUtil: r.coreBusyUs / (r.seconds * 1e6),
    p50: r.latencyMs.p50,
    p99: r.latencyMs.p99,
    messages: r.messages,
    seconds: r.seconds,
    stealMs: r.stealUs / 1000,
    load1: loadavg()[0]
  }
}

async function handshakes (key, url, headers, proxyPids) {
  const r = await ipc(loadgen, {
    cmd: 'handshake', url, headers, concurrency: S.handshakeConcurrency, warmupMs: S.warmupMs, durationMs: S.durationMs,
    pids: { proxy: proxyPids, upstream: [upstream.pid] }, cores: LOAD_CORE !== null ? [LOAD_CORE] : null
  }, timeout())
  if (r.errorCount > 0) problem(`handshake ${key}: client errors ${JSON.stringify(r.errors)}`)
  if (r.handshakes === 0) throw new Error(`handshake ${key}: none completed ${JSON.stringify(r.errors)}`)
  return {
    rate: r.handshakes / r.seconds,
    cpu: r.proxyCpuUs / r.handshakes,
    proxyUtil: r.proxyCpuUs / (r.seconds * 1e6),
    loadUtil: r.coreBusyUs / (r.seconds * 1e6),
    p99OpenMs: r.openMs.p99,
    handshakes: r.handshakes,
    seconds: r.seconds,
    stealMs: r.stealUs / 1000,
    load1: loadavg()[0]
  }
}

/** HTTP GET load with autocannon: requests/s and the gateway's CPU µs per request. */
async function httpRun (key, url, proxyPids) {
  const bin = join(root, 'node_modules/autocannon/autocannon.js')
  const run = (seconds) => new Promise((resolve, reject) => {
    const args = [bin, '-c', String(HTTP_CONNS), '-d', String(seconds), '-t', '5', '-j', url]
    const child = spawn(LOAD_CORE !== null ? 'taskset' : process.execPath, LOAD_CORE !== null ? ['-c', String(LOAD_CORE), process.execPath, ...args] : args, { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (c) => { out += c })
    child.on('error', reject)
    child.on('close', (code) => code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`autocannon exit ${code}`)))
  })
  if (S.warmupMs >= 1000) await run(Math.round(S.warmupMs / 1000))
  const c0 = cpuTimes(proxyPids)
  const j = await run(Math.max(1, Math.round(S.durationMs / 1000)))
  const c1 = cpuTimes(proxyPids)
  if (j.non2xx > 0 || j.errors > 0) problem(`http ${key}: ${j.non2xx} non-2xx, ${j.errors} errors`)
  if (j.requests.total === 0) throw new Error(`http ${key}: no request answered`)
  const cpu = c1.user + c1.sys - c0.user - c0.sys
  return { rate: j.requests.total / j.duration, cpu: cpu / j.requests.total, proxyUtil: cpu / (j.duration * 1e6), loadUtil: 0, p99: j.latency.p99, requests: j.requests.total, seconds: j.duration, load1: loadavg()[0] }
}

function push (kind, key, rec) {
  (records[kind][key] ??= []).push(rec)
}

async function main () {
  log(`Tollgate feature bench: ${S.runs} runs, ${S.warmupMs / 1000} s warm-up + ${S.durationMs / 1000} s per phase, ${S.conns} conns x ${S.size} B; temp ${tmp}`)
  log(pinNote)
  const b = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'], timeout: 300_000 })
  if (b.status !== 0) throw new Error('npm run build failed')

  const upPorts = { direct: await freePort(), authz: await freePort() }
  for (const v of VARIANTS) upPorts[v.key] = await freePort()
  authzUrl = `http://127.0.0.1:${upPorts.authz}/check`
  const env = cleanEnv({ BENCH_CLK_TCK: String(CLK_TCK) })
  upstream = launch('upstream', [process.execPath, join(benchDir, 'upstream.mjs')], {
    core: LOAD_CORE, env: { ...env, BENCH_PORTS: Object.entries(upPorts).map(([k, v]) => `${k}:${v}`).join(',') }, logFile: join(tmp, 'upstream.log'), ipc: true
  })
  await waitReady(upstream, 10_000)
  loadgen = launch('loadgen', [process.execPath, join(benchDir, 'loadgen.mjs')], { core: LOAD_CORE, env, logFile: join(tmp, 'loadgen.log'), ipc: true })
  await waitReady(loadgen, 10_000)

  for (const v of VARIANTS) {
    if (v.key === 'redis') redisUsed = true
    gateways[v.key] = await startGateway(v, upPorts[v.key])
    const headers = v.routeAuth ? { authorization: `Bearer ${jwt}` } : undefined
    const pr = await ipc(loadgen, { cmd: 'probe', url: gateways[v.key].url, headers }, 10_000)
    if (!pr.ok) throw new Error(`gateway ${v.key}: echo probe failed (${pr.error})`)
    log(`gateway ${v.key} up on :${gateways[v.key].port} (pid ${gateways[v.key].proc.pid})`)
  }
  const noTok = await ipc(loadgen, { cmd: 'probe', url: gateways.jwt.url }, 10_000)
  if (noTok.ok) problem('jwt route accepted a handshake without a token')

  const directUrl = `ws://127.0.0.1:${upPorts.direct}/ws`
  const rttPaths = [
    { key: 'baseline', url: () => gateways.baseline.url, pids: () => gateways.baseline.pids() },
    { key: 'ratelimit', url: () => gateways.ratelimit.url, pids: () => gateways.ratelimit.pids() },
    { key: 'redis', url: () => gateways.redis.url, pids: () => gateways.redis.pids() },
    { key: 'direct', url: () => directUrl, pids: () => [upstream.pid] }
  ]
  const hsPaths = [
    { key: 'baseline', url: () => gateways.baseline.url, headers: {}, pids: () => gateways.baseline.pids() },
    { key: 'jwt', url: () => gateways.jwt.url, headers: { authorization: `Bearer ${jwt}` }, pids: () => gateways.jwt.pids() },
    { key: 'authorize', url: () => gateways.authorize.url, headers: {}, pids: () => gateways.authorize.pids() }
  ]
  const httpUrl = (key) => `http://127.0.0.1:${gateways[key].port}/ws/x`
  const httpPaths = ['baseline', 'authorize', 'authzcache'].map((key) => ({ key, url: () => httpUrl(key), pids: () => gateways[key].pids() }))

  // Warm-up stage (not recorded): V8 compiles each gateway's hot paths before any measure.
  log('warm-up stage (not recorded)')
  for (const p of rttPaths) await ipc(loadgen, { cmd: 'rtt', url: p.url(), conns: S.conns, size: S.size, warmupMs: 0, durationMs: 3000, untilCount: 30_000, pids: {}, cores: null }, 30_000)
  for (const p of hsPaths) await ipc(loadgen, { cmd: 'handshake', url: p.url(), headers: p.headers, concurrency: S.handshakeConcurrency, warmupMs: 0, durationMs: 2000, untilCount: 1500, pids: {}, cores: null }, 30_000)

  for (let run = 0; run < S.runs; run++) {
    // Alternate: odd runs go through the variants in reverse order.
    const rp = run % 2 === 0 ? rttPaths : [...rttPaths].reverse()
    for (const p of rp) {
      const r = await rtt(p.key, p.url(), p.pids())
      push('rtt', p.key, r)
      log(`run ${run + 1} rtt ${p.key.padEnd(9)} ${Math.round(r.rate)} msg/s, ${r.cpu.toFixed(1)} µs/msg, proxy ${Math.round(r.proxyUtil * 100)}% load ${Math.round(r.loadUtil * 100)}%`)
    }
    const hp = run % 2 === 0 ? hsPaths : [...hsPaths].reverse()
    for (const p of hp) {
      const r = await handshakes(p.key, p.url(), p.headers, p.pids())
      push('handshake', p.key, r)
      log(`run ${run + 1} handshake ${p.key.padEnd(9)} ${Math.round(r.rate)} /s, ${r.cpu.toFixed(1)} µs/handshake, proxy ${Math.round(r.proxyUtil * 100)}% load ${Math.round(r.loadUtil * 100)}%`)
    }
    const tp = run % 2 === 0 ? httpPaths : [...httpPaths].reverse()
    for (const p of tp) {
      const r = await httpRun(p.key, p.url(), p.pids())
      push('http', p.key, r)
      log(`run ${run + 1} http ${p.key.padEnd(10)} ${Math.round(r.rate)} req/s, ${r.cpu.toFixed(1)} µs/request, proxy ${Math.round(r.proxyUtil * 100)}%`)
    }
  }
}

// ---------------------------------------------------------------- report

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length === 0 ? null : s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}
function med (list) {
  if (!list || list.length === 0) return null
  const out = {}
  for (const k of Object.keys(list[0])) if (typeof list[0][k] === 'number') out[k] = median(list.map((r) => r[k]))
  return out
}

async function finish (error) {
  // Interrupted: no table, no JSON; the signal handler stops the children and exits.
  if (interrupted) { await stopping; await new Promise(() => {}) }
  if (error) problem(`aborted: ${error.message}`)
  // Gateway warnings/errors (pino level >= 40) are problems.
  for (const [key, g] of Object.entries(gateways)) {
    try {
      const r = spawnSync('sh', ['-c', 'grep -c \'"level":[4-6][0-9]\' "$1" || true', 'sh', g.logFile], { encoding: 'utf8' })
      const n = Number(r.stdout.trim())
      if (n > 0) problem(`gateway ${key} logged ${n} warn/error line(s): ${g.logFile}`)
    } catch { /* ignore */ }
  }
  await withTimeout(stopAll(), 20_000, 'stopping children').catch((err) => problem(err.message))
  cleanupRedis()
  const load1 = loadavg()
  const m = { rtt: {}, handshake: {}, http: {} }
  for (const kind of ['rtt', 'handshake', 'http']) for (const [k, list] of Object.entries(records[kind])) m[kind][k] = med(list)

  const f = (x, d = 1) => x === null || x === undefined ? '-' : x.toFixed(d)
  const k = (x) => x === null || x === undefined ? '-' : `${(x / 1000).toFixed(1)}k`
  const ratio = (a, b) => a && b ? `${((a / b - 1) * 100 >= 0 ? '+' : '')}${((a / b - 1) * 100).toFixed(0)}%` : ''
  const base = m.rtt.baseline
  const rows = [
    ['round trips, 50 conns, 64 B', 'msg/s', 'CPU µs/msg', 'vs baseline', 'proxy/load core %', 'p99 ms'],
    ...['baseline', 'ratelimit', 'redis', 'direct'].map((key) => {
      const r = m.rtt[key]
      const label = key === 'direct' ? 'direct (no proxy; CPU = upstream)' : VARIANTS.find((v) => v.key === key).label
      if (!r) return [label, '-', '-', '', '', '']
      return [label, k(r.rate), f(r.cpu), key === 'baseline' || key === 'direct' ? '' : ratio(r.cpu, base?.cpu), `${Math.round(r.proxyUtil * 100)}/${Math.round(r.loadUtil * 100)}`, f(r.p99, 2)]
    }),
    ['', '', '', '', '', ''],
    ['handshakes (16 loops open+close)', 'hs/s', 'CPU µs/hs', 'vs baseline', 'proxy/load core %', 'p99 open ms'],
    ...['baseline', 'jwt', 'authorize'].map((key) => {
      const r = m.handshake[key]
      const label = key === 'baseline' ? 'baseline (/ws, no auth)' : VARIANTS.find((v) => v.key === key).label
      if (!r) return [label, '-', '-', '', '', '']
      return [label, f(r.rate, 0), f(r.cpu), key !== 'baseline' ? ratio(r.cpu, m.handshake.baseline?.cpu) : '', `${Math.round(r.proxyUtil * 100)}/${Math.round(r.loadUtil * 100)}`, f(r.p99OpenMs, 2)]
    }),
    ['', '', '', '', '', ''],
    [`HTTP GET (${HTTP_CONNS} conns, autocannon)`, 'req/s', 'CPU µs/req', 'vs baseline', 'proxy core %', 'p99 ms'],
    ...['baseline', 'authorize', 'authzcache'].map((key) => {
      const r = m.http[key]
      const label = key === 'baseline' ? 'baseline (/ws/x, no auth)' : VARIANTS.find((v) => v.key === key).label
      if (!r) return [label, '-', '-', '', '', '']
      return [label, k(r.rate), f(r.cpu), key !== 'baseline' ? ratio(r.cpu, m.http.baseline?.cpu) : '', `${Math.round(r.proxyUtil * 100)}`, f(r.p99, 2)]
    })
  ]
  const widths = rows[0].map((_c, i) => Math.max(...rows.map((r) => String(r[i]).length)))
  const table = rows.map((r) => r.map((c, i) => i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i])).join('  ')).join('\n')
  const lines = [
    '',
    `Tollgate feature costs, ${new Date(started).toISOString()}, median of ${S.runs} alternating run(s), ${S.warmupMs / 1000} s warm-up + ${S.durationMs / 1000} s per phase`,
    `machine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}, Linux ${release()}, Node ${process.version}; load average ${load0.map((x) => x.toFixed(2)).join(' ')} at start, ${load1.map((x) => x.toFixed(2)).join(' ')} at end`,
    pinNote,
    '',
    table,
    '',
    'CPU = user+sys CPU of the gateway process per round trip / per open+close (Redis server CPU not included).',
    'vs baseline = CPU per unit relative to baseline. direct: no proxy, its CPU is the echo upstream\'s own.'
  ]
  lines.push(problems.length ? `problems (${problems.length}):\n${problems.map((p) => `  - ${p}`).join('\n')}` : 'problems: none (no client error, no gateway warning)')
  mkdirSync(join(benchDir, 'results'), { recursive: true })
  const jsonPath = join(benchDir, 'results', `features-${new Date(started).toISOString().replace(/[:.]/g, '-')}.json`)
  writeFileSync(jsonPath, JSON.stringify({
    startedAt: new Date(started).toISOString(),
    seconds: (Date.now() - started) / 1000,
    settings: { ...S, redisUrl, keyPrefix },
    machine: { cpus: cpus().length, model: cpus()[0]?.model, kernel: release(), node: process.version },
    loadavg: { start: load0, end: load1 },
    pinning: { pinned: pin, proxyCore: PROXY_CORE, loadCore: LOAD_CORE },
    variants: VARIANTS.map((v) => ({ key: v.key, label: v.label })),
    medians: m,
    records,
    problems
  }, null, 2))
  lines.push(`JSON: ${relative(process.cwd(), jsonPath)}`)
  if (problems.length) lines.push(`logs and configs kept in ${tmp}`)
  process.stdout.write(lines.join('\n') + '\n')
  rmTemp()
}

const hardStop = setTimeout(() => {
  process.stderr.write('bench:features: time limit reached; stopping\n')
  children.killAll()
  process.exit(3)
}, 15 * 60_000)
hardStop.unref()

let failure = null
try { await main() } catch (err) { failure = err }
await finish(failure)
process.exit(failure ? 1 : 0)
