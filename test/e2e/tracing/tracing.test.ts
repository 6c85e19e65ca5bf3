/**
 * Tracing end to end: spans go over OTLP/HTTP (JSON) to a receiver this test runs on loopback.
 * Asserted: span names and kinds, parent links (from the client's traceparent through the
 * gateway's spans to what the upstream received), HTTP semantic-convention attributes, the
 * WebSocket handshake's children and its close span, trace_id in the access log, sampling, and
 * that with tracing off the gateway changes nothing a client or upstream sees.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { gatewayFor } from '../../helpers/gateway.js'
import { upstreamFor } from '../../helpers/upstream.js'
import { connect, closed } from '../../helpers/ws.js'
import { SECRET, sign, now } from '../../helpers/jwt.js'
import { resolveConfig } from '../../../src/config/resolve.js'
import { loadConfig } from '../../../src/config/load.js'
import { ConfigError } from '../../../src/errors.js'

interface OtlpSpan {
  traceId: string
  spanId: string
  parentSpanId?: string
  name: string
  kind: number
  attributes: Array<{ key: string, value: Record<string, unknown> }>
}
const SERVER = 2
const CLIENT = 3
const INTERNAL = 1

/** An OTLP/HTTP receiver: every span posted to /v1/traces, and the service names they came with. */
async function otlpReceiver (t: { after: (fn: () => Promise<void>) => void }): Promise<{ url: string, spans: OtlpSpan[], services: string[], paths: string[] }> {
  const spans: OtlpSpan[] = []
  const services: string[] = []
  const paths: string[] = []
  const server: Server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      paths.push(req.url ?? '')
      const body = JSON.parse(Buffer.concat(chunks).toString()) as { resourceSpans: Array<{ resource: { attributes: OtlpSpan['attributes'] }, scopeSpans: Array<{ spans: OtlpSpan[] }> }> }
      for (const rs of body.resourceSpans) {
        const svc = rs.resource.attributes.find((a) => a.key === 'service.name')
        if (svc !== undefined) services.push(String(svc.value.stringValue))
        for (const ss of rs.scopeSpans) spans.push(...ss.spans)
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(async () => { await new Promise<void>((resolve) => server.close(() => resolve())) })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, spans, services, paths }
}

const attr = (s: OtlpSpan, key: string): unknown => {
  const v = s.attributes.find((a) => a.key === key)?.value
  return v === undefined ? undefined : v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : undefined) ?? v.boolValue ?? v.doubleValue
}

const CLIENT_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'
const CLIENT_SPAN = '00f067aa0ba902b7'

test('HTTP: the client\'s traceparent continues; a server span, a client span, and the upstream\'s parent is the client span', async (t) => {
  const rx = await otlpReceiver(t)
  const up = await upstreamFor(t)
  const gw = await gatewayFor(t, { routes: [{ prefix: '/api', upstream: up.url }], tracing: { otlpEndpoint: rx.url, serviceName: 'edge-gw' } }, { captureLogs: true })
  const res = await fetch(`${gw.url}/api/items?x=1`, { headers: { traceparent: `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01`, tracestate: 'vendor=1' } })
  assert.equal(res.status, 200)
  const seen = (await res.json()) as { headers: Record<string, string> }
  await gw.app.tracing!.flush()
  const server = rx.spans.find((s) => s.kind === SERVER)
  const client = rx.spans.find((s) => s.kind === CLIENT)
  assert.ok(server !== undefined && client !== undefined, 'a server and a client span')
  assert.equal(server.name, 'GET /api')
  assert.equal(server.traceId, CLIENT_TRACE)
  assert.equal(server.parentSpanId, CLIENT_SPAN)
  assert.equal(attr(server, 'http.request.method'), 'GET')
  assert.equal(attr(server, 'http.route'), '/api')
  assert.equal(attr(server, 'url.path'), '/api/items')
  assert.equal(attr(server, 'http.response.status_code'), 200)
  assert.equal(attr(server, 'client.address'), '127.0.0.1')
  assert.equal(client.name, 'GET')
  assert.equal(client.parentSpanId, server.spanId)
  assert.equal(client.traceId, CLIENT_TRACE)
  assert.equal(attr(client, 'server.address'), '127.0.0.1')
  assert.equal(attr(client, 'http.response.status_code'), 200)
  // What the upstream received: the gateway's client span as its parent, not the client's span.
  assert.equal(seen.headers.traceparent, `00-${CLIENT_TRACE}-${client.spanId}-01`)
  assert.equal(seen.headers.tracestate, 'vendor=1')
  assert.deepEqual([...new Set(rx.services)], ['edge-gw'])
  assert.ok(rx.paths.every((p) => p === '/v1/traces'))
  const line = gw.logs.find((l) => l.msg === 'request completed')
  assert.equal(line?.trace_id, CLIENT_TRACE)
})

test('HTTP: without a traceparent a new trace starts; an upstream that is down gives a client span marked 502', async (t) => {
  const rx = await otlpReceiver(t)
  const gw = await gatewayFor(t, { routes: [{ prefix: '/', upstream: 'http://127.0.0.1:1' }], tracing: { otlpEndpoint: `${rx.url}/v1/traces` } })
  const res = await fetch(`${gw.url}/x`)
  assert.equal(res.status, 502)
  await gw.app.tracing!.flush()
  const server = rx.spans.find((s) => s.kind === SERVER)!
  const client = rx.spans.find((s) => s.kind === CLIENT)!
  assert.match(server.traceId, /^[0-9a-f]{32}$/)
  assert.equal(server.parentSpanId ?? '', '')
  assert.equal(attr(server, 'http.response.status_code'), 502)
  assert.equal(client.parentSpanId, server.spanId)
  assert.equal(attr(client, 'http.response.status_code'), 502)
  assert.equal(attr(client, 'error.type'), 'ECONNREFUSED')
  assert.deepEqual([...new Set(rx.services)], ['tollgate'])
})

test('WebSocket: a handshake span with auth, limit and upstream-handshake children; the upstream gets its traceparent; one close span', async (t) => {
  const rx = await otlpReceiver(t)
  const up = await upstreamFor(t)
  const gw = await gatewayFor(t, {
    auth: { jwt: { secret: SECRET } },
    routes: [{ prefix: '/ws', upstream: up.url, auth: 'required', rateLimit: { handshake: { max: 100, window: '1m' } } }],
    tracing: { otlpEndpoint: rx.url }
  }, { captureLogs: true })
  const token = sign({ sub: 'ann', exp: now() + 60 })
  const upstreamSide = up.nextConnection()
  const ws = await connect(`${gw.wsUrl}/ws`, undefined, { headers: { authorization: `Bearer ${token}`, traceparent: `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01` } })
  const { req } = await upstreamSide
  ws.close(4001, 'done')
  await closed(ws)
  await gw.app.websocketBridge.whenIdle()
  await gw.app.tracing!.flush()
  const handshake = rx.spans.find((s) => s.kind === SERVER)!
  assert.equal(handshake.name, 'GET /ws')
  assert.equal(handshake.parentSpanId, CLIENT_SPAN)
  assert.equal(attr(handshake, 'http.response.status_code'), 101)
  assert.equal(attr(handshake, 'tollgate.websocket'), true)
  const children = rx.spans.filter((s) => s.parentSpanId === handshake.spanId)
  assert.deepEqual(children.map((s) => s.name).sort(), ['GET', 'WebSocket close /ws', 'auth', 'rate limit', 'rate limit'].sort())
  const upstreamHandshake = children.find((s) => s.kind === CLIENT)!
  assert.equal(attr(upstreamHandshake, 'http.response.status_code'), 101)
  assert.equal(req.headers.traceparent, `00-${CLIENT_TRACE}-${upstreamHandshake.spanId}-01`)
  const close = children.find((s) => s.name === 'WebSocket close /ws')!
  assert.equal(close.kind, INTERNAL)
  assert.equal(attr(close, 'tollgate.close.by'), 'client')
  assert.equal(attr(close, 'tollgate.close.client_code'), 4001)
  assert.equal(attr(close, 'tollgate.close.upstream_code'), 4001)
  assert.equal(typeof attr(close, 'tollgate.duration_ms'), 'number')
  const line = gw.logs.find((l) => l.msg === 'websocket closed')
  assert.equal(line?.trace_id, CLIENT_TRACE)
})

test('sampleRatio 0: new traces are not exported, a sampled traceparent from the client still is', async (t) => {
  const rx = await otlpReceiver(t)
  const up = await upstreamFor(t)
  const gw = await gatewayFor(t, { routes: [{ prefix: '/', upstream: up.url }], tracing: { otlpEndpoint: rx.url, sampleRatio: 0 } })
  const plain = await fetch(`${gw.url}/a`)
  const seen = (await plain.json()) as { headers: Record<string, string> }
  await fetch(`${gw.url}/b`, { headers: { traceparent: `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01` } })
  await gw.app.tracing!.flush()
  assert.deepEqual([...new Set(rx.spans.map((s) => s.traceId))], [CLIENT_TRACE])
  // An unsampled trace still propagates (flag 00), so the upstream's own decision can follow it.
  assert.match(seen.headers.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/)
})

test('tracing off: no tracer, and the client\'s traceparent reaches the upstream unchanged', async (t) => {
  const up = await upstreamFor(t)
  const gw = await gatewayFor(t, { routes: [{ prefix: '/', upstream: up.url }] }, { captureLogs: true })
  assert.equal(gw.app.tracing, null)
  const tp = `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01`
  const seen = (await (await fetch(`${gw.url}/a`, { headers: { traceparent: tp } })).json()) as { headers: Record<string, string> }
  assert.equal(seen.headers.traceparent, tp)
  assert.equal(gw.logs.find((l) => l.msg === 'request completed')?.trace_id, undefined)
})

test('config: OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_SERVICE_NAME turn tracing on; a bad endpoint or ratio is refused', () => {
  const { config } = loadConfig({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/', OTEL_SERVICE_NAME: 'gw-eu' } })
  assert.deepEqual(config.tracing, { tracesUrl: 'http://collector:4318/v1/traces', serviceName: 'gw-eu', sampleRatio: 1 })
  const full = loadConfig({ env: { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces' } })
  assert.equal(full.config.tracing?.tracesUrl, 'http://collector:4318/v1/traces')
  assert.equal(loadConfig({ env: { OTEL_SERVICE_NAME: 'x' } }).config.tracing, undefined)
  assert.throws(() => resolveConfig({ tracing: { otlpEndpoint: 'collector:4318' } }), (e: unknown) => e instanceof ConfigError && /^tracing\.otlpEndpoint/.test(e.message))
  assert.throws(() => resolveConfig({ tracing: { otlpEndpoint: 'http://c', sampleRatio: 2 } }), (e: unknown) => e instanceof ConfigError && /^tracing\.sampleRatio/.test(e.message))
})

test('hostile trace context: a malformed or all-zero traceparent starts a new trace, and never reaches the upstream', async (t) => {
  const rx = await otlpReceiver(t)
  const up = await upstreamFor(t)
  const gw = await gatewayFor(t, { routes: [{ prefix: '/', upstream: up.url }], tracing: { otlpEndpoint: rx.url } })
  for (const bad of [`00-${'0'.repeat(32)}-${CLIENT_SPAN}-01`, 'ff-zzzz', `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01-extra\r\nx: y`.slice(0, 60), `00-${CLIENT_TRACE.toUpperCase()}-${CLIENT_SPAN}-01`]) {
    const seen = (await (await fetch(`${gw.url}/a`, { headers: { traceparent: bad, tracestate: 'a=1' } })).json()) as { headers: Record<string, string> }
    assert.match(seen.headers.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/, bad)
    assert.notEqual(seen.headers.traceparent, bad)
    assert.doesNotMatch(seen.headers.traceparent, new RegExp(CLIENT_TRACE, 'i'), `${bad}: not continued`)
    // The client's tracestate belongs to the trace it was refused with: it does not go on either.
    assert.equal(seen.headers.tracestate, undefined, bad)
  }
  await gw.app.tracing!.flush()
  const servers = rx.spans.filter((s) => s.kind === SERVER)
  assert.equal(servers.length, 4)
  for (const s of servers) assert.equal(s.parentSpanId ?? '', '')
})
