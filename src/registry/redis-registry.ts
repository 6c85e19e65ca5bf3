/**
 * The cluster-wide registry (cluster mode). Each instance keeps its own connections in memory
 * (the relay path never touches Redis) and is the only source of their views. Redis holds what
 * the cluster needs to find, count and page connections without asking every instance, written
 * only when a connection opens or closes (batched every few ms), plus one heartbeat per instance:
 *
 *   B = <prefix>{<prefix>reg}:  (one hash tag: on Redis Cluster every key is in one slot)
 *   B instances     set of instance ids
 *   B hb:<id>       heartbeat, rewritten every min(pingInterval, 1 s), expires so that a survivor
 *                   reaps a dead instance within 3 pingIntervals (3 pingIntervals less one period)
 *   B ids:<id>      set of the instance's connection ids (find, close and push by id)
 *   B n:<id>        hash: `*` -> its connections, `r:<route>` -> its connections on that route
 *   B u:<id>        hash: user id -> its connections of that user
 *
 * Nothing per message: an idle and a busy connection cost the same. A listing reads, in one
 * script, every live instance's count for the filter, so `total` is exact and the order is by
 * instance id, then by connectedAt within the instance; it then asks only the instances whose
 * share covers the page for their part (`page` over pub/sub, O(log n + page) there), so counters
 * are the owner's own at that moment. find, close and push by id cost two Redis round trips: a
 * script that looks the id up in the live instances' id sets, then the command to the owner over
 * pub/sub (<prefix>cmd:<id>, answered on <prefix>reply:<id>).
 *
 * When Redis is unreachable, listings fall back to this instance with `partial: true`; when it
 * returns (or a Sentinel or Cluster failover promoted a replica), this instance's keys are
 * rewritten from memory in chunks. Any instance reaps a dead one (heartbeat expired) in bounded
 * steps: its concurrent-connection shares are given back, its keys unlinked.
 *
 * What comes from Redis (bus messages, replies, set members) is checked by bus-messages.ts first:
 * what does not fit is skipped with a rate-limited warning, and never throws.
 */
import { randomUUID } from 'node:crypto'
import type { Redis } from 'ioredis'
import type { Bridge } from '../bridge/bridge.js'
import { codes } from '../errors.js'
import { DEFAULT_MAX_PAYLOAD } from '../config/defaults.js'
import { isSendableCode } from '../close-codes.js'
import { clusterKeyBase } from '../cluster/keys.js'
import { duplicateClient } from '../cluster/redis.js'
import {
  encodeData, encodeEnvelope, encodeReply, fitReason, isInstanceId, parseConnectionView, parseEnvelope, parseReply,
  RateLimitedWarning, type ConnectionView, type Envelope, type QueryCommand, type WireCommand
} from './bus-messages.js'
import { APPLY, COUNTS, DEAD, OWNER, REAP_STEP, TOTALS } from './registry-scripts.js'
import { MemoryRegistry, type ConnectionFilter, type ConnectionPage, type ConnectionRegistry, type ConnectionTotals } from './registry.js'

export interface RedisRegistryOptions {
  redis: Redis
  prefix: string
  instanceId: string
  /** websocket.pingInterval in ms: a dead instance is reaped within 3 of them. */
  pingInterval: number
  /** How long a command to another instance may take (default 2000 ms). */
  commandTimeout?: number
  /** How long a listing waits for the instances that hold its page (default 1000 ms). */
  pageTimeout?: number
  /** The most bytes a message pushed over the bus may have (websocket.maxPayload; default 1 MiB). */
  maxPayload?: number
  log?: { warn (o: object, msg: string): void, info (o: object, msg: string): void }
}

/** Opens and closes per script call (the script unpacks them onto Lua's stack). */
const BATCH = 1000
/** Ids per command when this instance's keys are rewritten. */
const REWRITE_CHUNK = 2000
/** Concurrency shares given back per reaping step. */
const REAP_BATCH = 500
/** Reaping steps for one dead instance per flush (each gives back REAP_BATCH shares). */
const REAP_STEPS = 200
/** A remote send's answer when the client is not reading (GW_ERR_CLIENT_BUSY). */
const SEND_BUSY = -1

type Scripts = Redis & {
  gwRegApply (ids: string, n: string, u: string, ...args: Array<string | number>): Promise<number>
  gwRegCounts (instances: string, base: string, hash: string, field: string, ttl: number): Promise<Array<string | number>>
  gwRegTotals (instances: string, base: string): Promise<Array<string | string[]>>
  gwRegOwner (instances: string, base: string, id: string): Promise<string | null>
  gwRegDead (instances: string, base: string): Promise<string[]>
  gwRegReapStep (instances: string, base: string, dead: string, batch: number): Promise<number>
}

interface Delta { route: string, user: string | null }
interface Waiter { resolve (r: { result: number, views?: unknown[] }): void, instance: string }
interface Share { instance: string, count: number }

export class RedisRegistry implements ConnectionRegistry {
  private readonly local: MemoryRegistry
  private readonly redis: Scripts
  private readonly sub: Redis
  private readonly base: string
  private readonly prefix: string
  private readonly id: string
  private readonly ttl: number
  private readonly period: number
  private readonly timeout: number
  private readonly pageTimeout: number
  private readonly maxPayload: number
  /** A heartbeat older than this (about two missed beats) is an instance not worth waiting for. */
  private readonly staleMs: number
  private readonly cmdChannel: string
  private readonly replyChannel: string
  /** A Redis Cluster client (PUBLISH counts only the receivers of one node). */
  private readonly onCluster: boolean
  private readonly log?: RedisRegistryOptions['log']
  private readonly busWarning: RateLimitedWarning
  private readonly storeWarning: RateLimitedWarning
  private readonly publishWarning: RateLimitedWarning
  /** Opens and closes not yet written (an open and close in one batch cancel out). */
  private opened = new Map<string, Delta>()
  private closed = new Map<string, Delta>()
  /** This instance's keys must be rewritten from memory (start, Redis back, a failed batch). */
  private dirty = true
  private readonly waiting = new Map<string, Waiter>()
  private timer: NodeJS.Timeout | null = null
  private soonTimer: NodeJS.Timeout | null = null
  /** The round running now. */
  private flushing: Promise<void> | null = null
  /** The round asked for while one runs. */
  private next: Promise<void> | null = null
  private stopped = false
  private lastBeat = 0

  constructor (opts: RedisRegistryOptions) {
    this.redis = opts.redis as Scripts
    this.prefix = opts.prefix
    this.base = clusterKeyBase(opts.prefix)
    this.id = opts.instanceId
    this.local = new MemoryRegistry(opts.instanceId)
    this.period = Math.max(50, Math.min(1000, opts.pingInterval))
    // A survivor reaps on its next beat after the key expired: one period less keeps the whole
    // within 3 pingIntervals of the death.
    this.ttl = Math.max(2 * this.period, 3 * opts.pingInterval - this.period)
    this.staleMs = Math.min(this.ttl, 2 * this.period + 1000)
    this.timeout = opts.commandTimeout ?? 2000
    this.pageTimeout = opts.pageTimeout ?? Math.min(1000, this.timeout)
    this.maxPayload = opts.maxPayload ?? DEFAULT_MAX_PAYLOAD
    this.cmdChannel = `${this.prefix}cmd:${this.id}`
    this.replyChannel = `${this.prefix}reply:${this.id}`
    this.log = opts.log
    const warn = (o: object, msg: string): void => { this.log?.warn(o, msg) }
    this.busWarning = new RateLimitedWarning(warn, 'cluster bus: message ignored')
    this.storeWarning = new RateLimitedWarning(warn, 'cluster registry: stored value skipped')
    this.publishWarning = new RateLimitedWarning(warn, 'cluster registry: publish failed')
    if (typeof this.redis.gwRegApply !== 'function') {
      this.redis.defineCommand('gwRegApply', { numberOfKeys: 3, lua: APPLY })
      this.redis.defineCommand('gwRegCounts', { numberOfKeys: 1, lua: COUNTS })
      this.redis.defineCommand('gwRegTotals', { numberOfKeys: 1, lua: TOTALS })
      this.redis.defineCommand('gwRegOwner', { numberOfKeys: 1, lua: OWNER })
      this.redis.defineCommand('gwRegDead', { numberOfKeys: 1, lua: DEAD })
      this.redis.defineCommand('gwRegReapStep', { numberOfKeys: 1, lua: REAP_STEP })
    }
    this.onCluster = (opts.redis as { isCluster?: boolean }).isCluster === true
    this.sub = duplicateClient(opts.redis)
    this.sub.on('error', () => { /* the main client reports outages */ })
    // onMessage does not throw on any input; the catch is there so that no bug of it can ever
    // become an unhandled rejection (which ends the process).
    this.sub.on('message', (channel: string, message: string) => {
      this.onMessage(channel, message).catch((err: unknown) => {
        this.busWarning.hit({ channel: this.channelKind(channel), reason: 'handler-failed', err: (err as Error)?.message })
      })
    })
    // Redis back (or another primary after a failover): its copy of this instance may be stale.
    opts.redis.on('ready', () => { this.dirty = true; void this.flush() })
  }

  private key (name: string, instance = this.id): string { return `${this.base}${name}:${instance}` }
  private get instancesKey (): string { return `${this.base}instances` }

  /** Starts publishing and listening for commands. */
  async start (): Promise<void> {
    // (Re)subscribe on every connection: the client has no offline queue, so a subscription
    // asked for while Redis is away would be lost.
    const channels = [this.cmdChannel, this.replyChannel]
    const subscribed = new Promise<void>((resolve) => {
      this.sub.on('ready', () => { this.sub.subscribe(...channels).then(() => resolve(), () => {}) })
    })
    this.sub.connect().catch(() => { /* reconnects on its own */ })
    await Promise.race([subscribed, new Promise((resolve) => setTimeout(resolve, 1000).unref())])
    this.timer = setInterval(() => { void this.flush() }, this.period)
    this.timer.unref()
    await this.flush()
  }

  /** Stops publishing and removes this instance from Redis (a clean shutdown). */
  async stop (): Promise<void> {
    this.stopped = true
    if (this.timer !== null) clearInterval(this.timer)
    if (this.soonTimer !== null) clearTimeout(this.soonTimer)
    this.timer = null
    this.soonTimer = null
    for (const w of this.waiting.values()) w.resolve({ result: 0 })
    this.waiting.clear()
    try {
      await this.redis.multi().del(this.key('hb'), this.key('ids'), this.key('n'), this.key('u')).srem(this.instancesKey, this.id).exec()
    } catch { /* Redis gone: the heartbeat expires and a survivor reaps the rest */ }
    this.sub.disconnect()
  }

  // The local, synchronous part: the bridge's hot path.
  get size (): number { return this.local.size }

  add (bridge: Bridge): void {
    const { id, route, userId } = bridge.info
    this.local.add(bridge)
    if (this.closed.has(id)) this.closed.delete(id)
    else this.opened.set(id, { route, user: userId })
    this.soon()
  }

  remove (bridge: Bridge): void {
    const { id, route, userId } = bridge.info
    if (this.local.get(id) !== bridge) return
    this.local.remove(bridge)
    if (this.opened.has(id)) this.opened.delete(id)
    else this.closed.set(id, { route, user: userId })
    this.soon()
  }

  get (id: string): Bridge | undefined { return this.local.get(id) }
  values (): IterableIterator<Bridge> { return this.local.values() }
  list (filter?: ConnectionFilter): ConnectionPage { return this.local.list(filter) }

  /** Opens and closes are written within a few ms, still batched under churn. */
  private soon (): void {
    if (this.soonTimer !== null || this.timer === null) return
    this.soonTimer = setTimeout(() => { this.soonTimer = null; void this.flush() }, 10)
    this.soonTimer.unref()
  }

  /**
   * One round: heartbeat, pending opens and closes (or a rewrite), and reaping once a period.
   * Called while a round runs, it waits for that one, then runs its own.
   */
  flush (): Promise<void> {
    if (this.flushing !== null) {
      // At most one round waits behind the running one, however often this is called meanwhile.
      this.next ??= this.flushing.then(() => { this.next = null; return this.flush() })
      return this.next
    }
    if (this.stopped || this.redis.status !== 'ready') return Promise.resolve()
    this.flushing = this.round().finally(() => { this.flushing = null })
    return this.flushing
  }

  private async round (): Promise<void> {
    try {
      // The heartbeat and reaping once a period; a flush for opens and closes in between is one call.
      const now = Date.now()
      const beat = now - this.lastBeat >= this.period
      if (beat || this.dirty) {
        this.lastBeat = now
        await this.redis.multi().sadd(this.instancesKey, this.id).set(this.key('hb'), '1', 'PX', this.ttl).exec()
      }
      if (this.dirty) await this.rewrite()
      else await this.applyPending()
      if (beat) await this.reap()
    } catch (err) {
      this.publishWarning.hit({ err: (err as Error).message })
    }
  }

  private async applyPending (): Promise<void> {
    if (this.opened.size === 0 && this.closed.size === 0) return
    const opened = [...this.opened]
    const closed = [...this.closed]
    this.opened = new Map()
    this.closed = new Map()
    try {
      const p = this.redis.pipeline()
      for (let i = 0, j = 0; i < opened.length || j < closed.length; i += BATCH, j += BATCH) {
        const adds = opened.slice(i, i + BATCH)
        const rems = closed.slice(j, j + BATCH)
        const n = new Map<string, number>()
        const u = new Map<string, number>()
        const count = (d: Delta, by: number): void => {
          n.set('*', (n.get('*') ?? 0) + by)
          n.set(`r:${d.route}`, (n.get(`r:${d.route}`) ?? 0) + by)
          if (d.user !== null) u.set(d.user, (u.get(d.user) ?? 0) + by)
        }
        for (const [, d] of adds) count(d, 1)
        for (const [, d] of rems) count(d, -1)
        const args: Array<string | number> = [adds.length, rems.length]
        for (const [id] of adds) args.push(id)
        for (const [id] of rems) args.push(id)
        const nFields = [...n].filter(([, d]) => d !== 0)
        args.push(nFields.length)
        for (const [f, d] of nFields) args.push(f, d)
        for (const [f, d] of u) if (d !== 0) args.push(f, d)
        ;(p as unknown as Scripts).gwRegApply(this.key('ids'), this.key('n'), this.key('u'), ...args)
      }
      const results = await p.exec()
      if (results === null || results.some(([err]) => err !== null)) throw results?.find(([err]) => err !== null)?.[0] ?? new Error('batch refused')
    } catch (err) {
      // What Redis holds for this instance is no longer known: rewrite it all from memory.
      this.dirty = true
      throw err
    }
  }

  /**
   * Rewrites this instance's keys from memory: counts first (so totals are right at once), then
   * the id set in chunks, each its own command, so that neither this process nor Redis is held
   * for long. Opens and closes after the snapshot are applied as usual afterwards.
   */
  private async rewrite (): Promise<void> {
    this.dirty = false
    this.opened = new Map()
    this.closed = new Map()
    try {
      const snapshot = [...this.local.values()]
      const users = new Map<string, number>()
      for (const b of snapshot) if (b.info.userId !== null) users.set(b.info.userId, (users.get(b.info.userId) ?? 0) + 1)
      const n: Array<string | number> = ['*', snapshot.length]
      for (const [route, c] of Object.entries(this.local.routeCounts())) n.push(`r:${route}`, c)
      const m = this.redis.multi().del(this.key('ids'), this.key('n'), this.key('u')).hset(this.key('n'), ...n)
      const flat: Array<string | number> = []
      for (const [user, c] of users) flat.push(user, c)
      for (let i = 0; i < flat.length; i += 2 * REWRITE_CHUNK) m.hset(this.key('u'), ...flat.slice(i, i + 2 * REWRITE_CHUNK))
      await m.exec()
      for (let i = 0; i < snapshot.length; i += REWRITE_CHUNK) {
        await this.redis.sadd(this.key('ids'), ...snapshot.slice(i, i + REWRITE_CHUNK).map((b) => b.info.id))
      }
    } catch (err) {
      this.dirty = true
      throw err
    }
  }

  /** Reaps every instance whose heartbeat expired, in bounded steps; junk members are dropped. */
  private async reap (): Promise<void> {
    const dead = await this.redis.gwRegDead(this.instancesKey, this.base)
    const junk = dead.filter((m) => !isInstanceId(m))
    if (junk.length > 0) {
      await this.redis.srem(this.instancesKey, ...junk)
      this.storeWarning.hit({ key: 'instances', reason: 'bad-instance-id', count: junk.length })
    }
    for (const instance of dead) {
      if (!isInstanceId(instance) || instance === this.id) continue
      try {
        let steps = 0
        let r = 1
        while (r === 1 && steps++ < REAP_STEPS) r = await this.redis.gwRegReapStep(this.instancesKey, this.base, instance, REAP_BATCH)
        if (r === 0) this.log?.info({ instance }, 'cluster: reaped a dead instance')
      } catch (err) {
        this.storeWarning.hit({ key: `conc:inst:${instance}`, reason: 'reap-failed', count: 1, err: (err as Error).message })
      }
    }
  }

  /**
   * Every live instance's share of `filter`, in listing order (by instance id). This instance's
   * share is its own count, whatever Redis has yet; instances with a stale heartbeat are left out
   * (the listing is then partial).
   */
  private async shares (filter: { route?: string, user?: string }): Promise<{ shares: Share[], partial: boolean }> {
    const [hash, field] = filter.user !== undefined ? ['u', filter.user] : ['n', filter.route !== undefined ? `r:${filter.route}` : '*']
    const flat = await this.redis.gwRegCounts(this.instancesKey, this.base, hash, field, this.ttl)
    const shares: Share[] = []
    let partial = false
    for (let i = 0; i + 2 < flat.length; i += 3) {
      const instance = String(flat[i])
      const count = Number(flat[i + 2])
      if (!isInstanceId(instance)) continue
      if (instance === this.id) continue
      if (!Number.isSafeInteger(count) || count < 0) { this.storeWarning.hit({ key: `${hash}:${instance}`, reason: 'bad-count', count: 1 }); continue }
      if (Number(flat[i + 1]) > this.staleMs) { if (count > 0) partial = true; continue }
      if (count > 0) shares.push({ instance, count })
    }
    const mine = this.local.count(filter)
    if (mine > 0) shares.push({ instance: this.id, count: mine })
    shares.sort((a, b) => (a.instance < b.instance ? -1 : a.instance > b.instance ? 1 : 0))
    // A route and a user both: Redis has the user's count; each holder counts the intersection.
    if (filter.user !== undefined && filter.route !== undefined) {
      const exact = await Promise.all(shares.map(async (s) => {
        if (s.instance === this.id) return s
        const r = await this.query(s.instance, { op: 'count', ...filter }, this.pageTimeout)
        if (r === null) { partial = true; return { ...s, count: 0 } }
        return { ...s, count: r.result }
      }))
      return { shares: exact.filter((s) => s.count > 0), partial }
    }
    return { shares, partial }
  }

  async search (filter: ConnectionFilter = {}): Promise<ConnectionPage> {
    if (this.redis.status !== 'ready') return { ...this.local.list(filter), partial: true }
    const limit = filter.limit ?? 100
    const offset = filter.offset ?? 0
    const f: { route?: string, user?: string } = {}
    if (filter.route !== undefined) f.route = filter.route
    if (filter.user !== undefined) f.user = filter.user
    let found: { shares: Share[], partial: boolean }
    try {
      found = await this.shares(f)
    } catch {
      return { ...this.local.list(filter), partial: true }
    }
    let partial = found.partial
    let total = 0
    const parts: Array<{ instance: string, offset: number, limit: number }> = []
    for (const s of found.shares) {
      const from = Math.max(offset, total)
      const to = Math.min(offset + limit, total + s.count)
      if (from < to) parts.push({ instance: s.instance, offset: from - total, limit: to - from })
      total += s.count
    }
    const pages = await Promise.all(parts.map(async (p) => {
      if (p.instance === this.id) return this.local.list({ ...f, offset: p.offset, limit: p.limit }).connections
      const r = await this.query(p.instance, { op: 'page', ...f, offset: p.offset, limit: p.limit }, this.pageTimeout)
      if (r === null) { partial = true; return [] }
      return this.views(r.views ?? [], p.instance).slice(0, p.limit)
    }))
    const page: ConnectionPage = { total, connections: pages.flat() }
    if (partial) page.partial = true
    return page
  }

  async totals (): Promise<ConnectionTotals> {
    const own = await this.local.totals()
    if (this.redis.status !== 'ready') return { ...own, partial: true }
    let flat: Array<string | string[]>
    try {
      flat = await this.redis.gwRegTotals(this.instancesKey, this.base)
    } catch {
      return { ...own, partial: true }
    }
    const out: ConnectionTotals = { total: 0, routes: {}, instances: [] }
    const add = (instance: string, total: number, routes: Record<string, number>): void => {
      out.instances.push({ instanceId: instance, connections: total })
      out.total += total
      for (const [r, c] of Object.entries(routes)) out.routes[r] = (out.routes[r] ?? 0) + c
    }
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const instance = String(flat[i])
      if (!isInstanceId(instance) || instance === this.id) continue
      const h = Array.isArray(flat[i + 1]) ? flat[i + 1] as string[] : []
      let total = 0
      const routes: Record<string, number> = {}
      for (let j = 0; j + 1 < h.length; j += 2) {
        const c = Number(h[j + 1])
        if (!Number.isSafeInteger(c) || c < 0) continue
        if (h[j] === '*') total = c
        else if (h[j].startsWith('r:')) routes[h[j].slice(2)] = c
      }
      add(instance, total, routes)
    }
    add(this.id, own.total, own.routes)
    out.instances.sort((a, b) => (a.instanceId < b.instanceId ? -1 : a.instanceId > b.instanceId ? 1 : 0))
    return out
  }

  /** The views an instance sent, checked one by one (a bad one is skipped with a warning). */
  private views (raw: unknown[], instance: string, id?: string): ConnectionView[] {
    const out: ConnectionView[] = []
    for (const v of raw) {
      const e = parseConnectionView(v, { instanceId: instance, id })
      if (e.ok) out.push(e.value)
      else this.busWarning.hit({ channel: 'reply', instance, reason: e.reason })
    }
    return out
  }

  async find (id: string): Promise<Record<string, unknown> | null> {
    const b = this.local.get(id)
    if (b !== undefined) return b.toJSON()
    const owner = await this.owner(id)
    if (owner === null) return null
    const r = await this.query(owner, { op: 'find', id }, this.timeout)
    if (r === null || r.result !== 1) return null
    return this.views(r.views ?? [], owner, id)[0] ?? null
  }

  async closeById (id: string, code: number, reason: string): Promise<boolean> {
    if (this.local.get(id) !== undefined) return this.local.closeById(id, code, reason)
    // What the owner would refuse is not sent: a code no close frame may carry fails here as it
    // would locally, and a long reason is cut as a local close frame cuts it.
    if (!isSendableCode(code)) throw new codes.GW_ERR_BAD_CLOSE_CODE(code)
    const owner = await this.owner(id)
    return owner !== null && await this.command(owner, { op: 'close', id, code, reason: fitReason(reason) }) > 0
  }

  async sendById (id: string, data: Buffer | string, isBinary: boolean): Promise<boolean> {
    if (this.local.get(id) !== undefined) return this.local.sendById(id, data, isBinary)
    // The owner ignores a message over maxPayload: no point looking it up.
    if (byteLength(data) > this.maxPayload) return false
    const owner = await this.owner(id)
    if (owner === null) return false
    const r = await this.command(owner, { op: 'send', id, data: encodeData(data), binary: isBinary })
    if (r === SEND_BUSY) throw new codes.GW_ERR_CLIENT_BUSY(id)
    return r > 0
  }

  async broadcast (filter: { route?: string, user?: string }, data: Buffer | string, isBinary: boolean): Promise<number> {
    let n = await this.local.broadcast(filter, data, isBinary)
    if (this.redis.status !== 'ready' || byteLength(data) > this.maxPayload) return n
    let others: Share[] = []
    try {
      others = (await this.shares(filter.route !== undefined && filter.user !== undefined ? { user: filter.user } : filter)).shares.filter((s) => s.instance !== this.id)
    } catch { return n }
    const results = await Promise.all(others.map((s) => this.command(s.instance, { op: 'broadcast', ...filter, data: encodeData(data), binary: isBinary })))
    for (const r of results) n += r
    return n
  }

  /** The live instance that holds connection `id` (one script call), or null. */
  private async owner (id: string): Promise<string | null> {
    if (this.redis.status !== 'ready') return null
    try {
      const owner = await this.redis.gwRegOwner(this.instancesKey, this.base, id)
      return typeof owner === 'string' && isInstanceId(owner) && owner !== this.id ? owner : null
    } catch {
      return null
    }
  }

  /** Sends a command to another instance; resolves with its result (0 on timeout). */
  private async command (instance: string, cmd: WireCommand): Promise<number> {
    return (await this.query(instance, cmd, this.timeout))?.result ?? 0
  }

  /** Sends a command or question to another instance; null when it did not answer in time. */
  private query (instance: string, cmd: WireCommand | QueryCommand, timeoutMs: number): Promise<{ result: number, views?: unknown[] } | null> {
    const rid = randomUUID()
    return new Promise((resolve) => {
      const done = (r: { result: number, views?: unknown[] } | null): void => { clearTimeout(timer); this.waiting.delete(rid); resolve(r) }
      const timer = setTimeout(() => done(null), timeoutMs)
      this.waiting.set(rid, { resolve: done, instance })
      this.redis.publish(`${this.prefix}cmd:${instance}`, encodeEnvelope(rid, this.id, cmd)).then((receivers) => {
        // On Redis Cluster the count is of the node that took the PUBLISH only: no early answer.
        if (receivers === 0 && !this.onCluster) done(null)
      }, () => done(null))
    })
  }

  private channelKind (channel: string): string {
    return channel === this.replyChannel ? 'reply' : channel === this.cmdChannel ? 'cmd' : 'other'
  }

  private async onMessage (channel: string, message: string): Promise<void> {
    const kind = this.channelKind(channel)
    if (kind === 'reply') {
      const r = parseReply(message)
      // A reply for a request no longer waited for (it timed out) is normal, and dropped silently.
      if (r.ok) this.waiting.get(r.value.rid)?.resolve(r.value)
      else this.busWarning.hit({ channel: kind, reason: r.reason, bytes: message.length })
      return
    }
    if (kind !== 'cmd') return
    const env = parseEnvelope(message, this.maxPayload)
    if (!env.ok) { this.busWarning.hit({ channel: kind, reason: env.reason, bytes: message.length }); return }
    const { result, views } = await this.execute(env.value)
    await this.redis.publish(`${this.prefix}reply:${env.value.from}`, encodeReply(env.value.rid, result, views)).catch(() => {})
  }

  /** Runs a checked command on this instance's connections; its result is what the sender gets. */
  private async execute ({ cmd }: Envelope): Promise<{ result: number, views?: unknown[] }> {
    switch (cmd.op) {
      case 'close': return { result: await this.local.closeById(cmd.id, cmd.code, cmd.reason) ? 1 : 0 }
      case 'send':
        try {
          return { result: await this.local.sendById(cmd.id, cmd.payload, cmd.binary) ? 1 : 0 }
        } catch {
          return { result: SEND_BUSY }
        }
      case 'broadcast': return { result: await this.local.broadcast({ route: cmd.route, user: cmd.user }, cmd.payload, cmd.binary) }
      case 'find': {
        const v = this.local.get(cmd.id)?.toJSON()
        return v === undefined ? { result: 0 } : { result: 1, views: [v] }
      }
      case 'count': return { result: this.local.count(cmd) }
      case 'page': {
        const views = this.local.list({ route: cmd.route, user: cmd.user, offset: cmd.offset, limit: cmd.limit }).connections
        return { result: views.length, views }
      }
    }
  }
}

function byteLength (data: Buffer | string): number {
  return typeof data === 'string' ? Buffer.byteLength(data) : data.length
}
