/** Makes the resolved configuration available to every other plugin and to users' route plugins. */
import fp from 'fastify-plugin'
import type { GatewayConfig } from '../src/config/types.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The gateway's resolved configuration (read-only). */
    gatewayConfig: GatewayConfig
  }
}

export interface ConfigPluginOptions { config: GatewayConfig }

export default fp<ConfigPluginOptions>(async function configPlugin (fastify, opts) {
  fastify.decorate('gatewayConfig', opts.config)
}, { name: 'tollgate-config', fastify: '5.x' })
