/**
 * Runtime target management through the admin API, end to end: targets added, re-weighted,
 * drained and removed while traffic flows (what each upstream received is checked), the answers
 * (persistence caveat, scope), bad bodies (400), unknown names (404), duplicates (409), and the
 * metrics that follow the targets.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { gatewayFor } from '../../helpers/gateway.js'
import { ADMIN, admin, namedUpstream, spread, targetsOf, tracked, trackedMany, whoAnswers } from './live-helpers.js'
import type { GatewayConfigInput } from '../../../src/config/schema.js'

type Targets = NonNullable<GatewayConfigInput['upstreams']>[string]['targets']

function config (targets: Targets, extra: Record<string, unknown> = {}): GatewayConfigInput {
  return {
    upstreams: { chat: { targets, ...extra } },
    routes: [{ prefix: '/chat', upstream: 'chat' }],
    admin: { token: ADMIN }
  }
}

test('targets added and re-weighted take traffic by weight; drained and removed ones keep their open connections', async (t) => {
  const a = await namedUpstream(t, 'a')
  const b = await namedUpstream(t, 'b')
  const gw = await gatewayFor(t, config([a.url]))
  const idB = `127.0.0.1:${b.port}`

  const added = await admin(gw.url, 'POST', '/upstreams/chat/targets', { url: `ws://127.0.0.1:${b.port}/`, weight: 3 })
  assert.equal(added.status, 201)
  assert.deepEqual({ ...added.body, target: { id: added.body.target.id, url: added.body.target.url, weight: added.body.target.weight, state: added.body.target.state, source: added.body.target.source } }, {
    upstream: 'chat',
    target: { id: idB, url: b.url, weight: 3, state: 'active', source: 'admin' },
    closing: null,
    scope: 'instance',
    persisted: 'until the next reload or restart'
  })
  // Smooth weighted round-robin over a (1) and b (3): exactly 2 and 6 of 8 handshakes.
  const first = await trackedMany(`${gw.wsUrl}/chat`, 8)
  assert.deepEqual(spread(first), { a: 2, b: 6 })
  assert.equal(b.upgrades.length, 6)
  const http = await fetch(`${gw.url}/chat/x`)
  assert.equal(http.status, 200)

  const listed = await targetsOf(gw.url)
  assert.deepEqual(listed.map((x) => [x.id, x.weight, x.state, x.source, x.openConnections]), [[`127.0.0.1:${a.port}`, 1, 'active', 'config', 2], [idB, 3, 'active', 'admin', 6]])

  // Weight 0: no new connections; the open ones stay.
  const zero = await admin(gw.url, 'PATCH', `/upstreams/chat/targets/${idB}`, { weight: 0 })
  assert.equal(zero.status, 200)
  assert.equal(zero.body.target.weight, 0)
  assert.deepEqual(spread(await trackedMany(`${gw.wsUrl}/chat`, 3)), { a: 3 })
  await admin(gw.url, 'PATCH', `/upstreams/chat/targets/${idB}`, { weight: 1 })
  // Drain (as HAProxy's): no new connections, the open ones still relay.
  const drained = await admin(gw.url, 'PATCH', `/upstreams/chat/targets/${idB}`, { state: 'drain' })
  assert.equal(drained.status, 200)
  assert.deepEqual([drained.body.target.state, drained.body.closing], ['drain', null])
  const upgradesBefore = b.upgrades.length
  assert.deepEqual(spread(await trackedMany(`${gw.wsUrl}/chat`, 4)), { a: 4 })
  assert.equal(b.upgrades.length, upgradesBefore)
  const onB = first.filter((c) => c.upstream === 'b')
  for (const c of onB) assert.equal(await whoAnswers(c.ws), 'b')
  assert.equal(b.sockets.size, 6)
  // Active again: it gets traffic again.
  await admin(gw.url, 'PATCH', `/upstreams/chat/targets/${idB}`, { state: 'active' })
  assert.ok(spread(await trackedMany(`${gw.wsUrl}/chat`, 4)).b! >= 1)

  // Removed without close: gone from the listing, no new traffic, its connections stay.
  const removed = await admin(gw.url, 'DELETE', `/upstreams/chat/targets/${idB}`)
  assert.equal(removed.status, 200)
  assert.equal(removed.body.closing, null)
  assert.equal(removed.body.persisted, 'until the next reload or restart')
  assert.deepEqual((await targetsOf(gw.url)).map((x) => x.id), [`127.0.0.1:${a.port}`])
  assert.deepEqual(spread(await trackedMany(`${gw.wsUrl}/chat`, 3)), { a: 3 })
  for (const c of onB) assert.equal(await whoAnswers(c.ws), 'b')
  assert.equal((await admin(gw.url, 'DELETE', `/upstreams/chat/targets/${idB}`)).status, 404)
  for (const c of [...first]) c.ws.close()
})

test('DELETE ?close=true closes the target\'s connections with 1012 and nothing else', async (t) => {
  const a = await namedUpstream(t, 'a')
  const b = await namedUpstream(t, 'b')
  const gw = await gatewayFor(t, config([a.url, b.url]))
  const clients = await trackedMany(`${gw.wsUrl}/chat`, 10)
  assert.deepEqual(spread(clients), { a: 5, b: 5 })
  const res = await admin(gw.url, 'DELETE', `/upstreams/chat/targets/127.0.0.1:${b.port}?close=true`)
  assert.equal(res.status, 200)
  assert.equal(res.body.closing.total, 5)
  await Promise.all(clients.filter((c) => c.upstream === 'b').map((c) => c.closed))
  assert.deepEqual(clients.filter((c) => c.upstream === 'b').map((c) => c.code), [1012, 1012, 1012, 1012, 1012])
  for (const c of clients.filter((c) => c.upstream === 'a')) assert.equal(await whoAnswers(c.ws), 'a')
  assert.equal(b.sockets.size, 0)
  assert.deepEqual((await targetsOf(gw.url)).map((x) => x.openConnections), [5])
  for (const c of clients) c.ws.close()
})

test('bad bodies are 400, unknown upstreams and targets 404, an existing target 409; nothing changes', async (t) => {
  const a = await namedUpstream(t, 'a')
  const gw = await gatewayFor(t, config([a.url]))
  const id = `127.0.0.1:${a.port}`
  const bad: Array<[string, string, unknown, number, string?]> = [
    ['POST', '/upstreams/chat/targets', {}, 400],
    ['POST', '/upstreams/chat/targets', { url: 'ftp://127.0.0.1:1' }, 400],
    ['POST', '/upstreams/chat/targets', { url: '127.0.0.1:1' }, 400],
    ['POST', '/upstreams/chat/targets', { url: 'http://127.0.0.1:1', weight: -1 }, 400],
    ['POST', '/upstreams/chat/targets', { url: 'http://127.0.0.1:1', weight: 1.5 }, 400],
    ['POST', '/upstreams/chat/targets', { url: 'http://127.0.0.1:1', weight: 1001 }, 400],
    ['POST', '/upstreams/chat/targets', { url: 'http://127.0.0.1:1', extra: 1 }, 400],
    ['POST', '/upstreams/chat/targets', { url: 'http://127.0.0.1:1/?q=1' }, 400, 'GW_ERR_BAD_TARGET'],
    ['POST', '/upstreams/chat/targets', '{"url":', 400],
    ['POST', '/upstreams/chat/targets', { url: a.url }, 409, 'GW_ERR_TARGET_EXISTS'],
    ['POST', '/upstreams/chat/targets', { url: `${a.url}/other` }, 409, 'GW_ERR_TARGET_EXISTS'],
    ['POST', '/upstreams/nope/targets', { url: 'http://127.0.0.1:1' }, 404, 'GW_ERR_UPSTREAM_NOT_FOUND'],
    ['PATCH', `/upstreams/chat/targets/${id}`, {}, 400],
    ['PATCH', `/upstreams/chat/targets/${id}`, { state: 'paused' }, 400],
    ['PATCH', `/upstreams/chat/targets/${id}`, { weight: 'heavy' }, 400],
    ['PATCH', `/upstreams/chat/targets/${id}`, { state: 'drain', closeWithin: 'soon' }, 400, 'GW_ERR_BAD_TARGET'],
    ['PATCH', `/upstreams/chat/targets/${id}`, { state: 'drain', closeWithin: -1 }, 400],
    ['PATCH', `/upstreams/chat/targets/${id}`, { state: 'drain', closeWithin: 0.00001 }, 400],
    ['PATCH', `/upstreams/chat/targets/${id}`, { state: 'drain', closeWithin: 86_400_001 }, 400],
    ['PATCH', `/upstreams/chat/targets/${id}`, { closeWithin: '1s' }, 400, 'GW_ERR_BAD_TARGET'],
    ['PATCH', '/upstreams/chat/targets/127.0.0.1:1', { weight: 2 }, 404, 'GW_ERR_TARGET_NOT_FOUND'],
    ['PATCH', `/upstreams/nope/targets/${id}`, { weight: 2 }, 404, 'GW_ERR_UPSTREAM_NOT_FOUND'],
    ['DELETE', '/upstreams/chat/targets/127.0.0.1:1', undefined, 404, 'GW_ERR_TARGET_NOT_FOUND'],
    ['DELETE', `/upstreams/chat/targets/${id}?close=maybe`, undefined, 400],
    ['POST', '/upstreams/chat/rebalance', { minAgeMs: -5 }, 400],
    ['POST', '/upstreams/chat/rebalance', { dryRun: 'yes please' }, 400],
    ['POST', '/upstreams/chat/rebalance', { surprise: true }, 400],
    ['POST', '/upstreams/nope/rebalance', {}, 404, 'GW_ERR_UPSTREAM_NOT_FOUND']
  ]
  for (const [method, path, body, status, code] of bad) {
    const res = await admin(gw.url, method, path, body)
    assert.equal(res.status, status, `${method} ${path} ${JSON.stringify(body)}: ${JSON.stringify(res.body)}`)
    if (code !== undefined) assert.equal(res.body.code, code, `${method} ${path}`)
    assert.equal(typeof res.body.message, 'string')
  }
  assert.deepEqual((await targetsOf(gw.url)).map((x) => [x.id, x.weight, x.state]), [[id, 1, 'active']])
  // Every rebalance field is optional, and so is its body.
  const bare = await fetch(`${gw.url}/admin/upstreams/chat/rebalance`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } })
  assert.equal(bare.status, 200)
  assert.equal(((await bare.json()) as { minAgeMs: number }).minAgeMs, 60_000)
  // Without the admin token: 401, as everywhere in the admin API.
  const anonymous = await fetch(`${gw.url}/admin/upstreams/chat/targets`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ url: 'http://127.0.0.1:1' }) })
  assert.equal(anonymous.status, 401)
  const c = await tracked(`${gw.wsUrl}/chat`)
  assert.equal(c.upstream, 'a')
  c.ws.close()
})

test('metrics follow targets as they come and go: up, weight, rebalance closes', async (t) => {
  const a = await namedUpstream(t, 'a')
  const b = await namedUpstream(t, 'b')
  const gw = await gatewayFor(t, config([{ url: a.url, weight: 2 }]))
  const metrics = async (): Promise<string> => await (await fetch(`${gw.url}/metrics`)).text()
  let text = await metrics()
  assert.match(text, new RegExp(`tollgate_upstream_target_weight\\{upstream="chat",target="${a.url}"\\} 2`))
  assert.doesNotMatch(text, new RegExp(`target="${b.url}"`))
  await admin(gw.url, 'POST', '/upstreams/chat/targets', { url: b.url, weight: 5 })
  text = await metrics()
  assert.match(text, new RegExp(`tollgate_upstream_target_up\\{upstream="chat",target="${b.url}"\\} 1`))
  assert.match(text, new RegExp(`tollgate_upstream_target_weight\\{upstream="chat",target="${b.url}"\\} 5`))
  await admin(gw.url, 'DELETE', `/upstreams/chat/targets/127.0.0.1:${b.port}`)
  text = await metrics()
  assert.doesNotMatch(text, new RegExp(`tollgate_upstream_target_up\\{upstream="chat",target="${b.url}"\\}`))
  // A rebalance that closes: a has 4 connections, b (added back) none.
  const clients = await trackedMany(`${gw.wsUrl}/chat`, 4)
  await admin(gw.url, 'POST', '/upstreams/chat/targets', { url: b.url, weight: 2 })
  const r = await admin(gw.url, 'POST', '/upstreams/chat/rebalance', { minAgeMs: 0 })
  assert.equal(r.status, 200)
  assert.equal(r.body.closing.total, 2)
  text = await metrics()
  assert.match(text, /tollgate_rebalance_closes_total\{upstream="chat"\} 2/)
  for (const c of clients) c.ws.close()
})
