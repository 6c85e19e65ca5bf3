/**
 * The Redis connection of cluster mode: one client per process, shared by the registry, the
 * limits and the cluster bus, and whether Redis is reachable now (readiness, failOpen).
 */
import { Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'

/** Whether Redis is reachable (always true without Redis). */
export interface RedisState { up: boolean }

/**
 * A client for `url` that fails commands at once while Redis is away (no offline queue) and
 * reconnects on its own; `state` follows it. Not connected until `connect()`.
 */
export function createRedis (url: string, state: RedisState, log: FastifyBaseLogger): Redis {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    retryStrategy: (times) => Math.min(100 * times, 2000),
    lazyConnect: true
  })
  watchRedis(redis, state, url, log)
  return redis
}

/** Keeps `state.up` current and logs each change once (ioredis reports every failed retry). */
function watchRedis (redis: Redis, state: RedisState, url: string, log: FastifyBaseLogger): void {
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
export function redisUrlForLogs (url: string): string {
  try {
    const u = new URL(url)
    if (u.password !== '') u.password = '***'
    return u.toString()
  } catch {
    return 'redis://(invalid url)'
  }
}
