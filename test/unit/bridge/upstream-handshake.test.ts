/**
 * openUpstream against hand-written upstream answers: what it sends (path as given, Host, key,
 * headers) and which 101s it refuses (wrong accept key, unrequested subprotocol or
 * extension), each with the status the client would get.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import http, { type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import { acceptKey, deflateOffers, HandshakeCancel, openUpstream, ReusedReads } from '../../../src/bridge/upstream-handshake.js'
import { waitFor, within } from '../../helpers/resources.js'

/** An upstream that answers each upgrade with `answer(req)` (extra 101 header lines, or a full raw answer). */
async function upstream (t: TestContext, answer: (req: IncomingMessage) => { extra?: string[], raw?: string }): Promise<{ url: string, seen: IncomingMessage[] }> {
  const seen: IncomingMessage[] = []
  const server = http.createServer()
  const sockets = new Set<Duplex>()
  server.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
    seen.push(req)
    sockets.add(socket)
    socket.on('error', () => {})
    const a = answer(req)
    socket.write(a.raw ?? ['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade',
      `Sec-WebSocket-Accept: ${acceptKey(String(req.headers['sec-websocket-key']))}`, ...(a.extra ?? []), '', ''].join('\r\n'))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()) }))
  return { url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`, seen }
}

const base = { headers: {}, protocols: [], connectTimeout: 3000 }

test('sends the path as given (no dot-segment resolution), Host as the target\'s host, a fresh key and version 13', async (t) => {
  const u = await upstream(t, () => ({}))
  const r = await openUpstream({ ...base, url: `${u.url}/room/%2e%2e/../x?y=1`, headers: { authorization: 'Bearer abc', 'x-multi': ['a', 'b'] } })
  assert.equal(r.ok, true)
  if (r.ok) r.socket.destroy()
  const req = u.seen[0]
  assert.equal(req.url, '/room/%2e%2e/../x?y=1', 'the route\'s path cannot be escaped by dot segments')
  assert.equal(req.headers.host, new URL(u.url).host)
  assert.equal(req.headers.authorization, 'Bearer abc')
  assert.equal(req.headers['x-multi'], 'a, b')
  assert.equal(req.headers['sec-websocket-version'], '13')
  assert.match(String(req.headers['sec-websocket-key']), /^[+/0-9A-Za-z]{22}==$/)
  // A query-only target gets the root path.
  const r2 = await openUpstream({ ...base, url: `${u.url}?q=1` })
  if (r2.ok) r2.socket.destroy()
  assert.equal(u.seen[1].url, '/?q=1')
})

test('header values with CR or LF, and paths with spaces, control characters or non-ASCII text, are refused before anything is sent (400)', async (t) => {
  const u = await upstream(t, () => ({}))
  const bad = await openUpstream({ ...base, url: u.url, headers: { 'x-a': 'ok\r\nx-injected: 1' } })
  assert.deepEqual(bad.ok ? null : [bad.error.statusCode, bad.reason], [400, 'protocol'])
  for (const path of ['/a b', '/a\tb', '/a\x7fb', '/caf\u00e9', '/\u{1f600}']) {
    const badPath = await openUpstream({ ...base, url: `${u.url}${path}` })
    assert.deepEqual(badPath.ok ? null : [badPath.error.statusCode, badPath.reason], [400, 'protocol'], JSON.stringify(path))
  }
  assert.equal(u.seen.length, 0)
})

test('the head goes out as latin1: a byte from 0x80 to 0xFF in a header value is one byte upstream', async (t) => {
  const u = await upstream(t, () => ({}))
  const r = await openUpstream({ ...base, url: u.url, headers: { 'x-name': 'caf\u00e9 \u00ff' } })
  assert.equal(r.ok, true)
  if (r.ok) r.socket.destroy()
  // Node's parser reads header bytes as latin1 too: one char per byte.
  assert.equal(u.seen[0].headers['x-name'], 'caf\u00e9 \u00ff')
})

test('informational answers before the 101 are skipped', async (t) => {
  const u = await upstream(t, (req) => ({
    raw: 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n' +
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(String(req.headers['sec-websocket-key']))}\r\n\r\n`
  }))
  const r = await openUpstream({ ...base, url: u.url })
  assert.equal(r.ok, true)
  if (r.ok) r.socket.destroy()
})

test('an answer that arrives in pieces (an informational answer, the 101, then a frame) is read whole; the frame comes back as head', async (t) => {
  const frame = Buffer.from([0x81, 0x02, 0x68, 0x69])
  const server = http.createServer()
  const sockets = new Set<Duplex>()
  server.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
    sockets.add(socket)
    socket.on('error', () => {})
    const answer = Buffer.concat([Buffer.from('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Accept: ${acceptKey(String(req.headers['sec-websocket-key']))}\r\n\r\n`), frame])
    // Cut inside the 100, inside the 101's head, and between its end and the frame: each piece a read of its own.
    const cuts = [10, 40, answer.length - frame.length - 1, answer.length]
    let at = 0
    const next = (): void => {
      const end = cuts.shift()
      if (end === undefined) return
      socket.write(answer.subarray(at, end))
      at = end
      setTimeout(next, 15)
    }
    next()
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => new Promise<void>((resolve) => { for (const x of sockets) x.destroy(); server.close(() => resolve()) }))
  const r = await openUpstream({ ...base, url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}` })
  assert.equal(r.ok, true)
  if (!r.ok) return
  // The frame may come with the head's last byte (as head) or after it (on the socket).
  let got = Buffer.from(r.head)
  r.socket.on('data', (b: Buffer) => { got = Buffer.concat([got, b]) })
  await waitFor(() => got.length >= frame.length, () => `the frame after the 101 (${got.length} bytes)`)
  assert.deepEqual(got, frame)
  r.socket.destroy()
})

test('the selected subprotocol is returned; bytes sent right after the 101 come back as head or on the socket', async (t) => {
  const u = await upstream(t, (req) => ({ extra: [`Sec-WebSocket-Protocol: ${String(req.headers['sec-websocket-protocol']).split(',')[1].trim()}`] }))
  const r = await openUpstream({ ...base, url: u.url, protocols: ['a', 'b'] })
  assert.equal(r.ok, true)
  if (!r.ok) return
  assert.equal(r.protocol, 'b')
  assert.equal(u.seen[0].headers['sec-websocket-protocol'], 'a, b')
  r.socket.destroy()
})

test('permessage-deflate: the client\'s offer is passed on and the upstream\'s acceptance returned', async (t) => {
  const u = await upstream(t, () => ({ extra: ['Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=15'] }))
  const r = await openUpstream({ ...base, url: u.url, extensions: 'permessage-deflate; client_max_window_bits' })
  assert.equal(r.ok, true)
  if (!r.ok) return
  assert.equal(u.seen[0].headers['sec-websocket-extensions'], 'permessage-deflate; client_max_window_bits')
  assert.equal(r.extensions, 'permessage-deflate; client_max_window_bits=15')
  r.socket.destroy()
  const other = await upstream(t, () => ({ extra: ['Sec-WebSocket-Extensions: x-webkit-deflate-frame'] }))
  const r2 = await openUpstream({ ...base, url: other.url, extensions: 'permessage-deflate' })
  assert.deepEqual(r2.ok ? null : [r2.error.statusCode, r2.reason], [502, 'protocol'])
})

const refusals: Array<[string, (req: IncomingMessage) => { extra?: string[], raw?: string }, string[], RegExp]> = [
  ['a header value with a bare LF (header smuggling into the client\'s 101)', () => ({ extra: ['X-A: fine\nSet-Cookie: evil=1'] }), [], /invalid HTTP answer/],
  ['a header value with a bare CR', () => ({ extra: ['X-A: fine\rSet-Cookie: evil=1'] }), [], /invalid HTTP answer/],
  ['a CR before a line\'s CR LF', () => ({ extra: ['X-A: fine\r'] }), [], /invalid HTTP answer/],
  ['a NUL in a header value', () => ({ extra: ['X-A: fi\u0000ne'] }), [], /invalid HTTP answer/],
  ['a status line with a four-digit status', () => ({ raw: 'HTTP/1.1 1010 Switching\r\nUpgrade: websocket\r\n\r\n' }), [], /invalid HTTP answer/],
  ['an answer head over 16 KiB', () => ({ extra: [`X-Big: ${'a'.repeat(17 * 1024)}`] }), [], /too large/],
  ['a wrong Sec-WebSocket-Accept', () => ({ raw: 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: nope\r\n\r\n' }), [], /Accept/],
  ['a subprotocol when none was offered', () => ({ extra: ['Sec-WebSocket-Protocol: x'] }), [], /none was requested/],
  ['a subprotocol that was not offered', () => ({ extra: ['Sec-WebSocket-Protocol: c'] }), ['a', 'b'], /invalid subprotocol/],
  ['an extension that was not offered', () => ({ extra: ['Sec-WebSocket-Extensions: permessage-deflate'] }), [], /extension/]
]
for (const [what, answer, protocols, message] of refusals) {
  test(`a 101 with ${what} is refused: 502 (protocol), the socket is not kept`, async (t) => {
    const u = await upstream(t, answer)
    const r = await openUpstream({ ...base, url: u.url, protocols })
    assert.equal(r.ok, false)
    if (r.ok) return
    assert.equal(r.error.statusCode, 502)
    assert.equal(r.reason, 'protocol')
    assert.match((r.error.cause as Error | undefined)?.message ?? '', message)
    assert.equal(r.error.code, 'GW_ERR_UPSTREAM_UNAVAILABLE')
  })
}

test('non-101 answers: 4xx/5xx keep their status (rejected), others are 502; nothing listening is 502 refused; silence is 504', async (t) => {
  const u403 = await upstream(t, () => ({ raw: 'HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n' }))
  const u302 = await upstream(t, () => ({ raw: 'HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n' }))
  const silent = await upstream(t, () => ({ raw: '' }))
  const r403 = await openUpstream({ ...base, url: u403.url })
  assert.deepEqual(r403.ok ? null : [r403.error.statusCode, r403.reason, r403.upstreamStatus], [403, 'rejected', 403])
  const r302 = await openUpstream({ ...base, url: u302.url })
  assert.deepEqual(r302.ok ? null : [r302.error.statusCode, r302.reason, r302.upstreamStatus], [502, 'rejected', 302])
  const closedPort = new URL(silent.url)
  const srv = http.createServer()
  srv.listen(0, '127.0.0.1')
  await once(srv, 'listening')
  const deadPort = (srv.address() as AddressInfo).port
  await new Promise<void>((resolve) => srv.close(() => resolve()))
  const refused = await openUpstream({ ...base, url: `ws://127.0.0.1:${deadPort}` })
  assert.deepEqual(refused.ok ? null : [refused.error.statusCode, refused.reason], [502, 'refused'])
  const timedOut = await openUpstream({ ...base, url: `ws://${closedPort.host}`, connectTimeout: 200 })
  assert.deepEqual(timedOut.ok ? null : [timedOut.error.statusCode, timedOut.reason], [504, 'timeout'])
})

test('cancel() ends the attempt at once (499 aborted) and closes its upstream connection; a cancel before the attempt connects nowhere', async (t) => {
  const silent = await upstream(t, () => ({ raw: '' }))
  const cancel = new HandshakeCancel()
  const pending = openUpstream({ ...base, url: silent.url, cancel })
  await waitFor(() => silent.seen.length === 1, 'the upgrade request at the upstream')
  const upstreamSide = silent.seen[0].socket
  // The upstream sees the connection end (its own side stays half-open: http servers allow that).
  const gone = once(upstreamSide, 'end')
  cancel.cancel()
  const r = await pending
  assert.deepEqual(r.ok ? null : [r.error.statusCode, r.reason], [499, 'aborted'])
  await within(gone, 5000, 'the cancelled attempt\'s connection to end at the upstream')
  assert.equal(cancel.onCancel, null, 'the finished attempt is no longer reachable from its canceller')
  const early = new HandshakeCancel()
  early.cancel()
  const r2 = await openUpstream({ ...base, url: silent.url, cancel: early })
  assert.deepEqual(r2.ok ? null : [r2.error.statusCode, r2.reason], [499, 'aborted'])
  // A second attempt sharing a canceller still in use is refused, not left uncancellable.
  const shared = new HandshakeCancel()
  const first = openUpstream({ ...base, url: silent.url, cancel: shared })
  const second = await openUpstream({ ...base, url: silent.url, cancel: shared })
  assert.deepEqual(second.ok ? null : [second.error.statusCode, second.reason], [500, 'protocol'])
  shared.cancel()
  const f = await first
  assert.deepEqual(f.ok ? null : [f.error.statusCode, f.reason], [499, 'aborted'])
})

test('an http:// target URL is opened as ws:// (targets are configured as http URLs); other URLs are refused (400)', async (t) => {
  const up = await upstream(t, () => ({}))
  const r = await openUpstream({ ...base, url: up.url.replace(/^ws:/, 'http:') + '/a?b=1' })
  assert.equal(r.ok, true)
  if (r.ok) r.socket.destroy()
  assert.equal(up.seen[0].url, '/a?b=1')
  // A second attempt on the same origin (parsed once, then cached) goes to the same place.
  const again = await openUpstream({ ...base, url: up.url.replace(/^ws:/, 'http:') + '/c' })
  if (again.ok) again.socket.destroy()
  assert.deepEqual([again.ok, up.seen[1].url], [true, '/c'])
  for (const url of ['localhost:1/x', 'ftp://127.0.0.1/x', 'http://[::1/x']) {
    const bad = await openUpstream({ ...base, url })
    assert.deepEqual(bad.ok ? null : [bad.error.statusCode, bad.reason], [400, 'protocol'], url)
  }
})

test('deflateOffers keeps the client\'s permessage-deflate offers as written and drops other extensions', () => {
  assert.equal(deflateOffers(undefined), '')
  assert.equal(deflateOffers('x-webkit-deflate-frame'), '')
  assert.equal(deflateOffers('permessage-deflate; client_max_window_bits, x-foo, Permessage-Deflate; server_no_context_takeover'),
    'permessage-deflate; client_max_window_bits, Permessage-Deflate; server_no_context_takeover')
})

test('ReusedReads: one buffer, read after read; a fresh one after keep(); 4 times larger after a read that fills it, up to 64 KiB; 4 times smaller after 8 short reads in a row', () => {
  const r = new ReusedReads()
  const chunks: Buffer[] = []
  r.onChunk = (c) => { chunks.push(c) }
  const read = (n: number): Buffer => {
    const buf = r.onread.buffer()
    buf.fill(n & 0xff, 0, n)
    r.onread.callback(n, buf)
    return buf
  }
  const first = read(10)
  assert.equal(first.length, 512)
  assert.deepEqual([...chunks[0]], Array(10).fill(10))
  assert.equal(read(20), first, 'the same buffer again')
  r.keep()
  read(30)
  assert.notEqual(r.onread.buffer(), first, 'a chunk kept: the next read goes elsewhere')
  const sizes: number[] = []
  for (let i = 0; i < 5; i++) { read(r.onread.buffer().length); sizes.push(r.onread.buffer().length) }
  assert.deepEqual(sizes, [2048, 8192, 32768, 65536, 65536], 'full reads: the buffer grows to 64 KiB')
  const large = r.onread.buffer()
  for (let i = 0; i < 7; i++) read(100)
  read(60_000)
  for (let i = 0; i < 7; i++) read(100)
  assert.equal(r.onread.buffer(), large, 'short reads among long ones keep it')
  read(100)
  assert.equal(r.onread.buffer().length, 16384, 'a run of 8 short reads: 4 times smaller')
  for (let i = 0; i < 24; i++) read(100)
  assert.equal(r.onread.buffer().length, 512, 'and down to 512 bytes')
})
