/**
 * Failing the WebSocket connection (RFC 6455 7.1.7) for bad framing means closing its TCP
 * connection: the misbehaving peer gets the gateway's close frame (1002; 1007 for an invalid
 * close reason) and then the end of its TCP connection within 1 s, without having to answer;
 * the correct peer on the other side gets the same close code and never the bad frame. Each case
 * runs both ways: a hand-made client against a correct upstream (ws), and a hand-driven upstream
 * (a net.Server that answers the handshake itself) against a correct client (ws).
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createHash, randomBytes } from 'node:crypto'
import { connect as tcpConnect, createServer, type AddressInfo, type Socket } from 'node:net'
import type WebSocket from 'ws'
import { gatewayFor, type TestGateway } from '../../helpers/gateway.js'
import { upstreamFor, type TestUpstream } from '../../helpers/upstream.js'
import { connect } from '../../helpers/ws.js'
import { within } from '../../helpers/resources.js'

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
const accept = (key: string): string => createHash('sha1').update(key + GUID).digest('base64')

interface Frame { opcode: number, payload: Buffer }

/**
 * One end of a connection driven by hand: writes any bytes, parses every frame it receives
 * (masked or not), and notes when its TCP connection ended.
 */
class Peer {
  private buf = Buffer.alloc(0)
  readonly frames: Array<Frame & { at: number }> = []
  endedAt: number | null = null
  private waiters: Array<() => void> = []

  constructor (readonly socket: Socket, rest: Buffer) {
    socket.on('data', (c: Buffer) => this.push(c))
    // 'end': the gateway's FIN; 'close' covers a destroy (RST) too.
    socket.on('end', () => { this.endedAt ??= performance.now(); this.wake() })
    socket.on('close', () => { this.endedAt ??= performance.now(); this.wake() })
    socket.on('error', () => {})
    this.push(rest)
  }

  send (bytes: Buffer): void { this.socket.write(bytes) }

  /** The first close frame and when it arrived; fails if the TCP connection ends first. */
  async closeFrame (ms = 3000): Promise<{ code: number, reason: string, at: number, before: Frame[] }> {
    await this.until(() => this.frames.some((f) => f.opcode === 0x8) || this.endedAt !== null, 'a close frame', ms)
    const i = this.frames.findIndex((f) => f.opcode === 0x8)
    if (i === -1) throw new Error('the TCP connection ended without a close frame')
    const f = this.frames[i]
    return { code: f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1005, reason: f.payload.subarray(2).toString(), at: f.at, before: this.frames.slice(0, i) }
  }

  /** Resolves once `pred` holds, checked on each event of the socket. */
  async until (pred: () => boolean, what: string, ms: number): Promise<void> {
    await within(new Promise<void>((resolve) => {
      const check = (): void => { if (pred()) resolve(); else this.waiters.push(check) }
      check()
    }), ms, what)
  }

  private wake (): void {
    const w = this.waiters
    this.waiters = []
    for (const f of w) f()
  }

  private push (chunk: Buffer): void {
    const at = performance.now()
    this.buf = Buffer.concat([this.buf, chunk])
    for (;;) {
      const b = this.buf
      if (b.length < 2) break
      const masked = (b[1] & 0x80) !== 0
      let len = b[1] & 0x7f
      let off = 2
      if (len === 126) { if (b.length < 4) break; len = b.readUInt16BE(2); off = 4 } else if (len === 127) { if (b.length < 10) break; len = Number(b.readBigUInt64BE(2)); off = 10 }
      if (masked) off += 4
      if (b.length < off + len) break
      const payload = Buffer.from(b.subarray(off, off + len))
      if (masked) for (let i = 0; i < len; i++) payload[i] ^= b[off - 4 + (i & 3)]
      this.frames.push({ opcode: b[0] & 0x0f, payload, at })
      this.buf = b.subarray(off + len)
    }
    this.wake()
  }
}

/** Reads an HTTP head off a socket; resolves with it and the bytes after it. */
function readHead (socket: Socket): Promise<{ head: string, rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0)
    const onData = (c: Buffer): void => {
      buf = Buffer.concat([buf, c])
      const end = buf.indexOf('\r\n\r\n')
      if (end === -1) return
      socket.off('data', onData)
      socket.off('error', reject)
      resolve({ head: buf.subarray(0, end).toString('latin1'), rest: buf.subarray(end + 4) })
    }
    socket.on('data', onData)
    socket.on('error', reject)
  })
}

/** A hand-made client: does the upgrade by hand (offering permessage-deflate when asked). */
async function rawClient (t: TestContext, port: number, path: string, deflate: boolean): Promise<Peer> {
  const key = randomBytes(16).toString('base64')
  const socket = tcpConnect(port, '127.0.0.1')
  t.after(() => socket.destroy())
  socket.setNoDelay(true)
  await once(socket, 'connect')
  const answer = readHead(socket)
  socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` + (deflate ? 'Sec-WebSocket-Extensions: permessage-deflate\r\n' : '') + '\r\n')
  const { head, rest } = await within(answer, 5000, 'the 101')
  assert.match(head, /^HTTP\/1\.1 101/)
  assert.ok(head.toLowerCase().includes(`sec-websocket-accept: ${accept(key).toLowerCase()}`))
  return new Peer(socket, rest)
}

/** An upstream whose frames the test writes: answers each handshake (accepting permessage-deflate when offered). */
async function rawUpstream (t: TestContext): Promise<{ url: string, next: () => Promise<Peer> }> {
  const waiting: Array<(p: Peer) => void> = []
  const sockets = new Set<Socket>()
  const server = createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
    socket.setNoDelay(true)
    readHead(socket).then(({ head, rest }) => {
      const key = /sec-websocket-key:\s*(\S+)/i.exec(head)?.[1] ?? ''
      const deflate = /sec-websocket-extensions:[^\r\n]*permessage-deflate/i.test(head)
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${accept(key)}\r\n` + (deflate ? 'Sec-WebSocket-Extensions: permessage-deflate\r\n' : '') + '\r\n')
      waiting.shift()?.(new Peer(socket, rest))
    }, () => socket.destroy())
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()) }))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    next: () => within(new Promise<Peer>((resolve) => waiting.push(resolve)), 5000, 'the upstream connection')
  }
}

/** One frame; `mask`: a random key (what a client must do). */
function frame (b0: number, payload: Buffer | string, mask: boolean, lengthForm?: 126): Buffer {
  const p = typeof payload === 'string' ? Buffer.from(payload) : payload
  const len = p.length
  const wide = lengthForm === 126 || len >= 126
  const head = Buffer.alloc((wide ? 4 : 2) + (mask ? 4 : 0))
  head[0] = b0
  if (wide) { head[1] = 126; head.writeUInt16BE(len, 2) } else head[1] = len
  if (!mask) return Buffer.concat([head, p])
  head[1] |= 0x80
  const key = randomBytes(4)
  key.copy(head, head.length - 4)
  const body = Buffer.from(p)
  for (let i = 0; i < len; i++) body[i] ^= key[i & 3]
  return Buffer.concat([head, body])
}

function closeBody (code: number, reason: Buffer | string = ''): Buffer {
  const r = typeof reason === 'string' ? Buffer.from(reason) : reason
  const b = Buffer.alloc(2 + r.length)
  b.writeUInt16BE(code, 0)
  r.copy(b, 2)
  return b
}

const FIN = 0x80

interface Case {
  what: string
  /** The bytes the misbehaving peer sends; `masked`: what its role requires (client: true). */
  bytes: (masked: boolean) => Buffer
  /** The close code both peers get (default 1002). */
  code?: number
  /** Negotiate permessage-deflate end to end. */
  deflate?: boolean
}

const cases: Case[] = [
  { what: 'a frame masked wrongly for its direction (client: unmasked, upstream: masked)', bytes: (m) => frame(FIN | 0x1, 'hi', !m) },
  { what: 'a ping masked wrongly for its direction', bytes: (m) => frame(FIN | 0x9, 'p', !m) },
  { what: 'RSV1 set without an extension that defines it', bytes: (m) => frame(FIN | 0x40 | 0x1, 'hi', m) },
  { what: 'RSV2 set', bytes: (m) => frame(FIN | 0x20 | 0x2, 'hi', m) },
  { what: 'RSV3 set', bytes: (m) => frame(FIN | 0x10 | 0x2, 'hi', m) },
  { what: 'RSV1 on a continuation frame (permessage-deflate negotiated)', deflate: true, bytes: (m) => Buffer.concat([frame(0x2, 'a', m), frame(FIN | 0x40 | 0x0, 'b', m)]) },
  { what: 'RSV1 on a ping (permessage-deflate negotiated)', deflate: true, bytes: (m) => frame(FIN | 0x40 | 0x9, 'p', m) },
  { what: 'a reserved data opcode (0x3)', bytes: (m) => frame(FIN | 0x3, 'x', m) },
  { what: 'a reserved control opcode (0xB)', bytes: (m) => frame(FIN | 0xb, 'x', m) },
  { what: 'a fragmented ping', bytes: (m) => frame(0x9, 'p', m) },
  { what: 'a fragmented close', bytes: (m) => frame(0x8, closeBody(1000), m) },
  { what: 'a ping with a 126-byte payload', bytes: (m) => frame(FIN | 0x9, Buffer.alloc(126, 1), m) },
  { what: 'a pong with a 16-bit length form above 125', bytes: (m) => frame(FIN | 0xa, Buffer.alloc(200, 2), m, 126) },
  { what: 'a continuation frame with no message to continue', bytes: (m) => frame(FIN | 0x0, 'x', m) },
  { what: 'a new text frame inside a fragmented message', bytes: (m) => Buffer.concat([frame(0x1, 'a', m), frame(FIN | 0x1, 'b', m)]) },
  { what: 'a close frame with a 1-byte payload', bytes: (m) => frame(FIN | 0x8, Buffer.from([0x03]), m) },
  { what: 'a close frame with code 1005 on the wire', bytes: (m) => frame(FIN | 0x8, closeBody(1005), m) },
  { what: 'a close frame with code 999', bytes: (m) => frame(FIN | 0x8, closeBody(999), m) },
  { what: 'a close frame with code 2999 (reserved)', bytes: (m) => frame(FIN | 0x8, closeBody(2999), m) },
  { what: 'a close frame whose reason is not UTF-8', code: 1007, bytes: (m) => frame(FIN | 0x8, closeBody(1000, Buffer.from([0xff, 0xfe])), m) }
]

/** The time from the close frame to the end of the TCP connection, per case and direction, for the summary. */
const timings: Array<[string, number]> = []

async function gateway (t: TestContext): Promise<{ gw: TestGateway, good: TestUpstream, raw: { url: string, next: () => Promise<Peer> } }> {
  const raw = await rawUpstream(t)
  const good = await upstreamFor(t, { perMessageDeflate: true })
  const gw = await gatewayFor(t, { routes: [{ prefix: '/good', upstream: good.url }, { prefix: '/raw', upstream: raw.url }] })
  return { gw, good, raw }
}

/** The misbehaving peer got `code`, then its TCP ended within 1 s without its having to answer. */
async function assertFailed (t: TestContext, bad: Peer, code: number, label: string): Promise<void> {
  const c = await bad.closeFrame()
  assert.equal(c.code, code, `close code (reason ${JSON.stringify(c.reason)})`)
  await bad.until(() => bad.endedAt !== null, 'the TCP connection to end', 1000)
  const ms = Math.max(0, bad.endedAt! - c.at)
  timings.push([label, ms])
  t.diagnostic(`${label}: "${c.reason}", TCP ended ${ms.toFixed(1)} ms after the close frame`)
  assert.ok(ms < 1000)
}

async function assertGoodClosed (ws: WebSocket, code: number, received: unknown[]): Promise<void> {
  const c = await within(new Promise<number>((resolve) => ws.once('close', (code: number) => resolve(code))), 3000, 'the correct peer to be closed')
  assert.equal(c, code, 'the correct peer\'s close code')
  assert.deepEqual(received, [], 'the correct peer received nothing of it')
}

for (const c of cases) {
  const code = c.code ?? 1002
  test(`from the client: ${c.what}: the client gets ${code}, then its TCP ends within 1 s; the upstream gets ${code}`, { timeout: 10_000 }, async (t) => {
    const { gw, good } = await gateway(t)
    const conn = good.nextConnection()
    const bad = await rawClient(t, gw.port, '/good/x', c.deflate === true)
    const { ws: server } = await within(conn, 3000, 'the upstream connection')
    const received: unknown[] = []
    server.on('message', (d) => received.push(d))
    server.on('ping', (d) => received.push(d))
    const goodClosed = assertGoodClosed(server, code, received)
    bad.send(c.bytes(true))
    await assertFailed(t, bad, code, `client, ${c.what}`)
    await goodClosed
  })

  test(`from the upstream: ${c.what}: the upstream gets ${code}, then its TCP ends within 1 s; the client gets ${code}`, { timeout: 10_000 }, async (t) => {
    const { gw, raw } = await gateway(t)
    const next = raw.next()
    const client = await connect(`${gw.wsUrl}/raw/x`, undefined, { perMessageDeflate: c.deflate === true })
    t.after(() => client.terminate())
    const bad = await next
    const received: unknown[] = []
    client.on('message', (d) => received.push(d))
    client.on('ping', (d) => received.push(d))
    const goodClosed = assertGoodClosed(client, code, received)
    bad.send(c.bytes(false))
    await assertFailed(t, bad, code, `upstream, ${c.what}`)
    await goodClosed
  })
}

test('summary: the slowest TCP end after a failing close frame', (t) => {
  const worst = timings.reduce((a, b) => (b[1] > a[1] ? b : a), ['none', 0] as [string, number])
  t.diagnostic(`${timings.length} failed connections; TCP ended at most ${worst[1].toFixed(1)} ms after the close frame (${worst[0]})`)
})
