/**
 * Every admin route needs `Authorization: Bearer <admin.token>`; the routes are not registered at
 * all without a token. An IP past ADMIN_AUTH_FAILURES_PER_MINUTE wrong tokens gets 429 until its
 * window ends (src/admin-auth.ts).
 */
import type { FastifyPluginAsync } from 'fastify'
import { adminAuthFailures, authenticateAdmin } from '../../src/admin-auth.js'
import { codes, errorBody } from '../../src/errors.js'

const adminAuth: FastifyPluginAsync = async (fastify) => {
  const token = fastify.gatewayConfig.admin.token!
  const failures = adminAuthFailures(fastify.gatewayState)
  fastify.addHook('onRequest', async (request, reply) => {
    const r = authenticateAdmin(failures, request.ip, request.headers.authorization, token)
    if (r.ok) return
    if (r.retryAfter > 0) {
      await reply.code(429).header('retry-after', r.retryAfter).send(errorBody(new codes.GW_ERR_RATE_LIMITED(`${r.retryAfter} seconds`)))
      return
    }
    await reply.code(401).header('www-authenticate', 'Bearer realm="tollgate-admin"').send(errorBody(new codes.GW_ERR_ADMIN_UNAUTHORIZED()))
  })
}

export default adminAuth
