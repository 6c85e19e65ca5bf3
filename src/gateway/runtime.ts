/**
 * The gateway process's servers and app generations. The runtime owns the listening sockets
 * and dispatches each `request` and `upgrade` to the current Fastify app. A reload validates the
 * new configuration, builds and readies the next app without listening, then swaps; the old
 * app keeps its open WebSockets (they relay on their existing upstream sockets) and is closed
 * once it has none left. The listening socket never closes, so a reload refuses nothing.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { Duplex } from 'node:stream'
import type { AddressInfo } from 'node:net'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import { buildGateway } from './app.js'
import type { GatewayConfig } from '../config/types.js'
import type { GatewayConfigInput } from '../config/schema.js'
import { markResolved } from '../config/resolve.js'
import { createShared, type SharedState } from './shared-state.js'
import { CLOSE_SERVICE_RESTART, REASON_SERVICE_RESTART } from '../close-codes.js'
import type { ReloadResult } from './types.js'
import type { PacedClose } from '../drain/paced-close.js'
import { diff, keepRestartOnly, restartOnly } from './reload-diff.js'

export interface RuntimeOptions {
  /** Reads and validates the configuration (file + env); throws ConfigError. */
  load: () => Promise<{ config: GatewayConfig, input: GatewayConfigInput }>
  logger: FastifyBaseLogger
}

interface Generation { app: FastifyInstance, config: GatewayConfig, input: GatewayConfigInput }

export class GatewayRuntime {
  readonly server: Server
  readonly adminServer: Server | null
  private current!: Generation
  private readonly retiring = new Set<Generation>()
  private readonly shared: SharedState
  private reloading: Promise<ReloadResult> | null = null
  private drainTimer: NodeJS.Timeout | null = null
  /** The paced closes of the last reload drain, one per app generation. */
  private reloadPaces: PacedClose[] = []

  private constructor (private readonly opts: RuntimeOptions, first: Generation) {
    const cfg = first.config
    this.shared = createShared(cfg, opts.logger)
    const tls = cfg.server.tls
    this.server = tls !== undefined ? createHttpsServer({ cert: tls.cert, key: tls.key }) : createHttpServer()
    this.server.on('request', (req: IncomingMessage, res: ServerResponse) => this.current.app.server.emit('request', req, res))
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.current.app.server.emit('upgrade', req, socket, head))
    // admin.port moves the admin API and /metrics to a server of their own (even without a token: /metrics).
    this.adminServer = cfg.admin.port > 0 ? createHttpServer() : null
    this.adminServer?.on('request', (req: IncomingMessage, res: ServerResponse) => this.current.app.adminServer?.server.emit('request', req, res))
    this.current = first
  }

  /** Builds the first app generation (not listening yet). */
  static async create (opts: RuntimeOptions): Promise<GatewayRuntime> {
    const { config, input } = await opts.load()
    const rt = new GatewayRuntime(opts, { app: null as unknown as FastifyInstance, config, input })
    rt.current = { app: await rt.build(config), config, input }
    await rt.shared.start()
    return rt
  }

  get app (): FastifyInstance { return this.current.app }
  get config (): GatewayConfig { return this.current.config }

  private async build (config: GatewayConfig): Promise<FastifyInstance> {
    const app = await buildGateway(markResolved(config), { loggerInstance: this.opts.logger, shared: this.shared, reload: () => this.reload() })
    try {
      await app.ready()
    } catch (err) {
      // Hooks that ran before the failure may have started things (health probes, DNS
      // refreshes, the upstream bus subscriber): closing the app stops them.
      await app.close().catch((closeErr: Error) => this.opts.logger.warn({ err: closeErr.message }, 'closing a configuration that failed to start failed'))
      throw err
    }
    return app
  }

  async listen (): Promise<{ port: number, adminPort?: number }> {
    const s = this.current.config.server
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(s.port, s.host, () => { this.server.off('error', reject); resolve() })
    })
    const port = (this.server.address() as AddressInfo).port
    this.opts.logger.info(`Server listening at ${this.current.config.server.tls !== undefined ? 'https' : 'http'}://${s.host}:${port}`)
    if (this.adminServer === null) return { port }
    await new Promise<void>((resolve, reject) => {
      this.adminServer!.once('error', reject)
      this.adminServer!.listen(this.current.config.admin.port, s.host, () => { this.adminServer!.off('error', reject); resolve() })
    })
    return { port, adminPort: (this.adminServer.address() as AddressInfo).port }
  }

  /** Re-reads the configuration and swaps it in; an invalid one changes nothing. One at a time. */
  reload (): Promise<ReloadResult> {
    this.reloading ??= this.doReload().finally(() => { this.reloading = null })
    return this.reloading
  }

  private async doReload (): Promise<ReloadResult> {
    const log = this.opts.logger
    let next: { config: GatewayConfig, input: GatewayConfigInput }
    try {
      next = await this.opts.load()
    } catch (err) {
      log.error({ err: (err as Error).message }, 'reload rejected: the running configuration stays')
      return { ok: false, changed: [], restartRequired: [], error: (err as Error).message }
    }
    const prev = this.current
    const restartRequired = restartOnly(prev.config, next.config)
    if (restartRequired.length > 0) log.warn({ settings: restartRequired }, 'reload: these settings need a restart and keep their old values')
    const config = keepRestartOnly(next.config, prev.config)
    let app: FastifyInstance
    try {
      app = await this.build(config)
    } catch (err) {
      log.error({ err: (err as Error).message }, 'reload rejected: the new configuration failed to start')
      return { ok: false, changed: [], restartRequired, error: (err as Error).message }
    }
    // Renewed certificates are the most common reason to reload.
    if (config.server.tls !== undefined && 'setSecureContext' in this.server) {
      (this.server as unknown as { setSecureContext (o: object): void }).setSecureContext({ cert: config.server.tls.cert, key: config.server.tls.key })
    }
    this.current = { app, config, input: next.input }
    this.retire(prev)
    const changed = diff(prev.input, next.input)
    if (config.server.reloadDrain > 0) this.scheduleDrain(config)
    log.info({ changed, restartRequired }, 'configuration reloaded')
    return { ok: true, changed, restartRequired }
  }

  /**
   * After `reloadDrain`, connections whose route is gone are closed with 1012 so clients
   * reconnect, paced over the new configuration's `server.drainPace`.
   */
  private scheduleDrain (config: GatewayConfig): void {
    if (this.drainTimer !== null) clearTimeout(this.drainTimer)
    const routes = new Set(config.routes.map((r) => r.prefix))
    this.drainTimer = setTimeout(() => {
      this.drainTimer = null
      // A newer reload's drain replaces an older one still pacing (it picks up what is left).
      for (const p of this.reloadPaces) p.cancel()
      let n = 0
      // Each generation's bridge closes its own connections (the registry lists them all), each
      // over the same window: together they stay within the rate bound of their total, plus at
      // most one close a second per generation for the rounding up.
      this.reloadPaces = [this.current, ...this.retiring].map((g) => g.app.websocketBridge.closePaced({
        code: CLOSE_SERVICE_RESTART, reason: REASON_SERVICE_RESTART, cause: 'reload', windowMs: config.server.drainPace, which: (b) => !routes.has(b.info.route)
      }))
      for (const p of this.reloadPaces) n += p.total
      if (n > 0) this.opts.logger.info({ closing: n, windowMs: config.server.drainPace }, 'reload drain: closing connections of removed routes')
    }, config.server.reloadDrain)
    this.drainTimer.unref()
  }

  /**
   * Closes an old generation once its last WebSocket (and handshake) has ended: handshakes still
   * waiting for their upstream finish on the generation they started on.
   */
  private retire (gen: Generation): void {
    this.retiring.add(gen)
    // The new generation applies the cluster's target changes from now on, not both.
    if (gen.app.hasDecorator('upstreamTargets')) gen.app.upstreamTargets.retire()
    void gen.app.websocketBridge.whenIdle().then(async () => {
      // Shutdown may have closed it meanwhile.
      if (!this.retiring.delete(gen)) return
      await gen.app.close()
    }).catch((err: Error) => this.opts.logger.warn({ err: err.message }, 'closing an old configuration failed'))
  }

  /** Graceful stop: no new connections, every generation drained, shared state closed. */
  async close (): Promise<void> {
    if (this.drainTimer !== null) clearTimeout(this.drainTimer)
    // The apps drain first while the listener stays open: meanwhile new requests get 503 (so a
    // load balancer polling /ready sees 503, not a refused connection). Then the listener closes;
    // keep-alive sockets close as soon as their in-flight response is done.
    const generations = [this.current, ...this.retiring]
    this.retiring.clear()
    await Promise.all(generations.map(async (g) => await g.app.close()))
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()))
    const idle = setInterval(() => this.server.closeIdleConnections(), 50)
    this.server.closeIdleConnections()
    this.adminServer?.close()
    this.adminServer?.closeIdleConnections()
    await closed
    clearInterval(idle)
    await this.shared.close()
  }
}
