/**
 * TargetManager without a server: changes applied to the pool and sent on the bus, coded errors
 * for unknown names and bad input, the closing it asks of the bridge (cause, code, window, which
 * connections), and another instance's commands applied without being sent on again.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { UpstreamPool } from '../../../src/upstreams/pool.js'
import { TargetManager, type Closer } from '../../../src/upstreams/target-manager.js'
import type { TargetCommand } from '../../../src/upstreams/target-bus.js'
import type { Bridge } from '../../../src/bridge/bridge.js'
import type { UpstreamConfig } from '../../../src/config/types.js'

const A = 'http://127.0.0.1:9001'
const B = 'http://127.0.0.1:9002'

function upstream (targets: string[], extra: Partial<UpstreamConfig> = {}): UpstreamConfig {
  return { name: 'chat', targets, weights: targets.map(() => 1), resolve: 0, autoRebalance: null, balance: 'round-robin', hashOn: 'ip', closeOnUnhealthy: false, ...extra }
}

/** A bridge as far as the manager looks at it. */
function bridge (id: string, upstream: string, route = '/chat', ageMs = 120_000): Bridge {
  return { info: { id, upstream, route }, connectedAt: Date.now() - ageMs } as unknown as Bridge
}

function setup (opts: { publish?: boolean, bridges?: Bridge[], config?: UpstreamConfig } = {}) {
  const pool = new UpstreamPool(opts.config ?? upstream([A, B]))
  const sent: TargetCommand[] = []
  const paced: Array<{ code: number, reason: string, cause: string, ids: string[], windowMs?: number }> = []
  const bridges = opts.bridges ?? []
  const closer: Closer = {
    connectionsOf: (_pool, target) => bridges.filter((b) => target === undefined || b.info.upstream === target),
    closePaced: (o) => {
      paced.push({ code: o.code, reason: o.reason, cause: o.cause, ids: o.bridges.map((b) => b.info.id), windowMs: o.windowMs })
      return { id: `pc-${paced.length}`, cause: o.cause, total: o.bridges.length, windowMs: o.windowMs ?? 0, maxPerSecond: o.bridges.length, startedAt: Date.now(), closed: 0, done: Promise.resolve(), cancel () {} }
    }
  }
  const rebalanced: Array<[string, number]> = []
  const manager = new TargetManager({
    pools: [pool],
    closer: () => closer,
    movable: (route) => route !== '/pinned',
    instanceId: 'me',
    publish: opts.publish === false ? undefined : async (cmd) => { sent.push(cmd); return true },
    rebalanced: (u, n) => rebalanced.push([u, n])
  })
  return { pool, manager, sent, paced, rebalanced }
}

const code = (fn: () => Promise<unknown>): Promise<string> => fn().then(() => 'resolved', (err: { code?: string }) => err.code ?? 'no code')

describe('TargetManager', () => {
  test('add, update, remove: applied here, sent on, answered with the persistence caveat', async () => {
    const { pool, manager, sent } = setup()
    const added = await manager.add('chat', 'ws://127.0.0.1:9003/', 2)
    assert.deepEqual([added.target.url, added.target.weight, added.scope, added.persisted], ['http://127.0.0.1:9003', 2, 'cluster', 'until the next reload or restart'])
    const updated = await manager.update('chat', '127.0.0.1:9003', { weight: 0 })
    assert.equal(updated.target.weight, 0)
    const removed = await manager.remove('chat', '127.0.0.1:9003', false)
    assert.equal(removed.closing, null)
    assert.deepEqual(pool.state().map((t) => t.url), [A, B])
    assert.deepEqual(sent, [
      { op: 'add', upstream: 'chat', url: 'http://127.0.0.1:9003', weight: 2 },
      { op: 'update', upstream: 'chat', target: '127.0.0.1:9003', weight: 0 },
      { op: 'remove', upstream: 'chat', target: '127.0.0.1:9003', close: false }
    ])
  })

  test('coded errors: unknown upstream and target, bad URL, existing target, closeWithin misuse', async () => {
    const { manager, sent } = setup()
    assert.equal(await code(() => manager.add('nope', B, 1)), 'GW_ERR_UPSTREAM_NOT_FOUND')
    assert.equal(await code(() => manager.add('chat', B, 1)), 'GW_ERR_TARGET_EXISTS')
    assert.equal(await code(() => manager.add('chat', 'http://h/?q', 1)), 'GW_ERR_BAD_TARGET')
    assert.equal(await code(() => manager.add('chat', 'gopher://h', 1)), 'GW_ERR_BAD_TARGET')
    assert.equal(await code(() => manager.update('chat', '127.0.0.1:1', { weight: 1 })), 'GW_ERR_TARGET_NOT_FOUND')
    assert.equal(await code(() => manager.update('chat', '127.0.0.1:9001', { closeWithin: '1s' })), 'GW_ERR_BAD_TARGET')
    assert.equal(await code(() => manager.update('chat', '127.0.0.1:9001', { state: 'drain', closeWithin: 'later' })), 'GW_ERR_BAD_TARGET')
    assert.equal(await code(() => manager.update('chat', '127.0.0.1:9001', { state: 'drain', closeWithin: '48h' })), 'GW_ERR_BAD_TARGET')
    assert.equal(await code(() => manager.remove('chat', 'x', true)), 'GW_ERR_TARGET_NOT_FOUND')
    assert.equal(await code(() => manager.rebalance('nope')), 'GW_ERR_UPSTREAM_NOT_FOUND')
    assert.deepEqual(sent, [], 'nothing refused is sent on')
  })

  test('drain with closeWithin and remove with close ask for paced 1012 closes of that target only', async () => {
    const bridges = [bridge('a1', A), bridge('b1', B), bridge('b2', B)]
    const { manager, paced } = setup({ bridges })
    const drained = await manager.update('chat', '127.0.0.1:9002', { state: 'drain', closeWithin: '2s' })
    assert.deepEqual(drained.closing, { id: 'pc-1', total: 2, windowMs: 2000, maxPerSecond: 2 })
    await manager.remove('chat', '127.0.0.1:9001', true)
    assert.deepEqual(paced, [
      { code: 1012, reason: 'upstream target drained', cause: 'drain', ids: ['b1', 'b2'], windowMs: 2000 },
      { code: 1012, reason: 'upstream target removed', cause: 'remove', ids: ['a1'], windowMs: undefined }
    ])
  })

  test('rebalance: dry run closes nothing; a real one closes the surplus, counts it, sends it on', async () => {
    const bridges = [...['1', '2', '3', '4'].map((n) => bridge(`a${n}`, A)), bridge('young', A, '/chat', 10), bridge('pin', A, '/pinned')]
    const { manager, paced, sent, rebalanced } = setup({ bridges })
    const dry = await manager.rebalance('chat', { dryRun: true })
    assert.deepEqual(dry.targets.map((t) => [t.connections, t.fairShare, t.surplus, t.picked]), [[6, 3, 3, ['a1', 'a2', 'a3']], [0, 3, 0, []]])
    assert.deepEqual([paced, sent, dry.scope, dry.closing], [[], [], 'instance', null])
    const real = await manager.rebalance('chat', { minAgeMs: 60_000 })
    assert.deepEqual(paced, [{ code: 1012, reason: 'rebalancing upstream', cause: 'rebalance', ids: ['a1', 'a2', 'a3'], windowMs: undefined }])
    assert.equal(real.closing?.total, 3)
    assert.deepEqual(sent, [{ op: 'rebalance', upstream: 'chat', minAgeMs: 60_000 }])
    assert.deepEqual(rebalanced, [['chat', 3]])
  })

  test('another instance\'s commands are applied here and not sent on; hostile ones change nothing', () => {
    const { pool, manager, sent, paced } = setup({ bridges: [bridge('b1', B)] })
    manager.apply({ op: 'add', upstream: 'chat', url: 'http://127.0.0.1:9005', weight: 4 }, 'other')
    manager.apply({ op: 'add', upstream: 'chat', url: 'javascript:alert(1)', weight: 1 }, 'other')
    manager.apply({ op: 'add', upstream: 'chat', url: A, weight: 1 }, 'other')
    manager.apply({ op: 'add', upstream: 'ghost', url: 'http://127.0.0.1:9006', weight: 1 }, 'other')
    manager.apply({ op: 'update', upstream: 'chat', target: '127.0.0.1:9002', state: 'drain', closeWithinMs: 100 }, 'other')
    manager.apply({ op: 'remove', upstream: 'chat', target: 'nope:1', close: true }, 'other')
    assert.deepEqual(pool.state().map((t) => [t.url, t.weight, t.state]), [[A, 1, 'active'], [B, 1, 'drain'], ['http://127.0.0.1:9005', 4, 'active']])
    assert.deepEqual(paced.map((p) => [p.cause, p.ids, p.windowMs]), [['drain', ['b1'], 100]])
    assert.deepEqual(sent, [])
  })

  test('without Redis the scope is this instance; with rebalance.auto an added target rebalances', async () => {
    const bridges = ['1', '2', '3', '4'].map((n) => bridge(`a${n}`, A))
    const { manager, paced, sent } = setup({ publish: false, bridges, config: upstream([A], { autoRebalance: { minAgeMs: 0 } }) })
    const added = await manager.add('chat', B, 1)
    assert.equal(added.scope, 'instance')
    assert.deepEqual(paced.map((p) => [p.cause, p.ids]), [['rebalance', ['a1', 'a2']]])
    assert.deepEqual(sent, [])
  })
})
