/**
 * Heartbeats: the rules (when a ping is due, when a side is dead, when a connection is idle or
 * its token has expired) and the one timer that applies them to every connection (not a timer
 * per connection). Each sweep asks every live bridge to `tick`; the bridge acts on what the rules
 * say. The timer is unref()'d so it never keeps the process alive (as in the ws README's heartbeat).
 */

export interface HeartbeatSettings {
  pingInterval: number
  pongTimeout: number
  /** 0: never idle. */
  idleTimeout: number
}

/** One side's heartbeat clock, in performance.now() milliseconds (0: never). */
export interface SideClock {
  /** When the ping still waiting for its pong was sent; 0 when none is waiting. */
  pingSentAt: number
  lastPingAt: number
  /** Reading this side is paused (backpressure): its pongs cannot be read now. */
  paused: boolean
}

/**
 * What one side needs now: `dead` when its pong is later than pongTimeout; `wait` when a pong is
 * owed but the side is paused (not a sign of death: its deadline restarts); `ping` when
 * pingInterval has passed since the last ping; else `none`.
 */
export function sideDue (side: SideClock, now: number, s: HeartbeatSettings): 'none' | 'ping' | 'wait' | 'dead' {
  if (side.pingSentAt !== 0) {
    if (side.paused) return 'wait'
    return now - side.pingSentAt >= s.pongTimeout ? 'dead' : 'none'
  }
  return now - side.lastPingAt >= s.pingInterval ? 'ping' : 'none'
}

/**
 * Whether the whole connection ends now: `expired` when its token's exp (`expiresAt`, wall-clock
 * ms; 0: none) has passed; `idle` when no data frame moved for idleTimeout; else `none`.
 */
export function connectionDue (expiresAt: number, lastDataAt: number, now: number, wallNow: number, s: HeartbeatSettings): 'none' | 'expired' | 'idle' {
  if (expiresAt > 0 && wallNow >= expiresAt) return 'expired'
  if (s.idleTimeout > 0 && now - lastDataAt >= s.idleTimeout) return 'idle'
  return 'none'
}

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
