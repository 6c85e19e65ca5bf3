/** The configuration after validation and normalisation: units resolved, defaults applied, paths absolute. */

export type AuthMode = 'required' | 'optional' | 'none'
export type TokenSource = 'header' | 'query' | 'cookie' | 'protocol'
export type BalanceMode = 'round-robin' | 'least-connections' | 'ip-hash' | 'hash'

export interface RateWindow { max: number, window: number }

export interface RateLimitConfig {
  keyBy: 'ip' | 'user'
  http?: RateWindow
  handshake?: RateWindow
  concurrent?: number
  messages?: { rate: number, burst: number }
}

export interface UpstreamConfig {
  /** The name in `upstreams`, or the URL itself for a route whose `upstream` is a URL. */
  name: string
  /** Origins (scheme, host, port and optional base path) without a trailing slash; ws:// and wss:// are stored as http:// and https://. */
  targets: string[]
  /** The weight of each target, in the order of `targets` (default 1; 0: no new connections). */
  weights: number[]
  /** How often host names in `targets` are re-resolved, each address a target of its own (ms); 0: not at all. */
  resolve: number
  /** Rebalance on its own when a target is added (DNS or the admin API): only connections at least minAgeMs old; null: never. */
  autoRebalance: { minAgeMs: number } | null
  balance: BalanceMode
  hashOn: string
  healthCheck?: { path: string, interval: number, timeout: number, unhealthyAfter: number, healthyAfter: number }
  closeOnUnhealthy: boolean
  /** PEM text of an extra CA for https/wss targets. */
  ca?: string
}

/** An external auth service (forward auth). */
export interface AuthorizeConfig {
  url: string
  timeout: number
  /** Client headers sent to the auth service (lower case). */
  forwardHeaders: string[]
  /** Headers of the service's 2xx answer added to the upstream request (lower case). */
  upstreamHeaders: string[]
  /** The answer header that sets the connection's user id, or null. */
  userHeader: string | null
  /** Allow the request when the service cannot be reached or times out. */
  failOpen: boolean
  /** How long a decision is reused for the same request (ms); 0: never. */
  cacheTtl: number
}

/** Where a route's WebSocket lifecycle events go. */
export interface EventsConfig {
  url: string
  connect: boolean
  disconnect: boolean
  /** Time allowed for each POST before it is retried. */
  timeout: number
  /** Claims of the verified token copied into each event. */
  claims: string[]
}

export interface RouteConfig {
  /** Position in `routes`, for messages and metrics. */
  index: number
  /** Normalised: starts with /, no trailing slash except for the root route "/". */
  prefix: string
  upstream: UpstreamConfig | null
  /** Absolute folder for static routes. */
  static: string | null
  rewritePrefix: string
  websocket: boolean
  http: boolean
  auth: AuthMode
  /** The limits in force on this route (route override, else top level); null when none. */
  rateLimit: RateLimitConfig | null
  headers: Record<string, string>
  /** Largest request body proxied (route's own, else server.maxBodySize); null: unlimited. */
  maxBodySize: number | null
  /** Static routes: serve files and folders whose name starts with a dot (default deny: 404). */
  dotfiles: 'deny' | 'allow'
  /** Static routes: follow symlinks that lead out of the root (default false: 404). */
  followSymlinks: boolean
  /** Whether a rebalance of the upstream may close this route's connections (default true). */
  rebalance: boolean
  /** The auth service asked for this route (its own, else the top level's); null: none. */
  authorize: AuthorizeConfig | null
  /** Where this route's lifecycle events go (its own, else the top level's); null: nowhere. */
  events: EventsConfig | null
}

export interface JwtConfig {
  secret?: string
  publicKey?: string
  /** JWKS endpoint; keys are chosen by the token's kid and cached. */
  jwksUrl?: string
  algorithms: string[]
  issuer?: string
  audience?: string
  clockToleranceSec: number
  /** Claims a token must carry (e.g. exp); a token lacking one is 401. */
  requiredClaims: string[]
}

export interface GatewayConfig {
  server: {
    host: string
    port: number
    trustProxy: boolean | number | string | string[]
    tls?: { cert: string, key: string, certPath?: string, keyPath?: string }
    drainTimeout: number
    reloadDrain: number
    /** Paced closes are spread over this window (ms), at most ceil(n / seconds) a second; 0: all at once. */
    drainPace: number
    proxyTimeout: number
    /** `%2F`/`%5C` in a path: refused with 400, or kept (routed as `/`, sent upstream encoded). */
    encodedSlashes: 'refuse' | 'keep'
    /** Keep client header names with `_` (default false: dropped before proxying). */
    underscoresInHeaders: boolean
    /** Default largest request body for every route; null: unlimited. */
    maxBodySize: number | null
  }
  auth: {
    jwt?: JwtConfig
    tokenSources: TokenSource[]
    queryParam: string
    cookieName: string
    closeOnExpiry: boolean
    forwardClaims: Record<string, string>
  }
  upstreams: Record<string, UpstreamConfig>
  routes: RouteConfig[]
  websocket: {
    pingInterval: number
    pongTimeout: number
    idleTimeout: number
    maxPayload: number
    connectTimeout: number
    highWaterMark: number
    allowedOrigins: string[]
    /** permessage-deflate: negotiated end to end (passthrough) or not offered upstream (off). */
    compression: 'passthrough' | 'off'
  }
  rateLimit: RateLimitConfig | null
  authorize: AuthorizeConfig | null
  events: EventsConfig | null
  /** Lifecycle events waiting for delivery that this instance holds at most (older ones are kept, new ones dropped). */
  eventsQueueSize: number
  admin: { token?: string, prefix: string, port: number }
  /** Cluster mode: exactly one of url (one server), sentinels (with name) or cluster is set. */
  redis?: RedisConfig
  metrics: { protected: boolean }
  /** OpenTelemetry tracing over OTLP/HTTP; absent: off. */
  tracing?: {
    /** Where spans are sent: `<otlpEndpoint>/v1/traces`, or the URL itself when it already ends so. */
    tracesUrl: string
    serviceName: string
    /** Share of new traces sampled (a client's sampled traceparent is always followed). */
    sampleRatio: number
  }
  plugins: Array<{ path: string, options: Record<string, unknown>, prefix?: string }>
  /** Folder that relative paths were resolved against (the config file's folder, else the cwd). */
  baseDir: string
}

/** Where cluster mode's Redis is: one server (`url`), a Sentinel set (`sentinels` + `name`) or a Redis Cluster (`cluster`). */
export interface RedisConfig {
  url?: string
  sentinels?: Array<{ host: string, port: number }>
  /** The primary's name in the Sentinel set. */
  name?: string
  /** Startup nodes of a Redis Cluster (`redis://[user:pass@]host:port`; rediss:// for TLS). */
  cluster?: string[]
  failOpen: boolean
  keyPrefix: string
}
