/**
 * One timer for every connection (not a timer per connection): each sweep asks every live bridge
 * whether a ping is due, a pong is late, it has been idle too long or its token expired.
 * The timer is unref()'d so it never keeps the process alive (as in the ws README's heartbeat).
 */
import type { HeartbeatSettings } from './bridge.js'

export interface Sweepable {
  tick (now: number, wallNow: number, settings: HeartbeatSettings): void
}

/** The sweep period: fine enough for the shortest deadline, never coarser than 1 s (token expiry). */
export function sweepPeriod (s: HeartbeatSettings): number {
  const candidates = [s.pingInterval, s.pongTimeout, 4000]
  if (s.idleTimeout > 0) candidates.push(s.idleTimeout)
  return Math.max(10, Math.floor(Math.min(...candidates) / 4))
}

export class HeartbeatSweeper {
  private readonly members = new Set<Sweepable>()
  private timer: NodeJS.Timeout | null = null
  readonly period: number

  constructor (readonly settings: HeartbeatSettings) {
    this.period = sweepPeriod(settings)
  }

  get size (): number { return this.members.size }

  add (m: Sweepable): void {
    this.members.add(m)
    if (this.timer === null) {
      this.timer = setInterval(() => this.sweep(), this.period)
      this.timer.unref()
    }
  }

  delete (m: Sweepable): void {
    this.members.delete(m)
    if (this.members.size === 0) this.stop()
  }

  /** Runs one sweep now (also used by tests). */
  sweep (): void {
    const now = performance.now()
    const wall = Date.now()
    for (const m of this.members) m.tick(now, wall, this.settings)
  }

  stop (): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }
}
