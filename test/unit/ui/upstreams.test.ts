/**
 * ui/upstreams.js, the dashboard's upstream targets panel: what a target's row shows, the
 * rebalance summary, and the actions' flow (a dry run shown for confirmation before any
 * rebalance; nothing asked when nothing would close; errors reported), with a fake API client.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { REBALANCE_MIN_AGE_MS, changeTarget, rebalanceSummary, rebalanceWithConfirm, targetView, type RebalanceJson } from '../../../ui/upstreams.js'

const target = { id: '10.0.0.1:9000', url: 'http://10.0.0.1:9000', weight: 2, state: 'active', source: 'dns', resolvedFrom: 'http://chat.svc:9000', healthy: true, health: 'healthy', downUntil: null }

test('targetView: badges, the resolved name, and the action the row offers', () => {
  const v = targetView(target)
  assert.equal(v.title, '10.0.0.1:9000 (resolved from http://chat.svc:9000)')
  assert.deepEqual([v.state, v.stateClass, v.health, v.healthClass, v.source], ['active', 'good', 'healthy', 'good', 'dns'])
  assert.deepEqual(v.action, { label: 'Drain', body: { state: 'drain' } })
  const drained = targetView({ ...target, state: 'drain', healthy: false, health: 'down', downUntil: '2026-01-01T00:00:00Z', resolvedFrom: null })
  assert.deepEqual([drained.stateClass, drained.healthClass, drained.title], ['warn', 'bad', '10.0.0.1:9000'])
  assert.ok(drained.healthNote.startsWith(' until '))
  assert.deepEqual(drained.action, { label: 'Activate', body: { state: 'active' } })
  assert.equal(targetView({ ...target, weight: 0 }).stateClass, 'neutral')
})

const plan = (picked: number[], dryRun = true): RebalanceJson => ({
  dryRun,
  total: 300,
  minAgeMs: 60000,
  targets: picked.map((n, i) => ({ id: `10.0.0.${i + 1}:9000`, connections: [150, 150, 0][i] ?? 0, fairShare: 100, eligible: i < 3, picked: Array.from({ length: n }, (_, k) => `c${i}-${k}`) }))
})

test('rebalanceSummary says what would close, per target', () => {
  assert.equal(rebalanceSummary(plan([50, 50, 0])), [
    'Would close 100 of 300 connections (1012, paced), on this instance:',
    '10.0.0.1:9000: 150 open, fair share 100, 50 to close',
    '10.0.0.2:9000: 150 open, fair share 100, 50 to close',
    '10.0.0.3:9000: 0 open, fair share 100'
  ].join('\n'))
  assert.match(rebalanceSummary(plan([50, 50, 0], false)), /^Closing 100 of 300/)
  assert.match(rebalanceSummary(plan([0, 0, 0])), /^Nothing to close: every target is within its fair share \(of 300 connections older than 60 s\)\./)
  assert.match(rebalanceSummary(plan([0, 0, 0, 0])), /10\.0\.0\.4:9000: 0 open, left alone/)
})

function fakeClient (answers: { dry?: RebalanceJson | Error, real?: RebalanceJson | Error, update?: Error }): { calls: unknown[][], client: { rebalance: (u: string, b: { dryRun?: boolean, minAgeMs?: number }) => Promise<RebalanceJson>, updateTarget: (u: string, t: string, b: { state: string }) => Promise<unknown> } } {
  const calls: unknown[][] = []
  return {
    calls,
    client: {
      rebalance: async (u, b) => {
        calls.push(['rebalance', u, b])
        const a = b.dryRun === true ? answers.dry : answers.real
        if (a instanceof Error || a === undefined) throw a ?? new Error('unexpected')
        return a
      },
      updateTarget: async (u, t, b) => {
        calls.push(['update', u, t, b])
        if (answers.update !== undefined) throw answers.update
        return {}
      }
    }
  }
}

test('rebalance: the dry run first; only a confirmed one runs', async () => {
  const notes: Array<[string, boolean]> = []
  const notify = (text: string, isError = false): void => { notes.push([text, isError]) }
  const asked: string[] = []
  let yes = false
  const confirm = (text: string): boolean => { asked.push(text); return yes }

  const declined = fakeClient({ dry: plan([50, 50, 0]) })
  assert.equal(await rebalanceWithConfirm({ client: declined.client, upstream: 'chat', confirm, notify }), false)
  assert.deepEqual(declined.calls, [['rebalance', 'chat', { dryRun: true, minAgeMs: REBALANCE_MIN_AGE_MS }]])
  assert.match(asked[0], /^Rebalance chat\?\n\nWould close 100 of 300/)
  assert.deepEqual(notes.pop(), ['Rebalance of chat cancelled.', false])

  yes = true
  const accepted = fakeClient({ dry: plan([50, 50, 0]), real: plan([50, 50, 0], false) })
  assert.equal(await rebalanceWithConfirm({ client: accepted.client, upstream: 'chat', confirm, notify }), true)
  assert.deepEqual(accepted.calls.map((c) => c[2]), [{ dryRun: true, minAgeMs: REBALANCE_MIN_AGE_MS }, { minAgeMs: REBALANCE_MIN_AGE_MS }])
  assert.match(notes.pop()![0], /^Closing 100/)

  const nothing = fakeClient({ dry: plan([0, 0, 0]) })
  asked.length = 0
  assert.equal(await rebalanceWithConfirm({ client: nothing.client, upstream: 'chat', confirm, notify }), false)
  assert.deepEqual(asked, [], 'nothing to confirm')
  assert.equal(nothing.calls.length, 1)

  const failing = fakeClient({ dry: new Error('HTTP 404: no upstream named "chat"') })
  assert.equal(await rebalanceWithConfirm({ client: failing.client, upstream: 'chat', confirm, notify }), false)
  assert.deepEqual(notes.pop(), ['Rebalance dry run of chat failed: HTTP 404: no upstream named "chat"', true])
  const realFails = fakeClient({ dry: plan([1]), real: new Error('network error') })
  assert.equal(await rebalanceWithConfirm({ client: realFails.client, upstream: 'chat', confirm, notify }), false)
  assert.deepEqual(notes.pop(), ['Rebalance of chat failed: network error', true])
})

test('drain / activate: one PATCH, the outcome reported', async () => {
  const notes: Array<[string, boolean]> = []
  const notify = (text: string, isError = false): void => { notes.push([text, isError]) }
  const ok = fakeClient({})
  assert.equal(await changeTarget({ client: ok.client, upstream: 'chat', target: '10.0.0.1:9000', body: { state: 'drain' }, notify }), true)
  assert.deepEqual(ok.calls, [['update', 'chat', '10.0.0.1:9000', { state: 'drain' }]])
  assert.deepEqual(notes.pop(), ['10.0.0.1:9000 is now drain (until the next reload or restart).', false])
  const bad = fakeClient({ update: new Error('HTTP 404: upstream "chat" has no target "x"') })
  assert.equal(await changeTarget({ client: bad.client, upstream: 'chat', target: 'x', body: { state: 'active' }, notify }), false)
  assert.deepEqual(notes.pop(), ['Could not change x: HTTP 404: upstream "chat" has no target "x"', true])
})
