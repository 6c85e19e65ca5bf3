/**
 * What outlives one app generation (a hot reload builds a new Fastify app; these stay): this
 * instance's id, the Redis connection, the connection registry, metrics and the limit counters.
 * The composition root picks the implementations (memory, or Redis in cluster mode); the runtime
 * makes one per process, or the gateway plugin makes its own when used alone (and then owns it).
 */
import type { Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import type { GatewayConfig } from '../config/types.js'
import { MemoryRegistry, type ConnectionRegistry } from '../registry/registry.js'
import { RedisRegistry } from '../registry/redis-registry.js'
import { GatewayMetrics } from '../metrics/gateway-metrics.js'
import { MemoryConcurrency, RedisConcurrency, type ConcurrencyLimiter } from '../limits/concurrency.js'
import { WindowStore } from '../limits/window-store.js'
import { createRedis, type RedisState } from '../cluster/redis.js'
import { newInstanceId } from '../cluster/instance-id.js'

export interface SharedState {
  instanceId: string
  redis: Redis | null
  /** Whether Redis is reachable (always true without Redis). */
  redisState: RedisState
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
  const instanceId = newInstanceId()
  const cfg = config.redis
  const redisState: RedisState = { up: cfg === undefined }
  const redis = cfg === undefined ? null : createRedis(cfg.url, redisState, log)
  const registry: ConnectionRegistry = redis !== null && cfg !== undefined
    ? new RedisRegistry({ redis, prefix: cfg.keyPrefix, instanceId, pingInterval: config.websocket.pingInterval, maxPayload: config.websocket.maxPayload, log })
    : new MemoryRegistry()
  let started: Promise<void> | null = null
  return {
    instanceId,
    redis,
    redisState,
    registry,
    metrics: new GatewayMetrics(() => registry.values()),
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
