/**
 * Rate limits: HTTP requests and WebSocket handshakes per key (@fastify/rate-limit's stores,
 * in Redis when `redis.url` is set), open connections per key (nginx's limit_conn), and the
 * per-connection message bucket handed to the bridge. Over a limit: 429 before any upgrade.
 * When the limit store (Redis) is unreachable, `redis.failOpen` decides: allow, or 503.
 */
import fp from 'fastify-plugin'
import rateLimit from '@fastify/rate-limit'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { RateLimitConfig, RateWindow } from '../src/config/types.js'
import type { ConcurrencyLimiter, Lease } from '../src/limits/concurrency.js'
import type { WindowStore } from '../src/limits/window-store.js'
import { codes } from '../src/errors.js'
import { requestUserId } from './authorize.js'
import { DEFAULT_RATE_KEY_BY, DEFAULT_REDIS_FAIL_OPEN } from '../src/config/defaults.js'

interface WindowResult { isAllowed: boolean, isExceeded?: boolean, max?: number, remaining?: number, ttlInSeconds?: number }
type WindowLimiter = (req: FastifyRequest) => Promise<WindowResult>

/** The limits of one route, compiled once. */
export interface RouteLimits {
  /** HTTP request rate; false when it answered (429/503). */
  http (request: FastifyRequest, reply: FastifyReply): Promise<boolean>
  /** WebSocket handshake rate and open-connection count; false when it answered (429/503). */
  handshake (request: FastifyRequest, reply: FastifyReply): Promise<boolean>
  /** The handshake rate alone (a route with `authorize` counts open connections after the auth service named the user). */
  handshakeRate (request: FastifyRequest, reply: FastifyReply): Promise<boolean>
  /** The open-connection count alone. */
  concurrent (request: FastifyRequest, reply: FastifyReply): Promise<boolean>
  /** Token bucket settings for the bridge, if any. */
  messages?: { rate: number, burst: number }
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Compiles the limits for a route (null: no limits); shared limits share their counters. */
    routeLimits (limits: RateLimitConfig | null, route: string): RouteLimits | null
  }
}

const allow = async (): Promise<boolean> => true
const NO_LIMITS: RouteLimits = { http: allow, handshake: allow, handshakeRate: allow, concurrent: allow }

export interface LimitsPluginOptions {
  /** Open-connection counts (memory, or Redis in cluster mode); kept across hot reloads. */
  concurrency: ConcurrencyLimiter
  /** Request windows without Redis; kept across hot reloads. */
  windows: WindowStore
}

export default fp<LimitsPluginOptions>(async function limitsPlugin (fastify, opts) {
  const cfg = fastify.gatewayConfig
  const redisCfg = cfg.redis
  const failOpen = redisCfg?.failOpen ?? DEFAULT_REDIS_FAIL_OPEN
  const prefix = redisCfg?.keyPrefix ?? ''

  // global: false: only routes that ask for it are limited (/health, /ready, /metrics never are).
  // Users' route plugins use it with `config: { rateLimit: { max, timeWindow } }` on their routes.
  await fastify.register(rateLimit, {
    global: false,
    // Counters live in Redis in cluster mode, else in the shared in-memory store: both outlive a reload.
    ...(fastify.redis !== null ? { redis: fastify.redis, nameSpace: `${prefix}rl:` } : { store: opts.windows.storeClass() as never }),
    skipOnError: failOpen,
    keyGenerator: (req: FastifyRequest) => keyOf(req, cfg.rateLimit?.keyBy ?? DEFAULT_RATE_KEY_BY),
    errorResponseBuilder: (_req, ctx) => Object.assign(new codes.GW_ERR_RATE_LIMITED(ctx.after), { statusCode: ctx.statusCode })
  })

  const concurrency = opts.concurrency

  let failingOpen = false
  /** Store errors: one warning per outage; then failOpen decides. */
  const storeFailed = (err: unknown): boolean => {
    if (!failingOpen) fastify.log.warn({ err: (err as Error).message, failOpen }, failOpen ? 'rate limit store unreachable: allowing traffic' : 'rate limit store unreachable: refusing traffic')
    failingOpen = true
    return failOpen
  }
  const storeOk = (): void => { failingOpen = false }

  const windows = new Map<RateWindow, WindowLimiter>()
  /** One limiter per window object: routes inheriting the top-level limit share its counters. */
  const windowLimiter = (kind: string, owner: string, w: RateWindow, keyBy: 'ip' | 'user'): WindowLimiter => {
    let l = windows.get(w)
    if (l === undefined) {
      // Each limiter gets its own key space (named by its settings, so a reload that keeps a
      // limit keeps its counts), and HTTP and handshake counters never mix.
      const id = `${kind}:${owner}:${w.max}/${w.window}:`
      l = fastify.createRateLimit({ max: w.max, timeWindow: w.window, keyGenerator: (req: FastifyRequest) => id + keyOf(req, keyBy) }) as unknown as WindowLimiter
      windows.set(w, l)
    }
    return l
  }

  async function checkWindow (limiter: WindowLimiter | null, request: FastifyRequest, reply: FastifyReply): Promise<boolean> {
    if (limiter === null) return true
    let r: WindowResult
    try {
      r = await limiter(request)
      storeOk()
    } catch (err) {
      if (storeFailed(err)) return true
      await reply.send(new codes.GW_ERR_LIMITS_UNAVAILABLE())
      return false
    }
    if (r.isAllowed) return true
    void reply.header('x-ratelimit-limit', r.max).header('x-ratelimit-remaining', r.remaining).header('x-ratelimit-reset', r.ttlInSeconds)
    if (r.isExceeded !== true) return true
    await reply.header('retry-after', r.ttlInSeconds).send(new codes.GW_ERR_RATE_LIMITED(`${r.ttlInSeconds} seconds`))
    return false
  }

  async function acquire (max: number | undefined, owner: string, keyBy: 'ip' | 'user', request: FastifyRequest, reply: FastifyReply): Promise<boolean> {
    if (max === undefined) return true
    let lease: Lease | null
    try {
      // Counted per owner: a route's own limit never shares the top-level counter.
      lease = await concurrency.acquire(owner === '*' ? keyOf(request, keyBy) : `${owner}|${keyOf(request, keyBy)}`, max)
      storeOk()
    } catch (err) {
      if (storeFailed(err)) return true
      await reply.send(new codes.GW_ERR_LIMITS_UNAVAILABLE())
      return false
    }
    if (lease === null) {
      await reply.header('retry-after', 1).send(new codes.GW_ERR_TOO_MANY_CONNECTIONS(max))
      return false
    }
    // The raw socket closes once however the connection ends (failed handshake, either side
    // closing, a dropped peer), so the count always comes down, exactly once.
    request.raw.socket.once('close', () => lease.release())
    if (request.raw.socket.destroyed) lease.release()
    return true
  }

  const compiled = new Map<RateLimitConfig, RouteLimits>()
  fastify.decorate('routeLimits', (limits: RateLimitConfig | null, route: string): RouteLimits | null => {
    if (limits === null) return null
    let c = compiled.get(limits)
    if (c !== undefined) return c
    const keyBy = limits.keyBy
    // Routes inheriting the top-level limits share its counters; an override counts on its own.
    const owner = limits === cfg.rateLimit ? '*' : route
    const http = limits.http === undefined ? null : windowLimiter('http', owner, limits.http, keyBy)
    const hs = limits.handshake === undefined ? null : windowLimiter('hs', owner, limits.handshake, keyBy)
    c = http === null && hs === null && limits.concurrent === undefined && limits.messages === undefined
      ? NO_LIMITS
      : {
          http: (request, reply) => checkWindow(http, request, reply),
          handshake: async (request, reply) => await checkWindow(hs, request, reply) && await acquire(limits.concurrent, owner, keyBy, request, reply),
          handshakeRate: (request, reply) => checkWindow(hs, request, reply),
          concurrent: (request, reply) => acquire(limits.concurrent, owner, keyBy, request, reply),
          messages: limits.messages
        }
    compiled.set(limits, c)
    return c
  })
}, { name: 'tollgate-rate-limit', fastify: '5.x', dependencies: ['tollgate-config', 'tollgate-redis', 'tollgate-auth', 'tollgate-authorize'] })

/**
 * The limit key for keyBy user: the user the auth service named or the verified JWT's `sub`
 * (else, and for keyBy ip, the client IP, trustProxy applied).
 */
function keyOf (request: FastifyRequest, keyBy: 'ip' | 'user'): string {
  if (keyBy === 'user') {
    const user = requestUserId(request)
    if (user !== null) return `u:${user}`
  }
  return `ip:${request.ip}`
}

