/**
 * Backpressure through the bridge: a peer that stops reading makes the gateway stop reading the
 * other peer (pressure reaches the sender, whose own ws.bufferedAmount grows), the gateway's
 * memory stays bounded, and every byte arrives in order once the slow peer reads again.
 * The gateway runs in a child process so that its VmRSS is measured apart from this process,
 * which holds the test's own 50 MiB of messages.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type WebSocket from 'ws'
import { startUpstream } from '../../helpers/upstream.js'
import type { GatewayStats } from '../fixtures/gateway-process.js'
import { connect, nextMessage } from '../../helpers/ws.js'
import { waitFor, within } from '../../helpers/resources.js'
import type { GatewayConfigInput } from '../../../src/config/schema.js'

const MiB = 1024 * 1024
const COUNT = 200
const SIZE = 256 * 1024
const TOTAL = COUNT * SIZE
/** The brief's bound on the gateway's memory growth while 50 MiB are pushed through it. */
const MAX_GROWTH = 64 * MiB
const HEADER = 4 + 32

const root = fileURLToPath(new URL('../../..', import.meta.url))
const fixture = fileURLToPath(new URL('../fixtures/gateway-process.ts', import.meta.url))
const haveProc = existsSync('/proc/self/status')

/** Messages of SIZE bytes: sequence number, SHA-256 of the body, random body. */
function makeMessages (): Buffer[] {
  const out: Buffer[] = []
  for (let seq = 0; seq < COUNT; seq++) {
    const m = Buffer.allocUnsafe(SIZE)
    m.writeUInt32BE(seq, 0)
    const body = m.subarray(HEADER)
    randomBytes(body.length).copy(body)
    createHash('sha256').update(body).digest().copy(m, 4)
    out.push(m)
  }
  return out
}

/** Checks that messages arrive whole, binary, in sequence; `done` resolves after the last one. */
function verifier (): { onMessage: (data: Buffer, isBinary: boolean) => void, done: Promise<void>, received: () => number } {
  let next = 0
  let resolve!: () => void
  let reject!: (err: Error) => void
  const done = new Promise<void>((res, rej) => { resolve = res; reject = rej })
  const onMessage = (data: Buffer, isBinary: boolean): void => {
    if (next >= COUNT) { reject(new Error('more messages than sent')); return }
    const seq = data.length >= 4 ? data.readUInt32BE(0) : -1
    if (!isBinary || data.length !== SIZE || seq !== next) {
      reject(new Error(`message ${next}: got seq ${seq}, ${data.length} bytes, binary ${isBinary}`))
      return
    }
    const digest = createHash('sha256').update(data.subarray(HEADER)).digest()
    if (!digest.equals(data.subarray(4, HEADER))) { reject(new Error(`message ${next}: body corrupted`)); return }
    next++
    if (next === COUNT) resolve()
  }
  return { onMessage, done, received: () => next }
}

interface GatewayProcess { pid: number, wsUrl: string, rss (): number, stats (): Promise<GatewayStats> }

/** Starts the gateway in a child process (see fixtures/gateway-process.ts); killed after the test. */
async function startGatewayProcess (t: TestContext, config: GatewayConfigInput): Promise<GatewayProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', fixture, JSON.stringify(config)], {
    cwd: root,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env }
  })
  const exited = once(child, 'exit')
  t.after(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
    await exited
    clearTimeout(timer)
  })
  const pending = new Map<number, (s: GatewayStats) => void>()
  let nextId = 0
  let listening!: (port: number) => void
  const port = new Promise<number>((resolve) => { listening = resolve })
  child.on('message', (m: { type: string, port: number, id: number, stats: GatewayStats }) => {
    if (m.type === 'listening') listening(m.port)
    else if (m.type === 'stats') { pending.get(m.id)?.(m.stats); pending.delete(m.id) }
  })
  const died = exited.then(() => { throw new Error('gateway process exited') })
  died.catch(() => {})
  const p = await within(Promise.race([port, died]), 60_000, 'gateway process start')
  const pid = child.pid!
  return {
    pid,
    wsUrl: `ws://127.0.0.1:${p}`,
    rss: () => {
      // After the process exited (cleanup) there is nothing left to measure.
      if (child.exitCode !== null || child.signalCode !== null) return 0
      let status: string
      try { status = readFileSync(`/proc/${pid}/status`, 'utf8') } catch { return 0 }
      const m = /VmRSS:\s+(\d+) kB/.exec(status)
      return m === null ? 0 : Number(m[1]) * 1024
    },
    stats: () => {
      const id = nextId++
      const answer = new Promise<GatewayStats>((resolve) => { pending.set(id, resolve) })
      child.send({ type: 'stats', id })
      return within(Promise.race([answer, died]), 5000, 'gateway stats')
    }
  }
}

/** Samples `read` every few ms; `stop()` returns the largest value seen. */
function sampleMax (read: () => number, everyMs = 10): { stop: () => number } {
  let max = read()
  let timer: NodeJS.Timeout | null = setInterval(() => { max = Math.max(max, read()) }, everyMs)
  return {
    stop: () => {
      if (timer !== null) { clearInterval(timer); timer = null; max = Math.max(max, read()) }
      return max
    }
  }
}

/**
 * Polls `read` until its value stays the same for `quietMs` (nothing signals "every buffer on
 * the way is full"), and returns that value.
 */
async function steadyValue (read: () => Promise<number>, what: string, quietMs = 300, timeoutMs = 15_000): Promise<number> {
  const deadline = performance.now() + timeoutMs
  let last = await read()
  let since = performance.now()
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 20))
    const v = await read()
    const now = performance.now()
    if (v !== last) { last = v; since = now } else if (now - since >= quietMs) return v
    if (now > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
  }
}

/** Pushes a few messages through an echo path so that the baseline includes warmed-up pools and JIT. */
async function warmUp (wsUrl: string): Promise<void> {
  const ws = await connect(`${wsUrl}/bp/echo`)
  const m = randomBytes(SIZE)
  for (let i = 0; i < 8; i++) {
    ws.send(m)
    const echo = await nextMessage(ws)
    assert.equal(echo.data.length, SIZE)
  }
  ws.close()
}

const gatewayConfig = (upstreamUrl: string): GatewayConfigInput => ({
  routes: [{ prefix: '/bp', upstream: upstreamUrl }],
  websocket: { maxPayload: '1mb', highWaterMark: '1mb' }
})

test('slow upstream: the client is paused, the gateway stays bounded, every byte arrives in order', { skip: !haveProc && 'needs /proc to read the gateway RSS', timeout: 60_000 }, async (t) => {
  let slow!: (ws: WebSocket) => void
  const slowConn = new Promise<WebSocket>((resolve) => { slow = resolve })
  const up = await startUpstream({
    maxPayload: 2 * SIZE,
    onConnection: (ws, req) => {
      if (req.url === '/bp/slow') { ws.pause(); slow(ws); return }
      ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }))
    }
  })
  t.after(() => up.close())
  const gw = await startGatewayProcess(t, gatewayConfig(up.url))
  await warmUp(gw.wsUrl)
  const baseline = gw.rss()
  const peak = sampleMax(gw.rss)
  t.after(() => { peak.stop() })

  const client = await connect(`${gw.wsUrl}/bp/slow`)
  t.after(() => client.terminate())
  const upWs = await within(slowConn, 5000, 'upstream connection')
  const check = verifier()
  upWs.on('message', check.onMessage)
  const messages = makeMessages()
  for (const m of messages) client.send(m, { binary: true })

  // The upstream reads nothing: once the gateway's write buffer and the kernel buffers towards
  // the upstream are full, the gateway must stop reading the client, which keeps the rest.
  const read = await steadyValue(async () => (await gw.stats()).bytesFromClient, 'the gateway to stop reading the client')
  assert.equal(check.received(), 0)
  t.diagnostic(`gateway stopped after reading ${(read / MiB).toFixed(1)} of ${TOTAL / MiB} MiB from the client; client still buffers ${(client.bufferedAmount / MiB).toFixed(1)} MiB`)
  assert.ok(read < TOTAL / 2, `the gateway read ${(read / MiB).toFixed(1)} MiB from the client while the upstream read nothing`)
  // What the gateway did not read stays with the sender (its kernel buffer holds a few MiB at most).
  assert.ok(client.bufferedAmount > TOTAL / 4, `pressure does not reach the client: it buffers only ${(client.bufferedAmount / MiB).toFixed(1)} MiB`)
  const whilePaused = gw.rss() - baseline
  assert.ok(whilePaused < MAX_GROWTH, `gateway RSS grew ${(whilePaused / MiB).toFixed(1)} MiB while paused`)

  upWs.resume()
  await within(check.done, 30_000, 'all messages at the upstream')
  await waitFor(() => client.bufferedAmount === 0, 'the client send buffer to drain')
  const growth = peak.stop() - baseline
  t.diagnostic(`gateway RSS baseline ${(baseline / MiB).toFixed(1)} MiB, peak growth ${(growth / MiB).toFixed(1)} MiB`)
  assert.ok(growth < MAX_GROWTH, `gateway RSS grew ${(growth / MiB).toFixed(1)} MiB`)
})

test('client that does not read: the upstream is paused, the gateway stays bounded, every byte arrives in order', { skip: !haveProc && 'needs /proc to read the gateway RSS', timeout: 60_000 }, async (t) => {
  let flood!: (ws: WebSocket) => void
  const floodConn = new Promise<WebSocket>((resolve) => { flood = resolve })
  const up = await startUpstream({
    maxPayload: 2 * SIZE,
    onConnection: (ws, req) => {
      if (req.url === '/bp/flood') { flood(ws); return }
      ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }))
    }
  })
  t.after(() => up.close())
  const gw = await startGatewayProcess(t, gatewayConfig(up.url))
  await warmUp(gw.wsUrl)
  const baseline = gw.rss()
  const peak = sampleMax(gw.rss)
  t.after(() => { peak.stop() })

  const client = await connect(`${gw.wsUrl}/bp/flood`)
  t.after(() => client.terminate())
  client.pause()
  const check = verifier()
  client.on('message', check.onMessage)
  const upWs = await within(floodConn, 5000, 'upstream connection')
  const messages = makeMessages()
  for (const m of messages) upWs.send(m, { binary: true })

  const read = await steadyValue(async () => (await gw.stats()).bytesToClient, 'the gateway to stop reading the upstream')
  assert.equal(check.received(), 0)
  t.diagnostic(`gateway stopped after reading ${(read / MiB).toFixed(1)} of ${TOTAL / MiB} MiB from the upstream; upstream still buffers ${(upWs.bufferedAmount / MiB).toFixed(1)} MiB`)
  assert.ok(read < TOTAL / 2, `the gateway read ${(read / MiB).toFixed(1)} MiB from the upstream while the client read nothing`)
  assert.ok(upWs.bufferedAmount > TOTAL / 4, `pressure does not reach the upstream: it buffers only ${(upWs.bufferedAmount / MiB).toFixed(1)} MiB`)
  const whilePaused = gw.rss() - baseline
  assert.ok(whilePaused < MAX_GROWTH, `gateway RSS grew ${(whilePaused / MiB).toFixed(1)} MiB while paused`)

  client.resume()
  await within(check.done, 30_000, 'all messages at the client')
  await waitFor(() => upWs.bufferedAmount === 0, 'the upstream send buffer to drain')
  const growth = peak.stop() - baseline
  t.diagnostic(`gateway RSS baseline ${(baseline / MiB).toFixed(1)} MiB, peak growth ${(growth / MiB).toFixed(1)} MiB`)
  assert.ok(growth < MAX_GROWTH, `gateway RSS grew ${(growth / MiB).toFixed(1)} MiB`)
})
