/**
 * Rebalancing and draining at a pace, measured at the clients: a scale-out from 2 to 3 targets
 * with 300 open connections ends within 10% of each target's fair share, and the closes never
 * came faster than the pace allows; a drain with closeWithin empties its target over that window
 * while new connections avoid it; a route with `rebalance: false` keeps its connections.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { gatewayFor } from '../../helpers/gateway.js'
import { ADMIN, admin, maxInWindow, namedUpstream, spread, targetsOf, tracked, trackedMany, type TrackedClient } from './live-helpers.js'

/** Clients that reconnect as soon as the gateway closes them with 1012 (what real clients do). */
function reconnecting (url: string, clients: TrackedClient[]): { live: Set<TrackedClient>, closes: number[], codes: number[], settled: () => Promise<void> } {
  const live = new Set(clients)
  const closes: number[] = []
  const codes: number[] = []
  const pending = new Set<Promise<void>>()
  const watch = (c: TrackedClient): void => {
    void c.closed.then(() => {
      if (c.code !== 1012) return
      live.delete(c)
      closes.push(c.closedAt!)
      codes.push(c.code)
      const p = tracked(url).then((n) => { live.add(n); watch(n) }).finally(() => pending.delete(p))
      pending.add(p)
    })
  }
  for (const c of clients) watch(c)
  return { live, closes, codes, settled: async () => { while (pending.size > 0) await Promise.all([...pending]) } }
}

test('scale-out 2 -> 3 targets with 300 connections: rebalance spreads them within 10% of fair share, at the pace', async (t) => {
  const a = await namedUpstream(t, 'a')
  const b = await namedUpstream(t, 'b')
  const c = await namedUpstream(t, 'c')
  const PACE = 2000
  const gw = await gatewayFor(t, {
    server: { drainPace: PACE },
    upstreams: { chat: { targets: [a.url, b.url] } },
    routes: [{ prefix: '/chat', upstream: 'chat' }],
    admin: { token: ADMIN }
  })
  const url = `${gw.wsUrl}/chat`
  const clients = await trackedMany(url, 300)
  assert.deepEqual(spread(clients), { a: 150, b: 150 })
  assert.equal((await admin(gw.url, 'POST', '/upstreams/chat/targets', { url: c.url })).status, 201)

  // Dry run: what would close, and nothing does.
  const dry = await admin(gw.url, 'POST', '/upstreams/chat/rebalance', { dryRun: true, minAgeMs: 0 })
  assert.equal(dry.status, 200)
  assert.equal(dry.body.dryRun, true)
  assert.equal(dry.body.closing, null)
  assert.equal(dry.body.total, 300)
  assert.deepEqual(dry.body.targets.map((x: { fairShare: number, surplus: number, picked: string[], connections: number }) => [x.connections, x.fairShare, x.surplus, x.picked.length]), [[150, 100, 50, 50], [150, 100, 50, 50], [0, 100, 0, 0]])
  // The default minimum age (60 s) leaves these young connections alone.
  const young = await admin(gw.url, 'POST', '/upstreams/chat/rebalance', { dryRun: true })
  assert.equal(young.body.minAgeMs, 60_000)
  assert.deepEqual(young.body.targets.map((x: { picked: string[] }) => x.picked.length), [0, 0, 0])
  assert.equal(c.upgrades.length, 0)
  assert.ok(clients.every((x) => x.code === null))

  const watcher = reconnecting(url, clients)
  const started = Date.now()
  const res = await admin(gw.url, 'POST', '/upstreams/chat/rebalance', { minAgeMs: 0 })
  assert.equal(res.status, 200)
  assert.equal(res.body.closing.total, 100)
  assert.equal(res.body.closing.windowMs, PACE)
  const maxPerSecond = res.body.closing.maxPerSecond as number
  assert.equal(maxPerSecond, 50)
  const picked = new Set<string>(res.body.targets.flatMap((x: { picked: string[] }) => x.picked))
  assert.equal(picked.size, 100)
  while (watcher.closes.length < 100) await Promise.race([...watcher.live].map((x) => x.closed))
  await watcher.settled()

  // Paced: spread over the window, never more than the rate in any second (measured at clients).
  assert.deepEqual(new Set(watcher.codes), new Set([1012]))
  const span = Math.max(...watcher.closes) - Math.min(...watcher.closes)
  assert.ok(span >= PACE * 0.6 && Math.max(...watcher.closes) - started <= PACE + 500, `closes spanned ${span}ms`)
  assert.ok(maxInWindow(watcher.closes, 1000) <= maxPerSecond + 2, `at most ${maxPerSecond}/s, saw ${maxInWindow(watcher.closes, 1000)}`)
  // Fair shares: 100 each, within 10%, at the upstreams themselves.
  const counts = [a.sockets.size, b.sockets.size, c.sockets.size]
  assert.equal(counts.reduce((x, y) => x + y, 0), 300)
  for (const n of counts) assert.ok(Math.abs(n - 100) <= 10, `spread ${counts.join('/')}`)
  assert.deepEqual((await targetsOf(gw.url)).map((x) => x.openConnections), counts)
  for (const x of watcher.live) x.ws.close()
})

test('drain with closeWithin empties the target at the pace while new connections avoid it', async (t) => {
  const a = await namedUpstream(t, 'a')
  const b = await namedUpstream(t, 'b')
  const gw = await gatewayFor(t, {
    upstreams: { chat: { targets: [a.url, b.url] } },
    routes: [{ prefix: '/chat', upstream: 'chat' }],
    admin: { token: ADMIN }
  })
  const url = `${gw.wsUrl}/chat`
  const clients = await trackedMany(url, 80)
  const onB = clients.filter((x) => x.upstream === 'b')
  assert.equal(onB.length, 40)
  const WINDOW = 1500
  const started = Date.now()
  const res = await admin(gw.url, 'PATCH', `/upstreams/chat/targets/127.0.0.1:${b.port}`, { state: 'drain', closeWithin: `${WINDOW}ms` })
  assert.equal(res.status, 200)
  assert.equal(res.body.target.state, 'drain')
  assert.deepEqual([res.body.closing.total, res.body.closing.windowMs], [40, WINDOW])
  const maxPerSecond = res.body.closing.maxPerSecond as number
  // New connections during the drain all go to a.
  const during = await trackedMany(url, 10, 1)
  assert.deepEqual(spread(during), { a: 10 })
  await Promise.all(onB.map((x) => x.closed))
  const times = onB.map((x) => x.closedAt!)
  assert.deepEqual(new Set(onB.map((x) => x.code)), new Set([1012]))
  const span = Math.max(...times) - Math.min(...times)
  assert.ok(span >= WINDOW * 0.6 && Math.max(...times) - started <= WINDOW + 500, `closes spanned ${span}ms`)
  assert.ok(maxInWindow(times, 1000) <= maxPerSecond + 2, `at most ${maxPerSecond}/s, saw ${maxInWindow(times, 1000)}`)
  assert.equal(b.sockets.size, 0)
  assert.ok(clients.filter((x) => x.upstream === 'a').every((x) => x.code === null), 'the other target\'s connections stay')
  const listed = (await targetsOf(gw.url)).find((x) => x.id === `127.0.0.1:${b.port}`)!
  assert.deepEqual([listed.state, listed.openConnections], ['drain', 0])
  for (const x of [...clients, ...during]) x.ws.close()
})

test('routes with rebalance: false keep their connections; weights set the fair shares', async (t) => {
  const a = await namedUpstream(t, 'a')
  const b = await namedUpstream(t, 'b')
  const gw = await gatewayFor(t, {
    upstreams: { chat: { targets: [a.url] } },
    routes: [{ prefix: '/chat', upstream: 'chat' }, { prefix: '/pinned', upstream: 'chat', rebalance: false }],
    admin: { token: ADMIN }
  })
  const chat = await trackedMany(`${gw.wsUrl}/chat`, 12)
  const pinned = await trackedMany(`${gw.wsUrl}/pinned`, 6)
  await admin(gw.url, 'POST', '/upstreams/chat/targets', { url: b.url, weight: 2 })
  const res = await admin(gw.url, 'POST', '/upstreams/chat/rebalance', { minAgeMs: 0 })
  // 18 connections, weights 1:2: a's share 6, b's 12; a gives up 12, all from /chat.
  assert.deepEqual(res.body.targets.map((x: { fairShare: number, surplus: number, picked: string[] }) => [x.fairShare, x.surplus, x.picked.length]), [[6, 12, 12], [12, 0, 0]])
  await Promise.all(chat.map((x) => x.closed))
  assert.ok(chat.every((x) => x.code === 1012))
  assert.ok(pinned.every((x) => x.code === null))
  // Reconnecting clients are steered to b, the target below its share.
  const back = await trackedMany(`${gw.wsUrl}/chat`, 12, 1)
  assert.deepEqual(spread(back), { b: 12 })
  for (const x of [...pinned, ...back]) x.ws.close()
})

test('rebalance: { auto: true } rebalances by itself when a target is added', async (t) => {
  const a = await namedUpstream(t, 'a')
  const b = await namedUpstream(t, 'b')
  const gw = await gatewayFor(t, {
    upstreams: { chat: { targets: [a.url], rebalance: { auto: true, minAge: 0 } } },
    routes: [{ prefix: '/chat', upstream: 'chat' }],
    admin: { token: ADMIN }
  })
  const url = `${gw.wsUrl}/chat`
  const clients = await trackedMany(url, 20)
  const watcher = reconnecting(url, clients)
  assert.equal((await admin(gw.url, 'POST', '/upstreams/chat/targets', { url: b.url })).status, 201)
  while (watcher.closes.length < 10) await Promise.race([...watcher.live].map((x) => x.closed))
  await watcher.settled()
  assert.deepEqual([a.sockets.size, b.sockets.size], [10, 10])
  assert.equal(watcher.closes.length, 10)
  for (const x of watcher.live) x.ws.close()
})
