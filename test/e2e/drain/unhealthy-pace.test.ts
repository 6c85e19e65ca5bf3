/**
 * closeOnUnhealthy's pace follows its reason: a target that turns healthy again stops the
 * paced close of its connections (those not reached yet stay open), and the next outage starts
 * one pace of its own, however many failed probes it lasts.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type WebSocket from 'ws'
import { gatewayFor } from '../../helpers/gateway.js'
import { upstreamFor } from '../../helpers/upstream.js'
import { connect } from '../../helpers/ws.js'
import { waitFor, within } from '../../helpers/resources.js'

const TOKEN = 'unhealthy-pace-admin-token-01'

interface ClosingView { id: string, cause: string, state: string, total: number, closed: number }

async function paces (base: string): Promise<ClosingView[]> {
  const res = await fetch(`${base}/admin/closing`, { headers: { authorization: `Bearer ${TOKEN}` } })
  return (await res.json() as { closing: ClosingView[] }).closing.filter((c) => c.cause === 'unhealthy')
}

test('closeOnUnhealthy: healthy again stops the pace; the next outage starts one new pace', { timeout: 20_000 }, async (t) => {
  let healthy = true
  let probes = 0
  const up = await upstreamFor(t, { http: (_req, res) => { probes++; res.writeHead(healthy ? 200 : 500).end() } })
  const N = 10
  const gw = await gatewayFor(t, {
    // Ten closes over 8 s: after the first one, the rest wait seconds for their turn.
    server: { drainPace: '8s' },
    admin: { token: TOKEN },
    upstreams: { chat: { targets: [up.url], healthCheck: { path: '/healthz', interval: 40, timeout: 1000, unhealthyAfter: 1, healthyAfter: 1 }, closeOnUnhealthy: true } },
    routes: [{ prefix: '/chat', upstream: 'chat' }]
  })
  const clients: WebSocket[] = await Promise.all(Array.from({ length: N }, async () => await connect(`${gw.wsUrl}/chat`)))
  t.after(() => { for (const c of clients) c.terminate() })
  const closes = clients.map(async (ws) => await new Promise<number>((resolve) => ws.once('close', (code: number) => resolve(code))))

  healthy = false
  await within(Promise.race(closes), 5000, 'a first close')
  assert.equal((await paces(gw.url)).filter((p) => p.state === 'running').length, 1)
  // Healthy again within the window: the pace stops.
  healthy = true
  await waitFor(async () => (await paces(gw.url)).every((p) => p.state !== 'running'), 'the pace stopped by the recovery')
  const open = clients.filter((c) => c.readyState === c.OPEN).length
  assert.ok(open >= 5, `${open} of ${N} still open`)
  const [stopped] = await paces(gw.url)
  assert.equal(stopped.state, 'cancelled')

  // The next outage starts a pace of its own (the stopped one no longer counts as running),
  // one pace however many failed probes it takes.
  const seen = probes
  healthy = false
  await waitFor(async () => (await paces(gw.url)).some((p) => p.state === 'running'), 'a new pace for the new outage')
  await waitFor(() => probes >= seen + 4, 'more failed probes')
  const running = (await paces(gw.url)).filter((p) => p.state === 'running')
  assert.equal(running.length, 1)
  assert.notEqual(running[0].id, stopped.id)
  healthy = true
  await waitFor(async () => (await paces(gw.url)).every((p) => p.state !== 'running'), 'the second pace stopped')
})
