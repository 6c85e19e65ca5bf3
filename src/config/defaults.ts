/**
 * Every built-in default, in one place: what a key means when the config leaves it out, and the
 * fixed limits the gateway applies. Durations in milliseconds, sizes in bytes.
 */

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

export const DEFAULT_TRUST_PROXY = false
export const DEFAULT_ENCODED_SLASHES = 'refuse'
export const DEFAULT_UNDERSCORES_IN_HEADERS = false
export const DEFAULT_CLOSE_ON_EXPIRY = true
export const DEFAULT_METRICS_PROTECTED = false
/** JWT algorithms accepted with a public key or JWKS (no `algorithms` given). */
export const DEFAULT_JWT_ALGORITHMS_KEY = ['RS256']
export const DEFAULT_REDIS_FAIL_OPEN = true
export const DEFAULT_BALANCE = 'round-robin'
export const DEFAULT_HASH_ON = 'ip'
export const DEFAULT_CLOSE_ON_UNHEALTHY = false
export const DEFAULT_UNHEALTHY_AFTER = 2
export const DEFAULT_HEALTHY_AFTER = 1
/** Passive health: how long a target that failed to connect gets no new traffic. */
export const DEFAULT_UPSTREAM_BACKOFF = 10_000
export const DEFAULT_ROUTE_AUTH = 'none'
export const DEFAULT_DOTFILES = 'deny'
export const DEFAULT_FOLLOW_SYMLINKS = false
export const DEFAULT_RATE_KEY_BY = 'ip'
/** The window of a rate limit given without one. */
export const DEFAULT_RATE_WINDOW = 60_000
/** The window in which ADMIN_AUTH_FAILURES_PER_MINUTE wrong admin tokens are counted. */
export const ADMIN_AUTH_WINDOW = 60_000
/** Time a side has to answer a close frame before its socket is destroyed. */
export const DEFAULT_CLOSE_TIMEOUT = 10_000
export const DEFAULT_COMPRESSION = 'passthrough'
export const DEFAULT_ADMIN_PORT = 0
export const DEFAULT_CLOCK_TOLERANCE = 0
export const DEFAULT_ROUTE_WEBSOCKET = true
export const DEFAULT_ROUTE_HTTP = true
export const DEFAULT_LOG_LEVEL = 'info'
/** IPs whose wrong admin tokens are counted at once (the oldest are forgotten past that). */
export const ADMIN_AUTH_MAX_IPS = 10_000
export const DEFAULT_SERVICE_NAME = 'tollgate'
export const DEFAULT_SAMPLE_RATIO = 1
