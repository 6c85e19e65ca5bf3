import { test } from 'node:test'
import assert from 'node:assert/strict'
import { foldPath, normaliseTarget, prefixMatcher, prefixSegments, type RequestTarget } from '../../../src/edge/request-target.js'

function ok (url: string, encodedSlashes: 'refuse' | 'keep' = 'refuse'): RequestTarget {
  const t = normaliseTarget(url, encodedSlashes)
  assert.equal(typeof t, 'object', `${url} should be accepted, got ${String(t)}`)
  return t as RequestTarget
}

test('paths already in normal form pass unchanged, query untouched', () => {
  for (const url of ['/', '/chat', '/chat/', '/chat/x', '/a.b/c.d', '/.well-known/x', '/a/..b/c', '/a/b..', '/x?y=/../%2F&z']) {
    const t = ok(url)
    assert.equal(t.path + t.search, url)
  }
  assert.equal(ok('/x?a=%2e%2e/..').search, '?a=%2e%2e/..')
})

test('dot segments, merged slashes and decoded unreserved characters (RFC 3986 5.2.4, 6.2.2)', () => {
  const cases: Array<[string, string]> = [
    ['/public/../private/secret', '/private/secret'],
    ['/./private/secret', '/private/secret'],
    ['/%2e/private/secret', '/private/secret'],
    ['/%2E%2e/x', null as unknown as string],
    ['//private/secret', '/private/secret'],
    ['///private//secret//', '/private/secret/'],
    ['/a/b/..', '/a/'],
    ['/a/b/.', '/a/b/'],
    ['/a/b/../', '/a/'],
    ['/a/./b/./c', '/a/b/c'],
    ['/a//../b', '/b'],
    ['/%63hat/x', '/chat/x'],
    ['/%7Euser', '/~user'],
    ['/caf%c3%a9', '/caf%C3%A9'],
    ['/a%20b', '/a%20b'],
    ['/a%3bb', '/a%3Bb'],
    ['/a/.%2e/b', '/b'],
    ['/a/%2e./b', '/b'],
    ['//', '/'],
    ['/a/..', '/']
  ]
  for (const [url, want] of cases) {
    if (want === null) { assert.equal(normaliseTarget(url), 'path climbs above the root', url); continue }
    assert.equal(ok(url).path, want, url)
  }
})

test('refused: encoded slash, backslash and NUL, malformed escapes, climbing above the root, fragments', () => {
  const cases: Array<[string, string]> = [
    ['/private%2Fsecret', 'encoded slash in path'],
    ['/private%2fsecret', 'encoded slash in path'],
    ['/a%5Cb', 'encoded slash in path'],
    ['/a%5cb', 'encoded slash in path'],
    ['/a%00b', 'encoded NUL in path'],
    ['/a\\b', 'backslash in path'],
    ['/a%zz', 'malformed percent-encoding'],
    ['/a%2', 'malformed percent-encoding'],
    ['/a%', 'malformed percent-encoding'],
    ['/%C0%AE%C0%AE/private', 'malformed percent-encoding'],
    ['/a%FF', 'malformed percent-encoding'],
    ['/a%C3', 'malformed percent-encoding'],
    ['/..', 'path climbs above the root'],
    ['/../etc/passwd', 'path climbs above the root'],
    ['/a/../../b', 'path climbs above the root'],
    ['/%2e%2e/x', 'path climbs above the root'],
    ['/a#frag', 'fragment in request target'],
    ['/public/..;/private', 'path parameters on an empty or dot segment'],
    ['/a/.;x/b', 'path parameters on an empty or dot segment'],
    ['/a/;x/b', 'path parameters on an empty or dot segment'],
    ['*', 'unsupported request target'],
    ['example.com:443', 'unsupported request target'],
    ['chat/x', 'unsupported request target'],
    ['ftp://h/x', 'unsupported request target'],
    ['http://user@h/x', 'unsupported request target'],
    ['http:///x', 'unsupported request target'],
    ['http://h x/', 'unsupported request target']
  ]
  for (const [url, want] of cases) assert.equal(normaliseTarget(url), want, url)
})

test('double encoding is decoded once only: %252e stays an escaped percent', () => {
  const t = ok('/%252e%252e/private')
  assert.equal(t.path, '/%252e%252e/private')
})

test('absolute-form: routed by its path, its authority replaces Host (RFC 9112 3.2.2)', () => {
  const t = ok('http://Evil.Example:8080/api/x?q=1')
  assert.equal(t.path, '/api/x')
  assert.equal(t.search, '?q=1')
  assert.equal(t.authority, 'evil.example:8080')
  assert.equal(ok('https://h').path, '/')
  assert.equal(ok('http://h?x').search, '?x')
  assert.equal(ok('http://[::1]:9/a/../b').path, '/b')
  assert.equal(ok('/x').authority, null)
})

test('path parameters do not count for routing but go upstream', () => {
  const t = ok('/private;jsessionid=1/secret')
  assert.equal(t.path, '/private/secret')
  assert.equal(t.after(0), '/private;jsessionid=1/secret')
  assert.equal(t.after(1), '/secret')
  const u = ok('/chat/x;v=1')
  assert.equal(u.path, '/chat/x')
  assert.equal(u.after(1), '/x;v=1')
})

test('encodedSlashes keep: %2F and %5C route as / and go upstream as sent', () => {
  const t = ok('/private%2Fsecret', 'keep')
  assert.equal(t.path, '/private/secret', 'routed under /private, never past its auth')
  assert.equal(t.after(0), '/private%2Fsecret')
  assert.equal(t.after(1), '%2Fsecret')
  const p = ok('/api/group%2fproject/x', 'keep')
  assert.equal(p.path, '/api/group/project/x')
  assert.equal(p.after(1), '/group%2Fproject/x')
  assert.equal(normaliseTarget('/a%00', 'keep'), 'encoded NUL in path')
  assert.equal(ok('/a%5Cb', 'keep').after(0), '/a%5Cb')
})

test('after(n) on simple paths slices whole segments', () => {
  const t = ok('/a/b/c')
  assert.deepEqual([0, 1, 2, 3, 4].map((n) => t.after(n)), ['/a/b/c', '/b/c', '/c', '', ''])
  assert.equal(ok('/chat/').after(1), '/')
  assert.equal(ok('//').after(0), '/')
})

test('prefixSegments', () => {
  assert.equal(prefixSegments('/'), 0)
  assert.equal(prefixSegments('/chat'), 1)
  assert.equal(prefixSegments('/a/b'), 2)
})

test('foldPath and prefixMatcher: the route a case-insensitive upstream would see', () => {
  assert.equal(foldPath('/Private./X%20/y. .'), '/private/x/y')
  assert.equal(foldPath('/a.b/c'), '/a.b/c')
  const match = prefixMatcher(['/', '/private', '/private/admin', '/api'])
  assert.equal(match('/PRIVATE/x'), '/private')
  assert.equal(match('/private/ADMIN./x'), '/private/admin')
  assert.equal(match('/privateer'), '/')
  assert.equal(match('/Api'), '/api')
  assert.equal(prefixMatcher(['/a'])('/b'), null)
})
