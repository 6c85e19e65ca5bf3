/**
 * Lifecycle event payloads (src/events/payload.ts): what the builders put in each event, the
 * idempotency key, the `instance-lost` disconnect, and parseQueued, which reads entries back
 * from Redis where anything may have been written.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { BridgeEnd, BridgeInfo } from '../../../src/bridge/bridge.js'
import {
  connectEvent, disconnectEvent, idempotencyKey, lostEvent, parseQueued, MAX_ENTRY_BYTES,
  type ConnectEvent, type DisconnectEvent, type LifecycleEvent
} from '../../../src/events/payload.js'

const INFO: BridgeInfo = {
  id: 'c0ffee00-1111-4222-8333-444455556666',
  route: '/chat',
  path: '/chat/room/1',
  clientIp: '203.0.113.7',
  userId: 'u-42',
  subprotocol: 'chat.v1',
  upstream: 'http://127.0.0.1:9001',
  instanceId: 'host-1234-abcdef',
  url: '/chat/room/1?access_token=***',
  remotePort: 51234,
  handshakeMs: 3
}
const T0 = Date.UTC(2026, 0, 2, 3, 4, 5, 678)
const URL_ = 'http://127.0.0.1:7000/events'

const CONNECT_KEYS = ['type', 'id', 'route', 'path', 'userId', 'clientIp', 'instanceId', 'connectedAt', 'at']
const DISCONNECT_KEYS = [...CONNECT_KEYS, 'closedBy', 'clientCode', 'upstreamCode', 'reason', 'durationMs', 'messagesFromClient', 'messagesToClient', 'bytesFromClient', 'bytesToClient']

test('connectEvent: the connection\'s identity, both times the 101\'s, nothing internal', () => {
  const e = connectEvent(INFO, T0)
  assert.deepEqual(e, {
    type: 'connect',
    id: INFO.id,
    route: '/chat',
    path: '/chat/room/1',
    userId: 'u-42',
    clientIp: '203.0.113.7',
    instanceId: 'host-1234-abcdef',
    connectedAt: '2026-01-02T03:04:05.678Z',
    at: '2026-01-02T03:04:05.678Z'
  })
  assert.deepEqual(Object.keys(e).sort(), [...CONNECT_KEYS].sort(), 'no upstream URL, subprotocol, port or masked URL')
  assert.equal(connectEvent({ ...INFO, userId: null }, T0).userId, null)
})

test('disconnectEvent: codes, who closed, duration and the four counters', () => {
  const end: BridgeEnd = { by: 'upstream', clientCode: 4001, upstreamCode: 4001, reason: 'bye' }
  const counters = { messagesFromClient: 3, messagesToClient: 5, bytesFromClient: 30, bytesToClient: 50 }
  const e = disconnectEvent(INFO, T0, end, counters, T0 + 1234)
  assert.deepEqual(e, {
    type: 'disconnect',
    id: INFO.id,
    route: '/chat',
    path: '/chat/room/1',
    userId: 'u-42',
    clientIp: '203.0.113.7',
    instanceId: 'host-1234-abcdef',
    connectedAt: '2026-01-02T03:04:05.678Z',
    at: '2026-01-02T03:04:06.912Z',
    closedBy: 'upstream',
    clientCode: 4001,
    upstreamCode: 4001,
    reason: 'bye',
    durationMs: 1234,
    messagesFromClient: 3,
    messagesToClient: 5,
    bytesFromClient: 30,
    bytesToClient: 50
  })
  assert.deepEqual(Object.keys(e).sort(), [...DISCONNECT_KEYS].sort())
  // A Bridge is passed as the counters: only the four are taken.
  const bridgeLike = { ...counters, rttMs: 5, lastPongAt: 1, info: INFO }
  assert.deepEqual(Object.keys(disconnectEvent(INFO, T0, end, bridgeLike, T0)).sort(), [...DISCONNECT_KEYS].sort())
  // A clock that went backwards never gives a negative duration.
  assert.equal(disconnectEvent(INFO, T0, end, counters, T0 - 50).durationMs, 0)
})

test('idempotencyKey is <id>:<type>, the same for every retry and every instance', () => {
  const c = connectEvent(INFO, T0)
  const d = disconnectEvent(INFO, T0, { by: 'client', clientCode: 1000, upstreamCode: 1000, reason: '' }, { messagesFromClient: 0, messagesToClient: 0, bytesFromClient: 0, bytesToClient: 0 }, T0 + 1)
  assert.equal(idempotencyKey(c), `${INFO.id}:connect`)
  assert.equal(idempotencyKey(d), `${INFO.id}:disconnect`)
  assert.equal(idempotencyKey(lostEvent(c, T0 + 5)), `${INFO.id}:disconnect`, 'a survivor\'s disconnect has the key the dead instance would have used')
})

test('lostEvent: closedBy instance-lost, 1006 both ways, counters 0, no claims; identity from the connect', () => {
  const c: ConnectEvent = { ...connectEvent(INFO, T0), claims: { sub: 'u-42', tenant: 'acme' } }
  const e = lostEvent(c, T0 + 10_000)
  assert.deepEqual(e, {
    type: 'disconnect',
    id: INFO.id,
    route: '/chat',
    path: '/chat/room/1',
    userId: 'u-42',
    clientIp: '203.0.113.7',
    instanceId: 'host-1234-abcdef',
    connectedAt: '2026-01-02T03:04:05.678Z',
    at: '2026-01-02T03:04:15.678Z',
    closedBy: 'instance-lost',
    clientCode: 1006,
    upstreamCode: 1006,
    reason: 'instance lost',
    durationMs: 10_000,
    messagesFromClient: 0,
    messagesToClient: 0,
    bytesFromClient: 0,
    bytesToClient: 0
  })
  assert.equal('claims' in e, false)
  assert.equal(c.claims?.tenant, 'acme', 'the connect itself is left as it was')
})

/** What RedisEventQueue.push writes. */
const entry = (event: LifecycleEvent, url = URL_): string => JSON.stringify({ event, url })
const CONNECT = connectEvent(INFO, T0)
const DISCONNECT: DisconnectEvent = disconnectEvent(INFO, T0, { by: 'gateway', clientCode: 1008, upstreamCode: 1001, reason: 'closed by administrator' }, { messagesFromClient: 1, messagesToClient: 2, bytesFromClient: 3, bytesToClient: 4 }, T0 + 99)

test('parseQueued accepts what push writes: connect (with and without claims), disconnect, lost, https URLs', () => {
  const withClaims: ConnectEvent = { ...CONNECT, claims: { sub: 'u-42', roles: ['a', 'b'], n: 1 } }
  for (const e of [CONNECT, withClaims, DISCONNECT, lostEvent(CONNECT, T0 + 1), { ...CONNECT, userId: null }]) {
    assert.deepEqual(parseQueued(entry(e)), { event: e, url: URL_ }, e.type)
  }
  assert.deepEqual(parseQueued(entry(CONNECT, 'https://hooks.example.com/ws?x=1')), { event: CONNECT, url: 'https://hooks.example.com/ws?x=1' })
  for (const by of ['client', 'upstream', 'gateway', 'instance-lost'] as const) {
    assert.notEqual(parseQueued(entry({ ...DISCONNECT, closedBy: by })), null, by)
  }
})

test('parseQueued refuses what is not an entry: not a string, not JSON, not an object, huge', () => {
  for (const raw of [undefined, null, 42, Buffer.from(entry(CONNECT)), ['x'], {}]) assert.equal(parseQueued(raw), null, String(raw))
  for (const raw of ['', 'not json', '{"event":', 'null', '42', '"str"', '[]', '[{"event":{},"url":"http://x"}]', 'true']) assert.equal(parseQueued(raw), null, raw)
  // Valid JSON, right shape, but longer than anything the gateway writes.
  const huge = entry({ ...CONNECT, claims: { pad: 'x'.repeat(MAX_ENTRY_BYTES) } })
  assert.equal(parseQueued(huge), null)
  assert.equal(parseQueued(' '.repeat(MAX_ENTRY_BYTES + 1)), null)
})

test('parseQueued refuses a bad or missing URL', () => {
  for (const url of [undefined, null, 7, '', 'ftp://x/', 'file:///etc/passwd', 'javascript:alert(1)', 'gopher://127.0.0.1:6379/_FLUSHALL', '//x/y', 'HTTP', `http://x/${'a'.repeat(4096)}`]) {
    assert.equal(parseQueued(JSON.stringify({ event: CONNECT, url })), null, String(url))
  }
  assert.equal(parseQueued(JSON.stringify({ event: CONNECT })), null)
})

test('parseQueued refuses missing fields and wrong types, field by field', () => {
  const bad = (e: Record<string, unknown>, why: string): void => { assert.equal(parseQueued(JSON.stringify({ event: e, url: URL_ })), null, why) }
  bad(null as never, 'event null')
  assert.equal(parseQueued(JSON.stringify({ event: 'connect', url: URL_ })), null, 'event a string')
  assert.equal(parseQueued(JSON.stringify({ url: URL_ })), null, 'no event')
  for (const k of CONNECT_KEYS) {
    if (k === 'userId') continue
    const { [k]: _gone, ...rest } = CONNECT as unknown as Record<string, unknown>
    bad(rest, `connect without ${k}`)
  }
  for (const k of DISCONNECT_KEYS) {
    if (k === 'userId') continue
    const { [k]: _gone, ...rest } = DISCONNECT as unknown as Record<string, unknown>
    bad(rest, `disconnect without ${k}`)
  }
  bad({ ...CONNECT, type: 'open' }, 'unknown type')
  bad({ ...CONNECT, type: 'disconnect' }, 'a connect claiming to be a disconnect lacks its fields')
  bad({ ...CONNECT, id: '' }, 'empty id')
  bad({ ...CONNECT, id: 42 }, 'numeric id')
  bad({ ...CONNECT, userId: 42 }, 'numeric userId')
  bad({ ...CONNECT, userId: undefined }, 'missing userId (null is how "none" is written)')
  bad({ ...CONNECT, route: ['/chat'] }, 'array route')
  bad({ ...CONNECT, connectedAt: 'yesterday' }, 'not ISO')
  bad({ ...CONNECT, connectedAt: T0 }, 'number time')
  bad({ ...CONNECT, at: '2026-01-02 03:04:05' }, 'not ISO (no T/Z)')
  bad({ ...CONNECT, claims: null }, 'null claims')
  bad({ ...CONNECT, claims: ['sub'] }, 'array claims')
  bad({ ...CONNECT, claims: 'sub' }, 'string claims')
  bad({ ...DISCONNECT, closedBy: 'mallory' }, 'unknown closedBy')
  bad({ ...DISCONNECT, clientCode: '1000' }, 'string code')
  bad({ ...DISCONNECT, clientCode: -1 }, 'negative code')
  bad({ ...DISCONNECT, upstreamCode: 1000.5 }, 'fractional code')
  bad({ ...DISCONNECT, durationMs: 1e300 }, 'unsafe integer')
  bad({ ...DISCONNECT, durationMs: null }, 'null duration')
  bad({ ...DISCONNECT, reason: 7 }, 'numeric reason')
  for (const k of ['messagesFromClient', 'messagesToClient', 'bytesFromClient', 'bytesToClient']) {
    bad({ ...DISCONNECT, [k]: -3 }, `negative ${k}`)
    bad({ ...DISCONNECT, [k]: '3' }, `string ${k}`)
  }
})

test('parseQueued refuses extra-long strings in every field', () => {
  const long = (n: number): string => 'x'.repeat(n)
  const bad = (e: Record<string, unknown>, why: string): void => { assert.equal(parseQueued(JSON.stringify({ event: e, url: URL_ })), null, why) }
  bad({ ...CONNECT, id: long(129) }, 'id')
  bad({ ...CONNECT, route: long(1025) }, 'route')
  bad({ ...CONNECT, path: long(8193) }, 'path')
  bad({ ...CONNECT, userId: long(1025) }, 'userId')
  bad({ ...CONNECT, clientIp: long(65) }, 'clientIp')
  bad({ ...CONNECT, instanceId: long(129) }, 'instanceId')
  bad({ ...CONNECT, connectedAt: `2026-01-02T03:04:05.${'1'.repeat(40)}Z` }, 'connectedAt')
  bad({ ...DISCONNECT, reason: long(1025) }, 'reason')
  // At the limits they are accepted.
  assert.notEqual(parseQueued(entry({ ...CONNECT, id: long(128), route: long(1024), clientIp: long(64) })), null)
})

test('parseQueued keeps only the fields an event has: extra ones written into Redis are not posted', () => {
  const hostile = { ...DISCONNECT, injected: 'x'.repeat(1000), isAdmin: true }
  const q = parseQueued(JSON.stringify({ event: hostile, url: URL_, also: 'ignored' }))
  assert.notEqual(q, null)
  assert.deepEqual(q, { event: DISCONNECT, url: URL_ })
  const c = parseQueued(JSON.stringify({ event: { ...CONNECT, closedBy: 'client', durationMs: 5 }, url: URL_ }))
  assert.deepEqual(c, { event: CONNECT, url: URL_ }, 'a connect does not carry disconnect fields')
  // A __proto__ key in the JSON does not become the event's prototype.
  const p = parseQueued(`{"event":${JSON.stringify(CONNECT).slice(0, -1)},"__proto__":{"polluted":true}},"url":"${URL_}"}`)
  assert.notEqual(p, null)
  assert.equal((p!.event as unknown as Record<string, unknown>).polluted, undefined)
  assert.equal(({} as Record<string, unknown>).polluted, undefined)
})
