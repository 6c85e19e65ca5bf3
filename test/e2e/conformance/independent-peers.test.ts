/**
 * The same conformance from WebSocket implementations of other code bases: clients on aiohttp,
 * tornado (Debian's python3 packages) and undici's WebSocket (Node's own), an upstream on Python
 * websockets. With permessage-deflate negotiated end to end between them, messages of all kinds,
 * one split across hundreds of frames, and close codes pass through the gateway intact.
 */
import { describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { WebSocket as UndiciWebSocket } from 'undici'
import WebSocket from 'ws'
import { upstreamFor } from '../../helpers/upstream.js'
import { gatewayFor, type TestGateway } from '../../helpers/gateway.js'
import { waitFor } from '../../helpers/resources.js'
import { watch, within, type CloseInfo } from './support/lab.js'
import { havePython, patterned, runClient, startPeer, type Json } from './support/peers.js'

const MiB = 1024 * 1024
const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex')
const TEXT = 'héllo wörld ✓ κόσμε'

/** What every client below sends, and the messages it must get back (as the peers describe them). */
const STEPS = [
  { op: 'send', type: 'text', data: TEXT }, { op: 'recv' },
  { op: 'send', type: 'binary', size: 65536 }, { op: 'recv' },
  { op: 'send', type: 'text', size: MiB }, { op: 'recv' },
  { op: 'send', type: 'text', data: 'frames 300 100000' }, { op: 'recv' }
]
const EXPECTED = [
  { type: 'text', sha256: sha(TEXT) },
  { type: 'binary', sha256: sha(patterned(65536, false)) },
  { type: 'text', sha256: sha(patterned(MiB, true)) },
  { type: 'text', sha256: sha(patterned(100000, true)) }
]
const received = (r: Json): Array<{ type: unknown, sha256: unknown }> => (r.received as Json[]).map((m) => ({ type: m.type, sha256: m.sha256 }))

/**
 * A ws upstream with permessage-deflate that echoes, and answers "frames N SIZE" with a text
 * message of SIZE bytes in N frames; it records each connection's offer, its answer and its close.
 */
async function wsUpstream (t: TestContext): Promise<{ url: string, offers: Map<string, string>, answers: Map<string, string>, closes: Map<string, CloseInfo>, frames: Map<string, number> }> {
  const offers = new Map<string, string>()
  const answers = new Map<string, string>()
  const closes = new Map<string, CloseInfo>()
  const frames = new Map<string, number>()
  const up = await upstreamFor(t, {
    perMessageDeflate: true,
    onConnection: (ws, req) => {
      const path = req.url ?? ''
      offers.set(path, String(req.headers['sec-websocket-extensions']))
      ws.on('message', (d: Buffer, isBinary: boolean) => {
        const s = isBinary ? '' : d.toString()
        if (s.startsWith('frames ')) {
          const [, n, size] = s.split(' ').map(Number)
          const data = patterned(size, true)
          const step = Math.ceil(size / n)
          let count = 0
          for (let i = 0; i < size; i += step) { ws.send(data.subarray(i, i + step), { binary: false, fin: i + step >= size }); count++ }
          frames.set(path, count)
        } else ws.send(d, { binary: isBinary })
      })
      ws.on('close', (code: number, reason: Buffer) => closes.set(path, { code, reason: reason.toString() }))
    }
  })
  up.wss.on('headers', (headers: string[], req) => {
    const line = headers.find((h) => h.toLowerCase().startsWith('sec-websocket-extensions:'))
    if (line !== undefined) answers.set(req.url ?? '', line.slice(line.indexOf(':') + 1).trim())
  })
  return { url: up.url, offers, answers, closes, frames }
}

/** The Python websockets upstream (echo, "frames N SIZE", "close CODE REASON"), and its events. */
async function pythonUpstream (t: TestContext): Promise<{ url: string, peer: ReturnType<typeof startPeer> }> {
  const peer = startPeer(t, 'websockets_server.py', { compression: true, timeout: 30 })
  const l = await peer.line((x) => x.event === 'listening', 10_000, 'its port')
  return { url: `http://127.0.0.1:${Number(l.port)}`, peer }
}

async function gateway (t: TestContext, routes: Array<{ prefix: string, upstream: string }>): Promise<TestGateway> {
  return gatewayFor(t, { server: { drainTimeout: '200ms' }, websocket: { maxPayload: '4mb' }, routes })
}

/** Node's own WebSocket (undici): sends STEPS, collects the answers, closes with `close`. */
async function undiciClient (url: string, close: { code: number, reason: string } | null): Promise<{ received: Array<{ type: string, sha256: string }>, extensions: string, closed: CloseInfo }> {
  const ws = new UndiciWebSocket(url)
  ws.binaryType = 'arraybuffer'
  const got: Array<{ type: string, sha256: string }> = []
  let wake: (() => void) | null = null
  ws.addEventListener('message', (e) => {
    const d = e.data as string | ArrayBuffer
    got.push(typeof d === 'string' ? { type: 'text', sha256: sha(d) } : { type: 'binary', sha256: sha(Buffer.from(d)) })
    wake?.()
  })
  const closed = new Promise<CloseInfo>((resolve) => ws.addEventListener('close', (e) => resolve({ code: e.code, reason: e.reason })))
  await within(new Promise((resolve, reject) => { ws.addEventListener('open', resolve); ws.addEventListener('error', reject) }), 5000, 'the undici client to open')
  try {
    for (const step of STEPS) {
      if (step.op === 'recv') {
        const want = got.length + 1
        await within(new Promise<void>((resolve) => { wake = () => { if (got.length >= want) resolve() }; wake() }), 5000, 'an answer')
        continue
      }
      const p = step.data !== undefined ? step.data : patterned(step.size!, step.type === 'text')
      ws.send(typeof p === 'string' ? p : step.type === 'text' ? p.toString() : new Uint8Array(p))
    }
  } finally {
    if (close !== null) ws.close(close.code, close.reason)
  }
  return { received: got, extensions: ws.extensions, closed: await within(closed, 5000, 'the undici client to close') }
}

describe('independent clients through the gateway to a ws upstream (permessage-deflate)', () => {
  for (const [name, script, module] of [['aiohttp', 'aiohttp_client.py', 'aiohttp'], ['tornado', 'tornado_client.py', 'tornado']] as const) {
    test(`independent ${name} client (python3-${name}): deflate negotiated end to end, text, binary, 1 MiB and a message in 300 frames echoed intact, its close 4000 "bye" reaches the upstream`, { timeout: 30_000 }, async (t) => {
      if (!havePython(t, module)) return
      const up = await wsUpstream(t)
      const gw = await gateway(t, [{ prefix: '/ws', upstream: up.url }])
      const r = await runClient(t, script, { url: `${gw.wsUrl}/ws/${name}`, compress: true, steps: [...STEPS, { op: 'close', code: 4000, reason: 'bye' }] })
      assert.deepEqual(received(r), EXPECTED)
      assert.equal(up.frames.get(`/ws/${name}`), 300, 'the upstream sent that message as 300 frames')
      assert.match(up.offers.get(`/ws/${name}`) ?? '', /^permessage-deflate/, 'the client\'s offer reached the upstream')
      assert.equal(r.extensions, up.answers.get(`/ws/${name}`), 'the upstream\'s answer reached the client as it was')
      await waitFor(() => up.closes.has(`/ws/${name}`), 'the upstream to see the close', 5000)
      assert.deepEqual(up.closes.get(`/ws/${name}`), { code: 4000, reason: 'bye' })
    })
  }

  test('independent undici WebSocket client (Node\'s own): deflate negotiated end to end, text, binary, 1 MiB and a message in 300 frames echoed intact, its close 4000 "bye" reaches the upstream', { timeout: 30_000 }, async (t) => {
    const up = await wsUpstream(t)
    const gw = await gateway(t, [{ prefix: '/ws', upstream: up.url }])
    const r = await undiciClient(`${gw.wsUrl}/ws/undici`, { code: 4000, reason: 'bye' })
    assert.deepEqual(r.received, EXPECTED)
    assert.equal(up.frames.get('/ws/undici'), 300)
    assert.match(up.offers.get('/ws/undici') ?? '', /^permessage-deflate/)
    assert.equal(r.extensions, up.answers.get('/ws/undici'))
    assert.equal(r.closed.code, 4000)
    await waitFor(() => up.closes.has('/ws/undici'), 'the upstream to see the close', 5000)
    assert.deepEqual(up.closes.get('/ws/undici'), { code: 4000, reason: 'bye' })
  })
})

describe('an independent upstream (python3-websockets) behind the gateway', () => {
  test('independent websockets upstream: a ws client with deflate gets the upstream\'s own answer, a message sent as 300 frames arrives whole, messages echo, the client\'s close 4001 reaches the upstream', { timeout: 30_000 }, async (t) => {
    if (!havePython(t, 'websockets')) return
    const py = await pythonUpstream(t)
    const gw = await gateway(t, [{ prefix: '/py', upstream: py.url }])
    const ws = new WebSocket(`${gw.wsUrl}/py/ws-client`, { perMessageDeflate: true })
    let answered: string | undefined
    ws.once('upgrade', (res) => { answered = res.headers['sec-websocket-extensions'] })
    const client = watch(ws)
    t.after(() => ws.terminate())
    await within(new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) }), 5000, 'the client to open')
    const open = await py.peer.line((l) => l.event === 'open', 5000, 'the connection')
    const headers = open.headers as Record<string, string>
    assert.equal(open.path, '/py/ws-client')
    assert.match(headers['sec-websocket-extensions'], /^permessage-deflate/, 'the client\'s offer reached the upstream')
    assert.equal(answered, open.extensions, 'the upstream\'s answer reached the client unchanged')
    assert.equal(headers['x-forwarded-for'], '127.0.0.1')
    ws.send('frames 300 100000')
    ws.send(TEXT)
    ws.send(patterned(MiB, false))
    await waitFor(() => client.messages.length === 3, () => `3 messages (${client.messages.length})`, 5000)
    assert.deepEqual(client.messages.map((m) => [m.isBinary, sha(m.data)]), [[false, sha(patterned(100000, true))], [false, sha(TEXT)], [true, sha(patterned(MiB, false))]])
    ws.close(4001, 'leaving')
    const closed = await py.peer.line((l) => l.event === 'closed', 5000, 'the close')
    assert.deepEqual([closed.code, closed.reason], [4001, 'leaving'])
    assert.equal((await within(client.closed, 3000, 'the client to close')).code, 4001)
  })

  for (const [name, script, module] of [['aiohttp', 'aiohttp_client.py', 'aiohttp'], ['tornado', 'tornado_client.py', 'tornado']] as const) {
    test(`independent ${name} client to the websockets upstream (no ws at either end): deflate as the upstream chose it, all messages intact, the upstream's close 4002 "later" reaches the client`, { timeout: 30_000 }, async (t) => {
      if (!havePython(t, module) || !havePython(t, 'websockets')) return
      const py = await pythonUpstream(t)
      const gw = await gateway(t, [{ prefix: '/py', upstream: py.url }])
      const r = await runClient(t, script, { url: `${gw.wsUrl}/py/${name}`, compress: true, steps: [...STEPS, { op: 'send', type: 'text', data: 'close 4002 later' }, { op: 'wait_close' }] })
      assert.deepEqual(received(r), EXPECTED)
      const open = await py.peer.line((l) => l.event === 'open', 5000, 'the connection')
      assert.equal(r.extensions, open.extensions, 'the upstream\'s answer reached the client unchanged')
      assert.match(String(r.extensions), /^permessage-deflate/)
      assert.equal(r.close_code, 4002)
      if (r.close_reason !== null) assert.equal(r.close_reason, 'later')
    })
  }

  test('independent undici client to the websockets upstream: all messages intact, the upstream\'s close 4002 "later" reaches the client with its reason', { timeout: 30_000 }, async (t) => {
    if (!havePython(t, 'websockets')) return
    const py = await pythonUpstream(t)
    const gw = await gateway(t, [{ prefix: '/py', upstream: py.url }])
    const ws = new UndiciWebSocket(`${gw.wsUrl}/py/undici`)
    const closed = new Promise<CloseInfo>((resolve) => ws.addEventListener('close', (e) => resolve({ code: e.code, reason: e.reason })))
    const got: string[] = []
    ws.addEventListener('message', (e) => { got.push(String(e.data)) })
    await within(new Promise((resolve, reject) => { ws.addEventListener('open', resolve); ws.addEventListener('error', reject) }), 5000, 'the client to open')
    t.after(() => ws.close())
    assert.match(ws.extensions, /^permessage-deflate/)
    ws.send('frames 300 100000')
    ws.send(TEXT)
    await waitFor(() => got.length === 2, 'two messages', 5000)
    assert.deepEqual(got.map((s) => sha(s)), [sha(patterned(100000, true)), sha(TEXT)])
    ws.send('close 4002 later')
    assert.deepEqual(await within(closed, 5000, 'the close'), { code: 4002, reason: 'later' })
  })
})
