/**
 * Active health checks of an upstream's targets (`upstreams.*.healthCheck`):
 * `GET target + path` every interval with a timeout; a target turns unhealthy after
 * `unhealthyAfter` consecutive failures and healthy after `healthyAfter` consecutive successes.
 * This module only keeps the state and reports changes; logging and what follows from a change
 * belong to the pool.
 */
import { Agent, fetch as undiciFetch } from 'undici'

export type ActiveHealth = 'unchecked' | 'healthy' | 'unhealthy'

export interface HealthCheckOptions {
  /** Path appended to the target (after its base path, if any); starts with `/`. */
  path: string
  /** Milliseconds between probes of a target. */
  interval: number
  /** Milliseconds a probe may take, response headers and body included. */
  timeout: number
  unhealthyAfter: number
  healthyAfter: number
}

export interface HealthChange {
  target: string
  from: ActiveHealth
  to: ActiveHealth
  /** Why the last probe failed; null for a change to healthy. */
  error: string | null
}

export interface HealthCheckerOptions {
  /** Called once per state change, never for a probe that leaves the state as it was. */
  onChange: (change: HealthChange) => void
  /** Called after every failed probe (to keep the target's last error). */
  onProbeFailure?: (target: string, error: string) => void
  fetchImpl?: typeof fetch
  /**
   * The TLS server name of a target whose certificate is not for its address (one found by DNS:
   * the name it was resolved from); used only when `fetchImpl` is not given.
   */
  servernameOf?: (target: string) => string | undefined
  /** PEM of an extra CA for https targets; used only when `fetchImpl` is not given. */
  ca?: string
}

interface TargetHealth {
  status: ActiveHealth
  successes: number
  failures: number
  probing: boolean
}

/** The outcome of one probe: ok, or the reason it failed. */
export interface ProbeResult { ok: boolean, error: string | null }

/**
 * One health probe: a 2xx or 3xx answer within the timeout is a success (redirects are not
 * followed); any other status, a timeout or a connection error is a failure.
 */
export async function probe (url: string, timeout: number, fetchImpl: typeof fetch, abort?: AbortSignal): Promise<ProbeResult> {
  const { signal, done } = withTimeout(timeout, abort)
  try {
    const res = await fetchImpl(url, { method: 'GET', redirect: 'manual', signal, headers: { 'user-agent': 'tollgate-health-check' } })
    // Read the body (bounded by the same signal) so the connection can be reused; its content
    // does not matter.
    await res.arrayBuffer().catch(() => {})
    if (res.status >= 200 && res.status < 400) return { ok: true, error: null }
    return { ok: false, error: `status ${res.status}` }
  } catch (err) {
    if (signal.aborted && (signal.reason as Error | undefined)?.name === 'TimeoutError') return { ok: false, error: `timeout after ${timeout}ms` }
    return { ok: false, error: describeError(err) }
  } finally {
    done()
  }
}

/**
 * AbortSignal.timeout(ms), also aborted by `abort` (AbortSignal.any is not in every Node 20).
 * `done()` removes the listener from `abort`, which outlives many probes.
 */
function withTimeout (ms: number, abort: AbortSignal | undefined): { signal: AbortSignal, done: () => void } {
  const timeout = AbortSignal.timeout(ms)
  if (abort === undefined) return { signal: timeout, done: () => {} }
  const ac = new AbortController()
  if (abort.aborted) {
    ac.abort(abort.reason)
    return { signal: ac.signal, done: () => {} }
  }
  const onTimeout = (): void => { ac.abort(timeout.reason) }
  const onAbort = (): void => { ac.abort(abort.reason) }
  timeout.addEventListener('abort', onTimeout, { once: true })
  abort.addEventListener('abort', onAbort, { once: true })
  return {
    signal: ac.signal,
    done: () => {
      timeout.removeEventListener('abort', onTimeout)
      abort.removeEventListener('abort', onAbort)
    }
  }
}

/** `fetch failed` says nothing: the cause's code (ECONNREFUSED, ENOTFOUND, ...) does. */
function describeError (err: unknown): string {
  const cause = (err as { cause?: { code?: unknown, message?: unknown } } | null)?.cause
  if (typeof cause?.code === 'string') return cause.code
  if (typeof cause?.message === 'string' && cause.message !== '') return cause.message
  return err instanceof Error ? err.message : String(err)
}

/** Probes every target on one unref()'d interval timer and tracks each target's state. */
export class HealthChecker {
  private readonly state = new Map<string, TargetHealth>()
  private timer: NodeJS.Timeout | null = null
  /** Aborts the probes in flight when the checker stops, so a stopped checker changes nothing. */
  private abort: AbortController | null = null
  /** undici Agents by TLS server name ('' for the default), made when first needed. */
  private agents = new Map<string, Agent>()

  constructor (targets: readonly string[], readonly options: HealthCheckOptions, private readonly hooks: HealthCheckerOptions) {
    for (const t of targets) this.add(t)
  }

  /** The targets probed, in the order they were added. */
  get targets (): string[] { return [...this.state.keys()] }

  /** Probes `target` too from the next round on (a DNS answer or the admin API added it). */
  add (target: string): void {
    if (!this.state.has(target)) this.state.set(target, { status: 'unchecked', successes: 0, failures: 0, probing: false })
  }

  /** Stops probing `target` and forgets its state; a probe in flight for it changes nothing. */
  remove (target: string): void {
    this.state.delete(target)
  }

  /** The target's state; `unchecked` until its first probe decides it (or for an unknown target). */
  status (target: string): ActiveHealth {
    return this.state.get(target)?.status ?? 'unchecked'
  }

  get running (): boolean { return this.timer !== null }

  /** Probes every target now and then every interval. Calling it again while running does nothing. */
  start (): void {
    if (this.timer !== null) return
    this.abort = new AbortController()
    // The hooks are the pool's, which catch their own errors; nothing else can reject.
    const tick = (): void => { this.round().catch(() => {}) }
    this.timer = setInterval(tick, this.options.interval)
    this.timer.unref()
    tick()
  }

  /** Clears the timer and aborts probes in flight; the states stay as they were. */
  stop (): void {
    if (this.timer === null) return
    clearInterval(this.timer)
    this.timer = null
    this.abort?.abort()
    this.abort = null
    for (const s of this.state.values()) s.probing = false
    const agents = [...this.agents.values()]
    this.agents.clear()
    for (const agent of agents) agent.close().catch(() => {})
  }

  /**
   * One probe of every target that has no probe in flight; resolves when they are done. Does
   * nothing while stopped.
   */
  round (): Promise<void> {
    const abort = this.abort?.signal
    if (abort === undefined) return Promise.resolve()
    return Promise.all(this.targets.map(async (target) => {
      const s = this.state.get(target)!
      if (s.probing) return
      s.probing = true
      const result = await probe(target + this.options.path, this.options.timeout, this.fetchImpl(target), abort)
      // A probe that outlived stop() (or a restart), or its target's removal, changes nothing.
      if (abort.aborted || this.state.get(target) !== s) return
      s.probing = false
      this.record(target, s, result)
    })).then(() => {})
  }

  private record (target: string, s: TargetHealth, result: ProbeResult): void {
    const from = s.status
    if (result.ok) {
      s.failures = 0
      s.successes++
      // A target that has not failed yet is healthy at its first success; one that is unhealthy
      // must prove itself healthyAfter times.
      if (from !== 'healthy' && (from === 'unchecked' || s.successes >= this.options.healthyAfter)) s.status = 'healthy'
    } else {
      s.successes = 0
      s.failures++
      this.hooks.onProbeFailure?.(target, result.error ?? 'failed')
      if (from !== 'unhealthy' && s.failures >= this.options.unhealthyAfter) s.status = 'unhealthy'
    }
    if (s.status !== from) this.hooks.onChange({ target, from, to: s.status, error: result.error })
  }

  private fetchImpl (target: string): typeof fetch {
    if (this.hooks.fetchImpl !== undefined) return this.hooks.fetchImpl
    const servername = target.startsWith('https:') ? this.hooks.servernameOf?.(target) : undefined
    if (this.hooks.ca === undefined && servername === undefined) return fetch
    // Node's global fetch takes no CA or server name option; undici's own fetch with an Agent
    // that has them does (the same undici the proxy uses, so the check sees what traffic sees).
    const key = servername ?? ''
    let dispatcher = this.agents.get(key)
    if (dispatcher === undefined) {
      dispatcher = new Agent({ connect: { ca: this.hooks.ca, ...(servername !== undefined ? { servername } : {}) } })
      this.agents.set(key, dispatcher)
    }
    const agent = dispatcher
    return ((input: string, init?: RequestInit) => undiciFetch(input, { ...(init as object), dispatcher: agent })) as unknown as typeof fetch
  }
}
