/** Starts a gateway built by buildGateway() on 127.0.0.1:0 for one test. */
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import type { AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import { buildGateway } from '../../src/gateway/app.js'
import type { GatewayConfigInput } from '../../src/config/schema.js'
import type { Resolve } from '../../src/upstreams/resolver.js'

export interface TestGateway {
  app: FastifyInstance
  url: string
  wsUrl: string
  port: number
  /** Base URL of the admin API's server: the public one, or the admin port's when admin.port is set. */
  adminUrl: string
  /** Log lines (parsed JSON) when started with `captureLogs`. */
  logs: Array<Record<string, unknown>>
  /** Raw log text when started with `captureLogs`. */
  logText (): string
  close (): Promise<void>
}

export async function startGateway (config: GatewayConfigInput, opts: { captureLogs?: boolean, level?: string, baseDir?: string, resolve?: Resolve } = {}): Promise<TestGateway> {
  const logs: Array<Record<string, unknown>> = []
  let text = ''
  const stream = new Writable({
    write (chunk: Buffer, _enc, cb) {
      const s = chunk.toString()
      text += s
      for (const line of s.split('\n')) if (line.trim() !== '') logs.push(JSON.parse(line) as Record<string, unknown>)
      cb()
    }
  })
  const { createLogger } = await import('../../src/logger.js')
  // The gateway's own logger (as `npm start` makes it), writing into `logs`.
  const loggerInstance = opts.captureLogs === true
    ? createLogger(opts.level ?? 'info', config.auth?.queryParam ?? 'access_token', stream) as unknown as FastifyBaseLogger
    : undefined
  const app = await buildGateway({ ...config, server: { host: '127.0.0.1', port: 0, ...config.server } }, { ...(loggerInstance !== undefined ? { loggerInstance } : { logger: false }), baseDir: opts.baseDir, resolve: opts.resolve })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const port = (app.server.address() as AddressInfo).port
  const scheme = config.server?.tls !== undefined ? 'https' : 'http'
  let adminUrl = `${scheme}://127.0.0.1:${port}`
  if (app.adminServer !== null) {
    await app.adminServer.listen({ host: '127.0.0.1', port: 0 })
    adminUrl = `http://127.0.0.1:${(app.adminServer.server.address() as AddressInfo).port}`
  }
  let closed = false
  return {
    app,
    url: `${scheme}://127.0.0.1:${port}`,
    wsUrl: `${scheme === 'https' ? 'wss' : 'ws'}://127.0.0.1:${port}`,
    port,
    adminUrl,
    logs,
    logText: () => text,
    close: async () => { if (!closed) { closed = true; await app.close() } }
  }
}

/** startGateway, closed after the test. */
export async function gatewayFor (t: { after: (fn: () => Promise<void>) => void }, config: GatewayConfigInput, opts: Parameters<typeof startGateway>[1] = {}): Promise<TestGateway> {
  const gw = await startGateway(config, opts)
  t.after(() => gw.close())
  return gw
}
