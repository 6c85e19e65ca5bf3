/**
 * The gateway process: environment and config file -> configuration, listen, signals, exit codes.
 * The only module that reads process.env, listens, or exits.
 */
import { randomBytes } from 'node:crypto'
import cluster from 'node:cluster'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import { pino, type DestinationStream } from 'pino'
import type { GatewayRuntime } from './runtime.js'
import { createLogger } from '../logger.js'
import { BatchedLines } from '../log-stream.js'
import type { GatewayConfig } from '../config/types.js'
import type { GatewayConfigInput } from '../config/schema.js'
import { loadConfig } from '../config/load.js'
import { resolveConfig } from '../config/resolve.js'
import type { EchoServer } from './demo.js'
import { ConfigError, PluginLoadError } from '../errors.js'

export interface RunningGateway {
  runtime: GatewayRuntime
  /** The current app generation. */
  readonly app: FastifyInstance
  /** Resolves when the process should exit, with its exit code. */
  stop (signal?: string): Promise<number>
  echo?: EchoServer
}

/** Starts the gateway as `npm start` does. Throws ConfigError on bad configuration. */
export async function start (argv: string[], env: NodeJS.ProcessEnv): Promise<RunningGateway> {
  const first = loadConfig({ argv, env })
  // Loaded here, not at the top: a --workers primary only validates the config and forks, and
  // without Fastify, the plugins and their dependencies it stays about 60 MiB smaller.
  const [{ GatewayRuntime }, { startEchoServer }] = await Promise.all([import('./runtime.js'), import('./demo.js')])
  // Buffered writes: lines go out 4 KiB at a time under load (one syscall for dozens of
  // requests instead of one per line) and at least every 200 ms when it is quiet; what is left
  // is written when the process exits (a SIGKILL loses up to 200 ms of lines).
  // A person at a terminal gets readable lines (as fastify-cli's -P); JSON otherwise, or with LOG_FORMAT=json.
  const pretty = (first.logFormat ?? (process.stdout.isTTY ? 'pretty' : 'json')) === 'pretty'
  let destination: DestinationStream
  if (pretty) {
    destination = (await import('pino-pretty')).default({ destination: 1, sync: true, colorize: process.stdout.isTTY === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' })
  } else {
    const lines = new BatchedLines(pino.destination({ dest: 1, sync: true, minLength: 0 }))
    process.once('exit', () => { try { lines.flushSync() } catch { /* stdout gone */ } })
    destination = lines
  }
  const logger = createLogger(first.logLevel, first.config.auth.queryParam, destination) as unknown as FastifyBaseLogger
  let echo: EchoServer | undefined
  let demoToken: string | undefined
  if (first.demo) {
    echo = await startEchoServer('127.0.0.1', 0)
    if (first.input.admin?.token === undefined) demoToken = randomBytes(18).toString('base64url')
  }
  // Every (re)load reads the file and the environment again; the demo keeps its echo upstream and token.
  const load = async (): Promise<{ config: GatewayConfig, input: GatewayConfigInput }> => {
    const loaded = loadConfig({ argv, env })
    if (!loaded.demo || echo === undefined) return loaded
    const input = { ...loaded.input, routes: [{ prefix: '/echo', upstream: echo.url }] }
    if (demoToken !== undefined) input.admin = { ...input.admin, token: demoToken }
    return { config: resolveConfig(input, { baseDir: process.cwd() }), input }
  }
  let runtime: GatewayRuntime
  try {
    runtime = await GatewayRuntime.create({ load, logger })
  } catch (err) {
    await echo?.close()
    throw err
  }
  let port: number
  try {
    port = (await runtime.listen()).port
  } catch (err) {
    await runtime.close()
    await echo?.close()
    throw err
  }
  const config = runtime.config
  const scheme = config.server.tls !== undefined ? 'https' : 'http'
  const host = config.server.host === '0.0.0.0' || config.server.host === '::' ? 'localhost' : config.server.host
  const base = `${scheme}://${host}:${port}`
  if (first.demo) {
    const ws = base.replace(/^http/, 'ws')
    logger.info('Tollgate demo mode: no config file and no UPSTREAM_URL, so an in-process echo upstream serves /echo')
    logger.info(`demo: HTTP    curl ${base}/echo/hello?name=you`)
    logger.info(`demo: WebSocket  connect a client to ${ws}/echo  (e.g. npx wscat -c ${ws}/echo)`)
    if (demoToken !== undefined) {
      logger.info(`demo: admin token (shown once): ${demoToken}`)
      logger.info(`demo: dashboard  ${base}${config.admin.prefix}/ui  (sign in with the token above)`)
      logger.info(`demo: admin API  curl -H "Authorization: Bearer <the token above>" ${base}${config.admin.prefix}/connections`)
    }
    logger.info('demo: real upstreams: UPSTREAM_URL=http://host:port npm start, or GATEWAY_CONFIG=gateway.yaml npm start (see gateway.example.yaml)')
  } else {
    logger.info({ routes: config.routes.map((r) => r.prefix), url: base }, 'tollgate listening')
  }

  let stopping: Promise<number> | null = null
  const stop = (signal?: string): Promise<number> => {
    stopping ??= (async () => {
      logger.info({ signal }, 'shutting down: draining connections')
      // A hung upstream must not hold the process forever: close() gets the drain timeout plus a margin.
      const hard = runtime.config.server.drainTimeout + 5000
      let timer: NodeJS.Timeout | undefined
      const forced = await Promise.race([
        runtime.close().then(() => false),
        new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(true), hard) })
      ])
      clearTimeout(timer)
      await echo?.close()
      if (forced) logger.warn({ timeoutMs: hard }, 'shutdown did not finish in time; exiting anyway')
      else logger.info('shutdown complete')
      return 0
    })()
    return stopping
  }
  return { runtime, get app () { return runtime.app }, stop, echo }
}

export async function main (argv = process.argv.slice(2), env = process.env): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE)
    return
  }
  let workers: number
  try {
    workers = workerCount(argv, env)
    if (workers > 1 && cluster.isPrimary) {
      // Validate once in the primary, so a bad config fails with one message, not N.
      const loaded = loadConfig({ argv, env })
      runPrimary(workers, loaded.demo && (env.ADMIN_TOKEN ?? '').trim() === '', loaded.config.redis === undefined)
      return
    }
  } catch (err) {
    fail(err)
  }
  let running: RunningGateway
  try {
    running = await start(argv, env)
  } catch (err) {
    fail(err)
  }
  const onSignal = (signal: NodeJS.Signals): void => {
    if (signal !== 'SIGTERM' && signal !== 'SIGINT') return
    process.once(signal, () => process.exit(1))
    void running.stop(signal).then((code) => process.exit(code))
  }
  process.once('SIGTERM', onSignal)
  process.once('SIGINT', onSignal)
  // SIGHUP reloads the configuration (as POST {admin.prefix}/reload does).
  process.on('SIGHUP', () => { void running.runtime.reload() })
}

function fail (err: unknown): never {
  const msg = err instanceof ConfigError ? `invalid configuration: ${err.message}` : `cannot start: ${(err as Error).message}`
  process.stderr.write(`tollgate: ${msg}\n`)
  // A plugin's own error (it threw, or does not parse) follows the line naming the plugin: its stack points into the plugin.
  if (err instanceof PluginLoadError && err.cause instanceof Error && err.cause.stack !== undefined) process.stderr.write(`${err.cause.stack}\n`)
  process.exit(1)
}

/** `--workers N`, `--workers=N` or WORKERS; 1 when absent. */
export function workerCount (argv: string[], env: NodeJS.ProcessEnv): number {
  let raw: string | undefined = env.WORKERS
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--workers') raw = argv[i + 1]
    else if (argv[i].startsWith('--workers=')) raw = argv[i].slice('--workers='.length)
  }
  if (raw === undefined || raw.trim() === '') return 1
  if (!/^\d+$/.test(raw.trim()) || Number(raw) < 1 || Number(raw) > 256) throw new ConfigError('WORKERS', `invalid worker count "${raw}" (an integer from 1 to 256)`)
  return Number(raw)
}

/**
 * node:cluster primary: N workers share the listening port. Each worker is an instance of its
 * own; with Redis they share state like separate machines. Signals go to every worker.
 */
function runPrimary (n: number, demoToken: boolean, noRedis: boolean): void {
  const log = (msg: string): void => { process.stdout.write(`${JSON.stringify({ level: 30, time: Date.now(), pid: process.pid, msg })}\n`) }
  const env: NodeJS.ProcessEnv = {}
  if (demoToken) {
    // One admin token for every worker of the demo, printed once.
    env.ADMIN_TOKEN = randomBytes(18).toString('base64url')
    log(`demo: admin token (shown once, shared by the ${n} workers): ${env.ADMIN_TOKEN}`)
  }
  if (noRedis) log(`${n} workers without redis.url: each worker has its own registry and limits (set REDIS_URL to share them)`)
  log(`starting ${n} workers`)
  let stopping = false
  let failed = false
  for (let i = 0; i < n; i++) cluster.fork(env)
  cluster.on('exit', (worker, code, signal) => {
    if (code !== 0 && code !== null) failed = true
    if (!stopping) {
      log(`worker ${worker.process.pid} exited (${signal ?? code}); stopping the others`)
      stopping = true
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM')
    }
    if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(failed ? 1 : 0)
  })
  const onSignal = (signal: NodeJS.Signals): void => {
    stopping = true
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill(signal)
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
}

const USAGE = `Usage: tollgate [--config PATH] [--workers N]

Starts the Tollgate gateway. Configuration: a config file (--config PATH or GATEWAY_CONFIG,
.json/.yaml/.yml) and environment variables (HOST, PORT, UPSTREAM_URL, JWT_SECRET, JWT_PUBLIC_KEY,
ADMIN_TOKEN, REDIS_URL, LOG_LEVEL, WORKERS). With neither a config file nor UPSTREAM_URL it runs the demo.
--workers N (or WORKERS=N) runs N processes sharing the port (node:cluster); with Redis they share
the registry and limits like separate machines.
`
