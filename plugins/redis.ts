/**
 * The state shared across app generations (src/shared.ts): this instance's id, the Redis
 * connection for cluster mode, the registry, metrics and limit counters. Given by the runtime
 * (hot reload keeps it), or created here and then owned by this app.
 */
import fp from 'fastify-plugin'
import type { Redis } from 'ioredis'
import { createShared, type SharedState } from '../src/shared.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** State that outlives a reload. */
    shared: SharedState
    /** The shared Redis client, or null without `redis.url`. */
    redis: Redis | null
    /** Whether Redis is reachable now (always true without Redis). */
    redisState: { up: boolean }
  }
}

export default fp<{ shared?: SharedState }>(async function sharedPlugin (fastify, opts) {
  const owned = opts.shared === undefined
  const shared = opts.shared ?? createShared(fastify.gatewayConfig, fastify.log)
  fastify.decorate('shared', shared)
  fastify.decorate('instanceId', shared.instanceId)
  fastify.decorate('redis', shared.redis)
  fastify.decorate('redisState', shared.redisState)
  if (owned) {
    fastify.addHook('onReady', async () => { await shared.start() })
    fastify.addHook('onClose', async () => { await shared.close() })
  }
}, { name: 'tollgate-redis', fastify: '5.x', dependencies: ['tollgate-config'] })
