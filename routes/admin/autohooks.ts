/**
 * Every admin route needs `Authorization: Bearer <admin.token>`; the routes are not registered at
 * all without a token. An IP past ADMIN_AUTH_FAILURES_PER_MINUTE wrong tokens gets 429 until its
 * window ends (src/admin/auth.ts).
 */
import type { FastifyPluginAsync } from 'fastify'
import { authenticateAdmin } from '../../src/admin/auth.js'
import { codes } from '../../src/errors.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** false on the dashboard's page and assets (routes/admin/ui.ts): they hold no data. */
    adminAuth?: boolean
  }
}

const adminAuth: FastifyPluginAsync = async (fastify) => {
  const token = fastify.gatewayConfig.admin.token!
  const failures = fastify.adminAuthFailures
  fastify.addHook('onRequest', async (request, reply) => {
    if (request.routeOptions.config.adminAuth === false) return
    const r = authenticateAdmin(failures, request.ip, request.headers.authorization, token)
    if (r.ok) return
    if (r.retryAfter > 0) {
      await reply.header('retry-after', r.retryAfter).send(new codes.GW_ERR_RATE_LIMITED(`${r.retryAfter} seconds`))
      return
    }
    await reply.header('www-authenticate', 'Bearer realm="tollgate-admin"').send(new codes.GW_ERR_ADMIN_UNAUTHORIZED())
  })
}

export default adminAuth
