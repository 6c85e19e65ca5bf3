/**
 * src/auth/token.ts: where findToken looks for a JWT (Authorization header, query, cookie,
 * `bearer.` subprotocol) and in which order, malformed Bearer headers, queryValue/queryWithout
 * (the token parameter read and removed, every other parameter kept byte for byte),
 * claimHeaders (claims to header values) and parseProtocols/bearerProtocol.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import type { IncomingHttpHeaders } from 'node:http'
import {
  BEARER_PROTOCOL_PREFIX, bearerProtocol, claimHeaders, findToken, parseProtocols, queryValue, queryWithout, searchWithoutToken, type TokenLookup
} from '../../../src/auth/token.js'

const ALL: TokenLookup = { sources: ['header', 'query', 'cookie', 'protocol'], queryParam: 'access_token', cookieName: 'tk' }
const only = (source: TokenLookup['sources'][number]): TokenLookup => ({ ...ALL, sources: [source] })

describe('findToken: each source', () => {
  test('header: Bearer <token>', () => {
    assert.deepEqual(findToken({ authorization: 'Bearer abc.def.ghi' }, '/', false, only('header')), { token: 'abc.def.ghi', source: 'header' })
  })

  test('header: the scheme is case-insensitive, extra spaces around the token are allowed', () => {
    assert.equal(findToken({ authorization: 'bearer  x' }, '/', false, only('header'))?.token, 'x')
    assert.equal(findToken({ authorization: 'BEARER\tx  ' }, '/', false, only('header'))?.token, 'x')
  })

  test('header: malformed values give no token', () => {
    for (const authorization of ['Bearer', 'Bearer ', 'Bearer   ', 'Basic x', 'Bearerx', 'Bearer a b', 'Token x', '']) {
      assert.equal(findToken({ authorization }, '/', false, only('header')), undefined, JSON.stringify(authorization))
    }
  })

  test('header: two Authorization values folded into one line give no token', () => {
    // Node keeps one Authorization (duplicates are dropped); a comma-joined pair is not a Bearer token.
    assert.equal(findToken({ authorization: 'Bearer a, Bearer b' }, '/', false, only('header')), undefined)
  })

  test('header: a malformed Authorization falls through to the next source', () => {
    assert.deepEqual(findToken({ authorization: 'Basic x' }, '/?access_token=q', false, ALL), { token: 'q', source: 'query' })
  })

  test('query: decoded value of the configured parameter', () => {
    assert.deepEqual(findToken({}, '/ws?x=1&access_token=a%2Eb+c', false, only('query')), { token: 'a.b c', source: 'query' })
  })

  test('query: an empty value or a parameter without "=" is no token', () => {
    assert.equal(findToken({}, '/ws?access_token=', false, only('query')), undefined)
    assert.equal(findToken({}, '/ws?access_token', false, only('query')), undefined)
    assert.equal(findToken({}, '/ws', false, only('query')), undefined)
  })

  test('query: a parameter whose name only starts with the configured one is not it', () => {
    assert.equal(findToken({}, '/ws?access_token2=no&access_tokens=no', false, only('query')), undefined)
    assert.equal(findToken({}, '/ws?access_token2=no&access_token=yes', false, only('query'))?.token, 'yes')
  })

  test('cookie: the configured cookie, unquoted', () => {
    assert.deepEqual(findToken({ cookie: 'a=1; tk="c.o.k"; b=2' }, '/', false, only('cookie')), { token: 'c.o.k', source: 'cookie' })
    assert.equal(findToken({ cookie: 'tk=' }, '/', false, only('cookie')), undefined)
    assert.equal(findToken({ cookie: 'other=1' }, '/', false, only('cookie')), undefined)
  })

  test('protocol: the bearer.<jwt> offer, only on a WebSocket handshake', () => {
    const h: IncomingHttpHeaders = { 'sec-websocket-protocol': 'chat, bearer.p.q.r' }
    assert.deepEqual(findToken(h, '/', true, only('protocol')), { token: 'p.q.r', source: 'protocol' })
    assert.equal(findToken(h, '/', false, only('protocol')), undefined)
    assert.equal(findToken({ 'sec-websocket-protocol': 'bearer.' }, '/', true, only('protocol')), undefined)
    assert.equal(findToken({ 'sec-websocket-protocol': 'Bearer.x' }, '/', true, only('protocol')), undefined)
  })

  test('a source not listed is not read', () => {
    const h: IncomingHttpHeaders = { authorization: 'Bearer h', cookie: 'tk=c' }
    assert.deepEqual(findToken(h, '/?access_token=q', false, { ...ALL, sources: ['cookie'] }), { token: 'c', source: 'cookie' })
    assert.equal(findToken(h, '/?access_token=q', false, { ...ALL, sources: [] }), undefined)
  })
})

describe('findToken: order', () => {
  const h: IncomingHttpHeaders = { authorization: 'Bearer h', cookie: 'tk=c', 'sec-websocket-protocol': 'bearer.p' }
  const url = '/ws?access_token=q'

  test('the first source in `sources` that has a token wins', () => {
    assert.equal(findToken(h, url, true, ALL)?.source, 'header')
    assert.deepEqual(findToken(h, url, true, { ...ALL, sources: ['protocol', 'cookie', 'query', 'header'] }), { token: 'p', source: 'protocol' })
    assert.deepEqual(findToken(h, url, true, { ...ALL, sources: ['cookie', 'header'] }), { token: 'c', source: 'cookie' })
    assert.deepEqual(findToken(h, url, true, { ...ALL, sources: ['query', 'header'] }), { token: 'q', source: 'query' })
  })

  test('an empty earlier source is skipped for a later one', () => {
    assert.deepEqual(findToken({ cookie: 'tk=' }, '/?access_token=', true, { ...ALL, sources: ['cookie', 'query', 'header'] }), undefined)
    assert.deepEqual(findToken({ cookie: 'tk=', authorization: 'Bearer z' }, '/?access_token=', true, { ...ALL, sources: ['cookie', 'query', 'header'] }), { token: 'z', source: 'header' })
  })
})

describe('queryValue', () => {
  test('first occurrence, decoded (+ is a space, %XX decoded; a malformed escape stays as is)', () => {
    assert.equal(queryValue('/p?t=1&t=2', 't'), '1')
    assert.equal(queryValue('/p?t=a+b%20c%2B', 't'), 'a b c+')
    assert.equal(queryValue('/p?t=%ZZ', 't'), '%ZZ')
  })

  test('the name is decoded before comparing', () => {
    assert.equal(queryValue('/p?access%5Ftoken=v', 'access_token'), 'v')
  })

  test('absent: undefined; present without "=": empty string', () => {
    assert.equal(queryValue('/p', 't'), undefined)
    assert.equal(queryValue('/p?u=1', 't'), undefined)
    assert.equal(queryValue('/p?t', 't'), '')
  })
})

describe('queryWithout', () => {
  test('no query, or only the token: empty string (without "?")', () => {
    assert.equal(queryWithout('/p', 'access_token'), '')
    assert.equal(queryWithout('/p?', 'access_token'), '')
    assert.equal(queryWithout('/p?access_token=x', 'access_token'), '')
  })

  test('removes the token parameter and keeps the others in order', () => {
    assert.equal(queryWithout('/p?a=1&access_token=x&b=2', 'access_token'), 'a=1&b=2')
  })

  test('removes every occurrence, with or without a value, and an encoded name', () => {
    assert.equal(queryWithout('/p?access_token=1&a=1&access_token&access%5Ftoken=3&access_token=', 'access_token'), 'a=1')
  })

  test('other parameters stay byte for byte: repeated keys, +, percent-encoding, empty values', () => {
    const q = 'x=1&x=2&sp=a+b&enc=%2F%3D%26&raw=%zz&empty=&flag&u=%E2%82%AC'
    assert.equal(queryWithout(`/p?${q}`, 'access_token'), q)
    assert.equal(queryWithout(`/p?${q}&access_token=t`, 'access_token'), q)
    assert.equal(queryWithout(`/p?access_token=t&${q}`, 'access_token'), q)
  })

  test('a parameter whose name is a prefix or extension of the token name is kept', () => {
    assert.equal(queryWithout('/p?access_tokenx=1&access_token=t&xaccess_token=2&access=3', 'access_token'), 'access_tokenx=1&xaccess_token=2&access=3')
  })

  test('the name comparison is case-sensitive (as queryValue)', () => {
    assert.equal(queryWithout('/p?ACCESS_TOKEN=1&access_token=2', 'access_token'), 'ACCESS_TOKEN=1')
    assert.equal(queryValue('/p?ACCESS_TOKEN=1', 'access_token'), undefined)
  })

  test('empty pairs (&&, trailing &) are dropped', () => {
    assert.equal(queryWithout('/p?&a=1&&b=2&', 'access_token'), 'a=1&b=2')
  })

  test('what queryValue finds, queryWithout removes', () => {
    for (const url of ['/p?access_token=%ZZ', '/p?access+token=x', '/p?a=1&access%5ftoken=y']) {
      const name = url.includes('+') ? 'access token' : 'access_token'
      assert.notEqual(queryValue(url, name), undefined, url)
      assert.equal(queryWithout(url, name).includes('token'), false, url)
    }
  })
})

describe('parseProtocols and bearerProtocol', () => {
  test('splits on commas, trims, drops empty offers', () => {
    assert.deepEqual(parseProtocols(undefined), [])
    assert.deepEqual(parseProtocols(''), [])
    assert.deepEqual(parseProtocols('chat'), ['chat'])
    assert.deepEqual(parseProtocols(' chat ,, v2.json ,'), ['chat', 'v2.json'])
  })

  test('an array of header lines is one list', () => {
    assert.deepEqual(parseProtocols(['a, b', 'c']), ['a', 'b', 'c'])
  })

  test('bearerProtocol: the first offer starting with "bearer." (case-sensitive)', () => {
    assert.equal(BEARER_PROTOCOL_PREFIX, 'bearer.')
    assert.equal(bearerProtocol('chat, bearer.t1, bearer.t2'), 'bearer.t1')
    assert.equal(bearerProtocol(['chat', 'bearer.t']), 'bearer.t')
    assert.equal(bearerProtocol('chat, Bearer.t'), undefined)
    assert.equal(bearerProtocol(undefined), undefined)
  })
})

describe('claimHeaders', () => {
  test('no claims: no headers', () => {
    assert.deepEqual(claimHeaders(null, { sub: 'x-user' }), {})
    assert.deepEqual(claimHeaders(undefined, { sub: 'x-user' }), {})
  })

  test('maps each present claim to its header; strings as is, numbers and booleans as text, others as JSON', () => {
    const claims = { sub: 'u-1', n: 42, admin: false, roles: ['a', 'b'], org: { id: 7 } }
    const forward = { sub: 'x-user', n: 'x-n', admin: 'x-admin', roles: 'x-roles', org: 'x-org' }
    assert.deepEqual(claimHeaders(claims, forward), {
      'x-user': 'u-1', 'x-n': '42', 'x-admin': 'false', 'x-roles': '["a","b"]', 'x-org': '{"id":7}'
    })
  })

  test('absent and null claims are skipped; claims not listed are not forwarded', () => {
    assert.deepEqual(claimHeaders({ sub: 'u', email: null, extra: 'e' }, { sub: 'x-user', email: 'x-email', missing: 'x-missing' }), { 'x-user': 'u' })
  })

  test('empty strings are forwarded as empty values', () => {
    assert.deepEqual(claimHeaders({ sub: '' }, { sub: 'x-user' }), { 'x-user': '' })
  })

  test('values that are not visible ASCII are percent-encoded (no CR/LF reaches a header)', () => {
    const out = claimHeaders({ name: 'Zoë', evil: 'a\r\nX-Admin: 1', tab: 'a\tb' }, { name: 'x-name', evil: 'x-evil', tab: 'x-tab' })
    assert.deepEqual(out, { 'x-name': 'Zo%C3%AB', 'x-evil': 'a%0D%0AX-Admin%3A%201', 'x-tab': 'a%09b' })
  })
})

describe('searchWithoutToken', () => {
  test('removes every token parameter, keeps the rest byte for byte, drops a search left empty', () => {
    assert.equal(searchWithoutToken('?a=1&access_token=x&b=%7E&access_token=y', 'access_token'), '?a=1&b=%7E')
    assert.equal(searchWithoutToken('?access_token=x', 'access_token'), '')
    assert.equal(searchWithoutToken('', 'access_token'), '')
  })
  test('without JWT auth (no token parameter) the search is left as it came', () => {
    assert.equal(searchWithoutToken('?access_token=x&a=1', null), '?access_token=x&a=1')
  })
})
