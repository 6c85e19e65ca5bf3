import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { IncomingHttpHeaders } from 'node:http'
import { connectionTokens, forwardHeaders, upstreamPath, HOP_BY_HOP, PROXY_ONLY, headerPolicy, type ForwardContext, TargetCache } from '../../../src/edge/forward-headers.js'

const ctx: ForwardContext = { remoteAddress: '10.0.0.9', clientIp: '198.51.100.4', proto: 'https', host: 'gw.example:8443', requestId: 'req-1' }

test('forwardHeaders copies end-to-end headers and adds X-Forwarded-*, X-Real-IP, X-Request-Id', () => {
  const out = forwardHeaders({ 'user-agent': 'ua/1', cookie: 'a=1', authorization: 'Bearer t', origin: 'https://o.example', accept: '*/*' }, ctx)
  assert.deepEqual(out, {
    'user-agent': 'ua/1',
    cookie: 'a=1',
    authorization: 'Bearer t',
    origin: 'https://o.example',
    accept: '*/*',
    'x-forwarded-for': '10.0.0.9',
    'x-forwarded-proto': 'https',
    'x-forwarded-host': 'gw.example:8443',
    'x-real-ip': '198.51.100.4',
    'x-request-id': 'req-1',
    via: '1.1 tollgate'
  })
})

test('forwardHeaders drops every hop-by-hop header', () => {
  const h: IncomingHttpHeaders = { 'x-keep': '1' }
  for (const name of HOP_BY_HOP) h[name] = 'v'
  const out = forwardHeaders(h, ctx)
  for (const name of HOP_BY_HOP) assert.equal(out[name], undefined, name)
  assert.equal(out['x-keep'], '1')
  for (const name of ['connection', 'keep-alive', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade']) {
    assert.ok(HOP_BY_HOP.has(name), `${name} is hop-by-hop`)
  }
})

test('forwardHeaders drops the headers named in Connection (any case, spacing, empty tokens, array form)', () => {
  const h: IncomingHttpHeaders = { connection: 'Upgrade, X-Hop-A ,,x-hop-b', 'x-hop-a': '1', 'x-hop-b': '2', 'x-end': '3' }
  assert.deepEqual(Object.keys(forwardHeaders(h, ctx)).filter((k) => k.startsWith('x-hop') || k === 'x-end'), ['x-end'])
  const arr = { connection: ['keep-alive', 'X-Hop-C'], 'x-hop-c': '1', 'x-end': '3' } as unknown as IncomingHttpHeaders
  const out = forwardHeaders(arr, ctx)
  assert.equal(out['x-hop-c'], undefined)
  assert.equal(out['x-end'], '3')
})

test('connectionTokens: lower-case names; the usual single values share one frozen list each', () => {
  assert.deepEqual(connectionTokens(undefined), [])
  for (const v of ['Upgrade', 'upgrade', 'keep-alive', 'Keep-Alive', 'close', 'Close']) {
    const t = connectionTokens(v)
    assert.deepEqual(t, [v.toLowerCase()])
    assert.equal(connectionTokens(v), t, `${v}: read once`)
    assert.throws(() => { (t as string[]).push('x-injected') }, TypeError, `${v}: a caller cannot change it for the next request`)
  }
  assert.deepEqual(connectionTokens('UPGRADE'), ['upgrade'])
  assert.deepEqual(connectionTokens(' Keep-Alive , X-Hop ,, '), ['keep-alive', 'x-hop'])
  assert.deepEqual(connectionTokens(['close', 'X-A, x-b']), ['close', 'x-a', 'x-b'])
  assert.deepEqual(connectionTokens(''), [])
})

test('forwardHeaders: the skip filter and undefined values', () => {
  const h: IncomingHttpHeaders = { host: 'gw', 'sec-websocket-key': 'k', 'sec-websocket-version': '13', 'sec-websocket-extensions': 'permessage-deflate', 'x-a': undefined, 'x-b': 'b' }
  const out = forwardHeaders(h, ctx, (n) => n === 'host' || n.startsWith('sec-websocket-'))
  for (const n of ['host', 'sec-websocket-key', 'sec-websocket-version', 'sec-websocket-extensions', 'x-a']) assert.equal(n in out, false, n)
  assert.equal(out['x-b'], 'b')
})

test('forwardHeaders appends to X-Forwarded-For (string, list, array form, empty)', () => {
  assert.equal(forwardHeaders({ 'x-forwarded-for': '203.0.113.7' }, ctx)['x-forwarded-for'], '203.0.113.7, 10.0.0.9')
  assert.equal(forwardHeaders({ 'x-forwarded-for': '1.1.1.1, 2.2.2.2' }, ctx)['x-forwarded-for'], '1.1.1.1, 2.2.2.2, 10.0.0.9')
  const arr = { 'x-forwarded-for': ['1.1.1.1', '2.2.2.2'] } as unknown as IncomingHttpHeaders
  assert.equal(forwardHeaders(arr, ctx)['x-forwarded-for'], '1.1.1.1, 2.2.2.2, 10.0.0.9')
  assert.equal(forwardHeaders({ 'x-forwarded-for': '' }, ctx)['x-forwarded-for'], '10.0.0.9')
})

test('forwardHeaders: the client cannot choose X-Real-IP, X-Forwarded-Proto/Host or X-Request-Id', () => {
  const out = forwardHeaders({ 'x-real-ip': '6.6.6.6', 'x-forwarded-proto': 'gopher', 'x-forwarded-host': 'evil', 'x-request-id': 'mine' }, ctx)
  assert.equal(out['x-real-ip'], '198.51.100.4')
  assert.equal(out['x-forwarded-proto'], 'https')
  assert.equal(out['x-forwarded-host'], 'gw.example:8443')
  assert.equal(out['x-request-id'], 'req-1')
})

test('forwardHeaders: extra headers are set last (they win); strip removes client headers first', () => {
  const h: IncomingHttpHeaders = { 'x-route': 'client', 'x-user-id': 'spoofed', 'x-other': 'o' }
  const out = forwardHeaders(h, { ...ctx, extra: { 'x-route': 'route', 'x-user-id': 'alice' }, strip: ['x-user-id'] })
  assert.equal(out['x-route'], 'route')
  assert.equal(out['x-user-id'], 'alice')
  assert.equal(out['x-other'], 'o')
  // Stripped and not set again (an anonymous user): gone, not the client's value.
  const anon = forwardHeaders(h, { ...ctx, strip: ['x-user-id'] })
  assert.equal('x-user-id' in anon, false)
})

test('forwardHeaders does not modify the headers it is given', () => {
  const h: IncomingHttpHeaders = { connection: 'x-hop', 'x-hop': '1', 'x-forwarded-for': '1.1.1.1' }
  const copy = structuredClone(h)
  forwardHeaders(h, { ...ctx, strip: ['x-forwarded-for'], extra: { a: 'b' } })
  assert.deepEqual(h, copy)
})

test('upstreamPath: rewritePrefix defaulting to the prefix forwards the path unchanged', () => {
  assert.equal(upstreamPath('/chat/x', '/chat', '/chat'), '/chat/x')
  assert.equal(upstreamPath('/chat', '/chat', '/chat'), '/chat')
  assert.equal(upstreamPath('/chat/', '/chat', '/chat'), '/chat/')
  assert.equal(upstreamPath('/chat/a%20b/c', '/chat', '/chat'), '/chat/a%20b/c')
})

test('upstreamPath: rewritePrefix "/" (or "") strips the prefix', () => {
  assert.equal(upstreamPath('/chat/x', '/chat', '/'), '/x')
  assert.equal(upstreamPath('/chat/x/y', '/chat', '/'), '/x/y')
  assert.equal(upstreamPath('/chat', '/chat', '/'), '/')
  assert.equal(upstreamPath('/chat/', '/chat', '/'), '/')
  assert.equal(upstreamPath('/chat/x', '/chat', ''), '/x')
  assert.equal(upstreamPath('/chat', '/chat', ''), '/')
})

test('upstreamPath: rewritePrefix "/v2" replaces the prefix', () => {
  assert.equal(upstreamPath('/chat/x/y', '/chat', '/v2'), '/v2/x/y')
  assert.equal(upstreamPath('/chat', '/chat', '/v2'), '/v2')
  assert.equal(upstreamPath('/chat/', '/chat', '/v2'), '/v2/')
  assert.equal(upstreamPath('/a/b/c', '/a/b', '/z'), '/z/c')
})

test('upstreamPath: prefix "/" (the root route)', () => {
  assert.equal(upstreamPath('/', '/', '/'), '/')
  assert.equal(upstreamPath('/x/y', '/', '/'), '/x/y')
  assert.equal(upstreamPath('/x', '/', '/v2'), '/v2/x')
  // The request path always has its leading slash, so '/' keeps a trailing one, as '/chat/' does.
  assert.equal(upstreamPath('/', '/', '/v2'), '/v2/')
})

test('upstreamPath: the target\'s base path goes first', () => {
  assert.equal(upstreamPath('/chat/x', '/chat', '/chat', '/base'), '/base/chat/x')
  assert.equal(upstreamPath('/chat/x', '/chat', '/', '/base'), '/base/x')
  assert.equal(upstreamPath('/chat/x', '/chat', '/v2', '/base'), '/base/v2/x')
  assert.equal(upstreamPath('/chat', '/chat', '/', '/base'), '/base')
  assert.equal(upstreamPath('/chat/', '/chat', '/', '/base'), '/base/')
  assert.equal(upstreamPath('/x', '/', '/', '/base'), '/base/x')
  assert.equal(upstreamPath('/', '/', '/', '/base'), '/base/')
  assert.equal(upstreamPath('/chat/x', '/chat', '/', ''), '/x')
  assert.equal(upstreamPath('/chat/x', '/chat', '/', '/a/b'), '/a/b/x')
})

test('TargetCache: origin, host without a default port, and path of a target URL; the same object for the same target', () => {
  const cache = new TargetCache()
  const targetParts = (t: string): ReturnType<TargetCache['parts']> => cache.parts(t)
  assert.deepEqual(targetParts('http://10.0.0.1:80/base'), { origin: 'http://10.0.0.1', host: '10.0.0.1', pathname: '/base', secure: false, hostname: '10.0.0.1', port: 80 })
  assert.deepEqual(targetParts('https://[::1]:8443'), { origin: 'https://[::1]:8443', host: '[::1]:8443', pathname: '/', secure: true, hostname: '::1', port: 8443 })
  // A WebSocket handshake asks for a target's origin as ws:// or wss:// too.
  assert.deepEqual(targetParts('wss://example.com'), { origin: 'wss://example.com', host: 'example.com', pathname: '/', secure: true, hostname: 'example.com', port: 443 })
  assert.equal(targetParts('http://a:1/x'), targetParts('http://a:1/x'))
  // One cache per app: another app parses its own.
  assert.notEqual(new TargetCache().parts('http://a:1/x'), targetParts('http://a:1/x'))
})

test('forwardHeaders drops header names with underscores unless the policy keeps them; claim variants always go', () => {
  const h: IncomingHttpHeaders = { x_user_id: 'admin', 'x-user_id': 'admin', x_other: '1', 'x-user-id': 'spoof', 'x-ok': '1' }
  const strict = forwardHeaders(h, { ...ctx, strip: ['x-user-id'] })
  for (const n of ['x_user_id', 'x-user_id', 'x_other', 'x-user-id']) assert.equal(n in strict, false, n)
  assert.equal(strict['x-ok'], '1')
  const keep = forwardHeaders(h, { ...ctx, strip: ['x-user-id'], policy: headerPolicy({ underscoresInHeaders: true, trustProxy: false }) })
  assert.equal(keep.x_other, '1', 'kept when asked')
  for (const n of ['x_user_id', 'x-user_id', 'x-user-id']) assert.equal(n in keep, false, `${n}: a variant of a stripped claim header`)
  assert.equal(forwardHeaders(h, { ...ctx, strip: ['x-user-id'], extra: { 'x-user-id': 'alice' } })['x-user-id'], 'alice')
})

test('forwardHeaders: Forwarded, X-Forwarded-Port/-Prefix, X-Original-URL only from a trusted proxy', () => {
  const h: IncomingHttpHeaders = {}
  for (const n of PROXY_ONLY) h[n] = 'client-said'
  const untrusted = forwardHeaders(h, ctx)
  for (const n of PROXY_ONLY) assert.equal(n in untrusted, false, n)
  for (const tp of [false, 2, '192.0.2.0/24', ['192.0.2.1']] as const) {
    const out = forwardHeaders(h, { ...ctx, policy: headerPolicy({ underscoresInHeaders: false, trustProxy: tp as never }) })
    assert.equal('forwarded' in out, false, `trustProxy ${JSON.stringify(tp)} does not vouch for 10.0.0.9`)
  }
  for (const tp of [true, '10.0.0.0/8', ['10.0.0.9'], '127.0.0.1, 10.0.0.9']) {
    const out = forwardHeaders(h, { ...ctx, policy: headerPolicy({ underscoresInHeaders: false, trustProxy: tp }) })
    for (const n of PROXY_ONLY) assert.equal(out[n], 'client-said', `${n} with trustProxy ${JSON.stringify(tp)}`)
  }
})

test('forwardHeaders appends the gateway to Via with the client\'s HTTP version', () => {
  assert.equal(forwardHeaders({}, { ...ctx, httpVersion: '1.0' }).via, '1.0 tollgate')
  assert.equal(forwardHeaders({ via: '1.1 cdn' }, ctx).via, '1.1 cdn, 1.1 tollgate')
})

test('forwardHeaders: no Host (HTTP/1.0) means no X-Forwarded-Host, not an empty one nor the client\'s', () => {
  const out = forwardHeaders({ 'x-forwarded-host': 'evil.example' }, { ...ctx, host: '' })
  assert.equal('x-forwarded-host' in out, false)
})
