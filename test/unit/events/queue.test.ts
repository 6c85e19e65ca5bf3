/**
 * The in-memory event queue's bookkeeping (src/events/queue.ts) without an endpoint that
 * answers: what is queued, what a full queue drops (counted and warned once), and the URL form
 * its warnings use.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryEventQueue, urlForLogs } from '../../../src/events/queue.js'
import type { ConnectEvent } from '../../../src/events/payload.js'
import { freePort } from '../../helpers/resources.js'

const EVENT: ConnectEvent = { type: 'connect', id: 'c1', route: '/chat', path: '/chat', userId: null, clientIp: '127.0.0.1', instanceId: 'i-1', connectedAt: '2026-01-01T00:00:00.000Z', at: '2026-01-01T00:00:00.000Z' }

test('urlForLogs keeps scheme, host and path; drops credentials, query and fragment', () => {
  assert.equal(urlForLogs('https://user:pa55@hooks.example.com:8443/ws/events?key=s3cret#x'), 'https://hooks.example.com:8443/ws/events')
  assert.equal(urlForLogs('http://127.0.0.1:9200/events'), 'http://127.0.0.1:9200/events')
  assert.equal(urlForLogs('not a url'), '(invalid url)')
})

test('a full memory queue drops new events: counted each, warned once (rate-limited), never thrown', async () => {
  const counts: string[] = []
  const warnings: Array<Record<string, unknown>> = []
  const port = await freePort()
  const q = new MemoryEventQueue({
    maxSize: 3,
    log: { info () {}, warn (o, m) { if (m.includes('queue full')) warnings.push(o as Record<string, unknown>) } },
    count: (type, result) => { counts.push(`${type}:${result}`) },
    // Nothing listens on the port: every POST fails and is retried a minute later.
    minDelay: 60_000,
    maxDelay: 60_000
  })
  const to = { url: `http://127.0.0.1:${port}/events`, timeout: 1000 }
  for (let i = 0; i < 10; i++) q.push({ ...EVENT, id: `c${i}` }, to)
  assert.equal(q.pending, 3)
  assert.deepEqual(counts.filter((c) => c === 'connect:queued').length, 3)
  assert.deepEqual(counts.filter((c) => c === 'connect:dropped').length, 7)
  assert.equal(warnings.length, 1, 'one line, the rest suppressed')
  assert.deepEqual([warnings[0].why, warnings[0].maxSize], ['queue full', 3])
  // deliver: false queues nothing without Redis (there is no lost instance to speak for).
  q.push({ ...EVENT, id: 'quiet' }, to, false)
  assert.equal(q.pending, 3)
  await q.close(0)
  assert.equal(q.pending, 0)
})
