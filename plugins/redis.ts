/**
 * The Redis connection for cluster mode (ioredis), when `redis.url` is set. Commands fail fast
 * while disconnected (no offline queue), so a Redis outage never stalls a request; reconnection
 * is automatic. State changes are logged once each, and /ready reports them.
 */
import fp from 'fastify-plugin'
import { Redis } from 'ioredis'

declare module 'fastify' {
  interface FastifyInstance {
    /** The shared Redis client, or null without `redis.url`. */
    redis: Redis | null
    /** Whether Redis is reachable now (always true without Redis). */
    redisState: { up: boolean }
  }
}

export default fp(async function redisPlugin (fastify) {
  const cfg = fastify.gatewayConfig.redis
  const state = { up: cfg === undefined }
  fastify.decorate('redisState', state)
  if (cfg === undefined) {
    fastify.decorate('redis', null)
    return
  }
  const redis = new Redis(cfg.url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    retryStrategy: (times) => Math.min(100 * times, 2000),
    lazyConnect: true
  })
  let everUp = false
  let outage = false
  redis.on('ready', () => {
    state.up = true
    if (outage || !everUp) fastify.log.info({ redis: redactUrl(cfg.url) }, everUp ? 'redis reachable again' : 'redis connected')
    outage = false
    everUp = true
  })
  // ioredis reports every failed reconnect: one warning per outage is enough.
  const markDown = (err?: Error): void => {
    state.up = false
    if (outage) return
    outage = true
    fastify.log.warn({ redis: redactUrl(cfg.url), err: err?.message }, 'redis unreachable')
  }
  redis.on('error', (err: Error) => markDown(err))
  redis.on('close', () => markDown())
  redis.connect().catch(() => { /* reported through the 'error' event; reconnects on its own */ })
  fastify.decorate('redis', redis)
  fastify.addHook('onClose', async () => { redis.disconnect() })
}, { name: 'tollgate-redis', fastify: '5.x', dependencies: ['tollgate-config'] })

/** A Redis URL without its password, for logs. */
function redactUrl (url: string): string {
  try {
    const u = new URL(url)
    if (u.password !== '') u.password = '***'
    return u.toString()
  } catch {
    return 'redis://(invalid url)'
  }
}
