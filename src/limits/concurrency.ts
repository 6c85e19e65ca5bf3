/**
 * Open-connection counts per key (nginx's limit_conn), in memory or in Redis. An acquisition
 * returns a lease; releasing it is idempotent, so however a connection ends, its count drops
 * exactly once.
 */
import { ReplyError, type Redis } from 'ioredis'
import { clusterKeyBase } from '../cluster/keys.js'

export interface Lease { release (): void }

export interface ConcurrencyLimiter {
  /** A lease when `key` has fewer than `max` open, else null. Rejects when the store is unreachable. */
  acquire (key: string, max: number): Promise<Lease | null>
  /** Current count for `key` (as this store sees it). */
  count (key: string): Promise<number>
}

export class MemoryConcurrency implements ConcurrencyLimiter {
  private readonly counts = new Map<string, number>()

  async acquire (key: string, max: number): Promise<Lease | null> {
    const n = this.counts.get(key) ?? 0
    if (n >= max) return null
    this.counts.set(key, n + 1)
    let released = false
    return {
      release: () => {
        if (released) return
        released = true
        const left = (this.counts.get(key) ?? 1) - 1
        if (left <= 0) this.counts.delete(key)
        else this.counts.set(key, left)
      }
    }
  }

  async count (key: string): Promise<number> { return this.counts.get(key) ?? 0 }
}

// KEYS[1] = cluster-wide count, KEYS[2] = this instance's hash of counts (so that the counts of an
// instance that dies can be given back). ARGV[1] = max, ARGV[2] = field (the key). A value that
// is not a count (anyone with write access to Redis could leave one) counts as 0, so it can
// neither turn the limit off nor make every acquisition fail.
const TYPES = `
local function fix (key, want)
  local t = redis.call('TYPE', key).ok
  if t ~= want and t ~= 'none' then redis.call('DEL', key) end
end
fix(KEYS[1], 'string')
fix(KEYS[2], 'hash')
`

const ACQUIRE = TYPES + `
local ok, n = pcall(redis.call, 'INCR', KEYS[1])
if not ok or n < 1 then redis.call('SET', KEYS[1], 1); n = 1 end
if n > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  return 0
end
if not pcall(redis.call, 'HINCRBY', KEYS[2], ARGV[2], 1) then redis.call('HSET', KEYS[2], ARGV[2], 1) end
return n`

const RELEASE = TYPES + `
local ok, left = pcall(redis.call, 'HINCRBY', KEYS[2], ARGV[1], -1)
if not ok then left = 0 end
if left <= 0 then redis.call('HDEL', KEYS[2], ARGV[1]) end
if ok and left < 0 then return 0 end
local ok2, n = pcall(redis.call, 'DECR', KEYS[1])
if not ok2 or n <= 0 then redis.call('DEL', KEYS[1]) end
return ok2 and n or 0`

type RedisWithScripts = Redis & {
  gwConcAcquire (k1: string, k2: string, max: number, field: string): Promise<number>
  gwConcRelease (k1: string, k2: string, field: string): Promise<number>
}

/**
 * Cluster-wide counts in Redis. Each instance also records its own share in a hash
 * (`<base>conc:inst:<instanceId>`), which cluster mode uses to give back a dead instance's counts.
 * `<base>` is `<prefix>{<prefix>reg}:` (src/cluster/keys.ts): the count and the share are in one
 * slot on Redis Cluster, and so are the registry keys the reaping script touches with them.
 */
export class RedisConcurrency implements ConcurrencyLimiter {
  private readonly redis: RedisWithScripts
  /** Releases that failed while Redis was unreachable, retried when it is back. */
  private readonly pending = new Map<string, number>()

  private readonly base: string

  constructor (redis: Redis, prefix: string, private readonly instanceId: string) {
    this.redis = redis as RedisWithScripts
    this.base = clusterKeyBase(prefix)
    if (typeof this.redis.gwConcAcquire !== 'function') {
      redis.defineCommand('gwConcAcquire', { numberOfKeys: 2, lua: ACQUIRE })
      redis.defineCommand('gwConcRelease', { numberOfKeys: 2, lua: RELEASE })
    }
    redis.on('ready', () => { void this.flush() })
  }

  /** Releases that are still owed to Redis. */
  get owed (): number {
    let n = 0
    for (const v of this.pending.values()) n += v
    return n
  }

  private release (key: string): void {
    this.redis.gwConcRelease(this.countKey(key), this.instanceKey, key).catch((err: unknown) => {
      // Owed only when Redis was away: an error reply would fail again on every reconnect.
      if (err instanceof ReplyError) return
      this.pending.set(key, (this.pending.get(key) ?? 0) + 1)
    })
  }

  private async flush (): Promise<void> {
    const owed = [...this.pending]
    this.pending.clear()
    for (const [key, n] of owed) for (let i = 0; i < n; i++) this.release(key)
  }

  /** The Redis key of the cluster-wide count for `key`. */
  countKey (key: string): string { return `${this.base}conc:${key}` }
  get instanceKey (): string { return `${this.base}conc:inst:${this.instanceId}` }

  async acquire (key: string, max: number): Promise<Lease | null> {
    const n = await this.redis.gwConcAcquire(this.countKey(key), this.instanceKey, max, key)
    if (n === 0) return null
    let released = false
    return {
      release: () => {
        if (released) return
        released = true
        this.release(key)
      }
    }
  }

  async count (key: string): Promise<number> {
    // A key of another type (junk left in Redis) answers WRONGTYPE: it counts as 0, as in acquire.
    const raw = await this.redis.get(this.countKey(key)).catch((err: Error) => {
      if (err.message.startsWith('WRONGTYPE')) return null
      throw err
    })
    const n = Number(raw ?? 0)
    return Number.isSafeInteger(n) && n > 0 ? n : 0
  }
}
