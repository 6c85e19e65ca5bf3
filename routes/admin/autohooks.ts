/** Every admin route needs `Authorization: Bearer <admin.token>`; the routes are not registered at all without a token. */
import type { FastifyPluginAsync } from 'fastify'
import { bearerMatches } from '../../src/admin-auth.js'
import { codes, errorBody } from '../../src/errors.js'

const adminAuth: FastifyPluginAsync = async (fastify) => {
  const token = fastify.gatewayConfig.admin.token!
  fastify.addHook('onRequest', async (request, reply) => {
    if (!bearerMatches(request.headers.authorization, token)) {
      await reply.code(401).header('www-authenticate', 'Bearer realm="tollgate-admin"').send(errorBody(new codes.GW_ERR_ADMIN_UNAUTHORIZED()))
    }
  })
}

export default adminAuth
