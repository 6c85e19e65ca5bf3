/**
 * The connection registry, shared by the bridge (which adds and removes connections) and the
 * admin routes (which list, inspect and close them). With Redis (cluster mode) it spans every
 * instance; otherwise it is this instance's memory.
 */
import fp from 'fastify-plugin'
import { MemoryRegistry, type ConnectionRegistry } from '../src/registry/registry.js'
import { RedisRegistry } from '../src/registry/redis-registry.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Live WebSocket connections: list, get by id, close, send. */
    connections: ConnectionRegistry
  }
}

export default fp(async function registryPlugin (fastify) {
  const cfg = fastify.gatewayConfig
  if (fastify.redis === null || cfg.redis === undefined) {
    fastify.decorate('connections', new MemoryRegistry())
    return
  }
  const registry = new RedisRegistry({
    redis: fastify.redis,
    prefix: cfg.redis.keyPrefix,
    instanceId: fastify.instanceId,
    pingInterval: cfg.websocket.pingInterval,
    log: fastify.log
  })
  fastify.decorate('connections', registry)
  fastify.addHook('onReady', async () => { await registry.start() })
  fastify.addHook('onClose', async () => { await registry.stop() })
}, { name: 'tollgate-registry', fastify: '5.x', dependencies: ['tollgate-config', 'tollgate-redis'] })
