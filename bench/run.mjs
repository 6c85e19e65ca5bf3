#!/usr/bin/env node
// `npm run bench`: the benchmark harness (spec section 9; how to read it: bench/README.md).
// Starts, each in its own process, the echo upstream, the built gateway, the node floor, the
// peers that are installed (nginx, HAProxy, Caddy; @fastify/http-proxy, fast-gateway and
// http-proxy from the devDependencies), pins the proxy under test to one core and the load side
// to the other, runs every scenario on every path, and prints one table of medians (also written
// as JSON to bench/results/<timestamp>.json). Every phase has a deadline; every child is stopped
// by its process group at the end, on Ctrl-C and on SIGTERM. With --baseline DIR, a second
// Tollgate checkout's gateway runs beside this one as the `baseline` path: a refactor's before
// and after measured in one run, under the same load and machine state.
//
// Usage: npm run bench [-- --quick] [--runs N] [--duration SEC] [--idle N] [--paths a,b]
//                      [--scenarios a,b] [--baseline DIR] [--http-tool wrk|autocannon] [--no-pin]
//                      [--nice N] [--keep]
import { createChildren } from './children.mjs'
import { allowedCpus, cleanEnv, freePort, httpGet, httpRequest, ipc, sleep, waitHttp, waitReady, which, withTimeout } from './util.mjs'
import { spawn, spawnSync } from 'node:child_process'
import {
  existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, createReadStream
} from 'node:fs'
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os'
import { join, relative, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { createSigner } from 'fast-jwt'
import { findNginx, writeNginxConfig } from './nginx.mjs'
import { HAPROXY_INSTALL, findHaproxy, haproxyVersion, writeHaproxyConfig } from './haproxy.mjs'
import { CADDY_INSTALL, caddyEnv, caddyVersion, findCaddy, writeCaddyfile } from './caddy.mjs'
import { CLK_TCK, childPids, coreTimes, cpuMicros, cpuTimes, rssKiB } from './proc.mjs'
import { COLUMNS, SCENARIOS, peerComparison, renderPeerComparison, renderTable, summarize, tableRows } from './report.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const benchDir = fileURLToPath(new URL('.', import.meta.url))
const started = Date.now()
const startLoad = loadavg()[0]

// ---------------------------------------------------------------- options

// Table order (report.mjs's COLUMNS); `baseline` runs only with --baseline.
const PATHS = ['direct', 'gateway', 'baseline', 'floor', 'nginx', 'haproxy', 'caddy', 'fastify', 'fast-gateway', 'http-proxy']
// The npm packages (devDependencies) each Node peer needs; a path whose packages are missing is
// skipped with a note. fast-gateway proxies WebSockets with faye-websocket, which it does not
// depend on itself (its README: install it beside).
const NODE_PEER_PACKAGES = { fastify: ['@fastify/http-proxy'], 'fast-gateway': ['fast-gateway', 'faye-websocket'], 'http-proxy': ['http-proxy'] }
// Each proxy's log in the temp dir (its stdout and stderr), scanned for warnings at the end.
const LOGS = {
  gateway: 'gateway.log',
  baseline: 'baseline.log',
  floor: 'floor-proxy.log',
  nginx: 'nginx-error.log',
  haproxy: 'haproxy.out',
  caddy: 'caddy.log',
  fastify: 'fastify-proxy.log',
  'fast-gateway': 'fast-gateway.log',
  'http-proxy': 'http-proxy.log'
}
// The built gateway, relative to a checkout (this one, or --baseline DIR).
const CLI = 'dist/src/gateway/cli.js'
// How to get a DIR for --baseline: a worktree at the revision to compare with, built as
// `npm run build` builds this one (without the install scripts, which a worktree does not need).
const BASELINE_HOWTO = 'git worktree add /tmp/before <rev> && cd /tmp/before && npm ci --ignore-scripts && npx tsc -p tsconfig.build.json'

const USAGE = `Usage: npm run bench [-- options]
  --quick              short phases, one run, 1,000 idle connections (about 4 minutes)
  --runs N             runs of each scenario; the table shows medians (default 2, quick 1)
  --duration SEC       measured seconds per phase (default 10, quick 1.5)
  --idle N             idle connections (default 5000, quick 1000)
  --paths LIST         among ${PATHS.join(',')} (default: all present)
  --scenarios LIST     among ${SCENARIOS.map((s) => s.key).join(',')}
  --baseline DIR       also run the gateway of another built Tollgate checkout, as the path baseline
                       (before/after a change in one run; DIR must have dist/src/gateway/cli.js)
  --http-tool NAME     wrk (default when installed) or autocannon
  --no-pin             do not pin processes to cores
  --nice N             run the bench's processes N nice levels above normal priority (root only):
                       on a shared machine they then preempt other work (which slows it down)
  --keep               keep the temp dir (configs, logs) even when nothing went wrong
`

function parseArgs (argv) {
  const o = { quick: false, runs: null, duration: null, idle: null, paths: null, scenarios: null, baseline: null, httpTool: null, pin: true, nice: 0, keep: false }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const val = () => {
      const v = argv[++i]
      if (v === undefined) fail(`${a} needs a value`)
      return v
    }
    switch (a) {
      case '--quick': o.quick = true; break
      case '--runs': o.runs = posInt(val(), a); break
      case '--duration': o.duration = Number(val()); if (!(o.duration > 0)) fail(`${a}: a number of seconds`); break
      case '--idle': o.idle = posInt(val(), a); break
      case '--paths': o.paths = val().split(','); break
      case '--scenarios': o.scenarios = val().split(','); break
      case '--baseline': o.baseline = resolve(val()); break
      case '--http-tool': o.httpTool = val(); break
      case '--no-pin': o.pin = false; break
      case '--nice': o.nice = posInt(val(), a); if (o.nice > 20) fail('--nice: 1 to 20'); break
      case '--keep': o.keep = true; break
      case '-h': case '--help': process.stdout.write(USAGE); process.exit(0); break
      default: fail(`unknown option ${a}\n${USAGE}`)
    }
  }
  return o
}
function posInt (v, name) {
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1) fail(`${name}: a positive integer`)
  return n
}
function fail (msg) {
  process.stderr.write(`bench: ${msg}\n`)
  process.exit(2)
}

const opts = parseArgs(process.argv.slice(2))
const S = {
  runs: opts.runs ?? (opts.quick ? 1 : 2),
  // Warm-up inside each phase (connections open, load running, not measured).
  warmupMs: opts.quick ? 300 : 2000,
  durationMs: Math.round((opts.duration ?? (opts.quick ? 1.5 : 10)) * 1000),
  // The warm-up stage before the first run: each path through each scenario until this much
  // work was done (or warmStageMs passed), so V8's compilation of the proxies' hot paths (it
  // needs thousands of calls, not seconds) is not measured as the cost of the first phases.
  warmStageMs: opts.quick ? 1200 : 6000,
  warmUnits: opts.quick ? { rtt: 10_000, stream: 600, handshake: 800, http: 5000 } : { rtt: 30_000, stream: 2000, handshake: 2000, http: 15_000 },
  idle: opts.idle ?? (opts.quick ? 1000 : 5000),
  idleSettleMs: opts.quick ? 1000 : 2500,
  streamConns: 4,
  streamWindow: 4,
  streamSize: 64 * 1024,
  rttSize: 64,
  handshakeConcurrency: 16,
  // rttAdmin: loops paging the admin listing at once (a few dashboards or scripts).
  adminConcurrency: 4,
  httpConns: 50,
  // httpPost's request body.
  postSize: 16 * 1024,
  // Whole-run budget: past it, remaining phases are skipped and the partial table printed.
  // (Ten paths and twelve scenarios: quick takes about 8 minutes, full about an hour.)
  budgetMs: (opts.quick ? 15 : 120) * 60_000
}
const scenarioKeys = new Set(opts.scenarios ?? SCENARIOS.map((s) => s.key))
for (const k of scenarioKeys) if (!SCENARIOS.some((s) => s.key === k)) fail(`unknown scenario ${k}`)
for (const k of opts.paths ?? []) if (!PATHS.includes(k)) fail(`unknown path ${k} (${PATHS.join(', ')})`)
if (opts.paths?.includes('baseline') && opts.baseline === null) fail('--paths baseline needs --baseline DIR (another built Tollgate checkout)')
// Checked before anything starts: the harness does not build another checkout (its sources may
// be someone's work in progress), it only runs what was built there.
if (opts.baseline !== null && !existsSync(join(opts.baseline, CLI))) {
  fail(`--baseline ${opts.baseline}: no ${CLI} there. Build that checkout first, e.g.\n  ${BASELINE_HOWTO}\nthen pass --baseline /tmp/before`)
}
if (opts.baseline !== null && opts.paths !== null && !opts.paths.includes('baseline')) {
  process.stderr.write('bench: --baseline is ignored: baseline is not in --paths\n')
  opts.baseline = null
}

// ---------------------------------------------------------------- small helpers

const elapsed = () => `${Math.round((Date.now() - started) / 1000)}s`.padStart(5)
const log = (msg) => process.stdout.write(`[${elapsed()}] ${msg}\n`)
const problems = []
// The temp dir (configs, every process's log) is kept when something went wrong.
let keepTemp = false
let interrupted = false
const problem = (msg) => {
  // After Ctrl-C, phases fail because their processes were stopped: not a finding.
  if (interrupted) return
  problems.push(msg)
  keepTemp = true
  log(`PROBLEM: ${msg}`)
}

// ---------------------------------------------------------------- pinning, limits

const tasksetBin = which('taskset')
const cpuList = tasksetBin !== null ? allowedCpus() : []
const pin = opts.pin && tasksetBin !== null && cpuList.length >= 2
const PROXY_CORE = pin ? cpuList[0] : null
const LOAD_CORE = pin ? cpuList[1] : null
// Enough descriptors for the idle phase: the proxy holds two sockets per connection. Children
// ask for NOFILE and fall back to the hard limit (raising it needs CAP_SYS_RESOURCE); the idle
// count is lowered to what that limit allows.
const NOFILE = Math.max(65536, S.idle * 2 + 4096)
const hardNofile = Number(spawnSync('sh', ['-c', `ulimit -n ${NOFILE} 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null; ulimit -n`], { encoding: 'utf8' }).stdout.trim()) || 1024
let nofileNote = `RLIMIT_NOFILE of the children: ${hardNofile}`
if (S.idle * 2 + 2048 > hardNofile) {
  const idle = Math.max(100, Math.floor((hardNofile - 2048) / 2 / 100) * 100)
  nofileNote += ` (too low for ${S.idle} idle connections: ${idle} used)`
  S.idle = idle
}
let pinNote
if (pin) {
  pinNote = `pinned with taskset: proxy under test on CPU ${PROXY_CORE}; load generator, echo upstream and HTTP load tool on CPU ${LOAD_CORE}`
  // The harness itself is mostly idle, but keep it off the proxy's core.
  spawnSync('taskset', ['-pc', String(LOAD_CORE), String(process.pid)], { stdio: 'ignore' })
} else if (!opts.pin) {
  pinNote = 'not pinned (--no-pin): rates and latencies mix the proxy with the load side'
} else {
  pinNote = `not pinned (${tasksetBin === null ? 'no taskset on PATH' : `only ${cpuList.length} CPU allowed`}): rates and latencies mix the proxy with the load side`
}

// ---------------------------------------------------------------- children

/** @type {Set<{ name: string, child: import('node:child_process').ChildProcess, pid: number, exited: boolean, expected: boolean }>} */
const children = createChildren({ cwd: root, nofile: NOFILE, wrap: withPriority, onProblem: problem })
const { procs, launch, stop: stopProc, stopAll } = children

/** `nice -n -N` in front of a command line when --nice N was given. */
function withPriority (argv) {
  return opts.nice > 0 ? ['nice', '-n', String(-opts.nice), ...argv] : argv
}

// Last resort (an uncaught error, process.exit): nothing may outlive the harness.
process.on('exit', () => children.killAll())
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    if (interrupted) process.exit(130)
    interrupted = true
    process.stdout.write(`\nbench: ${sig}: stopping every child process...\n`)
    keepTemp = false
    withTimeout(stopAll(), 10_000, 'stop').catch(() => {}).finally(() => { cleanupTemp(); process.exit(130) })
  })
}

/** The first source file of checkout `dir` whose dist/ output is missing or older, or null. */
function staleBuild (dir) {
  const walk = (d) => readdirSync(d, { withFileTypes: true }).flatMap((e) => {
    const p = join(d, e.name)
    return e.isDirectory() ? walk(p) : e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : []
  })
  for (const top of ['src', 'plugins', 'routes']) {
    if (!existsSync(join(dir, top))) continue
    for (const ts of walk(join(dir, top))) {
      const js = join(dir, 'dist', relative(dir, ts)).replace(/\.ts$/, '.js')
      if (!existsSync(js) || statSync(js).mtimeMs < statSync(ts).mtimeMs) return relative(dir, ts)
    }
  }
  return null
}

// ---------------------------------------------------------------- temp dir

const tmp = mkdtempSync(join(tmpdir(), 'tollgate-bench-'))
function cleanupTemp () {
  if (keepTemp || opts.keep) return
  try { rmSync(tmp, { recursive: true, force: true }) } catch { /* best effort */ }
}

// ---------------------------------------------------------------- main

const records = {} // scenario -> path -> record[]
const extra = { rss: { gateway: [], baseline: [] }, logs: {} }
let upstream, loadgen
// The proxies' processes by path key (what launch() returned); a restart replaces the entry.
const running = {}
let ports = {}
// httpPost's body, as a file (autocannon -i) and as a wrk script (wrk -s), written at start.
const postBodyFile = join(tmp, 'post-body.bin')
const postLua = join(tmp, 'post.lua')
let paths = []
let httpTool = null
const jwtSecret = randomBytes(24).toString('hex')
const adminToken = randomBytes(18).toString('hex')
const jwt = createSigner({ key: jwtSecret, algorithm: 'HS256', expiresIn: 3 * 3600 * 1000 })({ sub: 'bench-user' })

async function main () {
  log(`Tollgate bench, ${opts.quick ? 'quick' : 'full'} mode: ${S.runs} run(s), ${S.durationMs / 1000} s per phase, ${S.idle} idle connections; temp dir ${tmp}`)
  log(pinNote)
  if (opts.nice > 0) log(`priority: every bench process runs at nice -${opts.nice}`)
  log(nofileNote)
  if (cpus().length < 2) log('note: fewer than 2 CPUs: the proxy and the load side share a core')

  const stale = staleBuild(root)
  if (stale !== null) {
    log(`dist/ is missing or older than ${stale}: npm run build`)
    const r = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit', timeout: 300_000 })
    if (r.status !== 0) throw new Error('npm run build failed: the gateway cannot be benchmarked')
  }
  if (opts.baseline !== null) {
    // Not rebuilt here (see the option's check): said, so that a stale build is not taken for the sources.
    const staleBase = staleBuild(opts.baseline)
    log(`baseline: ${opts.baseline} (${revision(opts.baseline)})${staleBase !== null ? `; note: its dist/ is older than ${staleBase}, the figures are those of its build` : ''}`)
  }

  httpTool = opts.httpTool ?? (which('wrk') !== null ? 'wrk' : 'autocannon')
  if (httpTool === 'wrk' && which('wrk') === null) throw new Error('--http-tool wrk: wrk is not on PATH')
  if (httpTool !== 'wrk' && httpTool !== 'autocannon') throw new Error(`--http-tool: wrk or autocannon, not ${httpTool}`)

  const want = new Set(opts.paths ?? PATHS.filter((k) => k !== 'baseline' || opts.baseline !== null))
  // The peers that are programs of their own: skipped, with how to get them, when not installed.
  const bins = {}
  for (const [key, find, install] of [['nginx', findNginx, 'apt-get install nginx'], ['haproxy', findHaproxy, HAPROXY_INSTALL], ['caddy', findCaddy, CADDY_INSTALL]]) {
    if (!want.has(key)) continue
    bins[key] = find()
    if (bins[key] === null) log(`${key}: no ${key} binary on PATH or in /usr/sbin: the ${key} column is skipped (install: ${install})`)
  }
  // The peers that are npm packages (devDependencies): skipped when not installed.
  for (const [key, pkgs] of Object.entries(NODE_PEER_PACKAGES)) {
    const missing = pkgs.filter((pkg) => !existsSync(join(root, 'node_modules', pkg, 'package.json')))
    if (want.has(key) && missing.length > 0) {
      log(`${key}: ${missing.join(', ')} not installed: the ${key} column is skipped (install: npm install, the devDependencies)`)
      want.delete(key)
    }
  }

  // One upstream port per path: the sockets a proxy leaves open upstream are its own. nginx has
  // a second port: its keepalive server (the classic one is ports.nginx).
  ports = { up: {} }
  for (const key of PATHS) ports.up[key] = await freePort()
  for (const key of PATHS.filter((k) => k !== 'direct')) ports[key] = await freePort()
  ports.nginxKeepalive = await freePort()
  const nodeEnv = cleanEnv({ NODE_ENV: 'production' })
  writeFileSync(postBodyFile, Buffer.alloc(S.postSize, 'p'))
  writeFileSync(postLua, [
    '-- Written by bench/run.mjs: every request a POST of the same body (wrk adds its Content-Length).',
    'wrk.method = "POST"',
    `wrk.body = string.rep("p", ${S.postSize})`,
    'wrk.headers["Content-Type"] = "application/octet-stream"',
    ''
  ].join('\n'))

  // The load side.
  upstream = await startUpstream(nodeEnv)
  loadgen = await startLoadgen(nodeEnv)

  // The proxies under test.
  if (process.env.BENCH_GATEWAY_TRACING === '1') {
    otlpSink = await startOtlpSink()
    log(`tracing on for the gateway path: spans go to ${otlpSink.url}`)
  }
  /** A peer written in Node (bench/<script>): UPSTREAM and PORT in its env, ready once it answers a GET. */
  const nodePeer = (key, name, script, env = {}) => ({
    start: async () => {
      const p = launch(name, [process.execPath, ...nodeArgsOf(key), join(benchDir, script)], {
        core: PROXY_CORE,
        env: cleanEnv({ NODE_ENV: 'production', UPSTREAM: `http://127.0.0.1:${ports.up[key]}`, PORT: String(ports[key]), ...env }),
        logFile: join(tmp, LOGS[key])
      })
      await waitHttp(`http://127.0.0.1:${ports[key]}/`, 20_000, () => !p.exited)
      return p
    }
  })
  const services = {
    gateway: want.has('gateway') ? gatewayService('gateway', root) : null,
    baseline: want.has('baseline') ? gatewayService('baseline', opts.baseline) : null,
    floor: want.has('floor') ? nodePeer('floor', 'node floor', 'floor-proxy.mjs') : null,
    nginx: bins.nginx
      ? {
          start: async () => {
            const conf = writeNginxConfig({ dir: tmp, bin: bins.nginx, upstreamPort: ports.up.nginx, port: ports.nginx, portKeepalive: ports.nginxKeepalive, maxConns: S.idle + 1000 })
            const t = spawnSync(bins.nginx, ['-t', '-p', tmp, '-c', conf], { encoding: 'utf8', timeout: 10_000 })
            if (t.status !== 0) throw new Error(`nginx -t failed: ${(t.stderr || t.stdout).trim()}`)
            const p = launch('nginx', [bins.nginx, '-p', tmp, '-c', conf, '-g', 'daemon off;'], { core: PROXY_CORE, logFile: join(tmp, 'nginx.out') })
            await waitHttp(`http://127.0.0.1:${ports.nginx}/`, 10_000, () => !p.exited)
            await waitHttp(`http://127.0.0.1:${ports.nginxKeepalive}/`, 10_000, () => !p.exited)
            return p
          }
        }
      : null,
    haproxy: bins.haproxy
      ? {
          start: async () => {
            const conf = writeHaproxyConfig({ dir: tmp, upstreamPort: ports.up.haproxy, port: ports.haproxy, maxConns: S.idle + 1000 })
            const t = spawnSync(bins.haproxy, ['-c', '-q', '-f', conf], { encoding: 'utf8', timeout: 10_000 })
            if (t.status !== 0) throw new Error(`haproxy -c failed: ${(t.stderr || t.stdout).trim()}`)
            const p = launch('haproxy', [bins.haproxy, '-W', '-db', '-f', conf], { core: PROXY_CORE, logFile: join(tmp, LOGS.haproxy) })
            await waitHttp(`http://127.0.0.1:${ports.haproxy}/`, 10_000, () => !p.exited)
            return p
          }
        }
      : null,
    caddy: bins.caddy
      ? {
          start: async () => {
            const conf = writeCaddyfile({ dir: tmp, upstreamPort: ports.up.caddy, port: ports.caddy })
            const p = launch('caddy', [bins.caddy, 'run', '--config', conf, '--adapter', 'caddyfile'], {
              core: PROXY_CORE, env: caddyEnv(tmp, cleanEnv({})), logFile: join(tmp, LOGS.caddy)
            })
            await waitHttp(`http://127.0.0.1:${ports.caddy}/`, 20_000, () => !p.exited)
            return p
          }
        }
      : null,
    fastify: want.has('fastify') ? nodePeer('fastify', '@fastify/http-proxy', 'fastify-proxy.mjs', { LOG_LEVEL: 'info' }) : null,
    'fast-gateway': want.has('fast-gateway') ? nodePeer('fast-gateway', 'fast-gateway', 'fast-gateway.mjs') : null,
    'http-proxy': want.has('http-proxy') ? nodePeer('http-proxy', 'http-proxy', 'http-proxy.mjs') : null
  }
  for (const [key, svc] of Object.entries(services)) {
    if (svc === null) continue
    try {
      running[key] = await svc.start()
    } catch (err) {
      problem(`${key} did not start: ${err.message}; its column is skipped`)
    }
  }

  paths = []
  if (want.has('direct')) {
    paths.push({
      key: 'direct',
      ws: `ws://127.0.0.1:${ports.up.direct}/ws`,
      http: `http://127.0.0.1:${ports.up.direct}/`,
      pids: () => [upstream.pid],
      restart: async () => { await stopProc(upstream); upstream = await startUpstream(nodeEnv) }
    })
  }
  // Every proxy: its process and its children (nginx's and HAProxy's worker; a gateway with
  // --workers/WORKERS; Caddy and the Node peers have none, but counting costs nothing).
  const proxyPath = (key, port, more = {}) => ({
    key,
    ws: `ws://127.0.0.1:${port}/ws`,
    http: `http://127.0.0.1:${port}/`,
    pids: () => [running[key].pid, ...childPids(running[key].pid)],
    restart: async () => { await stopProc(running[key]); running[key] = await services[key].start() },
    ...more
  })
  for (const key of PATHS.filter((k) => k !== 'direct')) {
    if (running[key] === undefined) continue
    if (key === 'gateway' || key === 'baseline') {
      // The gateway and the baseline are the same kind of path: same routes, /auth, admin API.
      paths.push(proxyPath(key, ports[key], { wsAuth: `ws://127.0.0.1:${ports[key]}/auth`, admin: `http://127.0.0.1:${ports[key]}` }))
    } else if (key === 'nginx') {
      // WebSockets through the classic server; HTTP through the keepalive one (like for like).
      paths.push(proxyPath(key, ports.nginx, { http: `http://127.0.0.1:${ports.nginxKeepalive}/`, httpClassic: `http://127.0.0.1:${ports.nginx}/` }))
    } else {
      paths.push(proxyPath(key, ports[key]))
    }
  }

  await verify()
  noteRss('start')
  if (paths.length === 0) throw new Error('no path to benchmark')
  log(`paths: ${paths.map((p) => p.key).join(', ')}; HTTP load: ${httpTool}`)
  log('warm-up stage (not measured): each path through each scenario once')
  for (const p of paths) await warm(p)

  // Scenarios; within a run the order of the paths rotates so no path always goes first.
  const order = (run) => paths.map((_p, i) => paths[(i + run) % paths.length])
  const has = (k) => scenarioKeys.has(k)
  for (let run = 0; run < S.runs; run++) {
    if (has('rtt50')) for (const p of order(run)) await phase('rtt50', p, run, () => rttPhase(p, 50))
    if (has('rtt500')) for (const p of order(run)) await phase('rtt500', p, run, () => rttPhase(p, 500))
    // Round trips while other clients of the same path open and close sockets as fast as they
    // can (the handshake phase's loops), then (the gateway's) while a client pages the admin
    // listing: does one kind of work stall the relay of the others?
    if (has('rttStorm')) {
      for (const p of order(run)) {
        await phase('rttStorm', p, run, () => rttPhase(p, 500, { kind: 'handshake', url: p.ws, headers: {}, concurrency: S.handshakeConcurrency }, run))
      }
    }
    if (has('rttAdmin')) {
      for (const p of order(run).filter((x) => x.admin !== undefined)) {
        const url = `${p.admin}/admin/connections?limit=100`
        await phase('rttAdmin', p, run, () => rttPhase(p, 500, { kind: 'http', url, headers: { authorization: `Bearer ${adminToken}` }, concurrency: S.adminConcurrency }, run))
      }
    }
    if (has('stream')) for (const p of order(run)) await phase('stream', p, run, () => streamPhase(p))
    if (has('handshake')) for (const p of order(run)) await phase('handshake', p, run, () => handshakePhase(p, p.ws, {}))
    // The gateway's scenario: on every path with an /auth route (the gateway and the baseline).
    if (has('handshakeJwt')) {
      for (const p of order(run).filter((x) => x.wsAuth !== undefined)) await phase('handshakeJwt', p, run, () => handshakePhase(p, p.wsAuth, { authorization: `Bearer ${jwt}` }))
    }
    if (has('http')) for (const p of order(run)) await phase('http', p, run, () => httpPhase(p, p.http))
    if (has('httpPost')) for (const p of order(run)) await phase('httpPost', p, run, () => httpPhase(p, p.http, 'post'))
    if (has('httpBig')) for (const p of order(run)) await phase('httpBig', p, run, () => httpPhase(p, `${p.http}big`))
    const ng = paths.find((x) => x.key === 'nginx')
    if (has('httpClassic') && ng !== undefined) {
      const p = ng
      await phase('httpClassic', p, run, () => httpPhase(p, p.httpClassic))
    }
    noteRss(`run ${run + 1}`)
  }
  // Idle last, each measure in a freshly started proxy: a process that already held and freed
  // thousands of sockets reuses that memory, which would hide the cost of a connection.
  if (has('idle')) {
    for (let run = 0; run < S.runs; run++) for (const p of order(run)) await phase('idle', p, run, () => idlePhase(p))
  }
}

/**
 * Starts the built gateway of checkout `dir` as path `key` (`gateway`: this tree; `baseline`:
 * --baseline DIR), each with its own config (same routes, secret and admin token), port,
 * upstream port and log, the same env and Node flags, on the proxy core.
 */
/** An OTLP/HTTP endpoint that takes every batch of spans and drops it (BENCH_GATEWAY_TRACING=1). */
let otlpSink = null
async function startOtlpSink () {
  const { createServer } = await import('node:http')
  const server = createServer((req, res) => {
    req.resume()
    req.on('end', () => { res.writeHead(200, { 'content-type': 'application/json' }).end('{}') })
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  server.unref()
  return { url: `http://127.0.0.1:${server.address().port}` }
}

/**
 * Node flags for a Node path's command line: BENCH_GATEWAY_NODE_ARGS for the gateway and the
 * baseline ("--cpu-prof --cpu-prof-dir=/tmp/prof": where the gateway's time goes);
 * BENCH_BASELINE_NODE_ARGS, when set, for the baseline instead, and BENCH_FLOOR_NODE_ARGS for
 * the node floor (a runtime flag A/B: the same tree with and without it, in one run).
 */
function nodeArgsOf (key) {
  const env = process.env
  const value = key === 'gateway' ? env.BENCH_GATEWAY_NODE_ARGS
    : key === 'baseline' ? env.BENCH_BASELINE_NODE_ARGS ?? env.BENCH_GATEWAY_NODE_ARGS
      : key === 'floor' ? env.BENCH_FLOOR_NODE_ARGS : undefined
  return (value ?? '').split(' ').filter((a) => a !== '')
}

function gatewayService (key, dir) {
  const config = join(tmp, `${key}.json`)
  writeFileSync(config, JSON.stringify({
    server: { host: '127.0.0.1', port: ports[key] },
    auth: { jwt: { secret: jwtSecret } },
    upstreams: { echo: { targets: [`http://127.0.0.1:${ports.up[key]}`] } },
    routes: [
      { prefix: '/ws', upstream: 'echo' },
      { prefix: '/auth', upstream: 'echo', auth: 'required' },
      { prefix: '/', upstream: 'echo' }
    ],
    admin: { token: adminToken }
  }, null, 2))
  return {
    start: async () => {
      const nodeArgs = nodeArgsOf(key)
      // Run from its own checkout, as this tree's gateway runs from this one.
      const p = launch(key, [process.execPath, ...nodeArgs, join(dir, CLI)], {
        cwd: dir,
        core: PROXY_CORE,
        env: cleanEnv({
          NODE_ENV: 'production',
          GATEWAY_CONFIG: config,
          LOG_LEVEL: process.env.BENCH_GATEWAY_LOG_LEVEL ?? 'info',
          // BENCH_GATEWAY_TRACING=1: this tree's gateway (not the baseline) traces every request
          // and sends its spans to a sink in this process: the cost of tracing on.
          ...(key === 'gateway' && otlpSink !== null ? { OTEL_EXPORTER_OTLP_ENDPOINT: otlpSink.url } : {})
        }),
        logFile: join(tmp, `${key}.log`)
      })
      await waitHttp(`http://127.0.0.1:${ports[key]}/health`, 20_000, () => !p.exited)
      return p
    }
  }
}

/** The RSS of the gateway (and of the baseline) at a point of the run: does it grow run after run? */
function noteRss (after) {
  for (const key of ['gateway', 'baseline']) {
    const p = running[key]
    if (p && !p.exited) extra.rss[key].push({ after, kib: rssKiB([p.pid]) })
  }
}

/**
 * `HEAD <short hash> <subject>` of a checkout (read only), for the header and the JSON: which
 * revisions were compared. Uncommitted changes are not shown (the build is what ran).
 */
function revision (dir) {
  const r = spawnSync('git', ['-C', dir, 'log', '-1', '--format=%h %s'], { encoding: 'utf8' })
  if (r.status !== 0) return 'not a git checkout'
  const line = r.stdout.trim()
  return `HEAD ${line.length > 60 ? line.slice(0, 59) + '…' : line}`
}

async function startUpstream (env) {
  const p = launch('upstream', [process.execPath, join(benchDir, 'upstream.mjs')], {
    core: LOAD_CORE, env: { ...env, BENCH_PORTS: Object.entries(ports.up).map(([k, v]) => `${k}:${v}`).join(',') }, logFile: join(tmp, 'upstream.log'), ipc: true
  })
  await waitReady(p, 10_000)
  return p
}

async function startLoadgen (env) {
  const p = launch('loadgen', [process.execPath, join(benchDir, 'loadgen.mjs')], {
    core: LOAD_CORE, env: { ...env, BENCH_CLK_TCK: String(CLK_TCK) }, logFile: join(tmp, 'loadgen.log'), ipc: true
  })
  await waitReady(p, 10_000)
  return p
}

/**
 * Each path must echo a text and a binary message, answer a GET (64 bytes), pass a 16 KiB POST
 * body whole (the upstream says how much it got) and a 64 KiB answer whole; a gateway's auth
 * route must refuse a handshake without a token.
 */
async function verify () {
  const postBody = readFileSync(postBodyFile)
  for (const p of [...paths]) {
    const why = []
    try {
      const r = await ipc(loadgen, { cmd: 'probe', url: p.ws }, 10_000)
      if (!r.ok) why.push(`WebSocket echo: ${r.error}`)
      const h = await httpGet(p.http)
      if (h.status !== 200 || h.body.length !== 64) why.push(`GET ${p.http}: ${h.status}, ${h.body.length} bytes`)
      const post = await httpRequest(p.http, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: postBody })
      if (post.status !== 200 || post.headers['x-received'] !== String(postBody.length)) {
        why.push(`POST ${p.http} (${postBody.length} bytes): ${post.status}, upstream got ${post.headers['x-received'] ?? '?'} bytes`)
      }
      const big = await httpGet(`${p.http}big`)
      if (big.status !== 200 || big.body.length !== 64 * 1024) why.push(`GET ${p.http}big: ${big.status}, ${big.body.length} bytes`)
      if (p.httpClassic) {
        const c = await httpGet(p.httpClassic)
        if (c.status !== 200) why.push(`GET ${p.httpClassic}: ${c.status}`)
      }
      if (p.wsAuth) {
        const no = await ipc(loadgen, { cmd: 'probe', url: p.wsAuth }, 10_000)
        if (no.ok || no.error !== 'http 401') problem(`${p.key} /auth without a token: expected HTTP 401, got ${no.ok ? 'an open socket' : no.error}`)
        const yes = await ipc(loadgen, { cmd: 'probe', url: p.wsAuth, headers: { authorization: `Bearer ${jwt}` } }, 10_000)
        if (!yes.ok) why.push(`/auth with a JWT: ${yes.error}`)
        const m = await httpGet(`${p.admin}/metrics`)
        if (m.status !== 200) problem(`${p.key} GET /metrics: ${m.status}`)
        const a = await adminConnections(p)
        if (a === null) problem(`${p.key} admin API GET /admin/connections did not answer 200`)
      }
    } catch (err) {
      why.push(err.message)
    }
    if (why.length > 0) {
      problem(`${p.key}: verification failed (${why.join('; ')}): path skipped`)
      paths.splice(paths.indexOf(p), 1)
    }
  }
  for (const p of paths) await settleUpstream(p.key)
}

/** Drives a path through every kind of load briefly; nothing is recorded. */
async function warm (p) {
  const base = { warmupMs: 0, durationMs: S.warmStageMs, pids: pidsOf(p) }
  const u = S.warmUnits
  const t0 = Date.now()
  try {
    await loadgenPhase({ cmd: 'rtt', url: p.ws, conns: 50, size: S.rttSize, ...base, untilCount: u.rtt }, timeoutFor())
    await loadgenPhase({ cmd: 'stream', url: p.ws, conns: S.streamConns, window: S.streamWindow, size: S.streamSize, ...base, untilCount: u.stream }, timeoutFor())
    await loadgenPhase({ cmd: 'handshake', url: p.ws, headers: {}, concurrency: S.handshakeConcurrency, ...base, untilCount: u.handshake }, timeoutFor())
    if (p.wsAuth) {
      await loadgenPhase({ cmd: 'handshake', url: p.wsAuth, headers: { authorization: `Bearer ${jwt}` }, concurrency: S.handshakeConcurrency, ...base, untilCount: u.handshake }, timeoutFor())
    }
    for (const [url, variant] of [[p.http], [p.http, 'post'], [`${p.http}big`], [p.httpClassic]]) {
      if (url === undefined) continue
      const end = Date.now() + S.warmStageMs
      for (let n = 0; n < u.http && Date.now() < end;) n += (await httpLoad(url, 1, variant)).requests
    }
    log(`warm-up ${p.key}: ${((Date.now() - t0) / 1000).toFixed(1)} s`)
  } catch (err) {
    problem(`warm-up of ${p.key}: ${err.message}`)
  }
}

/** How many connections a gateway path's registry lists (its admin API), or null. */
async function adminConnections (p) {
  try {
    const r = await httpGet(`${p.admin}/admin/connections?limit=1`, { authorization: `Bearer ${adminToken}` })
    return r.status === 200 ? JSON.parse(r.body).total : null
  } catch { return null }
}

const upstreamStats = async (key) => (await ipc(upstream, { cmd: 'stats' }, 5000))[key]

/**
 * Waits (up to 5 s) until no more WebSockets than `level` are open on the path's upstream port
 * (a leak found earlier stays counted where it was found); returns the port's stats.
 */
async function settleUpstream (key, level = 0) {
  const end = Date.now() + 5000
  for (;;) {
    const s = await upstreamStats(key)
    if (s.wsOpen <= level || Date.now() > end) return s
    await sleep(100)
  }
}

/** Runs one measure with a deadline; a failure is recorded, reported and the run goes on. */
async function phase (scenario, p, run, fn) {
  const tag = `${scenario} ${p.key} run ${run + 1}/${S.runs}`
  const ws = SCENARIOS.find((s) => s.key === scenario).http !== true
  const openBefore = ws ? (await upstreamStats(p.key).catch(() => ({ wsOpen: 0 }))).wsOpen : 0
  let rec
  if (Date.now() - started > S.budgetMs) {
    rec = { failed: 'skipped: time budget' }
  } else if (!(await revive(p, tag))) {
    rec = { failed: `${p.key} is not running and did not restart` }
  } else {
    try {
      rec = await fn()
    } catch (err) {
      rec = { failed: err.message }
      problem(`${tag}: ${err.message}`)
      if ((err.timeout || loadgen.exited) && !interrupted) {
        // A stuck or dead load generator would poison every later phase: start a new one.
        await stopProc(loadgen, 1000)
        loadgen = await startLoadgen(cleanEnv({ NODE_ENV: 'production' }))
      }
    }
  }
  // After every WebSocket phase, no socket may be left open upstream (or in the registry).
  if (!rec.failed && ws) {
    const s = await settleUpstream(p.key, openBefore)
    rec.leftover = Math.max(0, s.wsOpen - openBefore)
    if (rec.leftover > 0) problem(`${tag}: ${rec.leftover} upstream WebSocket(s) still open 5 s after every client closed`)
    if (p.admin !== undefined && alive(p.key)) {
      const n = await adminConnections(p)
      rec.registryLeft = n
      if (n === null) problem(`${tag}: the ${p.key}'s admin API did not answer GET /admin/connections`)
      else if (n !== 0) problem(`${tag}: the ${p.key} registry still lists ${n} connection(s) after every client closed`)
    }
  }
  rec.loadavg1 = loadavg()[0]
  if (rec.errorCount > 0) problem(`${tag}: ${rec.errorCount} client error(s): ${JSON.stringify(rec.errors)}`)
  ;((records[scenario] ??= {})[p.key] ??= []).push(rec)
  log(`${tag.padEnd(28)} ${describe(scenario, rec)}`)
  return rec
}

/**
 * A process that died (reported when it happened) is started again, so one crash or stray kill
 * costs the phases it hit, not the rest of the run. Returns false when it cannot be restarted.
 */
async function revive (p, tag) {
  if (upstream.exited) {
    try { upstream = await startUpstream(cleanEnv({ NODE_ENV: 'production' })) } catch (err) { problem(`upstream restart: ${err.message}`); return false }
    problem(`the upstream was not running: restarted before ${tag}`)
  }
  if (p.key === 'direct' || alive(p.key)) return true
  try {
    await withTimeout(p.restart(), 40_000, `restart ${p.key}`)
  } catch (err) {
    problem(`${p.key} restart before ${tag}: ${err.message}`)
    return false
  }
  problem(`${p.key} was not running: restarted before ${tag}`)
  return true
}

function alive (key) {
  const p = running[key]
  return p !== undefined && !p.exited
}

function describe (scenario, r) {
  if (r.failed) return `FAILED: ${r.failed}`
  const f = (x, d = 1) => x === null || x === undefined ? '-' : x.toFixed(d)
  const u = r.proxyUtil !== undefined ? `, core use ${Math.round(r.proxyUtil * 100)}%/${Math.round(r.loadUtil * 100)}%` : ''
  switch (scenario) {
    case 'rtt50': case 'rtt500':
      return `${Math.round(r.rate)} msg/s, p50/p99/p99.9 ${f(r.p50, 2)}/${f(r.p99, 2)}/${f(r.p999, 2)} ms, CPU ${f(r.cpu)} µs/msg${u}`
    case 'rttStorm': case 'rttAdmin':
      return `${Math.round(r.rate)} msg/s, p50/p99/p99.9 ${f(r.p50, 2)}/${f(r.p99, 2)}/${f(r.p999, 2)} ms (p99 ${f(r.p99VsRtt500, 2)}x rtt500's), ` +
        `${Math.round(r.bgRate)} ${scenario === 'rttStorm' ? 'handshakes' : 'listings'}/s beside${u}`
    case 'stream': return `${f(r.rate)} MB/s, p99 echo ${f(r.p99, 2)} ms, CPU ${f(r.cpu)} µs/64 KiB${u}`
    case 'handshake': case 'handshakeJwt':
      return `${Math.round(r.rate)} handshakes/s, p99 open ${f(r.p99, 2)} ms, CPU ${f(r.cpu)} µs/handshake${u}`
    case 'idle': return `${r.held}/${r.opened} held, RSS ${Math.round(r.rssBefore / 1024)} -> ${Math.round(r.rssAfter / 1024)} MiB, ${f(r.rssPerConn, 2)} KiB/conn`
    case 'http': case 'httpPost': case 'httpBig': case 'httpClassic': return `${Math.round(r.rate)} req/s, p99 ${f(r.p99, 2)} ms, CPU ${f(r.cpu)} µs/request${u}`
  }
  return JSON.stringify(r)
}

const timeoutFor = (extraMs = 0) => S.warmupMs + S.durationMs + 60_000 + extraMs

/** Busy share of the load core (all cores minus the proxy when unpinned) over a window. */
function loadShare (busyUs, proxyCpuUs, seconds) {
  return Math.min(1.5, (LOAD_CORE !== null ? busyUs : busyUs - proxyCpuUs) / (seconds * 1e6))
}

/** Runs a loadgen command; the loadgen samples CPU and cores exactly at its window's edges. */
async function loadgenPhase (msg, timeoutMs) {
  const r = await ipc(loadgen, { ...msg, cores: LOAD_CORE !== null ? [LOAD_CORE] : null }, timeoutMs)
  r.loadUtil = loadShare(r.coreBusyUs, r.proxyCpuUs, r.seconds)
  return r
}

const pidsOf = (p) => ({ proxy: p.pids(), upstream: [upstream.pid] })

/**
 * Round trips on `conns` connections; with `background` (see loadgen.mjs), beside other load on
 * other connections of the same path (rttStorm, rttAdmin), and then the record also has that
 * load's rate and the ratio of its p99 to the path's rtt500 p99 of the same run.
 */
async function rttPhase (p, conns, background = null, run = null) {
  const r = await loadgenPhase({ cmd: 'rtt', url: p.ws, conns, size: S.rttSize, warmupMs: S.warmupMs, durationMs: S.durationMs, pids: pidsOf(p), background }, timeoutFor())
  if (r.connections < conns) problem(`rtt${conns}${background !== null ? ` (${background.kind} beside)` : ''} ${p.key}: only ${r.connections}/${conns} connections opened`)
  if (r.messages === 0) throw new Error(`no message echoed (${JSON.stringify(r.errors)})`)
  const loaded = background === null
    ? {}
    : {
        bgRate: r.background.count / r.seconds,
        p99VsRtt500: ratioTo(records.rtt500?.[p.key]?.[run]?.p99, r.latencyMs.p99)
      }
  return {
    ...loaded,
    rate: r.messages / r.seconds,
    p50: r.latencyMs.p50,
    p99: r.latencyMs.p99,
    p999: r.latencyMs.p999,
    max: r.latencyMs.max,
    cpu: r.proxyCpuUs / r.messages,
    cpuSys: r.proxySysUs / r.messages,
    proxyUtil: r.proxyCpuUs / (r.seconds * 1e6),
    loadUtil: r.loadUtil,
    upstreamCpu: r.upstreamCpuUs / r.messages,
    connections: r.connections,
    messages: r.messages,
    seconds: r.seconds,
    stealMs: r.stealUs / 1000,
    errorCount: r.errorCount,
    errors: r.errors
  }
}

/** value / base, or null when the base is missing (that phase not run, or failed). */
function ratioTo (base, value) {
  return typeof base === 'number' && base > 0 && typeof value === 'number' ? value / base : null
}

async function streamPhase (p) {
  const r = await loadgenPhase({
    cmd: 'stream', url: p.ws, conns: S.streamConns, window: S.streamWindow, size: S.streamSize, warmupMs: S.warmupMs, durationMs: S.durationMs, pids: pidsOf(p)
  }, timeoutFor())
  if (r.bytes === 0) throw new Error(`nothing echoed (${JSON.stringify(r.errors)})`)
  const units = r.bytes / S.streamSize
  return {
    rate: r.bytes / r.seconds / 1e6,
    p50: r.latencyMs.p50,
    p99: r.latencyMs.p99,
    max: r.latencyMs.max,
    cpu: r.proxyCpuUs / units,
    cpuSys: r.proxySysUs / units,
    proxyUtil: r.proxyCpuUs / (r.seconds * 1e6),
    loadUtil: r.loadUtil,
    upstreamCpu: r.upstreamCpuUs / units,
    connections: r.connections,
    bytes: r.bytes,
    seconds: r.seconds,
    stealMs: r.stealUs / 1000,
    errorCount: r.errorCount,
    errors: r.errors
  }
}

async function handshakePhase (p, url, headers) {
  const r = await loadgenPhase({
    cmd: 'handshake', url, headers, concurrency: S.handshakeConcurrency, warmupMs: S.warmupMs, durationMs: S.durationMs, pids: pidsOf(p)
  }, timeoutFor())
  if (r.handshakes === 0) throw new Error(`no handshake completed (${JSON.stringify(r.errors)})`)
  return {
    rate: r.handshakes / r.seconds,
    p50: r.openMs.p50,
    p99: r.openMs.p99,
    max: r.openMs.max,
    cpu: r.proxyCpuUs / r.handshakes,
    cpuSys: r.proxySysUs / r.handshakes,
    proxyUtil: r.proxyCpuUs / (r.seconds * 1e6),
    loadUtil: r.loadUtil,
    upstreamCpu: r.upstreamCpuUs / r.handshakes,
    handshakes: r.handshakes,
    seconds: r.seconds,
    stealMs: r.stealUs / 1000,
    errorCount: r.errorCount,
    errors: r.errors
  }
}

async function idlePhase (p) {
  await withTimeout(p.restart(), 40_000, `restart ${p.key}`)
  // Touch the path once so lazy start-up work is not counted as connection memory.
  const probe = await ipc(loadgen, { cmd: 'probe', url: p.ws }, 10_000)
  if (!probe.ok) throw new Error(`after restart: ${probe.error}`)
  await sleep(500)
  const pids = p.pids()
  const rssBefore = rssKiB(pids)
  const o = await ipc(loadgen, { cmd: 'idle-open', url: p.ws, conns: S.idle, concurrency: 50 }, 120_000)
  await sleep(S.idleSettleMs)
  const rssAfter = rssKiB(p.pids())
  const held = await ipc(loadgen, { cmd: 'idle-count' }, 10_000)
  const up = await upstreamStats(p.key)
  await ipc(loadgen, { cmd: 'idle-close' }, 60_000)
  if (held.open < o.opened) problem(`idle ${p.key}: ${o.opened - held.open} of ${o.opened} idle connections were closed by the path within ${S.idleSettleMs} ms`)
  if (up.wsOpen < held.open) problem(`idle ${p.key}: upstream has ${up.wsOpen} sockets for ${held.open} open client connections`)
  if (o.opened === 0) throw new Error(`no idle connection opened (${JSON.stringify(o.errors)})`)
  return {
    rssPerConn: (rssAfter - rssBefore) / o.opened,
    held: held.open,
    opened: o.opened,
    rssBefore,
    rssAfter,
    openSeconds: o.openSeconds,
    upstreamOpen: up.wsOpen,
    errorCount: o.errorCount,
    errors: o.errors
  }
}

// ---------------------------------------------------------------- HTTP

function runTool (argv, timeoutMs) {
  return new Promise((resolve, reject) => {
    const pinned = withPriority(LOAD_CORE !== null ? ['taskset', '-c', String(LOAD_CORE), ...argv] : argv)
    const child = spawn(pinned[0], pinned.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    const p = { name: argv[0], child, pid: child.pid, exited: false, expected: true }
    procs.add(p)
    let out = ''
    let err = ''
    child.stdout.on('data', (c) => { out += c })
    child.stderr.on('data', (c) => { err += c })
    const timer = setTimeout(() => { try { process.kill(-child.pid, 'SIGKILL') } catch { /* gone */ } }, timeoutMs)
    child.on('error', (e) => { clearTimeout(timer); procs.delete(p); reject(e) })
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      p.exited = true
      procs.delete(p)
      if (code === 0) resolve(out)
      else reject(new Error(`${argv[0]} ${signal ?? `exit ${code}`}: ${err.trim().slice(0, 300)}`))
    })
  })
}

const toMs = (v, unit) => Number(v) * ({ us: 1e-3, ms: 1, s: 1000, m: 60_000 }[unit] ?? NaN)

/**
 * One HTTP load run: { requests, seconds, p99, non2xx, errors }. `variant` 'post': every request a
 * POST of the httpPost body (wrk: the Lua script written at start; autocannon: the body file).
 */
async function httpLoad (url, seconds, variant) {
  const post = variant === 'post'
  if (httpTool === 'wrk') {
    const out = await runTool(['wrk', '-t1', `-c${S.httpConns}`, `-d${seconds}s`, '--timeout', '5s', '--latency', ...(post ? ['-s', postLua] : []), url], seconds * 1000 + 20_000)
    const reqs = /(\d+) requests in ([\d.]+)(us|ms|s|m)\b/.exec(out)
    const p99 = /^\s*99%\s+([\d.]+)(us|ms|s|m)\b/m.exec(out)
    const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out)
    const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)
    if (reqs === null) throw new Error(`cannot read wrk output: ${out.slice(0, 200)}`)
    const errors = {}
    if (non2xx) errors.non2xx = Number(non2xx[1])
    if (sock) ['connect', 'read', 'write', 'timeout'].forEach((k, i) => { if (Number(sock[i + 1]) > 0) errors[k] = Number(sock[i + 1]) })
    return { requests: Number(reqs[1]), seconds: toMs(reqs[2], reqs[3]) / 1000, p99: p99 ? toMs(p99[1], p99[2]) : null, errors }
  }
  const bin = join(root, 'node_modules/autocannon/autocannon.js')
  const body = post ? ['-m', 'POST', '-i', postBodyFile, '-H', 'content-type=application/octet-stream'] : []
  const out = await runTool([process.execPath, bin, '-c', String(S.httpConns), '-d', String(seconds), '-t', '5', ...body, '-j', url], seconds * 1000 + 20_000)
  const j = JSON.parse(out)
  const errors = {}
  if (j.non2xx) errors.non2xx = j.non2xx
  if (j.errors) errors.errors = j.errors
  if (j.timeouts) errors.timeouts = j.timeouts
  return { requests: j.requests.total, seconds: j.duration, p99: j.latency.p99, errors }
}

async function httpPhase (p, url, variant) {
  if (S.warmupMs >= 1000) await httpLoad(url, Math.round(S.warmupMs / 1000), variant)
  const pids = p.pids()
  const st0 = await upstreamStats(p.key)
  const up0 = cpuMicros([upstream.pid])
  const c0 = cpuTimes(pids)
  const t0 = coreTimes(LOAD_CORE !== null ? [LOAD_CORE] : null)
  const s0 = coreTimes(null)
  const w0 = process.hrtime.bigint()
  const seconds = Math.max(1, Math.round(S.durationMs / 1000))
  const w = await httpLoad(url, seconds, variant)
  const wall = Number(process.hrtime.bigint() - w0) / 1e9
  const c1 = cpuTimes(pids)
  const cpu = c1.user + c1.sys - c0.user - c0.sys
  const t1 = coreTimes(LOAD_CORE !== null ? [LOAD_CORE] : null)
  const s1 = coreTimes(null)
  const st1 = await upstreamStats(p.key)
  if (w.requests === 0) throw new Error('no request answered')
  const errorCount = Object.values(w.errors).reduce((a, b) => a + b, 0)
  return {
    rate: w.requests / w.seconds,
    p99: w.p99,
    cpu: cpu / w.requests,
    cpuSys: (c1.sys - c0.sys) / w.requests,
    proxyUtil: cpu / (wall * 1e6),
    loadUtil: loadShare(t1.busy - t0.busy, cpu, wall),
    upstreamCpu: (cpuMicros([upstream.pid]) - up0) / w.requests,
    // New upstream connections per request: ~0 with keep-alive, 1 for nginx's classic config.
    upstreamConnsPerRequest: (st1.tcpAccepted - st0.tcpAccepted) / w.requests,
    requests: w.requests,
    seconds: w.seconds,
    stealMs: (s1.steal - s0.steal) / 1000,
    errorCount,
    errors: w.errors
  }
}

// ---------------------------------------------------------------- logs

/**
 * What a peer prints in normal operation, start and stop included: not a finding. HAProxy's
 * master says when it forks its worker and, on SIGTERM, that it stops it (the worker exits
 * with 143); Caddy warns at start that its admin endpoint and automatic HTTPS are off (as
 * configured) and says goodbye at SIGTERM. wrk ends each run with its 50 requests in flight:
 * Caddy logs an error for each answer it was still writing then (broken pipe, connection reset,
 * context canceled), @fastify/http-proxy one for each request it was still proxying
 * (RequestAbortedError, mostly in the POST and 64 KiB rows). (The gateway logs none of these at
 * warn or above.)
 */
const LOG_EXPECTED = {
  fastify: [/"level":50,.*"type":"RequestAbortedError"/],
  haproxy: [/^\[NOTICE\]/, /Exiting Master process/, /Current worker \(\d+\) exited with code 143/, /All workers exited/],
  caddy: [
    /"msg":"admin endpoint disabled"/, /"msg":"automatic HTTPS is completely disabled for server"/, /"msg":"exiting; byeee!!/,
    /"msg":"aborting with incomplete response","error":"(context canceled|write tcp [^"]*: (broken pipe|connection reset by peer))"/
  ]
}

/**
 * Counts the warn/error/fatal lines of a log, by message: JSON lines with pino's numeric levels
 * (the gateway, @fastify/http-proxy) or zap's names (Caddy); any other non-empty line (nginx's
 * error log, HAProxy's output, a Node peer's stack trace) counts as a problem, unless one of
 * the `expected` patterns matches it.
 */
async function scanLog (file, expected = []) {
  if (!existsSync(file)) return null
  const byLevel = {}
  const messages = new Map()
  const count = (key) => messages.set(key, (messages.get(key) ?? 0) + 1)
  let lines = 0
  const rl = createInterface({ input: createReadStream(file), crlfDelay: Infinity })
  for await (const line of rl) {
    lines++
    if (line.trim() === '' || expected.some((re) => re.test(line))) continue
    if (!line.startsWith('{')) {
      count(`(text) ${line.slice(0, 120)}`)
      continue
    }
    let level
    let msg
    try { ({ level, msg } = JSON.parse(line)) } catch { continue }
    byLevel[level] = (byLevel[level] ?? 0) + 1
    const severity = typeof level === 'number'
      ? (level >= 50 ? 'error' : level >= 40 ? 'warn' : null)
      : ({ warn: 'warn', error: 'error', dpanic: 'error', panic: 'error', fatal: 'error' }[level] ?? null)
    if (severity !== null) count(`${severity}: ${msg}`)
  }
  return { lines, byLevel, problems: Object.fromEntries(messages) }
}

async function finish (error) {
  if (error) problem(`aborted: ${error.message}`)
  await withTimeout(stopAll(), 20_000, 'stopping children').catch((err) => problem(err.message))
  for (const [key, file] of Object.entries(LOGS)) {
    const name = COLUMNS.find((c) => c.key === key).title
    const s = await scanLog(join(tmp, file), LOG_EXPECTED[key]).catch(() => null)
    if (s === null) continue
    extra.logs[name] = s
    const n = Object.values(s.problems).reduce((a, b) => a + b, 0)
    if (n > 0) {
      keepTemp = true
      problem(`${name} logged ${n} warning/error line(s): ${JSON.stringify(s.problems).slice(0, 400)} (log: ${join(tmp, file)})`)
    }
  }

  const summary = summarize(records)
  const rows = tableRows(summary)
  const columns = COLUMNS.filter((c) => paths.some((p) => p.key === c.key) || Object.values(summary).some((s) => s[c.key] !== undefined))
  const table = renderTable(rows, columns)
  const vsPeers = peerComparison(summary)
  const versions = toolVersions()
  const lines = [
    '',
    `Tollgate bench (${opts.quick ? 'quick' : 'full'}), ${new Date(started).toISOString()}, median of ${S.runs} run(s), ${S.durationMs / 1000} s per phase`,
    `machine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Linux ${release()}, Node ${process.version}; load average ${startLoad.toFixed(1)} at start, ${loadavg()[0].toFixed(1)} at end`,
    `${pinNote}${opts.nice > 0 ? `; nice -${opts.nice}` : ''}`,
    `peers: ${versions.join(', ')}; HTTP load: ${httpTool} (${S.httpConns} conns)`,
    `gateway: ${CLI} (${revision(root)}), NODE_ENV=production, LOG_LEVEL=info (a log line per request/connection), admin API + registry + /metrics on`,
    ...(opts.baseline !== null ? [`baseline: ${join(opts.baseline, CLI)} (${revision(opts.baseline)}), started as the gateway is`] : []),
    ...['gateway', 'baseline', 'floor'].filter((k) => nodeArgsOf(k).length > 0).map((k) => `node flags of the ${k}: ${nodeArgsOf(k).join(' ')}`),
    '',
    table,
    '',
    ...renderPeerComparison(vsPeers),
    '',
    '(0.45d 1.2f 0.80n) = 0.45 x direct, 1.2 x the node floor (gateway and baseline only), 0.80 x nginx.',
    '  Rates: higher is better; latency, CPU, RSS: lower is better.',
    'p99 / own rtt500 p99: that path\'s round-trip p99 with the other load beside, over its rtt500 p99 of the same run.',
    'CPU = user+sys CPU time of the proxy process(es) per unit of work (the headline: it holds on a noisy machine).',
    'direct column: no proxy; its CPU and RSS figures are the echo upstream\'s own, for scale.',
    ...(opts.baseline !== null ? ['baseline column: the gateway built in --baseline DIR, same config, env and core as the gateway column.'] : []),
    'core use % proxy/load: busy share of the proxy process / of the load core (loadgen+upstream) in the window;',
    '  ~100 on one side tells which side bounded the rate. Details: bench/README.md.'
  ]
  for (const [key, list] of Object.entries(extra.rss)) {
    if (list.length > 0) lines.push(`${key} RSS through the run (MiB): ${list.map((r) => `${r.after} ${Math.round(r.kib / 1024)}`).join(', ')}`)
  }
  if (problems.length > 0) {
    lines.push('', `problems (${problems.length}):`)
    for (const p of problems) lines.push(`  - ${p}`)
  } else {
    lines.push('', 'problems: none (no client error, no socket left open upstream, no warning in the logs)')
  }
  mkdirSync(join(benchDir, 'results'), { recursive: true })
  const stamp = new Date(started).toISOString().replace(/[:.]/g, '-')
  const jsonPath = join(benchDir, 'results', `${stamp}.json`)
  writeFileSync(jsonPath, JSON.stringify({
    startedAt: new Date(started).toISOString(),
    seconds: (Date.now() - started) / 1000,
    mode: opts.quick ? 'quick' : 'full',
    settings: S,
    machine: { cpus: cpus().length, model: cpus()[0]?.model, kernel: release(), node: process.version, memGiB: totalmem() / 2 ** 30 },
    pinning: { pinned: pin, proxyCore: PROXY_CORE, loadCore: LOAD_CORE, nice: opts.nice, note: pinNote },
    peers: versions,
    httpTool,
    table: rows.filter((r) => r.cells).map((r) => ({
      scenario: r.scenario,
      figure: r.label,
      field: r.field,
      cells: Object.fromEntries(Object.entries(r.cells).map(([k, c]) => [k, { value: c.value ?? null, vsDirect: c.vsDirect ?? null, vsFloor: c.vsFloor ?? null, vsNginx: c.vsNginx ?? null, text: c.text }]))
    })),
    // The gateway's (and the baseline's) CPU per unit over each peer's, per scenario.
    vsPeers,
    medians: summary,
    records,
    // Which builds the gateway and baseline columns ran.
    trees: { gateway: { dir: root, revision: revision(root) }, baseline: opts.baseline !== null ? { dir: opts.baseline, revision: revision(opts.baseline) } : null },
    nodeArgs: { gateway: nodeArgsOf('gateway'), baseline: nodeArgsOf('baseline'), floor: nodeArgsOf('floor') },
    gatewayRss: extra.rss.gateway,
    baselineRss: extra.rss.baseline,
    logs: extra.logs,
    problems
  }, null, 2))
  lines.push('', `JSON: ${relative(process.cwd(), jsonPath)}`)
  if (keepTemp || opts.keep) lines.push(`logs and configs kept in ${tmp}`)
  process.stdout.write(lines.join('\n') + '\n')
  cleanupTemp()
}

/** The versions of the peers (those installed) and of ws, for the header and the JSON. */
function toolVersions () {
  const v = []
  const nb = findNginx()
  if (nb !== null) {
    const r = spawnSync(nb, ['-v'], { encoding: 'utf8' })
    v.push(((r.stderr || r.stdout) ?? '').trim().replace(/^nginx version: /, '') + ' (1 worker)')
  }
  const hb = findHaproxy()
  if (hb !== null) v.push(`HAProxy ${haproxyVersion(hb) ?? '?'} (1 worker, nbthread 1)`)
  const cb = findCaddy()
  if (cb !== null) v.push(`Caddy ${caddyVersion(cb) ?? '?'} (GOMAXPROCS=1)`)
  for (const pkg of ['@fastify/http-proxy', 'fast-gateway', 'faye-websocket', 'http-proxy', 'ws']) {
    try {
      const pj = JSON.parse(readFileSync(join(root, 'node_modules', pkg, 'package.json'), 'utf8'))
      v.push(`${pkg} ${pj.version}`)
    } catch { /* not installed */ }
  }
  return v
}

// Hard stop: whatever happens, the harness ends and takes its children with it.
const hardStop = setTimeout(() => {
  process.stderr.write('bench: hard time limit reached; stopping\n')
  children.killAll()
  process.exit(3)
}, S.budgetMs + 5 * 60_000)
hardStop.unref()

let failure = null
try {
  await main()
} catch (err) {
  failure = err
}
await finish(failure)
process.exit(failure ? 1 : 0)
