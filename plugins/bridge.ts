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
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type WebSocket from 'ws'
import { Bridge, type BridgeEnd } from '../src/bridge/bridge.js'
import { deflateOffers, HandshakeCancel, openUpstream, type HandshakeResult } from '../src/bridge/upstream-handshake.js'
import { answeredProtocol, handshakeProblem, originAllowed, switchingProtocols } from '../src/bridge/client-handshake.js'
import { EarlyData } from '../src/bridge/early-data.js'
import { endWithStatus, SpanKind, type Span, type SpanContext } from '../src/tracing/tracer.js'
import { distinctPools, type UpstreamPool } from '../src/upstreams/pool.js'
import { forwardHeaders } from '../src/edge/forward-headers.js'
import { forwardContext } from './edge.js'
import { HeartbeatSweeper } from '../src/bridge/heartbeat.js'
import { CLOSE_GOING_AWAY, CLOSE_SERVICE_RESTART, REASON_GOING_AWAY, REASON_TARGET_DRAINED, REASON_TARGET_REMOVED, REASON_UPSTREAM_UNHEALTHY } from '../src/close-codes.js'
import { startPacedClose, type ClosePacedOptions, type PacedClose } from '../src/drain/paced-close.js'
import { codes } from '../src/errors.js'
import { EARLY_DATA_LIMIT } from '../src/config/defaults.js'
import { closedFields, redactUrl, toMicros, writeInfoLine, type ClosedLine } from '../src/logger.js'
import { BEARER_PROTOCOL_PREFIX, parseProtocols } from '../src/auth/token.js'
import type { JwtClaims } from './auth.js'
import { requestUserId } from './authorize.js'
import { connectEvent, disconnectEvent, type ConnectEvent, type DisconnectEvent } from '../src/events/payload.js'

export type { ClosePacedOptions, PacedCause, PacedClose } from '../src/drain/paced-close.js'

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
      /** Closes this app's connections (those `which` picks, or all) with `code`; returns how many. */
      closeAll (code: number, reason: string, which?: (bridge: Bridge) => boolean): number
      /**
       * Closes connections (`bridges`, else this app's that `which` picks, else all of this app's)
       * with `code`, spread over `windowMs` (default `server.drainPace`) with jitter: at most
       * `maxPerSecond` in any second. A connection that ended before its turn is skipped. A
       * shutdown pace cancels this app's other paces (it closes their connections itself).
       */
      closePaced (opts: ClosePacedOptions): PacedClose
      /** Ends every connection of this app at once, without a close handshake (drain timeout). */
      terminateAll (): void
      /**
       * Calls `listener` when a connection of this app opened (its client got the 101), with the
       * payload a `connect` lifecycle event has (without `claims`) and the handshake's request.
       * A listener that throws is logged; it never affects the connection.
       */
      onConnect (listener: (event: ConnectEvent, request: FastifyRequest) => void): void
      /** Calls `listener` when a connection of this app ended, with a `disconnect` event's payload. */
      onClose (listener: (event: DisconnectEvent) => void): void
      /**
       * The open bridges of this instance to the targets of the upstream named as `pool` is (only
       * to the target URL `target`, when given), whatever app generation opened them (a reload
       * keeps them), for draining, removing and rebalancing a target. Bridges already closing
       * are left out.
       */
      connectionsOf (pool: UpstreamPool, target?: string): Bridge[]
    }
  }
}

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
    // Shutdown is plugins/drain.ts's (closePaced with 1001); @fastify/websocket's own would close
    // clients without a code.
    preClose: async function () {}
  })
  fastify.addHook('onClose', async () => { sweeper.stop() })

  /**
   * This app's own bridges, with what this app keeps for each. The registry may be shared with
   * other app generations (hot reload), so shutdown, reloadDrain and closeOnUnhealthy act on
   * these, not on everything it lists.
   */
  const mine = new Map<Bridge, Tracked>()
  const tracing = fastify.tracing
  function closeAll (code: number, reason: string, which?: (bridge: Bridge) => boolean): number {
    let n = 0
    for (const b of mine.keys()) if (which === undefined || which(b)) { b.close(code, reason); n++ }
    return n
  }
  /** This app's paces in progress (a shutdown cancels the others). */
  const paces = new Set<PacedClose>()
  // A closed app has nothing left to pace (its connections are gone): no timer outlives it.
  fastify.addHook('onClose', async () => { for (const p of paces) p.cancel() })
  function closePaced (opts: ClosePacedOptions): PacedClose {
    const which = opts.which
    const items = opts.bridges ?? (which === undefined ? [...mine.keys()] : [...mine.keys()].filter(which))
    if (opts.cause === 'shutdown') for (const p of paces) p.cancel()
    const metrics = fastify.metrics
    const p = startPacedClose({
      items,
      code: opts.code,
      reason: opts.reason,
      cause: opts.cause,
      windowMs: opts.windowMs ?? fastify.gatewayConfig.server.drainPace,
      log: fastify.log,
      book: metrics.pacedCloses,
      onClosed: (cause) => { metrics.pacedClose(cause) }
    })
    paces.add(p)
    void p.done.then(() => paces.delete(p))
    return p
  }
  for (const pool of distinctPools(fastify.upstreamPools)) {
    if (!pool.config.closeOnUnhealthy) continue
    // Clients of a target that turned unhealthy reconnect elsewhere (1012: service restart), paced.
    // One pace per target: a flap while it runs starts no second one, and the target turning
    // healthy again stops it (the connections not reached yet stay).
    pool.onUnhealthy((target) => {
      if (pool.pacing(target, 'unhealthy')) return
      const p = closePaced({ code: CLOSE_SERVICE_RESTART, reason: REASON_UPSTREAM_UNHEALTHY, cause: 'unhealthy', which: (b) => b.info.upstream === target && mine.get(b)?.pool === pool })
      if (p.total === 0) return
      pool.trackPace(target, 'unhealthy', p)
      fastify.log.warn({ upstream: target, paceId: p.id, connections: p.total, windowMs: p.windowMs }, 'closing connections of an unhealthy target')
    })
    pool.onHealthy((target) => {
      if (pool.cancelPace(target, 'unhealthy')) fastify.log.info({ upstream: target }, 'target healthy again: its paced close stopped')
    })
  }

  // Some answers to an upgrade request are written without running any hook (503 while Fastify
  // closes, 400 for a malformed URL), so @fastify/websocket never ends those sockets: end them
  // once the answer is written. A successful upgrade hijacks the response, which never finishes.
  // The response is the socket's `_httpMessage` (@fastify/websocket assigns it; Node has no
  // public way from a socket to its response).
  fastify.server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    // Bytes that came with the upgrade request (a client that did not wait for its 101).
    if (head.length > 0) (req as RawWithHead)[kHead] = head
    const res = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage
    if (res === undefined || res === null) return
    if (res.writableFinished) socket.destroySoon()
    else res.once('finish', () => socket.destroySoon())
  })

  /** Tracing on: the client span of one upstream attempt, whose traceparent goes upstream. */
  function attemptSpan (target: BridgeTarget, request: FastifyRequest, offer: UpstreamOffer): Span | null {
    if (tracing === null || request.traceSpan === null) return null
    const span = tracing.start('GET', SpanKind.CLIENT, request.traceSpan, { 'http.request.method': 'GET', 'url.full': target.target + target.path.split('?', 1)[0] })
    tracing.inject(span, offer.headers)
    return span
  }

  /** One upstream attempt's outcome, told to the target's pool, the metrics and its span. */
  function settleAttempt (target: BridgeTarget, r: HandshakeResult, span: Span | null): void {
    const id = target.upstream ?? target.target
    if (r.ok) target.pool?.markSuccess(id)
    else if (r.reason === 'refused' || r.reason === 'timeout') {
      target.pool?.markFailure(id, r.error.cause instanceof Error ? r.error.cause.message : r.reason)
      fastify.metrics.upstreamError(id, r.reason)
    } else if (r.reason === 'rejected') fastify.metrics.upstreamError(id, r.reason)
    if (span !== null) {
      if (!r.ok) span.setAttribute('error.type', r.reason)
      endWithStatus(span, r.ok ? 101 : r.upstreamStatus ?? r.error.statusCode ?? 502, false)
    }
  }

  /**
   * The target for the one retry after `first` failed with `r`: a target that refuses or times
   * out costs the client a retry on another target, not an error (nothing has been sent to the
   * client yet). Null when there is none.
   */
  function retryTarget (request: FastifyRequest, first: BridgeTarget, r: HandshakeResult): BridgeTarget | null {
    if (r.ok || (r.reason !== 'refused' && r.reason !== 'timeout') || first.retarget === undefined) return null
    const next = first.retarget(new Set([first.upstream ?? first.target]))
    if (next !== null) request.log.info({ failed: first.upstream ?? first.target, next: next.upstream ?? next.target }, 'retrying the handshake on another target')
    return next
  }

  async function connect (request: FastifyRequest, reply: FastifyReply, first: BridgeTarget): Promise<boolean> {
    // The gateway's own routes refuse a malformed handshake earlier (checkHandshake, before
    // auth and limits); a plugin's route may not have, and the 101 below needs a valid key.
    const problem = handshakeProblem(request.method, request.headers)
    if (problem !== null) { await refuse(reply, problem.error, problem.headers); return false }
    const sock = request.raw.socket
    const offer = upstreamOffer(request, first)
    const early = new EarlyData(sock, (request.raw as RawWithHead)[kHead], EARLY_DATA_LIMIT, () => { offer.cancel.cancel() })
    delete (request.raw as RawWithHead)[kHead]
    inflight++
    try {
      // The attempts are awaited here rather than in helper async functions: each async level
      // costs a promise and a microtask per handshake.
      let target = first
      let result: HandshakeResult
      let retried = false
      for (;;) {
        const span = attemptSpan(target, request, offer)
        result = await openUpstream({
          url: target.target + target.path, headers: offer.headers, protocols: offer.protocols, extensions: offer.extensions, connectTimeout: cfg.connectTimeout, ca: target.ca, cancel: offer.cancel, targets: fastify.targetCache
        })
        settleAttempt(target, result, span)
        const next = retried ? null : retryTarget(request, first, result)
        if (next === null) break
        target = next
        retried = true
      }
      early.stop()
      if (!result.ok) {
        if (result.reason === 'aborted') {
          // Never answered: the handshake's span ends as nginx would log it.
          if (request.traceSpan?.isRecording() === true) endWithStatus(request.traceSpan, 499, true)
          reply.hijack()
          sock.destroy()
          return false
        }
        request.log.warn({ upstream: target.upstream ?? target.target, status: result.error.statusCode, reason: result.reason, err: result.error.cause instanceof Error ? result.error.cause.message : result.error.message }, 'upstream handshake failed')
        await refuse(reply, result.error)
        return false
      }
      if (state.draining) {
        result.socket.destroy()
        await refuse(reply, new codes.GW_ERR_DRAINING())
        return false
      }
      // Handshake first, upgrade second: the upstream has answered 101, now the client gets its own.
      reply.hijack()
      reply.raw.detachSocket(sock)
      if (sock.destroyed) { result.socket.destroy(); return false }
      const protocol = answeredProtocol(result.protocol, offer.bearer, offer.protocols.length)
      sock.write(switchingProtocols(request.headers['sec-websocket-key'] as string, protocol, result.extensions))
      sock.setTimeout(0)
      sock.setNoDelay(true)
      early.putBack()
      const bridge = startBridge(request, reply, target, result, protocol)
      // The upstream answered just before shutdown began: this connection goes the way of the others.
      if (state.draining) bridge.close(CLOSE_GOING_AWAY, REASON_GOING_AWAY)
      else {
        // Its target was removed, or its connections are being closed, while the handshake was
        // in flight: that close missed this one, so it goes the same way now.
        const refused = target.pool?.refuses(bridge.info.upstream) ?? null
        if (refused !== null) bridge.close(CLOSE_SERVICE_RESTART, refused === 'drain' ? REASON_TARGET_DRAINED : refused === 'unhealthy' ? REASON_UPSTREAM_UNHEALTHY : REASON_TARGET_REMOVED)
      }
      return true
    } finally {
      inflight--
      settled()
    }
  }

  /** Answers a handshake that is not upgraded: the error handler renders the coded error. */
  async function refuse (reply: FastifyReply, error: Error, headers?: Record<string, string>): Promise<void> {
    if (headers !== undefined) void reply.headers(headers)
    await reply.send(error)
  }

  /** What goes upstream for this handshake: headers, subprotocols (never the bearer token), extensions. */
  function upstreamOffer (request: FastifyRequest, target: BridgeTarget): UpstreamOffer {
    const allOffered = parseProtocols(request.headers['sec-websocket-protocol'])
    // A bearer.<jwt> offer carries the client's token: it is never sent upstream.
    const bearer = allOffered.find((p) => p.startsWith(BEARER_PROTOCOL_PREFIX))
    return {
      bearer,
      protocols: bearer === undefined ? allOffered : allOffered.filter((p) => !p.startsWith(BEARER_PROTOCOL_PREFIX)),
      headers: forwardHeaders(request.headers, forwardContext(request, target.headers, target.strip), skipForWs),
      // permessage-deflate is negotiated end to end: the relay passes compressed frames as they
      // are. compression: off asks for none, so neither hop compresses.
      extensions: cfg.compression === 'off' ? '' : deflateOffers(request.headers['sec-websocket-extensions']),
      cancel: new HandshakeCancel()
    }
  }

  /** The relay for an upgraded pair, tracked by this app, the registry, the sweeper and the pool. */
  function startBridge (request: FastifyRequest, reply: FastifyReply, t: BridgeTarget, result: HandshakeResult & { ok: true }, protocol: string): Bridge {
    const sock = request.raw.socket
    const upstreamUrl = t.upstream ?? t.target
    const claims = (request as { user?: JwtClaims | null }).user
    const url = request.url
    const q = url.indexOf('?')
    const bridge = new Bridge(sock, result.socket, result.head, {
      id: request.id,
      route: t.route,
      path: q === -1 ? url : url.slice(0, q),
      clientIp: request.ip,
      userId: requestUserId(request),
      subprotocol: protocol === '' || protocol.startsWith(BEARER_PROTOCOL_PREFIX) ? null : protocol,
      upstream: upstreamUrl,
      upstreamName: t.pool?.name,
      instanceId: fastify.instanceId,
      expiresAt: closeOnExpiry && typeof claims?.exp === 'number' ? claims.exp * 1000 : 0,
      // Kept with the token parameter already masked: the bridge outlives the request, and
      // its info is reachable from plugins through the registry.
      url: q === -1 ? url : redactUrl(url, tokenParam),
      remotePort: sock.remotePort,
      handshakeMs: reply.elapsedTime
    }, { highWaterMark: cfg.highWaterMark, maxPayload: cfg.maxPayload, extensions: result.extensions, onEnd, onRtt, messageLimit: t.messageLimit, upstreamReads: result.reads })
    fastify.metrics.handshake(t.route, 'ok', result.ms / 1000)
    const span = request.traceSpan
    let trace: SpanContext | undefined
    if (span !== null) {
      // The handshake's span ends at the 101 (not a span open for hours); the close gets its own.
      if (span.isRecording()) endWithStatus(span, 101, true)
      trace = span.spanContext()
    }
    const pool = t.pool
    mine.set(bridge, { trace, pool, counted: pool === undefined ? undefined : pool.connectionOpened(upstreamUrl) })
    active++
    registry.add(bridge)
    sweeper.add(bridge)
    if (connectListeners.length > 0) {
      const event = connectEvent(bridge.info, bridge.connectedAt)
      for (const l of connectListeners) {
        try { l(event, request) } catch (err) { request.log.error({ err }, 'onConnect listener failed') }
      }
    }
    // The access-log line comes when the connection ends, with its totals (as nginx logs a
    // WebSocket): one line per connection instead of two. At debug level, one now too.
    request.log.debug({ req: request, connId: bridge.info.id, route: t.route, upstream: upstreamUrl, responseTime: reply.elapsedTime }, 'websocket bridged')
    return bridge
  }

  function attach (client: WebSocket): void {
    client.close(1011, 'no upstream')
  }

  const connectListeners: Array<(event: ConnectEvent, request: FastifyRequest) => void> = []
  const closeListeners: Array<(event: DisconnectEvent) => void> = []

  const rtt = fastify.metrics.rtt
  function onRtt (seconds: number): void { rtt.observe(seconds) }

  function onEnd (bridge: Bridge, end: BridgeEnd): void {
    fastify.metrics.connectionEnded(bridge, end.clientCode, end.upstreamCode)
    const tracked = mine.get(bridge)
    tracked?.pool?.connectionClosed(bridge.info.upstream, tracked.counted)
    mine.delete(bridge)
    registry.remove(bridge)
    sweeper.delete(bridge)
    active--
    const i = bridge.info
    const durationMs = Date.now() - bridge.connectedAt
    const trace = tracked?.trace
    if (trace !== undefined) closeSpan(bridge, end, trace, durationMs)
    if (closeListeners.length > 0) {
      const event = disconnectEvent(i, bridge.connectedAt, end, bridge)
      for (const l of closeListeners) {
        try { l(event) } catch (err) { fastify.log.error({ err, connId: i.id }, 'onClose listener failed') }
      }
    }
    // The shape the `req` serializer reads (it masks the token in the URL), as on HTTP lines.
    const req = { method: 'GET', url: i.url ?? i.path, ip: i.clientIp, socket: { remotePort: i.remotePort } }
    const line: ClosedLine = {
      reqId: i.id,
      // Left out of the line when undefined (as pino leaves undefined values out): only traced
      // connections have one.
      trace_id: trace?.traceId,
      req,
      connId: i.id,
      route: i.route,
      upstream: i.upstream,
      userId: i.userId,
      statusCode: 101,
      responseTime: i.handshakeMs === undefined ? undefined : toMicros(i.handshakeMs),
      durationMs,
      by: end.by,
      clientCode: end.clientCode,
      upstreamCode: end.upstreamCode,
      messagesFromClient: bridge.messagesFromClient,
      messagesToClient: bridge.messagesToClient,
      bytesFromClient: bridge.bytesFromClient,
      bytesToClient: bridge.bytesToClient
    }
    // Written as pino would write it, without its walk over the object (src/logger.ts); through
    // pino itself for a host app's own logger.
    const written = writeInfoLine(fastify.log, 'websocket closed', () => closedFields(line, tokenParam))
    if (!written) fastify.log.info(line, 'websocket closed')
    settled()
  }

  /** One short span when a traced WebSocket ends: who closed, the codes both ways, its counters. */
  function closeSpan (bridge: Bridge, end: BridgeEnd, parent: SpanContext, durationMs: number): void {
    tracing!.startUnder(`WebSocket close ${bridge.info.route}`, SpanKind.INTERNAL, parent, {
      'tollgate.close.by': end.by,
      'tollgate.close.client_code': end.clientCode,
      'tollgate.close.upstream_code': end.upstreamCode,
      'tollgate.duration_ms': durationMs,
      'tollgate.messages_from_client': bridge.messagesFromClient,
      'tollgate.messages_to_client': bridge.messagesToClient,
      'tollgate.bytes_from_client': bridge.bytesFromClient,
      'tollgate.bytes_to_client': bridge.bytesToClient,
      'http.route': bridge.info.route
    }).end()
  }

  // A handshake on a route that bridges nothing (/health, a static route, a plugin's HTTP route)
  // would be upgraded by @fastify/websocket's own server and then dropped: refuse it first, as a
  // route with `websocket: false` does. The configured routes decide for themselves.
  fastify.addHook('onRoute', (route) => {
    if (route.wsHandler !== undefined || (route as { websocket?: boolean }).websocket === true) route.config = { ...route.config, websocketRoute: true }
  })
  // Callback style, as the other hooks on every request: an async hook costs a promise each time.
  fastify.addHook('onRequest', (request, _reply, done) => {
    const c = request.routeOptions.config as { websocketRoute?: boolean, gatewayRoute?: string }
    if (!request.ws || c.websocketRoute === true || c.gatewayRoute !== undefined) done()
    else done(new codes.GW_ERR_NO_WEBSOCKET())
  })

  fastify.decorate('websocketBridge', {
    connect,
    attach,
    get active () { return active },
    get handshaking () { return inflight },
    whenIdle,
    closeAll,
    closePaced,
    terminateAll () { for (const b of mine.keys()) b.terminate() },
    onConnect (listener) { connectListeners.push(listener) },
    onClose (listener) { closeListeners.push(listener) },
    connectionsOf (pool: UpstreamPool, target?: string): Bridge[] {
      // The registry is shared by every app generation: connections opened before a reload
      // count too (their pool is the older generation's, their upstream's name the same).
      const out: Bridge[] = []
      for (const b of registry.values()) {
        if (!b.closed && b.info.upstreamName === pool.name && (target === undefined || b.info.upstream === target)) out.push(b)
      }
      return out
    }
  })
}, { name: 'tollgate-websocket-bridge', fastify: '5.x', dependencies: ['tollgate-config', 'tollgate-registry', 'tollgate-metrics', 'tollgate-drain', 'tollgate-upstreams', 'tollgate-tracing'] })

/** What the plugin keeps for one of its bridges until it ends. */
interface Tracked {
  /** The handshake's span, the parent of the close span (tracing on). */
  trace: SpanContext | undefined
  /** The pool the bridge's target belongs to (least-connections counts, closeOnUnhealthy). */
  pool: UpstreamPool | undefined
  /** What the pool's connectionOpened returned, given back when the bridge ends. */
  counted: number | undefined
}

/** What one handshake offers the upstream (the same for a retry on another target). */
interface UpstreamOffer {
  headers: Record<string, string | string[]>
  protocols: string[]
  /** The client's `bearer.<jwt>` subprotocol offer, kept from the upstream. */
  bearer: string | undefined
  extensions: string
  cancel: HandshakeCancel
}

function skipForWs (name: string): boolean {
  return name === 'host' || name.startsWith('sec-websocket-') || name === 'content-length'
}

/**
 * onRequest check for a WebSocket handshake on a bridge route: a draining gateway answers 503, a
 * disallowed Origin 403, a malformed handshake 400; all before any upstream is contacted.
 */
export function checkHandshake (request: FastifyRequest, reply: FastifyReply, draining: boolean, allowedOrigins: readonly string[] = []): boolean {
  if (draining) { void reply.send(new codes.GW_ERR_DRAINING()); return false }
  if (!originAllowed(request.headers.origin, allowedOrigins)) { void reply.send(new codes.GW_ERR_ORIGIN_FORBIDDEN()); return false }
  const problem = handshakeProblem(request.method, request.headers)
  if (problem === null) return true
  if (problem.headers !== undefined) void reply.headers(problem.headers)
  void reply.send(problem.error)
  return false
}
