/**
 * Every error the gateway answers with or fails on, each with a stable code, message and HTTP
 * status (as fastify/lib/errors.js does). The JSON body of an error reply is
 * `{ statusCode, code, error, message }`.
 */
import createError from '@fastify/error'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'

export const codes = {
  GW_ERR_CONFIG: createError('GW_ERR_CONFIG', '%s', 500),
  GW_ERR_PLUGIN: createError('GW_ERR_PLUGIN', '%s', 500),
  GW_ERR_INTERNAL: createError('GW_ERR_INTERNAL', '%s', 500),
  /** The client went away before it was answered (nginx's 499); never sent, seen in logs and metrics. */
  GW_ERR_CLIENT_GONE: createError('GW_ERR_CLIENT_GONE', 'the client closed the connection before it was answered', 499),
  GW_ERR_UPSTREAM_UNAVAILABLE: createError('GW_ERR_UPSTREAM_UNAVAILABLE', 'upstream unavailable', 502),
  GW_ERR_UPSTREAM_REJECTED: createError('GW_ERR_UPSTREAM_REJECTED', 'upstream refused the WebSocket handshake with status %s', 502),
  GW_ERR_UPSTREAM_TIMEOUT: createError('GW_ERR_UPSTREAM_TIMEOUT', 'upstream did not answer in time', 504),
  GW_ERR_BODY_TOO_LARGE: createError('GW_ERR_BODY_TOO_LARGE', 'request body larger than the limit of %s bytes', 413),
  GW_ERR_UPGRADE_REQUIRED: createError('GW_ERR_UPGRADE_REQUIRED', 'this route only accepts WebSocket connections', 426),
  GW_ERR_BAD_HANDSHAKE: createError('GW_ERR_BAD_HANDSHAKE', 'invalid WebSocket handshake: %s', 400),
  GW_ERR_BAD_PATH: createError('GW_ERR_BAD_PATH', 'request target refused: %s', 400),
  GW_ERR_BAD_UPGRADE: createError('GW_ERR_BAD_UPGRADE', 'an upgrade request with a body cannot be served', 400),
  GW_ERR_NO_WEBSOCKET: createError('GW_ERR_NO_WEBSOCKET', 'this route does not accept WebSocket connections', 404),
  GW_ERR_NOT_FOUND: createError('GW_ERR_NOT_FOUND', 'Route %s not found', 404),
  GW_ERR_DRAINING: createError('GW_ERR_DRAINING', 'gateway is shutting down', 503),
  GW_ERR_AUTH_REQUIRED: createError('GW_ERR_AUTH_REQUIRED', 'a bearer token is required', 401),
  GW_ERR_AUTH_INVALID: createError('GW_ERR_AUTH_INVALID', 'invalid token: %s', 401),
  GW_ERR_ORIGIN_FORBIDDEN: createError('GW_ERR_ORIGIN_FORBIDDEN', 'origin not allowed', 403),
  GW_ERR_RATE_LIMITED: createError('GW_ERR_RATE_LIMITED', 'rate limit exceeded, retry in %s', 429),
  GW_ERR_TOO_MANY_CONNECTIONS: createError('GW_ERR_TOO_MANY_CONNECTIONS', 'too many open connections (limit %s)', 429),
  GW_ERR_LIMITS_UNAVAILABLE: createError('GW_ERR_LIMITS_UNAVAILABLE', 'rate limits cannot be checked right now', 503),
  GW_ERR_CLUSTER_UNAVAILABLE: createError('GW_ERR_CLUSTER_UNAVAILABLE', 'cluster state (Redis) is unreachable and redis.failOpen is false', 503),
  GW_ERR_AUTHZ_UNAVAILABLE: createError('GW_ERR_AUTHZ_UNAVAILABLE', 'the authorization service could not be asked (%s)', 503),
  GW_ERR_NO_TARGET: createError('GW_ERR_NO_TARGET', 'no healthy upstream target', 502),
  GW_ERR_RELOAD_INVALID: createError('GW_ERR_RELOAD_INVALID', 'reload rejected: %s', 400),
  GW_ERR_RELOAD_UNAVAILABLE: createError('GW_ERR_RELOAD_UNAVAILABLE', 'reload is available when the gateway runs under its own server (npm start / tollgate)', 501),
  GW_ERR_ADMIN_UNAUTHORIZED: createError('GW_ERR_ADMIN_UNAUTHORIZED', 'missing or invalid admin token', 401),
  GW_ERR_CONNECTION_NOT_FOUND: createError('GW_ERR_CONNECTION_NOT_FOUND', 'no open connection with id %s', 404),
  GW_ERR_BAD_CLOSE_CODE: createError('GW_ERR_BAD_CLOSE_CODE', 'close code must be 1000 or 3000-4999, got %s', 400),
  GW_ERR_CLIENT_BUSY: createError('GW_ERR_CLIENT_BUSY', 'connection %s is not reading: more than websocket.highWaterMark waits to be written to it', 503),
  GW_ERR_UPSTREAM_NOT_FOUND: createError('GW_ERR_UPSTREAM_NOT_FOUND', 'no upstream named %s', 404),
  GW_ERR_TARGET_NOT_FOUND: createError('GW_ERR_TARGET_NOT_FOUND', 'upstream %s has no target %s', 404),
  GW_ERR_TARGET_EXISTS: createError('GW_ERR_TARGET_EXISTS', 'upstream %s already has a target %s', 409),
  GW_ERR_BAD_TARGET: createError('GW_ERR_BAD_TARGET', 'invalid target: %s', 400),
  GW_ERR_TOO_MANY_TARGETS: createError('GW_ERR_TOO_MANY_TARGETS', 'upstream %s has %s targets, the most it may have', 409)
} as const

export type ErrorCode = keyof typeof codes

/** A coded gateway error: its code, message and the HTTP status it is answered with. */
export type GatewayError = FastifyError

/** A configuration error (GW_ERR_CONFIG): `path` is the key path (`routes[1].upstream`), or the env var / file that is wrong. */
export class ConfigError extends codes.GW_ERR_CONFIG {
  constructor (readonly path: string, readonly detail: string) {
    super(path === '' ? detail : `${path}: ${detail}`)
    this.name = 'ConfigError'
  }
}

/**
 * A plugin of `config.plugins` that could not be loaded, or that threw while registering
 * (GW_ERR_PLUGIN). The message names it: `plugins[0]: cannot load "./x.js" (ERR_MODULE_NOT_FOUND)`
 * or `plugins[1] "./bad.js": <its error's message>`; `cause` is the plugin's own error, when there is one.
 */
export class PluginLoadError extends codes.GW_ERR_PLUGIN {
  constructor (readonly index: number, readonly plugin: string, message: string, options?: { cause?: unknown }) {
    super(message, ...(options?.cause !== undefined ? [{ cause: options.cause }] : []))
    this.name = 'PluginLoadError'
  }
}

/** Whether `err` is one of the gateway's own coded errors (a GW_ERR_* with its HTTP status). */
export function isGatewayError (err: unknown): err is GatewayError {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && Object.hasOwn(codes, code)
}

/** The JSON body of an error reply, without the stack (expected 4xx/5xx answers are not crashes). */
export function errorBody (err: Error & { code?: string, statusCode?: number }): { statusCode: number, code: string, error: string, message: string } {
  const statusCode = err.statusCode ?? 500
  return { statusCode, code: err.code ?? 'GW_ERR_INTERNAL', error: STATUS_TEXT[statusCode] ?? 'Error', message: err.message }
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 409: 'Conflict', 413: 'Payload Too Large', 426: 'Upgrade Required', 501: 'Not Implemented',
  429: 'Too Many Requests', 499: 'Client Closed Request', 500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout'
}

/**
 * The gateway's error handler: a GW_ERR_* is answered with its own status and body, and logged
 * only by the request's access-log line (these are answers, not crashes). Any other error goes
 * on to the next handler (Fastify's own, which logs it). Call sites throw or send the error,
 * after setting any header that goes with it (`WWW-Authenticate`, `Retry-After`).
 */
export function gatewayErrorHandler (err: FastifyError, _request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (!isGatewayError(err)) throw err
  return reply.code(err.statusCode ?? 500).send(errorBody(err))
}
