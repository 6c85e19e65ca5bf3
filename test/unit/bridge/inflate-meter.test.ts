/**
 * The inflate meter against zlib, the reference: the same inflated sizes for every kind of
 * DEFLATE stream zlib writes (levels, strategies, window sizes, sync-flushed or final), whatever
 * the pieces the input arrives in and whatever the masking; the negotiated parameters (context
 * takeover, window bits); the limit; and the same verdict, in zlib's words, on malformed data.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import zlib from 'node:zlib'
import { InflateMeter, METER_INVALID, METER_OK, METER_TOO_BIG, parseDeflateParams, type InflateParams, type MeterVerdict } from '../../../src/bridge/inflate-meter.js'

const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff])
const FRESH: InflateParams = { noContextTakeover: true, maxWindowBits: 15 }

/** A permessage-deflate payload as senders write it: sync-flushed, the 00 00 ff ff tail removed. */
function compress (data: Buffer, opts: zlib.ZlibOptions = {}): Buffer {
  const c = zlib.deflateRawSync(data, { ...opts, finishFlush: zlib.constants.Z_SYNC_FLUSH })
  assert.ok(c.subarray(-4).equals(TAIL))
  return c.subarray(0, c.length - 4)
}

/** What zlib inflates a message's payload to (tail appended, as RFC 7692 says), or its error. */
function zlibSize (payload: Buffer, windowBits = 15, chunkSize?: number): number | string {
  const r = zlibInflate(payload, windowBits, chunkSize)
  return typeof r === 'string' ? r : r.size
}

/** zlib's size or error, and whether it read all the input (it stops at the end of a final block). */
function zlibInflate (payload: Buffer, windowBits = 15, chunkSize?: number): { size: number, all: boolean } | string {
  const input = Buffer.concat([payload, TAIL])
  try {
    const { buffer, engine } = zlib.inflateRawSync(input, { windowBits, chunkSize, finishFlush: zlib.constants.Z_SYNC_FLUSH, info: true }) as unknown as { buffer: Buffer, engine: { bytesWritten: number } }
    return { size: buffer.length, all: engine.bytesWritten === input.length }
  } catch (err) {
    return (err as Error).message
  }
}

/** Deterministic pseudo-random numbers (the corpus is the same on every run). */
function rng (seed: number): () => number {
  let x = seed >>> 0
  return () => { x = (Math.imul(x, 1103515245) + 12345) >>> 0; return x / 0x100000000 }
}

/** Meters one message fed in pieces of 1..`piece` bytes, masked with a random key when `masked`. */
function meter (m: InflateMeter, payload: Buffer, piece = 0, masked = false, random = Math.random): MeterVerdict {
  let src = payload
  const key = masked ? randomBytes(4) : null
  if (key !== null) src = Buffer.from(payload.map((b, i) => b ^ key[i & 3]))
  m.begin()
  let v: MeterVerdict = METER_OK
  for (let pos = 0; pos < src.length && v === METER_OK;) {
    const n = piece === 0 ? src.length : Math.min(src.length - pos, 1 + Math.floor(random() * piece))
    v = m.write(src, pos, pos + n, key, pos)
    pos += n
  }
  return v === METER_OK ? m.end() : v
}

/** Text-like data: words, JSON fragments and numbers, compressible the way real messages are. */
function sample (n: number, kind: number, random: () => number): Buffer {
  if (kind === 0) return randomBytes(n)
  if (kind === 1) return Buffer.alloc(n, 0x61)
  const words = ['{"id":', '12345', ',"name":"', 'alpha', 'beta', 'gamma"}', ' ', '\n', 'delta epsilon ', '[1,2,3]']
  const parts: string[] = []
  for (let len = 0; len < n;) { const w = words[Math.floor(random() * words.length)]; parts.push(w); len += w.length }
  return Buffer.from(parts.join('').slice(0, n))
}

test('parseDeflateParams: the negotiated parameters per direction; absent or unreadable ones are the most permissive', () => {
  assert.equal(parseDeflateParams(''), null)
  assert.equal(parseDeflateParams('x-webkit-deflate-frame'), null)
  assert.deepEqual(parseDeflateParams('permessage-deflate'), {
    client: { noContextTakeover: false, maxWindowBits: 15 }, server: { noContextTakeover: false, maxWindowBits: 15 }
  })
  assert.deepEqual(parseDeflateParams('permessage-deflate; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits="9"'), {
    client: { noContextTakeover: true, maxWindowBits: 9 }, server: { noContextTakeover: false, maxWindowBits: 10 }
  })
  assert.deepEqual(parseDeflateParams('Permessage-Deflate;Server_No_Context_Takeover;client_max_window_bits'), {
    client: { noContextTakeover: false, maxWindowBits: 15 }, server: { noContextTakeover: true, maxWindowBits: 15 }
  })
  assert.deepEqual(parseDeflateParams('permessage-deflate; server_max_window_bits=99; client_max_window_bits=abc'), {
    client: { noContextTakeover: false, maxWindowBits: 15 }, server: { noContextTakeover: false, maxWindowBits: 15 }
  })
})

test('the same sizes as zlib for 400 streams of every level, strategy, window and memory size, final or sync-flushed, whole or in pieces, masked or not', () => {
  const random = rng(7)
  for (let i = 0; i < 400; i++) {
    const data = sample(Math.floor(random() * 150_000), i % 3, random)
    const opts: zlib.ZlibOptions = { level: i % 10, strategy: i % 5, windowBits: 9 + (i % 7), memLevel: 1 + (i % 9) }
    const payload = i % 2 === 0 ? compress(data, opts) : zlib.deflateRawSync(data, opts)
    const params = { noContextTakeover: true, maxWindowBits: opts.windowBits! }
    for (const [piece, masked] of [[0, false], [i % 4 === 0 ? 3 : 4000, true]] as const) {
      const m = new InflateMeter(Number.MAX_SAFE_INTEGER, params)
      assert.equal(meter(m, payload, piece, masked, random), METER_OK, `stream ${i} ${JSON.stringify(opts)}: ${m.reason}`)
      assert.equal(m.size, data.length, `stream ${i} ${JSON.stringify(opts)} in pieces of up to ${piece}`)
    }
  }
})

test('one byte at a time: every unit (headers, tables, codes, stored lengths) cut at every point', () => {
  const random = rng(11)
  for (const [i, data] of [sample(5000, 2, random), sample(3000, 0, random), sample(70_000, 1, random)].entries()) {
    for (const strategy of [0, 2, 3, 4]) {
      const payload = compress(data, { strategy, level: i === 1 ? 0 : 6 })
      const m = new InflateMeter(Number.MAX_SAFE_INTEGER, FRESH)
      assert.equal(meter(m, payload, 1, true, () => 0), METER_OK, m.reason)
      assert.equal(m.size, data.length)
    }
  }
})

async function flushed (d: zlib.DeflateRaw, data: Buffer): Promise<Buffer> {
  const out: Buffer[] = []
  const onData = (c: Buffer): void => { out.push(c) }
  d.on('data', onData)
  d.write(data)
  await new Promise<void>((resolve) => d.flush(zlib.constants.Z_SYNC_FLUSH, () => resolve()))
  d.off('data', onData)
  const b = Buffer.concat(out)
  return b.subarray(0, b.length - 4)
}

test('context takeover: the window carries over from message to message, for every window size', async () => {
  for (const windowBits of [9, 10, 12, 15]) {
    const d = zlib.createDeflateRaw({ windowBits })
    const m = new InflateMeter(Number.MAX_SAFE_INTEGER, { noContextTakeover: false, maxWindowBits: windowBits })
    const base = randomBytes(20_000).toString('hex')
    for (let i = 0; i < 40; i++) {
      // Each message repeats what earlier ones sent: matches reach into earlier messages.
      const msg = Buffer.from(base.slice(i * 200, i * 200 + 2000) + base.slice(0, i * 13))
      assert.equal(meter(m, await flushed(d, msg), 700), METER_OK, `window ${windowBits}, message ${i}: ${m.reason}`)
      assert.equal(m.size, msg.length, `window ${windowBits}, message ${i}`)
    }
    d.close()
  }
})

test('no context takeover: each message is a stream of its own; a sender that keeps its window anyway is refused as zlib refuses it', async () => {
  const m = new InflateMeter(Number.MAX_SAFE_INTEGER, FRESH)
  const msg = Buffer.from('the same words, again and again, '.repeat(20))
  for (let i = 0; i < 5; i++) {
    assert.equal(meter(m, compress(msg)), METER_OK)
    assert.equal(m.size, msg.length)
  }
  const d = zlib.createDeflateRaw()
  const first = await flushed(d, msg)
  const second = await flushed(d, msg)
  d.close()
  assert.equal(meter(m, first), METER_OK)
  assert.equal(zlibSize(second), 'invalid distance too far back')
  assert.equal(meter(m, second), METER_INVALID)
  assert.equal(m.reason, 'invalid distance too far back')
})

test('max_window_bits: a match farther back than the negotiated window is refused, as zlib refuses it; 8 bits count as 9 (zlib compresses with 9 when asked for 8)', () => {
  const block = randomBytes(3000)
  const payload = compress(Buffer.concat([block, block]))
  // zlib holds only the window between output buffers (within one it lets a match reach any
  // byte of it): with small ones, as a streaming receiver has, it refuses this.
  assert.equal(zlibSize(payload, 11, 1024), 'invalid distance too far back')
  let m = new InflateMeter(Number.MAX_SAFE_INTEGER, { noContextTakeover: true, maxWindowBits: 11 })
  assert.equal(meter(m, payload), METER_INVALID)
  assert.equal(m.reason, 'invalid distance too far back')
  m = new InflateMeter(Number.MAX_SAFE_INTEGER, { noContextTakeover: true, maxWindowBits: 12 })
  assert.equal(meter(m, payload), METER_OK)
  assert.equal(m.size, 6000)
  const nine = compress(Buffer.from('0123456789abcdef'.repeat(200)), { windowBits: 9 })
  m = new InflateMeter(Number.MAX_SAFE_INTEGER, { noContextTakeover: true, maxWindowBits: 8 })
  assert.equal(meter(m, nine), METER_OK)
  assert.equal(m.size, 3200)
})

test('the limit: exactly the limit passes, one byte more does not; a bomb is refused after reading a few bytes of it', () => {
  const limit = 64 * 1024
  for (const data of [randomBytes(limit), Buffer.alloc(limit, 7)]) {
    const exact = new InflateMeter(limit, FRESH)
    assert.equal(meter(exact, compress(data)), METER_OK)
    assert.equal(exact.size, limit)
    const over = new InflateMeter(limit, FRESH)
    assert.equal(meter(over, compress(Buffer.concat([data, Buffer.from([1])]))), METER_TOO_BIG)
  }
  // The size counts per message: many messages of the limit each pass.
  const m = new InflateMeter(limit, { noContextTakeover: false, maxWindowBits: 15 })
  for (let i = 0; i < 20; i++) assert.equal(meter(m, compress(Buffer.alloc(limit, i))), METER_OK)
  const bomb = compress(Buffer.alloc(60 * 1024 * 1024))
  const b = new InflateMeter(limit, FRESH)
  b.begin()
  // Fed 100 bytes at a time: refused within the first pieces, just past the limit.
  let fed = 0
  let v: MeterVerdict = METER_OK
  while (v === METER_OK) { v = b.write(bomb, fed, fed + 100); fed += 100 }
  assert.equal(v, METER_TOO_BIG)
  assert.ok(fed <= 200, `refused after ${fed} of ${bomb.length} compressed bytes`)
  assert.ok(b.size > limit && b.size <= limit + 258, `counted ${b.size}`)
})

test('empty messages, and a message that ends its stream with a final block (RFC 7692 7.2.3.4) is followed by a fresh one', () => {
  // No payload at all: nothing (the tail alone leaves a stored block's lengths unfinished, in
  // zlib as here, so it only works where each message is a stream of its own).
  const fresh = new InflateMeter(1000, FRESH)
  assert.equal(meter(fresh, Buffer.alloc(0)), METER_OK)
  assert.equal(fresh.size, 0)
  // The empty message as senders write it (RFC 7692 7.2.3.6): one 0x00.
  const m = new InflateMeter(1000, { noContextTakeover: false, maxWindowBits: 15 })
  for (let i = 0; i < 3; i++) {
    assert.equal(meter(m, Buffer.from([0x00])), METER_OK)
    assert.equal(m.size, 0)
  }
  assert.equal(meter(m, compress(Buffer.from('between'))), METER_OK)
  assert.equal(m.size, 7)
  // "Hello" in a final block, then the 0x00 left of the empty stored block after it.
  const hello = Buffer.from([0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00])
  assert.equal(zlibSize(hello), 5)
  for (let i = 0; i < 3; i++) {
    assert.equal(meter(m, hello), METER_OK)
    assert.equal(m.size, 5)
  }
  // A final block without the padding byte, and a whole zlib stream as deflateRawSync ends it.
  assert.equal(meter(m, hello.subarray(0, 7)), METER_OK)
  assert.equal(m.size, 5)
  assert.equal(meter(m, zlib.deflateRawSync(Buffer.from('hello world'))), METER_OK)
  assert.equal(m.size, 11)
  assert.equal(meter(m, compress(Buffer.from('after'))), METER_OK)
  assert.equal(m.size, 5)
})

/** Writes bits LSB first, Huffman codes MSB first (RFC 1951 3.1.1). */
class Bits {
  private readonly bytes: number[] = []
  private acc = 0
  private n = 0
  put (value: number, count: number): this {
    for (let i = 0; i < count; i++) this.bit((value >>> i) & 1)
    return this
  }

  code (code: number, len: number): this {
    for (let i = len - 1; i >= 0; i--) this.bit((code >>> i) & 1)
    return this
  }

  done (): Buffer {
    const out = [...this.bytes]
    if (this.n > 0) out.push(this.acc)
    return Buffer.from(out)
  }

  private bit (b: number): void {
    this.acc |= b << this.n
    if (++this.n === 8) { this.bytes.push(this.acc); this.acc = 0; this.n = 0 }
  }
}

/** Canonical codes for code lengths (RFC 1951 3.2.2). */
function canonical (lens: number[]): number[] {
  const count = new Array<number>(16).fill(0)
  for (const l of lens) if (l > 0) count[l]++
  const next = new Array<number>(16).fill(0)
  for (let code = 0, len = 1; len < 16; len++) { next[len] = code; code = (code + count[len]) << 1 }
  return lens.map((l) => (l > 0 ? next[l]++ : -1))
}

const CL_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]

/**
 * A final dynamic block header whose code length code gives 0..15 four bits each (and 16/17/18
 * `repeatLens` bits), then `symbols`: code length symbols, each [symbol, extra bits value].
 */
function dynamic (nlen: number, ndist: number, symbols: Array<[number, number?]>, clLens?: number[]): Bits {
  const cl = clLens ?? Array.from({ length: 19 }, (_, s) => (s < 16 ? 4 : 0))
  const codes = canonical(cl)
  const w = new Bits().put(1, 1).put(2, 2).put(nlen - 257, 5).put(ndist - 1, 5).put(15, 4)
  for (const s of CL_ORDER) w.put(cl[s], 3)
  for (const [sym, extra] of symbols) {
    w.code(codes[sym], cl[sym])
    if (sym === 16) w.put(extra ?? 0, 2)
    else if (sym === 17) w.put(extra ?? 0, 3)
    else if (sym === 18) w.put(extra ?? 0, 7)
  }
  return w
}

/** Code length symbols for explicit lengths (literal symbols only). */
const lengths = (lens: number[]): Array<[number]> => lens.map((l) => [l])

test('malformed data is refused with zlib\'s own message, for every check zlib makes', () => {
  const litLens = (entries: Record<number, number>, n = 257): number[] => Array.from({ length: n }, (_, s) => entries[s] ?? 0)
  const cases: Array<[string, Buffer]> = [
    ['invalid block type', Buffer.from([0x07])],
    ['invalid stored block lengths', Buffer.from([0x01, 0x05, 0x00, 0x00, 0x00])],
    // Fixed codes: a match before any output; length code 286; distance code 30.
    ['invalid distance too far back', new Bits().put(1, 1).put(1, 2).code(0b0000001, 7).code(0, 5).done()],
    ['invalid literal/length code', new Bits().put(1, 1).put(1, 2).code(0b11000110, 8).done()],
    ['invalid distance code', new Bits().put(1, 1).put(1, 2).code(0x30 + 0x41, 8).code(0b0000001, 7).code(30, 5).done()],
    ['too many length or distance symbols', dynamic(287, 1, []).done()],
    ['too many length or distance symbols', dynamic(257, 31, []).done()],
    // A code length code that is incomplete (only 0..14), or over-subscribed.
    ['invalid code lengths set', dynamic(257, 1, [], Array.from({ length: 19 }, (_, s) => (s < 15 ? 4 : 0))).done()],
    ['invalid code lengths set', dynamic(257, 1, [], Array.from({ length: 19 }, (_, s) => (s < 17 ? 4 : 0))).done()],
    ['invalid bit length repeat', dynamic(257, 1, [[16, 0]], Array.from({ length: 19 }, (_, s) => (s < 15 ? 4 : s < 17 ? 5 : 0))).done()],
    ['invalid bit length repeat', dynamic(257, 1, [[1], [18, 127], [18, 127], [18, 127]], Array.from({ length: 19 }, (_, s) => (s < 15 ? 4 : s === 15 || s === 18 ? 5 : 0))).done()],
    ['invalid code -- missing end-of-block', dynamic(257, 1, lengths([...litLens({ 0: 1, 1: 1 }), 1])).done()],
    ['invalid literal/lengths set', dynamic(257, 1, lengths([...litLens({ 0: 1, 1: 1, 256: 1 }), 1])).done()],
    ['invalid literal/lengths set', dynamic(257, 1, lengths([...litLens({ 0: 1, 256: 2 }), 1])).done()],
    ['invalid distances set', dynamic(257, 3, lengths([...litLens({ 0: 1, 256: 1 }), 1, 1, 1])).done()],
    ['invalid distances set', dynamic(257, 2, lengths([...litLens({ 0: 1, 256: 1 }), 1, 2])).done()]
  ]
  for (const [reason, payload] of cases) {
    assert.equal(zlibSize(payload), reason, `zlib on ${payload.toString('hex')}`)
    for (const piece of [0, 1]) {
      const m = new InflateMeter(Number.MAX_SAFE_INTEGER, FRESH)
      assert.equal(meter(m, payload, piece, true), METER_INVALID, `${reason}: ${payload.toString('hex')}`)
      assert.equal(m.reason, reason)
      // Refused for good.
      assert.equal(m.write(Buffer.from([0]), 0, 1), METER_INVALID)
    }
  }
  // A code length code with no codes at all: zlib reads every length as a one-bit zero and
  // fails only once it has read them all; a message that ends before that passes.
  const noCodes = dynamic(257, 1, [], new Array<number>(19).fill(0))
  assert.equal(zlibSize(Buffer.concat([noCodes.put(0, 300).done()])), 'invalid code -- missing end-of-block')
  const short = dynamic(257, 1, [], new Array<number>(19).fill(0)).done()
  assert.equal(zlibSize(short), 0)
  const m = new InflateMeter(Number.MAX_SAFE_INTEGER, FRESH)
  assert.equal(meter(m, short), METER_OK)
  assert.equal(meter(m, Buffer.concat([noCodes.done()]), 1), METER_INVALID)
  assert.equal(m.reason, 'invalid code -- missing end-of-block')
  // What zlib accepts that looks odd: a literal/length code of a single one-bit code (end of
  // block only), and a block with no distance codes at all.
  for (const payload of [
    dynamic(257, 1, lengths([...litLens({ 256: 1 }), 0])).code(0, 1).put(0, 3).done(),
    dynamic(257, 1, lengths([...litLens({ 0x41: 1, 256: 1 }), 0])).code(0, 1).code(1, 1).put(0, 3).done()
  ]) {
    const z = zlibSize(payload)
    const m = new InflateMeter(Number.MAX_SAFE_INTEGER, FRESH)
    assert.equal(meter(m, payload), METER_OK, `${payload.toString('hex')}: ${m.reason}`)
    assert.equal(m.size, z)
  }
})

test('corrupted streams: the same verdict and size as zlib (except bytes after a final block, counted as a new stream), whatever the pieces', () => {
  const random = rng(3)
  let compared = 0
  for (let i = 0; i < 3000; i++) {
    const data = Buffer.from('hello hello world '.repeat(1 + (i % 40)) + randomBytes(i % 200).toString('hex'))
    const payload = Buffer.from(compress(data, { level: i % 10, strategy: i % 5 }))
    for (let f = 0; f < 1 + (i % 3); f++) payload[Math.floor(random() * payload.length)] ^= 1 << Math.floor(random() * 8)
    const whole = new InflateMeter(Number.MAX_SAFE_INTEGER, FRESH)
    const v = meter(whole, payload)
    const pieces = new InflateMeter(Number.MAX_SAFE_INTEGER, FRESH)
    assert.equal(meter(pieces, payload, 1 + (i % 9), true, random), v, `stream ${i}`)
    assert.equal(pieces.size, whole.size)
    assert.equal(pieces.reason, whole.reason)
    const z = zlibInflate(payload)
    // zlib stops reading at the end of a final block; the meter reads on, as a new stream.
    if (typeof z !== 'string' && !z.all) continue
    compared++
    if (typeof z === 'string') assert.deepEqual([v, whole.reason], [METER_INVALID, z], `stream ${i}`)
    else assert.deepEqual([v, whole.size], [METER_OK, z.size], `stream ${i}`)
  }
  assert.ok(compared > 2900, `${compared} streams compared`)
})

test('garbage never throws or hangs', () => {
  const random = rng(5)
  for (let i = 0; i < 5000; i++) {
    const m = new InflateMeter(1 << 20, { noContextTakeover: i % 2 === 0, maxWindowBits: 8 + (i % 8) })
    for (let k = 0; k < 3; k++) {
      const v = meter(m, randomBytes(1 + Math.floor(random() * 300)), 1 + (i % 17), k === 1, random)
      assert.ok(v === METER_OK || v === METER_TOO_BIG || v === METER_INVALID)
      if (v !== METER_OK) break
    }
  }
})
