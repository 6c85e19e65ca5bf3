/**
 * The configuration file's shape, as a TypeBox schema checked with Ajv.
 * Every object is closed (`additionalProperties: false`) so a misspelt key fails startup
 * instead of being silently ignored.
 */
import { Type, type Static, type TSchema, type TProperties } from '@sinclair/typebox'
import { DURATION_PATTERN, SIZE_PATTERN } from './units.js'

const Closed = <T extends TProperties>(props: T) => Type.Object(props, { additionalProperties: false })
const Opt = <T extends TSchema>(s: T) => Type.Optional(s)

/** A duration: milliseconds, or a string such as "500ms", "30s", "5m", "1h". */
export const Duration = Type.Union([
  Type.Number({ minimum: 0 }),
  Type.String({ pattern: DURATION_PATTERN })
], { description: 'duration' })

/** A size: bytes, or a string such as "64kb", "1mb". */
export const Size = Type.Union([
  Type.Integer({ minimum: 0 }),
  Type.String({ pattern: SIZE_PATTERN })
], { description: 'size' })

const HttpUrl = Type.String({ pattern: '^(https?|wss?)://[^\\s/]+', description: 'URL' })

/** A target: a URL, or `{ url, weight }` (weight 0 takes no new connections). */
const TargetSchema = Type.Union([
  HttpUrl,
  Closed({ url: HttpUrl, weight: Opt(Type.Integer({ minimum: 0, maximum: 1000 })) })
], { description: 'target' })

const RateWindow = Closed({ max: Type.Integer({ minimum: 1 }), window: Duration })

export const RateLimitSchema = Closed({
  keyBy: Opt(Type.Union([Type.Literal('ip'), Type.Literal('user')])),
  http: Opt(RateWindow),
  handshake: Opt(RateWindow),
  concurrent: Opt(Type.Integer({ minimum: 1 })),
  messages: Opt(Closed({ rate: Type.Number({ exclusiveMinimum: 0 }), burst: Type.Integer({ minimum: 1 }) }))
})

const HeaderName = Type.String({ pattern: '^[!#$%&\'*+.^_`|~0-9A-Za-z-]+$', description: 'header name' })

/** An auth service asked before a request is proxied or a WebSocket's upstream handshake starts. */
export const AuthorizeSchema = Closed({
  url: Type.String({ pattern: '^https?://[^\\s/]+', description: 'URL' }),
  timeout: Opt(Duration),
  forwardHeaders: Opt(Type.Array(HeaderName)),
  upstreamHeaders: Opt(Type.Array(HeaderName)),
  userHeader: Opt(HeaderName),
  failOpen: Opt(Type.Boolean()),
  cache: Opt(Duration)
})

const EventsProps = {
  url: Type.String({ pattern: '^https?://[^\\s/]+', description: 'URL' }),
  on: Opt(Type.Array(Type.Union([Type.Literal('connect'), Type.Literal('disconnect')]), { minItems: 1 })),
  timeout: Opt(Duration),
  claims: Opt(Type.Array(Type.String({ minLength: 1 })))
}
/** Lifecycle events of a route's WebSockets, POSTed to a backend. */
export const EventsSchema = Closed(EventsProps)

export const RouteSchema = Closed({
  prefix: Type.String({ pattern: '^/', description: 'path prefix starting with /' }),
  upstream: Opt(Type.String({ minLength: 1 })),
  static: Opt(Type.String({ minLength: 1 })),
  rewritePrefix: Opt(Type.String({ pattern: '^(/.*)?$' })),
  websocket: Opt(Type.Boolean()),
  http: Opt(Type.Boolean()),
  auth: Opt(Type.Union([Type.Literal('required'), Type.Literal('optional'), Type.Literal('none')])),
  rateLimit: Opt(Type.Union([RateLimitSchema, Type.Literal(false)])),
  headers: Opt(Type.Record(Type.String(), Type.String())),
  maxBodySize: Opt(Size),
  dotfiles: Opt(Type.Union([Type.Literal('deny'), Type.Literal('allow')])),
  followSymlinks: Opt(Type.Boolean()),
  rebalance: Opt(Type.Boolean()),
  authorize: Opt(Type.Union([AuthorizeSchema, Type.Literal(false)])),
  events: Opt(Type.Union([EventsSchema, Type.Literal(false)]))
})

export const HealthCheckSchema = Closed({
  path: Type.String({ pattern: '^/' }),
  interval: Opt(Duration),
  timeout: Opt(Duration),
  unhealthyAfter: Opt(Type.Integer({ minimum: 1 })),
  healthyAfter: Opt(Type.Integer({ minimum: 1 }))
})

export const UpstreamSchema = Closed({
  targets: Type.Array(TargetSchema, { minItems: 1 }),
  resolve: Opt(Duration),
  rebalance: Opt(Closed({ auto: Type.Boolean(), minAge: Opt(Duration) })),
  balance: Opt(Type.Union([
    Type.Literal('round-robin'), Type.Literal('least-connections'), Type.Literal('ip-hash'), Type.Literal('hash')
  ])),
  hashOn: Opt(Type.String({ pattern: '^(ip|user|header:.+|cookie:.+)$' })),
  healthCheck: Opt(HealthCheckSchema),
  closeOnUnhealthy: Opt(Type.Boolean()),
  ca: Opt(Type.String({ minLength: 1, description: 'PEM or path to a CA bundle for https/wss targets' }))
})

export const ConfigSchema = Closed({
  server: Opt(Closed({
    host: Opt(Type.String({ minLength: 1 })),
    port: Opt(Type.Integer({ minimum: 0, maximum: 65535 })),
    trustProxy: Opt(Type.Union([Type.Boolean(), Type.Integer({ minimum: 0 }), Type.String(), Type.Array(Type.String())])),
    tls: Opt(Closed({ cert: Type.String({ minLength: 1 }), key: Type.String({ minLength: 1 }) })),
    drainTimeout: Opt(Duration),
    reloadDrain: Opt(Duration),
    drainPace: Opt(Duration),
    proxyTimeout: Opt(Duration),
    encodedSlashes: Opt(Type.Union([Type.Literal('refuse'), Type.Literal('keep')])),
    underscoresInHeaders: Opt(Type.Boolean()),
    maxBodySize: Opt(Size)
  })),
  auth: Opt(Closed({
    jwt: Opt(Closed({
      secret: Opt(Type.String({ minLength: 1 })),
      publicKey: Opt(Type.String({ minLength: 1 })),
      jwksUrl: Opt(Type.String({ pattern: '^https?://', description: 'URL' })),
      algorithms: Opt(Type.Array(Type.String(), { minItems: 1 })),
      issuer: Opt(Type.String()),
      audience: Opt(Type.String()),
      clockToleranceSec: Opt(Type.Number({ minimum: 0 })),
      requiredClaims: Opt(Type.Array(Type.String({ minLength: 1 })))
    })),
    tokenSources: Opt(Type.Array(Type.Union([
      Type.Literal('header'), Type.Literal('query'), Type.Literal('cookie'), Type.Literal('protocol')
    ]))),
    queryParam: Opt(Type.String({ minLength: 1 })),
    cookieName: Opt(Type.String({ minLength: 1 })),
    closeOnExpiry: Opt(Type.Boolean()),
    forwardClaims: Opt(Type.Record(Type.String(), Type.String()))
  })),
  upstreams: Opt(Type.Record(Type.String({ minLength: 1 }), UpstreamSchema)),
  routes: Opt(Type.Array(RouteSchema)),
  websocket: Opt(Closed({
    pingInterval: Opt(Duration),
    pongTimeout: Opt(Duration),
    idleTimeout: Opt(Duration),
    maxPayload: Opt(Size),
    connectTimeout: Opt(Duration),
    highWaterMark: Opt(Size),
    allowedOrigins: Opt(Type.Array(Type.String())),
    compression: Opt(Type.Union([Type.Literal('passthrough'), Type.Literal('off')]))
  })),
  rateLimit: Opt(RateLimitSchema),
  authorize: Opt(AuthorizeSchema),
  events: Opt(Closed({ ...EventsProps, queueSize: Opt(Type.Integer({ minimum: 1 })) })),
  admin: Opt(Closed({
    token: Opt(Type.String({ minLength: 1 })),
    prefix: Opt(Type.String({ pattern: '^/' })),
    port: Opt(Type.Integer({ minimum: 0, maximum: 65535 }))
  })),
  redis: Opt(Closed({
    url: Opt(Type.String({ pattern: '^rediss?://' })),
    // A Sentinel set (with the primary's name), or a Redis Cluster's startup nodes: instead of url.
    sentinels: Opt(Type.Array(Closed({ host: Type.String({ minLength: 1 }), port: Type.Integer({ minimum: 1, maximum: 65535 }) }), { minItems: 1 })),
    name: Opt(Type.String({ minLength: 1 })),
    cluster: Opt(Type.Array(Type.String({ pattern: '^rediss?://' }), { minItems: 1 })),
    failOpen: Opt(Type.Boolean()),
    // Braces would break the hash tags that keep multi-key scripts legal on Redis Cluster.
    keyPrefix: Opt(Type.String({ pattern: '^[^{}]*$' }))
  })),
  metrics: Opt(Closed({ protected: Opt(Type.Boolean()) })),
  tracing: Opt(Closed({
    otlpEndpoint: Type.String({ pattern: '^https?://' }),
    serviceName: Opt(Type.String({ minLength: 1 })),
    sampleRatio: Opt(Type.Number({ minimum: 0, maximum: 1 }))
  })),
  plugins: Opt(Type.Array(Type.Union([
    Type.String({ minLength: 1 }),
    Closed({ path: Type.String({ minLength: 1 }), options: Opt(Type.Record(Type.String(), Type.Unknown())), prefix: Opt(Type.String()) })
  ])))
})

/** The configuration as written in a file or passed to `buildGateway()`. */
export type GatewayConfigInput = Static<typeof ConfigSchema>
export type RouteInput = Static<typeof RouteSchema>
export type UpstreamInput = Static<typeof UpstreamSchema>
export type RateLimitInput = Static<typeof RateLimitSchema>
export type AuthorizeInput = Static<typeof AuthorizeSchema>
export type EventsInput = Static<typeof EventsSchema>
