/** Public API of the tollgate package. */
// The decorators' types (`declare module 'fastify'` in plugins/*) and those of the Fastify plugins
// they build on (route `config.rateLimit`, `wsHandler`, `request.user`) reach a consumer's
// TypeScript only through modules this file pulls in: these imports are kept in index.d.ts.
// (gateway/plugin.ts imports the same plugins, but only as values: its .d.ts does not keep them.)
// This file and src/gateway/ are the only parts of src/ that may import plugins/ (eslint.config.js).
import '../plugins/config.js'
import '../plugins/edge.js'
import '../plugins/upstreams.js'
import '../plugins/drain.js'
import '../plugins/tracing.js'
import '../plugins/auth.js'
import '../plugins/registry.js'
import '../plugins/cluster.js'
import '../plugins/metrics.js'
import '../plugins/limits.js'
import '../plugins/bridge.js'
import '../plugins/proxy.js'
import '../plugins/admin.js'
import '@fastify/jwt'
import '@fastify/rate-limit'
import '@fastify/websocket'

export { buildGateway, type BuildOptions } from './gateway/app.js'
export { gatewayPlugin, type GatewayPluginOptions } from './gateway/plugin.js'
export type { TollgatePlugin } from './gateway/user-plugins.js'
export { resolveConfig } from './config/resolve.js'
export { loadConfig, type LoadedConfig } from './config/load.js'
export type { GatewayConfigInput, RouteInput, UpstreamInput, RateLimitInput } from './config/schema.js'
export type { GatewayConfig, RouteConfig, UpstreamConfig, RateLimitConfig, AuthMode } from './config/types.js'
export { ConfigError, PluginLoadError, codes } from './errors.js'
export * as closeCodes from './close-codes.js'
export type { Bridge, BridgeInfo, BridgeEnd } from './bridge/bridge.js'
export type { ConnectionRegistry, ConnectionFilter, ConnectionPage } from './registry/registry.js'
export type { UpstreamPool, PickContext, TargetState } from './upstreams/pool.js'
export type { JwtClaims } from '../plugins/auth.js'
export type { RouteLimits } from '../plugins/limits.js'
export { checkHandshake, type BridgeTarget } from '../plugins/bridge.js'
export type { HttpTarget } from '../plugins/proxy.js'
// Helpers for route plugins that bridge or proxy on their own routes, as the configured routes do.
export { upstreamPath } from './edge/forward-headers.js'
export { tollgateRewriteUrl, requestTarget } from '../plugins/edge.js'
export { normaliseTarget, type RequestTarget, type TargetProblem } from './edge/request-target.js'
export { queryWithout, claimHeaders } from './auth/token.js'
