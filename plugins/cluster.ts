/**
 * Cluster identity and the Redis connection (src/cluster/): this instance's id, the shared Redis
 * client (null without `redis.url`) and whether it is reachable. Made by the composition root,
 * which keeps them across hot reloads.
 */
import fp from 'fastify-plugin'
import type { Redis } from 'ioredis'
import type { RedisState } from '../src/cluster/redis.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** This gateway process's id, as shown in `instanceId` of the admin API. */
    instanceId: string
    /** The shared Redis client, or null without `redis.url`. */
    redis: Redis | null
    /** Whether Redis is reachable now (always true without Redis). */
    redisState: RedisState
  }
}

export interface ClusterPluginOptions { instanceId: string, redis: Redis | null, redisState: RedisState }

export default fp<ClusterPluginOptions>(async function clusterPlugin (fastify, opts) {
  fastify.decorate('instanceId', opts.instanceId)
  fastify.decorate('redis', opts.redis)
  fastify.decorate('redisState', opts.redisState)
}, { name: 'tollgate-redis', fastify: '5.x' })
