/**
 * DNS discovery for an upstream with `resolve` (as nginx Plus's `server ... resolve`): every
 * `resolve` interval, each configured host name is looked up and the pool's targets follow the
 * answer (./pool.ts `setResolved`): a new address is a new target, an address that is gone gets
 * no new connections and keeps its open ones.
 *
 * An answer that says the name does not exist (ENOTFOUND, ENODATA) is an empty answer: every
 * address of the name is retired. Any other failure (a timeout, SERVFAIL, a refused query) keeps
 * the last answer, as nginx keeps using the addresses it has while its resolver is away.
 * Lookups run one at a time per upstream, on one unref()'d timer, never overlapping.
 */
import { lookup } from 'node:dns/promises'
import type { ResolvedName, UpstreamPool } from './pool.js'
import { isIP } from 'node:net'
import { MAX_RESOLVED_ADDRESSES, RESOLVE_TIMEOUT } from '../config/defaults.js'

/** Resolves a host name to its addresses (IPv4 and IPv6, as strings). */
export type Resolve = (hostname: string) => Promise<string[]>

export interface ResolverLogger {
  warn (o: object, msg: string): void
}

/**
 * The system resolver, as a connection to the name would use it (getaddrinfo: /etc/hosts,
 * then DNS), every address it gives.
 */
export const systemResolve: Resolve = async (hostname) => {
  const answers = await lookup(hostname, { all: true })
  return answers.map((a) => a.address)
}

/** Codes by which a resolver says the name has no address (not that it failed to ask). */
const NO_SUCH_NAME = new Set(['ENOTFOUND', 'ENODATA', 'ENONAME'])

export interface ResolverOptions {
  resolve?: Resolve
  log?: ResolverLogger
  /** Longest wait for one lookup (default RESOLVE_TIMEOUT). */
  timeoutMs?: number
}

export class TargetResolver {
  private timer: NodeJS.Timeout | null = null
  private running: Promise<void> | null = null
  private stopped = true
  /** Set by stop(): a lookup still in flight then changes nothing. */
  private closed = false
  private readonly resolve: Resolve
  private readonly timeoutMs: number

  constructor (private readonly pool: UpstreamPool, private readonly opts: ResolverOptions = {}) {
    this.resolve = opts.resolve ?? systemResolve
    this.timeoutMs = opts.timeoutMs ?? RESOLVE_TIMEOUT
  }

  /** Whether the upstream has names to resolve at all. */
  get active (): boolean { return this.pool.names.length > 0 && this.pool.config.resolve > 0 }

  /**
   * Resolves every name now, then every `resolve` interval; resolves once the first round is
   * done (so the first requests find targets). Calling it again while started does nothing.
   */
  async start (): Promise<void> {
    if (!this.active || !this.stopped) return
    this.stopped = false
    this.closed = false
    await this.refresh()
    this.schedule()
  }

  /** Stops the timer; a lookup in flight finishes but changes nothing. */
  stop (): void {
    this.stopped = true
    this.closed = true
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
  }

  /** One round: every name looked up once, the pool told each answer. Rounds never overlap. */
  refresh (): Promise<void> {
    this.running ??= this.round().finally(() => { this.running = null })
    return this.running
  }

  private schedule (): void {
    if (this.stopped) return
    this.timer = setTimeout(() => {
      this.timer = null
      this.refresh().finally(() => { this.schedule() })
    }, this.pool.config.resolve)
    this.timer.unref()
  }

  private async round (): Promise<void> {
    for (const name of this.pool.names) {
      const answer = await this.lookup(name)
      // A round that outlived stop() (the app closing) leaves the pool as it is.
      if (answer === null || this.closed) continue
      this.pool.setResolved(name, answer)
    }
  }

  /**
   * The addresses of an answer that can be targets, at most MAX_RESOLVED_ADDRESSES of them (in
   * the answer's order). A zone-scoped IPv6 address (`fe80::1%eth0`) names an interface of this
   * host, which a URL cannot carry, and anything that is not an IP address is no address: both
   * are left out. What is left out is logged.
   */
  private usable (name: ResolvedName, answer: string[]): string[] {
    const skipped = answer.filter((a) => a.includes('%') || isIP(a) === 0)
    const ok = skipped.length === 0 ? answer : answer.filter((a) => !a.includes('%') && isIP(a) !== 0)
    if (skipped.length > 0) this.opts.log?.warn({ upstream: this.pool.name, name: name.hostname, skipped: skipped.slice(0, 8).map((a) => a.slice(0, 64)) }, 'upstream name: addresses that cannot be targets ignored')
    if (ok.length <= MAX_RESOLVED_ADDRESSES) return ok
    this.opts.log?.warn({ upstream: this.pool.name, name: name.hostname, addresses: ok.length, max: MAX_RESOLVED_ADDRESSES }, 'upstream name: too many addresses, the first ones taken')
    return ok.slice(0, MAX_RESOLVED_ADDRESSES)
  }

  /** The addresses of `name`, [] when it has none, or null when the lookup failed. */
  private async lookup (name: ResolvedName): Promise<string[] | null> {
    let timer: NodeJS.Timeout | undefined
    try {
      const timeout = new Promise<never>((_resolve, reject) => {
        // Not unref()'d: a lookup in flight holds the process anyway, and this ends it.
        timer = setTimeout(() => { reject(Object.assign(new Error(`no answer within ${this.timeoutMs}ms`), { code: 'ETIMEOUT' })) }, this.timeoutMs)
      })
      const answer = await Promise.race([this.resolve(name.hostname), timeout])
      if (!Array.isArray(answer) || answer.some((a) => typeof a !== 'string')) throw new TypeError('the resolver did not answer a list of addresses')
      return this.usable(name, [...new Set(answer)])
    } catch (err) {
      const code = (err as { code?: unknown }).code
      if (typeof code === 'string' && NO_SUCH_NAME.has(code)) return []
      this.opts.log?.warn({ upstream: this.pool.name, name: name.hostname, code, err: (err as Error).message }, 'upstream name not resolved, keeping the last answer')
      return null
    } finally {
      clearTimeout(timer)
    }
  }
}
