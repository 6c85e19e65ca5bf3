#!/usr/bin/env node
// `npm run bench:idle -- [--conns 50000]`: holds that many idle WebSocket connections bridged
// through the built gateway at once and reports the gateway's resident memory (RSS of the
// gateway process and its workers, summed; and their PSS, which counts pages the processes share
// once) before and while they are open. Bounded in time (--timeout, default 300 s); every child
// is stopped at the end, on Ctrl-C and on SIGTERM.
//
// Both readings are taken once memory has settled: V8 keeps the young generation it grew while
// busy (starting up, or taking 50,000 handshakes) until its memory reducer runs, some 10-20 s
// after the process went quiet, and an idle gateway is measured idle. The script samples every
// second for --settle seconds (default 30), reads at the end and prints the peak it saw too.
//
// The load side is lean on purpose: its clients and upstreams are raw sockets that do the
// handshake by hand and answer pings, so that the machine's memory and CPU go to the gateway.
// A process may hold at most RLIMIT_NOFILE sockets (`ulimit -Hn`), and a bridged connection
// costs the gateway two, so the script spreads the work: `--workers` gateway workers (node:cluster,
// default: as many as the limit needs), several client and upstream processes, and a source
// address per client process (127.0.0.x) so that no address pair runs out of ephemeral ports.
//
// Usage: npm run bench:idle [-- --conns N] [--workers N] [--settle SEC] [--timeout SEC]
import { createChildren } from './children.mjs'
import { cleanEnv, freePort, sleep, waitHttp } from './util.mjs'
import { childPids, memKiB } from './proc.mjs'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createHash, randomBytes } from 'node:crypto'
import http from 'node:http'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
const UPSTREAM_PORTS = 4
const self = fileURLToPath(import.meta.url)
const root = fileURLToPath(new URL('..', import.meta.url))

// ------------------------------------------------------------------ peers (child processes)

/** Answers pings on an idle socket (a server's pings unmasked, a client's masked). */
function answerPings (socket, maskPong) {
  let buf = Buffer.alloc(0)
  socket.on('data', (chunk) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
    for (;;) {
      if (buf.length < 2) return
      const masked = (buf[1] & 0x80) !== 0
      const len = buf[1] & 0x7f
      const head = 2 + (masked ? 4 : 0)
      if (len > 125 || buf.length < head + len) return
      const opcode = buf[0] & 0x0f
      const payload = Buffer.from(buf.subarray(head, head + len))
      if (masked) for (let i = 0; i < len; i++) payload[i] ^= buf[2 + (i & 3)]
      buf = buf.subarray(head + len)
      if (opcode === 0x9) {
        const out = Buffer.alloc(2 + (maskPong ? 4 : 0) + len)
        out[0] = 0x8a
        out[1] = (maskPong ? 0x80 : 0) | len
        payload.copy(out, maskPong ? 6 : 2) // an all-zero mask leaves the payload as it is
        socket.write(out)
      } else if (opcode === 0x8) {
        socket.end()
      }
    }
  })
}

/**
 * Several listening ports per upstream process: the gateway's connections to one address and
 * port all come from 127.0.0.1, whose ephemeral ports (about 28,000) they must share.
 */
async function runUpstream () {
  const ports = []
  for (let i = 0; i < UPSTREAM_PORTS; i++) {
    const server = http.createServer((_req, res) => { res.writeHead(426); res.end() })
    server.on('upgrade', (req, socket) => {
      const accept = createHash('sha1').update(req.headers['sec-websocket-key'] + GUID).digest('base64')
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`)
      socket.on('error', () => {})
      answerPings(socket, false)
    })
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
    ports.push(server.address().port)
  }
  process.send({ ports })
}

async function runClients () {
  const sockets = []
  let failed = 0
  /** Sockets that were open and closed since (the gateway or the machine dropped them). */
  let lost = 0
  /** Why handshakes failed: an HTTP status line or an error code, with counts. */
  const reasons = {}
  process.on('message', async (m) => {
    if (m.cmd === 'open') {
      let next = 0
      const openOne = () => new Promise((resolve) => {
        const socket = net.connect({ host: '127.0.0.1', port: m.port, localAddress: m.localAddress })
        const key = randomBytes(16).toString('base64')
        let head = ''
        let settled = false
        const done = (ok, why) => {
          if (settled) return
          settled = true
          socket.removeAllListeners('data')
          if (ok) { sockets.push(socket); socket.once('close', () => { lost++ }); answerPings(socket, true) } else { failed++; reasons[why] = (reasons[why] ?? 0) + 1; socket.destroy() }
          resolve()
        }
        socket.setTimeout(30_000, () => done(false, 'no answer within 30 s'))
        socket.on('error', (err) => done(false, err.code ?? err.message))
        socket.on('close', () => done(false, 'closed before the answer'))
        socket.on('connect', () => socket.write(`GET /idle HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`))
        socket.on('data', (c) => {
          head += c.toString('latin1')
          if (!head.includes('\r\n\r\n')) return
          socket.setTimeout(0)
          done(head.startsWith('HTTP/1.1 101'), head.slice(0, head.indexOf('\r\n')))
        })
      })
      const worker = async () => { while (next < m.count) { next++; await openOne() } }
      await Promise.all(Array.from({ length: m.concurrency }, worker))
      process.send({ open: sockets.length, failed, reasons })
    } else if (m.cmd === 'count') {
      process.send({ count: sockets.length - lost })
    } else if (m.cmd === 'close') {
      for (const s of sockets) s.destroy()
      process.send({ closed: sockets.length })
    }
  })
  process.send({ ready: true })
}

// ------------------------------------------------------------------ the harness

function parseArgs (argv) {
  const o = { conns: 50_000, workers: null, settle: 30, timeout: 300 }
  for (let i = 0; i < argv.length; i++) {
    const v = Number(argv[i + 1])
    switch (argv[i]) {
      case '--conns': o.conns = v; i++; break
      case '--workers': o.workers = v; i++; break
      case '--settle': o.settle = v; i++; break
      case '--timeout': o.timeout = v; i++; break
      case '-h': case '--help':
        process.stdout.write('Usage: npm run bench:idle [-- --conns N] [--workers N] [--settle SEC] [--timeout SEC]\n')
        process.exit(0)
        break
      default: throw new Error(`unknown option ${argv[i]}`)
    }
  }
  for (const [k, v] of Object.entries(o)) if (v !== null && !(Number.isInteger(v) && v > 0)) throw new Error(`--${k}: a positive integer`)
  return o
}

/**
 * Memory of the gateway: its process and its workers (node:cluster forks them from it). No
 * reading at all is an error, not a zero: a zero would pass the 1 GiB check.
 */
function gatewayMem (pid) {
  const pids = [pid, ...childPids(pid)]
  const m = memKiB(pids)
  if (m.rss === 0) throw new Error(`no memory reading for the gateway (pid ${pid})`)
  return { ...m, processes: pids.length }
}

/**
 * Samples gatewayMem every second for `seconds`; returns the last sample and the peak RSS seen.
 * The wait is fixed rather than "until it stops changing": V8's memory reducer shrinks the young
 * generation in one step some 10-20 s after the process went quiet, after a flat stretch.
 */
async function settledMem (pid, seconds) {
  let last = gatewayMem(pid)
  let peak = last.rss
  for (let i = 0; i < seconds; i++) {
    await sleep(1000)
    last = gatewayMem(pid)
    peak = Math.max(peak, last.rss)
  }
  return { ...last, peak, seconds }
}

const mib = (kib) => kib === null ? 'unknown' : `${(kib / 1024).toFixed(0)} MiB`

function request (child, msg, key) {
  return new Promise((resolve) => {
    const on = (m) => { if (m[key] !== undefined) { child.removeListener('message', on); resolve(m) } }
    child.on('message', on)
    if (msg !== null) child.send(msg)
  })
}

async function main () {
  const o = parseArgs(process.argv.slice(2))
  const log = (s) => process.stdout.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)}s] ${s}\n`)
  const started = Date.now()
  const nofile = Number(spawnSync('/bin/sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).stdout.trim()) || 1024
  const perProcess = Math.max(100, nofile - 1000)
  // Each bridged connection holds two sockets in the gateway, one in a client and one in an upstream process.
  const workers = o.workers ?? Math.max(1, Math.ceil((o.conns * 2) / perProcess))
  const peers = Math.max(1, Math.ceil(o.conns / perProcess))
  const tmp = mkdtempSync(join(tmpdir(), 'tollgate-idle-'))
  let problems = 0
  const children = createChildren({ cwd: root, nofile, onProblem: (m) => { problems++; log(`PROBLEM: ${m}`) } })
  const deadline = setTimeout(() => { log(`PROBLEM: not done within ${o.timeout} s`); children.killAll(); process.exit(1) }, o.timeout * 1000)
  const cleanup = () => { children.killAll(); process.exit(130) }
  process.once('SIGINT', cleanup)
  process.once('SIGTERM', cleanup)
  log(`${o.conns} idle connections; RLIMIT_NOFILE ${nofile} per process: ${workers} gateway worker(s), ${peers} client and ${peers} upstream process(es); temp dir ${tmp}`)
  try {
    const ups = []
    for (let i = 0; i < peers; i++) {
      const p = children.launch(`upstream-${i}`, [process.execPath, self, '--peer', 'upstream'], { ipc: true, logFile: join(tmp, `upstream-${i}.log`) })
      ups.push({ p, ports: (await request(p.child, null, 'ports')).ports })
    }
    const port = await freePort()
    const config = join(tmp, 'gateway.json')
    writeFileSync(config, JSON.stringify({
      server: { host: '127.0.0.1', port },
      upstreams: { idle: { targets: ups.flatMap((u) => u.ports.map((port) => `http://127.0.0.1:${port}`)) } },
      routes: [{ prefix: '/idle', upstream: 'idle' }]
    }))
    const args = [process.execPath, join(root, 'dist/src/gateway/cli.js'), ...(workers > 1 ? ['--workers', String(workers)] : [])]
    const gw = children.launch('gateway', args, { env: cleanEnv({ GATEWAY_CONFIG: config, LOG_LEVEL: 'warn' }), logFile: join(tmp, 'gateway.log') })
    await waitHttp(`http://127.0.0.1:${port}/health`, 30_000, () => !gw.exited)
    await sleep(workers > 1 ? 1500 : 300) // every worker listening
    const before = await settledMem(gw.pid, o.settle)
    log(`gateway up (${workers} worker(s), ${before.processes} processes), after ${before.seconds} s: RSS ${mib(before.rss)} in all, PSS ${mib(before.pss)} (peak RSS ${mib(before.peak)})`)
    const clients = []
    for (let i = 0; i < peers; i++) {
      const p = children.launch(`clients-${i}`, [process.execPath, '--max-old-space-size=2048', self, '--peer', 'clients'], { ipc: true, logFile: join(tmp, `clients-${i}.log`) })
      await request(p.child, null, 'ready')
      clients.push(p)
    }
    const t0 = Date.now()
    const results = await Promise.all(clients.map((p, i) => {
      const count = Math.floor(o.conns / peers) + (i < o.conns % peers ? 1 : 0)
      return request(p.child, { cmd: 'open', port, count, concurrency: 64, localAddress: `127.0.0.${10 + i}` }, 'open')
    }))
    const open = results.reduce((a, r) => a + r.open, 0)
    const failed = results.reduce((a, r) => a + r.failed, 0)
    const reasons = {}
    for (const r of results) for (const [k, n] of Object.entries(r.reasons)) reasons[k] = (reasons[k] ?? 0) + n
    log(`${open} open, ${failed} failed${failed > 0 ? ` (${Object.entries(reasons).map(([k, n]) => `${n}x ${k}`).join(', ')})` : ''}, in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
    const during = await settledMem(gw.pid, o.settle)
    const per = open > 0 ? (during.rss - before.rss) / open : 0
    const perPss = open > 0 && during.pss !== null && before.pss !== null ? (during.pss - before.pss) / open : null
    log(`holding ${open} idle bridged connections, after ${during.seconds} s: gateway RSS ${mib(during.rss)} in all (${(during.rss / 1048576).toFixed(2)} GiB), PSS ${mib(during.pss)}; peak RSS ${mib(during.peak)}`)
    log(`per connection: ${per.toFixed(2)} KiB RSS, ${perPss === null ? 'unknown' : perPss.toFixed(2)} KiB PSS (over ${mib(before.rss)} RSS / ${mib(before.pss)} PSS before)`)
    // Every connection must still be open after the wait (the gateway's pings are answered).
    const still = (await Promise.all(clients.map((p) => request(p.child, { cmd: 'count' }, 'count')))).reduce((a, r) => a + r.count, 0)
    if (still !== open) log(`PROBLEM: ${open - still} connection(s) closed while held`)
    await Promise.all(clients.map((p) => request(p.child, { cmd: 'close' }, 'closed')))
    const verdict = open === o.conns && failed === 0 && still === open && during.rss < 1048576
    if (!verdict) problems++
    log(`${verdict ? 'OK' : 'NOT MET'}: ${still}/${o.conns} connections held, gateway RSS ${(during.rss / 1048576).toFixed(2)} GiB (target: under 1 GiB)`)
    await children.stopAll()
    clearTimeout(deadline)
    if (problems === 0) rmSync(tmp, { recursive: true, force: true })
    else log(`logs kept in ${tmp}`)
    process.exit(verdict && problems === 0 ? 0 : 1)
  } catch (err) {
    log(`PROBLEM: ${err.message}`)
    await children.stopAll()
    process.exit(1)
  }
}

if (process.argv[2] === '--peer') {
  if (process.argv[3] === 'upstream') await runUpstream()
  else await runClients()
} else {
  await main()
}
