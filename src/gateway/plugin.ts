/**
 * The gateway as one Fastify plugin: the plugins/ (config, cluster, registry, metrics, tracing, upstreams,
 * drain, auth, limits, bridge, proxy, routing, admin), then the autoloaded routes/ (public, ops,
 * admin), then the user's plugins.
 * Users who run their own Fastify app register this plugin with a configuration object.
 */
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import configPlugin from '../../plugins/config.js'
import edgePlugin from '../../plugins/edge.js'
import clusterPlugin from '../../plugins/cluster.js'
import registryPlugin from '../../plugins/registry.js'
import metricsPlugin from '../../plugins/metrics.js'
import upstreamsPlugin from '../../plugins/upstreams.js'
import drainPlugin from '../../plugins/drain.js'
import tracingPlugin from '../../plugins/tracing.js'
import authPlugin from '../../plugins/auth.js'
import authorizePlugin from '../../plugins/authorize.js'
import limitsPlugin from '../../plugins/limits.js'
import bridgePlugin from '../../plugins/bridge.js'
import eventsPlugin from '../../plugins/events.js'
import proxyPlugin from '../../plugins/proxy.js'
import routingPlugin from '../../plugins/routing.js'
import adminPlugin, { adminDocs } from '../../plugins/admin.js'
import { ensureResolved } from '../config/resolve.js'
import type { GatewayConfigInput } from '../config/schema.js'
import type { GatewayConfig } from '../config/types.js'
import { createShared, type SharedState } from './shared-state.js'
import type { ReloadResult } from './types.js'
import { registerUserPlugins } from './user-plugins.js'
import { registerRoutes } from './routes.js'
import type { Resolve } from '../upstreams/resolver.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Reloads the configuration (set by the runtime that owns this app); null when unavailable. */
    reloadGateway: (() => Promise<ReloadResult>) | null
  }
}

export interface GatewayPluginOptions {
  /** The configuration, as in a config file (validated here), or already resolved. */
  config: GatewayConfigInput | GatewayConfig
  /** Folder for relative paths in `config` (default: cwd). */
  baseDir?: string
  /** State that outlives this app (hot reload); made here when absent. */
  shared?: SharedState
  /** What POST {admin.prefix}/reload calls; without it that route answers 501. */
  reload?: () => Promise<ReloadResult>
  /** How host names of upstreams with `resolve` are resolved (default: the system's); for tests and custom discovery. */
  resolve?: Resolve
}

async function gateway (fastify: FastifyInstance, opts: GatewayPluginOptions): Promise<void> {
  const config = ensureResolved(opts.config, opts.baseDir)
  // What outlives a reload comes from the runtime; alone, this app makes and owns its own.
  const shared = opts.shared ?? createShared(config, fastify.log)
  if (opts.shared === undefined) {
    fastify.addHook('onReady', async () => { await shared.start() })
    fastify.addHook('onClose', async () => { await shared.close() })
  }
  await fastify.register(edgePlugin, { server: config.server })
  await fastify.register(configPlugin, { config })
  await fastify.register(clusterPlugin, { instanceId: shared.instanceId, redis: shared.redis, redisState: shared.redisState })
  fastify.decorate('reloadGateway', opts.reload ?? null)
  await fastify.register(registryPlugin, { registry: shared.registry })
  await fastify.register(metricsPlugin, { metrics: shared.metrics })
  await fastify.register(tracingPlugin)
  await fastify.register(upstreamsPlugin, { resolve: opts.resolve })
  await fastify.register(drainPlugin)
  await fastify.register(authPlugin)
  await fastify.register(authorizePlugin)
  await fastify.register(limitsPlugin, { concurrency: shared.concurrency, windows: shared.windows })
  await fastify.register(bridgePlugin)
  await fastify.register(eventsPlugin, { queue: shared.events })
  await fastify.register(proxyPlugin)
  await fastify.register(routingPlugin)
  await registerRoutes(fastify, 'public')
  // The admin listener: the gateway's own, or the admin.port server.
  await fastify.register(adminPlugin)
  const adminApp = fastify.adminServer ?? fastify
  await registerRoutes(adminApp, 'ops')
  // Without a token the admin API is not there at all (/metrics is, unprotected unless configured).
  if (config.admin.token !== undefined) {
    await adminApp.register(async function adminApi (scope) {
      await scope.register(adminDocs)
      await registerRoutes(scope, 'admin', config.admin.prefix)
    })
  }
  await registerUserPlugins(fastify, config)
}

/** The gateway as a Fastify plugin (fastify-plugin wrapped: its decorators are visible to the parent). */
export const gatewayPlugin = fp(gateway, { name: 'tollgate', fastify: '5.x' })
