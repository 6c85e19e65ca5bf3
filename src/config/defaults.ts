/**
 * Every built-in default, in one place: what a key means when the config leaves it out, and the
 * fixed limits the gateway applies. Durations in milliseconds, sizes in bytes.
 */

export const DEFAULT_HOST = '0.0.0.0'
export const DEFAULT_PORT = 8080
export const DEFAULT_DRAIN_TIMEOUT = 10_000
export const DEFAULT_RELOAD_DRAIN = 0
/** The window paced closes (shutdown, reloadDrain, closeOnUnhealthy) are spread over; 0: all at once. */
export const DEFAULT_DRAIN_PACE = 0
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
/** A target's weight when none is given (0 takes no new connections). */
export const DEFAULT_TARGET_WEIGHT = 1
/** upstreams.*.resolve: host names are resolved once per connection by the OS, not re-resolved into targets. */
export const DEFAULT_RESOLVE = 0
/** How long one resolution of a target's host name may take before the last answer is kept. */
export const RESOLVE_TIMEOUT = 5_000
/** Routes' connections may be closed by a rebalance unless the route sets `rebalance: false`. */
export const DEFAULT_ROUTE_REBALANCE = true
/** Rebalance closes only connections at least this old (ms), unless the request says otherwise. */
export const DEFAULT_REBALANCE_MIN_AGE = 60_000
/** After a rebalance, new connections are steered to the targets below their share for the close window plus this (ms). */
export const REBALANCE_STEER_MS = 30_000
/** Passive health: how long a target that failed to connect gets no new traffic. */
export const DEFAULT_UPSTREAM_BACKOFF = 10_000
/** The most targets one upstream may have at once: what the admin API, the cluster bus and DNS may add stops there. */
export const MAX_TARGETS_PER_UPSTREAM = 256
/** The most addresses taken from one DNS answer for one name (the rest are ignored, logged). */
export const MAX_RESOLVED_ADDRESSES = 64
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
export const DEFAULT_AUTHORIZE_TIMEOUT = 2_000
export const DEFAULT_AUTHORIZE_FORWARD_HEADERS = ['authorization', 'cookie'] as const
export const DEFAULT_AUTHORIZE_FAIL_OPEN = false
/** Authorization decisions are not reused unless `authorize.cache` says for how long. */
export const DEFAULT_AUTHORIZE_CACHE = 0
/** Decisions kept at most by one route's authorization cache. */
export const AUTHORIZE_CACHE_MAX = 10_000
/** The header that carries the verified token's claims (base64url JSON) to the auth service. */
export const AUTHORIZE_CLAIMS_HEADER = 'x-tollgate-claims'
/** Bytes of an auth service's refusal passed on to the client. */
export const AUTHORIZE_MAX_BODY = 64 * 1024
/** Refusals with a longer body are not cached (the cache then holds at most ~40 MiB of bodies). */
export const AUTHORIZE_CACHED_BODY = 4 * 1024
export const DEFAULT_EVENTS_TIMEOUT = 5_000
export const DEFAULT_EVENTS_QUEUE_SIZE = 100_000
/** Lifecycle event retries: the first after this, doubling up to EVENTS_RETRY_MAX, with jitter. */
export const EVENTS_RETRY_MIN = 200
export const EVENTS_RETRY_MAX = 30_000
/** Lifecycle events POSTed at once by one instance. */
export const EVENTS_CONCURRENCY = 32
/** At shutdown, how long the gateway waits for queued lifecycle events to be delivered. */
export const EVENTS_SHUTDOWN_GRACE = 5_000
/** Longest path parameter the routers take: a user id (up to 256 characters) percent-encoded. */
export const MAX_PARAM_LENGTH = 1024
