/**
 * The cluster bus's message checks (src/registry/bus-messages.ts): every hostile shape is refused
 * with a reason and nothing throws; what the registry itself sends round-trips.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import {
  encodeData, encodeEnvelope, encodeReply, fitReason, isInstanceId, maxMessageLength, parseConnectionEntry,
  parseConnectionView, parseEnvelope, parseReply, RateLimitedWarning, MAX_ENTRY_LENGTH, MAX_PAGE_LIMIT, MAX_REPLY_LENGTH,
  type Parsed, type WireCommand
} from '../../../src/registry/bus-messages.js'

const require = createRequire(import.meta.url)
const { isValidStatusCode } = require(join(dirname(require.resolve('ws')), 'lib', 'validation.js')) as { isValidStatusCode: (code: number) => boolean }

const MAX = 1024
const RID = '6f1c2a8e-7d4b-4a59-9a53-0c1b2d3e4f50'
const FROM = 'host-1234-abcdef'

function env (cmd: unknown, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ rid: RID, from: FROM, cmd, ...extra })
}

function reason<T> (p: Parsed<T>): string {
  return p.ok ? 'ok' : p.reason
}

test('what the registry sends round-trips: close, send (text and binary), broadcast', () => {
  const cmds: WireCommand[] = [
    { op: 'close', id: 'c1', code: 4001, reason: 'moved' },
    { op: 'send', id: 'c1', data: encodeData('héllo'), binary: false },
    { op: 'send', id: 'c1', data: encodeData(Buffer.from([0, 255, 1])), binary: true },
    { op: 'broadcast', route: '/chat', data: encodeData('all'), binary: false },
    { op: 'broadcast', user: 'u1', data: encodeData(Buffer.alloc(0)), binary: true }
  ]
  const got = cmds.map((c) => parseEnvelope(encodeEnvelope(RID, FROM, c), MAX))
  for (const g of got) assert.equal(g.ok, true, reason(g))
  const values = got.map((g) => g.ok ? g.value : null)
  assert.deepEqual(values[0], { rid: RID, from: FROM, cmd: { op: 'close', id: 'c1', code: 4001, reason: 'moved' } })
  assert.deepEqual(values[1]?.cmd, { op: 'send', id: 'c1', payload: 'héllo', binary: false })
  assert.deepEqual(values[2]?.cmd, { op: 'send', id: 'c1', payload: Buffer.from([0, 255, 1]), binary: true })
  assert.deepEqual(values[3]?.cmd, { op: 'broadcast', route: '/chat', payload: 'all', binary: false })
  assert.deepEqual(values[4]?.cmd, { op: 'broadcast', user: 'u1', payload: Buffer.alloc(0), binary: true })
  assert.deepEqual(parseReply(encodeReply(RID, 3)), { ok: true, value: { rid: RID, result: 3 } })
  assert.deepEqual(parseReply(encodeReply(RID, -1)), { ok: true, value: { rid: RID, result: -1 } })
})

test('envelopes that are not objects, or lack their fields, are refused', () => {
  const cases: Array<[string, string]> = [
    ['null', 'not-object'],
    ['42', 'not-object'],
    ['"x"', 'not-object'],
    ['[1,2]', 'not-object'],
    ['true', 'not-object'],
    ['', 'not-json'],
    ['{', 'not-json'],
    ['{}', 'bad-rid'],
    [JSON.stringify({ rid: 5, from: FROM, cmd: {} }), 'bad-rid'],
    [JSON.stringify({ rid: '', from: FROM, cmd: {} }), 'bad-rid'],
    [JSON.stringify({ rid: 'x'.repeat(65), from: FROM, cmd: {} }), 'bad-rid'],
    [JSON.stringify({ rid: RID, cmd: {} }), 'bad-from'],
    [JSON.stringify({ rid: RID, from: 'a\nb', cmd: {} }), 'bad-from'],
    [JSON.stringify({ rid: RID, from: 'x'.repeat(257), cmd: {} }), 'bad-from'],
    [JSON.stringify({ rid: RID, from: ['x'], cmd: {} }), 'bad-from'],
    [JSON.stringify({ rid: RID, from: FROM }), 'bad-op'],
    [env(null), 'bad-op'],
    [env([]), 'bad-op'],
    [env('close'), 'bad-op'],
    [env({}), 'bad-op'],
    [env({ op: 'nuke', id: 'c1' }), 'bad-op'],
    [env({ op: 'CLOSE', id: 'c1', code: 1000, reason: '' }), 'bad-op'],
    [env({ op: '__proto__' }), 'bad-op']
  ]
  for (const [msg, why] of cases) assert.equal(reason(parseEnvelope(msg, MAX)), why, msg.slice(0, 80))
})

test('close: the code is one ws would send, the reason a string of at most 123 bytes', () => {
  const close = (code: unknown, r: unknown = 'x', id: unknown = 'c1'): string => reason(parseEnvelope(env({ op: 'close', id, code, reason: r }), MAX))
  for (const code of [70000, 1005, 1006, 1015, 1004, 999, 0, -1, 5000, 65535, 1000.5, 'abc', '1000', null, true, [1000]]) {
    assert.equal(close(code), 'bad-close-code', String(code))
  }
  assert.equal(reason(parseEnvelope(env({ op: 'close', id: 'c1', reason: 'x' }), MAX)), 'bad-close-code')
  // Exactly ws's rule, over the whole 16-bit range and beyond it.
  for (let code = 0; code <= 70000; code++) {
    assert.equal(close(code) === 'ok', isValidStatusCode(code), String(code))
  }
  assert.equal(close(1000, 'a'.repeat(123)), 'ok')
  assert.equal(close(1000, 'a'.repeat(124)), 'bad-reason')
  assert.equal(close(1000, 'é'.repeat(61)), 'ok') // 122 bytes
  assert.equal(close(1000, 'é'.repeat(62)), 'bad-reason') // 124 bytes
  assert.equal(close(1000, 'a'.repeat(200)), 'bad-reason')
  assert.equal(close(1000, 5), 'bad-reason')
  assert.equal(close(1000, null), 'bad-reason')
  assert.equal(reason(parseEnvelope(env({ op: 'close', id: 'c1', code: 1000 }), MAX)), 'bad-reason')
  assert.equal(close(1000, 'x', 7), 'bad-id')
  assert.equal(close(1000, 'x', ''), 'bad-id')
  assert.equal(close(1000, 'x', 'i'.repeat(129)), 'bad-id')
})

test('send and broadcast: binary is a boolean, data strict base64 of at most maxPayload bytes, text valid UTF-8', () => {
  const send = (data: unknown, binary: unknown = true, id: unknown = 'c1'): string => reason(parseEnvelope(env({ op: 'send', id, data, binary }), MAX))
  assert.equal(send(encodeData(Buffer.alloc(MAX))), 'ok')
  assert.equal(send(encodeData(Buffer.alloc(MAX - 1))), 'ok')
  assert.equal(send(encodeData(Buffer.alloc(MAX - 2))), 'ok')
  assert.equal(send(encodeData(Buffer.alloc(MAX + 1))), 'data-too-large')
  for (const bad of ['not base64!', 'QQ', 'QQ=', '====', 'Q===', 'QUJD\n', ' QUJD', 'QU=D', 5, null, undefined, ['QUJD'], { a: 1 }]) {
    assert.equal(send(bad), 'bad-data', String(bad))
  }
  for (const binary of [null, 'true', 1, 0]) assert.equal(send('QUJD', binary), 'bad-binary', String(binary))
  assert.equal(reason(parseEnvelope(env({ op: 'send', id: 'c1', data: 'QUJD' }), MAX)), 'bad-binary')
  assert.equal(send(encodeData(Buffer.from([0xff, 0xfe])), false), 'bad-text')
  assert.equal(send(encodeData(Buffer.from([0xff, 0xfe])), true), 'ok')
  assert.equal(send('QUJD', true, 42), 'bad-id')
  const bc = (fields: Record<string, unknown>): string => reason(parseEnvelope(env({ op: 'broadcast', data: 'QUJD', binary: false, ...fields }), MAX))
  assert.equal(bc({}), 'ok')
  assert.equal(bc({ route: '/chat', user: 'u' }), 'ok')
  for (const route of [null, 5, ['/chat'], { a: 1 }, 'r'.repeat(4097)]) assert.equal(bc({ route }), 'bad-filter', String(route))
  assert.equal(bc({ user: null }), 'bad-filter')
  assert.equal(bc({ data: encodeData(Buffer.alloc(MAX + 1)) }), 'data-too-large')
})

test('a message longer than any valid one is refused before it is parsed', () => {
  const huge = env({ op: 'send', id: 'c1', data: 'A'.repeat(maxMessageLength(MAX)), binary: true })
  assert.equal(reason(parseEnvelope(huge, MAX)), 'too-large')
  assert.equal(reason(parseEnvelope('x'.repeat(10 * 1024 * 1024), MAX)), 'too-large')
  assert.equal(reason(parseReply('x'.repeat(MAX_REPLY_LENGTH + 1))), 'too-large')
  // The largest valid message fits.
  const largest = encodeEnvelope(RID, 'h'.repeat(256), { op: 'broadcast', route: 'r'.repeat(4096), user: 'u'.repeat(4096), data: encodeData(Buffer.alloc(MAX)), binary: true })
  assert.equal(reason(parseEnvelope(largest, MAX)), 'ok')
})

test('fields the version does not know are ignored; prototype keys are plain data', () => {
  assert.equal(reason(parseEnvelope(env({ op: 'close', id: 'c1', code: 1000, reason: '', extra: 1 }, { v: 2 }), MAX)), 'ok')
  const p = parseEnvelope('{"rid":"r","from":"f","cmd":{"op":"close","id":"c1","code":1000,"reason":""},"__proto__":{"polluted":true}}', MAX)
  assert.equal(p.ok, true)
  assert.equal(({} as Record<string, unknown>).polluted, undefined)
})

test('replies: rid a short string, result a safe integer >= -1', () => {
  const cases: Array<[string, string]> = [
    ['null', 'not-object'],
    ['7', 'not-object'],
    ['[]', 'not-object'],
    ['nope', 'not-json'],
    ['{}', 'bad-rid'],
    [JSON.stringify({ rid: 1, result: 1 }), 'bad-rid'],
    [JSON.stringify({ rid: RID }), 'bad-result'],
    [JSON.stringify({ rid: RID, result: '1' }), 'bad-result'],
    [JSON.stringify({ rid: RID, result: 1.5 }), 'bad-result'],
    [JSON.stringify({ rid: RID, result: -2 }), 'bad-result'],
    [JSON.stringify({ rid: RID, result: 2 ** 60 }), 'bad-result'],
    [JSON.stringify({ rid: RID, result: null }), 'bad-result'],
    ['{"rid":"r","result":1e999}', 'bad-result']
  ]
  for (const [msg, why] of cases) assert.equal(reason(parseReply(msg)), why, msg)
})

const ENTRY = {
  id: 'c1',
  route: '/chat',
  path: '/chat/a',
  clientIp: '127.0.0.1',
  userId: null,
  subprotocol: 'chat',
  upstream: 'http://127.0.0.1:1',
  instanceId: FROM,
  connectedAt: '2024-01-01T00:00:00.000Z',
  lastActivityAt: '2024-01-01T00:00:01.000Z',
  lastPongAt: null,
  rttMs: 1.5,
  messagesFromClient: 1,
  messagesToClient: 2,
  bytesFromClient: 3,
  bytesToClient: 4
}

test('connection entries: a view the admin API can show, of the hash\'s own instance, else refused', () => {
  const parse = (v: unknown, id?: string): Parsed<Record<string, unknown>> => parseConnectionEntry(typeof v === 'string' ? v : JSON.stringify(v), { instanceId: FROM, id })
  assert.deepEqual(parse(ENTRY), { ok: true, value: ENTRY })
  assert.deepEqual(parse({ ...ENTRY, extra: 'x' }), { ok: true, value: ENTRY }, 'unknown fields are dropped')
  assert.equal(parse(ENTRY, 'c1').ok, true)
  assert.equal(reason(parse(ENTRY, 'c2')), 'wrong-owner')
  assert.equal(reason(parse({ ...ENTRY, instanceId: 'other' })), 'wrong-owner')
  const bad: Array<[unknown, string]> = [
    ['not json', 'not-json'],
    ['null', 'not-object'],
    ['[]', 'not-object'],
    ['"x"', 'not-object'],
    ['x'.repeat(MAX_ENTRY_LENGTH + 1), 'too-large'],
    [{}, 'bad-field'],
    [{ ...ENTRY, id: 5 }, 'bad-field'],
    [{ ...ENTRY, id: 'i'.repeat(129) }, 'bad-field'],
    [{ ...ENTRY, route: null }, 'bad-field'],
    [{ ...ENTRY, userId: 7 }, 'bad-field'],
    [{ ...ENTRY, connectedAt: 'yesterday' }, 'bad-field'],
    [{ ...ENTRY, lastPongAt: 5 }, 'bad-field'],
    [{ ...ENTRY, rttMs: 'fast' }, 'bad-field'],
    [{ ...ENTRY, messagesFromClient: -1 }, 'bad-field'],
    [{ ...ENTRY, bytesToClient: 1.5 }, 'bad-field'],
    [{ ...ENTRY, bytesFromClient: '3' }, 'bad-field']
  ]
  for (const [v, why] of bad) assert.equal(reason(parse(v)), why, JSON.stringify(v).slice(0, 80))
})

test('isInstanceId: a short printable string', () => {
  assert.equal(isInstanceId('host-1-abc'), true)
  for (const v of ['', 'a\u0000b', 'x'.repeat(257), 5, null]) assert.equal(isInstanceId(v), false, String(v))
})

test('fitReason cuts at 123 bytes on a character boundary', () => {
  assert.equal(fitReason('short'), 'short')
  assert.equal(fitReason('a'.repeat(200)), 'a'.repeat(123))
  const cut = fitReason('é'.repeat(100))
  assert.equal(cut, 'é'.repeat(61))
  assert.ok(Buffer.byteLength(cut) <= 123)
  assert.equal(fitReason('€'.repeat(41)), '€'.repeat(41)) // exactly 123 bytes
})

test('RateLimitedWarning: one line per interval, carrying how many were suppressed', () => {
  let now = 0
  const lines: Array<[object, string]> = []
  const w = new RateLimitedWarning((o, msg) => lines.push([o, msg]), 'cluster bus: message ignored', 1000, () => now)
  w.hit({ reason: 'not-json' })
  for (let i = 0; i < 10_000; i++) w.hit({ reason: 'bad-op' })
  assert.equal(lines.length, 1)
  assert.deepEqual(lines[0], [{ reason: 'not-json', suppressed: 0 }, 'cluster bus: message ignored'])
  now = 999
  w.hit({ reason: 'bad-op' })
  assert.equal(lines.length, 1)
  now = 1000
  w.hit({ reason: 'bad-rid' })
  assert.deepEqual(lines[1], [{ reason: 'bad-rid', suppressed: 10_001 }, 'cluster bus: message ignored'])
})

test('questions (find, count, page) round-trip; hostile ones are refused', () => {
  const ok = (cmd: unknown): unknown => { const p = parseEnvelope(env(cmd), MAX); assert.equal(p.ok, true, reason(p)); return p.ok ? p.value.cmd : null }
  assert.deepEqual(ok({ op: 'find', id: 'c1' }), { op: 'find', id: 'c1' })
  assert.deepEqual(ok({ op: 'count', route: '/chat', user: 'u1' }), { op: 'count', route: '/chat', user: 'u1' })
  assert.deepEqual(ok({ op: 'count' }), { op: 'count' })
  assert.deepEqual(ok({ op: 'page', user: 'u1', offset: 0, limit: MAX_PAGE_LIMIT, extra: 1 }), { op: 'page', user: 'u1', offset: 0, limit: MAX_PAGE_LIMIT })
  const cases: Array<[unknown, string]> = [
    [{ op: 'find' }, 'bad-id'],
    [{ op: 'find', id: 'a\nb' }, 'bad-id'],
    [{ op: 'count', route: 7 }, 'bad-filter'],
    [{ op: 'page', route: 'r'.repeat(5000), offset: 0, limit: 1 }, 'bad-filter'],
    [{ op: 'page', offset: -1, limit: 1 }, 'bad-page'],
    [{ op: 'page', offset: 0.5, limit: 1 }, 'bad-page'],
    [{ op: 'page', offset: 0, limit: 0 }, 'bad-page'],
    [{ op: 'page', offset: 0, limit: MAX_PAGE_LIMIT + 1 }, 'bad-page'],
    [{ op: 'page', offset: '0', limit: 1 }, 'bad-page'],
    [{ op: 'page', offset: 1e300, limit: 1 }, 'bad-page']
  ]
  for (const [cmd, why] of cases) assert.equal(reason(parseEnvelope(env(cmd), MAX)), why, JSON.stringify(cmd))
})

test('replies with views: an array of at most a page; each view checked against the instance asked', () => {
  const view = { id: 'c1', route: '/chat', path: '/chat/x', clientIp: '198.51.100.1', userId: null, subprotocol: null, upstream: 'http://u', instanceId: 'inst-b', connectedAt: '2024-01-01T00:00:00.000Z', lastActivityAt: '2024-01-01T00:00:00.000Z', lastPongAt: null, rttMs: null, messagesFromClient: 1, messagesToClient: 2, bytesFromClient: 3, bytesToClient: 4 }
  const r = parseReply(encodeReply(RID, 1, [view]))
  assert.deepEqual(r, { ok: true, value: { rid: RID, result: 1, views: [view] } })
  assert.equal(reason(parseReply(JSON.stringify({ rid: RID, result: 1, views: {} }))), 'bad-views')
  assert.equal(reason(parseReply(JSON.stringify({ rid: RID, result: 1, views: new Array(MAX_PAGE_LIMIT + 1).fill(0) }))), 'bad-views')
  assert.deepEqual(parseConnectionView({ ...view, secret: 'x' }, { instanceId: 'inst-b' }), { ok: true, value: view }, 'unknown fields are dropped')
  assert.equal(reason(parseConnectionView(view, { instanceId: 'inst-a' })), 'wrong-owner')
  assert.equal(reason(parseConnectionView(view, { instanceId: 'inst-b', id: 'c2' })), 'wrong-owner')
  assert.equal(reason(parseConnectionView('x', { instanceId: 'inst-b' })), 'not-object')
  assert.equal(reason(parseConnectionView([view], { instanceId: 'inst-b' })), 'not-object')
  assert.equal(reason(parseConnectionView({ ...view, bytesToClient: 1.5 }, { instanceId: 'inst-b' })), 'bad-field')
})
