/**
 * Bearer token check for the admin API and protected metrics, in constant time, and the lockout
 * of IPs that keep presenting wrong credentials.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { ADMIN_AUTH_FAILURES_PER_MINUTE, ADMIN_AUTH_MAX_IPS, ADMIN_AUTH_WINDOW } from '../config/defaults.js'
import { bearerToken } from '../http/headers.js'

/** Compares digests, so neither the token's content nor its length leaks through timing. */
export function bearerMatches (authorization: string | undefined, token: string): boolean {
  const presented = bearerToken(authorization)
  if (presented === null) return false
  const a = createHash('sha256').update(presented).digest()
  const b = createHash('sha256').update(token).digest()
  return timingSafeEqual(a, b)
}

export interface AdminAuthFailuresOptions {
  /** Failures allowed in one window; the next request in that window is refused (default 10). */
  max?: number
  /** Window length in ms (default one minute). */
  windowMs?: number
  /** IPs tracked at most; past that the oldest window is dropped (default 10,000). */
  maxKeys?: number
}

/**
 * Failed admin authentications per IP, in fixed windows that start at an IP's first failure,
 * in memory (each gateway instance counts its own). After `max` failures in a window, every
 * admin request from that IP is refused until the window ends, the right token included, as
 * fail2ban bans an address: were the token still checked, each 429 or 200 would tell a guesser
 * whether a guess was right, and the limit would limit nothing.
 *
 * Memory is bounded: only IPs that failed are kept, a window that has passed is dropped (the
 * map holds windows in the order they started, all of one length, so the expired ones are at
 * its front), and past `maxKeys` IPs the oldest window goes.
 */
export class AdminAuthFailures {
  private readonly windows = new Map<string, { count: number, resetAt: number }>()
  private readonly max: number
  private readonly windowMs: number
  private readonly maxKeys: number

  constructor (opts: AdminAuthFailuresOptions = {}) {
    this.max = opts.max ?? ADMIN_AUTH_FAILURES_PER_MINUTE
    this.windowMs = opts.windowMs ?? ADMIN_AUTH_WINDOW
    this.maxKeys = opts.maxKeys ?? ADMIN_AUTH_MAX_IPS
  }

  /** Seconds until `ip` may try again (for Retry-After), or 0 when it is not locked out. */
  lockedFor (ip: string, now = Date.now()): number {
    const w = this.windows.get(ip)
    if (w === undefined || w.count < this.max) return 0
    if (w.resetAt <= now) { this.windows.delete(ip); return 0 }
    return Math.ceil((w.resetAt - now) / 1000)
  }

  /** Counts one failed authentication from `ip`. */
  fail (ip: string, now = Date.now()): void {
    this.sweep(now)
    let w = this.windows.get(ip)
    if (w === undefined || w.resetAt <= now) {
      w = { count: 0, resetAt: now + this.windowMs }
      this.windows.delete(ip)
      this.windows.set(ip, w)
      if (this.windows.size > this.maxKeys) this.windows.delete(this.windows.keys().next().value as string)
    }
    w.count++
  }

  /** IPs with a window open. */
  get size (): number { return this.windows.size }

  private sweep (now: number): void {
    for (const [ip, w] of this.windows) {
      if (w.resetAt > now) return
      this.windows.delete(ip)
    }
  }
}

/** The outcome of one admin authentication: let through; or refused, 401 (`retryAfter` 0) or 429 for `retryAfter` seconds. */
export type AdminAuthResult = { ok: true } | { ok: false, retryAfter: number }

/**
 * Checks a request's Authorization header against the admin token, for `ip`. A request that
 * presents credentials (any Authorization header) and fails counts against that IP; one without
 * the header only gets the 401 challenge and does not count (a browser, a scraper or the
 * dashboard before sign-in ask that way first, and guessing a token needs the header).
 */
export function authenticateAdmin (failures: AdminAuthFailures, ip: string, authorization: string | undefined, token: string): AdminAuthResult {
  const locked = failures.lockedFor(ip)
  if (locked > 0) return { ok: false, retryAfter: locked }
  if (bearerMatches(authorization, token)) return { ok: true }
  if (authorization !== undefined) failures.fail(ip)
  return { ok: false, retryAfter: 0 }
}
