/**
 * GET /metrics: Prometheus text. Never rate limited; needs the admin token when
 * `metrics.protected` is true, and then wrong tokens count against the IP as on the admin API
 * (the same counts: 429 once an IP is past the limit). Served on the admin port instead when
 * `admin.port` is set.
 */
import type { FastifyPluginAsync } from 'fastify'
import { authenticateAdmin } from '../../src/admin/auth.js'
import { codes } from '../../src/errors.js'

const metricsRoute: FastifyPluginAsync = async (fastify) => {
  const { metrics: metricsCfg, admin } = fastify.gatewayConfig
  const failures = fastify.adminAuthFailures
  fastify.get('/metrics', { schema: { hide: true }, config: { rateLimit: false } }, async (request, reply) => {
    if (metricsCfg.protected) {
      const r = admin.token === undefined ? { ok: false, retryAfter: 0 } : authenticateAdmin(failures, request.ip, request.headers.authorization, admin.token)
      if (!r.ok && r.retryAfter > 0) {
        return reply.header('retry-after', r.retryAfter).send(new codes.GW_ERR_RATE_LIMITED(`${r.retryAfter} seconds`))
      }
      if (!r.ok) return reply.header('www-authenticate', 'Bearer').send(new codes.GW_ERR_ADMIN_UNAUTHORIZED())
    }
    const body = await fastify.metrics.text()
    return reply.type(fastify.metrics.contentType).send(body)
  })
}

export default metricsRoute
