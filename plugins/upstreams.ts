/**
 * The target pools of every upstream (src/upstreams/): balancing, passive and active health,
 * open-connection counts. Active health checks run while the app is up.
 */
import fp from 'fastify-plugin'
import type { UpstreamConfig } from '../src/config/types.js'
import { buildPools, type UpstreamPool } from '../src/upstreams/pool.js'
import { TargetCache } from '../src/edge/forward-headers.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Target pools by upstream (named upstreams and routes' inline ones). */
    upstreamPools: Map<UpstreamConfig, UpstreamPool>
    /** Target URLs parsed once for this app (HTTP proxying and WebSocket handshakes). */
    targetCache: TargetCache
  }
}

export default fp(async function upstreamsPlugin (fastify) {
  const config = fastify.gatewayConfig
  const upstreams = [...Object.values(config.upstreams), ...config.routes.flatMap((r) => r.upstream === null ? [] : [r.upstream])]
  const pools = buildPools(upstreams, { log: fastify.log })
  fastify.decorate('upstreamPools', pools)
  fastify.decorate('targetCache', new TargetCache())
  fastify.addHook('onReady', async () => {
    for (const p of pools.values()) p.start()
    // The newest ready app's targets are the ones /metrics shows.
    fastify.metrics.watchTargets(function * () {
      for (const [cfg, pool] of pools) for (const t of pool.state()) yield { upstream: cfg.name, target: t.url, up: t.healthy }
    })
  })
  fastify.addHook('onClose', async () => { for (const p of pools.values()) p.stop() })
}, { name: 'tollgate-upstreams', fastify: '5.x', dependencies: ['tollgate-config', 'tollgate-metrics'] })
