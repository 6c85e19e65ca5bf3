/**
 * The features of the spec that this version does not implement yet, refused when the gateway is
 * built. Accepting them silently would be worse than refusing them (a route believed to need a
 * token would be open), so startup fails with a clear message instead.
 */
import { ConfigError } from '../errors.js'
import { keyPath } from './resolve.js'
import type { GatewayConfig } from './types.js'

/** @throws ConfigError naming the first configured feature that is not implemented. */
export function assertSupported (config: GatewayConfig): void {
  const no = (path: string, what: string): never => { throw new ConfigError(path, `${what} is not supported by this version of tollgate yet`) }
  if (config.rateLimit !== null || config.routes.some((r) => r.rateLimit !== null)) no('rateLimit', 'rate limiting')
  if (config.redis !== undefined) no('redis', 'cluster mode (Redis)')
  if (config.server.reloadDrain !== 0) no('server.reloadDrain', 'hot reload')
  if (config.plugins.length > 0) no('plugins', 'loading route plugins from the config')
  for (const u of Object.values(config.upstreams)) {
    const path = keyPath('/upstreams/' + u.name.replace(/~/g, '~0').replace(/\//g, '~1'))
    if (u.balance !== 'round-robin') no(`${path}.balance`, `balance "${u.balance}"`)
    if (u.healthCheck !== undefined) no(`${path}.healthCheck`, 'active health checking')
    if (u.closeOnUnhealthy) no(`${path}.closeOnUnhealthy`, 'closeOnUnhealthy')
  }
}

