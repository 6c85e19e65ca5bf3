/**
 * The gateway as one Fastify plugin: config, registry, bridge, HTTP proxy and the configured
 * routes, then the autoloaded routes/ (health, admin), then the user's plugins.
 * Users who run their own Fastify app register this plugin with a configuration object.
 */
import fp from 'fastify-plugin'
import autoload from '@fastify/autoload'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'
import configPlugin from '../../plugins/config.js'
import edgePlugin from '../../plugins/edge.js'
import registryPlugin from '../../plugins/registry.js'
import websocketBridgePlugin from '../../plugins/websocket-bridge.js'
import httpProxyPlugin from '../../plugins/http-proxy.js'
import proxyRoutesPlugin from '../../plugins/proxy-routes.js'
import metricsPlugin from '../../plugins/metrics.js'
import authPlugin from '../../plugins/auth.js'
import redisPlugin from '../../plugins/redis.js'
import rateLimitPlugin from '../../plugins/rate-limit.js'
import adminPlugin from '../../plugins/admin.js'
import { ensureResolved } from '../config/resolve.js'
import type { GatewayConfigInput } from '../config/schema.js'
import type { GatewayConfig } from '../config/types.js'
import type { SharedState } from '../shared.js'
import type { ReloadResult } from './types.js'
import { registerUserPlugins } from './user-plugins.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Reloads the configuration (set by the runtime that owns this app); null when unavailable. */
    reloadGateway: (() => Promise<ReloadResult>) | null
  }
}

const here = dirname(fileURLToPath(import.meta.url))

export interface GatewayPluginOptions {
  /** The configuration, as in a config file (validated here), or already resolved. */
  config: GatewayConfigInput | GatewayConfig
  /** Folder for relative paths in `config` (default: cwd). */
  baseDir?: string
  /** State that outlives this app (hot reload); made here when absent. */
  shared?: SharedState
  /** What POST {admin.prefix}/reload calls; without it that route answers 501. */
  reload?: () => Promise<ReloadResult>
}

async function gateway (fastify: FastifyInstance, opts: GatewayPluginOptions): Promise<void> {
  const config = ensureResolved(opts.config, opts.baseDir)
  await fastify.register(edgePlugin, { encodedSlashes: config.server.encodedSlashes })
  await fastify.register(configPlugin, { config })
  await fastify.register(redisPlugin, { shared: opts.shared })
  fastify.decorate('reloadGateway', opts.reload ?? null)
  await fastify.register(registryPlugin)
  await fastify.register(metricsPlugin)
  await fastify.register(authPlugin)
  await fastify.register(rateLimitPlugin)
  await fastify.register(websocketBridgePlugin)
  await fastify.register(httpProxyPlugin)
  await fastify.register(proxyRoutesPlugin)
  // routes/admin and routes/metrics are registered by the admin plugin (public or admin port).
  await fastify.register(autoload, { dir: join(here, '..', '..', 'routes'), ignorePattern: /^(admin|metrics\.)/ })
  await fastify.register(adminPlugin)
  await registerUserPlugins(fastify, config)
}

/** The gateway as a Fastify plugin (fastify-plugin wrapped: its decorators are visible to the parent). */
export const gatewayPlugin = fp(gateway, { name: 'tollgate', fastify: '5.x' })
