/**
 * The lifecycle event queue of cluster mode: Redis streams per instance, read through a consumer
 * group, so that what an instance could not deliver is delivered by another.
 *
 *   <prefix>ev:{<id>}:s:<dest>  stream of the instance's events for one endpoint, in order
 *   <prefix>ev:{<id>}:streams   set of those stream keys
 *   <prefix>ev:{<id>}:open      hash connId -> its connect event (connections still open)
 *   <prefix>ev:{<id>}:alive     expires 1.5 pingIntervals after the instance last said it lives
 *   <prefix>ev:{<id>}:lock      held by the survivor taking over a lost instance
 *   <prefix>ev:{<id>}:taken     "<survivor>|<ms>": set by that survivor, read by the instance if it
 *                               was only cut off (then it closes what was declared lost); the
 *                               one key a lost instance leaves, for an hour
 *   <prefix>ev:instances        set of the instances that have streams
 *
 * The keys of one instance share a hash tag, so on Redis Cluster its MULTIs stay on one slot. An
 * open costs one MULTI (XADD + HSET), a close one (XADD + HDEL), a delivery one XACK + XDEL;
 * nothing is written per message. Each endpoint has its own stream, so an endpoint that is down
 * holds back only its own events; every stream is bounded by `queueSize` (past it, new events
 * are dropped: a metric and a warning), so an outage cannot fill Redis.
 *
 * Each instance reads only its own streams, so its events leave in the order they happened (a
 * connection's events all go to one endpoint, so to one stream). When an instance's alive key
 * has expired, one survivor (the lock's holder, renewed only while it is the holder) takes it
 * over: it appends a `disconnect` (`closedBy: "instance-lost"`) for each connection still in the
 * open hash, claims the entries the instance had read but not acknowledged, reads the streams to
 * their end and deletes its keys. An instance that was only cut off from Redis finds the `taken`
 * mark when it is back and closes (1012) the connections the survivor declared lost, so that
 * what backends were told stays true; their clients reconnect as new connections.
 *
 * While Redis is unreachable, new events are delivered from memory (lost on a crash); an event
 * whose connection still has entries unread in Redis waits for them, to keep the order. Writes to
 * the open hash that failed are redone once Redis is back, and a Redis that comes back empty gets
 * the open hash rewritten and releases what waited. Everything read back from Redis is checked
 * (parseQueued) and its URL must be a configured one.
 */
import { createHash } from 'node:crypto'
import type { Redis } from 'ioredis'
import { duplicateClient } from '../cluster/redis.js'
import { isInstanceId } from '../registry/bus-messages.js'
import { RateLimitedWarning } from '../registry/bus-messages.js'
import { Deliverer, type Delivery, type EventDestination, type EventQueue, type EventQueueOptions } from './queue.js'
import { lostEvent, parseQueued, type ConnectEvent, type LifecycleEvent } from './payload.js'

export interface RedisEventQueueOptions extends EventQueueOptions {
  redis: Redis
  prefix: string
  instanceId: string
  /** websocket.pingInterval: liveness is 1.5 of them, checked every half. */
  pingInterval: number
  /**
   * This instance was declared lost while it was only cut off from Redis: close its connections
   * opened before `takenAt` (ms since the epoch), whose disconnects were already sent.
   */
  onFenced?: (takenAt: number) => void
}

const GROUP = 'tollgate'
/** Entries read per XREADGROUP, and the most held in memory per stream before reading it pauses. */
const BATCH = 200
const MAX_IN_MEMORY = 1_000
/** How long a blocking read waits before it looks again. */
const BLOCK_MS = 500
const LOCK_MS = 30_000
/** How long the `taken` mark waits for an instance that was only cut off (then it expires). */
const TAKEN_MS = 3600_000

// Renews the lock only while it is this survivor's: a survivor that stalled past the lock's
// expiry must not extend another one's, or both would deliver the same stream at once.
const RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end"
type RedisWithRenew = Redis & { gwEventsRenew (key: string, owner: string, ms: number): Promise<number> }

type Entries = Array<[string, string[]] | null>

/** The stream of `instanceId`'s events for the endpoint `url`: its name part is a short hash of the URL. */
export function eventStreamKey (prefix: string, instanceId: string, url: string): string {
  return `${prefix}ev:{${instanceId}}:s:${createHash('sha1').update(url).digest('hex').slice(0, 12)}`
}

export class RedisEventQueue implements EventQueue {
  private readonly redis: RedisWithRenew
  private reader: Redis | null = null
  private readonly deliverer: Deliverer
  private readonly key: (id: string, part: string) => string
  private readonly instances: string
  /** Destinations allowed, by URL (a configured events.url). */
  private readonly destinations = new Map<string, number>()
  /** This instance's streams, and per stream: entries written and not acknowledged, and in memory. */
  private readonly streams = new Map<string, { backlog: number, inMemory: number }>()
  /** Entries of a connection written to its stream and not yet read back. */
  private readonly unread = new Map<string, number>()
  /** Events delivered from memory (Redis away) that wait for their connection's unread entries. */
  private readonly held = new Map<string, Delivery[]>()
  /** The connect entry of each tracked open connection: what the open hash holds, kept to rewrite it. */
  private readonly openLocal = new Map<string, string>()
  /** Streams whose consumer group this instance made or found: the ones it reads. */
  private readonly grouped = new Set<string>()
  /** Open-hash writes that failed (Redis away), redone by the heartbeat. */
  private readonly dirty = new Set<string>()
  private timer: NodeJS.Timeout | null = null
  private running = false
  private started = false
  /** The heartbeat in progress, awaited by close() so that it cannot write the keys back. */
  private beating: Promise<void> | null = null
  private reading: Promise<void> | null = null
  private readonly bad: RateLimitedWarning
  /** Wakes the loops waiting in pause(), at close. */
  private readonly paused = new Set<() => void>()
  /** Lost instances this one is taking over. */
  private readonly takingOver = new Set<string>()

  constructor (private readonly opts: RedisEventQueueOptions) {
    this.redis = opts.redis as RedisWithRenew
    this.redis.defineCommand('gwEventsRenew', { numberOfKeys: 1, lua: RENEW })
    this.key = (id, part) => `${opts.prefix}ev:{${id}}:${part}`
    this.instances = `${opts.prefix}ev:instances`
    this.deliverer = new Deliverer(opts, (d) => { this.acknowledge(d) })
    this.bad = new RateLimitedWarning((o, m) => opts.log.warn(o, m), 'lifecycle event from Redis skipped')
  }

  get pending (): number {
    let n = 0
    for (const s of this.streams.values()) n += s.backlog
    for (const h of this.held.values()) n += h.length
    return n + this.deliverer.memoryOnly
  }

  allow (destinations: Iterable<EventDestination>): void {
    for (const d of destinations) {
      this.destinations.set(d.url, d.timeout)
      const stream = this.streamOf(d.url)
      if (!this.streams.has(stream)) this.streams.set(stream, { backlog: 0, inMemory: 0 })
    }
    // Nothing is written to Redis until some configuration has events.
    if (this.destinations.size > 0 && this.started && !this.running) void this.run()
  }

  private streamOf (url: string, instance = this.opts.instanceId): string {
    return eventStreamKey(this.opts.prefix, instance, url)
  }

  push (event: LifecycleEvent, to: EventDestination, deliver = true, track = true): void {
    if (!deliver && !track) return
    const id = this.opts.instanceId
    const entry = JSON.stringify({ event, url: to.url })
    const stream = this.streamOf(to.url)
    const s = this.streams.get(stream) ?? { backlog: 0, inMemory: 0 }
    this.streams.set(stream, s)
    if (deliver && s.backlog >= this.opts.maxSize) {
      this.deliverer.dropped(event.type, 'queue full')
      deliver = false
    }
    const m = this.redis.multi()
    if (deliver) m.xadd(stream, '*', 'e', entry)
    // The open hash is what a survivor turns into `instance-lost` disconnects.
    let opening = false
    if (event.type === 'connect') {
      if (track) { this.openLocal.set(event.id, entry); opening = true; m.hset(this.key(id, 'open'), event.id, entry) }
    } else if (this.openLocal.delete(event.id) || this.dirty.has(event.id)) {
      m.hdel(this.key(id, 'open'), event.id)
    }
    if (deliver) { this.unread.set(event.id, (this.unread.get(event.id) ?? 0) + 1); s.backlog++ }
    // A MULTI with nothing in it is one command (the MULTI itself).
    if (m.length <= 1) return
    m.exec().then((r) => {
      if (r === null || r.some(([err]) => err !== null)) throw new Error('transaction failed')
      this.dirty.delete(event.id)
      if (deliver) this.opts.count?.(event.type, 'queued')
    }).catch(() => {
      // The open hash is put right by the heartbeat once Redis is back.
      if (opening || event.type === 'disconnect') this.dirty.add(event.id)
      if (!deliver) return
      s.backlog--
      this.readBack(event.id)
      this.fromMemory({ event, url: to.url, timeout: to.timeout })
    })
  }

  async start (): Promise<void> {
    this.started = true
    if (this.destinations.size > 0 && !this.running) await this.run()
  }

  private async run (): Promise<void> {
    this.running = true
    this.timer = setInterval(() => { void this.heartbeat() }, Math.max(50, Math.floor(this.opts.pingInterval / 2)))
    this.timer.unref()
    this.reader = duplicateClient(this.redis)
    this.reader.on('error', () => { /* the main client reports outages */ })
    this.reading = this.readLoop()
    await this.heartbeat()
  }

  async close (graceMs: number): Promise<void> {
    const wasRunning = this.running
    this.running = false
    this.started = false
    if (this.timer !== null) clearInterval(this.timer)
    if (!wasRunning) return
    const left = await this.deliverer.drain(graceMs)
    for (const wake of [...this.paused]) wake()
    let inMemory = 0
    for (const h of this.held.values()) inMemory += h.length
    this.reader?.disconnect()
    await this.reading?.catch(() => {})
    await this.beating
    if (inMemory > 0) this.opts.log.warn({ lost: inMemory }, 'lifecycle events held in memory (Redis was away) not delivered before shutdown')
    // Keys first (when nothing is left), so that no survivor takes over empty streams.
    if (left > 0) this.opts.log.info({ left }, 'lifecycle events left for another instance to deliver')
    else await this.removeOwnKeys().catch(() => {})
    // Said at once, so a survivor delivers what is left without waiting for the key to expire;
    // the instances this one was taking over go back to whoever takes them next.
    // One key per DEL: each is in a slot of its own on Redis Cluster.
    for (const k of [this.key(this.opts.instanceId, 'alive'), ...[...this.takingOver].map((d) => this.key(d, 'lock'))]) await this.redis.del(k).catch(() => {})
  }

  /**
   * Nothing of this instance is left to deliver (no entry in its streams, no open connection):
   * its keys go now, instead of waiting for a survivor (there may be none) to take them over.
   */
  private async removeOwnKeys (): Promise<void> {
    const id = this.opts.instanceId
    const open = this.key(id, 'open')
    const streams = await this.redis.smembers(this.key(id, 'streams'))
    for (const s of streams) if (await this.redis.xlen(s) !== 0) return
    if (await this.redis.hlen(open) !== 0) return
    await this.redis.del(open, this.key(id, 'streams'), ...streams)
    await this.redis.srem(this.instances, id)
  }

  private fromMemory (d: Delivery): void {
    const waiting = this.unread.get(d.event.id) ?? 0
    if (waiting > 0) {
      const h = this.held.get(d.event.id)
      if (h === undefined) this.held.set(d.event.id, [d])
      else h.push(d)
      return
    }
    if (this.deliverer.add(d)) this.opts.count?.(d.event.type, 'queued')
  }

  /** One entry of connection `connId` has been read back (or never will be): release what waited for it. */
  private readBack (connId: string): void {
    const n = (this.unread.get(connId) ?? 1) - 1
    if (n > 0) { this.unread.set(connId, n); return }
    this.unread.delete(connId)
    const h = this.held.get(connId)
    if (h === undefined) return
    this.held.delete(connId)
    for (const d of h) this.fromMemory(d)
  }

  private acknowledge (d: Delivery): void {
    if (d.stream === undefined || d.entryId === undefined) return
    const s = this.streams.get(d.stream)
    if (s !== undefined) { s.inMemory = Math.max(0, s.inMemory - 1); s.backlog = Math.max(0, s.backlog - 1) }
    // Lost acknowledgements only mean a redelivery, which the Idempotency-Key covers.
    this.redis.multi().xack(d.stream, GROUP, d.entryId).xdel(d.stream, d.entryId).exec().catch(() => {})
  }

  /** Makes the stream's consumer group if it is missing; true when it had to (it was not there). */
  private async ensureGroup (stream: string): Promise<boolean> {
    let made = true
    try {
      await this.redis.xgroup('CREATE', stream, GROUP, '0', 'MKSTREAM')
    } catch (err) {
      if (!String((err as Error).message).includes('BUSYGROUP')) throw err
      made = false
    }
    this.grouped.add(stream)
    return made
  }

  private heartbeat (): Promise<void> {
    if (this.beating !== null || !this.running) return this.beating ?? Promise.resolve()
    this.beating = this.beat().finally(() => { this.beating = null })
    return this.beating
  }

  private async beat (): Promise<void> {
    const id = this.opts.instanceId
    try {
      await this.checkTaken()
      const lost: string[] = []
      const ownStreams = [...this.streams.keys()].filter((s) => s.startsWith(this.key(id, 's:')))
      for (const stream of ownStreams) {
        const known = this.grouped.has(stream)
        if (await this.ensureGroup(stream) && known) lost.push(stream)
      }
      // A group this instance had made is gone: Redis came back without its data.
      if (lost.length > 0) await this.reset(lost)
      if (ownStreams.length > 0) await this.redis.sadd(this.key(id, 'streams'), ...ownStreams)
      await this.flushDirty()
      // Separate commands, not one MULTI: the set has no hash tag of this instance (Redis
      // Cluster refuses a transaction across slots).
      await this.redis.set(this.key(id, 'alive'), '1', 'PX', Math.ceil(this.opts.pingInterval * 1.5))
      await this.redis.sadd(this.instances, id)
      for (const lost of this.takingOver) {
        // Another survivor holds it now (this one stalled past the lock): stop.
        if (await this.redis.gwEventsRenew(this.key(lost, 'lock'), id, LOCK_MS) !== 1) this.takingOver.delete(lost)
      }
      await this.findLost()
    } catch {
      // Redis away: the next beat tries again.
    }
  }

  /** A survivor declared this instance lost while it was cut off: close what it declared lost. */
  private async checkTaken (): Promise<void> {
    const taken = this.key(this.opts.instanceId, 'taken')
    const mark = await this.redis.get(taken)
    if (mark === null) return
    await this.redis.del(taken)
    const takenAt = Number(mark.split('|')[1])
    this.opts.log.warn({ by: mark.split('|')[0] }, 'this instance was declared lost while cut off from Redis: closing the connections whose disconnects were sent')
    // Those connections are gone for the backends; they leave the open hash (already deleted).
    this.openLocal.clear()
    this.dirty.clear()
    this.opts.onFenced?.(Number.isFinite(takenAt) ? takenAt : Date.now())
  }

  /** Open-hash writes that failed while Redis was away, or all of it after Redis came back empty. */
  private async flushDirty (all = false): Promise<void> {
    const ids = all ? [...this.openLocal.keys()] : [...this.dirty]
    if (ids.length === 0) return
    const open = this.key(this.opts.instanceId, 'open')
    for (let i = 0; i < ids.length; i += 500) {
      const m = this.redis.multi()
      for (const connId of ids.slice(i, i + 500)) {
        const entry = this.openLocal.get(connId)
        if (entry !== undefined) m.hset(open, connId, entry)
        else m.hdel(open, connId)
      }
      await m.exec()
      for (const connId of ids.slice(i, i + 500)) this.dirty.delete(connId)
    }
  }

  /** Instances whose alive key expired: take one over if no other survivor holds its lock. */
  private async findLost (): Promise<void> {
    const members = await this.redis.smembers(this.instances)
    for (const m of members) {
      if (!isInstanceId(m)) { this.bad.hit({ key: this.instances }); await this.redis.srem(this.instances, m); continue }
      if (m === this.opts.instanceId || this.takingOver.has(m)) continue
      if (await this.redis.exists(this.key(m, 'alive')) === 1) continue
      if (await this.redis.set(this.key(m, 'lock'), this.opts.instanceId, 'PX', LOCK_MS, 'NX') !== 'OK') continue
      this.takingOver.add(m)
      this.opts.log.info({ instance: m }, 'delivering the lifecycle events of a lost instance')
      this.takeOver(m).catch(async (err: Error) => {
        this.takingOver.delete(m)
        await this.redis.del(this.key(m, 'lock')).catch(() => {})
        this.opts.log.warn({ instance: m, err: err.message }, 'taking over a lost instance\'s events failed; will retry')
      })
    }
  }

  private async takeOver (lost: string): Promise<void> {
    const open = this.key(lost, 'open')
    const still = (): boolean => this.running && this.takingOver.has(lost)
    await this.redis.set(this.key(lost, 'taken'), `${this.opts.instanceId}|${Date.now()}`, 'PX', TAKEN_MS)
    // 1. A disconnect for each connection it still had open, after its other entries of that
    //    connection (in the stream of the connection's endpoint).
    let cursor = '0'
    do {
      const [next, flat] = await this.redis.hscan(open, cursor, 'COUNT', 500)
      cursor = next
      const m = this.redis.multi()
      for (let i = 0; i < flat.length; i += 2) {
        const q = parseQueued(flat[i + 1])
        if (q !== null && q.event.type === 'connect') {
          const stream = this.streamOf(q.url, lost)
          m.xadd(stream, '*', 'e', JSON.stringify({ event: lostEvent(q.event as ConnectEvent), url: q.url }))
          m.sadd(this.key(lost, 'streams'), stream)
        } else this.bad.hit({ key: open })
        m.hdel(open, flat[i])
      }
      if (flat.length > 0) await m.exec()
    } while (cursor !== '0' && still())
    const streams = (await this.redis.smembers(this.key(lost, 'streams'))).filter((s) => s.startsWith(this.key(lost, 's:')))
    for (const stream of streams) {
      if (!still()) return
      await this.ensureGroup(stream)
      this.streams.set(stream, this.streams.get(stream) ?? { backlog: 0, inMemory: 0 })
      // 2. What it had read and not acknowledged, before anything unread (stream order).
      let start = '0-0'
      do {
        const r = await this.redis.xautoclaim(stream, GROUP, this.opts.instanceId, 0, start, 'COUNT', BATCH) as [string, Entries]
        start = r[0]
        this.accept(stream, r[1])
      } while (start !== '0-0' && still())
      // 3. The rest, in batches (no blocking read: one connection serves every stream taken over).
      while (still()) {
        if (this.streams.get(stream)!.inMemory >= MAX_IN_MEMORY) { await this.pause(); continue }
        const r = await this.redis.xreadgroup('GROUP', GROUP, this.opts.instanceId, 'COUNT', BATCH, 'STREAMS', stream, '>') as Array<[string, Entries]> | null
        if (r === null || r[0][1].length === 0) break
        this.accept(stream, r[0][1])
      }
    }
    // 4. Once every entry is acknowledged, the lost instance's keys go.
    for (const stream of streams) {
      while (still()) {
        const pending = await this.redis.xpending(stream, GROUP) as [number, ...unknown[]]
        if (pending[0] === 0 && await this.redis.xlen(stream) === 0) break
        await this.pause()
      }
    }
    if (!still()) return
    await this.redis.del(open, this.key(lost, 'streams'), this.key(lost, 'alive'), ...streams)
    await this.redis.del(this.key(lost, 'lock'))
    await this.redis.srem(this.instances, lost)
    for (const s of streams) { this.streams.delete(s); this.grouped.delete(s) }
    this.takingOver.delete(lost)
    this.opts.log.info({ instance: lost }, 'lost instance\'s lifecycle events delivered')
  }

  /** Waits a blocking read's time, or until close() (its timer keeps no process alive). */
  private async pause (): Promise<void> {
    await new Promise<void>((resolve) => {
      const done = (): void => { clearTimeout(timer); this.paused.delete(done); resolve() }
      const timer = setTimeout(done, BLOCK_MS).unref()
      this.paused.add(done)
    })
  }

  /** This instance's own streams with room in memory: those are read. */
  private readable (): string[] {
    const out: string[] = []
    const own = this.key(this.opts.instanceId, 's:')
    for (const [stream, s] of this.streams) if (stream.startsWith(own) && this.grouped.has(stream) && s.inMemory < MAX_IN_MEMORY) out.push(stream)
    return out
  }

  /** Reads this instance's own streams as long as it runs. */
  private async readLoop (): Promise<void> {
    const reader = this.reader!
    while (this.running) {
      const keys = this.readable()
      if (keys.length === 0) { await this.pause(); continue }
      let r: Array<[string, Entries]> | null
      try {
        if (reader.status === 'wait') await reader.connect()
        r = await reader.xreadgroup('GROUP', GROUP, this.opts.instanceId, 'COUNT', BATCH, 'BLOCK', BLOCK_MS, 'STREAMS', ...keys, ...keys.map(() => '>')) as typeof r
      } catch (err) {
        if (!this.running) return
        if (String((err as Error).message).includes('NOGROUP')) await this.reset(keys).catch(() => {})
        await this.pause()
        continue
      }
      if (r !== null) for (const [stream, entries] of r) this.accept(stream, entries)
    }
  }

  /**
   * A stream or its group is gone: Redis came back without its data. What this instance wrote
   * there is lost: nothing waits for it any more, and the open hash is written again.
   */
  private async reset (keys: string[]): Promise<void> {
    this.opts.log.warn({ streams: keys.length }, 'lifecycle event streams were lost by Redis: events written there are not delivered')
    for (const k of keys) {
      await this.ensureGroup(k)
      const s = this.streams.get(k)
      if (s !== undefined) s.backlog = s.inMemory
    }
    const waiting = [...this.unread.keys()]
    this.unread.clear()
    for (const connId of waiting) this.readBack(connId)
    await this.flushDirty(true)
  }

  /** Entries read from `stream`, handed to the scheduler in order. */
  private accept (stream: string, entries: Entries): void {
    const s = this.streams.get(stream)
    const own = stream.startsWith(this.key(this.opts.instanceId, 's:'))
    for (const entry of entries) {
      if (entry === null) continue
      const [entryId, fields] = entry
      const q = parseQueued(fields[1])
      if (q === null) {
        this.bad.hit({ stream })
        this.drop({ stream, entryId })
        continue
      }
      if (own) this.readBack(q.event.id)
      const timeout = this.destinations.get(q.url)
      if (timeout === undefined) {
        // Redis does not decide where the gateway sends requests.
        this.opts.count?.(q.event.type, 'dropped')
        this.bad.hit({ stream, why: 'url not configured' })
        this.drop({ stream, entryId })
        continue
      }
      if (s !== undefined) s.inMemory++
      this.deliverer.scheduler.add(q.event.id, { event: q.event, url: q.url, timeout, stream, entryId })
    }
  }

  /** An entry that will not be delivered: acknowledged and deleted like a delivered one. */
  private drop (d: { stream: string, entryId: string }): void {
    const s = this.streams.get(d.stream)
    if (s !== undefined) s.inMemory++
    this.acknowledge(d as Delivery)
  }
}
