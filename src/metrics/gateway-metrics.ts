/**
 * Prometheus metrics (prom-client) with no work per relayed message: message and byte totals are
 * read from the live connections' own counters when /metrics is scraped, plus the totals of
 * connections that already ended. Per-event metrics on the hot path (handshakes, closes, HTTP
 * requests) are counted in plain numbers and handed to prom-client at scrape (hot-metrics.ts).
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import { HotCounter, HotHistogram } from './hot-metrics.js'
import type { Bridge } from '../bridge/bridge.js'
import { PacedCloseLog, type PacedCause } from '../drain/paced-close.js'

interface Totals { msgIn: number, msgOut: number, bytesIn: number, bytesOut: number }

export class GatewayMetrics {
  readonly registry = new Registry()
  private readonly ended = new Map<string, Totals>()
  private readonly handshakes: HotCounter<'route' | 'result'>
  private readonly closes: HotCounter<'route' | 'side' | 'code'>
  private readonly upstreamErrors: Counter<'target' | 'kind'>
  private readonly httpRequests: HotCounter<'route' | 'status'>
  private readonly pacedClosed: Counter<'cause'>
  private readonly rebalanceCloses: Counter<'upstream'>
  /**
   * This instance's paced closes (in progress and recent), kept here because, like the totals,
   * they outlive a reload: the admin API lists them and the pending gauge reads them.
   */
  readonly pacedCloses = new PacedCloseLog()
  private readonly handshakeSeconds: HotHistogram
  private readonly authorizeDecisions: Counter<'route' | 'result'>
  private readonly authorizeSeconds: Histogram<'route'>
  private readonly eventsDone: Counter<'type' | 'result'>
  /** Lifecycle events waiting for delivery, read at scrape time (set by the events queue). */
  private eventsBacklog: () => number = () => 0
  readonly rtt: Histogram
  private readonly httpSeconds: HotHistogram
  /** The current app's upstream targets, read at scrape time (set by the upstreams plugin; a reload replaces it). */
  private targets: () => Iterable<{ upstream: string, target: string, up: boolean, weight?: number }> = () => []

  /** @param live the live connections of this instance, read at scrape time */
  constructor (live: () => Iterable<Bridge>, opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry]
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'tollgate_' })
    const ended = this.ended
    new Gauge({
      name: 'tollgate_websocket_connections_active',
      help: 'Open bridged WebSocket connections',
      labelNames: ['route'],
      registers,
      collect () {
        this.reset()
        const counts = new Map<string, number>()
        for (const b of live()) counts.set(b.info.route, (counts.get(b.info.route) ?? 0) + 1)
        for (const [route, n] of counts) this.set({ route }, n)
      }
    })
    // Both counters below need the same totals: one pass over the connections per scrape (the
    // collects of one scrape run in the same turn of the event loop).
    let scraped: Map<string, Totals> | null = null
    const sums = (): Map<string, Totals> => {
      if (scraped === null) {
        scraped = totals()
        setImmediate(() => { scraped = null })
      }
      return scraped
    }
    const totals = (): Map<string, Totals> => {
      const out = new Map<string, Totals>()
      for (const [route, t] of ended) out.set(route, { ...t })
      for (const b of live()) {
        const t = out.get(b.info.route) ?? { msgIn: 0, msgOut: 0, bytesIn: 0, bytesOut: 0 }
        t.msgIn += b.messagesFromClient
        t.msgOut += b.messagesToClient
        t.bytesIn += b.bytesFromClient
        t.bytesOut += b.bytesToClient
        out.set(b.info.route, t)
      }
      return out
    }
    new Counter({
      name: 'tollgate_websocket_messages_total',
      help: 'WebSocket messages relayed, by route and direction',
      labelNames: ['route', 'direction'],
      registers,
      collect () {
        this.reset()
        for (const [route, t] of sums()) {
          this.inc({ route, direction: 'client_to_upstream' }, t.msgIn)
          this.inc({ route, direction: 'upstream_to_client' }, t.msgOut)
        }
      }
    })
    new Counter({
      name: 'tollgate_websocket_bytes_total',
      help: 'WebSocket payload bytes relayed, by route and direction',
      labelNames: ['route', 'direction'],
      registers,
      collect () {
        this.reset()
        for (const [route, t] of sums()) {
          this.inc({ route, direction: 'client_to_upstream' }, t.bytesIn)
          this.inc({ route, direction: 'upstream_to_client' }, t.bytesOut)
        }
      }
    })
    this.handshakes = new HotCounter({
      name: 'tollgate_websocket_handshakes_total',
      help: 'WebSocket handshakes by route and result (ok, or the HTTP status the client got)',
      labelNames: ['route', 'result'],
      registers
    })
    this.closes = new HotCounter({
      name: 'tollgate_websocket_closes_total',
      help: 'WebSocket closes by route, side and close code',
      labelNames: ['route', 'side', 'code'],
      registers
    })
    this.upstreamErrors = new Counter({
      name: 'tollgate_upstream_errors_total',
      help: 'Failed upstream connections or requests, by target and kind (refused, timeout, rejected)',
      labelNames: ['target', 'kind'],
      registers
    })
    this.httpRequests = new HotCounter({
      name: 'tollgate_http_requests_total',
      help: 'Proxied HTTP requests by route and status',
      labelNames: ['route', 'status'],
      registers
    })
    this.handshakeSeconds = new HotHistogram({
      name: 'tollgate_websocket_handshake_duration_seconds',
      help: 'Time to complete the upstream WebSocket handshake, by route',
      labelName: 'route',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers
    })
    this.httpSeconds = new HotHistogram({
      name: 'tollgate_http_request_duration_seconds',
      help: 'Time to answer a proxied HTTP request (until its last byte), by route',
      labelName: 'route',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers
    })
    const targetsOf = (): Iterable<{ upstream: string, target: string, up: boolean, weight?: number }> => this.targets()
    new Gauge({
      name: 'tollgate_upstream_target_up',
      help: 'Whether an upstream target may be picked now (1), or is down or unhealthy (0)',
      labelNames: ['upstream', 'target'],
      registers,
      collect () {
        this.reset()
        for (const t of targetsOf()) this.set({ upstream: t.upstream, target: t.target }, t.up ? 1 : 0)
      }
    })
    new Gauge({
      name: 'tollgate_upstream_target_weight',
      help: 'The weight of an upstream target (0: no new connections), as configured, resolved or set by the admin API',
      labelNames: ['upstream', 'target'],
      registers,
      collect () {
        this.reset()
        for (const t of targetsOf()) if (t.weight !== undefined) this.set({ upstream: t.upstream, target: t.target }, t.weight)
      }
    })
    this.rebalanceCloses = new Counter({
      name: 'tollgate_rebalance_closes_total',
      help: 'WebSocket connections a rebalance picked to close (1012), by upstream',
      labelNames: ['upstream'],
      registers
    })
    this.pacedClosed = new Counter({
      name: 'tollgate_paced_closes_total',
      help: 'WebSocket connections closed by a paced close, by cause (shutdown, reload, unhealthy, drain, remove, rebalance)',
      labelNames: ['cause'],
      registers
    })
    const paced = this.pacedCloses
    new Gauge({
      name: 'tollgate_paced_close_pending',
      help: 'Connections that paced closes in progress have still to close, by cause',
      labelNames: ['cause'],
      registers,
      collect () {
        this.reset()
        for (const [cause, n] of paced.pending()) this.set({ cause }, n)
      }
    })
    this.authorizeDecisions = new Counter({
      name: 'tollgate_authorize_decisions_total',
      help: 'External authorization decisions by route and result (allowed, denied, unavailable, fail_open; cached_ prefix when the cache answered)',
      labelNames: ['route', 'result'],
      registers
    })
    this.authorizeSeconds = new Histogram({
      name: 'tollgate_authorize_duration_seconds',
      help: 'Time the auth service took to answer, by route (cache hits not included)',
      labelNames: ['route'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers
    })
    this.eventsDone = new Counter({
      name: 'tollgate_events_total',
      help: 'Lifecycle events by type and result (queued, delivered, retried, dropped: queue full or not deliverable)',
      labelNames: ['type', 'result'],
      registers
    })
    const backlog = (): number => this.eventsBacklog()
    new Gauge({
      name: 'tollgate_events_pending',
      help: 'Lifecycle events of this instance waiting for delivery',
      registers,
      collect () { this.set(backlog()) }
    })
    this.rtt = new Histogram({
      name: 'tollgate_websocket_rtt_seconds',
      help: 'Heartbeat round-trip time from the gateway to its clients',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers
    })
  }

  /** A handshake ended: `result` is "ok" or the HTTP status the client got. */
  handshake (route: string, result: string, seconds?: number): void {
    this.handshakes.inc(route, result)
    if (seconds !== undefined) this.handshakeSeconds.observe(route, seconds)
  }

  /** An authorization decision; `seconds` when the auth service was asked. */
  authorize (route: string, result: string, seconds?: number): void {
    this.authorizeDecisions.inc({ route, result })
    if (seconds !== undefined) this.authorizeSeconds.observe({ route }, seconds)
  }

  /** A lifecycle event was queued, delivered, retried or dropped. */
  event (type: string, result: 'queued' | 'delivered' | 'retried' | 'dropped'): void {
    this.eventsDone.inc({ type, result })
  }

  /** Where the pending-events gauge reads its value (the events queue, which outlives a reload). */
  watchEvents (backlog: () => number): void {
    this.eventsBacklog = backlog
  }

  upstreamError (target: string, kind: string): void {
    this.upstreamErrors.inc({ target, kind })
  }

  /** A bridged connection ended: its close codes, and its counters join the route's totals. */
  connectionEnded (bridge: Bridge, clientCode: number, upstreamCode: number): void {
    const route = bridge.info.route
    this.closes.inc(route, 'client', String(clientCode))
    this.closes.inc(route, 'upstream', String(upstreamCode))
    const t = this.ended.get(route) ?? { msgIn: 0, msgOut: 0, bytesIn: 0, bytesOut: 0 }
    t.msgIn += bridge.messagesFromClient
    t.msgOut += bridge.messagesToClient
    t.bytesIn += bridge.bytesFromClient
    t.bytesOut += bridge.bytesToClient
    this.ended.set(route, t)
  }

  /** A rebalance of `upstream` picked `n` connections to close. */
  rebalanced (upstream: string, n: number): void {
    if (n > 0) this.rebalanceCloses.inc({ upstream }, n)
  }

  /** A paced close closed one connection. */
  pacedClose (cause: PacedCause): void {
    this.pacedClosed.inc({ cause })
  }

  /** A proxied HTTP request finished, after `seconds`. */
  httpRequest (route: string, status: number, seconds?: number): void {
    this.httpRequests.inc(route, String(status))
    if (seconds !== undefined) this.httpSeconds.observe(route, seconds)
  }

  /** Where the upstream targets' health is read at scrape time (the current app's pools). */
  watchTargets (targets: () => Iterable<{ upstream: string, target: string, up: boolean, weight?: number }>): void {
    this.targets = targets
  }

  /** Prometheus text exposition. */
  text (): Promise<string> { return this.registry.metrics() }

  get contentType (): string { return this.registry.contentType }
}
