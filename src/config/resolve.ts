/**
 * Validates a configuration object against the schema once, at startup, and turns it into a
 * GatewayConfig: units parsed, defaults applied, upstream names resolved, paths made absolute.
 * Every failure is a ConfigError whose message starts with the key path.
 */
import { readFileSync } from 'node:fs'
import { isAbsolute, resolve as resolvePath } from 'node:path'
import { Ajv, type ErrorObject } from 'ajv'
import { ConfigSchema, type AuthorizeInput, type EventsInput, type GatewayConfigInput, type RateLimitInput, type RouteInput, type UpstreamInput } from './schema.js'
import { parseDuration, parseSize } from './units.js'
import * as D from './defaults.js'
import type { AuthorizeConfig, EventsConfig, GatewayConfig, RateLimitConfig, RouteConfig, UpstreamConfig } from './types.js'
import { ConfigError } from '../errors.js'

const ajv = new Ajv({ allErrors: false, strict: false, verbose: true })
const validateSchema = ajv.compile(ConfigSchema)

/** Turns an Ajv instance path (`/routes/1/upstream`) into a key path (`routes[1].upstream`). */
export function keyPath (instancePath: string, extra?: string): string {
  const parts = instancePath.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
  if (extra !== undefined) parts.push(extra)
  let out = ''
  for (const p of parts) {
    if (/^\d+$/.test(p)) out += `[${p}]`
    else if (/^[A-Za-z_$][\w$-]*$/.test(p)) out += out === '' ? p : `.${p}`
    else out += `[${JSON.stringify(p)}]`
  }
  return out
}

function describe (err: ErrorObject): ConfigError {
  const schema = err.parentSchema as { description?: string } | undefined
  switch (err.keyword) {
    case 'additionalProperties':
      return new ConfigError(keyPath(err.instancePath, String(err.params.additionalProperty)), 'unknown key')
    case 'required':
      return new ConfigError(keyPath(err.instancePath, String(err.params.missingProperty)), 'is required')
    case 'anyOf':
      if (schema?.description === 'duration') {
        return new ConfigError(keyPath(err.instancePath), `invalid duration ${JSON.stringify(err.data)} (use milliseconds or a string such as "500ms", "30s", "5m", "1h")`)
      }
      if (schema?.description === 'target') {
        return new ConfigError(keyPath(err.instancePath), typeof err.data === 'string' ? `invalid URL ${JSON.stringify(err.data)}` : 'must be a URL or { url, weight }')
      }
      if (schema?.description === 'size') {
        return new ConfigError(keyPath(err.instancePath), `invalid size ${JSON.stringify(err.data)} (use bytes or a string such as "64kb", "1mb")`)
      }
      return new ConfigError(keyPath(err.instancePath), `invalid value ${JSON.stringify(err.data)}`)
    case 'const':
      return new ConfigError(keyPath(err.instancePath), `invalid value ${JSON.stringify(err.data)}`)
    case 'pattern':
      return new ConfigError(keyPath(err.instancePath), `invalid ${schema?.description ?? 'value'} ${JSON.stringify(err.data)}`)
    default:
      return new ConfigError(keyPath(err.instancePath), err.message ?? 'invalid value')
  }
}

/** Picks the most telling of Ajv's errors: an unknown key first, then a failed union as a whole. */
function firstError (errors: ErrorObject[]): ErrorObject {
  const unknown = errors.find((e) => e.keyword === 'additionalProperties')
  if (unknown !== undefined) return unknown
  const union = errors.find((e) => e.keyword === 'anyOf')
  if (union !== undefined) {
    // A union of objects (rateLimit: {...} | false) fails on the object branch's own errors, which say more.
    const inner = errors.find((e) => e.instancePath.startsWith(union.instancePath + '/'))
    return inner ?? union
  }
  return errors[0]
}

export interface ResolveOptions {
  /** Folder against which relative paths (tls, static, publicKey, plugins, ca) are resolved. Default: cwd. */
  baseDir?: string
}

/**
 * Validates `input` and returns the resolved configuration.
 * @throws ConfigError naming the key path of the first problem.
 */
export function resolveConfig (input: unknown, options: ResolveOptions = {}): GatewayConfig {
  const baseDir = options.baseDir ?? process.cwd()
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new ConfigError('', 'configuration must be an object')
  }
  if (!validateSchema(input)) throw describe(firstError(validateSchema.errors ?? []))
  const cfg = input as GatewayConfigInput
  const abs = (p: string): string => isAbsolute(p) ? p : resolvePath(baseDir, p)

  const upstreams: Record<string, UpstreamConfig> = {}
  for (const [name, u] of Object.entries(cfg.upstreams ?? {})) {
    upstreams[name] = resolveUpstream(name, u, keyPath('/upstreams/' + name.replace(/~/g, '~0').replace(/\//g, '~1')), abs)
  }

  const topLimit = cfg.rateLimit === undefined ? null : resolveRateLimit(cfg.rateLimit)
  const serverMaxBody = cfg.server?.maxBodySize === undefined ? null : parseSize(cfg.server.maxBodySize) as number
  const topAuthorize = cfg.authorize === undefined ? null : resolveAuthorize(cfg.authorize, 'authorize')
  const topEvents = cfg.events === undefined ? null : resolveEvents(cfg.events)
  const inherited = { limit: topLimit, authorize: topAuthorize, events: topEvents }
  const routes = (cfg.routes ?? []).map((r, i) => resolveRoute(r, i, upstreams, inherited, abs, serverMaxBody))
  if (cfg.auth?.jwt === undefined) {
    const r = routes.find((x) => x.auth !== 'none')
    if (r !== undefined) throw new ConfigError(`routes[${r.index}].auth`, `"${r.auth}" needs auth.jwt (a secret, publicKey or jwksUrl; or JWT_SECRET / JWT_PUBLIC_KEY)`)
  }
  const seen = new Map<string, number>()
  for (const r of routes) {
    // Prefixes that differ only by case are one route to a case-insensitive upstream.
    const prev = seen.get(r.prefix.toLowerCase())
    if (prev !== undefined) {
      const same = routes[prev].prefix === r.prefix
      throw new ConfigError(`routes[${r.index}].prefix`, same ? `duplicate prefix "${r.prefix}" (also routes[${prev}])` : `prefix "${r.prefix}" differs from routes[${prev}]'s "${routes[prev].prefix}" only by case`)
    }
    seen.set(r.prefix.toLowerCase(), r.index)
  }

  const s = cfg.server ?? {}
  const ws = cfg.websocket ?? {}
  const jwt = cfg.auth?.jwt
  const admin = cfg.admin ?? {}
  const adminPrefix = normalisePrefix(admin.prefix ?? D.DEFAULT_ADMIN_PREFIX)
  if (adminPrefix === '/') throw new ConfigError('admin.prefix', 'must not be "/"')

  const out: GatewayConfig = {
    server: {
      host: s.host ?? D.DEFAULT_HOST,
      port: s.port ?? D.DEFAULT_PORT,
      trustProxy: s.trustProxy ?? D.DEFAULT_TRUST_PROXY,
      drainTimeout: dur(s.drainTimeout, D.DEFAULT_DRAIN_TIMEOUT),
      reloadDrain: dur(s.reloadDrain, D.DEFAULT_RELOAD_DRAIN),
      drainPace: dur(s.drainPace, D.DEFAULT_DRAIN_PACE),
      proxyTimeout: dur(s.proxyTimeout, D.DEFAULT_PROXY_TIMEOUT),
      encodedSlashes: s.encodedSlashes ?? D.DEFAULT_ENCODED_SLASHES,
      underscoresInHeaders: s.underscoresInHeaders ?? D.DEFAULT_UNDERSCORES_IN_HEADERS,
      maxBodySize: serverMaxBody
    },
    auth: {
      tokenSources: [...(cfg.auth?.tokenSources ?? D.DEFAULT_TOKEN_SOURCES)],
      queryParam: cfg.auth?.queryParam ?? D.DEFAULT_QUERY_PARAM,
      cookieName: cfg.auth?.cookieName ?? D.DEFAULT_COOKIE_NAME,
      closeOnExpiry: cfg.auth?.closeOnExpiry ?? D.DEFAULT_CLOSE_ON_EXPIRY,
      forwardClaims: lowerValues(cfg.auth?.forwardClaims ?? {})
    },
    upstreams,
    routes,
    websocket: {
      pingInterval: dur(ws.pingInterval, D.DEFAULT_PING_INTERVAL),
      pongTimeout: dur(ws.pongTimeout, D.DEFAULT_PONG_TIMEOUT),
      idleTimeout: dur(ws.idleTimeout, D.DEFAULT_IDLE_TIMEOUT),
      maxPayload: size(ws.maxPayload, D.DEFAULT_MAX_PAYLOAD),
      connectTimeout: dur(ws.connectTimeout, D.DEFAULT_CONNECT_TIMEOUT),
      highWaterMark: size(ws.highWaterMark, D.DEFAULT_HIGH_WATER_MARK),
      allowedOrigins: ws.allowedOrigins ?? [],
      compression: ws.compression ?? D.DEFAULT_COMPRESSION
    },
    rateLimit: topLimit,
    authorize: topAuthorize,
    events: topEvents,
    eventsQueueSize: cfg.events?.queueSize ?? D.DEFAULT_EVENTS_QUEUE_SIZE,
    admin: { token: admin.token, prefix: adminPrefix, port: admin.port ?? D.DEFAULT_ADMIN_PORT },
    metrics: { protected: cfg.metrics?.protected ?? D.DEFAULT_METRICS_PROTECTED },
    tracing: cfg.tracing === undefined
      ? undefined
      : {
          tracesUrl: /\/v1\/traces\/?$/.test(cfg.tracing.otlpEndpoint) ? cfg.tracing.otlpEndpoint : `${cfg.tracing.otlpEndpoint.replace(/\/+$/, '')}/v1/traces`,
          serviceName: cfg.tracing.serviceName ?? D.DEFAULT_SERVICE_NAME,
          sampleRatio: cfg.tracing.sampleRatio ?? D.DEFAULT_SAMPLE_RATIO
        },
    plugins: (cfg.plugins ?? []).map((p) => typeof p === 'string'
      ? { path: pluginPath(p, abs), options: {} }
      : { path: pluginPath(p.path, abs), options: p.options ?? {}, prefix: p.prefix }),
    baseDir
  }
  // Closes planned after the drain timeout would be terminations instead.
  if (out.server.drainPace > 0 && out.server.drainPace >= out.server.drainTimeout) {
    throw new ConfigError('server.drainPace', `must be shorter than server.drainTimeout (${out.server.drainTimeout}ms): closes planned after the timeout would be terminations`)
  }
  if (out.websocket.pingInterval === 0) throw new ConfigError('websocket.pingInterval', 'must be greater than 0')
  if (out.websocket.pongTimeout === 0) throw new ConfigError('websocket.pongTimeout', 'must be greater than 0')
  if (out.websocket.connectTimeout === 0) throw new ConfigError('websocket.connectTimeout', 'must be greater than 0')
  if (out.websocket.maxPayload === 0) throw new ConfigError('websocket.maxPayload', 'must be greater than 0')
  // A short admin token falls to guessing: the admin API can close every connection.
  if (admin.token !== undefined && admin.token.length < D.MIN_ADMIN_TOKEN_LENGTH) {
    throw new ConfigError('admin.token', `must be at least ${D.MIN_ADMIN_TOKEN_LENGTH} characters (got ${admin.token.length})`)
  }
  if (s.tls !== undefined) {
    const certPath = abs(s.tls.cert)
    const keyPath = abs(s.tls.key)
    out.server.tls = { cert: readText(certPath, 'server.tls.cert'), key: readText(keyPath, 'server.tls.key'), certPath, keyPath }
  }
  if (jwt !== undefined) {
    const keys = [jwt.secret, jwt.publicKey, jwt.jwksUrl].filter((k) => k !== undefined).length
    if (keys === 0) throw new ConfigError('auth.jwt', 'needs a secret, a publicKey or a jwksUrl')
    if (keys > 1) throw new ConfigError('auth.jwt', 'use only one of secret, publicKey and jwksUrl')
    const algorithms = jwt.algorithms ?? (jwt.secret !== undefined ? D.DEFAULT_JWT_ALGORITHMS_SECRET : D.DEFAULT_JWT_ALGORITHMS_KEY)
    algorithms.forEach((alg, i) => {
      const path = `auth.jwt.algorithms[${i}]`
      if (!JWT_ALGORITHMS.includes(alg)) throw new ConfigError(path, `unknown algorithm "${alg}" (one of ${JWT_ALGORITHMS.join(', ')})`)
      // An HMAC algorithm next to a public key is the classic algorithm-confusion hole.
      if (jwt.secret !== undefined && !alg.startsWith('HS')) throw new ConfigError(path, `"${alg}" needs a publicKey or jwksUrl, not a secret`)
      if (jwt.secret === undefined && alg.startsWith('HS')) throw new ConfigError(path, `"${alg}" needs a secret`)
    })
    out.auth.jwt = {
      secret: jwt.secret,
      publicKey: jwt.publicKey === undefined ? undefined : pemOrFile(jwt.publicKey, 'auth.jwt.publicKey', abs),
      jwksUrl: jwt.jwksUrl,
      algorithms,
      issuer: jwt.issuer,
      audience: jwt.audience,
      clockToleranceSec: jwt.clockToleranceSec ?? D.DEFAULT_CLOCK_TOLERANCE,
      requiredClaims: [...new Set(jwt.requiredClaims ?? [])]
    }
  }
  const rc = cfg.redis
  if (rc !== undefined) {
    const where = (['url', 'sentinels', 'cluster'] as const).filter((k) => rc[k] !== undefined)
    if (where.length > 1) throw new ConfigError(`redis.${where[1]}`, `set only one of redis.url (or REDIS_URL), redis.sentinels and redis.cluster (both redis.${where[0]} and redis.${where[1]} are set)`)
    if (rc.sentinels !== undefined && rc.name === undefined) throw new ConfigError('redis.name', 'required with redis.sentinels (the name of the primary the Sentinels watch)')
    if (rc.name !== undefined && rc.sentinels === undefined) throw new ConfigError('redis.name', 'only used with redis.sentinels')
  }
  if (rc !== undefined && (rc.url !== undefined || rc.sentinels !== undefined || rc.cluster !== undefined)) {
    out.redis = { failOpen: rc.failOpen ?? D.DEFAULT_REDIS_FAIL_OPEN, keyPrefix: rc.keyPrefix ?? D.DEFAULT_REDIS_KEY_PREFIX }
    if (rc.url !== undefined) out.redis = { url: rc.url, ...out.redis }
    if (rc.sentinels !== undefined) out.redis = { sentinels: rc.sentinels.map((s) => ({ host: s.host, port: s.port })), name: rc.name, ...out.redis }
    if (rc.cluster !== undefined) out.redis = { cluster: [...rc.cluster], ...out.redis }
  }
  return out
}

const kResolved = Symbol.for('tollgate.resolvedConfig')

/** Marks a configuration as resolved so it is not validated twice. */
export function markResolved (config: GatewayConfig): GatewayConfig {
  Object.defineProperty(config, kResolved, { value: true, enumerable: false })
  return config
}

/** Validates `config` unless it is already resolved (marked by markResolved). */
export function ensureResolved (config: GatewayConfigInput | GatewayConfig, baseDir?: string): GatewayConfig {
  if ((config as Record<symbol, unknown>)[kResolved] === true) return config as GatewayConfig
  return markResolved(resolveConfig(config, { baseDir }))
}

const JWT_ALGORITHMS = ['HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']

function resolveUpstream (name: string, u: UpstreamInput, path: string, abs: (p: string) => string): UpstreamConfig {
  const targets: string[] = []
  const weights: number[] = []
  const ids = new Map<string, number>()
  u.targets.forEach((t, i) => {
    const at = `${path}.targets[${i}]`
    const url = normaliseTarget(typeof t === 'string' ? t : t.url, typeof t === 'string' ? at : `${at}.url`)
    // The admin API names a target by host:port, so two of one upstream cannot share it.
    const id = targetId(url)
    const prev = ids.get(id)
    if (prev !== undefined) {
      if (targets[prev] !== url) throw new ConfigError(at, `same host:port "${id}" as another target of this upstream`)
      return
    }
    ids.set(id, targets.length)
    targets.push(url)
    weights.push(typeof t === 'string' ? D.DEFAULT_TARGET_WEIGHT : t.weight ?? D.DEFAULT_TARGET_WEIGHT)
  })
  const balance = u.balance ?? D.DEFAULT_BALANCE
  if (u.hashOn !== undefined && balance !== 'hash') throw new ConfigError(`${path}.hashOn`, 'only applies when balance is "hash"')
  const hc = u.healthCheck
  return {
    name,
    targets,
    weights,
    resolve: dur(u.resolve, D.DEFAULT_RESOLVE),
    autoRebalance: u.rebalance?.auto === true ? { minAgeMs: dur(u.rebalance.minAge, D.DEFAULT_REBALANCE_MIN_AGE) } : null,
    balance,
    hashOn: u.hashOn ?? D.DEFAULT_HASH_ON,
    healthCheck: hc === undefined
      ? undefined
      : {
          path: hc.path,
          interval: dur(hc.interval, D.DEFAULT_HEALTH_INTERVAL),
          timeout: dur(hc.timeout, D.DEFAULT_HEALTH_TIMEOUT),
          unhealthyAfter: hc.unhealthyAfter ?? D.DEFAULT_UNHEALTHY_AFTER,
          healthyAfter: hc.healthyAfter ?? D.DEFAULT_HEALTHY_AFTER
        },
    closeOnUnhealthy: u.closeOnUnhealthy ?? D.DEFAULT_CLOSE_ON_UNHEALTHY,
    ca: u.ca === undefined ? undefined : pemOrFile(u.ca, `${path}.ca`, abs)
  }
}

/** What a route takes from the top level when it says nothing of its own. */
interface Inherited { limit: RateLimitConfig | null, authorize: AuthorizeConfig | null, events: EventsConfig | null }

function resolveRoute (r: RouteInput, i: number, upstreams: Record<string, UpstreamConfig>, inherited: Inherited, abs: (p: string) => string, maxBodySize: number | null): RouteConfig {
  const top = inherited.limit
  const path = `routes[${i}]`
  const prefix = normalisePrefix(r.prefix)
  let upstream: UpstreamConfig | null = null
  let staticDir: string | null = null
  if (r.static !== undefined && r.upstream !== undefined) throw new ConfigError(`${path}.static`, 'a route has either upstream or static, not both')
  if (r.static === undefined) {
    if (r.dotfiles !== undefined) throw new ConfigError(`${path}.dotfiles`, 'only applies to static routes')
    if (r.followSymlinks !== undefined) throw new ConfigError(`${path}.followSymlinks`, 'only applies to static routes')
  }
  if (r.static !== undefined) {
    staticDir = abs(r.static)
    if (r.websocket === true) throw new ConfigError(`${path}.websocket`, 'a static route cannot serve WebSockets')
  } else if (r.upstream === undefined) {
    throw new ConfigError(`${path}.upstream`, 'is required (a name from upstreams, or a URL)')
  } else if (/^[a-z]+:\/\//i.test(r.upstream)) {
    upstream = { name: r.upstream, targets: [normaliseTarget(r.upstream, `${path}.upstream`)], weights: [D.DEFAULT_TARGET_WEIGHT], resolve: D.DEFAULT_RESOLVE, autoRebalance: null, balance: D.DEFAULT_BALANCE, hashOn: D.DEFAULT_HASH_ON, closeOnUnhealthy: D.DEFAULT_CLOSE_ON_UNHEALTHY }
  } else {
    upstream = upstreams[r.upstream] ?? null
    if (upstream === null) throw new ConfigError(`${path}.upstream`, `unknown upstream "${r.upstream}"`)
  }
  const websocket = staticDir === null && (r.websocket ?? D.DEFAULT_ROUTE_WEBSOCKET)
  const http = r.http ?? D.DEFAULT_ROUTE_HTTP
  if (!websocket && !http) throw new ConfigError(`${path}`, 'route serves neither HTTP nor WebSocket (websocket and http are both false)')
  return {
    index: i,
    prefix,
    upstream,
    static: staticDir,
    rewritePrefix: r.rewritePrefix === undefined ? prefix : normalisePrefix(r.rewritePrefix === '' ? '/' : r.rewritePrefix),
    websocket,
    http,
    auth: r.auth ?? D.DEFAULT_ROUTE_AUTH,
    rateLimit: r.rateLimit === false ? null : r.rateLimit === undefined ? top : resolveRateLimit({ ...r.rateLimit, keyBy: r.rateLimit.keyBy ?? top?.keyBy }),
    headers: lowerKeys(r.headers ?? {}),
    maxBodySize: r.maxBodySize === undefined ? maxBodySize : parseSize(r.maxBodySize) as number,
    dotfiles: r.dotfiles ?? D.DEFAULT_DOTFILES,
    followSymlinks: r.followSymlinks ?? D.DEFAULT_FOLLOW_SYMLINKS,
    rebalance: r.rebalance ?? D.DEFAULT_ROUTE_REBALANCE,
    // A static route has no WebSockets, so no lifecycle events.
    authorize: r.authorize === false ? null : r.authorize === undefined ? inherited.authorize : resolveAuthorize(r.authorize, `${path}.authorize`),
    events: !websocket ? null : r.events === false ? null : r.events === undefined ? inherited.events : resolveEvents(r.events)
  }
}

function resolveAuthorize (a: AuthorizeInput, path: string): AuthorizeConfig {
  const lower = (names: readonly string[]): string[] => [...new Set(names.map((n) => n.toLowerCase()))]
  const upstreamHeaders = lower(a.upstreamHeaders ?? [])
  const forwardHeaders = lower(a.forwardHeaders ?? D.DEFAULT_AUTHORIZE_FORWARD_HEADERS)
  // A request's framing and routing headers are neither the client's to pass to the auth
  // service nor the service's to set upstream; the claims header is the gateway's own.
  for (const [key, names] of [['upstreamHeaders', upstreamHeaders], ['forwardHeaders', forwardHeaders]] as const) {
    for (const [i, h] of names.entries()) {
      if (AUTHORIZE_RESERVED.has(h) || h === D.AUTHORIZE_CLAIMS_HEADER) throw new ConfigError(`${path}.${key}[${i}]`, `"${h}" cannot be listed here`)
    }
  }
  return {
    url: a.url,
    timeout: dur(a.timeout, D.DEFAULT_AUTHORIZE_TIMEOUT),
    forwardHeaders,
    upstreamHeaders,
    userHeader: a.userHeader === undefined ? null : a.userHeader.toLowerCase(),
    failOpen: a.failOpen ?? D.DEFAULT_AUTHORIZE_FAIL_OPEN,
    cacheTtl: dur(a.cache, D.DEFAULT_AUTHORIZE_CACHE)
  }
}

/** Headers of the upstream request that an auth service's answer never sets. */
const AUTHORIZE_RESERVED = new Set(['host', 'expect', 'connection', 'upgrade', 'content-length', 'transfer-encoding', 'keep-alive', 'te', 'trailer', 'proxy-connection', 'sec-websocket-key', 'sec-websocket-version', 'sec-websocket-extensions', 'sec-websocket-protocol'])

function resolveEvents (e: EventsInput): EventsConfig {
  const on = e.on ?? ['connect', 'disconnect']
  return {
    url: e.url,
    connect: on.includes('connect'),
    disconnect: on.includes('disconnect'),
    timeout: dur(e.timeout, D.DEFAULT_EVENTS_TIMEOUT),
    claims: [...new Set(e.claims ?? [])]
  }
}

function resolveRateLimit (r: RateLimitInput): RateLimitConfig {
  return {
    keyBy: r.keyBy ?? D.DEFAULT_RATE_KEY_BY,
    http: r.http === undefined ? undefined : { max: r.http.max, window: dur(r.http.window, D.DEFAULT_RATE_WINDOW) },
    handshake: r.handshake === undefined ? undefined : { max: r.handshake.max, window: dur(r.handshake.window, D.DEFAULT_RATE_WINDOW) },
    concurrent: r.concurrent,
    messages: r.messages
  }
}

/** `/chat/` -> `/chat`; `/` stays `/`. */
export function normalisePrefix (p: string): string {
  const trimmed = p.replace(/\/+$/, '')
  return trimmed === '' ? '/' : trimmed
}

/**
 * A target's name in the admin API: `host:port` of its URL, the port always written
 * (`127.0.0.1:80`, `[::1]:9000`).
 */
export function targetId (url: string): string {
  const u = new URL(url)
  const port = u.port !== '' ? u.port : u.protocol === 'https:' || u.protocol === 'wss:' ? '443' : '80'
  return `${u.hostname}:${port}`
}

/**
 * A target URL as the gateway keeps it: http(s) scheme (ws and wss map to those), no trailing
 * slash, no query or fragment.
 * @throws ConfigError naming `path`
 */
export function normaliseTarget (t: string, path: string): string {
  let url: URL
  try {
    url = new URL(t)
  } catch {
    throw new ConfigError(path, `invalid URL "${t}"`)
  }
  const proto = { 'http:': 'http:', 'ws:': 'http:', 'https:': 'https:', 'wss:': 'https:' }[url.protocol]
  if (proto === undefined) throw new ConfigError(path, `unsupported scheme "${url.protocol}" (use http, https, ws or wss)`)
  if (url.search !== '' || url.hash !== '') throw new ConfigError(path, 'a target URL cannot have a query or fragment')
  return `${proto}//${url.host}${url.pathname.replace(/\/+$/, '')}`
}

function dur (v: number | string | undefined, dflt: number): number {
  return v === undefined ? dflt : parseDuration(v) as number
}

function size (v: number | string | undefined, dflt: number): number {
  return v === undefined ? dflt : parseSize(v) as number
}

function readText (file: string, path: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch (err) {
    throw new ConfigError(path, `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
  }
}

function pemOrFile (v: string, path: string, abs: (p: string) => string): string {
  return v.includes('-----BEGIN') ? v : readText(abs(v), path)
}

function pluginPath (p: string, abs: (p: string) => string): string {
  return p.startsWith('.') || isAbsolute(p) ? abs(p) : p
}

function lowerKeys (o: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k.toLowerCase(), v]))
}

function lowerValues (o: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, v.toLowerCase()]))
}
