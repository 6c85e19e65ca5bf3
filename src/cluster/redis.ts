/**
 * The Redis connection of cluster mode: one client per process, shared by the registry, the
 * limits and the cluster bus, and whether Redis is reachable now (readiness, failOpen).
 */
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import type { RedisConfig } from '../config/types.js'

/** Whether Redis is reachable (always true without Redis). */
export interface RedisState { up: boolean }

/** Commands fail at once while Redis is away (no offline queue); the client reconnects on its own. */
const COMMON: RedisOptions = {
  enableOfflineQueue: false,
  maxRetriesPerRequest: 1,
  connectTimeout: 2000,
  retryStrategy: (times) => Math.min(100 * times, 2000),
  lazyConnect: true
}

/**
 * A client for `cfg`: one server (`url`), the primary of a Sentinel set (`sentinels`, `name`;
 * ioredis follows failovers), or a Redis Cluster (`cluster`; ioredis follows slot moves and
 * failovers). `state` follows it. Not connected until `connect()`.
 *
 * A Cluster client answers the same commands (both are ioredis Commanders: scripts, MULTI on one
 * slot, pub/sub) and is typed as `Redis` so that every user of the shared client takes either;
 * duplicate it with `duplicateClient`, whose signature differs between the two.
 */
export function createRedis (cfg: RedisConfig, state: RedisState, log: FastifyBaseLogger): Redis {
  let redis: Redis
  if (cfg.cluster !== undefined) {
    const nodes = cfg.cluster.map(parseNode)
    const first = nodes[0]
    const options: ClusterOptions = {
      enableOfflineQueue: false,
      lazyConnect: true,
      clusterRetryStrategy: (times) => Math.min(100 * times, 2000),
      retryDelayOnFailover: 200,
      redisOptions: { connectTimeout: 2000, maxRetriesPerRequest: 1, username: first.username, password: first.password, tls: first.tls ? {} : undefined }
    }
    redis = new Cluster(nodes.map((n) => ({ host: n.host, port: n.port })), options) as unknown as Redis
  } else if (cfg.sentinels !== undefined) {
    redis = new Redis({
      ...COMMON,
      sentinels: cfg.sentinels,
      name: cfg.name,
      sentinelRetryStrategy: (times) => Math.min(100 * times, 2000),
      // Told by the Sentinels when the primary moves, and a write refused by a demoted primary
      // (READONLY) reconnects to the new one and is sent again.
      failoverDetector: true,
      reconnectOnError: (err) => (err.message.startsWith('READONLY') ? 2 : false)
    })
  } else {
    redis = new Redis(cfg.url ?? 'redis://127.0.0.1:6379', COMMON)
  }
  watchRedis(redis, state, describeRedis(cfg), log)
  return redis
}

/** A second connection like `redis` (for subscribing), not connected until `connect()`. */
export function duplicateClient (redis: Redis): Redis {
  const r = redis as unknown as Redis | Cluster
  if (r instanceof Cluster) return r.duplicate([], { lazyConnect: true }) as unknown as Redis
  return r.duplicate({ lazyConnect: true })
}

/** Where the client goes, for logs (no password). */
export function describeRedis (cfg: RedisConfig): string {
  if (cfg.cluster !== undefined) return `cluster ${cfg.cluster.map(redisUrlForLogs).join(',')}`
  if (cfg.sentinels !== undefined) return `sentinel ${cfg.name ?? ''}@${cfg.sentinels.map((s) => `${s.host}:${s.port}`).join(',')}`
  return redisUrlForLogs(cfg.url ?? '')
}

function parseNode (url: string): { host: string, port: number, username?: string, password?: string, tls: boolean } {
  const u = new URL(url)
  return {
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: u.port === '' ? 6379 : Number(u.port),
    username: u.username === '' ? undefined : decodeURIComponent(u.username),
    password: u.password === '' ? undefined : decodeURIComponent(u.password),
    tls: u.protocol === 'rediss:'
  }
}

/** Keeps `state.up` current and logs each change once (ioredis reports every failed retry). */
function watchRedis (redis: Redis, state: RedisState, where: string, log: FastifyBaseLogger): void {
  let everUp = false
  let outage = false
  redis.on('ready', () => {
    state.up = true
    if (outage || !everUp) log.info({ redis: where }, everUp ? 'redis reachable again' : 'redis connected')
    outage = false
    everUp = true
  })
  const markDown = (err?: Error): void => {
    state.up = false
    if (outage) return
    outage = true
    log.warn({ redis: where, err: err?.message }, 'redis unreachable')
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
