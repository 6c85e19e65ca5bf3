/**
 * The worked example of the docs, run as written: examples/services/auth-service.mjs decides,
 * examples/services/presence-service.mjs is fed by lifecycle events and resyncs from the admin API.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { upstreamFor } from '../../helpers/upstream.js'
import { gatewayFor } from '../../helpers/gateway.js'
import { connect, closed, nextMessage, type HandshakeError } from '../../helpers/ws.js'
import { freePort, waitFor } from '../../helpers/resources.js'

const ADMIN = 'admin-token-0123456789'
const services = fileURLToPath(new URL('../../../examples/services/', import.meta.url))

async function run (t: { after: (fn: () => unknown) => void }, file: string, env: Record<string, string>, port?: number): Promise<string> {
  port ??= await freePort()
  const child: ChildProcess = spawn(process.execPath, [services + file], { env: { ...process.env, ...env, PORT: String(port) }, stdio: 'inherit' })
  t.after(() => { child.kill() })
  const url = `http://127.0.0.1:${port}`
  await waitFor(async () => { try { await fetch(url, { method: 'HEAD' }); return true } catch { return false } }, `${file} to listen`, 5000, 25)
  return url
}

test('the docs\' auth service and presence service, behind a gateway', async (t) => {
  const up = await upstreamFor(t)
  const auth = await run(t, 'auth-service.mjs', {})
  const presencePort = await freePort()
  const gw = await gatewayFor(t, {
    authorize: { url: auth, upstreamHeaders: ['x-user-id'], userHeader: 'x-user-id' },
    events: { url: `http://127.0.0.1:${presencePort}/events` },
    routes: [{ prefix: '/chat', upstream: up.url }, { prefix: '/billing', upstream: up.url }],
    admin: { token: ADMIN }
  })
  const presence = await run(t, 'presence-service.mjs', { GATEWAY_ADMIN: `${gw.adminUrl}/admin`, ADMIN_TOKEN: ADMIN }, presencePort)
  const refused = await connect(`${gw.wsUrl}/chat`, undefined, { headers: { authorization: 'Bearer nope' } }).then(() => null, (e: HandshakeError) => e)
  assert.equal(refused?.status, 401)
  assert.equal(refused?.body, '{"error":"unknown API key"}')
  const bill = await fetch(`${gw.url}/billing/x`, { headers: { authorization: 'Bearer key-bob' } })
  assert.equal(bill.status, 403)
  assert.equal(up.upgrades.length, 0)

  const ws = await connect(`${gw.wsUrl}/chat`, undefined, { headers: { authorization: 'Bearer key-alice' } })
  ws.send('hello')
  assert.equal((await nextMessage(ws)).data.toString(), 'hello')
  assert.equal(up.upgrades[0].headers['x-user-id'], 'alice')
  const who = async (): Promise<Record<string, number>> => await (await fetch(`${presence}/presence`)).json() as Record<string, number>
  await waitFor(async () => (await who()).alice === 1, 'alice to be online')
  assert.equal((await fetch(`${presence}/resync`, { method: 'POST' })).status, 204)
  assert.deepEqual(await who(), { alice: 1 }, 'the gateway agrees: alice is connected')
  ws.close(1000)
  await closed(ws)
  await waitFor(async () => (await who()).alice === undefined, 'alice to be offline')
})
