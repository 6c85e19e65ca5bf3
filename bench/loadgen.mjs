#!/usr/bin/env node
// The bench's WebSocket load generator. Started by bench/run.mjs with an IPC channel, pinned to
// the same core as the echo upstream; it runs one command at a time and answers with its result:
//   { id, cmd: 'rtt', url, conns, size, warmupMs, durationMs, pids, background? }
//   { id, cmd: 'stream', url, conns, window, size, warmupMs, durationMs, pids }
//   { id, cmd: 'handshake', url, concurrency, headers, warmupMs, durationMs, pids }
//   { id, cmd: 'idle-open', url, conns, concurrency } / { id, cmd: 'idle-close' }
//   { id, cmd: 'probe', url, headers }
// `pids` are the processes whose CPU time (utime+stime from /proc/<pid>/stat) is read exactly at
// the start and the end of the measured window, so the harness can divide CPU by work done.
// rtt's `background` runs other load on other connections of the same path for the whole phase
// (warm-up and window), from this same process (so from the load core, like the rest):
//   { kind: 'handshake', url, headers, concurrency }: open/close loops, as the handshake command;
//   { kind: 'http', url, headers, concurrency }: GET loops on keep-alive connections (e.g. the
//     gateway's admin listing).
// Its completions inside the window are counted; the round trips are measured as without it.
// Kept lean on purpose (it shares a core with the upstream): no per-message allocation besides
// what ws itself does, one preallocated timestamp slot per connection, a log-linear histogram.
import http from 'node:http'
import WebSocket from 'ws'
import { coreTimes, cpuMicros, cpuTimes } from './proc.mjs'

const HANDSHAKE_TIMEOUT = 5000
const CLOSE_TIMEOUT = 5000

/**
 * Log-linear latency histogram in µs: exact below 1024 µs, then 512 buckets per power of two
 * (0.2 % resolution), up to ~35 minutes. ~12k counters, allocated once.
 */
class Histogram {
  constructor () { this.counts = new Float64Array(1024 + 22 * 512); this.n = 0; this.max = 0 }
  reset () { this.counts.fill(0); this.n = 0; this.max = 0 }
  add (us) {
    let v = us < 0 ? 0 : Math.floor(us)
    if (v > 0x7fffffff) v = 0x7fffffff
    if (v > this.max) this.max = v
    this.n++
    if (v < 1024) { this.counts[v]++; return }
    const e = 31 - Math.clz32(v)
    this.counts[1024 + (e - 10) * 512 + ((v >>> (e - 9)) & 511)]++
  }
  /** The value (µs, bucket midpoint) at quantile q (0..1); null when empty. */
  quantile (q) {
    if (this.n === 0) return null
    const target = Math.max(1, Math.ceil(q * this.n))
    let seen = 0
    for (let b = 0; b < this.counts.length; b++) {
      seen += this.counts[b]
      if (seen >= target) {
        if (b < 1024) return b + 0.5
        const e = ((b - 1024) >> 9) + 10
        const sub = (b - 1024) & 511
        const lo = (512 + sub) * 2 ** (e - 9)
        return Math.min(lo + 2 ** (e - 9) / 2, this.max)
      }
    }
    return this.max
  }
  summary () {
    const ms = (x) => x === null ? null : x / 1000
    return { count: this.n, p50: ms(this.quantile(0.5)), p99: ms(this.quantile(0.99)), p999: ms(this.quantile(0.999)), max: ms(this.max) }
  }
}

const hist = new Histogram()
const now = () => process.hrtime.bigint()
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

class Errors {
  constructor () { this.map = new Map() }
  add (what) { this.map.set(what, (this.map.get(what) ?? 0) + 1) }
  get total () { let n = 0; for (const v of this.map.values()) n += v; return n }
  toJSON () { return Object.fromEntries(this.map) }
}

function errText (err) {
  const m = String(err?.code ?? err?.message ?? err)
  // "Unexpected server response: 502" -> "http 502"
  const http = /Unexpected server response: (\d+)/.exec(m)
  return http ? `http ${http[1]}` : m.slice(0, 80)
}

/** An all-zero masking key: ws then skips masking (and copying) what the load generator sends. */
const zeroMask = (mask) => mask.fill(0)

function wsOptions (headers) {
  return { perMessageDeflate: false, handshakeTimeout: HANDSHAKE_TIMEOUT, headers: headers ?? {}, maxPayload: 8 * 1024 * 1024, generateMask: zeroMask }
}

/** Opens one socket; resolves with it, or with null after recording why it failed. */
function openOne (url, opts, errors) {
  return new Promise((resolve) => {
    let ws
    try { ws = new WebSocket(url, opts) } catch (err) { errors.add(errText(err)); resolve(null); return }
    const onError = (err) => { ws.removeListener('open', onOpen); errors.add(errText(err)); resolve(null) }
    const onOpen = () => { ws.removeListener('error', onError); ws.on('error', () => {}); resolve(ws) }
    ws.once('open', onOpen)
    ws.once('error', onError)
  })
}

/** Opens n sockets, at most `concurrency` handshakes at a time. */
async function openMany (url, n, concurrency, opts, errors) {
  const out = []
  let next = 0
  const worker = async () => {
    while (next < n) {
      next++
      const ws = await openOne(url, opts, errors)
      if (ws !== null) out.push(ws)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker))
  return out
}

/** Closes (1000) and waits for each socket to be closed; terminates those that take too long. */
function closeAll (list) {
  return Promise.all(list.map((ws) => new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) { resolve(); return }
    const timer = setTimeout(() => { ws.terminate(); resolve() }, CLOSE_TIMEOUT)
    ws.once('close', () => { clearTimeout(timer); resolve() })
    if (ws.readyState === WebSocket.OPEN) ws.close(1000)
    else if (ws.readyState === WebSocket.CONNECTING) ws.terminate()
  })))
}

/**
 * Calls onStart, waits durationMs, calls onEnd; samples CPU of the proxy and upstream processes,
 * of this process and of the load cores right at those two instants.
 */
async function measured ({ pids, cores, untilCount }, durationMs, onStart, onEnd, counter) {
  const cpu0 = cpuTimes(pids.proxy ?? [])
  const up0 = cpuMicros(pids.upstream ?? [])
  const core0 = coreTimes(cores ?? null)
  const all0 = coreTimes(null)
  const self0 = process.cpuUsage()
  const t0 = now()
  onStart()
  if (untilCount > 0) {
    // Warm-up use: stop as soon as enough work was done (a slow, busy machine needs longer).
    const end = Date.now() + durationMs
    while (Date.now() < end && counter() < untilCount) await sleep(Math.min(50, end - Date.now()))
  } else {
    await sleep(durationMs)
  }
  onEnd()
  const t1 = now()
  const cpu1 = cpuTimes(pids.proxy ?? [])
  const up1 = cpuMicros(pids.upstream ?? [])
  const core1 = coreTimes(cores ?? null)
  const all1 = coreTimes(null)
  const self = process.cpuUsage(self0)
  return {
    seconds: Number(t1 - t0) / 1e9,
    proxyCpuUs: cpu1.user + cpu1.sys - cpu0.user - cpu0.sys,
    proxySysUs: cpu1.sys - cpu0.sys,
    upstreamCpuUs: up1 - up0,
    loadgenCpuUs: self.user + self.system,
    coreBusyUs: core1.busy - core0.busy,
    stealUs: all1.steal - all0.steal
  }
}

/** Closed loop: each connection has one `size`-byte message in flight at any time. */
async function rtt (msg) {
  const { url, conns, size, warmupMs, durationMs, openConcurrency = 50 } = msg
  const errors = new Errors()
  const sockets = await openMany(url, conns, openConcurrency, wsOptions(), errors)
  const payload = Buffer.alloc(size, 0x61)
  const sendOpts = { binary: true }
  const sentAt = new BigInt64Array(sockets.length)
  let measuring = false
  let running = true
  let count = 0
  hist.reset()
  sockets.forEach((ws, i) => {
    ws.on('message', () => {
      const t = now()
      if (measuring) { hist.add(Number(t - sentAt[i]) / 1000); count++ }
      if (running) { sentAt[i] = now(); ws.send(payload, sendOpts) }
    })
    ws.on('close', () => { if (running) errors.add('closed during phase') })
  })
  // The background load (if any) starts with the round trips, so the warm-up covers both.
  const bg = msg.background ? startBackground(msg.background, errors) : null
  for (let i = 0; i < sockets.length; i++) { sentAt[i] = now(); sockets[i].send(payload, sendOpts) }
  await sleep(warmupMs)
  const m = await measured(msg, durationMs, () => { count = 0; hist.reset(); measuring = true; bg?.window(true) }, () => { measuring = false; bg?.window(false) }, () => count)
  running = false
  const lat = hist.summary()
  const background = bg === null ? null : await bg.stop()
  await closeAll(sockets)
  return { ...m, connections: sockets.length, messages: count, latencyMs: lat, background, errors: errors.toJSON(), errorCount: errors.total }
}

/**
 * Starts rtt's background load (see the header); its errors go to `errors`, prefixed with its
 * kind. window(on) marks the measured window's edges; stop() ends the loops and resolves with
 * { kind, concurrency, count } (completions inside the window).
 */
function startBackground ({ kind, url, headers, concurrency }, errors) {
  let running = true
  let counting = false
  let count = 0
  const tagged = { add: (what) => errors.add(`${kind}: ${what}`) }
  let once
  let agent = null
  if (kind === 'handshake') {
    const opts = wsOptions(headers)
    once = () => handshakeOnce(url, opts, tagged, null)
  } else if (kind === 'http') {
    // One keep-alive connection per loop, as a dashboard or a script polling the API would use.
    agent = new http.Agent({ keepAlive: true, maxSockets: concurrency })
    once = () => new Promise((resolve) => {
      const req = http.get(url, { headers, agent, timeout: 5000 }, (res) => {
        res.resume()
        res.on('end', () => {
          if (res.statusCode !== 200) tagged.add(`http ${res.statusCode}`)
          resolve(res.statusCode === 200)
        })
        res.on('error', (err) => { tagged.add(errText(err)); resolve(false) })
      })
      req.on('timeout', () => req.destroy(new Error('timeout')))
      req.on('error', (err) => { tagged.add(errText(err)); resolve(false) })
    })
  } else {
    throw new Error(`unknown background kind ${kind}`)
  }
  const loop = async () => {
    while (running) {
      const ok = await once()
      if (ok && counting) count++
      // A failing path must not become a hot loop.
      if (!ok) await sleep(20)
    }
  }
  const loops = Array.from({ length: concurrency }, loop)
  return {
    window (on) { if (on) count = 0; counting = on },
    async stop () {
      running = false
      await Promise.all(loops)
      agent?.destroy()
      return { kind, concurrency, count }
    }
  }
}

/** Each connection keeps `window` messages of `size` bytes in flight; counts bytes echoed back. */
async function stream (msg) {
  const { url, conns, window, size, warmupMs, durationMs } = msg
  const errors = new Errors()
  const sockets = await openMany(url, conns, 16, wsOptions(), errors)
  const payload = Buffer.alloc(size)
  for (let i = 0; i < size; i++) payload[i] = i & 0xff
  const sendOpts = { binary: true }
  let measuring = false
  let running = true
  let bytes = 0
  let messages = 0
  hist.reset()
  sockets.forEach((ws) => {
    // Echoes come back in the order they were sent: a ring of `window` send times per
    // connection gives each message's echo time (send to last byte back).
    const sentAt = new BigInt64Array(window)
    let head = 0
    let tail = 0
    const send = () => { sentAt[tail] = now(); tail = (tail + 1) % window; ws.send(payload, sendOpts) }
    ws.on('message', (data) => {
      const t = now()
      const t0 = sentAt[head]
      head = (head + 1) % window
      if (measuring) { bytes += data.length; messages++; hist.add(Number(t - t0) / 1000) }
      if (running) send()
    })
    ws.on('close', () => { if (running) errors.add('closed during phase') })
    for (let k = 0; k < window; k++) send()
  })
  await sleep(warmupMs)
  const m = await measured(msg, durationMs, () => { bytes = 0; messages = 0; hist.reset(); measuring = true }, () => { measuring = false }, () => messages)
  running = false
  const lat = hist.summary()
  await closeAll(sockets)
  return { ...m, connections: sockets.length, bytes, messages, latencyMs: lat, errors: errors.toJSON(), errorCount: errors.total }
}

/**
 * One handshake: open a socket, close it (1000), wait for the close to complete. Resolves true
 * when it went that way; onOpenUs (when given) gets the open time in µs.
 */
function handshakeOnce (url, opts, errors, onOpenUs) {
  return new Promise((resolve) => {
    const t0 = now()
    let ws
    try { ws = new WebSocket(url, opts) } catch (err) { errors.add(errText(err)); resolve(false); return }
    let timer = null
    let timedOut = false
    ws.once('open', () => {
      if (onOpenUs !== null) onOpenUs(Number(now() - t0) / 1000)
      timer = setTimeout(() => { errors.add('close timeout'); timedOut = true; ws.terminate() }, CLOSE_TIMEOUT)
      ws.close(1000)
    })
    ws.on('error', (err) => { if (ws.readyState !== WebSocket.CLOSING) errors.add(errText(err)) })
    ws.once('close', (code) => {
      if (timer !== null) clearTimeout(timer)
      const ok = timer !== null && code === 1000
      if (timer !== null && code !== 1000 && !timedOut) errors.add(`close code ${code}`)
      resolve(ok)
    })
  })
}

/** `concurrency` loops of: open a socket, close it (1000), wait for the close to complete. */
async function handshake (msg) {
  const { url, concurrency, headers, warmupMs, durationMs } = msg
  const errors = new Errors()
  const opts = wsOptions(headers)
  let measuring = false
  let running = true
  let count = 0
  hist.reset()
  const onOpenUs = (us) => { if (measuring) hist.add(us) }
  const once = () => handshakeOnce(url, opts, errors, onOpenUs)
  const loop = async () => {
    while (running) {
      const ok = await once()
      // Completions inside the window count, as for messages: steady state, same edges for every path.
      if (ok && measuring) count++
      // A failing path must not become a hot loop.
      if (!ok) await sleep(20)
    }
  }
  const loops = Array.from({ length: concurrency }, loop)
  await sleep(warmupMs)
  const m = await measured(msg, durationMs, () => { count = 0; hist.reset(); measuring = true }, () => { measuring = false }, () => count)
  running = false
  const lat = hist.summary()
  await Promise.all(loops)
  return { ...m, handshakes: count, openMs: lat, errors: errors.toJSON(), errorCount: errors.total }
}

let idleSockets = []
async function idleOpen ({ url, conns, concurrency = 50 }) {
  const errors = new Errors()
  const t0 = now()
  idleSockets = await openMany(url, conns, concurrency, wsOptions(), errors)
  return { opened: idleSockets.length, openSeconds: Number(now() - t0) / 1e9, errors: errors.toJSON(), errorCount: errors.total }
}

/** How many of the idle sockets are still open (a proxy may drop idle connections). */
async function idleCount () {
  return { open: idleSockets.filter((ws) => ws.readyState === WebSocket.OPEN).length, total: idleSockets.length }
}

async function idleClose () {
  const still = idleSockets.filter((ws) => ws.readyState === WebSocket.OPEN).length
  await closeAll(idleSockets)
  const n = idleSockets.length
  idleSockets = []
  return { closed: n, stillOpenBeforeClose: still }
}

/** One socket: a text and a binary message must come back byte for byte. */
async function probe ({ url, headers }) {
  const errors = new Errors()
  const ws = await openOne(url, wsOptions(headers), errors)
  if (ws === null) return { ok: false, error: Object.keys(errors.toJSON())[0] ?? 'failed' }
  const bin = Buffer.from([0, 1, 2, 250, 255])
  const got = []
  const done = new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), 3000)
    ws.on('message', (data, isBinary) => {
      got.push({ data: Buffer.from(data), isBinary })
      if (got.length === 2) { clearTimeout(t); resolve(true) }
    })
  })
  ws.send('hello', { binary: false })
  ws.send(bin, { binary: true })
  const arrived = await done
  await closeAll([ws])
  const ok = arrived && got[0].isBinary === false && got[0].data.toString() === 'hello' && got[1].isBinary === true && got[1].data.equals(bin)
  return { ok, error: ok ? undefined : 'echo mismatch or timeout' }
}

const commands = { rtt, stream, handshake, 'idle-open': idleOpen, 'idle-count': idleCount, 'idle-close': idleClose, probe }

process.on('message', async (msg) => {
  const fn = commands[msg?.cmd]
  if (fn === undefined) { process.send?.({ id: msg?.id, ok: false, error: `unknown command ${msg?.cmd}` }); return }
  try {
    process.send?.({ id: msg.id, ok: true, result: await fn(msg) })
  } catch (err) {
    process.send?.({ id: msg.id, ok: false, error: String(err?.stack ?? err) })
  }
})
process.on('disconnect', () => process.exit(0))
process.on('SIGTERM', () => process.exit(0))
process.on('SIGINT', () => process.exit(0))
process.send?.({ ready: true })
