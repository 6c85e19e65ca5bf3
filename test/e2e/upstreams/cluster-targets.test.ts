/**
 * Runtime target changes in cluster mode: two gateway apps sharing Redis (127.0.0.1:6379, a key
 * prefix of their own) see every change made on either one, each rebalances its own connections,
 * and a malformed message on the bus is dropped with a warning without harming anything.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Redis } from 'ioredis'
import { startGateway } from '../../helpers/gateway.js'
import { needRedis, REDIS_URL, testPrefix } from '../../helpers/redis.js'
import { ADMIN, admin, namedUpstream, spread, targetsOf, trackedMany, waitFor } from './live-helpers.js'
import type { GatewayConfigInput } from '../../../src/config/schema.js'

test('target changes made on one instance are applied on every instance', async (t) => {
  if (!await needRedis(t)) return
  const prefix = testPrefix(t)
  const a = await namedUpstream(t, 'a')
  const b = await namedUpstream(t, 'b')
  const config: GatewayConfigInput = {
    redis: { url: REDIS_URL, keyPrefix: prefix },
    upstreams: { chat: { targets: [a.url] } },
    routes: [{ prefix: '/chat', upstream: 'chat' }],
    admin: { token: ADMIN }
  }
  const one = await startGateway(config, { captureLogs: true })
  t.after(() => one.close())
  const two = await startGateway(config, { captureLogs: true })
  t.after(() => two.close())
  const idB = `127.0.0.1:${b.port}`

  // Added on one: both list it and both send traffic to it.
  const added = await admin(one.url, 'POST', '/upstreams/chat/targets', { url: b.url, weight: 1 })
  assert.equal(added.status, 201)
  assert.equal(added.body.scope, 'cluster')
  await waitFor(async () => (await targetsOf(two.url)).some((x) => x.id === idB), 'the added target on the other instance')
  const onTwo = await trackedMany(`${two.wsUrl}/chat`, 4)
  assert.deepEqual(spread(onTwo), { a: 2, b: 2 })

  // Drained on two: one stops sending it new connections.
  assert.equal((await admin(two.url, 'PATCH', `/upstreams/chat/targets/${idB}`, { state: 'drain', weight: 4 })).status, 200)
  await waitFor(async () => (await targetsOf(one.url)).find((x) => x.id === idB)?.state === 'drain', 'the drain on the other instance')
  assert.equal((await targetsOf(one.url)).find((x) => x.id === idB)!.weight, 4)
  assert.deepEqual(spread(await trackedMany(`${one.wsUrl}/chat`, 3)), { a: 3 })
  // While b is drained, two's new connections all go to a: two has 6 on a, 2 on b.
  const more = await trackedMany(`${two.wsUrl}/chat`, 4)
  assert.deepEqual(spread(more), { a: 4 })
  await admin(one.url, 'PATCH', `/upstreams/chat/targets/${idB}`, { state: 'active', weight: 1 })
  await waitFor(async () => (await targetsOf(two.url)).find((x) => x.id === idB)?.state === 'active', 'active again on the other instance')

  // Rebalance asked of one (which has nothing to move): two rebalances its own, 2 of a's 6.
  const r = await admin(one.url, 'POST', '/upstreams/chat/rebalance', { minAgeMs: 0 })
  assert.equal(r.status, 200)
  assert.equal(r.body.instanceId, one.app.instanceId)
  assert.equal(r.body.scope, 'cluster')
  const onTwoAll = [...onTwo, ...more]
  await waitFor(() => onTwoAll.filter((x) => x.code === 1012).length === 2, 'the other instance closing its surplus')
  assert.ok(onTwoAll.filter((x) => x.code === 1012).every((x) => x.upstream === 'a'))
  assert.deepEqual((await targetsOf(two.url)).map((x) => x.openConnections), [4, 2])

  // Removed on two: gone on one too.
  assert.equal((await admin(two.url, 'DELETE', `/upstreams/chat/targets/${idB}`)).status, 200)
  await waitFor(async () => !(await targetsOf(one.url)).some((x) => x.id === idB), 'the removal on the other instance')

  // Hostile messages on the channel: dropped with a warning; both instances carry on.
  const redis = new Redis(REDIS_URL)
  t.after(() => redis.disconnect())
  for (const m of ['{', 'null', JSON.stringify({ from: 'x', upstream: 'chat', op: 'add', url: b.url, weight: -3 }), JSON.stringify({ from: 'x', upstream: 'nope', op: 'rebalance', minAgeMs: 0 }), JSON.stringify({ from: 'x', upstream: 'chat', op: 'add', url: 'http://h/?q', weight: 1 })]) {
    await redis.publish(`${prefix}upstreams`, m)
  }
  await waitFor(() => one.logs.some((l) => l.msg === 'upstream bus: message ignored') && two.logs.some((l) => l.msg === 'upstream change for an unknown upstream ignored'), 'the warnings')
  assert.deepEqual((await targetsOf(one.url)).map((x) => x.id), [`127.0.0.1:${a.port}`])
  assert.deepEqual((await targetsOf(two.url)).map((x) => x.id), [`127.0.0.1:${a.port}`])
  assert.equal((await fetch(`${one.url}/ready`)).status, 200)
  for (const x of onTwoAll) x.ws.close()
})

test('Redis unreachable: a change holds on the instance asked, and the answer says so', async (t) => {
  const a = await namedUpstream(t, 'a')
  const b = await namedUpstream(t, 'b')
  const gw = await startGateway({
    redis: { url: 'redis://127.0.0.1:1', keyPrefix: 'gw-unreachable:' },
    upstreams: { chat: { targets: [a.url] } },
    routes: [{ prefix: '/chat', upstream: 'chat' }],
    admin: { token: ADMIN }
  }, { captureLogs: true })
  t.after(() => gw.close())
  const added = await admin(gw.url, 'POST', '/upstreams/chat/targets', { url: b.url })
  assert.equal(added.status, 201)
  assert.equal(added.body.scope, 'instance')
  assert.deepEqual((await targetsOf(gw.url)).map((x) => x.source), ['config', 'admin'])
  assert.ok(gw.logs.some((l) => l.msg === 'upstream change applied on this instance only: the cluster bus is unreachable'))
  const dry = await admin(gw.url, 'POST', '/upstreams/chat/rebalance', { dryRun: true })
  assert.equal(dry.body.scope, 'instance')
})
