/**
 * Static routes (`static: ./public`): files served from a folder, as nginx's `root`, behind the
 * route's auth and HTTP limits like any other route.
 */
import fastifyStatic from '@fastify/static'
import type { FastifyInstance } from 'fastify'
import type { RouteConfig } from '../src/config/types.js'

/** Registers one static route in `scope` (the proxy routes' scope). */
export async function registerStatic (scope: FastifyInstance, route: RouteConfig): Promise<void> {
  const limits = scope.routeLimits(route.rateLimit, route.prefix)
  // A scope of its own, so the route's auth and HTTP limits guard its files like any route's.
  await scope.register(async function staticScope (inner) {
    inner.addHook('onRequest', async (request, reply) => {
      if (route.auth !== 'none') {
        if (!await inner.checkAuth(request, reply, route.auth)) return
      } else if (route.rateLimit?.keyBy === 'user') {
        await inner.identify(request)
      }
      if (limits !== null) await limits.http(request, reply)
    })
    await inner.register(fastifyStatic, {
      root: route.static!,
      // Without the trailing slash: @fastify/static then serves `${prefix}/*` and, with `redirect`,
      // answers the bare prefix with a 301 to the folder (as nginx does); given `/static/` it would
      // register no redirect and `/static` would be a 404.
      prefix: route.prefix,
      decorateReply: false,
      redirect: true,
      wildcard: true
    })
  })
}
