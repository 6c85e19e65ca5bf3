/**
 * The WebSocket bridge's close behaviour (spec section 4): codes and reasons pass through both
 * ways, 1005 stays "no status", an abnormal end of the upstream gives the client 1014, an abnormal
 * end of the client gives the upstream 1001, an oversized message closes with 1009; after every
 * kind of close the registry is empty and no upstream socket is left.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import type { WebSocket } from 'ws'
import { startUpstream, type TestUpstream } from '../../helpers/upstream.js'
import { startGateway, type TestGateway } from '../../helpers/gateway.js'
import { connect, closed, collect } from '../../helpers/ws.js'
import { waitFor } from '../../helpers/resources.js'

const MAX = 64 * 1024

interface Setup {
  u: TestUpstream
  gw: TestGateway
  /** Upstream ends of connections, by the unique path each client asked for. */
  waiting: Map<string, (c: { ws: WebSocket, req: IncomingMessage }) => void>
  count: number
}
interface Pair { client: WebSocket, server: WebSocket, serverReq: IncomingMessage }

/** An echo upstream and a gateway with websocket.maxPayload 64kb, both closed after the test. */
async function setup (t: TestContext): Promise<Setup> {
  const waiting = new Map<string, (c: { ws: WebSocket, req: IncomingMessage }) => void>()
  const u = await startUpstream({
    onConnection: (ws, req) => {
      ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }))
      waiting.get(req.url ?? '')?.({ ws, req })
      waiting.delete(req.url ?? '')
    }
  })
  t.after(() => u.close())
  const gw = await startGateway({ routes: [{ prefix: '/c', upstream: u.url }], websocket: { maxPayload: '64kb' } })
  t.after(() => gw.close())
  return { u, gw, waiting, count: 0 }
}

/**
 * One bridged connection: the client and the upstream's end of it, matched by a unique path
 * (connections opened concurrently reach the upstream in any order).
 */
async function pair (s: Setup): Promise<Pair> {
  const path = `/c/${++s.count}`
  const conn = new Promise<{ ws: WebSocket, req: IncomingMessage }>((resolve) => s.waiting.set(path, resolve))
  const client = await connect(s.gw.wsUrl + path)
  const { ws: server, req: serverReq } = await conn
  return { client, server, serverReq }
}

/** The registry is empty, no bridge is left closing, and the upstream has no socket open. */
async function drained ({ u, gw }: Setup): Promise<void> {
  await waitFor(() => gw.app.connections.size === 0 && gw.app.websocketBridge.active === 0,
    () => `the registry to empty (${gw.app.connections.size} listed, ${gw.app.websocketBridge.active} active)`)
  await waitFor(() => u.sockets.size === 0 && u.openTcp() === 0,
    () => `upstream sockets to close (${u.sockets.size} WebSockets, ${u.openTcp()} TCP)`)
}

test('client closes 4001 "bye": the upstream sees 4001 "bye"', { timeout: 10_000 }, async (t) => {
  const s = await setup(t)
  const { client, server } = await pair(s)
  const up = closed(server)
  const cl = closed(client)
  client.close(4001, 'bye')
  assert.deepEqual(await up, { code: 4001, reason: 'bye' })
  assert.deepEqual(await cl, { code: 4001, reason: 'bye' })
  await drained(s)
})

test('upstream closes 4002 "later": the client sees 4002 "later"', { timeout: 10_000 }, async (t) => {
  const s = await setup(t)
  const { client, server } = await pair(s)
  const up = closed(server)
  const cl = closed(client)
  server.close(4002, 'later')
  assert.deepEqual(await cl, { code: 4002, reason: 'later' })
  assert.deepEqual(await up, { code: 4002, reason: 'later' })
  await drained(s)
})

test('1000 passes through both ways, with and without a reason', { timeout: 10_000 }, async (t) => {
  const s = await setup(t)
  for (const [from, reason] of [['client', 'done'], ['upstream', 'done'], ['client', ''], ['upstream', '']] as const) {
    const { client, server } = await pair(s)
    const up = closed(server)
    const cl = closed(client)
    if (from === 'client') client.close(1000, reason)
    else server.close(1000, reason)
    assert.deepEqual(await up, { code: 1000, reason }, `${from} closed 1000 "${reason}": upstream`)
    assert.deepEqual(await cl, { code: 1000, reason }, `${from} closed 1000 "${reason}": client`)
    await drained(s)
  }
})

test('a close with no status (1005) on one side arrives as 1005 on the other', { timeout: 10_000 }, async (t) => {
  const s = await setup(t)
  for (const from of ['client', 'upstream'] as const) {
    const { client, server } = await pair(s)
    const up = closed(server)
    const cl = closed(client)
    if (from === 'client') client.close()
    else server.close()
    assert.deepEqual(await up, { code: 1005, reason: '' }, `${from} closed without status: upstream`)
    assert.deepEqual(await cl, { code: 1005, reason: '' }, `${from} closed without status: client`)
    await drained(s)
  }
})

test('other codes and reasons pass through unchanged, both ways', { timeout: 10_000 }, async (t) => {
  const s = await setup(t)
  const codes = [1001, 1002, 1003, 1007, 1008, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]
  // Also the longest reason a close frame can carry: 123 bytes, in multi-byte characters.
  const longest = 'é'.repeat(61) + 'x'
  assert.equal(Buffer.byteLength(longest), 123)
  for (const from of ['client', 'upstream'] as const) {
    for (const code of codes) {
      const reason = code === 4999 ? longest : `code ${code}`
      const { client, server } = await pair(s)
      const up = closed(server)
      const cl = closed(client)
      if (from === 'client') client.close(code, reason)
      else server.close(code, reason)
      const expected = { code, reason }
      assert.deepEqual(from === 'client' ? await up : await cl, expected, `${from} closed ${code}: relayed`)
      await Promise.all([up, cl])
      await drained(s)
    }
  }
})

test('messages sent just before a close arrive before it, both ways', { timeout: 10_000 }, async (t) => {
  const s = await setup(t)
  // Client -> upstream. The echo upstream would answer: silence it for this pair.
  {
    const { client, server } = await pair(s)
    server.removeAllListeners('message')
    const got = collect(server, 100)
    const up = closed(server)
    for (let i = 0; i < 100; i++) client.send(`c${i}`)
    client.close(4010, 'after 100')
    assert.deepEqual((await got).map((m) => m.data.toString()), Array.from({ length: 100 }, (_, i) => `c${i}`))
    assert.deepEqual(await up, { code: 4010, reason: 'after 100' })
    await drained(s)
  }
  // Upstream -> client.
  {
    const { client, server } = await pair(s)
    const got = collect(client, 100)
    const cl = closed(client)
    for (let i = 0; i < 100; i++) server.send(`u${i}`)
    server.close(4011, 'after 100')
    assert.deepEqual((await got).map((m) => m.data.toString()), Array.from({ length: 100 }, (_, i) => `u${i}`))
    assert.deepEqual(await cl, { code: 4011, reason: 'after 100' })
    await drained(s)
  }
})

test('upstream TCP drop: the client gets 1014 "upstream connection lost"', { timeout: 10_000 }, async (t) => {
  const s = await setup(t)
  for (const how of ['terminate', 'destroy socket'] as const) {
    const { client, server, serverReq } = await pair(s)
    const cl = closed(client)
    if (how === 'terminate') server.terminate()
    else serverReq.socket.destroy()
    assert.deepEqual(await cl, { code: 1014, reason: 'upstream connection lost' }, how)
    await drained(s)
  }
})

test('client TCP drop: the upstream gets 1001', { timeout: 10_000 }, async (t) => {
  const s = await setup(t)
  const { client, server } = await pair(s)
  const up = closed(server)
  client.terminate()
  assert.deepEqual(await up, { code: 1001, reason: 'client connection lost' })
  await drained(s)
})

test('client message over websocket.maxPayload: the client gets 1009 and the upstream is closed too', { timeout: 10_000 }, async (t) => {
  const s = await setup(t)
  const { client, server } = await pair(s)
  const received: number[] = []
  server.on('message', (d: Buffer) => received.push(d.length))
  const up = closed(server)
  const cl = closed(client)
  // Exactly maxPayload still relays (the echo comes back); one byte more closes.
  const echo = collect(client, 1)
  client.send(Buffer.alloc(MAX, 1))
  assert.equal((await echo)[0].data.length, MAX)
  client.send(Buffer.alloc(MAX + 1, 2))
  assert.equal((await cl).code, 1009)
  const u = await up
  t.diagnostic(`upstream closed with ${u.code} "${u.reason}" after the client's oversized message`)
  // The reason is passed on: the upstream is closed with 1009 too.
  assert.deepEqual(u, { code: 1009, reason: 'message too big' })
  assert.deepEqual(received, [MAX], 'the oversized message never reached the upstream')
  await drained(s)
})

test('upstream message over websocket.maxPayload: the gateway closes the upstream and the client with 1009', { timeout: 10_000 }, async (t) => {
  const s = await setup(t)
  const { client, server } = await pair(s)
  const got: number[] = []
  client.on('message', (d: Buffer) => got.push(d.length))
  const up = closed(server)
  const cl = closed(client)
  server.send(Buffer.alloc(MAX, 1))
  server.send(Buffer.alloc(MAX + 1, 2))
  const c = await cl
  const u = await up
  t.diagnostic(`client closed with ${c.code} "${c.reason}", upstream with ${u.code} "${u.reason}"`)
  assert.equal(u.code, 1009, 'the gateway refuses the message with 1009')
  assert.deepEqual(c, { code: 1009, reason: 'message too big' })
  assert.deepEqual(got, [MAX], 'the message of exactly maxPayload relayed, the oversized one did not')
  await drained(s)
})

test('both sides closing at the same moment: both end, nothing leaks', { timeout: 10_000 }, async (t) => {
  const s = await setup(t)
  for (let i = 0; i < 20; i++) {
    const { client, server } = await pair(s)
    const up = closed(server)
    const cl = closed(client)
    client.close(4020, 'client first?')
    server.close(4021, 'upstream first?')
    const [u, c] = await Promise.all([up, cl])
    assert.ok([4020, 4021].includes(u.code) && [4020, 4021].includes(c.code), `codes ${u.code}/${c.code}`)
    await drained(s)
  }
})

test('closing many connections at once in every way leaves nothing behind', { timeout: 10_000 }, async (t) => {
  const s = await setup(t)
  const pairs = await Promise.all(Array.from({ length: 40 }, () => pair(s)))
  assert.equal(s.gw.app.connections.size, 40)
  const ends = pairs.map(({ client, server, serverReq }, i) => {
    const both = Promise.all([closed(client), closed(server)])
    switch (i % 5) {
      case 0: client.close(4000, 'x'); break
      case 1: server.close(4000, 'y'); break
      case 2: client.terminate(); break
      case 3: server.terminate(); break
      default: serverReq.socket.destroy()
    }
    return both
  })
  await Promise.all(ends)
  await drained(s)
})
