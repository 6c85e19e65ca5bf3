/**
 * GET {prefix}/users/:id/connections: who is connected as a user, cluster-wide, for backends
 * that resync their presence after missing lifecycle events.
 */
import type { FastifyPluginAsync } from 'fastify'
import { Type, type Static } from '@sinclair/typebox'
import { Connection } from '../../src/admin/schemas.js'

/** A user id as the auth service (`userHeader`, up to 256 characters) or a token's `sub` sets it. */
const UserParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 256 }) })

const PageQuery = Type.Object({
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
  offset: Type.Optional(Type.Integer({ minimum: 0, default: 0 }))
}, { additionalProperties: false })

const users: FastifyPluginAsync = async (fastify) => {
  fastify.get<{ Params: Static<typeof UserParams>, Querystring: Static<typeof PageQuery> }>('/users/:id/connections', {
    schema: {
      summary: "A user's open connections (every instance), oldest first",
      tags: ['connections'],
      params: UserParams,
      querystring: PageQuery,
      response: {
        200: Type.Object({
          total: Type.Integer({ description: "the user's open connections in all" }),
          partial: Type.Optional(Type.Boolean({ description: 'cluster mode with Redis unreachable: this instance only' })),
          connections: Type.Array(Type.Ref(Connection))
        })
      }
    }
  }, async (request) => fastify.connections.search({ user: request.params.id, limit: request.query.limit, offset: request.query.offset }))
}

export default users
