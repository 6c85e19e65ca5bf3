/**
 * startPacedClose and PacedCloseLog (src/drain/paced-close.ts): each connection is closed once
 * with the code and reason, those already closing are skipped, the start and end log lines carry
 * the cause, total, window and rate, the log lists it while running and keeps the last few
 * finished, and the pending counts by cause go to zero.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { PACED_CLOSE_HISTORY, PacedCloseLog, startPacedClose, type Closable, type PacedCause } from '../../../src/drain/paced-close.js'
import type { PacerClock } from '../../../src/drain/pacer.js'

class FakeConn implements Closable {
  closed = false
  calls: Array<[number, string]> = []
  close (code: number, reason: string): void { this.closed = true; this.calls.push([code, reason]) }
}

function fakeClock (): PacerClock & { runAll: () => void } {
  let t = 0
  let pending: { at: number, fn: () => void } | null = null
  return {
    now: () => t,
    setTimeout: (fn, ms) => { pending = { at: t + ms, fn }; return pending },
    clearTimeout: (h) => { if (pending === h) pending = null },
    runAll () {
      while (pending !== null) {
        const p: { at: number, fn: () => void } = pending
        pending = null
        t = p.at
        p.fn()
      }
    }
  }
}

function logger (): { lines: Array<[Record<string, unknown>, string]>, info: (o: object, m: string) => void, warn: (o: object, m: string) => void } {
  const lines: Array<[Record<string, unknown>, string]> = []
  const push = (o: object, m: string): void => { lines.push([o as Record<string, unknown>, m]) }
  return { lines, info: push, warn: push }
}

describe('startPacedClose', () => {
  test('closes each connection once, skips those already closing, logs start and end, lists it', async () => {
    const conns = Array.from({ length: 6 }, () => new FakeConn())
    conns[2].closed = true
    const clock = fakeClock()
    const log = logger()
    const book = new PacedCloseLog()
    const counted: PacedCause[] = []
    const p = startPacedClose({ items: conns, code: 1012, reason: 'service restart', cause: 'reload', windowMs: 3000, log, book, clock, onClosed: (c) => counted.push(c) })
    assert.equal(p.cause, 'reload')
    assert.equal(p.total, 6)
    assert.equal(p.windowMs, 3000)
    assert.equal(p.maxPerSecond, 2)
    assert.ok(Math.abs(p.startedAt - Date.now()) < 5000)
    const [start, startMsg] = log.lines[0]
    assert.equal(startMsg, 'paced close started')
    assert.deepEqual(start, { paceId: p.id, cause: 'reload', code: 1012, total: 6, windowMs: 3000, maxPerSecond: 2 })
    const running = book.list()
    assert.equal(running.length, 1)
    assert.equal(running[0].state, 'running')
    assert.equal(running[0].finishedAt, null)
    assert.equal(book.pending().get('reload'), 6 - p.closed)
    assert.equal(book.pending().get('shutdown'), 0)

    clock.runAll()
    await p.done
    await new Promise((resolve) => setImmediate(resolve))
    assert.equal(p.closed, 6)
    for (const [i, c] of conns.entries()) assert.deepEqual(c.calls, i === 2 ? [] : [[1012, 'service restart']])
    assert.deepEqual(counted, ['reload', 'reload', 'reload', 'reload', 'reload'])
    const [end, endMsg] = log.lines[1]
    assert.equal(endMsg, 'paced close ended')
    assert.equal(end.closed, 5)
    assert.equal(end.skipped, 1)
    assert.equal(end.open, 0)
    assert.equal(end.state, 'finished')
    const [view] = book.list()
    assert.equal(view.state, 'finished')
    assert.equal(view.closed, 6)
    assert.equal(view.skipped, 1)
    assert.equal(typeof view.finishedAt, 'string')
    assert.equal(book.pending().get('reload'), 0)
  })

  test('cancelled with connections still open: state cancelled, open counted', async () => {
    const conns = Array.from({ length: 4 }, () => new FakeConn())
    const log = logger()
    const book = new PacedCloseLog()
    const p = startPacedClose({ items: conns, code: 1001, reason: 'going away', cause: 'shutdown', windowMs: 8000, log, book, clock: fakeClock(), random: () => 0.5 })
    p.cancel()
    await p.done
    await new Promise((resolve) => setImmediate(resolve))
    assert.equal(conns.filter((c) => c.closed).length, 0)
    assert.equal(log.lines[1][0].state, 'cancelled')
    assert.equal(log.lines[1][0].open, 4)
    assert.equal(book.list()[0].state, 'cancelled')
  })

  test('cancelled once every connection had closed anyway: finished', async () => {
    const conns = Array.from({ length: 3 }, () => new FakeConn())
    const log = logger()
    const p = startPacedClose({ items: conns, code: 1001, reason: 'going away', cause: 'shutdown', windowMs: 8000, log, book: new PacedCloseLog(), clock: fakeClock(), random: () => 0.5 })
    for (const c of conns) c.closed = true
    p.cancel()
    await p.done
    await new Promise((resolve) => setImmediate(resolve))
    assert.equal(log.lines[1][0].state, 'finished')
    assert.equal(log.lines[1][0].skipped, 3)
    assert.equal(log.lines[1][0].open, 0)
    assert.equal(p.closed, 3)
  })

  test('nothing to close: done at once, no log line, not listed', async () => {
    const log = logger()
    const book = new PacedCloseLog()
    const p = startPacedClose({ items: [], code: 1012, reason: 'x', cause: 'unhealthy', windowMs: 1000, log, book })
    await p.done
    assert.equal(p.total, 0)
    assert.equal(log.lines.length, 0)
    assert.deepEqual(book.list(), [])
  })

  test('a connection whose close throws: a warning, and the others are still closed', async () => {
    const bad = new FakeConn()
    bad.close = () => { throw new Error('socket gone') }
    const conns = [new FakeConn(), bad, new FakeConn()]
    const log = logger()
    const p = startPacedClose({ items: conns, code: 1012, reason: 'x', cause: 'remove', windowMs: 0, log, book: new PacedCloseLog() })
    await p.done
    await new Promise((resolve) => setImmediate(resolve))
    assert.ok(conns[0].closed && conns[2].closed)
    assert.ok(log.lines.some(([o, m]) => m === 'paced close: closing a connection failed' && o.err === 'socket gone' && o.paceId === p.id))
    const end = log.lines.find(([, m]) => m === 'paced close ended')![0]
    assert.equal(end.closed, 2)
  })

  test('window 0: all closed before it returns', () => {
    const conns = [new FakeConn(), new FakeConn()]
    const p = startPacedClose({ items: conns, code: 1012, reason: 'x', cause: 'drain', windowMs: 0, log: logger(), book: new PacedCloseLog() })
    assert.ok(conns.every((c) => c.closed))
    assert.equal(p.closed, 2)
    assert.equal(p.maxPerSecond, 2)
  })

  test('the log keeps the last PACED_CLOSE_HISTORY finished, newest first, with unique ids', async () => {
    const book = new PacedCloseLog()
    const ids: string[] = []
    for (let i = 0; i < PACED_CLOSE_HISTORY + 3; i++) {
      const p = startPacedClose({ items: [new FakeConn()], code: 1012, reason: 'x', cause: 'rebalance', windowMs: 0, log: logger(), book })
      ids.push(p.id)
      await p.done
      await new Promise((resolve) => setImmediate(resolve))
    }
    assert.equal(new Set(ids).size, ids.length)
    const listed = book.list().map((v) => v.id)
    assert.deepEqual(listed, ids.slice(-PACED_CLOSE_HISTORY).reverse())
  })
})
