/**
 * Request ids: random (version 4) UUIDs, as crypto.randomUUID() makes them, from the same
 * CSPRNG, 122 random bits each. Written as one flat string: randomUUID() builds its result by
 * concatenating 20 pieces, and every later read of it (the log line's escape check, undici's
 * header check on X-Request-Id) first copies those pieces into one string, on every request.
 */
import { randomFillSync } from 'node:crypto'

/** Random bytes drawn at a time (256 ids' worth), as randomUUID() buffers its own. */
const POOL_BYTES = 16 * 256

const pool = Buffer.alloc(POOL_BYTES)
let used = POOL_BYTES
const HEX = Buffer.from('0123456789abcdef', 'latin1')
/** Where each of the 16 bytes' two hex digits go, around the dashes. */
const AT = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34]
const text = Buffer.from('00000000-0000-4000-8000-000000000000', 'latin1')

/** A new random UUID (`xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx`, lower-case hex). */
export function requestId (): string {
  if (used === POOL_BYTES) {
    randomFillSync(pool)
    used = 0
  }
  for (let i = 0; i < 16; i++) {
    let b = pool[used + i]
    // RFC 9562 4.1, 5.4: version 4, variant 10.
    if (i === 6) b = (b & 0x0f) | 0x40
    else if (i === 8) b = (b & 0x3f) | 0x80
    const at = AT[i]
    text[at] = HEX[b >> 4]
    text[at + 1] = HEX[b & 0x0f]
  }
  used += 16
  return text.toString('latin1', 0, 36)
}
