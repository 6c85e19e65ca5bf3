/**
 * Hot reload: new configuration without dropping live connections (SIGHUP / POST {prefix}/reload).
 * The runtime is started as `npm start` starts it (src/gateway/server.ts start()), with a config file
 * the tests rewrite.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync, copyFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { Agent } from 'undici'
import { stringify } from 'yaml'
import { start, type RunningGateway } from '../../../src/gateway/server.js'
import { startUpstream, type TestUpstream } from '../../helpers/upstream.js'
import { connect, closed, nextMessage, HandshakeError } from '../../helpers/ws.js'
import { makeCert } from '../../helpers/tls.js'
import type WebSocket from 'ws'
import type { GatewayConfigInput } from '../../../src/config/schema.js'
import { waitFor } from '../../helpers/resources.js'

const TOKEN = 'reload-admin-token-0123'
const auth = { authorization: `Bearer ${TOKEN}` }

interface Harness { gw: RunningGateway, url: string, wsUrl: string, write (c: GatewayConfigInput | string): void, file: string, dir: string }

async function run (t: TestContext, config: GatewayConfigInput, scheme = 'http'): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-reload-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'gateway.yaml')
  const write = (c: GatewayConfigInput | string): void => writeFileSync(file, typeof c === 'string' ? c : stringify(c))
  write(config)
  const gw = await start([], { GATEWAY_CONFIG: file, HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'silent' })
  t.after(() => gw.stop())
  const port = (gw.runtime.server.address() as AddressInfo).port
  return { gw, url: `${scheme}://127.0.0.1:${port}`, wsUrl: `${scheme === 'https' ? 'wss' : 'ws'}://127.0.0.1:${port}`, write, file, dir }
}

async function upstream (t: TestContext, name: string): Promise<TestUpstream> {
  const up = await startUpstream({
    http: (_req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end(name) },
    onConnection: (ws) => ws.on('message', (d, bin) => ws.send(bin ? d as Buffer : `${name}:${String(d)}`))
  })
  t.after(() => up.close())
  return up
}

const base = (routes: GatewayConfigInput['routes'], extra: Partial<GatewayConfigInput> = {}): GatewayConfigInput => ({ admin: { token: TOKEN }, routes, ...extra })

async function echo (ws: WebSocket, text: string): Promise<string> {
  const m = nextMessage(ws)
  ws.send(text)
  return (await m).data.toString()
}

test('a reload adds a route; the listening socket stays the same', async (t) => {
  const a = await upstream(t, 'a')
  const b = await upstream(t, 'b')
  const h = await run(t, base([{ prefix: '/a', upstream: a.url }]))
  assert.equal((await fetch(`${h.url}/b/x`)).status, 404)
  h.write(base([{ prefix: '/a', upstream: a.url }, { prefix: '/b', upstream: b.url }]))
  const r = await h.gw.runtime.reload()
  assert.equal(r.ok, true)
  assert.deepEqual(r.changed, ['routes[/b] added'])
  assert.equal(await (await fetch(`${h.url}/b/x`)).text(), 'b')
  const ws = await connect(`${h.wsUrl}/b`)
  assert.equal(await echo(ws, 'hi'), 'b:hi')
  ws.close()
})

test('a removed route: its open connection keeps relaying, stays listed and closable; new requests get 404', async (t) => {
  const a = await upstream(t, 'a')
  const h = await run(t, base([{ prefix: '/a', upstream: a.url }, { prefix: '/keep', upstream: a.url }]))
  const ws = await connect(`${h.wsUrl}/a`)
  t.after(() => ws.terminate())
  h.write(base([{ prefix: '/keep', upstream: a.url }]))
  assert.deepEqual((await h.gw.runtime.reload()).changed, ['routes[/a] removed'])
  assert.equal(await echo(ws, 'still'), 'a:still')
  assert.equal((await fetch(`${h.url}/a/x`)).status, 404)
  const list = await (await fetch(`${h.url}/admin/connections`, { headers: auth })).json() as { total: number, connections: Array<{ id: string, route: string }> }
  assert.equal(list.total, 1)
  assert.equal(list.connections[0].route, '/a')
  const c = closed(ws)
  assert.equal((await fetch(`${h.url}/admin/connections/${list.connections[0].id}`, { method: 'DELETE', headers: auth })).status, 204)
  assert.equal((await c).code, 1008)
})

test('server.reloadDrain: connections of a removed route are closed with 1012 "service restart"; others stay', async (t) => {
  const a = await upstream(t, 'a')
  const h = await run(t, base([{ prefix: '/a', upstream: a.url }, { prefix: '/keep', upstream: a.url }], { server: { reloadDrain: 200 } }))
  const gone = await connect(`${h.wsUrl}/a`)
  const kept = await connect(`${h.wsUrl}/keep`)
  t.after(() => { gone.terminate(); kept.terminate() })
  const c = closed(gone)
  h.write(base([{ prefix: '/keep', upstream: a.url }], { server: { reloadDrain: 200 } }))
  assert.equal((await h.gw.runtime.reload()).ok, true)
  assert.deepEqual(await c, { code: 1012, reason: 'service restart' })
  assert.equal(await echo(kept, 'ok'), 'a:ok')
})

test('a changed upstream: new connections go to the new target, open ones stay on the old', async (t) => {
  const a = await upstream(t, 'a')
  const b = await upstream(t, 'b')
  const h = await run(t, base([{ prefix: '/x', upstream: 'svc' }], { upstreams: { svc: { targets: [a.url] } } }))
  const old = await connect(`${h.wsUrl}/x`)
  t.after(() => old.terminate())
  h.write(base([{ prefix: '/x', upstream: 'svc' }], { upstreams: { svc: { targets: [b.url] } } }))
  assert.deepEqual((await h.gw.runtime.reload()).changed, ['upstreams.svc'])
  const fresh = await connect(`${h.wsUrl}/x`)
  t.after(() => fresh.terminate())
  assert.equal(await echo(fresh, '1'), 'b:1')
  assert.equal(await echo(old, '2'), 'a:2')
  assert.equal(await (await fetch(`${h.url}/x`)).text(), 'b')
})

test('an invalid configuration is rejected: nothing changes, 400 from the admin route', async (t) => {
  const a = await upstream(t, 'a')
  const h = await run(t, base([{ prefix: '/a', upstream: a.url }]))
  h.write(base([{ prefix: '/a', upstream: 'nowhere' }]))
  const r = await h.gw.runtime.reload()
  assert.equal(r.ok, false)
  assert.match(r.error ?? '', /routes\[0\]\.upstream: unknown upstream "nowhere"/)
  h.write('routes: [ {prefix: /a, upstream: ')
  const res = await fetch(`${h.url}/admin/reload`, { method: 'POST', headers: auth })
  assert.equal(res.status, 400)
  const body = await res.json() as { code: string, message: string }
  assert.equal(body.code, 'GW_ERR_RELOAD_INVALID')
  assert.match(body.message, /YAML/)
  assert.equal(await (await fetch(`${h.url}/a/x`)).text(), 'a')
})

test('POST {prefix}/reload needs the admin token and reports changes and restart-only settings', async (t) => {
  const a = await upstream(t, 'a')
  const h = await run(t, base([{ prefix: '/a', upstream: a.url }]))
  assert.equal((await fetch(`${h.url}/admin/reload`, { method: 'POST' })).status, 401)
  h.write(base([{ prefix: '/a', upstream: a.url, headers: { 'x-v': '2' } }], { admin: { token: TOKEN, port: 1 }, auth: { queryParam: 'tk' } }))
  const res = await fetch(`${h.url}/admin/reload`, { method: 'POST', headers: auth })
  assert.equal(res.status, 200)
  const r = await res.json() as { ok: boolean, changed: string[], restartRequired: string[] }
  assert.equal(r.ok, true)
  assert.ok(r.changed.includes('routes[/a] changed'))
  // The token parameter is masked in logs by the process's logger, set up at start.
  assert.deepEqual(r.restartRequired, ['admin.port', 'auth.queryParam'])
  // The admin API stays where it was (moving it waits for a restart).
  assert.equal((await fetch(`${h.url}/admin/connections`, { headers: auth })).status, 200)
})

test('no refused connection and no 502 for requests and handshakes during 20 reloads', { timeout: 60_000 }, async (t) => {
  const a = await upstream(t, 'a')
  const b = await upstream(t, 'b')
  const configs = [
    base([{ prefix: '/x', upstream: a.url }]),
    base([{ prefix: '/x', upstream: b.url }, { prefix: '/y', upstream: a.url }])
  ]
  const h = await run(t, configs[0])
  let running = true
  const failures: string[] = []
  let requests = 0
  let handshakes = 0
  const httpLoop = (async () => {
    while (running) {
      try {
        const res = await fetch(`${h.url}/x/ping`)
        await res.text()
        if (res.status !== 200) failures.push(`HTTP ${res.status}`)
        requests++
      } catch (e) { failures.push(`HTTP ${(e as Error).message}`) }
    }
  })()
  const wsLoop = (async () => {
    while (running) {
      try {
        const ws = await connect(`${h.wsUrl}/x`)
        const reply = await echo(ws, 'p')
        if (!/^[ab]:p$/.test(reply)) failures.push(`echo ${reply}`)
        ws.close()
        handshakes++
      } catch (e) { failures.push(e instanceof HandshakeError ? `WS ${e.status}` : `WS ${(e as Error).message}`) }
    }
  })()
  for (let i = 1; i <= 20; i++) {
    h.write(configs[i % 2])
    const r = await h.gw.runtime.reload()
    assert.equal(r.ok, true)
  }
  running = false
  await Promise.all([httpLoop, wsLoop])
  t.diagnostic(`${requests} requests and ${handshakes} handshakes during 20 reloads`)
  assert.deepEqual(failures, [])
  assert.ok(requests > 20 && handshakes > 5)
})

test('TLS: a reload picks up renewed certificates without closing the listener', { timeout: 30_000 }, async (t) => {
  const a = await upstream(t, 'a')
  const first = makeCert('first.example')
  const second = makeCert('second.example')
  t.after(() => { first.cleanup(); second.cleanup() })
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-certs-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  copyFileSync(first.certPath, join(dir, 'cert.pem'))
  copyFileSync(first.keyPath, join(dir, 'key.pem'))
  const h = await run(t, base([{ prefix: '/a', upstream: a.url }], { server: { tls: { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') } } }), 'https')
  const port = (h.gw.runtime.server.address() as AddressInfo).port
  const subject = (): Promise<string> => new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => { resolve(String(s.getPeerCertificate().subject.CN)); s.end() })
    s.on('error', reject)
  })
  assert.equal(await subject(), 'first.example')
  copyFileSync(second.certPath, join(dir, 'cert.pem'))
  copyFileSync(second.keyPath, join(dir, 'key.pem'))
  assert.equal((await h.gw.runtime.reload()).ok, true)
  assert.equal(await subject(), 'second.example')
  const agent = new Agent({ connect: { rejectUnauthorized: false } })
  t.after(() => agent.close())
  const res = await fetch(`${h.url}/a/x`, { dispatcher: agent } as unknown as RequestInit)
  assert.equal(await res.text(), 'a')
})

test('an old generation is closed as soon as its last connection ends, not before', async (t) => {
  const a = await upstream(t, 'a')
  const h = await run(t, base([{ prefix: '/a', upstream: a.url }]))
  const old = h.gw.runtime.app
  const ws = await connect(`${h.wsUrl}/a`)
  t.after(() => ws.terminate())
  h.write(base([{ prefix: '/a', upstream: a.url, headers: { 'x-v': '2' } }]))
  assert.equal((await h.gw.runtime.reload()).ok, true)
  assert.notEqual(h.gw.runtime.app, old)
  assert.equal(await echo(ws, 'still'), 'a:still')
  // Closing an app starts its drain, which marks it draining.
  assert.equal(old.gatewayState.draining, false, 'kept while its connection is open')
  ws.close()
  await old.websocketBridge.whenIdle()
  await waitFor(() => old.gatewayState.draining, 'the old generation to close once its connection ended', 3000)
})
