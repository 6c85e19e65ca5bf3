/**
 * A paced close: many connections closed on purpose (shutdown, reloadDrain, closeOnUnhealthy,
 * a target drained or removed, a rebalance), spread over a window by a Pacer, with a log line
 * when it starts and when it ends, and kept in a PacedCloseLog for the admin API and metrics.
 */
import type { Bridge } from '../bridge/bridge.js'
import { Pacer, type PacerClock } from './pacer.js'

/** Why a set of connections is being closed. */
export type PacedCause = 'shutdown' | 'reload' | 'unhealthy' | 'drain' | 'remove' | 'rebalance'

export const PACED_CAUSES: readonly PacedCause[] = ['shutdown', 'reload', 'unhealthy', 'drain', 'remove', 'rebalance']

/** One paced close in progress (or finished). */
export interface PacedClose {
  id: string
  cause: PacedCause
  /** Connections it was given. */
  total: number
  windowMs: number
  /** At most this many closes in any one-second span. */
  maxPerSecond: number
  /** Epoch milliseconds. */
  startedAt: number
  /** Connections done so far: closed by the pace, or ended by themselves before their turn. */
  readonly closed: number
  /** Resolves when every connection is done or the pace is cancelled. */
  done: Promise<void>
  /** Stops closing; connections not reached yet stay open. */
  cancel (): void
}

/** What the admin API shows of one paced close. */
export interface PacedCloseView {
  id: string
  cause: PacedCause
  state: 'running' | 'finished' | 'cancelled'
  code: number
  total: number
  closed: number
  /** Of `closed`: the connections that had ended by themselves before their turn. */
  skipped: number
  windowMs: number
  maxPerSecond: number
  startedAt: string
  finishedAt: string | null
}

/** What a paced close can close: a Bridge. */
export interface Closable {
  readonly closed: boolean
  close (code: number, reason: string): void
}

/** The logger calls a paced close makes (a pino logger fits). */
export interface PaceLogger {
  info (obj: object, msg: string): void
  warn (obj: object, msg: string): void
}

/** Finished paced closes kept for the admin API, besides those in progress. */
export const PACED_CLOSE_HISTORY = 10

interface Entry { view: () => PacedCloseView, pending: () => number, cause: PacedCause }

/**
 * The paced closes of one gateway instance: those in progress and the last few finished. It
 * outlives a reload (it is kept with the metrics), so closes begun by an older configuration's
 * app are listed too.
 */
export class PacedCloseLog {
  private readonly running = new Set<Entry>()
  private readonly finished: Entry[] = []
  private seq = 0

  nextId (): string { return `pc-${++this.seq}` }

  add (e: Entry): void { this.running.add(e) }

  ended (e: Entry): void {
    if (!this.running.delete(e)) return
    this.finished.unshift(e)
    if (this.finished.length > PACED_CLOSE_HISTORY) this.finished.pop()
  }

  /** In progress first (oldest first), then the finished ones (newest first). */
  list (): PacedCloseView[] {
    return [...[...this.running].map((e) => e.view()), ...this.finished.map((e) => e.view())]
  }

  /** Connections still to be closed, by cause (each cause present, 0 when none). */
  pending (): Map<PacedCause, number> {
    const out = new Map<PacedCause, number>(PACED_CAUSES.map((c) => [c, 0]))
    for (const e of this.running) out.set(e.cause, (out.get(e.cause) ?? 0) + e.pending())
    return out
  }
}

export interface PacedCloseOptions<B extends Closable> {
  items: readonly B[]
  code: number
  reason: string
  cause: PacedCause
  windowMs: number
  log: PaceLogger
  book: PacedCloseLog
  /** Told of each connection the pace closed (not of those skipped). */
  onClosed?: (cause: PacedCause) => void
  clock?: PacerClock
  random?: () => number
}

/** Starts closing `items` with `code` over `windowMs` (0: all now, before this returns). */
export function startPacedClose<B extends Closable> (o: PacedCloseOptions<B>): PacedClose {
  // Nothing below keeps `o` (nor the connections) once the pace is over: the log keeps the
  // last few finished views.
  const { code, reason, cause, log, book, onClosed } = o
  let items: readonly B[] = o.items
  const id = book.nextId()
  const startedAt = Date.now()
  let finishedAt: number | null = null
  let state: PacedCloseView['state'] = 'running'
  /** Cancelled: connections not reached that had closed anyway (skipped, as at their turn). */
  let leftClosed = 0
  const pacer = new Pacer<B>({
    items,
    windowMs: o.windowMs,
    clock: o.clock,
    random: o.random,
    act: (b) => {
      if (b.closed) return false
      b.close(code, reason)
      onClosed?.(cause)
      return true
    },
    onError: (err) => { log.warn({ paceId: id, cause, err: err instanceof Error ? err.message : String(err) }, 'paced close: closing a connection failed') }
  })
  const { total, windowMs, maxPerSecond } = pacer
  const entry: Entry = {
    cause,
    pending: () => pacer.pending,
    view: () => ({
      id,
      cause,
      state,
      code,
      total,
      closed: pacer.done + leftClosed,
      skipped: pacer.done - pacer.acted + leftClosed,
      windowMs,
      maxPerSecond,
      startedAt: new Date(startedAt).toISOString(),
      finishedAt: finishedAt === null ? null : new Date(finishedAt).toISOString()
    })
  }
  const paced: PacedClose = {
    id,
    cause,
    total,
    windowMs,
    maxPerSecond,
    startedAt,
    get closed () { return pacer.done + leftClosed },
    done: pacer.finished,
    cancel: () => { pacer.cancel() }
  }
  if (total === 0) {
    // Nothing to close: not worth a log line or a place in the listing.
    pacer.start()
    return paced
  }
  book.add(entry)
  log.info({ paceId: id, cause, code, total, windowMs, maxPerSecond }, 'paced close started')
  void pacer.finished.then(() => {
    finishedAt = Date.now()
    // Cancelled once every connection had closed anyway (a drain that went idle): finished.
    const rest = items.slice(pacer.done)
    items = []
    leftClosed = rest.filter((b) => b.closed).length
    const open = rest.length - leftClosed
    state = open > 0 ? 'cancelled' : 'finished'
    book.ended(entry)
    log.info({ paceId: id, cause, closed: pacer.acted, skipped: pacer.done - pacer.acted + leftClosed, open, elapsedMs: finishedAt - startedAt, state }, 'paced close ended')
  })
  pacer.start()
  return paced
}

/** What `websocketBridge.closePaced` takes. */
export interface ClosePacedOptions {
  code: number
  reason: string
  cause: PacedCause
  /** Which of this app's connections to close (default: all); ignored when `bridges` is given. */
  which?: (b: Bridge) => boolean
  /** The connections to close, in this order (any app generation's); wins over `which`. */
  bridges?: Bridge[]
  /** The window; default `server.drainPace`. 0 closes them all at once. */
  windowMs?: number
}
