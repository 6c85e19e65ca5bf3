/**
 * The admin API and /metrics: on the public server, or on a server of their own when
 * `admin.port` is set (then they are not served on the public port at all). The admin server
 * shares the gateway's state; src/gateway/server.ts listens on it.
 */
import fp from 'fastify-plugin'
import Fastify, { type FastifyInstance } from 'fastify'
import autoload from '@fastify/autoload'
import swagger from '@fastify/swagger'
import { randomUUID } from 'node:crypto'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Connection, ErrorBody } from '../routes/admin/schemas.js'
import metricsRoute from '../routes/metrics.js'
import edgePlugin, { notFoundHandler, tollgateRewriteUrl } from './edge.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The separate admin server when `admin.port` > 0 (not listening until the caller listens), else null. */
    adminServer: FastifyInstance | null
  }
}

const routesDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'routes')

export default fp(async function adminPlugin (fastify) {
  const admin = fastify.gatewayConfig.admin
  let target: FastifyInstance = fastify
  if (admin.port > 0) {
    // The same trustProxy as the public server: the admin API's per-IP limits see the same client IPs.
    // Its own edge too: targets normalised before routing, refused ones 400, a token-free 404.
    const server = Fastify({
      loggerInstance: fastify.log.child({ server: 'admin' }),
      genReqId: () => randomUUID(),
      trustProxy: fastify.gatewayConfig.server.trustProxy as boolean,
      rewriteUrl: tollgateRewriteUrl(fastify.gatewayConfig.server.encodedSlashes)
    })
    await server.register(edgePlugin, { encodedSlashes: fastify.gatewayConfig.server.encodedSlashes })
    server.setNotFoundHandler(notFoundHandler)
    for (const name of ['gatewayConfig', 'instanceId', 'upstreamPools', 'gatewayState', 'connections', 'metrics', 'reloadGateway'] as const) {
      server.decorate(name, fastify[name] as never)
    }
    fastify.addHook('onReady', async () => { await server.ready() })
    fastify.addHook('onClose', async () => { await server.close() })
    target = server
  }
  fastify.decorate('adminServer', target === fastify ? null : target)

  await target.register(metricsRoute)
  if (admin.token === undefined) {
    fastify.log.warn('admin API disabled: set admin.token or ADMIN_TOKEN to enable it')
    return
  }
  await target.register(import('../routes/admin-ui.js'), { prefix: admin.prefix })
  await target.register(async function adminScope (scope) {
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
    await scope.register(autoload, {
      dir: join(routesDir, 'admin'),
      autoHooks: true,
      cascadeHooks: true,
      ignorePattern: /^schemas\./,
      options: { prefix: admin.prefix }
    })
  })
}, { name: 'tollgate-admin', fastify: '5.x', dependencies: ['tollgate-config', 'tollgate-registry', 'tollgate-metrics'] })
