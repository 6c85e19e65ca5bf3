/**
 * Wires the bridge core into Fastify. @fastify/websocket routes the upgrade request through
 * Fastify's router, so the upstream handshake runs in a preHandler hook: a failure is answered
 * with a plain HTTP status before the client is upgraded (handshake first, upgrade second). On
 * success the same hook writes the client's 101 and hands both raw sockets to the frame-level
 * relay (src/bridge/bridge.ts); no ws object is made for either side.
 */
import fp from 'fastify-plugin'
import websocket from '@fastify/websocket'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type WebSocket from 'ws'
import { Bridge, type BridgeEnd } from '../src/bridge/bridge.js'
import { acceptKey, deflateOffers, HandshakeCancel, openUpstream, SUBPROTOCOL_RE, type HandshakeResult } from '../src/bridge/upstream-handshake.js'
import type { UpstreamPool } from '../src/upstreams/pool.js'
import { forwardHeaders } from '../src/bridge/forward-headers.js'
import { HeartbeatSweeper } from '../src/heartbeat.js'
import { CLOSE_GOING_AWAY, CLOSE_SERVICE_RESTART, REASON_GOING_AWAY, REASON_UPSTREAM_UNHEALTHY } from '../src/close-codes.js'
import { codes, errorBody } from '../src/errors.js'
import { EARLY_DATA_LIMIT } from '../src/config/defaults.js'
import { redactUrl } from '../src/logger.js'
import { BEARER_PROTOCOL_PREFIX, parseProtocols } from '../src/auth/token.js'
import type { JwtClaims } from './auth.js'

const kHead = Symbol('tollgate.upgradeHead')
type RawWithHead = IncomingMessage & { [kHead]?: Buffer }

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
  /** Client headers not to forward (forwarded-claim header names). */
  strip?: readonly string[]
  /** Client -> upstream message rate limit for this connection. */
  messageLimit?: { rate: number, burst: number }
  /** Extra CA (PEM) for wss targets. */
  ca?: string
  /** The pool `upstream` belongs to: told of failures, successes and open connections. */
  pool?: UpstreamPool
  /** Another target after `failed` refused or timed out (one retry), or null when none is left. */
  retarget?: (failed: ReadonlySet<string>) => BridgeTarget | null
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The gateway route (prefix) a Fastify route serves, for metrics and listings. */
    gatewayRoute?: string
    /** Set on routes with a wsHandler: the only other routes a WebSocket handshake may reach. */
    websocketRoute?: boolean
  }
  interface FastifyInstance {
    websocketBridge: {
      /**
       * Bridges a WebSocket handshake to `target`: opens the upstream socket first, then answers
       * the client with its 101 and relays frames both ways. On failure the client is answered
       * (502, 504 or the upstream's status) and false is returned. Use in a preHandler hook;
       * either way the request is answered, so the route's handlers do not run.
       */
      connect (request: FastifyRequest, reply: FastifyReply, target: BridgeTarget): Promise<boolean>
      /**
       * The route's wsHandler: @fastify/websocket needs one, but `connect` has upgraded the
       * handshakes it bridges itself. A handshake no preHandler connected ends here with 1011.
       */
      attach (socket: WebSocket, request: FastifyRequest): void
      /** Live bridges still closing or open, including ones no longer listed. */
      readonly active: number
      /** Handshakes waiting for their upstream's answer. */
      readonly handshaking: number
      /** Resolves once no bridge is open or closing and no handshake is in flight. */
      whenIdle (): Promise<void>
    }
  }
}

const WS_KEY_RE = /^[+/0-9A-Za-z]{22}==$/

export default fp(async function websocketBridgePlugin (fastify: FastifyInstance) {
  const cfg = fastify.gatewayConfig.websocket
  const sweeper = new HeartbeatSweeper({ pingInterval: cfg.pingInterval, pongTimeout: cfg.pongTimeout, idleTimeout: cfg.idleTimeout })
  const registry = fastify.connections
  const state = fastify.gatewayState
  const closeOnExpiry = fastify.gatewayConfig.auth.closeOnExpiry
  const tokenParam = fastify.gatewayConfig.auth.queryParam
  /** Bridged connections not yet fully closed. */
  let active = 0
  /** Handshakes between the upstream attempt and the client's upgrade. */
  let inflight = 0
  /** Waiting for no bridge and no handshake to be left (drain, and the runtime retiring this app). */
  let idle: Array<() => void> = []
  const settled = (): void => {
    if (active !== 0 || inflight !== 0 || idle.length === 0) return
    const waiters = idle
    idle = []
    for (const w of waiters) w()
  }
  const whenIdle = (): Promise<void> => active === 0 && inflight === 0 ? Promise.resolve() : new Promise((resolve) => { idle.push(resolve) })

  await fastify.register(websocket, {
    // Its ws server is only reached by a handshake no preHandler connected (see attach):
    // `connect` answers the 101 itself and relays frames on the raw sockets.
    options: { maxPayload: cfg.maxPayload, perMessageDeflate: false, clientTracking: false },
    // Our own shutdown replaces @fastify/websocket's, which would close clients without a code.
    preClose: async function () { await drain() }
  })

  /**
   * This app's own bridges. The registry may be shared with other app generations (hot reload),
   * so shutdown and closeOnUnhealthy act on these, not on everything the registry lists.
   */
  const mine = new Set<Bridge>()
  /** The pool each bridge's target belongs to (least-connections counts, closeOnUnhealthy). */
  const poolOf = new WeakMap<Bridge, UpstreamPool>()
  for (const pool of fastify.upstreamPools.values()) {
    if (!pool.config.closeOnUnhealthy) continue
    // Clients of a target that turned unhealthy reconnect elsewhere (1012: service restart).
    pool.onUnhealthy((target) => {
      let n = 0
      for (const b of mine) {
        if (b.info.upstream === target && poolOf.get(b) === pool) { b.close(CLOSE_SERVICE_RESTART, REASON_UPSTREAM_UNHEALTHY); n++ }
      }
      if (n > 0) fastify.log.warn({ upstream: target, closed: n }, 'closed connections of an unhealthy target')
    })
  }

  // Some answers to an upgrade request are written without running any hook (503 while Fastify
  // closes, 400 for a malformed URL), so @fastify/websocket never ends those sockets: end them
  // once the answer is written. A successful upgrade hijacks the response, which never finishes.
  fastify.server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    // Bytes that came with the upgrade request (a client that did not wait for its 101).
    if (head.length > 0) (req as RawWithHead)[kHead] = head
    const res = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage
    if (res === undefined || res === null) return
    if (res.writableFinished) socket.destroySoon()
    else res.once('finish', () => socket.destroySoon())
  })

  async function drain (): Promise<void> {
    state.draining = true
    if (active === 0 && inflight === 0) { sweeper.stop(); return }
    // Handshakes still in progress are answered 503 or closed with 1001 as they complete.
    const done = whenIdle()
    for (const b of mine) b.close(CLOSE_GOING_AWAY, REASON_GOING_AWAY)
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(true), fastify.gatewayConfig.server.drainTimeout) })
    if (await Promise.race([done.then(() => false), timedOut])) {
      fastify.log.warn({ open: active, handshakes: inflight }, 'drain timeout: terminating remaining WebSocket connections')
      for (const b of mine) b.terminate()
    }
    clearTimeout(timer)
    sweeper.stop()
  }

  async function connect (request: FastifyRequest, reply: FastifyReply, first: BridgeTarget): Promise<boolean> {
    const raw = request.raw
    // The gateway's own routes refuse a malformed handshake earlier (checkHandshake, before
    // auth and limits); a plugin's route may not have, and the 101 below needs a valid key.
    if (!validHandshake(request, reply)) return false
    const clientKey = request.headers['sec-websocket-key'] as string
    const allOffered = parseProtocols(request.headers['sec-websocket-protocol'])
    // A bearer.<jwt> offer carries the client's token: it is never sent upstream.
    const bearer = allOffered.find((p) => p.startsWith(BEARER_PROTOCOL_PREFIX))
    const offered = bearer === undefined ? allOffered : allOffered.filter((p) => !p.startsWith(BEARER_PROTOCOL_PREFIX))
    const headers = forwardHeaders(request.headers, {
      remoteAddress: raw.socket.remoteAddress ?? '',
      clientIp: request.ip,
      proto: request.protocol,
      host: request.host,
      requestId: request.id,
      extra: first.headers,
      strip: first.strip,
      policy: fastify.headerPolicy,
      httpVersion: request.raw.httpVersion
    }, skipForWs)
    // permessage-deflate is negotiated end to end: the relay passes compressed frames as they are.
    // compression: off asks for none, so neither hop compresses (and maxPayload needs no inflating).
    const extensions = cfg.compression === 'off' ? '' : deflateOffers(request.headers['sec-websocket-extensions'])
    const cancel = new HandshakeCancel()
    const sock = raw.socket
    const onGone = (): void => { cancel.cancel() }
    // The client socket is not read until the upgrade, so a client that hangs up would go
    // unnoticed until the connect timeout: read it meanwhile (a client may not send frames
    // before its 101, so anything read is kept and put back), and watch for its end. What is
    // kept is bounded: past EARLY_DATA_LIMIT the socket is paused (TCP backpressure) until
    // the upgrade completes or fails.
    const early: Buffer[] = []
    let earlyBytes = (raw as RawWithHead)[kHead]?.length ?? 0
    const onData = (chunk: Buffer): void => {
      early.push(chunk)
      earlyBytes += chunk.length
      if (earlyBytes >= EARLY_DATA_LIMIT) { sock.removeListener('data', onData); sock.pause() }
    }
    if (earlyBytes >= EARLY_DATA_LIMIT) sock.pause()
    if (earlyBytes < EARLY_DATA_LIMIT) sock.on('data', onData)
    sock.once('end', onGone)
    sock.once('close', onGone)
    inflight++

    const attempt = async (target: BridgeTarget): Promise<HandshakeResult> => {
      const r = await openUpstream({
        url: target.target + target.path, headers, protocols: offered, extensions, connectTimeout: cfg.connectTimeout, ca: target.ca, cancel
      })
      const id = target.upstream ?? target.target
      if (r.ok) target.pool?.markSuccess(id)
      else if (r.reason === 'refused' || r.reason === 'timeout') {
        target.pool?.markFailure(id, r.error?.message ?? r.reason)
        fastify.metrics.upstreamError(id, r.reason)
      } else if (r.reason === 'rejected') fastify.metrics.upstreamError(id, r.reason)
      return r
    }

    let t = first
    let result = await attempt(t)
    // A target that refuses or times out costs the client one retry on another target, not an
    // error: nothing has been sent to the client yet.
    if (!result.ok && (result.reason === 'refused' || result.reason === 'timeout') && t.retarget !== undefined) {
      const next = t.retarget(new Set([t.upstream ?? t.target]))
      if (next !== null) {
        request.log.info({ failed: t.upstream ?? t.target, next: next.upstream ?? next.target }, 'retrying the handshake on another target')
        t = next
        result = await attempt(t)
      }
    }
    sock.removeListener('data', onData)
    sock.removeListener('end', onGone)
    sock.removeListener('close', onGone)
    sock.pause()

    const upstreamUrl = t.upstream ?? t.target
    if (result.ok && state.draining) {
      result.socket.destroy()
      inflight--
      settled()
      await reply.code(503).send(errorBody(new codes.GW_ERR_DRAINING()))
      return false
    }
    if (!result.ok) {
      inflight--
      settled()
      if (result.reason === 'aborted') { reply.hijack(); sock.destroy(); return false }
      request.log.warn({ upstream: upstreamUrl, status: result.status, reason: result.reason, err: result.error?.message }, 'upstream handshake failed')
      await reply.code(result.status).send(errorBody(handshakeError(result.reason, result.status, result.error, result.upstreamStatus)))
      return false
    }
    // Handshake first, upgrade second: the upstream has answered 101, now the client gets its own.
    reply.hijack()
    reply.raw.detachSocket(sock)
    if (sock.destroyed) {
      result.socket.destroy()
      inflight--
      settled()
      return false
    }
    // Browsers fail a handshake that offered subprotocols and got none back: when the only offer
    // was the bearer token and the upstream picked none, answer with that offer.
    const protocol = result.protocol !== ''
      ? result.protocol
      : bearer !== undefined && offered.length === 0 && SUBPROTOCOL_RE.test(bearer) ? bearer : ''
    const key = clientKey.trim()
    sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Accept: ${acceptKey(key)}\r\n` +
      (protocol === '' ? '' : `Sec-WebSocket-Protocol: ${protocol}\r\n`) +
      (result.extensions === '' ? '' : `Sec-WebSocket-Extensions: ${result.extensions}\r\n`) + '\r\n')
    sock.setTimeout(0)
    sock.setNoDelay(true)
    const headBytes = (raw as RawWithHead)[kHead]
    if (headBytes !== undefined) { delete (raw as RawWithHead)[kHead]; early.unshift(headBytes) }
    if (early.length > 0) sock.unshift(Buffer.concat(early))
    inflight--
    const claims = (request as { user?: JwtClaims | null }).user
    const bridge = new Bridge(sock, result.socket, result.head, {
      id: request.id,
      route: t.route,
      path: request.url.split('?', 1)[0],
      clientIp: request.ip,
      userId: typeof claims?.sub === 'string' ? claims.sub : null,
      subprotocol: protocol === '' || protocol.startsWith(BEARER_PROTOCOL_PREFIX) ? null : protocol,
      upstream: upstreamUrl,
      instanceId: fastify.instanceId,
      expiresAt: closeOnExpiry && typeof claims?.exp === 'number' ? claims.exp * 1000 : 0,
      // Kept with the token parameter already masked: the bridge outlives the request, and
      // its info is reachable from plugins through the registry.
      url: request.url.includes('?') ? redactUrl(request.url, tokenParam) : request.url,
      remotePort: sock.remotePort,
      handshakeMs: reply.elapsedTime
    }, { highWaterMark: cfg.highWaterMark, maxPayload: cfg.maxPayload, extensions: result.extensions, onEnd, onRtt, messageLimit: t.messageLimit, upstreamReads: result.reads })
    fastify.metrics.handshake(t.route, 'ok', result.ms / 1000)
    if (t.pool !== undefined) {
      t.pool.connectionOpened(upstreamUrl)
      poolOf.set(bridge, t.pool)
    }
    active++
    mine.add(bridge)
    registry.add(bridge)
    sweeper.add(bridge)
    // The access-log line comes when the connection ends, with its totals (as nginx logs a
    // WebSocket): one line per connection instead of two. At debug level, one now too.
    request.log.debug({ req: request, connId: bridge.info.id, route: t.route, upstream: upstreamUrl, responseTime: reply.elapsedTime }, 'websocket bridged')
    // The upstream answered just before shutdown began: this connection goes the way of the others.
    if (state.draining) bridge.close(CLOSE_GOING_AWAY, REASON_GOING_AWAY)
    return true
  }

  function attach (client: WebSocket): void {
    client.close(1011, 'no upstream')
  }

  const rtt = fastify.metrics.rtt
  function onRtt (seconds: number): void { rtt.observe(seconds) }

  function onEnd (bridge: Bridge, end: BridgeEnd): void {
    fastify.metrics.connectionEnded(bridge, end.clientCode, end.upstreamCode)
    poolOf.get(bridge)?.connectionClosed(bridge.info.upstream)
    mine.delete(bridge)
    registry.remove(bridge)
    sweeper.delete(bridge)
    active--
    const i = bridge.info
    fastify.log.info({
      reqId: i.id,
      // The shape the `req` serializer reads (it masks the token in the URL), as on HTTP lines.
      req: { method: 'GET', url: i.url ?? i.path, ip: i.clientIp, socket: { remotePort: i.remotePort } },
      connId: i.id,
      route: i.route,
      upstream: i.upstream,
      userId: i.userId,
      statusCode: 101,
      responseTime: i.handshakeMs,
      durationMs: Date.now() - bridge.connectedAt,
      by: end.by,
      clientCode: end.clientCode,
      upstreamCode: end.upstreamCode,
      messagesFromClient: bridge.messagesFromClient,
      messagesToClient: bridge.messagesToClient,
      bytesFromClient: bridge.bytesFromClient,
      bytesToClient: bridge.bytesToClient
    }, 'websocket closed')
    settled()
  }

  // A handshake on a route that bridges nothing (/health, a static route, a plugin's HTTP route)
  // would be upgraded by @fastify/websocket's own server and then dropped: refuse it first, as a
  // route with `websocket: false` does. The configured routes decide for themselves.
  fastify.addHook('onRoute', (route) => {
    if (route.wsHandler !== undefined || (route as { websocket?: boolean }).websocket === true) route.config = { ...route.config, websocketRoute: true }
  })
  fastify.addHook('onRequest', async (request, reply) => {
    if (!request.ws) return
    const c = request.routeOptions.config as { websocketRoute?: boolean, gatewayRoute?: string }
    if (c.websocketRoute === true || c.gatewayRoute !== undefined) return
    await reply.code(404).send(errorBody(new codes.GW_ERR_NO_WEBSOCKET()))
  })

  // Every handshake answered without an upgrade (400, 401, 403, 429, 502, 504...) counts by its status.
  fastify.addHook('onResponse', async (request, reply) => {
    if (!request.ws) return
    const route = request.routeOptions.config.gatewayRoute
    if (route !== undefined) fastify.metrics.handshake(route, String(reply.statusCode))
  })

  fastify.decorate('websocketBridge', {
    connect,
    attach,
    get active () { return active },
    get handshaking () { return inflight },
    whenIdle
  })
}, { name: 'tollgate-websocket-bridge', fastify: '5.x', dependencies: ['tollgate-config', 'tollgate-registry', 'tollgate-metrics'] })

function skipForWs (name: string): boolean {
  return name === 'host' || name.startsWith('sec-websocket-') || name === 'content-length'
}

/** The error a failed upstream handshake answers the client with (its status is `status`). */
function handshakeError (reason: 'refused' | 'timeout' | 'rejected' | 'protocol', status: number, error?: Error, upstreamStatus?: number): Error & { statusCode?: number } {
  switch (reason) {
    case 'timeout': return new codes.GW_ERR_UPSTREAM_TIMEOUT()
    case 'rejected': return Object.assign(new codes.GW_ERR_UPSTREAM_REJECTED(upstreamStatus ?? status), { statusCode: status })
    case 'protocol': if (status === 400) return new codes.GW_ERR_BAD_HANDSHAKE(error?.message ?? 'invalid subprotocol')
  }
  return new codes.GW_ERR_UPSTREAM_UNAVAILABLE()
}

/**
 * onRequest check for a WebSocket handshake on a bridge route: a draining gateway answers 503, a
 * disallowed Origin 403, a malformed handshake 400; all before any upstream is contacted.
 */
export function checkHandshake (request: FastifyRequest, reply: FastifyReply, draining: boolean, allowedOrigins: readonly string[] = []): boolean {
  if (draining) { void reply.code(503).send(errorBody(new codes.GW_ERR_DRAINING())); return false }
  // Browsers send cookies with cross-site WebSocket handshakes; an Origin allow-list stops
  // cross-site WebSocket hijacking of cookie-authenticated sockets.
  if (allowedOrigins.length > 0) {
    const origin = request.headers.origin?.toLowerCase()
    if (origin === undefined || !allowedOrigins.some((o) => o.toLowerCase() === origin)) {
      void reply.code(403).send(errorBody(new codes.GW_ERR_ORIGIN_FORBIDDEN()))
      return false
    }
  }
  return validHandshake(request, reply)
}

/**
 * Whether the request asks for a WebSocket upgrade: `Upgrade` lists `websocket` and
 * `Connection` lists `upgrade` (RFC 6455 4.2.1, both case-insensitive). Any other upgrade token
 * (`h2c`, `websockets`) is not a WebSocket handshake and is never switched or forwarded.
 */
export function isWebSocketUpgrade (headers: IncomingHttpHeaders): boolean {
  return listHas(headers.upgrade, 'websocket') && listHas(headers.connection, 'upgrade')
}

/** Whether `Upgrade` lists `websocket` (whatever `Connection` says). */
export function asksForWebSocket (headers: IncomingHttpHeaders): boolean {
  return listHas(headers.upgrade, 'websocket')
}

function listHas (value: string | string[] | undefined, token: string): boolean {
  if (value === undefined) return false
  const s = Array.isArray(value) ? value.join(',') : value
  if (s.length === token.length) return s.toLowerCase() === token
  return s.split(',').some((t) => t.trim().toLowerCase() === token)
}

/** RFC 6455 4.2.1 checks of the client's handshake; a malformed one is answered 400 (false). */
function validHandshake (request: FastifyRequest, reply: FastifyReply): boolean {
  const key = request.headers['sec-websocket-key']
  const version = request.headers['sec-websocket-version']
  if (request.method !== 'GET') { void reply.code(400).send(errorBody(new codes.GW_ERR_BAD_HANDSHAKE('method must be GET'))); return false }
  if (!isWebSocketUpgrade(request.headers)) { void reply.code(400).send(errorBody(new codes.GW_ERR_BAD_HANDSHAKE('Upgrade must be websocket and Connection must include upgrade'))); return false }
  if (typeof key !== 'string' || !WS_KEY_RE.test(key.trim())) { void reply.code(400).send(errorBody(new codes.GW_ERR_BAD_HANDSHAKE('missing or invalid Sec-WebSocket-Key'))); return false }
  if (version !== '13' && version !== '8') {
    void reply.code(400).header('sec-websocket-version', '13, 8').send(errorBody(new codes.GW_ERR_BAD_HANDSHAKE('unsupported Sec-WebSocket-Version')))
    return false
  }
  return true
}
