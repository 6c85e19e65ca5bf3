/**
 * UpstreamPool (spec section 3, `upstreams`): the balance modes through the pool, passive health
 * (back-off after a connect failure, tried again afterwards), exclusion of targets already tried,
 * the load counters behind least-connections, state() for the admin API, and buildPools.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import type { UpstreamConfig } from '../../../src/config/types.js'
import { UpstreamPool, buildPools, type PickContext, type PoolLogger } from '../../../src/upstreams/pool.js'
import { DEFAULT_UPSTREAM_BACKOFF } from '../../../src/config/defaults.js'
import { HashRing } from '../../../src/upstreams/hash-ring.js'

const A = 'http://127.0.0.1:9001'
const B = 'http://127.0.0.1:9002'
const C = 'http://127.0.0.1:9003'
const ctx: PickContext = { ip: '198.51.100.1', headers: {} }

function upstream (targets: string[], extra: Partial<UpstreamConfig> = {}): UpstreamConfig {
  return { name: 'chat', targets, weights: targets.map(() => 1), resolve: 0, autoRebalance: null, balance: 'round-robin', hashOn: 'ip', closeOnUnhealthy: false, ...extra }
}

/** The fields of a configured target of weight 1 in state(). */
function meta (url: string): { id: string, url: string, weight: number, state: 'active', source: 'config', resolvedFrom: null } {
  return { id: url.slice('http://'.length), url, weight: 1, state: 'active', source: 'config', resolvedFrom: null }
}

interface LogLine { level: 'info' | 'warn', o: Record<string, unknown>, msg: string }
function recordingLog (): PoolLogger & { lines: LogLine[], messages (): string[] } {
  const lines: LogLine[] = []
  return {
    lines,
    info: (o, msg) => { lines.push({ level: 'info', o: o as Record<string, unknown>, msg }) },
    warn: (o, msg) => { lines.push({ level: 'warn', o: o as Record<string, unknown>, msg }) },
    messages: () => lines.map((l) => l.msg)
  }
}

/** Polls `fn` until it returns something truthy, failing after `ms`. */
async function waitFor<T> (fn: () => T, what: string, ms = 3000): Promise<NonNullable<T>> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = fn()
    if (v !== null && v !== undefined && v !== false) return v as NonNullable<T>
    if (Date.now() > deadline) throw new Error(`timed out after ${ms}ms waiting for ${what}`)
    await sleep(5)
  }
}

function picks (pool: UpstreamPool, n: number, exclude?: ReadonlySet<string>): Array<string | null> {
  return Array.from({ length: n }, () => pool.pick(ctx, exclude))
}

describe('UpstreamPool: round-robin', () => {
  test('is the default and rotates exactly', () => {
    const pool = new UpstreamPool(upstream([A, B, C]))
    assert.equal(pool.name, 'chat')
    assert.deepEqual(picks(pool, 7), [A, B, C, A, B, C, A])
  })

  test('skips targets in exclude (already tried for this request)', () => {
    const pool = new UpstreamPool(upstream([A, B, C]))
    assert.deepEqual(picks(pool, 3, new Set([B])), [A, C, A])
    assert.equal(pool.pick(ctx, new Set([A, B, C])), null)
  })

  test('a single target', () => {
    const pool = new UpstreamPool(upstream([A]))
    assert.deepEqual(picks(pool, 3), [A, A, A])
  })
})

describe('UpstreamPool: passive health', () => {
  test('a failed target is skipped during the back-off and logged once', () => {
    const log = recordingLog()
    const pool = new UpstreamPool(upstream([A, B, C]), { log })
    pool.markFailure(B, 'ECONNREFUSED')
    pool.markFailure(B, 'ECONNREFUSED')
    assert.deepEqual(picks(pool, 4), [A, C, A, C])
    assert.deepEqual(log.lines, [{
      level: 'warn', msg: 'upstream target down', o: { upstream: 'chat', target: B, error: 'ECONNREFUSED', backoffMs: DEFAULT_UPSTREAM_BACKOFF }
    }])
  })

  test('after the back-off the target is tried again; success ends the down state', async () => {
    const log = recordingLog()
    const pool = new UpstreamPool(upstream([A, B]), { log, backoffMs: 100 })
    const failedAt = Date.now()
    pool.markFailure(A, 'connect timeout')
    assert.equal(pool.pick(ctx), B)
    assert.equal(pool.pick(ctx), B)
    const s = pool.state()[0]
    assert.equal(s.health, 'down')
    assert.equal(s.healthy, false)
    assert.ok(s.downUntil !== null && Date.parse(s.downUntil) >= failedAt + 100, String(s.downUntil))

    await waitFor(() => pool.state()[0].healthy, 'the back-off to end')
    assert.ok(Date.now() - failedAt >= 100)
    // The round-robin turn is A's again (B was picked last).
    assert.equal(pool.pick(ctx), A)
    assert.equal(pool.state()[0].health, 'unchecked')
    assert.equal(pool.state()[0].downUntil, null)
    pool.markSuccess(A)
    pool.markSuccess(A)
    assert.deepEqual(log.messages(), ['upstream target down', 'upstream target up'])
    assert.deepEqual(log.lines[1], { level: 'info', msg: 'upstream target up', o: { upstream: 'chat', target: A } })
  })

  test('a failed retry after the back-off starts another back-off without another log line', async () => {
    const log = recordingLog()
    const pool = new UpstreamPool(upstream([A, B]), { log, backoffMs: 100 })
    pool.markFailure(A, 'ECONNREFUSED')
    await waitFor(() => pool.state()[0].healthy, 'the back-off to end')
    pool.markFailure(A, 'ECONNRESET')
    assert.equal(pool.state()[0].health, 'down')
    assert.equal(pool.state()[0].lastError, 'ECONNRESET')
    assert.deepEqual(picks(pool, 2), [B, B])
    assert.deepEqual(log.messages(), ['upstream target down'])
  })

  test('markSuccess during the back-off makes the target available at once', () => {
    const pool = new UpstreamPool(upstream([A, B]))
    pool.markFailure(A, 'ECONNREFUSED')
    assert.equal(pool.pick(ctx), B)
    pool.markSuccess(A)
    assert.equal(pool.pick(ctx), A)
  })

  test('every target in passive back-off: they are tried anyway (as nginx does), excluded ones are not', () => {
    const pool = new UpstreamPool(upstream([A, B]))
    pool.markFailure(A, 'x')
    pool.markFailure(B, 'y')
    assert.ok(pool.state().every((s) => !s.healthy && s.health === 'down'))
    assert.ok([A, B].includes(pool.pick(ctx)!))
    assert.equal(pool.pick(ctx, new Set([A])), B)
    assert.equal(pool.pick(ctx, new Set([A, B])), null)
  })

  test('unknown targets are ignored', () => {
    const log = recordingLog()
    const pool = new UpstreamPool(upstream([A]), { log })
    pool.markFailure('http://elsewhere', 'x')
    pool.markSuccess('http://elsewhere')
    pool.connectionOpened('http://elsewhere')
    pool.requestStarted('http://elsewhere')
    assert.equal(pool.pick(ctx), A)
    assert.equal(pool.state().length, 1)
    assert.deepEqual(log.lines, [])
  })
})

describe('UpstreamPool: least-connections', () => {
  test('follows opened and closed WebSockets and in-flight requests', () => {
    const pool = new UpstreamPool(upstream([A, B, C], { balance: 'least-connections' }))
    pool.connectionOpened(A)
    pool.connectionOpened(A)
    pool.connectionOpened(B)
    assert.equal(pool.pick(ctx), C)
    pool.connectionOpened(C)
    pool.connectionOpened(C)
    assert.equal(pool.pick(ctx), B)
    pool.requestStarted(B)
    pool.requestStarted(B)
    // A 2, B 3, C 2: A and C tie; the turn after B goes to C.
    assert.equal(pool.pick(ctx), C)
    pool.connectionClosed(A)
    assert.equal(pool.pick(ctx), A)
    pool.requestFinished(B)
    pool.requestFinished(B)
    pool.connectionClosed(B)
    assert.equal(pool.pick(ctx), B)
    assert.deepEqual(pool.state().map((s) => [s.openConnections, s.inFlight]), [[1, 0], [0, 0], [2, 0]])
  })

  test('equal load spreads in turn; down targets are skipped', () => {
    const pool = new UpstreamPool(upstream([A, B, C], { balance: 'least-connections' }))
    assert.deepEqual(picks(pool, 6), [A, B, C, A, B, C])
    pool.connectionOpened(A)
    pool.markFailure(B, 'ECONNREFUSED')
    assert.deepEqual(picks(pool, 2), [C, C])
    assert.equal(pool.pick(ctx, new Set([C])), A)
  })

  test('counters never go below zero', () => {
    const pool = new UpstreamPool(upstream([A], { balance: 'least-connections' }))
    pool.connectionClosed(A)
    pool.requestFinished(A)
    assert.deepEqual(pool.state().map((s) => [s.openConnections, s.inFlight]), [[0, 0]])
  })
})

describe('UpstreamPool: hash', () => {
  const targets = Array.from({ length: 10 }, (_, i) => `http://10.0.1.${i + 1}:8080`)

  test('hashOn header: sticky per value; a down target\'s keys walk the ring and come back', () => {
    const pool = new UpstreamPool(upstream(targets, { balance: 'hash', hashOn: 'header:X-Session' }), { backoffMs: 60_000 })
    const ring = new HashRing(targets)
    const session = (i: number): PickContext => ({ ip: '192.0.2.1', headers: { 'x-session': `s-${i}` } })
    const home = Array.from({ length: 2000 }, (_, i) => pool.pick(session(i))!)
    home.forEach((t, i) => assert.equal(t, ring.lookup(`s-${i}`)))
    for (let i = 0; i < 50; i++) assert.equal(pool.pick(session(i)), home[i], 'sticky')

    const down = home[0]
    pool.markFailure(down, 'ECONNREFUSED')
    let movedKeys = 0
    home.forEach((t, i) => {
      const now = pool.pick(session(i))
      if (t === down) {
        assert.notEqual(now, down)
        assert.equal(now, ring.lookup(`s-${i}`, (x) => x !== down), 'the next available target on the ring')
        movedKeys++
      } else {
        assert.equal(now, t, 'keys of other targets stay')
      }
    })
    assert.ok(movedKeys / home.length > 0.05 && movedKeys / home.length < 0.15, `moved ${movedKeys}`)

    pool.markSuccess(down)
    home.forEach((t, i) => assert.equal(pool.pick(session(i)), t))
  })

  test('a key returns to its target when the back-off ends', async () => {
    const pool = new UpstreamPool(upstream(targets, { balance: 'hash', hashOn: 'header:x-session' }), { backoffMs: 100 })
    const c: PickContext = { ip: '192.0.2.1', headers: { 'x-session': 'abc' } }
    const home = pool.pick(c)!
    pool.markFailure(home, 'ECONNREFUSED')
    const elsewhere = pool.pick(c)
    assert.ok(elsewhere !== null && elsewhere !== home)
    await waitFor(() => pool.pick(c) === home, 'the key to return to its target')
    assert.equal(pool.pick(c), home)
  })

  test('hashOn user falls back to the ip; ip-hash hashes the ip', () => {
    const byUser = new UpstreamPool(upstream(targets, { balance: 'hash', hashOn: 'user' }))
    const byIp = new UpstreamPool(upstream(targets, { balance: 'ip-hash' }))
    const ring = new HashRing(targets)
    for (let i = 0; i < 100; i++) {
      const ip = `172.16.0.${i}`
      assert.equal(byUser.pick({ ip, userId: `user-${i}`, headers: {} }), ring.lookup(`user-${i}`))
      assert.equal(byUser.pick({ ip, userId: null, headers: {} }), ring.lookup(ip))
      assert.equal(byIp.pick({ ip, userId: `user-${i}`, headers: {} }), ring.lookup(ip))
    }
  })

  test('hashOn cookie', () => {
    const pool = new UpstreamPool(upstream(targets, { balance: 'hash', hashOn: 'cookie:sid' }))
    const ring = new HashRing(targets)
    assert.equal(pool.pick({ ip: '192.0.2.9', headers: { cookie: 'a=1; sid=xyz' } }), ring.lookup('xyz'))
    assert.equal(pool.pick({ ip: '192.0.2.9', headers: { cookie: 'a=1' } }), ring.lookup('192.0.2.9'))
  })

  test('null when every target is excluded', () => {
    const pool = new UpstreamPool(upstream([A, B], { balance: 'ip-hash' }))
    assert.equal(pool.pick(ctx, new Set([A, B])), null)
  })
})

describe('UpstreamPool: state()', () => {
  test('lists every target in configuration order', () => {
    const pool = new UpstreamPool(upstream([A, B, C, A]))
    assert.deepEqual(pool.state(), [A, B, C].map((url) => ({
      id: url.slice('http://'.length), url, weight: 1, state: 'active', source: 'config', resolvedFrom: null, healthy: true, health: 'unchecked', openConnections: 0, inFlight: 0, lastError: null, downUntil: null
    })))
  })

  test('reflects failures, connections and requests', () => {
    const pool = new UpstreamPool(upstream([A, B]), { backoffMs: 60_000 })
    const before = Date.now()
    pool.markFailure(B, 'ECONNREFUSED')
    pool.connectionOpened(A)
    pool.requestStarted(A)
    pool.requestStarted(A)
    const [a, b] = pool.state()
    assert.deepEqual(a, { ...meta(A), healthy: true, health: 'unchecked', openConnections: 1, inFlight: 2, lastError: null, downUntil: null })
    assert.deepEqual({ ...b, downUntil: null }, { ...meta(B), healthy: false, health: 'down', openConnections: 0, inFlight: 0, lastError: 'ECONNREFUSED', downUntil: null })
    const until = Date.parse(b.downUntil!)
    assert.ok(until >= before + 60_000 && until <= Date.now() + 60_000, b.downUntil!)
    pool.markSuccess(B)
    assert.deepEqual(pool.state()[1], { ...meta(B), healthy: true, health: 'unchecked', openConnections: 0, inFlight: 0, lastError: 'ECONNREFUSED', downUntil: null })
  })

  test('start() and stop() do nothing without healthCheck', () => {
    const pool = new UpstreamPool(upstream([A]))
    pool.start()
    pool.stop()
    assert.equal(pool.state()[0].health, 'unchecked')
  })
})

describe('buildPools', () => {
  test('one pool per distinct upstream config, with the options passed on', () => {
    const chat = upstream([A, B])
    const direct = upstream([C], { name: C })
    const log = recordingLog()
    const pools = buildPools([chat, direct, chat], { log, backoffMs: 5 })
    assert.equal(pools.size, 2)
    assert.equal(pools.get(chat)!.config, chat)
    assert.equal(pools.get(direct)!.name, C)
    pools.get(chat)!.markFailure(A, 'x')
    assert.deepEqual(log.lines[0].o, { upstream: 'chat', target: A, error: 'x', backoffMs: 5 })
    assert.deepEqual(buildPools([]), new Map())
  })
})
