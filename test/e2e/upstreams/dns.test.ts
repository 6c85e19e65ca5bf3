/**
 * DNS discovery (upstreams.*.resolve) end to end: with a stub resolver given to buildGateway,
 * answers change under open connections (new addresses get traffic, vanished ones keep their
 * connections and get nothing new), the Host header is the name's; and once with the real
 * system resolver on `localhost`.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { lookup } from 'node:dns/promises'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { upstreamFor } from '../../helpers/upstream.js'
import { connect, nextMessage } from '../../helpers/ws.js'
import { gatewayFor } from '../../helpers/gateway.js'
import { ADMIN, namedUpstream, spread, targetsOf, trackedMany, waitFor, whoAnswers } from './live-helpers.js'

test('answers changing under open connections: new addresses get traffic, vanished ones keep theirs', async (t) => {
  const a = await namedUpstream(t, 'a', '127.0.0.1')
  // The same port on another loopback address: one name, two addresses.
  const b = await namedUpstream(t, 'b', '127.0.0.2', a.port)
  let answer: string[] = ['127.0.0.1']
  let lookups = 0
  const resolve = async (host: string): Promise<string[]> => {
    lookups++
    assert.equal(host, 'chat.test')
    return answer
  }
  const gw = await gatewayFor(t, {
    upstreams: { chat: { targets: [{ url: `ws://chat.test:${a.port}`, weight: 2 }], resolve: '50ms' } },
    routes: [{ prefix: '/chat', upstream: 'chat' }],
    admin: { token: ADMIN }
  }, { resolve })
  // Resolved before the app serves.
  assert.ok(lookups >= 1)
  assert.deepEqual((await targetsOf(gw.url)).map((x) => [x.id, x.source, x.weight, x.resolvedFrom]), [[`127.0.0.1:${a.port}`, 'dns', 2, `http://chat.test:${a.port}`]])
  const early = await trackedMany(`${gw.wsUrl}/chat`, 4)
  assert.deepEqual(spread(early), { a: 4 })
  // Connected by address, named by the name: Host is the upstream's name (as nginx sends it).
  assert.deepEqual(new Set(a.upgrades.map((u) => u.host)), new Set([`chat.test:${a.port}`]))
  const http = await fetch(`${gw.url}/chat/page`)
  assert.equal(await http.text(), 'a')
  assert.equal(a.requests.at(-1)?.host, `chat.test:${a.port}`)

  // A second address appears: it gets traffic.
  answer = ['127.0.0.1', '127.0.0.2']
  await waitFor(async () => (await targetsOf(gw.url)).length === 2, 'the second address')
  const both = await trackedMany(`${gw.wsUrl}/chat`, 8, 1)
  assert.ok((spread(both).b ?? 0) >= 3, JSON.stringify(spread(both)))
  assert.deepEqual(new Set(b.upgrades.map((u) => u.host)), new Set([`chat.test:${a.port}`]))

  // The first address vanishes: its open connections stay and still relay; nothing new goes there.
  answer = ['127.0.0.2']
  await waitFor(async () => (await targetsOf(gw.url)).find((x) => x.id === `127.0.0.1:${a.port}`)?.state === 'drain', 'the first address drained')
  const onA = [...early, ...both].filter((c) => c.upstream === 'a')
  const gone = (await targetsOf(gw.url)).find((x) => x.id === `127.0.0.1:${a.port}`)!
  assert.equal(gone.openConnections, onA.length)
  assert.equal(gone.healthy, false)
  const upgradesOfA = a.upgrades.length
  assert.deepEqual(spread(await trackedMany(`${gw.wsUrl}/chat`, 5)), { b: 5 })
  assert.equal(a.upgrades.length, upgradesOfA)
  for (const c of onA) assert.equal(await whoAnswers(c.ws), 'a')
  // Once they end, the vanished address is gone from the listing.
  for (const c of onA) c.ws.close()
  await Promise.all(onA.map((c) => c.closed))
  await waitFor(async () => (await targetsOf(gw.url)).length === 1, 'the vanished address forgotten')

  // A resolver failure keeps the last answer.
  answer = null as unknown as string[]
  const failing = lookups
  await waitFor(() => lookups > failing + 2, 'lookups that fail')
  assert.deepEqual((await targetsOf(gw.url)).map((x) => x.id), [`127.0.0.2:${a.port}`])
  for (const c of [...early, ...both]) c.ws.close()
})

test('the system resolver: localhost resolves to its loopback addresses, each a target', async (t) => {
  const expected = [...new Set((await lookup('localhost', { all: true })).map((x) => x.address))]
  const a = await namedUpstream(t, 'a', '127.0.0.1')
  const gw = await gatewayFor(t, {
    upstreams: { chat: { targets: [`http://localhost:${a.port}`], resolve: '1h' } },
    routes: [{ prefix: '/chat', upstream: 'chat' }],
    admin: { token: ADMIN }
  })
  const targets = await targetsOf(gw.url)
  assert.deepEqual(targets.map((x) => x.id).sort(), expected.map((ip) => ip.includes(':') ? `[${ip}]:${a.port}` : `${ip}:${a.port}`).sort())
  assert.ok(targets.every((x) => x.source === 'dns' && x.resolvedFrom === `http://localhost:${a.port}`))
  // Only 127.0.0.1 listens here: a handshake reaches it (retrying once if ::1 came first).
  const [c] = await trackedMany(`${gw.wsUrl}/chat`, 1)
  assert.equal(c.upstream, 'a')
  assert.equal(a.upgrades.at(-1)?.host, `localhost:${a.port}`)
  c.ws.close()
})

test('https/wss: an address found by DNS is checked against the name\'s certificate (TLS server name)', async (t) => {
  // A certificate for the name only: connecting by address would fail verification.
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-dns-tls-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=chat.test',
    '-addext', 'subjectAltName=DNS:chat.test'
  ], { stdio: 'ignore' })
  const cert = readFileSync(join(dir, 'cert.pem'), 'utf8')
  const key = readFileSync(join(dir, 'key.pem'), 'utf8')
  const up = await upstreamFor(t, { tls: { cert, key } })
  const gw = await gatewayFor(t, {
    upstreams: { chat: { targets: [`wss://chat.test:${up.port}`], resolve: '1h', ca: cert, healthCheck: { path: '/healthz', interval: '100ms', timeout: '1s' } } },
    routes: [{ prefix: '/chat', upstream: 'chat' }],
    admin: { token: ADMIN }
  }, { resolve: async () => ['127.0.0.1'] })
  assert.deepEqual((await targetsOf(gw.url)).map((x) => x.url), [`https://127.0.0.1:${up.port}`])
  // Health probes check the name's certificate too.
  await waitFor(async () => (await targetsOf(gw.url))[0].health === 'healthy', 'the probe to pass TLS verification')
  const ws = await connect(`${gw.wsUrl}/chat/tls`)
  ws.send('over tls')
  assert.equal(String((await nextMessage(ws)).data), 'over tls')
  assert.equal(up.upgrades.at(-1)?.headers.host, `chat.test:${up.port}`)
  ws.close()
  const res = await fetch(`${gw.url}/chat/page`)
  assert.equal(res.status, 200)
  assert.equal(((await res.json()) as { headers: Record<string, string> }).headers.host, `chat.test:${up.port}`)
})
