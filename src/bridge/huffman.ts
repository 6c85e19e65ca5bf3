/**
 * Canonical Huffman codes (RFC 1951 3.2.2) for the inflate meter: built from code lengths with
 * zlib's rules on which codes are valid, and decoded through a lookup table of the first bits
 * (codes longer than it are walked bit by bit, as zlib's puff does). Only symbols are decoded:
 * nothing here knows about output.
 */

/** Bits looked up at once for the literal/length code (longer codes are walked bit by bit). */
export const LIT_ROOT = 10
export const DIST_ROOT = 8
export const MAX_BITS = 15

/** What a decode returns when more bits are needed to tell, and when no code starts with these bits. */
export const NEED = -1
export const INVALID = -2
/** What build returns for an over-subscribed set of lengths. */
export const BUILD_OVERSUBSCRIBED = -1

const REV8 = new Uint8Array(256)
for (let i = 0; i < 256; i++) {
  let r = 0
  for (let b = 0; b < 8; b++) r |= ((i >>> b) & 1) << (7 - b)
  REV8[i] = r
}

/** A canonical Huffman code, ready for decoding. */
export interface Huffman {
  /**
   * Indexed by the next bits of input (`hold & rootMask`): (length << 9) | symbol for a code
   * that fits the table; 0 where a longer code (or none) starts with those bits.
   */
  readonly fast: Uint16Array
  /** The table's width as a mask: the longest code, capped at the root size it was made with. */
  rootMask: number
  /** Codes per length (index 1..15), and the symbols in canonical order: for the longer codes. */
  readonly count: Uint16Array
  readonly symbol: Uint16Array
  /** No code at all (a dynamic block that has no distance codes). */
  empty: boolean
}

/** An empty code of up to `symbols` symbols whose lookup table may be `root` bits wide. */
export function newHuffman (root: number, symbols: number): Huffman {
  return { fast: new Uint16Array(1 << root), rootMask: 0, count: new Uint16Array(MAX_BITS + 1), symbol: new Uint16Array(symbols), empty: true }
}

const offs = new Uint16Array(MAX_BITS + 2)

/**
 * Makes `h` decode the code whose lengths are lens[at .. at + n), its lookup table at most
 * `root` bits wide. Returns the number of unused codes left at the longest length (0: the code
 * is complete) or BUILD_OVERSUBSCRIBED; the caller decides what an incomplete code means.
 */
export function build (h: Huffman, lens: Uint8Array, at: number, n: number, root: number): number {
  const count = h.count
  count.fill(0)
  for (let s = 0; s < n; s++) count[lens[at + s]]++
  count[0] = 0
  let max = MAX_BITS
  while (max > 0 && count[max] === 0) max--
  h.empty = max === 0
  let left = 1
  for (let len = 1; len <= MAX_BITS; len++) {
    left = (left << 1) - count[len]
    if (left < 0) return BUILD_OVERSUBSCRIBED
  }
  offs[1] = 0
  for (let len = 1; len < MAX_BITS; len++) offs[len + 1] = offs[len] + count[len]
  for (let s = 0; s < n; s++) if (lens[at + s] !== 0) h.symbol[offs[lens[at + s]]++] = s
  const width = max < root ? (max === 0 ? 1 : max) : root
  const size = 1 << width
  const fast = h.fast
  fast.fill(0, 0, size)
  h.rootMask = size - 1
  let code = 0
  let k = 0
  for (let len = 1; len <= width; len++) {
    for (let i = 0; i < count[len]; i++) {
      const entry = (len << 9) | h.symbol[k++]
      const rev = ((REV8[code & 0xff] << 8) | REV8[code >>> 8]) >>> (16 - len)
      for (let j = rev; j < size; j += 1 << len) fast[j] = entry
      code++
    }
    code <<= 1
  }
  return left
}

/**
 * Decodes a code longer than the lookup table's width (or none) from the low `bits` bits of
 * `hold`, bit by bit (as zlib's puff does): (length << 16) | symbol, NEED when more bits are
 * needed to tell, INVALID when no code starts with these bits.
 */
export function slowDecode (h: Huffman, hold: number, bits: number): number {
  let code = 0
  let first = 0
  let index = 0
  for (let len = 1; len <= MAX_BITS; len++) {
    if (len > bits) return NEED
    code |= (hold >> (len - 1)) & 1
    const c = h.count[len]
    if (code - c < first) return (len << 16) | h.symbol[index + code - first]
    index += c
    first = (first + c) << 1
    code <<= 1
  }
  return INVALID
}

// The fixed codes of BTYPE 01 (RFC 1951 3.2.6), shared by every meter.
export const FIXED_LIT = newHuffman(LIT_ROOT, 288)
export const FIXED_DIST = newHuffman(DIST_ROOT, 32)
{
  const lens = new Uint8Array(288)
  lens.fill(8, 0, 144)
  lens.fill(9, 144, 256)
  lens.fill(7, 256, 280)
  lens.fill(8, 280, 288)
  build(FIXED_LIT, lens, 0, 288, LIT_ROOT)
  // 32 codes of 5 bits: 30 and 31 are refused when used, as zlib does.
  build(FIXED_DIST, new Uint8Array(32).fill(5), 0, 32, DIST_ROOT)
}

/** Whether a code's longest length is 1 (an incomplete code zlib accepts: one symbol, one bit). */
export function single (h: Huffman): boolean {
  for (let len = MAX_BITS; len > 1; len--) if (h.count[len] !== 0) return false
  return h.count[1] !== 0
}
