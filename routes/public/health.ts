/**
 * Liveness and readiness. Never rate limited, never authenticated.
 * `/ready` answers 503 while the gateway drains.
 */
import type { FastifyPluginAsync } from 'fastify'

const health: FastifyPluginAsync = async (fastify) => {
  fastify.get('/health', async () => ({ status: 'ok' }))
  fastify.get('/ready', async (_request, reply) => {
    if (fastify.gatewayState.draining) return reply.code(503).send({ status: 'draining' })
    if (!fastify.redisState.up) return reply.code(503).send({ status: 'redis unreachable' })
    return { status: 'ready' }
  })
}

export default health
