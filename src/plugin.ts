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
import configPlugin from '../plugins/config.js'
import registryPlugin from '../plugins/registry.js'
import websocketBridgePlugin from '../plugins/websocket-bridge.js'
import httpProxyPlugin from '../plugins/http-proxy.js'
import proxyRoutesPlugin from '../plugins/proxy-routes.js'
import metricsPlugin from '../plugins/metrics.js'
import authPlugin from '../plugins/auth.js'
import redisPlugin from '../plugins/redis.js'
import rateLimitPlugin from '../plugins/rate-limit.js'
import adminPlugin from '../plugins/admin.js'
import { resolveConfig } from './config/resolve.js'
import { assertSupported } from './config/supported.js'
import type { GatewayConfigInput } from './config/schema.js'
import type { GatewayConfig } from './config/types.js'

const here = dirname(fileURLToPath(import.meta.url))

export interface GatewayPluginOptions {
  /** The configuration, as in a config file (validated here), or already resolved. */
  config: GatewayConfigInput | GatewayConfig
  /** Folder for relative paths in `config` (default: cwd). */
  baseDir?: string
}

const kResolved = Symbol.for('tollgate.resolvedConfig')

/** Marks a configuration as resolved so it is not validated twice. */
export function markResolved (config: GatewayConfig): GatewayConfig {
  Object.defineProperty(config, kResolved, { value: true, enumerable: false })
  return config
}

/** Validates `config` unless it is already resolved. */
export function ensureResolved (config: GatewayConfigInput | GatewayConfig, baseDir?: string): GatewayConfig {
  if ((config as Record<symbol, unknown>)[kResolved] === true) return config as GatewayConfig
  return markResolved(resolveConfig(config, { baseDir }))
}

async function gateway (fastify: FastifyInstance, opts: GatewayPluginOptions): Promise<void> {
  const config = ensureResolved(opts.config, opts.baseDir)
  assertSupported(config)
  await fastify.register(configPlugin, { config })
  await fastify.register(registryPlugin)
  await fastify.register(metricsPlugin)
  await fastify.register(authPlugin)
  await fastify.register(redisPlugin)
  await fastify.register(rateLimitPlugin)
  await fastify.register(websocketBridgePlugin)
  await fastify.register(httpProxyPlugin)
  await fastify.register(proxyRoutesPlugin)
  // routes/admin and routes/metrics are registered by the admin plugin (public or admin port).
  await fastify.register(autoload, { dir: join(here, '..', 'routes'), ignorePattern: /^(admin|metrics\.)/ })
  await fastify.register(adminPlugin)
}

/** The gateway as a Fastify plugin (fastify-plugin wrapped: its decorators are visible to the parent). */
export const gatewayPlugin = fp(gateway, { name: 'tollgate', fastify: '5.x' })
