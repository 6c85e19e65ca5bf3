/**
 * State that outlives one app generation (a hot reload builds a new Fastify app; these stay):
 * this instance's id, the Redis connection, the connection registry, metrics, and the limit
 * counters. Created once per process by the runtime, or by the gateway plugin itself when it is
 * used alone (then it also owns their lifecycle).
 */
import { hostname } from 'node:os'
import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import type { GatewayConfig } from './config/types.js'
import { MemoryRegistry, type ConnectionRegistry } from './registry/registry.js'
import { RedisRegistry } from './registry/redis-registry.js'
import { GatewayMetrics } from './metrics.js'
import { MemoryConcurrency, RedisConcurrency, type ConcurrencyLimiter } from './limits/concurrency.js'
import { WindowStore } from './limits/window-store.js'
import type { Bridge } from './bridge/bridge.js'

export interface SharedState {
  instanceId: string
  redis: Redis | null
  /** Whether Redis is reachable (always true without Redis). */
  redisState: { up: boolean }
  registry: ConnectionRegistry
  metrics: GatewayMetrics
  concurrency: ConcurrencyLimiter
  windows: WindowStore
  /** Starts background work (Redis connection, registry publishing). Idempotent. */
  start (): Promise<void>
  /** Stops it and closes the Redis connection. */
  close (): Promise<void>
}

/**
 * Creates the shared state for `config` (its redis, keyPrefix and pingInterval are fixed for
 * the life of the process: changing them needs a restart).
 */
export function createShared (config: GatewayConfig, log: FastifyBaseLogger): SharedState {
  const instanceId = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`
  const cfg = config.redis
  const redisState = { up: cfg === undefined }
  let redis: Redis | null = null
  if (cfg !== undefined) {
    redis = new Redis(cfg.url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 2000,
      retryStrategy: (times) => Math.min(100 * times, 2000),
      lazyConnect: true
    })
    watchRedis(redis, redisState, cfg.url, log)
  }
  const registry: ConnectionRegistry = redis !== null && cfg !== undefined
    ? new RedisRegistry({ redis, prefix: cfg.keyPrefix, instanceId, pingInterval: config.websocket.pingInterval, maxPayload: config.websocket.maxPayload, log })
    : new MemoryRegistry()
  const live = (): IterableIterator<Bridge> => registry.values()
  let started: Promise<void> | null = null
  return {
    instanceId,
    redis,
    redisState,
    registry,
    metrics: new GatewayMetrics(live),
    concurrency: redis !== null && cfg !== undefined ? new RedisConcurrency(redis, cfg.keyPrefix, instanceId) : new MemoryConcurrency(),
    windows: new WindowStore(),
    start () {
      started ??= (async () => {
        redis?.connect().catch(() => { /* reported through 'error'; reconnects on its own */ })
        if (registry instanceof RedisRegistry) await registry.start()
      })()
      return started
    },
    async close () {
      if (registry instanceof RedisRegistry) await registry.stop()
      redis?.disconnect()
    }
  }
}

/** Keeps `state.up` current and logs each change once (ioredis reports every failed retry). */
function watchRedis (redis: Redis, state: { up: boolean }, url: string, log: FastifyBaseLogger): void {
  let everUp = false
  let outage = false
  redis.on('ready', () => {
    state.up = true
    if (outage || !everUp) log.info({ redis: redisUrlForLogs(url) }, everUp ? 'redis reachable again' : 'redis connected')
    outage = false
    everUp = true
  })
  const markDown = (err?: Error): void => {
    state.up = false
    if (outage) return
    outage = true
    log.warn({ redis: redisUrlForLogs(url), err: err?.message }, 'redis unreachable')
  }
  redis.on('error', (err: Error) => markDown(err))
  redis.on('close', () => markDown())
}

/** A Redis URL without its password, for logs. */
function redisUrlForLogs (url: string): string {
  try {
    const u = new URL(url)
    if (u.password !== '') u.password = '***'
    return u.toString()
  } catch {
    return 'redis://(invalid url)'
  }
}
