/** src/log-stream.ts: lines batched in memory, written through a real sonic-boom. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { pino } from 'pino'
import { BatchedLines, type LineSink } from '../../src/log-stream.js'
import { createLogger } from '../../src/logger.js'

/** A sink that records each write it gets (one per batch). */
function recorder (): LineSink & { writes: string[], ended: boolean, onWrite: (() => void) | null } {
  const r = {
    writes: [] as string[],
    ended: false,
    onWrite: null as (() => void) | null,
    write (data: string) { r.writes.push(data); r.onWrite?.(); return true },
    flushSync () {},
    end () { r.ended = true }
  }
  return r
}

test('lines wait until a batch is full, then go out as one write, in order', (t) => {
  const sink = recorder()
  const lines = new BatchedLines(sink, 100, 60_000)
  t.after(() => { lines.end() })
  for (let i = 0; i < 9; i++) lines.write(`line ${i} ${'x'.repeat(2)}\n`)
  assert.deepEqual(sink.writes, [], 'below the batch size nothing is written')
  lines.write(`line 9 ${'x'.repeat(20)}\n`)
  assert.equal(sink.writes.length, 1)
  assert.equal(sink.writes[0], Array.from({ length: 9 }, (_, i) => `line ${i} xx\n`).join('') + `line 9 ${'x'.repeat(20)}\n`)
  lines.write('after\n')
  lines.flushSync()
  assert.deepEqual(sink.writes.slice(1), ['after\n'])
  lines.flushSync()
  assert.equal(sink.writes.length, 2, 'nothing gathered: no write')
})

test('a quiet stream is written within its flush period', async (t) => {
  const sink = recorder()
  const lines = new BatchedLines(sink, 4096, 20)
  t.after(() => { lines.end() })
  // The stream's timer is unref'd (it never holds the process open): this deadline keeps the test alive.
  let deadline: NodeJS.Timeout | undefined
  const written = new Promise<void>((resolve, reject) => {
    sink.onWrite = resolve
    deadline = setTimeout(() => { reject(new Error('not written within 5 s')) }, 5000)
  })
  lines.write('quiet\n')
  await written.finally(() => { clearTimeout(deadline) })
  assert.deepEqual(sink.writes, ['quiet\n'])
})

test('end() writes what is gathered and ends the sink', () => {
  const sink = recorder()
  const lines = new BatchedLines(sink, 4096, 60_000)
  lines.write('a\n')
  lines.write('b\n')
  lines.end()
  assert.deepEqual(sink.writes, ['a\nb\n'])
  assert.equal(sink.ended, true)
})

test('through a real sonic-boom to a file: every line of a logger, in order and intact, after flushSync', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-log-'))
  t.after(() => { rmSync(dir, { recursive: true, force: true }) })
  const file = join(dir, 'out.log')
  const lines = new BatchedLines(pino.destination({ dest: file, sync: true, minLength: 0 }), 1_000_000, 60_000)
  const log = createLogger('info', 'tk', lines)
  for (let i = 0; i < 50; i++) log.info({ i, text: 'café ✓ "q"' }, 'line')
  assert.equal(readFileSync(file, 'utf8'), '', 'gathered, not written yet')
  lines.flushSync()
  const got = readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { i: number, text: string })
  assert.deepEqual(got.map((l) => l.i), Array.from({ length: 50 }, (_, i) => i))
  assert.ok(got.every((l) => l.text === 'café ✓ "q"'))
  lines.end()
})
