/**
 * The features of the spec that this version does not implement yet, refused when the gateway is
 * built. Accepting them silently would be worse than refusing them (a route believed to need a
 * token would be open), so startup fails with a clear message instead.
 */
import { ConfigError } from '../errors.js'
import type { GatewayConfig } from './types.js'

/** @throws ConfigError naming the first configured feature that is not implemented. */
export function assertSupported (config: GatewayConfig): void {
  const no = (path: string, what: string): never => { throw new ConfigError(path, `${what} is not supported by this version of tollgate yet`) }
  if (config.server.reloadDrain !== 0) no('server.reloadDrain', 'hot reload')
}

