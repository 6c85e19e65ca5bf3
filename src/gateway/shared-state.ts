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
import { MemoryEventQueue, type EventQueue } from '../events/queue.js'
import { RedisEventQueue } from '../events/redis-queue.js'
import { EVENTS_SHUTDOWN_GRACE } from '../config/defaults.js'
import { CLOSE_SERVICE_RESTART, REASON_DECLARED_LOST } from '../close-codes.js'

export interface SharedState {
  instanceId: string
  redis: Redis | null
  /** Whether Redis is reachable (always true without Redis). */
  redisState: RedisState
  registry: ConnectionRegistry
  metrics: GatewayMetrics
  concurrency: ConcurrencyLimiter
  windows: WindowStore
  /** Lifecycle events waiting for delivery (in Redis in cluster mode). */
  events: EventQueue
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
  const redis = cfg === undefined ? null : createRedis(cfg, redisState, log)
  const registry: ConnectionRegistry = redis !== null && cfg !== undefined
    ? new RedisRegistry({ redis, prefix: cfg.keyPrefix, instanceId, pingInterval: config.websocket.pingInterval, maxPayload: config.websocket.maxPayload, log })
    : new MemoryRegistry(instanceId)
  const metrics = new GatewayMetrics(() => registry.values())
  const count = (type: string, result: 'queued' | 'delivered' | 'retried' | 'dropped'): void => { metrics.event(type, result) }
  const eventLog = log.child({ component: 'events' })
  const events: EventQueue = redis !== null && cfg !== undefined
    ? new RedisEventQueue({
      redis, prefix: cfg.keyPrefix, instanceId, pingInterval: config.websocket.pingInterval, maxSize: config.eventsQueueSize, log: eventLog, count,
      // Declared lost while only cut off: the connections whose disconnects went out are closed,
      // so that backends' view stays true (their clients reconnect as new connections).
      onFenced: (takenAt) => { for (const b of registry.values()) if (b.connectedAt < takenAt) b.close(CLOSE_SERVICE_RESTART, REASON_DECLARED_LOST) }
    })
    : new MemoryEventQueue({ maxSize: config.eventsQueueSize, log: eventLog, count })
  metrics.watchEvents(() => events.pending)
  let started: Promise<void> | null = null
  return {
    instanceId,
    redis,
    redisState,
    registry,
    metrics,
    events,
    concurrency: redis !== null && cfg !== undefined ? new RedisConcurrency(redis, cfg.keyPrefix, instanceId) : new MemoryConcurrency(),
    windows: new WindowStore(),
    start () {
      started ??= (async () => {
        redis?.connect().catch(() => { /* reported through 'error'; reconnects on its own */ })
        if (registry instanceof RedisRegistry) await registry.start()
        await events.start()
      })()
      return started
    },
    async close () {
      await events.close(EVENTS_SHUTDOWN_GRACE)
      if (registry instanceof RedisRegistry) await registry.stop()
      redis?.disconnect()
    }
  }
}
