// @ts-check
/**
 * Example plugin: a WebSocket route whose upstream is chosen per connection by a claim of the
 * caller's JWT (tenant routing). It reuses the gateway's bridge instead of reimplementing one:
 * the handshake checks, auth and limits answer with a plain HTTP status before any upgrade, the
 * upstream handshake completes before the client's (502/504 otherwise), and the connection is then
 * relayed, heart-beaten, listed in the admin API and closed like those of configured routes.
 *
 * gateway.yaml:
 *   auth: { jwt: { secret: change-me } }
 *   upstreams:
 *     acme: { targets: [http://10.0.0.1:9000, http://10.0.0.2:9000] }
 *   plugins:
 *     - path: ./examples/plugins/tenant-routing.js
 *       prefix: /tenant                    # required: the route is {prefix} and {prefix}/*
 *       options:
 *         claim: tenant                    # default
 *         tenants:                         # claim value -> upstream name or URL
 *           acme: acme
 *           globex: ws://10.0.1.1:9000
 *
 * A client whose token says `"tenant": "acme"` and connects to ws://gateway/tenant/room?x=1 is
 * bridged to ws://10.0.0.1:9000/room?x=1 (or .2, by the upstream's balancer and health), with an
 * `x-tenant: acme` header. No token: 401. A tenant not listed: 403.
 */
import { checkHandshake, claimHeaders, queryWithout, upstreamPath } from 'tollgate'

/**
 * @typedef {object} TenantRoutingOptions
 * @property {Record<string, string>} tenants Claim value -> upstream name (from `upstreams`) or URL (ws, wss, http, https).
 * @property {string} [claim] The claim that names the tenant. Default: `tenant`.
 * @property {string} [header] Header that tells the upstream the tenant (clients cannot set it). Default: `x-tenant`.
 */

/** @typedef {import('tollgate').UpstreamPool} UpstreamPool */
/** @typedef {import('tollgate').BridgeTarget} BridgeTarget */
/** @typedef {import('fastify').FastifyRequest} FastifyRequest */
/** @typedef {import('fastify').FastifyReply} FastifyReply */
/** @typedef {{ name: string, pool?: UpstreamPool, url?: string }} Tenant */

/** @type {import('tollgate').TollgatePlugin<TenantRoutingOptions>} */
export default async function tenantRouting (fastify, opts) {
  if (fastify.prefix === '') throw new Error('tenant-routing needs a prefix (e.g. prefix: /tenant)')
  const route = fastify.prefix
  const claim = opts.claim ?? 'tenant'
  const header = (opts.header ?? 'x-tenant').toLowerCase()
  const { auth, websocket } = fastify.gatewayConfig
  const state = fastify.gatewayState

  // Resolved once, so that a typo in the options fails startup rather than a handshake.
  /** @type {Map<string, UpstreamPool>} */
  const pools = new Map()
  for (const pool of fastify.upstreamPools.values()) pools.set(pool.config.name, pool)
  /** @type {Map<string, Tenant>} */
  const tenants = new Map()
  for (const [name, upstream] of Object.entries(opts.tenants ?? {})) {
    if (/^(ws|wss|http|https):\/\//i.test(upstream)) tenants.set(name, { name, url: upstream })
    else if (pools.has(upstream)) tenants.set(name, { name, pool: pools.get(upstream) })
    else throw new Error(`tenant-routing: tenants.${name}: unknown upstream "${upstream}"`)
  }

  // The gateway's top-level limits (handshakes, open connections, message rate) apply here too.
  const limits = fastify.routeLimits(fastify.gatewayConfig.rateLimit, route)
  // Claim headers of auth.forwardClaims, and ours, are set from the token, never from the client.
  const strip = [header, ...Object.values(auth.forwardClaims)]

  /** @type {WeakMap<FastifyRequest, Tenant>} */
  const tenantOf = new WeakMap()

  /** Handshake checks, auth, tenant, limits: each answers with a plain HTTP status before any upgrade. */
  async function onRequest (/** @type {FastifyRequest} */ request, /** @type {FastifyReply} */ reply) {
    if (!request.ws) return
    if (!checkHandshake(request, reply, state.draining, websocket.allowedOrigins)) return
    if (!await fastify.checkAuth(request, reply, 'required')) return
    const value = request.user[claim]
    const tenant = typeof value === 'string' ? tenants.get(value) : undefined
    if (tenant === undefined) {
      request.log.info({ tenant: value ?? null }, 'tenant-routing: no upstream for this tenant')
      await reply.code(403).send({ statusCode: 403, code: 'UNKNOWN_TENANT', error: 'Forbidden', message: 'no upstream for this tenant' })
      return
    }
    tenantOf.set(request, tenant)
    if (limits !== null) await limits.handshake(request, reply)
  }

  /** Opens the tenant's upstream; the bridge answers 502/504 itself when it cannot. */
  async function preHandler (/** @type {FastifyRequest} */ request, /** @type {FastifyReply} */ reply) {
    if (!request.ws) return
    const tenant = /** @type {Tenant} */ (tenantOf.get(request))
    const claims = request.user
    const headers = { ...claimHeaders(claims, auth.forwardClaims), [header]: tenant.name }
    // As a configured route with rewritePrefix "/": /tenant/room?x=1 -> /room?x=1, minus the token parameter.
    const q = request.url.indexOf('?')
    const pathname = q === -1 ? request.url : request.url.slice(0, q)
    const query = queryWithout(request.url, auth.queryParam)

    /** @type {(target: string) => BridgeTarget} */
    const bridgeTarget = (target) => {
      const base = new URL(target)
      return {
        target: base.origin,
        upstream: target,
        path: upstreamPath(pathname, route, '/', base.pathname === '/' ? '' : base.pathname) + (query === '' ? '' : `?${query}`),
        route,
        headers,
        strip,
        messageLimit: limits?.messages,
        pool: tenant.pool
      }
    }
    if (tenant.pool === undefined) {
      await fastify.websocketBridge.connect(request, reply, bridgeTarget(/** @type {string} */ (tenant.url)))
      return
    }
    const pool = tenant.pool
    const ctx = { ip: request.ip, userId: typeof claims.sub === 'string' ? claims.sub : null, headers: request.headers }
    const target = pool.pick(ctx)
    if (target === null) {
      await reply.code(502).send({ statusCode: 502, code: 'GW_ERR_NO_TARGET', error: 'Bad Gateway', message: 'no healthy upstream target' })
      return
    }
    // A target that refuses or times out costs one retry on another target of the same upstream.
    const first = bridgeTarget(target)
    first.retarget = (failed) => {
      const next = pool.pick(ctx, failed)
      return next === null ? null : bridgeTarget(next)
    }
    await fastify.websocketBridge.connect(request, reply, first)
  }

  for (const url of ['/', '/*']) {
    fastify.route({
      method: 'GET',
      url,
      // Listed under this name in the admin API and in metrics, like a configured route.
      config: { gatewayRoute: route },
      onRequest,
      preHandler,
      // A plain GET (no Upgrade) is told how to use this route.
      handler: async (_request, reply) => reply.code(426).header('upgrade', 'websocket').send({ statusCode: 426, code: 'GW_ERR_UPGRADE_REQUIRED', error: 'Upgrade Required', message: 'this route only accepts WebSocket connections' }),
      wsHandler: (socket, request) => fastify.websocketBridge.attach(socket, request)
    })
  }
}
