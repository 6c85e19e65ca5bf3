/**
 * Bounds and lifecycles of live targets, without a server: the hash ring's node budget, the
 * target cap, DNS answers (addresses back after retirement are probed again, admin removals
 * hold, zone-scoped and surplus addresses are left out), connection counts that a re-added URL
 * does not inherit, pools shared by routes naming one URL, the paces kept per target (replaced,
 * cancelled when their reason goes), and a TargetManager that stays consistent when closing
 * fails, refuses fractional windows and stops once retired.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { buildPools, distinctPools, UpstreamPool } from '../../../src/upstreams/pool.js'
import { HashBalancer, virtualNodeCounts } from '../../../src/upstreams/balancers.js'
import { TargetResolver, type Resolve } from '../../../src/upstreams/resolver.js'
import { TargetManager, type Closer } from '../../../src/upstreams/target-manager.js'
import { parseTargetMessage, type TargetCommand } from '../../../src/upstreams/target-bus.js'
import { MAX_RESOLVED_ADDRESSES, MAX_TARGETS_PER_UPSTREAM } from '../../../src/config/defaults.js'
import type { Bridge } from '../../../src/bridge/bridge.js'
import type { PacedClose } from '../../../src/drain/paced-close.js'
import type { UpstreamConfig } from '../../../src/config/types.js'

const A = 'http://127.0.0.1:9001'
const B = 'http://127.0.0.1:9002'
const NAME = 'http://chat.svc:9000'

function upstream (targets: string[], extra: Partial<UpstreamConfig> = {}): UpstreamConfig {
  return { name: 'chat', targets, weights: targets.map(() => 1), resolve: 0, autoRebalance: null, balance: 'round-robin', hashOn: 'ip', closeOnUnhealthy: false, ...extra }
}

interface Logged { o: Record<string, unknown>, msg: string }
function logger (): { log: { info: (o: object, msg: string) => void, warn: (o: object, msg: string) => void }, warnings: Logged[] } {
  const warnings: Logged[] = []
  return { log: { info: () => {}, warn: (o, msg) => warnings.push({ o: o as Record<string, unknown>, msg }) }, warnings }
}

/** A pace the test ends by hand. */
function pace (): PacedClose & { cancelled: boolean, end: () => void } {
  let end!: () => void
  const done = new Promise<void>((resolve) => { end = resolve })
  const p = { id: 'pc', cause: 'drain' as const, total: 1, windowMs: 1000, maxPerSecond: 1, startedAt: 0, closed: 0, done, cancelled: false, end, cancel () { p.cancelled = true; end() } }
  return p
}

describe('hash balancer: a fixed budget of virtual nodes', () => {
  test('coprime weights and 256 targets: the node count stays near 160 a target, shares by weight', () => {
    const two = virtualNodeCounts([{ url: 'a', weight: 1000 }, { url: 'b', weight: 999 }], 160)
    assert.deepEqual([two.get('a'), two.get('b')], [160, 160])
    const skewed = virtualNodeCounts([{ url: 'a', weight: 3 }, { url: 'b', weight: 1 }], 160)
    assert.deepEqual([skewed.get('a'), skewed.get('b')], [240, 80])
    // A tiny weight among large ones still has a place on the ring.
    const tiny = virtualNodeCounts([{ url: 'a', weight: 1000 }, { url: 'b', weight: 1000 }, { url: 'c', weight: 1 }], 160)
    assert.equal(tiny.get('c'), 1)
    const many = Array.from({ length: 256 }, (_, i) => ({ url: `http://10.0.${i >> 8}.${i & 255}:9000`, weight: 1000 - i }))
    const counts = virtualNodeCounts(many, 160)
    const total = [...counts.values()].reduce((n, c) => n + c, 0)
    assert.ok(total <= 256 * 160 + 256, `nodes ${total}`)
    // Proportional: the heaviest over the lightest is about 1000 / 745.
    assert.ok(Math.abs(counts.get(many[0].url)! / counts.get(many[255].url)! - 1000 / 745) < 0.02)
  })

  test('rebuilds for 256 targets of distinct weights are bounded in time; keys follow the weights', () => {
    const many = Array.from({ length: 256 }, (_, i) => ({ url: `http://10.0.${i >> 8}.${i & 255}:9000`, weight: 1000 - i }))
    const b = new HashBalancer(many, (ctx) => ctx.ip)
    const times: number[] = []
    for (let r = 0; r < 5; r++) {
      const t0 = performance.now()
      b.update(many.map((t, i) => ({ url: t.url, weight: i === 0 ? 999 - r : t.weight })))
      times.push(performance.now() - t0)
    }
    times.sort((x, y) => x - y)
    // About 7 ms on a quiet core; the bound leaves room for a shared CI machine.
    assert.ok(times[2] < 60, `median rebuild ${times[2].toFixed(1)} ms`)
    const two = new HashBalancer([{ url: 'a', weight: 3 }, { url: 'b', weight: 1 }], (ctx) => ctx.ip)
    let a = 0
    for (let i = 0; i < 4000; i++) if (two.pick({ ip: `10.1.${i >> 8}.${i & 255}`, headers: {} }, () => true) === 'a') a++
    assert.ok(a > 2600 && a < 3400, `a got ${a} of 4000`)
  })
})

describe('pool: caps, DNS, counts, shared pools', () => {
  test('at most MAX_TARGETS_PER_UPSTREAM targets: admin additions past it are refused, DNS ones left out (logged)', () => {
    const { log, warnings } = logger()
    const pool = new UpstreamPool(upstream([A]), { log })
    for (let i = 1; i < MAX_TARGETS_PER_UPSTREAM; i++) assert.equal(pool.addTarget(`http://10.9.${i >> 8}.${i & 255}:80`, 1).ok, true)
    assert.deepEqual(pool.addTarget('http://10.8.0.1:80', 1), { ok: false, reason: 'full' })
    assert.equal(pool.state().length, MAX_TARGETS_PER_UPSTREAM)
    const dns = new UpstreamPool(upstream([NAME], { resolve: 1000 }), { log })
    const answer = Array.from({ length: MAX_TARGETS_PER_UPSTREAM + 5 }, (_, i) => `10.7.${i >> 8}.${i & 255}`)
    assert.equal(dns.setResolved(dns.names[0], answer).added.length, MAX_TARGETS_PER_UPSTREAM)
    assert.ok(warnings.some((w) => w.msg.includes('most targets') && w.o.ignored === 5))
  })

  test('an address back after retirement is health-checked again', { timeout: 5000 }, async () => {
    const probed: string[] = []
    let seen: (() => void) | null = null
    const fetchImpl = (async (url: string) => { probed.push(new URL(url).host); seen?.(); return new Response('', { status: 500 }) }) as unknown as typeof fetch
    const pool = new UpstreamPool(upstream([NAME], { resolve: 1000, healthCheck: { path: '/h', interval: 20, timeout: 500, unhealthyAfter: 1, healthyAfter: 1 } }), { fetchImpl })
    const name = pool.names[0]
    pool.setResolved(name, ['10.0.0.1', '10.0.0.2'])
    pool.connectionOpened('http://10.0.0.1:9000')
    pool.setResolved(name, ['10.0.0.2'])
    // The probe timer is unref()'d: this keeps the test's event loop alive while it waits.
    const keep = setInterval(() => {}, 1000)
    const first = new Promise<void>((resolve) => { seen = () => { if (probed.includes('10.0.0.2:9000')) resolve() } })
    pool.start()
    try {
      await first
      pool.setResolved(name, ['10.0.0.1', '10.0.0.2'])
      probed.length = 0
      await new Promise<void>((resolve) => { seen = () => { if (probed.includes('10.0.0.1:9000')) resolve() } })
      await new Promise<void>((resolve) => { pool.onUnhealthy((target) => { if (target === 'http://10.0.0.1:9000') resolve() }) })
      assert.equal(pool.state().find((t) => t.id === '10.0.0.1:9000')?.health, 'unhealthy')
    } finally {
      pool.stop()
      clearInterval(keep)
    }
  })

  test('a DNS target the admin API removed stays removed through later answers, until added again', () => {
    const pool = new UpstreamPool(upstream([NAME], { resolve: 1000 }))
    const name = pool.names[0]
    pool.setResolved(name, ['10.0.0.1', '10.0.0.2'])
    assert.equal(pool.removeTarget('10.0.0.1:9000').ok, true)
    assert.deepEqual(pool.setResolved(name, ['10.0.0.1', '10.0.0.2']).added, [])
    assert.deepEqual(pool.state().map((t) => t.id), ['10.0.0.2:9000'])
    assert.equal(pool.addTarget('http://10.0.0.1:9000', 1).ok, true)
    pool.removeTarget('10.0.0.1:9000')
    pool.addTarget('http://10.0.0.1:9000', 1)
    assert.deepEqual(pool.state().map((t) => [t.id, t.source]), [['10.0.0.2:9000', 'dns'], ['10.0.0.1:9000', 'admin']])
  })

  test('zone-scoped IPv6 and non-addresses are left out (logged), and so is an answer past MAX_RESOLVED_ADDRESSES', async () => {
    const { log, warnings } = logger()
    const many = Array.from({ length: MAX_RESOLVED_ADDRESSES + 10 }, (_, i) => `10.3.0.${i}`)
    const answers = new Map<string, string[]>([['z.svc', ['fe80::1%eth0', 'not-an-ip', 'fd00::5', '10.0.0.9']], ['many.svc', many]])
    const resolve: Resolve = async (host) => answers.get(host) ?? []
    const pool = new UpstreamPool(upstream(['http://z.svc:80', 'http://many.svc:81'], { resolve: 60_000 }))
    const r = new TargetResolver(pool, { resolve, log })
    await r.refresh()
    const ids = pool.state().map((t) => t.id)
    assert.deepEqual(ids.slice(0, 2), ['[fd00::5]:80', '10.0.0.9:80'])
    assert.ok(ids.every((id) => !id.startsWith('z.svc')), 'no target keeps the name')
    assert.equal(ids.filter((id) => id.startsWith('10.3.')).length, MAX_RESOLVED_ADDRESSES)
    assert.ok(warnings.some((w) => w.msg.includes('cannot be targets') && (w.o.skipped as string[]).includes('fe80::1%eth0')))
    assert.ok(warnings.some((w) => w.msg.includes('too many addresses') && w.o.addresses === MAX_RESOLVED_ADDRESSES + 10))
    // The pool itself never takes a zone-scoped address either.
    const direct = new UpstreamPool(upstream([NAME], { resolve: 1000 }))
    assert.deepEqual(direct.setResolved(direct.names[0], ['fe80::1%eth0']).added, [])
  })

  test('a connection counted on a forgotten target does not take from the target re-added under its URL', () => {
    const pool = new UpstreamPool(upstream([A, B]))
    const old = pool.connectionOpened(B)
    pool.removeTarget('127.0.0.1:9002')
    pool.connectionClosed(B, old)
    assert.deepEqual(pool.refuses(B), 'removed')
    // A handshake that completes on the forgotten target is counted nowhere.
    const late = pool.connectionOpened(B)
    assert.equal(late, 0)
    pool.addTarget(B, 1)
    const fresh = pool.connectionOpened(B)
    pool.connectionClosed(B, late)
    assert.equal(pool.state().find((t) => t.url === B)?.openConnections, 1)
    pool.connectionClosed(B, fresh)
    assert.equal(pool.state().find((t) => t.url === B)?.openConnections, 0)
    assert.equal(pool.refuses(B), null)
  })

  test('routes naming the same upstream URL share one pool', () => {
    const u1 = upstream([A], { name: A })
    const u2 = upstream([A], { name: A })
    const other = upstream([B], { name: B })
    const pools = buildPools([u1, u2, other])
    assert.equal(pools.get(u1), pools.get(u2))
    assert.deepEqual(distinctPools(pools).map((p) => p.name), [A, B])
  })

  test('paces per target: a new one replaces the old, cancelPace stops it, refuses() names the running cause', async () => {
    const pool = new UpstreamPool(upstream([A, B]))
    const first = pace()
    pool.trackPace(A, 'drain', first)
    assert.deepEqual([pool.pacing(A, 'drain'), pool.refuses(A), pool.refuses(B)], [true, 'drain', null])
    const second = pace()
    pool.trackPace(A, 'drain', second)
    assert.equal(first.cancelled, true)
    await first.done
    assert.equal(pool.pacing(A, 'drain'), true, 'the replaced pace ending does not forget the new one')
    assert.equal(pool.cancelPace(A, 'drain'), true)
    assert.deepEqual([second.cancelled, pool.pacing(A, 'drain'), pool.cancelPace(A, 'drain')], [true, false, false])
    const ends = pace()
    pool.trackPace(B, 'unhealthy', ends)
    ends.end()
    await ends.done
    await Promise.resolve()
    assert.equal(pool.pacing(B, 'unhealthy'), false)
  })

  test('onHealthy is told when active checks turn a target healthy again', { timeout: 5000 }, async () => {
    let status = 500
    const fetchImpl = (async () => new Response('', { status })) as unknown as typeof fetch
    const pool = new UpstreamPool(upstream([A], { healthCheck: { path: '/h', interval: 15, timeout: 500, unhealthyAfter: 1, healthyAfter: 1 } }), { fetchImpl })
    const events: string[] = []
    const back = new Promise<void>((resolve) => {
      pool.onUnhealthy((t) => { events.push(`down ${t}`); status = 200 })
      pool.onHealthy((t) => { events.push(`up ${t}`); if (events.length >= 2) resolve() })
    })
    const keep = setInterval(() => {}, 1000)
    pool.start()
    try { await back } finally { pool.stop(); clearInterval(keep) }
    assert.deepEqual(events.slice(0, 2), [`down ${A}`, `up ${A}`])
  })
})

describe('TargetManager: consistent, bounded, retirable', () => {
  function setup (opts: { throwOnClose?: boolean, bridges?: Bridge[], config?: UpstreamConfig } = {}) {
    const pool = new UpstreamPool(opts.config ?? upstream([A, B]))
    const sent: TargetCommand[] = []
    const paces: Array<ReturnType<typeof pace>> = []
    const bridges = opts.bridges ?? []
    const closer: Closer = {
      connectionsOf: (_p, target) => bridges.filter((b) => target === undefined || b.info.upstream === target),
      closePaced: () => {
        if (opts.throwOnClose === true) throw new RangeError('Invalid array length')
        const p = pace()
        paces.push(p)
        return p
      }
    }
    const { log, warnings } = logger()
    let retired = 0
    const manager = new TargetManager({ pools: [pool], closer: () => closer, movable: () => true, instanceId: 'me', publish: async (cmd) => { sent.push(cmd); return true }, log, onRetire: () => { retired++ } })
    return { pool, manager, sent, paces, warnings, retired: () => retired }
  }
  const conn = (id: string, upstreamUrl: string): Bridge => ({ info: { id, upstream: upstreamUrl, route: '/chat' }, connectedAt: Date.now() - 120_000 }) as unknown as Bridge
  const code = (fn: () => Promise<unknown>): Promise<string> => fn().then(() => 'resolved', (err: { code?: string }) => err.code ?? 'no code')

  test('a close that throws leaves the change applied and sent on, answered with no closing', async () => {
    const { pool, manager, sent, warnings } = setup({ throwOnClose: true, bridges: [conn('b1', B)] })
    const answer = await manager.update('chat', '127.0.0.1:9002', { state: 'drain', closeWithin: 500 })
    assert.deepEqual([answer.target.state, answer.closing], ['drain', null])
    assert.deepEqual(sent, [{ op: 'update', upstream: 'chat', target: '127.0.0.1:9002', state: 'drain', closeWithinMs: 500 }])
    assert.equal(pool.state().find((t) => t.url === B)?.state, 'drain')
    const removed = await manager.remove('chat', '127.0.0.1:9002', true)
    assert.equal(removed.closing, null)
    assert.equal(sent.length, 2)
    assert.equal(warnings.filter((w) => w.msg === 'closing upstream target connections failed').length, 2)
  })

  test('closeWithin must be whole milliseconds (admin and bus); answers say "until the next reload or restart"', async () => {
    const { manager } = setup()
    assert.equal(await code(() => manager.update('chat', '127.0.0.1:9002', { state: 'drain', closeWithin: 0.00001 })), 'GW_ERR_BAD_TARGET')
    assert.equal(await code(() => manager.update('chat', '127.0.0.1:9002', { state: 'drain', closeWithin: 1.5 })), 'GW_ERR_BAD_TARGET')
    const ok = await manager.update('chat', '127.0.0.1:9002', { state: 'drain', closeWithin: '0.4ms' })
    assert.equal(ok.persisted, 'until the next reload or restart')
    const msg = (closeWithinMs: number): string => JSON.stringify({ from: 'x', op: 'update', upstream: 'chat', target: 'h:1', closeWithinMs })
    assert.deepEqual(parseTargetMessage(msg(0.00001)), { ok: false, reason: 'bad-field' })
    assert.equal(parseTargetMessage(msg(250)).ok, true)
  })

  test('past the cap: 409 GW_ERR_TOO_MANY_TARGETS from the API; a bus addition is dropped with a warning', async () => {
    const { pool, manager, warnings } = setup()
    for (let i = 2; i < MAX_TARGETS_PER_UPSTREAM; i++) pool.addTarget(`http://10.9.${i >> 8}.${i & 255}:80`, 1)
    assert.equal(await code(() => manager.add('chat', 'http://10.8.0.1:80', 1)), 'GW_ERR_TOO_MANY_TARGETS')
    manager.apply({ op: 'add', upstream: 'chat', url: 'http://10.8.0.2:80', weight: 1 }, 'other')
    assert.ok(warnings.some((w) => w.msg.includes('dropped') && w.o.max === MAX_TARGETS_PER_UPSTREAM))
    assert.equal(pool.state().length, MAX_TARGETS_PER_UPSTREAM)
  })

  test('back to active cancels the drain pace; a removal with close replaces it; from the bus too', async () => {
    const { pool, manager, paces } = setup({ bridges: [conn('a1', A), conn('b1', B)] })
    await manager.update('chat', '127.0.0.1:9002', { state: 'drain', closeWithin: '10s' })
    assert.equal(pool.refuses(B), 'drain')
    await manager.update('chat', '127.0.0.1:9002', { weight: 3 })
    assert.equal(paces[0].cancelled, false, 'still drained: the pace goes on')
    await manager.update('chat', '127.0.0.1:9002', { state: 'active' })
    assert.deepEqual([paces[0].cancelled, pool.refuses(B)], [true, null])
    manager.apply({ op: 'update', upstream: 'chat', target: '127.0.0.1:9001', state: 'drain', closeWithinMs: 10_000 }, 'other')
    await manager.remove('chat', '127.0.0.1:9001', true)
    assert.deepEqual([paces[1].cancelled, paces[2].cancelled, pool.refuses(A)], [true, false, 'removed'])
    manager.apply({ op: 'update', upstream: 'chat', target: '127.0.0.1:9002', state: 'drain', closeWithinMs: 10_000 }, 'other')
    manager.apply({ op: 'update', upstream: 'chat', target: '127.0.0.1:9002', state: 'active' }, 'other')
    assert.equal(paces[3].cancelled, true)
  })

  test('retired: bus commands and automatic rebalances are ignored, onRetire runs once', () => {
    const { pool, manager, paces, retired } = setup({ bridges: [conn('a1', A), conn('a2', A)], config: upstream([A], { autoRebalance: { minAgeMs: 0 } }) })
    manager.retire()
    manager.retire()
    assert.equal(retired(), 1)
    manager.apply({ op: 'add', upstream: 'chat', url: B, weight: 1 }, 'other')
    manager.apply({ op: 'update', upstream: 'chat', target: '127.0.0.1:9001', weight: 0 }, 'other')
    assert.deepEqual(pool.state().map((t) => [t.url, t.weight]), [[A, 1]])
    pool.addTarget(B, 1)
    assert.equal(paces.length, 0)
  })
})
