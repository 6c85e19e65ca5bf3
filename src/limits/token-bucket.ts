/**
 * A token bucket for per-connection message rates: `rate` tokens a second, at most `burst`.
 * Two numbers and O(1) work per message; no timer.
 */
export class TokenBucket {
  private tokens: number
  private last: number

  constructor (private readonly rate: number, private readonly burst: number, now: number) {
    this.tokens = burst
    this.last = now
  }

  /** Takes one token at time `now` (ms, monotonic); false when the bucket is empty. */
  take (now: number): boolean {
    const refill = (now - this.last) * this.rate / 1000
    this.last = now
    this.tokens = Math.min(this.burst, this.tokens + refill)
    if (this.tokens < 1) return false
    this.tokens -= 1
    return true
  }
}
