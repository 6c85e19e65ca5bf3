/**
 * The admin listener: the public server, or a server of its own when `admin.port` is set (then
 * the admin API and /metrics are not served on the public port at all). The admin server shares
 * the gateway's state; src/gateway/server.ts listens on it, src/gateway/plugin.ts puts
 * routes/ops and routes/admin on it.
 */
import fp from 'fastify-plugin'
import Fastify, { type FastifyInstance } from 'fastify'
import swagger from '@fastify/swagger'
import { requestId } from '../src/http/request-id.js'
import { Connection, ErrorBody } from '../src/admin/schemas.js'
import { AdminAuthFailures } from '../src/admin/auth.js'
import edgePlugin, { notFoundHandler, tollgateRewriteUrl } from './edge.js'
import { gatewayErrorHandler } from '../src/errors.js'
import { MAX_PARAM_LENGTH } from '../src/config/defaults.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The separate admin server when `admin.port` > 0 (not listening until the caller listens), else null. */
    adminServer: FastifyInstance | null
    /**
     * Wrong admin tokens per IP, counted by everything that checks the token (the admin API's
     * hook and protected /metrics), on either listener.
     */
    adminAuthFailures: AdminAuthFailures
  }
}

export default fp(async function adminPlugin (fastify) {
  const admin = fastify.gatewayConfig.admin
  fastify.decorate('adminAuthFailures', new AdminAuthFailures())
  let target: FastifyInstance = fastify
  if (admin.port > 0) {
    // The same trustProxy as the public server: the admin API's per-IP limits see the same client IPs.
    // Its own edge too: targets normalised before routing, refused ones 400, a token-free 404.
    const server = Fastify({
      loggerInstance: fastify.log.child({ server: 'admin' }),
      genReqId: requestId,
      routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
      trustProxy: fastify.gatewayConfig.server.trustProxy as boolean,
      rewriteUrl: tollgateRewriteUrl(fastify.gatewayConfig.server.encodedSlashes)
    })
    await server.register(edgePlugin, { server: fastify.gatewayConfig.server })
    server.setErrorHandler(gatewayErrorHandler)
    server.setNotFoundHandler(notFoundHandler)
    for (const name of ['gatewayConfig', 'instanceId', 'upstreamPools', 'gatewayState', 'connections', 'metrics', 'reloadGateway', 'adminAuthFailures'] as const) {
      server.decorate(name, fastify[name] as never)
    }
    fastify.addHook('onReady', async () => { await server.ready() })
    fastify.addHook('onClose', async () => { await server.close() })
    target = server
  }
  fastify.decorate('adminServer', target === fastify ? null : target)
  if (admin.token === undefined) fastify.log.warn('admin API disabled: set admin.token or ADMIN_TOKEN to enable it')
}, { name: 'tollgate-admin', fastify: '5.x', dependencies: ['tollgate-config', 'tollgate-registry', 'tollgate-metrics'] })

/**
 * The admin API's OpenAPI document and shared schemas, for the scope that holds routes/admin
 * (registered there by the composition root, so the document sees exactly those routes).
 */
export const adminDocs = fp(async function adminDocsPlugin (scope) {
  const admin = scope.gatewayConfig.admin
  await scope.register(swagger, {
    openapi: {
      info: { title: 'Tollgate admin API', version: '1' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
      servers: [{ url: admin.prefix }]
    },
    refResolver: { buildLocalReference: (json, _base, _fragment, i) => String(json.$id ?? `def-${i}`) },
    // Paths in the document are relative to the admin prefix (see servers).
    transform: ({ schema, url }) => ({ schema, url: url.startsWith(admin.prefix) ? url.slice(admin.prefix.length) || '/' : url })
  })
  scope.addSchema(Connection)
  scope.addSchema(ErrorBody)
}, { name: 'tollgate-admin-docs', fastify: '5.x' })
