/**
 * What the frame-level relay must get right beyond relaying bytes: framing errors are refused
 * (1002 both ways) rather than passed on, maxPayload holds for a message split into fragments,
 * pings and pongs of the peers pass end to end while the gateway's own heartbeat pongs do not,
 * and a frame of the gateway's own (an admin push) never lands inside a relayed message.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import type WebSocket from 'ws'
import { upstreamFor, type TestUpstream, type UpstreamOptions } from '../../helpers/upstream.js'
import { gatewayFor, type TestGateway } from '../../helpers/gateway.js'
import { closed, collect, connect } from '../../helpers/ws.js'
import { settle, waitFor } from '../../helpers/resources.js'
import { closePayload, encodeFrame, RawClient } from '../../helpers/raw-ws.js'
import type { GatewayConfigInput } from '../../../src/config/schema.js'

async function setup (t: TestContext, config: Partial<GatewayConfigInput> = {}, upstream: UpstreamOptions = {}): Promise<{ u: TestUpstream, gw: TestGateway }> {
  const u = await upstreamFor(t, upstream)
  const gw = await gatewayFor(t, { routes: [{ prefix: '/f', upstream: u.url }], ...config })
  return { u, gw }
}

async function drained (gw: TestGateway): Promise<void> {
  await waitFor(() => gw.app.connections.size === 0 && gw.app.websocketBridge.active === 0, 'the registry to empty')
}

/** A raw client and the upstream's side of its connection. */
async function rawPair (t: TestContext, gw: TestGateway, u: TestUpstream): Promise<{ raw: RawClient, server: WebSocket }> {
  const conn = u.nextConnection()
  const raw = await RawClient.open(gw.port, '/f')
  t.after(() => raw.socket.destroy())
  const { ws: server } = await conn
  return { raw, server }
}

const framingErrors: Array<[string, Buffer]> = [
  ['an unmasked frame from the client', Buffer.from([0x81, 0x02, 0x68, 0x69])],
  ['a frame with RSV1 set (no extension was negotiated)', (() => { const f = encodeFrame(0x1, Buffer.from('hi')); f[0] |= 0x40; return f })()],
  ['a reserved opcode', encodeFrame(0x3, Buffer.from('hi'))],
  ['a fragmented ping', encodeFrame(0x9, Buffer.from('p'), false)],
  ['a continuation frame with no message to continue', encodeFrame(0x0, Buffer.from('x'))],
  ['a new text frame inside a fragmented message', Buffer.concat([encodeFrame(0x1, Buffer.from('a'), false), encodeFrame(0x1, Buffer.from('b'))])],
  ['a close frame with code 1005 on the wire', encodeFrame(0x8, closePayload(1005))]
]

for (const [what, bytes] of framingErrors) {
  test(`${what}: the client and the upstream are both closed with 1002, nothing is relayed`, { timeout: 10_000 }, async (t) => {
    const { u, gw } = await setup(t)
    const { raw, server } = await rawPair(t, gw, u)
    let relayed = 0
    server.on('message', () => { relayed++ })
    const upClosed = closed(server)
    raw.send(bytes)
    const reply = await raw.next()
    assert.equal(reply.opcode, 0x8)
    assert.equal(reply.payload.readUInt16BE(0), 1002)
    assert.equal((await upClosed).code, 1002)
    assert.equal(relayed, 0)
    raw.socket.end()
    await drained(gw)
  })
}

test('a message over maxPayload in fragments that are each under it: 1009 both ways, the first fragments never make a message upstream', { timeout: 10_000 }, async (t) => {
  const { u, gw } = await setup(t, { websocket: { maxPayload: '1kb' } })
  const { raw, server } = await rawPair(t, gw, u)
  let relayed = 0
  server.on('message', () => { relayed++ })
  const upClosed = closed(server)
  raw.send(encodeFrame(0x2, Buffer.alloc(600, 1), false))
  raw.send(encodeFrame(0x0, Buffer.alloc(600, 2), true))
  const reply = await raw.next()
  assert.equal(reply.opcode, 0x8)
  assert.equal(reply.payload.readUInt16BE(0), 1009)
  assert.deepEqual(await upClosed, { code: 1009, reason: 'message too big' })
  assert.equal(relayed, 0)
  raw.socket.end()
  await drained(gw)
})

test('pings pass end to end both ways and are answered by the far peer; unsolicited pongs pass too', { timeout: 10_000 }, async (t) => {
  const { u, gw } = await setup(t)
  const conn = u.nextConnection()
  const client = await connect(`ws://127.0.0.1:${gw.port}/f`)
  t.after(() => client.terminate())
  const { ws: server } = await conn
  // Upstream -> client ping: the client (ws answers pings) sends the pong, which reaches the upstream.
  const upGotPong = once(server, 'pong')
  const clientGotPing = once(client, 'ping')
  server.ping(Buffer.from('from-upstream'))
  assert.equal(((await clientGotPing) as [Buffer])[0].toString(), 'from-upstream')
  assert.equal(((await upGotPong) as [Buffer])[0].toString(), 'from-upstream')
  // Client -> upstream ping, answered by the upstream.
  const clientGotPong = once(client, 'pong')
  const upGotPing = once(server, 'ping')
  client.ping(Buffer.from('from-client'))
  assert.equal(((await upGotPing) as [Buffer])[0].toString(), 'from-client')
  assert.equal(((await clientGotPong) as [Buffer])[0].toString(), 'from-client')
  // A pong nobody asked for is relayed as well.
  const upGotLonePong = once(server, 'pong')
  client.pong(Buffer.from('lone'))
  assert.equal(((await upGotLonePong) as [Buffer])[0].toString(), 'lone')
  const done = closed(client)
  client.close(1000)
  await done
  await drained(gw)
})

test('the gateway\'s own heartbeat pongs are not relayed: the upstream sees no pong it did not ask for', { timeout: 10_000 }, async (t) => {
  const { u, gw } = await setup(t, { websocket: { pingInterval: '100ms', pongTimeout: '2s' } })
  const conn = u.nextConnection()
  const client = await connect(`ws://127.0.0.1:${gw.port}/f`)
  t.after(() => client.terminate())
  const { ws: server } = await conn
  let upstreamPongs = 0
  let clientPongs = 0
  server.on('pong', () => { upstreamPongs++ })
  client.on('pong', () => { clientPongs++ })
  let clientPings = 0
  client.on('ping', () => { clientPings++ })
  await waitFor(() => clientPings >= 3, 'three heartbeat pings at the client')
  const id = [...gw.app.connections.values()][0].info.id
  await waitFor(() => gw.app.connections.get(id)?.rttMs !== null, 'an RTT from the client\'s pongs')
  assert.equal(upstreamPongs, 0, 'the client\'s answers to the gateway stayed in the gateway')
  assert.equal(clientPongs, 0, 'the upstream\'s answers to the gateway stayed in the gateway')
  client.close(1000)
  await drained(gw)
})

test('an admin push while the upstream is in the middle of a fragmented message arrives after that message, and both arrive whole', { timeout: 10_000 }, async (t) => {
  const { u, gw } = await setup(t)
  const conn = u.nextConnection()
  const client = await connect(`ws://127.0.0.1:${gw.port}/f`)
  t.after(() => client.terminate())
  const { ws: server } = await conn
  const bridge = [...gw.app.connections.values()][0]
  const got = collect(client, 2)
  server.send('first half, ', { fin: false })
  await waitFor(() => bridge.bytesToClient === 'first half, '.length, 'the first fragment to pass the gateway')
  assert.equal(bridge.send('pushed', false), true)
  await settle()
  server.send('second half', { fin: true })
  const messages = await got
  assert.deepEqual(messages.map((m) => m.data.toString()), ['first half, second half', 'pushed'])
  const done = closed(client)
  client.close(1000)
  await done
  await drained(gw)
})

test('permessage-deflate is negotiated end to end: compressed frames pass through as they are, byte for byte once inflated', { timeout: 10_000 }, async (t) => {
  const { u, gw } = await setup(t, {}, { perMessageDeflate: true })
  const conn = u.nextConnection()
  const client = await connect(`ws://127.0.0.1:${gw.port}/f`, undefined, { perMessageDeflate: true })
  t.after(() => client.terminate())
  const { ws: server, req } = await conn
  assert.match(String(req.headers['sec-websocket-extensions']), /permessage-deflate/, 'the client\'s offer reached the upstream')
  assert.match(client.extensions, /permessage-deflate/, 'the upstream\'s acceptance reached the client')
  assert.match(server.extensions, /permessage-deflate/)
  const text = 'compress me '.repeat(2000)
  const binary = Buffer.alloc(50_000, 7)
  const got = collect(client, 2)
  client.send(text)
  client.send(binary)
  const echoed = await got
  assert.equal(echoed[0].data.toString(), text)
  assert.equal(echoed[0].isBinary, false)
  assert.ok(echoed[1].data.equals(binary))
  const bridge = [...gw.app.connections.values()][0]
  assert.equal(bridge.messagesFromClient, 2)
  assert.ok(bridge.bytesFromClient < (text.length + binary.length) / 10, `bytes counted as they cross the gateway, compressed: ${bridge.bytesFromClient}`)
  const done = closed(client)
  client.close(1000)
  await done
  await drained(gw)
})

test('permessage-deflate offered by the client but declined by the upstream: neither hop compresses, messages relay', { timeout: 10_000 }, async (t) => {
  const { u, gw } = await setup(t)
  const conn = u.nextConnection()
  const client = await connect(`ws://127.0.0.1:${gw.port}/f`, undefined, { perMessageDeflate: true })
  t.after(() => client.terminate())
  await conn
  assert.equal(client.extensions, '')
  const got = collect(client, 1)
  client.send('plain')
  assert.equal((await got)[0].data.toString(), 'plain')
  const done = closed(client)
  client.close(1000)
  await done
  await drained(gw)
})

test('with permessage-deflate, RSV1 is allowed only on the first frame of a message: on a continuation or a control frame it is a 1002', { timeout: 10_000 }, async (t) => {
  const { u, gw } = await setup(t, {}, { perMessageDeflate: true })
  for (const bad of [
    Buffer.concat([encodeFrame(0x2, Buffer.from('a'), false), (() => { const f = encodeFrame(0x0, Buffer.from('b')); f[0] |= 0x40; return f })()]),
    (() => { const f = encodeFrame(0x9, Buffer.from('p')); f[0] |= 0x40; return f })()
  ]) {
    const conn = u.nextConnection()
    const raw = await RawClient.open(gw.port, '/f', 'Sec-WebSocket-Extensions: permessage-deflate\r\n')
    t.after(() => raw.socket.destroy())
    const { ws: server } = await conn
    assert.match(server.extensions, /permessage-deflate/)
    const upClosed = closed(server)
    raw.send(bad)
    const reply = await raw.next()
    assert.equal(reply.opcode, 0x8)
    assert.equal(reply.payload.readUInt16BE(0), 1002)
    assert.equal((await upClosed).code, 1002)
    raw.socket.end()
    await drained(gw)
  }
})

for (const [what, config, send] of [
  ['over the message rate limit (1008)', { rateLimit: { messages: { rate: 1, burst: 1 } } }, [encodeFrame(0x1, Buffer.from('a')), encodeFrame(0x1, Buffer.from('b'))]],
  ['over maxPayload (1009)', { websocket: { maxPayload: '1kb' } }, [encodeFrame(0x2, Buffer.alloc(5000, 1))]]
] as const) {
  test(`a client closed for being ${what} that answers the close frame gets its TCP ended at once, not after the close timeout`, { timeout: 10_000 }, async (t) => {
    const { u, gw } = await setup(t, config as Partial<GatewayConfigInput>)
    const { raw } = await rawPair(t, gw, u)
    for (const f of send) raw.send(f)
    // Echoes of what got through may come first.
    let reply = await raw.next()
    while (reply.opcode !== 0x8) reply = await raw.next()
    const code = reply.payload.readUInt16BE(0)
    assert.ok(code === 1008 || code === 1009, `close ${code}`)
    // The answer a browser gives: its own close frame, then it waits for the server to end TCP.
    const ended = once(raw.socket, 'close')
    const started = performance.now()
    raw.send(encodeFrame(0x8, closePayload(code)))
    await ended
    assert.ok(performance.now() - started < 3000, 'the gateway ended the TCP connection after the close handshake')
    await drained(gw)
  })
}
