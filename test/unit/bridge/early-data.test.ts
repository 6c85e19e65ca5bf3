/**
 * src/bridge/early-data.ts: EarlyData on a stream.Duplex stand-in for the client's socket (data
 * arrives with push(), the end with push(null)): bytes read before the 101 are kept and put
 * back in order behind the upgrade's head, reading stops and the socket pauses at the limit,
 * onGone fires when the client ends or closes, and stop() removes every listener it added.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import type { Socket } from 'node:net'
import { Duplex } from 'node:stream'
import { EarlyData } from '../../../src/bridge/early-data.js'

/** A readable/writable stand-in whose incoming bytes are pushed by the test. */
function fakeSocket (): Duplex {
  return new Duplex({ read () {}, write (_chunk, _enc, cb) { cb() } })
}
const asSocket = (d: Duplex): Socket => d as unknown as Socket

/** Lets pending stream events (data, end, close) run; no timers. */
async function settle (): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve))
}

/** Everything readable from `d` now, as one string. */
function readAll (d: Duplex): string {
  const parts: Buffer[] = []
  for (let c = d.read() as Buffer | null; c !== null; c = d.read() as Buffer | null) parts.push(c)
  return Buffer.concat(parts).toString()
}

const listeners = (d: Duplex): Record<string, number> =>
  ({ data: d.listenerCount('data'), end: d.listenerCount('end'), close: d.listenerCount('close') })

describe('EarlyData: keeping and putting back', () => {
  test('bytes read before the limit are kept and put back in order, the head first', async () => {
    const d = fakeSocket()
    const early = new EarlyData(asSocket(d), Buffer.from('HEAD|'), 1024, () => {})
    d.push('one|')
    d.push('two|')
    await settle()
    assert.equal(d.readableLength, 0, 'EarlyData read them')
    early.stop()
    d.push('after')
    early.putBack()
    assert.equal(readAll(d), 'HEAD|one|two|after')
  })

  test('no head, nothing read: putBack adds nothing', async () => {
    const d = fakeSocket()
    const early = new EarlyData(asSocket(d), undefined, 1024, () => {})
    await settle()
    early.stop()
    d.push('x')
    early.putBack()
    assert.equal(readAll(d), 'x')
  })

  test('an empty head is no chunk', async () => {
    const d = fakeSocket()
    const early = new EarlyData(asSocket(d), Buffer.alloc(0), 1024, () => {})
    d.push('a')
    await settle()
    early.stop()
    early.putBack()
    assert.equal(readAll(d), 'a')
  })

  test('putBack twice puts the bytes back once', async () => {
    const d = fakeSocket()
    const early = new EarlyData(asSocket(d), Buffer.from('h'), 1024, () => {})
    d.push('1')
    await settle()
    early.stop()
    early.putBack()
    early.putBack()
    assert.equal(readAll(d), 'h1')
  })

  test('binary bytes come back exactly', async () => {
    const d = fakeSocket()
    const early = new EarlyData(asSocket(d), Buffer.from([0x81, 0x85]), 1024, () => {})
    d.push(Buffer.from([0x00, 0xff, 0x10]))
    d.push(Buffer.from([0x7f]))
    await settle()
    early.stop()
    early.putBack()
    assert.deepEqual(d.read(), Buffer.from([0x81, 0x85, 0x00, 0xff, 0x10, 0x7f]))
  })
})

describe('EarlyData: the limit', () => {
  test('at the limit it stops reading and pauses the socket; what follows waits in the socket', async () => {
    const d = fakeSocket()
    const early = new EarlyData(asSocket(d), Buffer.from('hh'), 6, () => {})
    d.push('aaa')
    await settle()
    assert.equal(d.isPaused(), false)
    d.push('bbb') // 2 + 3 + 3 = 8 >= 6
    await settle()
    assert.equal(d.isPaused(), true)
    assert.equal(d.listenerCount('data'), 0)
    d.push('ccc')
    await settle()
    assert.equal(d.readableLength, 3, 'not read past the limit')
    early.stop()
    early.putBack()
    assert.equal(readAll(d), 'hhaaabbbccc')
  })

  test('a head at or past the limit: paused at once, nothing read', async () => {
    const d = fakeSocket()
    const early = new EarlyData(asSocket(d), Buffer.from('123456'), 6, () => {})
    assert.equal(d.isPaused(), true)
    assert.equal(d.listenerCount('data'), 0)
    d.push('x')
    await settle()
    assert.equal(d.readableLength, 1)
    early.stop()
    early.putBack()
    assert.equal(readAll(d), '123456x')
  })

  test('the socket stays paused after stop()', async () => {
    const d = fakeSocket()
    const early = new EarlyData(asSocket(d), undefined, 100, () => {})
    d.push('a')
    await settle()
    early.stop()
    assert.equal(d.isPaused(), true)
    d.push('b')
    await settle()
    assert.equal(d.readableLength, 1)
  })
})

describe('EarlyData: the client leaving', () => {
  test('onGone fires when the client ends its side', async () => {
    const d = fakeSocket()
    let gone = 0
    const early = new EarlyData(asSocket(d), undefined, 100, () => { gone++ })
    d.push('x')
    d.push(null)
    await settle()
    assert.equal(gone, 1)
    early.stop()
  })

  test('onGone fires when the socket closes', async () => {
    const d = fakeSocket()
    let gone = 0
    new EarlyData(asSocket(d), undefined, 100, () => { gone++ })
    d.destroy()
    await settle()
    assert.equal(gone, 1)
  })

  test('onGone fires on close even while paused at the limit', async () => {
    const d = fakeSocket()
    let gone = 0
    new EarlyData(asSocket(d), Buffer.from('full'), 4, () => { gone++ })
    d.destroy()
    await settle()
    assert.equal(gone, 1)
  })

  test('onGone is called once when the client ends and the socket then closes', async () => {
    const d = fakeSocket()
    let gone = 0
    const early = new EarlyData(asSocket(d), undefined, 100, () => { gone++ })
    d.push(null)
    d.end()
    await settle()
    assert.equal(d.destroyed, true, 'the stand-in closed')
    assert.equal(gone, 1)
    early.stop()
  })

  test('after stop(), neither end nor close calls onGone', async () => {
    const d = fakeSocket()
    let gone = 0
    const early = new EarlyData(asSocket(d), undefined, 100, () => { gone++ })
    early.stop()
    d.resume()
    d.push(null)
    d.end()
    await settle()
    assert.equal(d.destroyed, true)
    assert.equal(gone, 0)
  })
})

describe('EarlyData: stop()', () => {
  test('removes exactly the listeners it added', () => {
    const d = fakeSocket()
    const other = (): void => {}
    d.on('close', other)
    d.on('end', other)
    const before = listeners(d)
    const early = new EarlyData(asSocket(d), undefined, 100, () => {})
    assert.deepEqual(listeners(d), { data: before.data + 1, end: before.end + 1, close: before.close + 1 })
    early.stop()
    assert.deepEqual(listeners(d), before)
    assert.equal(d.listeners('close').includes(other), true)
  })

  test('also when reading had already stopped at the limit, and when called twice', async () => {
    const d = fakeSocket()
    const before = listeners(d)
    const early = new EarlyData(asSocket(d), undefined, 2, () => {})
    d.push('abc')
    await settle()
    early.stop()
    early.stop()
    assert.deepEqual(listeners(d), before)
  })

  test('nothing read after stop() is kept', async () => {
    const d = fakeSocket()
    const early = new EarlyData(asSocket(d), Buffer.from('h'), 100, () => {})
    early.stop()
    d.resume()
    const seen: string[] = []
    d.on('data', (c: Buffer) => { seen.push(c.toString()) })
    d.push('later')
    await settle()
    d.pause()
    early.putBack()
    assert.deepEqual(seen, ['later'])
    assert.equal(readAll(d), 'h')
  })
})
