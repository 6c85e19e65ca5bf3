/**
 * The target pools of every upstream (src/upstreams/): balancing, passive and active health,
 * open-connection counts, DNS discovery of upstreams with `resolve`, and runtime target changes
 * (the admin API), sent to every instance over Redis in cluster mode. Active health checks and
 * DNS refreshes run while the app is up.
 */
import fp from 'fastify-plugin'
import type { UpstreamConfig } from '../src/config/types.js'
import { buildPools, distinctPools, type UpstreamPool } from '../src/upstreams/pool.js'
import { TargetCache } from '../src/edge/forward-headers.js'
import { TargetResolver, type Resolve } from '../src/upstreams/resolver.js'
import { TargetManager } from '../src/upstreams/target-manager.js'
import { TargetBus } from '../src/upstreams/target-bus.js'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Target pools by upstream (named upstreams and routes' inline ones); routes naming the same
     * upstream URL share one pool, so a pool may be there under several keys.
     */
    upstreamPools: Map<UpstreamConfig, UpstreamPool>
    /** Target URLs parsed once for this app (HTTP proxying and WebSocket handshakes). */
    targetCache: TargetCache
    /** Runtime changes of targets: add, update (weight, drain), remove, rebalance. */
    upstreamTargets: TargetManager
  }
}

export interface UpstreamsPluginOptions {
  /** How host names of upstreams with `resolve` are resolved (default: the system's, getaddrinfo). */
  resolve?: Resolve
}

export default fp<UpstreamsPluginOptions>(async function upstreamsPlugin (fastify, opts) {
  const config = fastify.gatewayConfig
  const upstreams = [...Object.values(config.upstreams), ...config.routes.flatMap((r) => r.upstream === null ? [] : [r.upstream])]
  const pools = buildPools(upstreams, { log: fastify.log })
  const targetCache = new TargetCache()
  fastify.decorate('upstreamPools', pools)
  fastify.decorate('targetCache', targetCache)

  const distinct = distinctPools(pools)
  const resolvers: TargetResolver[] = []
  for (const pool of distinct) {
    if (pool.names.length === 0) continue
    // An address found for a name is connected to by address, with the name's Host and TLS name.
    // Aliases of addresses that are gone are dropped, so DNS churn does not grow the cache.
    let aliased = new Set<string>()
    pool.onChange(() => {
      const now = new Set<string>()
      for (const t of pool.state()) {
        if (t.resolvedFrom === null) continue
        now.add(t.url)
        if (!aliased.has(t.url)) targetCache.alias(t.url, t.resolvedFrom)
      }
      for (const url of aliased) if (!now.has(url)) targetCache.forget(url)
      aliased = now
    })
    resolvers.push(new TargetResolver(pool, { resolve: opts.resolve, log: fastify.log }))
  }

  const movable = new Map(config.routes.map((r) => [r.prefix, r.rebalance]))
  const redis = fastify.redis
  let bus: TargetBus | null = null
  const manager = new TargetManager({
    pools: distinct,
    closer: () => fastify.websocketBridge,
    movable: (route) => movable.get(route) ?? true,
    instanceId: fastify.instanceId,
    publish: redis === null || config.redis === undefined ? undefined : async (cmd) => bus !== null && await bus.publish(cmd),
    rebalanced: (upstream, n) => { fastify.metrics.rebalanced(upstream, n) },
    log: fastify.log,
    // A newer generation took over (the runtime retires this one): its bus subscriber and DNS
    // refreshes take over too, so this one's stop. Health checks go on for the connections
    // this generation still holds (closeOnUnhealthy).
    onRetire: () => {
      for (const r of resolvers) r.stop()
      bus?.stop()
    }
  })
  fastify.decorate('upstreamTargets', manager)
  if (redis !== null && config.redis !== undefined) {
    bus = new TargetBus(redis, `${config.redis.keyPrefix}upstreams`, fastify.instanceId, (cmd, from) => { manager.apply(cmd, from) }, fastify.log)
  }

  fastify.addHook('onReady', async () => {
    for (const p of distinct) p.start()
    // The first answers are in before the app serves, so the first handshakes find targets.
    await Promise.all(resolvers.map((r) => r.start()))
    await bus?.start()
    // The newest ready app's targets are the ones /metrics shows.
    fastify.metrics.watchTargets(function * () {
      for (const pool of distinct) for (const t of pool.state()) yield { upstream: pool.name, target: t.url, up: t.healthy, weight: t.weight }
    })
  })
  fastify.addHook('onClose', async () => {
    for (const r of resolvers) r.stop()
    for (const p of distinct) p.stop()
    bus?.stop()
  })
}, { name: 'tollgate-upstreams', fastify: '5.x', dependencies: ['tollgate-config', 'tollgate-metrics', 'tollgate-redis'] })
