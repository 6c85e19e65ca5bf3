/**
 * HeartbeatSweeper: one unref()'d interval for every member, running only while there are members,
 * and sweepPeriod, which picks its period.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { HeartbeatSweeper, sweepPeriod, type Sweepable } from '../../../src/bridge/heartbeat.js'
import type { HeartbeatSettings } from '../../../src/bridge/bridge.js'
import { activeResources, settle, trackTimers, within } from '../../helpers/resources.js'

interface Member extends Sweepable {
  calls: Array<{ now: number, wall: number, settings: HeartbeatSettings }>
  /** Resolves once tick() has been called `n` times in all. */
  ticks: (n: number) => Promise<void>
}

function member (onTick?: () => void): Member {
  const waiters: Array<{ n: number, resolve: () => void }> = []
  const m: Member = {
    calls: [],
    tick (now, wall, settings) {
      m.calls.push({ now, wall, settings })
      onTick?.()
      for (const w of waiters.filter((x) => m.calls.length >= x.n)) { waiters.splice(waiters.indexOf(w), 1); w.resolve() }
    },
    ticks: (n) => m.calls.length >= n ? Promise.resolve() : new Promise((resolve) => { waiters.push({ n, resolve }) })
  }
  return m
}

const S = (pingInterval: number, pongTimeout: number, idleTimeout = 0): HeartbeatSettings => ({ pingInterval, pongTimeout, idleTimeout })

test('sweepPeriod: a quarter of the shortest deadline, at least 10 ms, at most 1 s', () => {
  const cases: Array<[HeartbeatSettings, number]> = [
    [S(30_000, 10_000), 1000], // the defaults: capped by the 4 s token-expiry bound
    [S(60_000, 60_000), 1000],
    [S(200, 200), 50],
    [S(200, 200, 300), 50],
    [S(1000, 400), 100],
    [S(30_000, 10_000, 2000), 500], // idleTimeout is a deadline too
    [S(30_000, 10_000, 0), 1000], // idleTimeout 0 is off, not a deadline
    [S(1000, 40), 10],
    [S(10, 10), 10], // never below 10 ms
    [S(1, 1, 1), 10]
  ]
  for (const [s, want] of cases) assert.equal(sweepPeriod(s), want, JSON.stringify(s))
})

test('add, delete and size; sweep() ticks every member with the clock and the settings', () => {
  const settings = S(200, 200)
  const sweeper = new HeartbeatSweeper(settings)
  const a = member()
  const b = member()
  assert.equal(sweeper.size, 0)
  sweeper.add(a)
  sweeper.add(b)
  sweeper.add(a)
  assert.equal(sweeper.size, 2)
  const before = { now: performance.now(), wall: Date.now() }
  sweeper.sweep()
  const after = { now: performance.now(), wall: Date.now() }
  for (const m of [a, b]) {
    assert.equal(m.calls.length, 1)
    const c = m.calls[0]
    assert.equal(c.settings, settings)
    assert.ok(c.now >= before.now && c.now <= after.now, 'now is performance.now()')
    assert.ok(c.wall >= before.wall && c.wall <= after.wall, 'wallNow is Date.now()')
  }
  sweeper.delete(a)
  sweeper.delete(member()) // not a member: no effect
  assert.equal(sweeper.size, 1)
  sweeper.sweep()
  assert.deepEqual([a.calls.length, b.calls.length], [1, 2])
  sweeper.delete(b)
  assert.equal(sweeper.size, 0)
  sweeper.stop()
})

test('a member that leaves during a sweep does not stop the others from being ticked', () => {
  const sweeper = new HeartbeatSweeper(S(200, 200))
  const others = [member(), member()]
  const leaving: Member = member(() => sweeper.delete(leaving))
  sweeper.add(others[0])
  sweeper.add(leaving)
  sweeper.add(others[1])
  sweeper.sweep()
  assert.deepEqual([others[0].calls.length, leaving.calls.length, others[1].calls.length], [1, 1, 1])
  assert.equal(sweeper.size, 2)
  sweeper.sweep()
  assert.deepEqual([others[0].calls.length, leaving.calls.length, others[1].calls.length], [2, 1, 2])
  sweeper.stop()
})

test('one unref()\'d interval while there are members, none once the last one leaves', { timeout: 10_000 }, async (t) => {
  const timers = trackTimers()
  t.after(() => timers.stop())
  await settle()
  const base = new Set(timers.intervals())
  const refBase = activeResources().Timeout ?? 0
  const ours = (): Array<ReturnType<typeof timers.intervals>[number]> => timers.intervals().filter((x) => !base.has(x))

  const sweeper = new HeartbeatSweeper(S(200, 200))
  t.after(() => sweeper.stop())
  assert.equal(sweeper.period, 50)
  assert.equal(ours().length, 0, 'no timer before the first member')

  const members = Array.from({ length: 100 }, () => member())
  for (const m of members) sweeper.add(m)
  assert.equal(ours().length, 1, 'one interval for 100 members')
  assert.equal(ours()[0]._idleTimeout, 50)
  assert.equal(ours()[0].hasRef(), false, 'the timer does not keep the process alive')
  assert.equal(activeResources().Timeout ?? 0, refBase)

  // The timer really sweeps: every member is ticked, twice, about one period apart.
  await within(Promise.all(members.map((m) => m.ticks(2))), 2000, 'two sweeps')
  const gap = members[0].calls[1].now - members[0].calls[0].now
  assert.ok(gap >= 40, `sweeps ${gap.toFixed(1)} ms apart, period 50`)

  for (const m of members.slice(1)) sweeper.delete(m)
  assert.equal(ours().length, 1, 'still running with one member')
  sweeper.delete(members[0])
  await settle()
  assert.equal(ours().length, 0, 'the timer is cleared when the last member leaves')
  assert.equal(sweeper.size, 0)

  // It starts again with the next member; stop() clears it even with members left.
  sweeper.add(members[0])
  assert.equal(ours().length, 1)
  sweeper.stop()
  await settle()
  assert.equal(ours().length, 0)
  assert.equal(sweeper.size, 1, 'stop() keeps the members')
  const ticked = members[0].calls.length
  sweeper.sweep()
  assert.equal(members[0].calls.length, ticked + 1, 'a manual sweep still works after stop()')
})
