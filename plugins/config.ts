/**
 * Makes the resolved configuration, this instance's id and the upstream pools available to every
 * other plugin and to users' route plugins.
 */
import fp from 'fastify-plugin'
import type { GatewayConfig, UpstreamConfig } from '../src/config/types.js'
import { buildPools, type UpstreamPool } from '../src/upstreams/pool.js'
import { headerPolicy, type HeaderPolicy } from '../src/bridge/forward-headers.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The gateway's resolved configuration (read-only). */
    gatewayConfig: GatewayConfig
    /** This gateway process's id, as shown in `instanceId` of the admin API. */
    instanceId: string
    /** Target pools by upstream. */
    upstreamPools: Map<UpstreamConfig, UpstreamPool>
    /** Which client headers go upstream (underscores, trusted proxies): server.underscoresInHeaders, server.trustProxy. */
    headerPolicy: HeaderPolicy
    /** Lifecycle state: `draining` turns true when shutdown starts. */
    gatewayState: { draining: boolean }
  }
}

export interface ConfigPluginOptions { config: GatewayConfig }

export default fp<ConfigPluginOptions>(async function configPlugin (fastify, opts) {
  const config = opts.config
  const upstreams = [...Object.values(config.upstreams), ...config.routes.flatMap((r) => r.upstream === null ? [] : [r.upstream])]
  fastify.decorate('gatewayConfig', config)
  fastify.decorate('headerPolicy', headerPolicy(config.server))
  const pools = buildPools(upstreams, { log: fastify.log })
  fastify.decorate('upstreamPools', pools)
  // Active health checks run while the gateway is up.
  fastify.addHook('onReady', async () => { for (const p of pools.values()) p.start() })
  fastify.addHook('onClose', async () => { for (const p of pools.values()) p.stop() })
  fastify.decorate('gatewayState', { draining: false })
}, { name: 'tollgate-config', fastify: '5.x' })
