/**
 * buildGateway(config): a ready-to-listen Fastify app. It never listens and never reads the
 * process environment; src/gateway/server.ts does both.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify'
import type { SharedState } from './shared-state.js'
import type { ReloadResult } from './types.js'
import { requestId } from '../http/request-id.js'
import { gatewayPlugin } from './plugin.js'
import { ensureResolved } from '../config/resolve.js'
import { accessFields, createLogger, requestChild, toMicros, writeInfoLine } from '../logger.js'
import { gatewayErrorHandler } from '../errors.js'
import { notFoundHandler, tollgateRewriteUrl } from '../../plugins/edge.js'
import { MAX_PARAM_LENGTH, REQUEST_TIMEOUT } from '../config/defaults.js'
import type { GatewayConfigInput } from '../config/schema.js'
import type { GatewayConfig } from '../config/types.js'
import type { Resolve } from '../upstreams/resolver.js'

export interface BuildOptions {
  /** Pino level (default "info"), or false for no logs, or Fastify logger options. */
  logger?: string | false | FastifyServerOptions['logger']
  /** A logger instance to use instead (the runtime shares one across reloads). */
  loggerInstance?: FastifyBaseLogger
  /** State that outlives this app (the runtime's, across reloads); by default the app makes its own. */
  shared?: SharedState
  /** What POST {admin.prefix}/reload calls (the runtime's reload); without it that route answers 501. */
  reload?: () => Promise<ReloadResult>
  /** Folder for relative paths in the config (default: cwd). */
  baseDir?: string
  /**
   * How host names of upstreams with `resolve` are resolved: `(hostname) => addresses`
   * (default: the system resolver, getaddrinfo). For tests and custom service discovery.
   */
  resolve?: Resolve
}

/**
 * Builds the gateway app from a configuration object (the config file's shape).
 * @throws ConfigError when the configuration is invalid.
 */
export async function buildGateway (config: GatewayConfigInput | GatewayConfig, options: BuildOptions = {}): Promise<FastifyInstance> {
  const resolved = ensureResolved(config, options.baseDir)
  const s = resolved.server
  const tokenParam = resolved.auth.queryParam
  const loggerInstance = options.loggerInstance ?? (options.logger === undefined || typeof options.logger === 'string'
    ? createLogger(options.logger ?? 'info', tokenParam) as unknown as FastifyBaseLogger
    : undefined)
  const app = Fastify({
    ...(loggerInstance !== undefined ? { loggerInstance } : { logger: options.logger }),
    trustProxy: s.trustProxy as boolean,
    genReqId: requestId,
    childLoggerFactory,
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    logController: new AccessLog(tokenParam),
    // Long-lived WebSockets are ended by our own drain; idle keep-alive HTTP sockets close at once.
    forceCloseConnections: 'idle',
    // As Node's own servers (the runtime's): a request's head and body arrive within 5 minutes,
    // so a body that trickles in cannot hold an upstream connection for ever.
    requestTimeout: REQUEST_TIMEOUT,
    // The request target is normalised once, before routing (plugins/edge.ts).
    rewriteUrl: tollgateRewriteUrl(s.encodedSlashes),
    ...(s.tls !== undefined ? { https: { cert: s.tls.cert, key: s.tls.key } } : {})
  } as FastifyServerOptions)
  // Fastify's default 404 logs and echoes the full URL, query included: it could carry a token.
  app.setNotFoundHandler(notFoundHandler)
  // Every GW_ERR_* is answered from its own status (src/errors.ts); the root's hooks (the edge) too.
  app.setErrorHandler(gatewayErrorHandler)
  await app.register(gatewayPlugin, { config: resolved, shared: options.shared, reload: options.reload, resolve: options.resolve })
  return app
}

/**
 * Each request's child logger, as Fastify's default makes it, for less: pino is not handed
 * Fastify's empty options object when the route sets no log level or serializers (with options,
 * pino's child() takes its general path), and the gateway's own logger gets its `reqId` child
 * from requestChild (src/logger.ts), without pino's generic binding path (docs/benchmarks.md).
 */
const childLoggerFactory: NonNullable<FastifyServerOptions['childLoggerFactory']> = function (logger, bindings, opts) {
  for (const _ in opts) return logger.child(bindings, opts)
  const reqId = (bindings as { reqId?: unknown }).reqId
  if (typeof reqId === 'string' && onlyReqId(bindings)) return requestChild(logger, reqId) ?? logger.child(bindings)
  return logger.child(bindings)
}

/** Whether `reqId` is the one binding (Fastify's own, unless requestIdLogLabel renames it). */
function onlyReqId (bindings: object): boolean {
  for (const k in bindings) if (k !== 'reqId') return false
  return true
}

/**
 * One access-log line per request, when it completes (method, redacted URL, client, status,
 * time), instead of Fastify's two ("incoming request" and "request completed"): half the log
 * writes on the hot path, and every field in the line that matters.
 */
class AccessLog extends LogController {
  constructor (private readonly tokenParam: string) { super() }

  override incomingRequest (): void {}

  override requestCompleted (error: Error | null, request: FastifyRequest, reply: FastifyReply): void {
    if (this.isLogDisabled(request)) return
    // With tracing on, the line names its trace.
    const traceId = request.traceSpan?.spanContext().traceId
    // In ms, to the microsecond.
    const elapsed = reply.elapsedTime
    if (error !== null && error !== undefined) {
      reply.log.error({ req: request, res: reply, err: error, responseTime: toMicros(elapsed), trace_id: traceId }, 'request errored')
      return
    }
    // The line pino would write for the object below, without its walk over it (src/logger.ts).
    const written = writeInfoLine(reply.log, 'request completed', () => accessFields(request, this.tokenParam, reply.statusCode, elapsed, traceId))
    if (!written) reply.log.info({ req: request, res: reply, responseTime: toMicros(elapsed), trace_id: traceId }, 'request completed')
  }
}
