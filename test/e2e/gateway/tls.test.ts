/**
 * TLS on both hops (spec section 3): `server.tls` serves https:// and wss://, and an upstream's
 * `ca` lets the gateway reach https/wss targets with a private certificate. Self-signed pairs
 * made at test time; nothing is trusted globally.
 */
import { describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { request as httpsRequest } from 'node:https'
import type { IncomingHttpHeaders } from 'node:http'
import { upstreamFor as upstream } from '../../helpers/upstream.js'
import { gatewayFor as gateway } from '../../helpers/gateway.js'
import { closed, connect, HandshakeError, nextMessage } from '../../helpers/ws.js'
import { makeCert, type TestCert } from '../../helpers/tls.js'

interface Res { status: number, headers: IncomingHttpHeaders, body: Buffer }

/** GET or POST over https with node:https, trusting only `ca`. */
function httpsFetch (url: string, ca: string | undefined, opts: { method?: string, body?: string } = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, {
      method: opts.method ?? 'GET',
      ca,
      headers: opts.body !== undefined ? { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(opts.body) } : {},
      signal: AbortSignal.timeout(10_000)
    }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(opts.body)
  })
}

/** Plain http GET with fetch. */
async function get (url: string): Promise<Res> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) })
  return { status: res.status, headers: Object.fromEntries(res.headers) as IncomingHttpHeaders, body: Buffer.from(await res.arrayBuffer()) }
}

function cert (t: TestContext): TestCert {
  const c = makeCert()
  t.after(() => c.cleanup())
  return c
}

interface Echo { method: string, url: string, headers: Record<string, string>, body: string }

/** Sends text and binary and expects both back unchanged, then closes normally. */
async function roundTrip (t: TestContext, url: string, ca?: string): Promise<void> {
  const ws = await connect(url, undefined, ca === undefined ? {} : { ca })
  t.after(() => ws.terminate())
  ws.send('over tls')
  const text = await nextMessage(ws)
  assert.deepEqual([text.data.toString(), text.isBinary], ['over tls', false])
  ws.send(Buffer.from([1, 2, 3, 255]))
  const bin = await nextMessage(ws)
  assert.deepEqual([bin.data.toString('hex'), bin.isBinary], ['010203ff', true])
  const c = closed(ws)
  ws.close(1000, 'done')
  assert.deepEqual(await c, { code: 1000, reason: 'done' })
}

describe('server.tls: the gateway serves https and wss', () => {
  test('https requests and wss connections work with the certificate trusted, fail without', { timeout: 30_000 }, async (t) => {
    const c = cert(t)
    const up = await upstream(t)
    const gw = await gateway(t, { server: { tls: { cert: c.certPath, key: c.keyPath } }, routes: [{ prefix: '/api', upstream: up.url }] })
    assert.match(gw.url, /^https:/)

    const res = await httpsFetch(`${gw.url}/api/x?y=1`, c.cert, { method: 'POST', body: 'secret body' })
    assert.equal(res.status, 200)
    const echo = JSON.parse(res.body.toString()) as Echo
    assert.deepEqual([echo.method, echo.url, echo.body], ['POST', '/api/x?y=1', 'secret body'])
    // The upstream learns that the client came over TLS.
    assert.equal(echo.headers['x-forwarded-proto'], 'https')

    const health = await httpsFetch(`${gw.url}/health`, c.cert)
    assert.equal(health.status, 200)

    await roundTrip(t, `${gw.wsUrl}/api`, c.cert)
    assert.equal(up.upgrades.at(-1)?.headers['x-forwarded-proto'], 'https')

    // Untrusted: the client refuses the self-signed certificate (the gateway really serves TLS).
    await assert.rejects(httpsFetch(`${gw.url}/health`, undefined), /self[- ]signed|unable to verify|certificate/i)
    await assert.rejects(connect(`${gw.wsUrl}/api`), /self[- ]signed|unable to verify|certificate/i)
    // And plain http on the TLS port gets no answer of the gateway's routes.
    await assert.rejects(get(`${gw.url.replace('https:', 'http:')}/health`))
  })
})

describe('https/wss upstreams with a private CA', () => {
  test('a named upstream with `ca` is reached over https and wss', { timeout: 30_000 }, async (t) => {
    const upCert = cert(t)
    const up = await upstream(t, { tls: { key: upCert.key, cert: upCert.cert } })
    assert.match(up.url, /^https:/)
    const gw = await gateway(t, {
      upstreams: {
        secure: { targets: [up.url], ca: upCert.certPath },
        // The same server named with a wss:// target URL.
        secureWs: { targets: [up.wsUrl], ca: upCert.certPath }
      },
      routes: [{ prefix: '/s', upstream: 'secure' }, { prefix: '/w', upstream: 'secureWs', rewritePrefix: '/' }]
    })

    const res = await get(`${gw.url}/s/x?q=1`)
    assert.equal(res.status, 200)
    const echo = JSON.parse(res.body.toString()) as Echo
    assert.equal(echo.url, '/s/x?q=1')
    assert.equal(echo.headers['x-forwarded-proto'], 'http', 'the client hop was plain http')
    await roundTrip(t, `${gw.wsUrl}/s/room`)
    assert.equal(up.upgrades.at(-1)?.url, '/s/room')

    const viaWss = await get(`${gw.url}/w/y`)
    assert.equal(viaWss.status, 200)
    assert.equal((JSON.parse(viaWss.body.toString()) as Echo).url, '/y')
    await roundTrip(t, `${gw.wsUrl}/w/z`)
    assert.equal(up.upgrades.at(-1)?.url, '/z')
  })

  test('without the CA the TLS handshake to the upstream fails: 502 for HTTP and WebSocket', { timeout: 30_000 }, async (t) => {
    const upCert = cert(t)
    const up = await upstream(t, { tls: { key: upCert.key, cert: upCert.cert } })
    // One pool per attempt, so that no attempt meets a target already taken out by another's failure.
    const gw = await gateway(t, {
      upstreams: { forHttp: { targets: [up.url] }, forWs: { targets: [up.wsUrl] } },
      routes: [
        { prefix: '/h', upstream: 'forHttp' },
        { prefix: '/w', upstream: 'forWs' },
        { prefix: '/direct-h', upstream: up.url },
        { prefix: '/direct-w', upstream: up.wsUrl }
      ]
    })
    for (const path of ['/h/x', '/direct-h/x']) {
      const res = await get(`${gw.url}${path}`)
      assert.equal(res.status, 502, path)
      assert.equal((JSON.parse(res.body.toString()) as { code: string }).code, 'GW_ERR_UPSTREAM_UNAVAILABLE', path)
    }
    for (const path of ['/w/x', '/direct-w/x']) {
      await assert.rejects(connect(`${gw.wsUrl}${path}`), (err: unknown) => {
        assert.ok(err instanceof HandshakeError, String(err))
        assert.equal(err.status, 502, path)
        assert.equal((JSON.parse(err.body) as { code: string }).code, 'GW_ERR_UPSTREAM_UNAVAILABLE', path)
        return true
      })
    }
    assert.equal(up.upgrades.length, 0, 'no upgrade request may reach the upstream over an unverified connection')
  })
})
