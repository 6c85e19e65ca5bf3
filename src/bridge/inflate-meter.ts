/**
 * What a permessage-deflate message (RFC 7692) inflates to, counted without inflating it: a
 * DEFLATE (RFC 1951) decoder that reads the block headers and Huffman codes and adds up the
 * lengths of literals, matches and stored blocks, but never writes an output byte. A match only
 * has to point inside the window, which needs the window's size, not its contents; so memory is
 * a few KiB per direction whatever a message inflates to, and the count is synchronous: the
 * relay decides on each chunk before it passes it on (zlib's stream API is asynchronous, and
 * its sync API holds all of a chunk's output).
 *
 * The decoder is a state machine over named states (as ws's receiver is). Its input arrives in
 * arbitrary pieces, so it works in units that it either completes or does not start: a block
 * header, a stored block's lengths, a dynamic block's code tables, one literal, or one length
 * with its distance. A unit cut short by the end of the input is read again, whole, once more
 * input has come (the bytes it started in are kept: at most a few hundred).
 *
 * It refuses what zlib refuses (the same checks, the same messages), and only that, with two
 * differences. Bytes after a stream's final block (BFINAL) are read as a new stream, where zlib
 * stops reading: ws starts a new inflater at the next frame, and other endpoints may read on, so
 * counting them keeps a bomb from hiding there (a sender that puts anything but DEFLATE after a
 * final block gets 1007). And a match that reaches farther back than the negotiated window is
 * always refused, where zlib refuses it only when it reaches back across its output buffer.
 */

/** What a write or the end of a message found. */
export const METER_OK = 0
/** The message inflates to more than the limit. */
export const METER_TOO_BIG = 1
/** The compressed data is not valid DEFLATE (`reason` says why, in zlib's words). */
export const METER_INVALID = 2
export type MeterVerdict = typeof METER_OK | typeof METER_TOO_BIG | typeof METER_INVALID

/** The negotiated permessage-deflate parameters that matter to the receiving side of one direction. */
export interface InflateParams {
  /** The sender resets its compressor after each message: each message is a stream of its own. */
  noContextTakeover: boolean
  /** The sender's LZ77 window (8..15). */
  maxWindowBits: number
}

/** Both directions' parameters, from the client's point of view of who compresses. */
export interface DeflateParams {
  /** Messages the client sends (client_no_context_takeover, client_max_window_bits). */
  client: InflateParams
  /** Messages the server (the upstream) sends (server_*). */
  server: InflateParams
}

/**
 * Reads a negotiated `Sec-WebSocket-Extensions` value (the upstream's answer). Returns null when
 * permessage-deflate is not in it. Parameters it cannot read are taken at their most permissive
 * (context takeover, a 15-bit window): counting with a window that carries over gives the same
 * sizes for a sender that resets its own, so the meter never miscounts on that account.
 */
export function parseDeflateParams (extensions: string): DeflateParams | null {
  // Most connections negotiate no extension: nothing to split.
  if (extensions === '') return null
  for (const ext of extensions.split(',')) {
    const [name, ...params] = ext.split(';').map((s) => s.trim())
    if (name.toLowerCase() !== 'permessage-deflate') continue
    const out: DeflateParams = {
      client: { noContextTakeover: false, maxWindowBits: 15 },
      server: { noContextTakeover: false, maxWindowBits: 15 }
    }
    for (const p of params) {
      const eq = p.indexOf('=')
      const key = (eq === -1 ? p : p.slice(0, eq)).trim().toLowerCase()
      const value = eq === -1 ? '' : p.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1')
      const bits = Number(value)
      const validBits = value !== '' && Number.isInteger(bits) && bits >= 8 && bits <= 15
      if (key === 'client_no_context_takeover') out.client.noContextTakeover = true
      else if (key === 'server_no_context_takeover') out.server.noContextTakeover = true
      else if (key === 'client_max_window_bits' && validBits) out.client.maxWindowBits = bits
      else if (key === 'server_max_window_bits' && validBits) out.server.maxWindowBits = bits
    }
    return out
  }
  return null
}

// The decoder's states.
/** Before a block: 3 bits, BFINAL and BTYPE. */
const BLOCK_HEADER = 0
/** A stored block's LEN and NLEN, after skipping to a byte boundary. */
const STORED_LENGTHS = 1
/** Inside a stored block: `storedLeft` bytes to count. */
const STORED_DATA = 2
/** A dynamic block's code length tables. */
const DYNAMIC_TABLES = 3
/** Inside a Huffman block: literals, and lengths with their distances, up to end-of-block. */
const BLOCK_DATA = 4
/** Malformed data was found: nothing more is read. */
const FAILED = 5

import { build, BUILD_OVERSUBSCRIBED, DIST_ROOT, FIXED_DIST, FIXED_LIT, INVALID, LIT_ROOT, MAX_BITS, NEED, newHuffman, single, slowDecode, type Huffman } from './huffman.js'

/** RFC 7692 7.2.2: the receiver appends these to a message's payload before inflating it. */
const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff])

const LEN_BASE = Uint16Array.from([3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258])
const LEN_EXTRA = Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0])
const DIST_BASE = Uint16Array.from([1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577])
const DIST_EXTRA = Uint8Array.from([0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13])
/** The order in which a dynamic block lists the code length code's lengths. */
const CL_ORDER = Uint8Array.from([16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15])

// Scratch space for reading a dynamic block's tables: each is read within one call, never
// across calls, so all meters share it.
const CL_HUFF = newHuffman(7, 19)
const CL_LENS = new Uint8Array(19)
const LENS = new Uint8Array(286 + 30)

/**
 * Input is unmasked into this buffer, behind the bytes a meter kept from its last call. One for
 * all meters: the decoder never keeps a reference to it between calls.
 */
const STAGE = new Uint8Array(16 * 1024)
/** A unit is at most a dynamic block's tables: fewer than 300 bytes. */
const CARRY_MAX = 512

/**
 * Counts the inflated size of the compressed messages of one direction. The relay calls
 * `begin()` at a compressed message's first frame, `write()` with each piece of payload as it
 * arrives, and `end()` after the message's last frame.
 */
export class InflateMeter {
  /** Inflated bytes of the current message so far. */
  size = 0
  /** Why the data is malformed (METER_INVALID), in zlib's words. */
  reason = ''

  private state = BLOCK_HEADER
  private final = false
  /** A block with BFINAL ended during this message: the next one starts a new stream. */
  private finalSeen = false
  /** Nothing was read since a block with BFINAL ended. */
  private streamEnded = false
  /** Bits read from the input but not yet used, and how many. */
  private hold = 0
  private bits = 0
  private storedLeft = 0
  /** Bytes inflated since the stream began: how far back a match may reach. */
  private total = 0
  private readonly window: number
  private lit: Huffman = FIXED_LIT
  private dist: Huffman = FIXED_DIST
  private own: { lit: Huffman, dist: Huffman } | null = null
  private carry: Uint8Array | null = null
  private carryLen = 0

  /**
   * @param limit the most a message may inflate to (maxPayload)
   * @param params how the sender compresses: a fresh stream per message or not, its window
   */
  constructor (private readonly limit: number, private readonly params: InflateParams = { noContextTakeover: false, maxWindowBits: 15 }) {
    // zlib's compressor uses a 9-bit window when asked for 8 (and so does every Node peer).
    this.window = 1 << Math.max(9, Math.min(15, params.maxWindowBits))
  }

  /** A compressed message starts. */
  begin (): void {
    this.size = 0
  }

  /**
   * Counts payload bytes src[start, end) of the current message. `key`: the frame's masking key
   * (client frames), `phase` the offset of src[start] in the frame's payload.
   */
  write (src: Uint8Array, start: number, end: number, key: Uint8Array | null = null, phase = 0): MeterVerdict {
    if (this.state === FAILED) return METER_INVALID
    while (start < end) {
      if (this.state === STORED_DATA && this.carryLen === 0 && this.bits === 0) {
        // Stored bytes need no decoding: counted where they are.
        const n = Math.min(this.storedLeft, end - start)
        start += n
        phase += n
        if (this.stored(n)) return METER_TOO_BIG
        continue
      }
      const kept = this.carryLen
      if (kept > 0) STAGE.set(this.carry!.subarray(0, kept), 0)
      const take = Math.min(end - start, STAGE.length - kept)
      if (key === null) STAGE.set(src.subarray(start, start + take), kept)
      else unmaskInto(STAGE, kept, src, start, take, key, phase)
      start += take
      phase += take
      this.carryLen = 0
      const v = this.run(STAGE, kept + take)
      if (v !== METER_OK) return v
    }
    return METER_OK
  }

  /** The current message ended (its last frame was counted): counts the tail RFC 7692 appends. */
  end (): MeterVerdict {
    // A message that ends its stream with a final block (RFC 7692 7.2.3.4): the tail a receiver
    // appends is read past the stream's end, i.e. not at all.
    if (!this.streamEnded) {
      const v = this.write(TAIL, 0, TAIL.length)
      if (v !== METER_OK) return v
      // RFC 7692 7.2.1: with the tail, a message ends at a block boundary (an empty stored
      // block). When the window carries over, one that leaves a block open would have the next
      // message read as the rest of it, by this meter and by a receiver alike, unless the two
      // disagree on the parameters: refused, so that no disagreement can be used to hide a bomb.
      if (!this.params.noContextTakeover && (this.state !== BLOCK_HEADER || this.bits >= 8)) return this.fail('message does not end at a block boundary')
    }
    if (this.params.noContextTakeover || this.finalSeen) this.reset()
    return METER_OK
  }

  /** A new stream: an empty window, no block in progress. */
  private reset (): void {
    this.state = BLOCK_HEADER
    this.final = false
    this.finalSeen = false
    this.streamEnded = false
    this.hold = 0
    this.bits = 0
    this.storedLeft = 0
    this.total = 0
    this.carryLen = 0
  }

  private fail (reason: string): MeterVerdict {
    this.state = FAILED
    this.reason = reason
    this.carry = null
    this.own = null
    return METER_INVALID
  }

  /** Counts `n` stored bytes; true when the message is now over the limit. */
  private stored (n: number): boolean {
    this.storedLeft -= n
    this.size += n
    this.total += n
    if (this.storedLeft === 0) this.blockDone()
    return this.size > this.limit
  }

  private blockDone (): void {
    if (!this.final) { this.state = BLOCK_HEADER; return }
    // The stream ended. Whatever follows in the message is read as a new stream (zlib would
    // stop reading; counting it too keeps the meter from ever counting less than a peer might).
    this.state = BLOCK_HEADER
    this.final = false
    this.finalSeen = true
    this.streamEnded = true
    this.total = 0
  }

  /**
   * Decodes buf[0, end); a unit cut short is kept for the next call. `hold` never holds more than
   * 30 bits, so plain (signed) shifts do: V8 keeps it a small integer throughout.
   */
  private run (buf: Uint8Array, end: number): MeterVerdict {
    let pos = 0
    let hold = this.hold
    let bits = this.bits
    let verdict: MeterVerdict = METER_OK
    /** Where the unit being read started, to read it again whole next time. */
    let unitPos = 0
    let unitHold = hold
    let unitBits = bits
    decode: for (;;) {
      unitPos = pos
      unitHold = hold
      unitBits = bits
      switch (this.state) {
        case BLOCK_HEADER: {
          while (bits < 3 && pos < end) { hold |= buf[pos++] << bits; bits += 8 }
          if (bits < 3) break decode
          this.streamEnded = false
          this.final = (hold & 1) === 1
          const type = (hold >> 1) & 3
          hold >>= 3
          bits -= 3
          if (type === 0) this.state = STORED_LENGTHS
          else if (type === 1) { this.lit = FIXED_LIT; this.dist = FIXED_DIST; this.state = BLOCK_DATA } else if (type === 2) this.state = DYNAMIC_TABLES
          else { verdict = this.fail('invalid block type'); break decode }
          continue
        }
        case STORED_LENGTHS: {
          hold >>= bits & 7
          bits -= bits & 7
          while (bits < 16 && pos < end) { hold |= buf[pos++] << bits; bits += 8 }
          if (bits < 16) break decode
          const len = hold & 0xffff
          hold >>= 16
          bits -= 16
          while (bits < 16 && pos < end) { hold |= buf[pos++] << bits; bits += 8 }
          if (bits < 16) break decode
          const nlen = hold & 0xffff
          hold >>= 16
          bits -= 16
          if (len !== (~nlen & 0xffff)) { verdict = this.fail('invalid stored block lengths'); break decode }
          this.storedLeft = len
          if (len === 0) this.blockDone()
          else this.state = STORED_DATA
          continue
        }
        case STORED_DATA: {
          // Whole bytes still held count first (bits is a multiple of 8 here), then the input;
          // what is counted stays counted (no unit to read again).
          let n = 0
          while (bits >= 8 && n < this.storedLeft) { hold >>= 8; bits -= 8; n++ }
          const direct = Math.min(this.storedLeft - n, end - pos)
          pos += direct
          unitPos = pos
          unitHold = hold
          unitBits = bits
          if (this.stored(n + direct)) { verdict = METER_TOO_BIG; break decode }
          if (this.state === STORED_DATA) break decode
          continue
        }
        case DYNAMIC_TABLES: {
          this.hold = hold
          this.bits = bits
          const next = this.tables(buf, pos, end)
          if (next === NEED) break decode
          if (next === INVALID) { verdict = METER_INVALID; break decode }
          pos = next
          hold = this.hold
          bits = this.bits
          this.state = BLOCK_DATA
          continue
        }
        case BLOCK_DATA: {
          const lit = this.lit
          const dist = this.dist
          const litFast = lit.fast
          const litMask = lit.rootMask
          const distFast = dist.fast
          const distMask = dist.rootMask
          const window = this.window
          const limit = this.limit
          let size = this.size
          let total = this.total
          // While 8 bytes or more are left, a whole unit (at most 48 bits) is there: no bounds
          // or bit counts to check. Anything unusual (end of block, a long code, an error) is
          // left to the careful loop below, from the start of its unit.
          const safeEnd = end - 8
          while (pos <= safeEnd) {
            const p0 = pos
            const h0 = hold
            const b0 = bits
            if (bits < MAX_BITS) { hold |= (buf[pos] | (buf[pos + 1] << 8)) << bits; pos += 2; bits += 16 }
            let e = litFast[hold & litMask]
            if (e === 0) { pos = p0; hold = h0; bits = b0; break }
            let n = e >> 9
            let sym = e & 511
            hold >>= n
            bits -= n
            if (sym < 256) {
              size++
              total++
              if (size > limit) break
              continue
            }
            sym -= 257
            if (sym < 0 || sym >= 29 || dist.empty) { pos = p0; hold = h0; bits = b0; break }
            let extra = LEN_EXTRA[sym]
            if (bits < extra) { hold |= (buf[pos] | (buf[pos + 1] << 8)) << bits; pos += 2; bits += 16 }
            const length = LEN_BASE[sym] + (hold & ((1 << extra) - 1))
            hold >>= extra
            bits -= extra
            if (bits < MAX_BITS) { hold |= (buf[pos] | (buf[pos + 1] << 8)) << bits; pos += 2; bits += 16 }
            e = distFast[hold & distMask]
            n = e >> 9
            sym = e & 511
            if (e === 0 || sym >= 30) { pos = p0; hold = h0; bits = b0; break }
            hold >>= n
            bits -= n
            extra = DIST_EXTRA[sym]
            if (bits < extra) { hold |= (buf[pos] | (buf[pos + 1] << 8)) << bits; pos += 2; bits += 16 }
            const distance = DIST_BASE[sym] + (hold & ((1 << extra) - 1))
            if (distance > total || distance > window) { pos = p0; hold = h0; bits = b0; break }
            hold >>= extra
            bits -= extra
            size += length
            total += length
            if (size > limit) break
          }
          if (size > limit) {
            this.size = size
            this.total = total
            verdict = METER_TOO_BIG
            break decode
          }
          for (;;) {
            unitPos = pos
            unitHold = hold
            unitBits = bits
            while (bits < MAX_BITS && pos < end) { hold |= buf[pos++] << bits; bits += 8 }
            let e = litFast[hold & litMask]
            let n = e >> 9
            let sym = e & 511
            if (e === 0) {
              e = slowDecode(lit, hold, bits)
              if (e === NEED) break
              if (e === INVALID) { verdict = this.fail('invalid literal/length code'); break }
              n = e >> 16
              sym = e & 0xffff
            } else if (n > bits) break
            hold >>= n
            bits -= n
            if (sym < 256) {
              size++
              total++
              if (size > limit) { verdict = METER_TOO_BIG; break }
              continue
            }
            if (sym === 256) {
              // After the last block of a stream, the rest of its byte is padding.
              if (this.final) { hold >>= bits & 7; bits -= bits & 7 }
              unitPos = pos
              unitHold = hold
              unitBits = bits
              this.blockDone()
              break
            }
            sym -= 257
            if (sym >= 29) { verdict = this.fail('invalid literal/length code'); break }
            let extra = LEN_EXTRA[sym]
            while (bits < extra && pos < end) { hold |= buf[pos++] << bits; bits += 8 }
            if (bits < extra) break
            const length = LEN_BASE[sym] + (hold & ((1 << extra) - 1))
            hold >>= extra
            bits -= extra
            while (bits < MAX_BITS && pos < end) { hold |= buf[pos++] << bits; bits += 8 }
            if (dist.empty) { verdict = this.fail('invalid distance code'); break }
            e = distFast[hold & distMask]
            n = e >> 9
            sym = e & 511
            if (e === 0) {
              e = slowDecode(dist, hold, bits)
              if (e === NEED) break
              if (e === INVALID) { verdict = this.fail('invalid distance code'); break }
              n = e >> 16
              sym = e & 0xffff
            } else if (n > bits) break
            hold >>= n
            bits -= n
            if (sym >= 30) { verdict = this.fail('invalid distance code'); break }
            extra = DIST_EXTRA[sym]
            while (bits < extra && pos < end) { hold |= buf[pos++] << bits; bits += 8 }
            if (bits < extra) break
            const distance = DIST_BASE[sym] + (hold & ((1 << extra) - 1))
            hold >>= extra
            bits -= extra
            if (distance > total || distance > window) { verdict = this.fail('invalid distance too far back'); break }
            size += length
            total += length
            if (size > limit) { verdict = METER_TOO_BIG; break }
          }
          this.size = size
          this.total = total
          if (verdict !== METER_OK || this.state === BLOCK_DATA) break decode
          continue
        }
        default:
          return METER_INVALID
      }
    }
    if (verdict === METER_INVALID) return verdict
    if (verdict === METER_TOO_BIG) {
      this.hold = hold
      this.bits = bits
      return verdict
    }
    // Input ran out inside the unit that started at unitPos: it is read again, whole, next time.
    this.hold = unitHold
    this.bits = unitBits
    const rest = end - unitPos
    if (rest > 0) {
      if (rest > CARRY_MAX) return this.fail('invalid deflate data')
      this.carry ??= new Uint8Array(CARRY_MAX)
      this.carry.set(buf.subarray(unitPos, end), 0)
      this.carryLen = rest
    }
    return METER_OK
  }

  /**
   * Reads a dynamic block's tables (RFC 1951 3.2.7) from buf[pos, end) with this.hold/bits and
   * makes them the current codes. Returns the position after them, NEED, or INVALID.
   */
  private tables (buf: Uint8Array, pos: number, end: number): number {
    let hold = this.hold
    let bits = this.bits
    while (bits < 14 && pos < end) { hold |= buf[pos++] << bits; bits += 8 }
    if (bits < 14) return NEED
    const nlen = (hold & 31) + 257
    const ndist = ((hold >> 5) & 31) + 1
    const ncode = ((hold >> 10) & 15) + 4
    hold >>= 14
    bits -= 14
    if (nlen > 286 || ndist > 30) { this.fail('too many length or distance symbols'); return INVALID }
    CL_LENS.fill(0)
    for (let i = 0; i < ncode; i++) {
      while (bits < 3 && pos < end) { hold |= buf[pos++] << bits; bits += 8 }
      if (bits < 3) return NEED
      CL_LENS[CL_ORDER[i]] = hold & 7
      hold >>= 3
      bits -= 3
    }
    const all = nlen + ndist
    // The code length code must be complete (zlib: no exception for it), or empty: zlib then
    // reads each length as a zero of one bit, and fails only once it has read them all.
    const clLeft = build(CL_HUFF, CL_LENS, 0, 19, 7)
    if (CL_HUFF.empty) {
      for (let i = 0; i < all; i++) {
        while (bits < 1 && pos < end) { hold |= buf[pos++] << bits; bits += 8 }
        if (bits < 1) return NEED
        hold >>= 1
        bits -= 1
      }
      this.fail('invalid code -- missing end-of-block')
      return INVALID
    }
    if (clLeft !== 0) { this.fail('invalid code lengths set'); return INVALID }
    const clFast = CL_HUFF.fast
    const clMask = CL_HUFF.rootMask
    for (let i = 0; i < all;) {
      while (bits < 7 && pos < end) { hold |= buf[pos++] << bits; bits += 8 }
      const e = clFast[hold & clMask]
      const n = e >> 9
      if (n > bits) return NEED
      hold >>= n
      bits -= n
      const sym = e & 511
      if (sym < 16) { LENS[i++] = sym; continue }
      let value = 0
      let extra = 7
      let base = 11
      if (sym === 16) {
        if (i === 0) { this.fail('invalid bit length repeat'); return INVALID }
        value = LENS[i - 1]
        extra = 2
        base = 3
      } else if (sym === 17) { extra = 3; base = 3 }
      while (bits < extra && pos < end) { hold |= buf[pos++] << bits; bits += 8 }
      if (bits < extra) return NEED
      let repeat = base + (hold & ((1 << extra) - 1))
      hold >>= extra
      bits -= extra
      if (i + repeat > all) { this.fail('invalid bit length repeat'); return INVALID }
      while (repeat-- > 0) LENS[i++] = value
    }
    if (LENS[256] === 0) { this.fail('invalid code -- missing end-of-block'); return INVALID }
    const own = this.own ??= { lit: newHuffman(LIT_ROOT, 288), dist: newHuffman(DIST_ROOT, 32) }
    // Incomplete codes are refused except a single code of one bit, as zlib's inflate_table does.
    let left = build(own.lit, LENS, 0, nlen, LIT_ROOT)
    if (left === BUILD_OVERSUBSCRIBED || (left > 0 && !single(own.lit))) { this.fail('invalid literal/lengths set'); return INVALID }
    left = build(own.dist, LENS, nlen, ndist, DIST_ROOT)
    if (left === BUILD_OVERSUBSCRIBED || (left > 0 && !own.dist.empty && !single(own.dist))) { this.fail('invalid distances set'); return INVALID }
    this.lit = own.lit
    this.dist = own.dist
    this.hold = hold
    this.bits = bits
    return pos
  }
}

/** out[at, at + n) = src[from, from + n) unmasked with `key`, src[from] being payload byte `phase`. */
function unmaskInto (out: Uint8Array, at: number, src: Uint8Array, from: number, n: number, key: Uint8Array, phase: number): void {
  const k0 = key[phase & 3]
  const k1 = key[(phase + 1) & 3]
  const k2 = key[(phase + 2) & 3]
  const k3 = key[(phase + 3) & 3]
  let i = 0
  for (; i + 4 <= n; i += 4) {
    out[at + i] = src[from + i] ^ k0
    out[at + i + 1] = src[from + i + 1] ^ k1
    out[at + i + 2] = src[from + i + 2] ^ k2
    out[at + i + 3] = src[from + i + 3] ^ k3
  }
  for (; i < n; i++) out[at + i] = src[from + i] ^ key[(phase + i) & 3]
}
