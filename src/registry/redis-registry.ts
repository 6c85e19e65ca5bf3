/**
 * The cluster-wide registry (cluster mode). Each instance keeps its own connections in memory
 * (the hot path never touches Redis) and publishes them to Redis in batches:
 *
 *   <prefix>instances           set of instance ids
 *   <prefix>inst:<id>           heartbeat key, expires after 3 pingIntervals
 *   <prefix>conns:<id>          hash connId -> JSON view, refreshed with the heartbeat
 *
 * Listings read every live instance's hash; closing or messaging a connection of another
 * instance goes to its owner over pub/sub (<prefix>cmd:<id>, answered on <prefix>reply:<id>).
 * When Redis is unreachable, listings fall back to this instance with `partial: true`, and
 * everything is republished when it returns. Any instance reaps a dead one: its hash goes and
 * its share of the concurrent-connection counts is given back.
 *
 * What comes from Redis (bus messages, hash entries, set members) is checked by bus-messages.ts
 * first: what does not fit is skipped with a rate-limited warning, and never throws.
 */
import { randomUUID } from 'node:crypto'
import type { Redis } from 'ioredis'
import type { Bridge } from '../bridge/bridge.js'
import { codes } from '../errors.js'
import { DEFAULT_MAX_PAYLOAD } from '../config/defaults.js'
import { isSendableCode } from '../close-codes.js'
import {
  encodeData, encodeEnvelope, encodeReply, fitReason, isInstanceId, parseConnectionEntry, parseEnvelope, parseReply,
  RateLimitedWarning, type ConnectionView, type Envelope, type WireCommand
} from './bus-messages.js'
import { MemoryRegistry, pageOf, type ConnectionFilter, type ConnectionPage, type ConnectionRegistry } from './registry.js'

export interface RedisRegistryOptions {
  redis: Redis
  prefix: string
  instanceId: string
  /** Heartbeat period in ms; the instance key lives 3 of them. */
  pingInterval: number
  /** How long a command to another instance may take (default 2000 ms). */
  commandTimeout?: number
  /** The most bytes a message pushed over the bus may have (websocket.maxPayload; default 1 MiB). */
  maxPayload?: number
  log?: { warn (o: object, msg: string): void, info (o: object, msg: string): void }
}

// Gives back a dead instance's concurrent-connection counts and forgets it, atomically, so two
// survivors reaping at once cannot both subtract. KEYS: conc:inst:<dead>, instances, conns:<dead>.
// A share that is not a positive integer, or a count that is not an integer, is skipped: one
// junk value (or a key of another type) must not leave the dead instance (and every other share
// of it) unreaped for ever.
const REAP = `
local h = {}
if redis.call('TYPE', KEYS[1]).ok == 'hash' then h = redis.call('HGETALL', KEYS[1]) end
for i = 1, #h, 2 do
  local d = tonumber(h[i + 1])
  if d and d > 0 and d == math.floor(d) then
    local k = ARGV[1] .. h[i]
    local n = redis.pcall('DECRBY', k, d)
    if type(n) == 'number' and n <= 0 then redis.call('DEL', k) end
  end
end
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('SREM', KEYS[2], ARGV[2])
return #h / 2`

type RedisWithReap = Redis & { gwReap (k1: string, k2: string, k3: string, concPrefix: string, id: string): Promise<number> }

export class RedisRegistry implements ConnectionRegistry {
  private readonly local = new MemoryRegistry()
  private readonly redis: RedisWithReap
  private readonly sub: Redis
  private readonly prefix: string
  private readonly id: string
  private readonly ttl: number
  private readonly period: number
  private readonly timeout: number
  private readonly maxPayload: number
  /** The channels this instance listens on: commands for it, and replies to its commands. */
  private readonly cmdChannel: string
  private readonly replyChannel: string
  private readonly log?: RedisRegistryOptions['log']
  /** Bus messages that did not fit, and values read back from Redis that did not. */
  private readonly busWarning: RateLimitedWarning
  private readonly storeWarning: RateLimitedWarning
  /** Flush failures (Redis away, or a script refused): one line per 10 s, however often it flushes. */
  private readonly publishWarning: RateLimitedWarning
  /** What was last written per connection (counters), to write only what changed. */
  private readonly written = new WeakMap<Bridge, string>()
  /** Ids removed locally and not yet deleted from Redis. */
  private readonly removed = new Set<string>()
  private readonly waiting = new Map<string, (result: number) => void>()
  private timer: NodeJS.Timeout | null = null
  private soonTimer: NodeJS.Timeout | null = null
  private flushing = false
  /** A flush was asked for while one was running. */
  private again = false
  private stopped = false

  constructor (opts: RedisRegistryOptions) {
    this.redis = opts.redis as RedisWithReap
    this.prefix = opts.prefix
    this.id = opts.instanceId
    this.ttl = 3 * opts.pingInterval
    this.period = Math.max(50, Math.min(1000, opts.pingInterval))
    this.timeout = opts.commandTimeout ?? 2000
    this.maxPayload = opts.maxPayload ?? DEFAULT_MAX_PAYLOAD
    this.cmdChannel = this.key(`cmd:${this.id}`)
    this.replyChannel = this.key(`reply:${this.id}`)
    this.log = opts.log
    const warn = (o: object, msg: string): void => { this.log?.warn(o, msg) }
    this.busWarning = new RateLimitedWarning(warn, 'cluster bus: message ignored')
    this.storeWarning = new RateLimitedWarning(warn, 'cluster registry: stored value skipped')
    this.publishWarning = new RateLimitedWarning(warn, 'cluster registry: publish failed')
    if (typeof this.redis.gwReap !== 'function') this.redis.defineCommand('gwReap', { numberOfKeys: 3, lua: REAP })
    this.sub = opts.redis.duplicate({ lazyConnect: true })
    this.sub.on('error', () => { /* the main client reports outages */ })
    // onMessage does not throw on any input; the catch is there so that no bug of it can ever
    // become an unhandled rejection (which ends the process).
    this.sub.on('message', (channel: string, message: string) => {
      this.onMessage(channel, message).catch((err: unknown) => {
        this.busWarning.hit({ channel: this.channelKind(channel), reason: 'handler-failed', err: (err as Error)?.message })
      })
    })
    // Everything is republished when Redis comes back (its state may have been lost or reaped).
    opts.redis.on('ready', () => { this.republish() })
  }

  private key (name: string): string { return this.prefix + name }

  /** Starts publishing and listening for commands. */
  async start (): Promise<void> {
    // (Re)subscribe on every connection: the client has no offline queue, so a subscription
    // asked for while Redis is away would be lost.
    const channels = [this.cmdChannel, this.replyChannel]
    const subscribed = new Promise<void>((resolve) => {
      this.sub.on('ready', () => { this.sub.subscribe(...channels).then(() => resolve(), () => {}) })
    })
    this.sub.connect().catch(() => { /* reconnects on its own */ })
    // Wait briefly for the first subscription so commands sent right after start are heard.
    await Promise.race([subscribed, new Promise((resolve) => setTimeout(resolve, 1000).unref())])
    this.timer = setInterval(() => { void this.flush() }, this.period)
    this.timer.unref()
    void this.flush()
  }

  /** Stops publishing and removes this instance from Redis (a clean shutdown). */
  async stop (): Promise<void> {
    this.stopped = true
    if (this.timer !== null) clearInterval(this.timer)
    if (this.soonTimer !== null) clearTimeout(this.soonTimer)
    this.timer = null
    this.soonTimer = null
    for (const resolve of this.waiting.values()) resolve(0)
    this.waiting.clear()
    try {
      await this.redis.multi().del(this.key(`inst:${this.id}`), this.key(`conns:${this.id}`)).srem(this.key('instances'), this.id).exec()
    } catch { /* Redis gone: the keys expire by themselves */ }
    this.sub.disconnect()
  }

  // The local, synchronous part: the bridge's hot path.
  get size (): number { return this.local.size }
  add (bridge: Bridge): void { this.local.add(bridge); this.removed.delete(bridge.info.id); this.soon() }
  remove (bridge: Bridge): void { this.local.remove(bridge); this.removed.add(bridge.info.id); this.soon() }

  /** New and ended connections are published within a few ms, still batched under churn. */
  private soon (): void {
    if (this.soonTimer !== null || this.timer === null) return
    this.soonTimer = setTimeout(() => { this.soonTimer = null; void this.flush() }, 10)
    this.soonTimer.unref()
  }
  get (id: string): Bridge | undefined { return this.local.get(id) }
  values (): IterableIterator<Bridge> { return this.local.values() }
  list (filter?: ConnectionFilter): ConnectionPage { return this.local.list(filter) }

  private republish (): void {
    for (const b of this.local.values()) this.written.delete(b)
    void this.flush()
  }

  /** One batch: heartbeat, changed connections, removed ones, and reaping of dead instances. */
  async flush (): Promise<void> {
    if (this.stopped || this.redis.status !== 'ready') return
    if (this.flushing) { this.again = true; return }
    this.flushing = true
    try {
      const m = this.redis.multi()
      m.sadd(this.key('instances'), this.id)
      m.set(this.key(`inst:${this.id}`), String(Date.now()), 'PX', this.ttl)
      const changed: Array<[Bridge, string]> = []
      const fields: string[] = []
      for (const b of this.local.values()) {
        const mark = `${b.messagesFromClient}:${b.messagesToClient}:${b.lastPongAt}`
        if (this.written.get(b) === mark) continue
        changed.push([b, mark])
        fields.push(b.info.id, JSON.stringify(b.toJSON()))
      }
      const conns = this.key(`conns:${this.id}`)
      if (fields.length > 0) m.hset(conns, ...fields)
      const gone = [...this.removed]
      if (gone.length > 0) m.hdel(conns, ...gone)
      m.pexpire(conns, this.ttl)
      await m.exec()
      for (const [b, mark] of changed) this.written.set(b, mark)
      for (const id of gone) this.removed.delete(id)
      await this.reap()
    } catch (err) {
      this.publishWarning.hit({ err: (err as Error).message })
    } finally {
      this.flushing = false
      if (this.again) { this.again = false; this.soon() }
    }
  }

  /** Instance ids whose heartbeat is alive. */
  private async alive (): Promise<string[]> {
    const ids = (await this.redis.smembers(this.key('instances'))).filter(isInstanceId)
    if (ids.length === 0) return []
    const exists = await this.redis.mget(...ids.map((i) => this.key(`inst:${i}`)))
    return ids.filter((_, i) => exists[i] !== null)
  }

  private async reap (): Promise<void> {
    const members = await this.redis.smembers(this.key('instances'))
    const ids = members.filter(isInstanceId)
    if (ids.length < members.length) {
      // Members no instance can have: not made into key names, just dropped from the set.
      const junk = members.filter((m) => !isInstanceId(m))
      await this.redis.srem(this.key('instances'), ...junk)
      this.storeWarning.hit({ key: 'instances', reason: 'bad-instance-id', count: junk.length })
    }
    if (ids.length === 0) return
    const exists = await this.redis.mget(...ids.map((i) => this.key(`inst:${i}`)))
    for (let i = 0; i < ids.length; i++) {
      if (exists[i] !== null || ids[i] === this.id) continue
      const dead = ids[i]
      // One instance whose keys fail to reap must not hold up the others.
      try {
        const n = await this.redis.gwReap(this.key(`conc:inst:${dead}`), this.key('instances'), this.key(`conns:${dead}`), this.key('conc:'), dead)
        this.log?.info({ instance: dead, releasedKeys: n }, 'cluster: reaped a dead instance')
      } catch (err) {
        this.storeWarning.hit({ key: `conc:inst:${dead}`, reason: 'reap-failed', count: 1, err: (err as Error).message })
      }
    }
  }

  async search (filter?: ConnectionFilter): Promise<ConnectionPage> {
    if (this.redis.status !== 'ready') return { ...this.local.list(filter), partial: true }
    try {
      const all: Array<Record<string, unknown>> = []
      for (const b of this.local.values()) all.push(b.toJSON())
      for (const inst of await this.alive()) {
        if (inst === this.id) continue
        for (const v of await this.redis.hvals(this.key(`conns:${inst}`))) {
          const e = this.entry(v, inst)
          if (e !== null) all.push(e)
        }
      }
      return pageOf(all, filter)
    } catch {
      return { ...this.local.list(filter), partial: true }
    }
  }

  async find (id: string): Promise<Record<string, unknown> | null> {
    const b = this.local.get(id)
    if (b !== undefined) return b.toJSON()
    const owner = await this.owner(id)
    if (owner === null) return null
    const v = await this.redis.hget(this.key(`conns:${owner}`), id)
    return v === null ? null : this.entry(v, owner, id)
  }

  /** One entry of an instance's hash, or null (and a warning) when it is not a connection view. */
  private entry (raw: string, instance: string, id?: string): ConnectionView | null {
    const e = parseConnectionEntry(raw, { instanceId: instance, id })
    if (e.ok) return e.value
    this.storeWarning.hit({ key: 'conns', instance, reason: e.reason, bytes: raw.length })
    return null
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
    const owner = await this.owner(id)
    if (owner === null) return false
    // The owner ignores a message over maxPayload: no point waiting for its answer.
    if (byteLength(data) > this.maxPayload) return false
    const r = await this.command(owner, { op: 'send', id, data: encodeData(data), binary: isBinary })
    if (r === SEND_BUSY) throw new codes.GW_ERR_CLIENT_BUSY(id)
    return r > 0
  }

  async broadcast (filter: { route?: string, user?: string }, data: Buffer | string, isBinary: boolean): Promise<number> {
    let n = await this.local.broadcast(filter, data, isBinary)
    if (this.redis.status !== 'ready' || byteLength(data) > this.maxPayload) return n
    const others = (await this.alive().catch(() => [] as string[])).filter((i) => i !== this.id)
    const results = await Promise.all(others.map((i) => this.command(i, { op: 'broadcast', ...filter, data: encodeData(data), binary: isBinary })))
    for (const r of results) n += r
    return n
  }

  /** The live instance whose hash holds `id`, or null. */
  private async owner (id: string): Promise<string | null> {
    if (this.redis.status !== 'ready') return null
    for (const inst of await this.alive()) {
      if (inst !== this.id && await this.redis.hexists(this.key(`conns:${inst}`), id) === 1) return inst
    }
    return null
  }

  /** Sends a command to another instance; resolves with its result (0 on timeout). */
  private command (instance: string, cmd: WireCommand): Promise<number> {
    const rid = randomUUID()
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.waiting.delete(rid); resolve(0) }, this.timeout)
      this.waiting.set(rid, (result) => { clearTimeout(timer); this.waiting.delete(rid); resolve(result) })
      this.redis.publish(this.key(`cmd:${instance}`), encodeEnvelope(rid, this.id, cmd)).then((receivers) => {
        if (receivers === 0) this.waiting.get(rid)?.(0)
      }, () => this.waiting.get(rid)?.(0))
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
      if (r.ok) this.waiting.get(r.value.rid)?.(r.value.result)
      else this.busWarning.hit({ channel: kind, reason: r.reason, bytes: message.length })
      return
    }
    if (kind !== 'cmd') return
    const env = parseEnvelope(message, this.maxPayload)
    if (!env.ok) { this.busWarning.hit({ channel: kind, reason: env.reason, bytes: message.length }); return }
    const result = await this.execute(env.value)
    await this.redis.publish(this.key(`reply:${env.value.from}`), encodeReply(env.value.rid, result)).catch(() => {})
  }

  /** Runs a checked command on this instance's connections; its result is what the sender gets. */
  private async execute ({ cmd }: Envelope): Promise<number> {
    switch (cmd.op) {
      case 'close': return await this.local.closeById(cmd.id, cmd.code, cmd.reason) ? 1 : 0
      case 'send':
        try {
          return await this.local.sendById(cmd.id, cmd.payload, cmd.binary) ? 1 : 0
        } catch {
          return SEND_BUSY
        }
      case 'broadcast': return await this.local.broadcast({ route: cmd.route, user: cmd.user }, cmd.payload, cmd.binary)
    }
  }
}

/** A remote send's answer when the client is not reading (GW_ERR_CLIENT_BUSY). */
const SEND_BUSY = -1

function byteLength (data: Buffer | string): number {
  return typeof data === 'string' ? Buffer.byteLength(data) : data.length
}
