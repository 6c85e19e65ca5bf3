/**
 * websocket.maxPayload bounds what a message inflates to, with permessage-deflate negotiated end
 * to end (the gateway relays compressed frames as they are and counts what they inflate to):
 * a small compressed frame that inflates to megabytes (a "deflate bomb") is closed with 1009,
 * and the receiving peer never gets the whole message, nor much more than maxPayload of it.
 * What each peer received is read off the wire: a hand-driven upstream (a net.Server that
 * answers the handshake itself) or a raw client.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createHash, randomBytes } from 'node:crypto'
import { createServer, type AddressInfo, type Socket } from 'node:net'
import { deflateRawSync, constants as zc } from 'node:zlib'
import { gatewayFor, type TestGateway } from '../../helpers/gateway.js'
import { upstreamFor } from '../../helpers/upstream.js'
import { closed, collect, connect } from '../../helpers/ws.js'
import { closePayload, RawClient, wireFrame } from '../../helpers/raw-ws.js'
import { waitFor, within } from '../../helpers/resources.js'

const KIB = 1024
const MAX = 64 * KIB
const OFFER = 'Sec-WebSocket-Extensions: permessage-deflate\r\n'

interface Frame { fin: boolean, rsv: number, opcode: number, masked: boolean, payload: Buffer }

/** What one end of a connection received: every byte, the complete frames, and its TCP's end. */
class Wire {
  bytes = Buffer.alloc(0)
  endedAt: number | null = null
  private waiters: Array<() => void> = []

  constructor (readonly socket: Socket, first: Buffer) {
    socket.on('data', (c: Buffer) => this.add(c))
    socket.on('end', () => { this.endedAt = performance.now(); this.wake() })
    socket.on('close', () => { this.endedAt ??= performance.now(); this.wake() })
    socket.on('error', () => {})
    this.add(first)
  }

  /** The complete frames so far, and the payload bytes of a last, incomplete one. */
  frames (): { frames: Frame[], partialPayload: number } {
    const frames: Frame[] = []
    let b = this.bytes
    for (;;) {
      if (b.length < 2) return { frames, partialPayload: 0 }
      const masked = (b[1] & 0x80) !== 0
      let len = b[1] & 0x7f
      let off = 2
      if (len === 126) { if (b.length < 4) return { frames, partialPayload: 0 }; len = b.readUInt16BE(2); off = 4 } else if (len === 127) { if (b.length < 10) return { frames, partialPayload: 0 }; len = Number(b.readBigUInt64BE(2)); off = 10 }
      if (masked) off += 4
      if (b.length < off + len) return { frames, partialPayload: Math.max(0, b.length - off) }
      const payload = Buffer.from(b.subarray(off, off + len))
      if (masked) for (let i = 0; i < len; i++) payload[i] ^= b[off - 4 + (i & 3)]
      frames.push({ fin: (b[0] & 0x80) !== 0, rsv: b[0] & 0x70, opcode: b[0] & 0x0f, masked, payload })
      b = b.subarray(off + len)
    }
  }

  /** Payload bytes of data frames received (the incomplete last one included). */
  dataBytes (): number {
    const { frames, partialPayload } = this.frames()
    return frames.filter((f) => f.opcode < 8).reduce((n, f) => n + f.payload.length, 0) + partialPayload
  }

  /** Complete data messages received (a FIN data frame or continuation ends one). */
  messages (): number {
    return this.frames().frames.filter((f) => f.opcode < 8 && f.fin).length
  }

  closeFrame (): { code: number, reason: string } | null {
    const f = this.frames().frames.find((x) => x.opcode === 0x8)
    return f === undefined ? null : { code: f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1005, reason: f.payload.subarray(2).toString() }
  }

  /** Resolves once `pred` holds (checked on every event of the socket). */
  async until (pred: () => boolean, what: string, ms = 5000): Promise<void> {
    await within(new Promise<void>((resolve) => {
      const check = (): void => { if (pred()) resolve(); else this.waiters.push(check) }
      check()
    }), ms, what)
  }

  private add (c: Buffer): void {
    if (c.length > 0) this.bytes = Buffer.concat([this.bytes, c])
    this.wake()
  }

  private wake (): void {
    const w = this.waiters
    this.waiters = []
    for (const f of w) f()
  }
}

/** An upstream that answers each handshake by hand with `extensions`, and hands over the wire. */
async function rawUpstream (t: TestContext, extensions = 'permessage-deflate'): Promise<{ url: string, next: () => Promise<Wire> }> {
  const waiting: Array<(w: Wire) => void> = []
  const sockets = new Set<Socket>()
  const server = createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
    let head = Buffer.alloc(0)
    const onData = (c: Buffer): void => {
      head = Buffer.concat([head, c])
      const end = head.indexOf('\r\n\r\n')
      if (end === -1) return
      socket.off('data', onData)
      const key = /sec-websocket-key:\s*(\S+)/i.exec(head.subarray(0, end).toString('latin1'))?.[1] ?? ''
      const accept = createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64')
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${accept}\r\n` + (extensions === '' ? '' : `Sec-WebSocket-Extensions: ${extensions}\r\n`) + '\r\n')
      waiting.shift()?.(new Wire(socket, head.subarray(end + 4)))
    }
    socket.on('data', onData)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()) }))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    next: () => within(new Promise<Wire>((resolve) => waiting.push(resolve)), 5000, 'the upstream connection')
  }
}

const FIN = 0x80
const RSV1 = 0x40
const BINARY = 0x2

/** 60 MiB of zeros, deflated whole (a final block, as deflateRawSync ends): 61 KB. */
const BOMB = deflateRawSync(Buffer.alloc(60 * KIB * KIB))
/** The same, as permessage-deflate senders write it: sync-flushed, the 00 00 ff ff tail removed. */
const BOMB_SYNC = (() => { const b = deflateRawSync(Buffer.alloc(60 * KIB * KIB), { finishFlush: zc.Z_SYNC_FLUSH }); return b.subarray(0, b.length - 4) })()

async function setup (t: TestContext, maxPayload = '64kb'): Promise<{ port: number, up: { next: () => Promise<Wire> }, gw: TestGateway }> {
  const up = await rawUpstream(t)
  const gw = await gatewayFor(t, { routes: [{ prefix: '/b', upstream: up.url }], websocket: { maxPayload } })
  return { port: gw.port, up, gw }
}

/** The hand-driven peers never answer the gateway's close frames: they hang up, and the bridge ends. */
async function hangUp (gw: TestGateway, ...sockets: Socket[]): Promise<void> {
  for (const s of sockets) s.destroy()
  await waitFor(() => gw.app.websocketBridge.active === 0, 'every bridge to end')
}

for (const [form, bomb] of [['a final block', BOMB], ['sync-flushed, tail removed', BOMB_SYNC]] as const) {
  test(`client -> upstream: one ${bomb.length}-byte compressed frame (${form}) that inflates to 60 MiB under maxPayload 64kb: 1009 both ways, the upstream gets none of it`, { timeout: 15_000 }, async (t) => {
    const { port, up, gw } = await setup(t)
    const upstream = up.next()
    const client = await RawClient.open(port, '/b', OFFER)
    t.after(() => client.socket.destroy())
    const wire = await upstream
    const before = process.memoryUsage().arrayBuffers
    client.send(wireFrame(FIN | RSV1 | BINARY, bomb, randomBytes(4)))
    const reply = await client.next(5000)
    assert.equal(reply.opcode, 0x8)
    assert.equal(reply.payload.readUInt16BE(0), 1009)
    await wire.until(() => wire.closeFrame() !== null || wire.endedAt !== null, 'the upstream to be closed')
    const got = wire.dataBytes()
    t.diagnostic(`the upstream received ${got} payload bytes of the ${bomb.length}-byte compressed frame, ${wire.messages()} messages; close ${JSON.stringify(wire.closeFrame())}`)
    assert.equal(wire.messages(), 0, 'no complete message reached the upstream')
    assert.ok(got <= MAX, `at most maxPayload of compressed bytes reached the upstream (${got})`)
    assert.deepEqual(wire.closeFrame(), { code: 1009, reason: 'message too big' })
    const grew = process.memoryUsage().arrayBuffers - before
    assert.ok(grew < 8 * KIB * KIB, `memory stayed bounded (array buffers grew by ${grew} bytes)`)
    // The client answers the close: its TCP is ended.
    const ended = once(client.socket, 'close')
    client.send(wireFrame(FIN | 0x8, closePayload(1009), randomBytes(4)))
    await within(ended, 3000, 'the client\'s TCP to end')
    await hangUp(gw, wire.socket)
  })
}

test('upstream -> client: a compressed bomb frame from the upstream: the client gets 1009 and none of it, the upstream gets 1009', { timeout: 15_000 }, async (t) => {
  const { port, up, gw } = await setup(t)
  const upstream = up.next()
  const client = await RawClient.open(port, '/b', OFFER)
  t.after(() => client.socket.destroy())
  const wire = await upstream
  const clientBytes: Buffer[] = []
  client.socket.on('data', (c: Buffer) => clientBytes.push(c))
  wire.socket.write(wireFrame(FIN | RSV1 | BINARY, BOMB_SYNC, null))
  const reply = await client.next(5000)
  assert.deepEqual([reply.opcode, reply.payload.readUInt16BE(0), reply.payload.subarray(2).toString()], [0x8, 1009, 'message too big'])
  assert.equal(Buffer.concat(clientBytes).length, reply.payload.length + 2, 'the client received the close frame only')
  await wire.until(() => wire.closeFrame() !== null, 'the upstream\'s close frame')
  assert.equal(wire.closeFrame()?.code, 1009)
  await hangUp(gw, client.socket, wire.socket)
})

test('a bomb spread over continuation frames: the fragments that fit pass, the one that takes the message past maxPayload does not, 1009 both ways', { timeout: 15_000 }, async (t) => {
  const { port, up, gw } = await setup(t)
  const upstream = up.next()
  const client = await RawClient.open(port, '/b', OFFER)
  t.after(() => client.socket.destroy())
  const wire = await upstream
  // Each fragment: 10 KiB of 'a', sync-flushed, as one compressed stream (context carries over).
  const { createDeflateRaw } = await import('node:zlib')
  const d = createDeflateRaw()
  t.after(() => d.close())
  const parts: Buffer[] = []
  for (let i = 0; i < 10; i++) {
    const out: Buffer[] = []
    const onData = (c: Buffer): void => { out.push(c) }
    d.on('data', onData)
    d.write(Buffer.alloc(10 * KIB, 0x61))
    await new Promise<void>((resolve) => d.flush(zc.Z_SYNC_FLUSH, () => resolve()))
    d.off('data', onData)
    parts.push(Buffer.concat(out))
  }
  const key = randomBytes(4)
  const frames = parts.map((p, i) => wireFrame((i === parts.length - 1 ? FIN : 0) | (i === 0 ? RSV1 | BINARY : 0), p, key))
  client.send(Buffer.concat(frames))
  const reply = await client.next(5000)
  assert.deepEqual([reply.opcode, reply.payload.readUInt16BE(0)], [0x8, 1009])
  await wire.until(() => wire.closeFrame() !== null, 'the upstream\'s close frame')
  const data = wire.frames().frames.filter((f) => f.opcode < 8)
  // 6 fragments make 60 KiB; the 7th would make 70 KiB > 64 KiB.
  assert.equal(data.length, 6, 'the fragments within maxPayload were relayed')
  assert.ok(data.every((f, i) => f.payload.equals(parts[i])), 'byte for byte')
  assert.equal(wire.messages(), 0)
  assert.equal(wire.closeFrame()?.code, 1009)
  await hangUp(gw, client.socket, wire.socket)
})

test('a bomb in the middle of a frame whose start has already been relayed: the upstream\'s TCP is ended (no close frame can follow half a frame), it never gets the whole frame; the client gets 1009', { timeout: 15_000 }, async (t) => {
  const { port, up, gw } = await setup(t)
  const upstream = up.next()
  const client = await RawClient.open(port, '/b', OFFER)
  t.after(() => client.socket.destroy())
  const wire = await upstream
  // A stored block of 40,000 random bytes (inflates 1:1), then 10 MiB of zeros deflated.
  const stored = randomBytes(40_000)
  const lens = Buffer.alloc(5)
  lens.writeUInt16LE(stored.length, 1)
  lens.writeUInt16LE(~stored.length & 0xffff, 3)
  const tenMiB = deflateRawSync(Buffer.alloc(10 * KIB * KIB), { finishFlush: zc.Z_SYNC_FLUSH })
  const payload = Buffer.concat([lens, stored, tenMiB.subarray(0, tenMiB.length - 4)])
  assert.ok(payload.length < MAX, 'under maxPayload compressed')
  const bytes = wireFrame(FIN | RSV1 | BINARY, payload, randomBytes(4))
  const firstPart = 4 + 4 + lens.length + stored.length
  client.send(bytes.subarray(0, firstPart))
  await wire.until(() => wire.dataBytes() >= lens.length + stored.length, 'the stored part at the upstream')
  client.send(bytes.subarray(firstPart))
  const reply = await client.next(5000)
  assert.deepEqual([reply.opcode, reply.payload.readUInt16BE(0)], [0x8, 1009])
  await wire.until(() => wire.endedAt !== null, 'the upstream\'s TCP to end', 3000)
  const got = wire.dataBytes()
  t.diagnostic(`the upstream received ${got} of the frame's ${payload.length} payload bytes, then its TCP ended`)
  assert.ok(got < payload.length, 'the frame never arrived whole')
  assert.ok(got <= MAX, `at most maxPayload of it (${got})`)
  assert.equal(wire.closeFrame(), null, 'no close frame inside the frame')
  await hangUp(gw, client.socket, wire.socket)
})

test('malformed compressed data: 1007, the sender\'s TCP ends within 1 s, the other side is closed with 1007', { timeout: 15_000 }, async (t) => {
  const { port, up, gw } = await setup(t)
  const upstream = up.next()
  const client = await RawClient.open(port, '/b', OFFER)
  t.after(() => client.socket.destroy())
  const wire = await upstream
  let endedAt = 0
  client.socket.once('end', () => { endedAt = performance.now() })
  // BTYPE 11 is reserved.
  client.send(wireFrame(FIN | RSV1 | BINARY, Buffer.from([0x07, 0x00]), randomBytes(4)))
  const reply = await client.next(5000)
  const closeAt = performance.now()
  assert.deepEqual([reply.opcode, reply.payload.readUInt16BE(0), reply.payload.subarray(2).toString()], [0x8, 1007, 'invalid block type'])
  if (!client.closed) await within(once(client.socket, 'close'), 1000, 'the client\'s TCP to end')
  t.diagnostic(`TCP end ${(Math.max(endedAt, closeAt) - closeAt).toFixed(1)} ms after the close frame`)
  await wire.until(() => wire.closeFrame() !== null, 'the upstream\'s close frame')
  assert.equal(wire.closeFrame()?.code, 1007)
  assert.equal(wire.messages(), 0)
  await hangUp(gw, wire.socket)
})

test('correct peers (ws, context takeover both ways): a message that inflates to exactly maxPayload relays both ways, one byte more is 1009', { timeout: 15_000 }, async (t) => {
  const u = await upstreamFor(t, { perMessageDeflate: true })
  const gw = await gatewayFor(t, { routes: [{ prefix: '/b', upstream: u.url }], websocket: { maxPayload: '64kb' } })
  const conn = u.nextConnection()
  const client = await connect(`${gw.wsUrl}/b`, undefined, { perMessageDeflate: { threshold: 0 } })
  t.after(() => client.terminate())
  const { ws: server } = await conn
  assert.match(client.extensions, /permessage-deflate/)
  // Half random, then the same again: the second half is all back-references, some into the
  // previous message (the window carries over).
  const half = randomBytes(MAX / 4).toString('hex')
  const got = collect(client, 3)
  client.send(half)
  client.send(half + half)
  client.send(Buffer.from(half + half, 'latin1'))
  const echoed = await within(got, 5000, 'the echoes')
  assert.deepEqual(echoed.map((m) => m.data.length), [MAX / 2, MAX, MAX])
  const received: number[] = []
  server.on('message', (d: Buffer) => received.push(d.length))
  const c = closed(client)
  client.send(half + half + 'x')
  assert.deepEqual(await within(c, 5000, 'the client closed'), { code: 1009, reason: 'message too big' })
  assert.deepEqual(received, [], 'the oversized message never reached the upstream')
})

test('websocket.compression: off forwards no permessage-deflate offer: neither hop compresses', async (t) => {
  for (const compression of ['passthrough', 'off'] as const) {
    const up = await upstreamFor(t, { perMessageDeflate: true })
    const gw = await gatewayFor(t, { websocket: { compression }, routes: [{ prefix: '/', upstream: up.url }] })
    const ws = await connect(`${gw.wsUrl}/x`, undefined, { perMessageDeflate: true })
    t.after(() => ws.terminate())
    const offered = up.upgrades.at(-1)?.headers['sec-websocket-extensions']
    if (compression === 'off') {
      assert.equal(offered, undefined, 'no offer reached the upstream')
      assert.equal(ws.extensions, '', 'the client got no extension back')
    } else {
      assert.match(String(offered), /permessage-deflate/)
      assert.match(ws.extensions, /permessage-deflate/)
    }
    const big = 'x'.repeat(100_000)
    const got = collect(ws, 1)
    ws.send(big)
    assert.equal((await got)[0].data.toString(), big, `${compression}: the message is relayed intact`)
  }
})

test('a message that leaves a stored block open cannot make the meter and the receiver count different messages', async (t) => {
  const { encodeFrame } = await import('../../helpers/raw-ws.js')
  const rsv1 = (f: Buffer): Buffer => { f[0] |= 0x40; return f }
  // Opens a stored block of 65,535 bytes and gives only 10 of them.
  const opener = Buffer.concat([Buffer.from([0x00, 0xff, 0xff, 0x00, 0x00]), Buffer.from('0123456789')])
  const full = deflateRawSync(Buffer.alloc(20 * 1024 * 1024), { finishFlush: zc.Z_SYNC_FLUSH })
  const bomb = full.subarray(0, full.length - 4)
  for (const offer of ['permessage-deflate; client_no_context_takeover', 'permessage-deflate']) {
    const sizes: number[] = []
    const up = await upstreamFor(t, { perMessageDeflate: true, maxPayload: 512 * 1024 * 1024, onConnection: (ws) => ws.on('message', (d: Buffer) => sizes.push(d.length)) })
    const gw = await gatewayFor(t, { websocket: { maxPayload: '64kb' }, routes: [{ prefix: '/', upstream: up.url }] })
    const c = await RawClient.open(gw.port, '/x', `Sec-WebSocket-Extensions: ${offer}\r\n`)
    t.after(() => c.socket.destroy())
    c.send(rsv1(encodeFrame(2, opener)))
    c.send(rsv1(encodeFrame(2, bomb)))
    const f = await c.next()
    assert.equal(f.opcode, 8, offer)
    const code = f.payload.readUInt16BE(0)
    assert.ok(code === 1009 || code === 1007, `${offer}: closed with ${code}`)
    c.send(encodeFrame(8, closePayload(code)))
    await waitFor(() => c.closed, 'the client connection to end')
    assert.ok(sizes.every((n) => n <= 64 * 1024), `${offer}: the upstream got messages of ${JSON.stringify(sizes)} bytes`)
  }
})
