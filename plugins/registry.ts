/**
 * The connection registry of this instance, shared by the bridge (which adds and removes
 * connections) and the admin routes (which list, inspect and close them).
 */
import fp from 'fastify-plugin'
import { MemoryRegistry, type ConnectionRegistry } from '../src/registry/registry.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Live WebSocket connections: list, get by id, close, send. */
    connections: ConnectionRegistry
  }
}

export default fp(async function registryPlugin (fastify) {
  fastify.decorate('connections', new MemoryRegistry())
}, { name: 'tollgate-registry', fastify: '5.x' })
