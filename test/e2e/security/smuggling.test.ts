/**
 * Request smuggling attempts: ambiguous framing is refused at the gateway's parser, and a request
 * hidden in another's body is parsed as the request it is (routed, authenticated) and never
 * reaches the upstream as part of the first one.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { gatewayFor } from '../../helpers/gateway.js'
import { upstreamFor } from '../../helpers/upstream.js'
import { SECRET } from '../../helpers/jwt.js'
import { rawExchange } from './raw-http.js'

async function setup (t: Parameters<typeof upstreamFor>[0]): Promise<{ port: number, seen: Array<{ url: string, body: string }> }> {
  const seen: Array<{ url: string, body: string }> = []
  const up = await upstreamFor(t, { http: (req, res, body) => { seen.push({ url: req.url ?? '', body: body.toString() }); res.end('ok') } })
  const gw = await gatewayFor(t, {
    auth: { jwt: { secret: SECRET } },
    routes: [{ prefix: '/private', upstream: up.url, auth: 'required' }, { prefix: '/', upstream: up.url }]
  })
  return { port: gw.port, seen }
}

test('ambiguous framing (CL.TE, TE.CL, duplicate lengths, obfuscated TE) gets 400 and nothing goes upstream', async (t) => {
  const { port, seen } = await setup(t)
  const cases = [
    'POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    'POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n',
    'POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd',
    'POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n',
    'POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n',
    'GET /x HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n',
    'GET /x HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n'
  ]
  for (const req of cases) {
    const r = await rawExchange(port, req)
    assert.equal(r.status, 400, JSON.stringify(req))
  }
  assert.deepEqual(seen, [])
})

test('a request hidden in a body is parsed as the next request: it gets its own routing and auth', async (t) => {
  const { port, seen } = await setup(t)
  const hidden = 'GET /private/secret HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'
  const r = await rawExchange(port, `POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nabcde${hidden}`)
  assert.match(r.raw, /^HTTP\/1\.1 200 /)
  assert.match(r.raw, /HTTP\/1\.1 401 /, 'the second request is refused by /private\'s auth')
  assert.deepEqual(seen, [{ url: '/x', body: 'abcde' }], 'the upstream got the first request with its own body only')
})

test('a request\'s head and body must arrive within 5 minutes, as under Node\'s own servers', async (t) => {
  const { REQUEST_TIMEOUT } = await import('../../../src/config/defaults.js')
  const up = await upstreamFor(t)
  const gw = await gatewayFor(t, { routes: [{ prefix: '/', upstream: up.url }] })
  assert.equal(REQUEST_TIMEOUT, 300_000)
  assert.equal(gw.app.server.requestTimeout, REQUEST_TIMEOUT)
  assert.equal(gw.app.server.headersTimeout, 60_000)
})
