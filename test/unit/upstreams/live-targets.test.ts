/**
 * Live targets in the pool: weights and modes, targets added and removed at run time, addresses
 * from DNS answers (./resolver.ts with a stub resolver), retired targets that keep their counts
 * until idle, the rebalance plan and the steering of reconnecting clients.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { UpstreamPool, addressUrl, type PickContext } from '../../../src/upstreams/pool.js'
import { TargetResolver, type Resolve } from '../../../src/upstreams/resolver.js'
import { planRebalance } from '../../../src/upstreams/rebalance.js'
import { capDeficits } from '../../../src/upstreams/target-manager.js'
import type { UpstreamConfig } from '../../../src/config/types.js'

const A = 'http://127.0.0.1:9001'
const B = 'http://127.0.0.1:9002'
const C = 'http://127.0.0.1:9003'
const ctx: PickContext = { ip: '198.51.100.1', headers: {} }

function upstream (targets: string[], extra: Partial<UpstreamConfig> = {}): UpstreamConfig {
  return { name: 'chat', targets, weights: targets.map(() => 1), resolve: 0, autoRebalance: null, balance: 'round-robin', hashOn: 'ip', closeOnUnhealthy: false, ...extra }
}

function picks (pool: UpstreamPool, n: number): Map<string, number> {
  const out = new Map<string, number>()
  for (let i = 0; i < n; i++) {
    const t = pool.pick(ctx)
    if (t !== null) out.set(t, (out.get(t) ?? 0) + 1)
  }
  return out
}

describe('UpstreamPool: weights and modes', () => {
  test('configured weights are used; weight 0 and drained targets get nothing new', () => {
    const pool = new UpstreamPool(upstream([A, B, C], { weights: [3, 1, 0] }))
    assert.deepEqual(picks(pool, 40), new Map([[A, 30], [B, 10]]))
    assert.equal(pool.updateTarget('127.0.0.1:9001', { state: 'drain' }).ok, true)
    assert.deepEqual(picks(pool, 10), new Map([[B, 10]]))
    pool.updateTarget('127.0.0.1:9002', { state: 'drain' })
    assert.equal(pool.pick(ctx), null, 'drained targets are not tried even as a last resort')
    pool.updateTarget('127.0.0.1:9003', { weight: 2 })
    assert.deepEqual(picks(pool, 4), new Map([[C, 4]]))
    assert.deepEqual(pool.state().map((t) => [t.id, t.weight, t.state]), [['127.0.0.1:9001', 3, 'drain'], ['127.0.0.1:9002', 1, 'drain'], ['127.0.0.1:9003', 2, 'active']])
  })

  test('unknown ids are not found; adding an existing one is refused', () => {
    const pool = new UpstreamPool(upstream([A]))
    assert.deepEqual(pool.updateTarget('127.0.0.1:1', { weight: 2 }), { ok: false, reason: 'not-found' })
    assert.deepEqual(pool.removeTarget('nope'), { ok: false, reason: 'not-found' })
    assert.deepEqual(pool.addTarget(A, 1), { ok: false, reason: 'exists' })
    assert.deepEqual(pool.addTarget('http://127.0.0.1:9001/other-base', 1), { ok: false, reason: 'exists' }, 'same host:port')
  })

  test('an added target takes traffic at once and shows as source admin', () => {
    const pool = new UpstreamPool(upstream([A]))
    const changes: number[] = []
    pool.onChange(() => changes.push(pool.state().length))
    const added = pool.addTarget(B, 2)
    assert.ok(added.ok)
    assert.equal(added.target.source, 'admin')
    assert.deepEqual(changes, [2])
    assert.deepEqual(picks(pool, 30), new Map([[A, 10], [B, 20]]))
  })

  test('a removed target with open connections keeps counting them until they end, hidden', () => {
    const pool = new UpstreamPool(upstream([A, B]))
    pool.connectionOpened(B)
    pool.connectionOpened(B)
    const removed = pool.removeTarget('127.0.0.1:9002')
    assert.ok(removed.ok)
    assert.equal(removed.target.openConnections, 2)
    assert.deepEqual(pool.state().map((t) => t.url), [A])
    assert.deepEqual(picks(pool, 5), new Map([[A, 5]]))
    // Added back while its connections are open: the counts are still right.
    assert.ok(pool.addTarget(B, 1).ok)
    assert.equal(pool.state()[1].openConnections, 2)
    pool.removeTarget('127.0.0.1:9002')
    pool.connectionClosed(B)
    pool.connectionClosed(B)
    assert.ok(pool.addTarget(B, 1).ok)
    assert.equal(pool.state()[1].openConnections, 0, 'forgotten once idle: a fresh target')
  })
})

describe('UpstreamPool: DNS targets', () => {
  const NAME = 'http://chat.svc:9000/base'

  test('a host name with resolve is not a target itself; each address is', () => {
    const pool = new UpstreamPool(upstream([NAME, A], { resolve: 1000, weights: [2, 1] }))
    assert.deepEqual(pool.names, [{ url: NAME, hostname: 'chat.svc', weight: 2 }])
    assert.deepEqual(pool.state().map((t) => t.url), [A])
    const r = pool.setResolved(pool.names[0], ['10.0.0.1', '10.0.0.2', 'fd00::1'])
    assert.deepEqual(r.added, ['http://10.0.0.1:9000/base', 'http://10.0.0.2:9000/base', 'http://[fd00::1]:9000/base'])
    const dns = pool.state().filter((t) => t.source === 'dns')
    assert.deepEqual(dns.map((t) => [t.id, t.weight, t.resolvedFrom]), [['10.0.0.1:9000', 2, NAME], ['10.0.0.2:9000', 2, NAME], ['[fd00::1]:9000', 2, NAME]])
    assert.equal(pool.resolvedFrom('http://10.0.0.2:9000/base'), NAME)
  })

  test('an address that vanishes keeps its open connections, shown as drain, then goes', () => {
    const pool = new UpstreamPool(upstream([NAME], { resolve: 1000 }))
    const name = pool.names[0]
    pool.setResolved(name, ['10.0.0.1', '10.0.0.2'])
    const gone = 'http://10.0.0.2:9000/base'
    pool.connectionOpened(gone)
    assert.deepEqual(pool.setResolved(name, ['10.0.0.1', '10.0.0.3']), { added: ['http://10.0.0.3:9000/base'], removed: [gone] })
    const shown = pool.state().find((t) => t.url === gone)!
    assert.equal(shown.state, 'drain')
    assert.equal(shown.openConnections, 1)
    assert.equal(shown.healthy, false)
    assert.equal(pool.urlOf('10.0.0.2:9000'), null, 'not changeable through the API any more')
    assert.ok(!picks(pool, 20).has(gone))
    // It comes back in the next answer while still connected: the same target again.
    pool.setResolved(name, ['10.0.0.2'])
    assert.equal(pool.state().find((t) => t.url === gone)!.state, 'active')
    pool.setResolved(name, [])
    pool.connectionClosed(gone)
    assert.deepEqual(pool.state(), [], 'an empty answer leaves no target once connections ended')
    assert.equal(pool.pick(ctx), null)
  })

  test('addressUrl keeps scheme, port and path', () => {
    assert.equal(addressUrl('https://api.example/x', '192.0.2.1'), 'https://192.0.2.1/x')
    assert.equal(addressUrl('http://h:81', '::1'), 'http://[::1]:81')
  })
})

describe('TargetResolver (stub resolver)', () => {
  function stub (): Resolve & { answers: Map<string, string[] | Error>, calls: number } {
    const answers = new Map<string, string[] | Error>()
    const fn = Object.assign(async (host: string): Promise<string[]> => {
      fn.calls++
      const a = answers.get(host)
      if (a instanceof Error) throw a
      return a ?? []
    }, { answers, calls: 0 })
    return fn
  }
  const err = (code: string): Error => Object.assign(new Error(code), { code })

  test('each refresh makes the targets follow the answers', async () => {
    const resolve = stub()
    const pool = new UpstreamPool(upstream(['http://a.svc:80', 'http://b.svc:81'], { resolve: 60_000 }))
    const r = new TargetResolver(pool, { resolve })
    resolve.answers.set('a.svc', ['10.0.0.1'])
    resolve.answers.set('b.svc', ['10.0.0.9', '10.0.0.9'])
    await r.refresh()
    assert.deepEqual(pool.state().map((t) => t.id), ['10.0.0.1:80', '10.0.0.9:81'])
    resolve.answers.set('a.svc', ['10.0.0.1', '10.0.0.2'])
    await r.refresh()
    assert.deepEqual(pool.state().map((t) => t.id), ['10.0.0.1:80', '10.0.0.9:81', '10.0.0.2:80'])
    assert.equal(resolve.calls, 4)
  })

  test('a name that does not exist empties; any other failure keeps the last answer', async () => {
    const resolve = stub()
    const warnings: Array<Record<string, unknown>> = []
    const pool = new UpstreamPool(upstream(['http://a.svc:80'], { resolve: 60_000 }))
    const r = new TargetResolver(pool, { resolve, log: { warn: (o) => warnings.push(o as Record<string, unknown>) }, timeoutMs: 50 })
    resolve.answers.set('a.svc', ['10.0.0.1'])
    await r.refresh()
    for (const failure of [err('ESERVFAIL'), err('ECONNREFUSED'), new Error('weird')]) {
      resolve.answers.set('a.svc', failure)
      await r.refresh()
      assert.deepEqual(pool.state().map((t) => t.id), ['10.0.0.1:80'], failure.message)
    }
    // A resolver that never answers: the last answer is kept after the timeout.
    const hanging = new UpstreamPool(upstream(['http://a.svc:80'], { resolve: 60_000 }))
    hanging.setResolved(hanging.names[0], ['10.0.0.5'])
    await new TargetResolver(hanging, { resolve: () => new Promise(() => {}), timeoutMs: 30 }).refresh()
    assert.deepEqual(hanging.state().map((t) => t.id), ['10.0.0.5:80'])
    // A resolver that answers something that is not a list of addresses.
    await new TargetResolver(hanging, { resolve: async () => [42] as unknown as string[] }).refresh()
    assert.deepEqual(hanging.state().map((t) => t.id), ['10.0.0.5:80'])
    assert.equal(warnings.length, 3)
    assert.deepEqual(warnings.map((w) => w.code), ['ESERVFAIL', 'ECONNREFUSED', undefined])
    resolve.answers.set('a.svc', err('ENOTFOUND'))
    await r.refresh()
    assert.deepEqual(pool.state(), [])
  })

  test('rounds never overlap; start() resolves before it returns and then on its timer; stop() ends it', async () => {
    let release: () => void = () => {}
    let calls = 0
    const pool = new UpstreamPool(upstream(['http://a.svc:80'], { resolve: 20 }))
    const r = new TargetResolver(pool, {
      resolve: () => {
        calls++
        return new Promise((resolve) => { release = () => resolve([`10.0.0.${calls}`]) })
      }
    })
    const one = r.refresh()
    const two = r.refresh()
    assert.equal(one, two, 'the same round')
    release()
    await one
    assert.equal(calls, 1)
    const started = r.start()
    release()
    await started
    assert.deepEqual(pool.state().map((t) => t.id), ['10.0.0.2:80'])
    // The timer's next round.
    while (calls < 3) await new Promise((resolve) => setTimeout(resolve, 5))
    r.stop()
    release()
    await new Promise((resolve) => setTimeout(resolve, 40))
    assert.equal(calls, 3, 'no round after stop()')
    assert.deepEqual(pool.state().map((t) => t.id), ['10.0.0.2:80'], 'the answer that came after stop() changed nothing')
  })

  test('does nothing for an upstream without names', async () => {
    const pool = new UpstreamPool(upstream([A], { resolve: 10 }))
    const r = new TargetResolver(pool, { resolve: async () => { throw new Error('not called') } })
    assert.equal(r.active, false)
    await r.start()
    r.stop()
  })
})

describe('rebalance plan', () => {
  const T = (id: string, weight = 1, eligible = true): { id: string, url: string, weight: number, eligible: boolean } => ({ id, url: `http://${id}`, weight, eligible })
  const conns = (target: string, n: number, at = 0, movable = true): Array<{ id: string, target: string, connectedAt: number, movable: boolean }> =>
    Array.from({ length: n }, (_, i) => ({ id: `${target}-${i}`, target: `http://${target}`, connectedAt: at + i, movable }))

  test('2 -> 3 targets: each old target gives up its surplus, oldest first', () => {
    const plan = planRebalance([T('a:1'), T('b:1'), T('c:1')], [...conns('a:1', 150), ...conns('b:1', 150)], 1_000_000, 0)
    assert.equal(plan.total, 300)
    assert.deepEqual(plan.targets.map((t) => [t.fairShare, t.surplus, t.picked.length]), [[100, 50, 50], [100, 50, 50], [100, 0, 0]])
    assert.deepEqual(plan.targets[0].picked.slice(0, 2), ['a:1-0', 'a:1-1'])
    assert.deepEqual([...plan.deficits], [['http://c:1', 100]])
  })

  test('weights, minimum age, unmovable routes and ineligible targets', () => {
    const now = 10_000
    const plan = planRebalance(
      [T('a:1', 3), T('b:1', 1), T('d:1', 1, false)],
      [...conns('a:1', 10, 0), ...conns('b:1', 10, 9_500), ...conns('b:1', 4, 0, false).map((c) => ({ ...c, id: `pinned-${c.id}` })), ...conns('d:1', 7)],
      now, 1000)
    // 24 connections on eligible targets: a's share 18, b's 6; b has 14 (4 on a rebalance: false route).
    assert.equal(plan.total, 24)
    assert.deepEqual(plan.targets.map((t) => [t.eligible, t.fairShare, t.surplus, t.picked.length]), [[true, 18, 0, 0], [true, 6, 8, 0], [false, 0, 0, 0]])
    assert.deepEqual([...plan.deficits], [['http://a:1', 8]])
    const old = planRebalance([T('a:1', 3), T('b:1', 1)], [...conns('a:1', 10), ...conns('b:1', 10, 0)], now, 1000)
    assert.deepEqual(old.targets[1].picked.length, 5)
  })

  test('nothing eligible: nothing closes', () => {
    const plan = planRebalance([T('a:1', 0), T('b:1', 1, false)], conns('a:1', 5), 0, 0)
    assert.deepEqual(plan.picked, [])
    assert.equal(plan.total, 0)
  })

  test('capDeficits gives out no more than were closed, largest first', () => {
    assert.deepEqual([...capDeficits(new Map([['x', 3], ['y', 10]]), 11)], [['y', 10], ['x', 1]])
    assert.deepEqual([...capDeficits(new Map([['x', 3]]), 0)], [])
  })

  test('steering sends the next picks to the targets owed, then normal balancing resumes', () => {
    const pool = new UpstreamPool(upstream([A, B, C]))
    pool.steer(new Map([[C, 5], [B, 2]]), Date.now() + 60_000)
    // Largest debt first; on a tie, the first listed.
    assert.deepEqual(Array.from({ length: 7 }, () => pool.pick(ctx)), [C, C, C, C, B, C, B])
    assert.deepEqual(picks(pool, 30), new Map([[A, 10], [B, 10], [C, 10]]))
    const hash = new UpstreamPool(upstream([A, B], { balance: 'hash' }))
    hash.steer(new Map([[B, 5]]), Date.now() + 60_000)
    const sticky = hash.pick(ctx)
    for (let i = 0; i < 5; i++) assert.equal(hash.pick(ctx), sticky, 'a hash upstream keeps its keys')
  })
})

describe('TargetCache aliases (DNS targets)', () => {
  test('an address is connected to by address, named by the name; forgotten when gone', async () => {
    const { TargetCache } = await import('../../../src/edge/forward-headers.js')
    const cache = new TargetCache()
    cache.alias('https://10.0.0.7:8443/base', 'https://chat.svc:8443/base')
    for (const key of ['https://10.0.0.7:8443/base', 'https://10.0.0.7:8443']) {
      const p = cache.parts(key)
      assert.deepEqual([p.hostname, p.port, p.host, p.servername, p.secure], ['10.0.0.7', 8443, 'chat.svc:8443', 'chat.svc', true], key)
    }
    assert.equal(cache.parts('https://10.0.0.7:8443/base').pathname, '/base')
    cache.forget('https://10.0.0.7:8443/base')
    const plain = cache.parts('https://10.0.0.7:8443')
    assert.deepEqual([plain.host, plain.servername], ['10.0.0.7:8443', undefined])
  })
})
