/**
 * Counting what a process holds open, for leak and timer tests. `process.getActiveResourcesInfo()`
 * leaves out unref()'d handles and timers (the heartbeat sweep's timer is unref()'d), so timers
 * are tracked with an async hook, which sees every Timeout from creation to clear/expiry.
 */
import { createHook } from 'node:async_hooks'
import { setImmediate as tick } from 'node:timers/promises'
import { createServer, type AddressInfo } from 'node:net'

/** Counts of `process.getActiveResourcesInfo()` entries by name (ref'd handles and timers only). */
export function activeResources (): Record<string, number> {
  const out: Record<string, number> = {}
  for (const name of process.getActiveResourcesInfo()) out[name] = (out[name] ?? 0) + 1
  return out
}

/** Open TCP sockets of this process (both names Node has used for them). */
export function tcpSockets (): number {
  const r = activeResources()
  return (r.TCPSocketWrap ?? 0) + (r.TCPWRAP ?? 0)
}

interface TimerResource { _repeat: number | null, _idleTimeout: number, hasRef (): boolean }

export interface TimerTracker {
  /** Timers created since tracking began and not yet cleared or expired, unref()'d ones included. */
  live (): TimerResource[]
  /** Live repeating timers (setInterval). */
  intervals (): TimerResource[]
  stop (): void
}

/** Starts tracking every Timeout created from now on. Destroy events arrive asynchronously: `await settle()` before reading. */
export function trackTimers (): TimerTracker {
  const timers = new Map<number, TimerResource>()
  const hook = createHook({
    init (id, type, _trigger, resource) { if (type === 'Timeout') timers.set(id, resource as TimerResource) },
    destroy (id) { timers.delete(id) }
  }).enable()
  return {
    live: () => [...timers.values()],
    intervals: () => [...timers.values()].filter((t) => t._repeat !== null),
    stop: () => { hook.disable() }
  }
}

/** Lets pending I/O callbacks and async-hook destroy events run (a few turns of the event loop, no fixed delay). */
export async function settle (turns = 3): Promise<void> {
  for (let i = 0; i < turns; i++) await tick()
}

/**
 * Polls `pred` until it holds, for conditions that have no event to await (a count reaching zero).
 * Rejects with `what` and the last value after `timeoutMs`.
 */
export async function waitFor (pred: () => boolean | Promise<boolean>, what: string | (() => string), timeoutMs = 5000, everyMs = 10): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (!(await pred())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}`)
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
}

/** A TCP port on 127.0.0.1 with nothing listening (bound, then released): a dead upstream. */
export async function freePort (): Promise<number> {
  const s = createServer()
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  const port = (s.address() as AddressInfo).port
  await new Promise<void>((resolve) => s.close(() => resolve()))
  return port
}

/** Rejects if `p` has not settled within `ms` (bounds a test step instead of the whole test). */
export async function within<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const limit = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms) })
  try {
    return await Promise.race([p, limit])
  } finally {
    clearTimeout(timer)
  }
}
