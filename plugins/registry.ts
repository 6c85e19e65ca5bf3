/**
 * The connection registry, shared by the bridge (which adds and removes connections) and the
 * admin routes (which list, inspect and close them). With Redis (cluster mode) it spans every
 * instance; otherwise it is this instance's memory. It lives in the shared state, so open
 * connections stay listed across a hot reload.
 */
import fp from 'fastify-plugin'
import type { ConnectionRegistry } from '../src/registry/registry.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Live WebSocket connections: list, get by id, close, send. */
    connections: ConnectionRegistry
  }
}

export default fp<{ registry: ConnectionRegistry }>(async function registryPlugin (fastify, opts) {
  fastify.decorate('connections', opts.registry)
}, { name: 'tollgate-registry', fastify: '5.x' })
