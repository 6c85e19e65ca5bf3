/** Built-in defaults. Durations in milliseconds, sizes in bytes. */

export const DEFAULT_HOST = '0.0.0.0'
export const DEFAULT_PORT = 8080
export const DEFAULT_DRAIN_TIMEOUT = 10_000
export const DEFAULT_RELOAD_DRAIN = 0
/** HTTP proxy: time allowed for the upstream's response headers, and between body chunks (nginx proxy_read_timeout). */
export const DEFAULT_PROXY_TIMEOUT = 60_000
/** A request's head and body must arrive within this (Node's own default for its servers). */
export const REQUEST_TIMEOUT = 300_000

export const DEFAULT_PING_INTERVAL = 30_000
export const DEFAULT_PONG_TIMEOUT = 10_000
export const DEFAULT_IDLE_TIMEOUT = 0
export const DEFAULT_MAX_PAYLOAD = 1024 * 1024
export const DEFAULT_CONNECT_TIMEOUT = 10_000
export const DEFAULT_HIGH_WATER_MARK = 1024 * 1024

export const DEFAULT_ADMIN_PREFIX = '/admin'
/** Shorter admin tokens are refused at startup. */
export const MIN_ADMIN_TOKEN_LENGTH = 16
/** Failed admin authentications per minute from one IP before 429. */
export const ADMIN_AUTH_FAILURES_PER_MINUTE = 10
/** Bytes a client may send before its 101 that the gateway holds; past that it stops reading. */
export const EARLY_DATA_LIMIT = 64 * 1024
export const DEFAULT_REDIS_KEY_PREFIX = 'gw:'
export const DEFAULT_TOKEN_SOURCES = ['header', 'query', 'cookie', 'protocol'] as const
export const DEFAULT_QUERY_PARAM = 'access_token'
export const DEFAULT_COOKIE_NAME = 'access_token'
export const DEFAULT_JWT_ALGORITHMS_SECRET = ['HS256']
export const DEFAULT_HEALTH_INTERVAL = 5_000
export const DEFAULT_HEALTH_TIMEOUT = 2_000
