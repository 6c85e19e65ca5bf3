/**
 * Wires the bridge core into Fastify. @fastify/websocket routes the upgrade request through
 * Fastify's router, so the upstream handshake runs in a preHandler hook: a failure is answered
 * with a plain HTTP status before the client is upgraded (handshake first, upgrade second).
 */
import fp from 'fastify-plugin'
import websocket from '@fastify/websocket'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { IncomingMessage } from 'node:http'
import type WebSocket from 'ws'
import { Bridge, type BridgeEnd } from '../src/bridge/bridge.js'
import { openUpstream } from '../src/bridge/upstream-handshake.js'
import { forwardHeaders, upstreamPath } from '../src/bridge/forward-headers.js'
import { HeartbeatSweeper } from '../src/heartbeat.js'
import { CLOSE_BAD_GATEWAY, CLOSE_GOING_AWAY, REASON_GOING_AWAY, REASON_UPSTREAM_LOST } from '../src/close-codes.js'
import { codes } from '../src/errors.js'
import type { RouteConfig, UpstreamConfig } from '../src/config/types.js'

/** What the preHandler leaves on the raw request for the wsHandler. */
interface PendingUpstream {
  socket: WebSocket
  /** Target URL, as configured. */
  target: string
  /** Upstream handshake time in ms. */
  ms: number
  route: string
  /** The subprotocol to answer the client with ('' = none). */
  protocol: string
  onClientGone: () => void
}

const kPending = Symbol('tollgate.pendingUpstream')
type RawWithPending = IncomingMessage & { [kPending]?: PendingUpstream }

/** Where and how to bridge one handshake. Custom route plugins may build these at run time. */
export interface BridgeTarget {
  /** Target origin (http/https/ws/wss), without path. */
  target: string
  /** The target as configured (shown as `upstream` in listings); default: `target`. */
  upstream?: string
  /** Path and query to request upstream. */
  path: string
  /** Route name for listings and metrics. */
  route: string
  /** Headers to add (route headers, forwarded claims). */
  headers?: Record<string, string>
  /** Extra CA (PEM) for wss targets. */
  ca?: string
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The gateway route (prefix) a Fastify route serves, for metrics and listings. */
    gatewayRoute?: string
  }
  interface FastifyInstance {
    websocketBridge: {
      /**
       * Opens the upstream socket for a WebSocket handshake. On failure the client is answered
       * (502, 504 or the upstream's status) and false is returned. Use in a preHandler hook.
       */
      connect (request: FastifyRequest, reply: FastifyReply, target: BridgeTarget): Promise<boolean>
      /** Bridges the upgraded client socket to the upstream that `connect` opened. Use as wsHandler. */
      attach (socket: WebSocket, request: FastifyRequest): void
      /** Live bridges still closing or open, including ones no longer listed. */
      readonly active: number
    }
  }
}

const WS_KEY_RE = /^[+/0-9A-Za-z]{22}==$/

export default fp(async function websocketBridgePlugin (fastify: FastifyInstance) {
  const cfg = fastify.gatewayConfig.websocket
  const sweeper = new HeartbeatSweeper({ pingInterval: cfg.pingInterval, pongTimeout: cfg.pongTimeout, idleTimeout: cfg.idleTimeout })
  const registry = fastify.connections
  const state = fastify.gatewayState
  let active = 0
  let activeZero: (() => void) | null = null

  await fastify.register(websocket, {
    options: {
      maxPayload: cfg.maxPayload,
      perMessageDeflate: false,
      clientTracking: false,
      handleProtocols: (_offered: Set<string>, req: IncomingMessage) => (req as RawWithPending)[kPending]?.protocol || false
    },
    // Our own shutdown replaces @fastify/websocket's, which would close clients without a code.
    preClose: async function () { await drain() }
  })

  async function drain (): Promise<void> {
    state.draining = true
    if (active === 0) return
    const done = new Promise<void>((resolve) => { activeZero = resolve })
    for (const b of registry.values()) b.close(CLOSE_GOING_AWAY, REASON_GOING_AWAY)
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(true), fastify.gatewayConfig.server.drainTimeout) })
    if (await Promise.race([done.then(() => false), timedOut])) {
      fastify.log.warn({ open: active }, 'drain timeout: terminating remaining WebSocket connections')
      for (const b of registry.values()) b.terminate()
    }
    clearTimeout(timer)
    sweeper.stop()
  }

  async function connect (request: FastifyRequest, reply: FastifyReply, t: BridgeTarget): Promise<boolean> {
    const raw = request.raw
    const offered = parseProtocols(request.headers['sec-websocket-protocol'])
    const url = toWsUrl(t.target) + t.path
    const headers = forwardHeaders(request.headers, {
      remoteAddress: raw.socket.remoteAddress ?? '',
      clientIp: request.ip,
      proto: request.protocol,
      host: request.host,
      requestId: request.id,
      extra: t.headers
    }, skipForWs)
    const abort = new AbortController()
    const onGone = (): void => abort.abort()
    raw.socket.once('close', onGone)
    const result = await openUpstream({
      url, headers, protocols: offered, connectTimeout: cfg.connectTimeout, maxPayload: cfg.maxPayload, ca: t.ca, signal: abort.signal
    })
    raw.socket.removeListener('close', onGone)
    const upstreamUrl = t.upstream ?? t.target
    if (!result.ok) {
      if (result.reason === 'aborted') { reply.hijack(); return false }
      if (result.reason !== 'protocol') fastify.metrics.upstreamError(upstreamUrl, result.reason)
      request.log.warn({ upstream: t.target, status: result.status, reason: result.reason, err: result.error?.message }, 'upstream handshake failed')
      const err = result.reason === 'timeout'
        ? new codes.GW_ERR_UPSTREAM_TIMEOUT()
        : result.reason === 'rejected' ? Object.assign(new codes.GW_ERR_UPSTREAM_UNAVAILABLE(), { statusCode: result.status, message: 'upstream refused the WebSocket handshake' }) : result.status === 400 ? new codes.GW_ERR_BAD_HANDSHAKE(result.error?.message ?? 'bad subprotocol') : new codes.GW_ERR_UPSTREAM_UNAVAILABLE()
      await reply.code(err.statusCode ?? 502).send(err)
      return false
    }
    const socket = result.socket
    // The client may vanish between this hook and the upgrade: never leave the upstream open.
    const onClientGone = (): void => { if ((raw as RawWithPending)[kPending] !== undefined) { delete (raw as RawWithPending)[kPending]; socket.terminate() } }
    raw.socket.once('close', onClientGone)
    ;(raw as RawWithPending)[kPending] = { socket, target: upstreamUrl, ms: result.ms, route: t.route, protocol: socket.protocol, onClientGone }
    return true
  }

  function attach (client: WebSocket, request: FastifyRequest): void {
    const raw = request.raw as RawWithPending
    const pending = raw[kPending]
    delete raw[kPending]
    if (pending === undefined) { client.close(1011, 'no upstream'); return }
    raw.socket.removeListener('close', pending.onClientGone)
    const up = pending.socket
    if (up.readyState !== up.OPEN) {
      client.close(CLOSE_BAD_GATEWAY, REASON_UPSTREAM_LOST)
      return
    }
    const bridge = new Bridge(client, up, {
      id: request.id,
      route: pending.route,
      path: request.url.split('?', 1)[0],
      clientIp: request.ip,
      userId: null,
      subprotocol: client.protocol === '' ? null : client.protocol,
      upstream: pending.target,
      instanceId: fastify.instanceId
    }, { highWaterMark: cfg.highWaterMark, onEnd, onRtt })
    fastify.metrics.handshake(pending.route, 'ok', pending.ms / 1000)
    active++
    registry.add(bridge)
    sweeper.add(bridge)
    request.log.info({ connId: bridge.info.id, route: pending.route, upstream: pending.target }, 'websocket bridged')
  }

  const rtt = fastify.metrics.rtt
  function onRtt (seconds: number): void { rtt.observe(seconds) }

  function onEnd (bridge: Bridge, end: BridgeEnd): void {
    fastify.metrics.connectionEnded(bridge, end.clientCode, end.upstreamCode)
    registry.remove(bridge)
    sweeper.delete(bridge)
    active--
    fastify.log.info({ connId: bridge.info.id, by: end.by, clientCode: end.clientCode, upstreamCode: end.upstreamCode }, 'websocket closed')
    if (active === 0 && activeZero !== null) { activeZero(); activeZero = null }
  }

  // Every handshake answered without an upgrade (400, 401, 403, 429, 502, 504...) counts by its status.
  fastify.addHook('onResponse', async (request, reply) => {
    if (!request.ws) return
    const route = request.routeOptions.config.gatewayRoute
    if (route !== undefined) fastify.metrics.handshake(route, String(reply.statusCode))
  })

  fastify.decorate('websocketBridge', {
    connect,
    attach,
    get active () { return active }
  })
}, { name: 'tollgate-websocket-bridge', fastify: '5.x', dependencies: ['tollgate-config', 'tollgate-registry', 'tollgate-metrics'] })

function skipForWs (name: string): boolean {
  return name === 'host' || name.startsWith('sec-websocket-') || name === 'content-length'
}

function parseProtocols (h: string | string[] | undefined): string[] {
  if (h === undefined) return []
  const s = Array.isArray(h) ? h.join(',') : h
  return s.split(',').map((p) => p.trim()).filter((p) => p !== '')
}

function toWsUrl (target: string): string {
  return target.replace(/^http(s?):\/\//, 'ws$1://')
}

/**
 * Onrequest check for a WebSocket handshake on a bridge route: a malformed handshake gets 400
 * before any upstream is contacted; a draining gateway answers 503.
 */
export function checkHandshake (request: FastifyRequest, reply: FastifyReply, draining: boolean): boolean {
  if (draining) { void reply.code(503).send(new codes.GW_ERR_DRAINING()); return false }
  const key = request.headers['sec-websocket-key']
  const version = request.headers['sec-websocket-version']
  if (request.method !== 'GET') { void reply.code(400).send(new codes.GW_ERR_BAD_HANDSHAKE('method must be GET')); return false }
  if (typeof key !== 'string' || !WS_KEY_RE.test(key.trim())) { void reply.code(400).send(new codes.GW_ERR_BAD_HANDSHAKE('missing or invalid Sec-WebSocket-Key')); return false }
  if (version !== '13' && version !== '8') {
    void reply.code(400).header('sec-websocket-version', '13, 8').send(new codes.GW_ERR_BAD_HANDSHAKE('unsupported Sec-WebSocket-Version'))
    return false
  }
  return true
}

/** The BridgeTarget for a configured route and a chosen target. */
export function routeTarget (route: RouteConfig, upstream: UpstreamConfig, target: string, url: string): BridgeTarget {
  const q = url.indexOf('?')
  const pathname = q === -1 ? url : url.slice(0, q)
  const search = q === -1 ? '' : url.slice(q)
  const base = new URL(target)
  return {
    target: base.origin,
    upstream: target,
    path: upstreamPath(pathname, route.prefix, route.rewritePrefix, base.pathname === '/' ? '' : base.pathname) + search,
    route: route.prefix,
    headers: route.headers,
    ca: upstream.ca
  }
}
