// @ts-check
/**
 * Example plugin: `POST /broadcast` pushes a message to every open WebSocket connection of a
 * gateway route, or of one user on that route (server push). It uses what the gateway offers:
 * its JWT check (`fastify.authenticate`, claims in `request.user`), its rate limiter
 * (`config.rateLimit` on the route), its connection registry (`fastify.connections`) and its logger.
 *
 * gateway.yaml:
 *   plugins:
 *     - path: ./examples/plugins/broadcast.js
 *       options: { role: ops }          # only tokens whose `roles` claim holds "ops"
 *
 *   curl -X POST http://localhost:8080/broadcast -H "Authorization: Bearer $TOKEN" \
 *     -H 'content-type: application/json' -d '{"route":"/chat","text":"maintenance at 22:00"}'
 *   -> 202 {"delivered":12}
 */

/**
 * @typedef {object} BroadcastOptions
 * @property {string[]} [routes] Routes (prefixes) that may be pushed to. Default: every configured route.
 * @property {string} [role] When set, the caller's token must list it in its `roles` claim.
 * @property {{ max: number, timeWindow: number | string }} [rateLimit] Broadcasts per caller. Default: 10 a minute.
 */

/**
 * @typedef {object} BroadcastBody
 * @property {string} route The route whose connections get the message.
 * @property {string} [user] Only this user's connections (the JWT `sub` they connected with).
 * @property {string} text The message, sent as a text frame.
 */

/** @type {import('tollgate').TollgatePlugin<BroadcastOptions>} */
export default async function broadcastPlugin (fastify, opts) {
  const routes = new Set(opts.routes ?? fastify.gatewayConfig.routes.map((r) => r.prefix))
  const role = opts.role

  fastify.post('/broadcast', {
    // The gateway's JWT check: 401 without a valid token; the claims are in request.user.
    onRequest: fastify.authenticate,
    // The gateway's rate limiter (it runs after the hook above, so callers are told apart by token).
    config: {
      rateLimit: {
        ...(opts.rateLimit ?? { max: 10, timeWindow: '1 minute' }),
        keyGenerator: (request) => typeof request.user?.sub === 'string' ? `broadcast:${request.user.sub}` : `broadcast:${request.ip}`
      }
    },
    schema: {
      body: {
        type: 'object',
        required: ['route', 'text'],
        additionalProperties: false,
        properties: {
          route: { type: 'string', minLength: 1 },
          user: { type: 'string', minLength: 1 },
          text: { type: 'string', maxLength: 65536 }
        }
      }
    }
  }, async (request, reply) => {
    const body = /** @type {BroadcastBody} */ (request.body)
    const claims = request.user
    if (role !== undefined && !(Array.isArray(claims.roles) && claims.roles.includes(role))) {
      return reply.code(403).send({ statusCode: 403, code: 'FORBIDDEN', error: 'Forbidden', message: `the "${role}" role is required` })
    }
    if (!routes.has(body.route)) {
      return reply.code(404).send({ statusCode: 404, code: 'UNKNOWN_ROUTE', error: 'Not Found', message: `no route "${body.route}" to broadcast to` })
    }
    // Every matching connection of the registry (of the whole cluster with Redis) gets the message.
    const delivered = await fastify.connections.broadcast({ route: body.route, user: body.user }, body.text, false)
    request.log.info({ route: body.route, user: body.user, delivered, by: claims.sub }, 'broadcast sent')
    return reply.code(202).send({ delivered })
  })
}
