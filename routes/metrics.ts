/**
 * GET /metrics: Prometheus text. Never rate limited; needs the admin token when
 * `metrics.protected` is true. Served on the admin port instead when `admin.port` is set.
 */
import type { FastifyPluginAsync } from 'fastify'
import { bearerMatches } from '../src/admin-auth.js'
import { codes, errorBody } from '../src/errors.js'

const metricsRoute: FastifyPluginAsync = async (fastify) => {
  const { metrics: metricsCfg, admin } = fastify.gatewayConfig
  fastify.get('/metrics', { schema: { hide: true }, config: { rateLimit: false } }, async (request, reply) => {
    if (metricsCfg.protected && (admin.token === undefined || !bearerMatches(request.headers.authorization, admin.token))) {
      return reply.code(401).header('www-authenticate', 'Bearer').send(errorBody(new codes.GW_ERR_ADMIN_UNAUTHORIZED()))
    }
    const body = await fastify.metrics.text()
    return reply.type(fastify.metrics.contentType).send(body)
  })
}

export default metricsRoute
