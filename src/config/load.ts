/**
 * Reads the configuration the way `npm start` does: built-in defaults < config file < environment.
 * Only src/gateway/server.ts calls this with the real process environment.
 */
import { readFileSync } from 'node:fs'
import { dirname, extname, resolve as resolvePath } from 'node:path'
import { parse as parseYaml, YAMLParseError } from 'yaml'
import { ConfigError } from '../errors.js'
import { resolveConfig } from './resolve.js'
import { DEFAULT_LOG_LEVEL } from './defaults.js'
import type { GatewayConfig } from './types.js'
import type { GatewayConfigInput } from './schema.js'

export interface LoadedConfig {
  config: GatewayConfig
  /** The merged input (file + env) before resolution; what a reload compares against. */
  input: GatewayConfigInput
  /** Absolute path of the config file, when one was used. */
  file?: string
  /** No config file and no UPSTREAM_URL: the caller runs the demo. */
  demo: boolean
  logLevel: string
  /** LOG_FORMAT: `pretty` (human-readable lines) or `json`; undefined: pretty on a terminal, else json. */
  logFormat?: 'pretty' | 'json'
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

/** Reads and parses a .json, .yaml or .yml config file. */
export function readConfigFile (file: string): unknown {
  const ext = extname(file).toLowerCase()
  if (!['.json', '.yaml', '.yml'].includes(ext)) {
    throw new ConfigError('GATEWAY_CONFIG', `unsupported config file type "${ext || file}" (use .json, .yaml or .yml)`)
  }
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new ConfigError('GATEWAY_CONFIG', `cannot read config file ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
  }
  try {
    const parsed: unknown = ext === '.json' ? JSON.parse(text) : parseYaml(text)
    return parsed ?? {}
  } catch (err) {
    const detail = err instanceof YAMLParseError
      ? `invalid YAML at line ${err.linePos?.[0].line ?? '?'}: ${err.message.split('\n')[0]}`
      // V8 quotes the offending text, raw line breaks included; escape them to keep one line.
      : `invalid JSON: ${(err as Error).message.replace(/\r?\n/g, '\\n')}`
    throw new ConfigError(file, detail)
  }
}

/** Finds `--config PATH` / `--config=PATH` in argv. */
export function configPathFromArgv (argv: string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--config' || a === '-c') {
      const v = argv[i + 1]
      if (v === undefined || v.startsWith('-')) throw new ConfigError('--config', 'needs a file path')
      return v
    }
    if (a.startsWith('--config=')) return a.slice('--config='.length)
  }
  return undefined
}

/**
 * Loads the configuration from argv, a config file and environment variables.
 * @throws ConfigError with the key path (or variable name) of the first problem.
 */
export function loadConfig (opts: { argv?: string[], env?: NodeJS.ProcessEnv, cwd?: string } = {}): LoadedConfig {
  const env = opts.env ?? {}
  const cwd = opts.cwd ?? process.cwd()
  const fileArg = configPathFromArgv(opts.argv ?? []) ?? nonEmpty(env.GATEWAY_CONFIG)
  const file = fileArg === undefined ? undefined : resolvePath(cwd, fileArg)

  const fromFile = file === undefined ? {} : readConfigFile(file)
  if (typeof fromFile !== 'object' || fromFile === null || Array.isArray(fromFile)) {
    throw new ConfigError(file ?? '', 'the config file must hold an object at its top level')
  }
  const input = structuredClone(fromFile) as GatewayConfigInput & Record<string, unknown>
  applyEnv(input, env)

  const logLevel = nonEmpty(env.LOG_LEVEL) ?? DEFAULT_LOG_LEVEL
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError('LOG_LEVEL', `invalid level "${logLevel}" (one of ${LOG_LEVELS.join(', ')})`)

  const format = nonEmpty(env.LOG_FORMAT)?.toLowerCase()
  if (format !== undefined && format !== 'pretty' && format !== 'json') throw new ConfigError('LOG_FORMAT', `invalid format "${format}" (pretty or json)`)
  const logFormat = format as LoadedConfig['logFormat']

  const upstreamUrl = nonEmpty(env.UPSTREAM_URL)
  const config = resolveConfig(input, { baseDir: file === undefined ? cwd : dirname(file) })
  return { config, input, file, demo: file === undefined && upstreamUrl === undefined, logLevel, logFormat }
}

function nonEmpty (v: string | undefined): string | undefined {
  return v === undefined || v.trim() === '' ? undefined : v.trim()
}

/** Environment variables win over the file. Only set variables apply. */
function applyEnv (input: GatewayConfigInput, env: NodeJS.ProcessEnv): void {
  const host = nonEmpty(env.HOST)
  const port = nonEmpty(env.PORT)
  if (host !== undefined || port !== undefined) {
    input.server = { ...(isObject(input.server) ? input.server : {}) }
    if (host !== undefined) input.server.host = host
    if (port !== undefined) {
      if (!/^\d+$/.test(port) || Number(port) > 65535) throw new ConfigError('PORT', `invalid port "${port}" (an integer from 0 to 65535)`)
      input.server.port = Number(port)
    }
  }
  const secret = nonEmpty(env.JWT_SECRET)
  const publicKey = nonEmpty(env.JWT_PUBLIC_KEY)
  if (secret !== undefined || publicKey !== undefined) {
    const auth = { ...(isObject(input.auth) ? input.auth : {}) }
    const jwt = { ...(isObject(auth.jwt) ? auth.jwt : {}) }
    // The environment wins over the file's key, whichever kind the file had.
    if (secret !== undefined) { jwt.secret = secret; delete jwt.publicKey; delete jwt.jwksUrl }
    if (publicKey !== undefined) { jwt.publicKey = publicKey; delete jwt.secret; delete jwt.jwksUrl }
    auth.jwt = jwt
    input.auth = auth
  }
  const adminToken = nonEmpty(env.ADMIN_TOKEN)
  if (adminToken !== undefined) input.admin = { ...(isObject(input.admin) ? input.admin : {}), token: adminToken }
  const redisUrl = nonEmpty(env.REDIS_URL)
  if (redisUrl !== undefined) input.redis = { ...(isObject(input.redis) ? input.redis : {}), url: redisUrl }
  // The standard OpenTelemetry variables: the traces URL wins over the base endpoint.
  const otlp = nonEmpty(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) ?? nonEmpty(env.OTEL_EXPORTER_OTLP_ENDPOINT)
  const serviceName = nonEmpty(env.OTEL_SERVICE_NAME)
  if (otlp !== undefined || (serviceName !== undefined && isObject(input.tracing))) {
    const tracing = { ...(isObject(input.tracing) ? input.tracing : {}) }
    if (otlp !== undefined) tracing.otlpEndpoint = otlp
    if (serviceName !== undefined) tracing.serviceName = serviceName
    input.tracing = tracing as GatewayConfigInput['tracing']
  }
  const upstreamUrl = nonEmpty(env.UPSTREAM_URL)
  if (upstreamUrl !== undefined) {
    // Without this check a value such as "localhost:9001" is taken for an upstream name and fails
    // as `routes[N].upstream: unknown upstream`, naming a route the user never wrote.
    if (!/^(https?|wss?):\/\/[^\s/]+/i.test(upstreamUrl)) {
      throw new ConfigError('UPSTREAM_URL', `invalid URL "${upstreamUrl}" (use http://, https://, ws:// or wss://)`)
    }
    // Quick mode: a catch-all route to this URL. A route "/" from the file is pointed at it; others stay.
    const routes = Array.isArray(input.routes) ? input.routes.filter((r) => !(isObject(r) && (r.prefix === '/' || r.prefix === ''))) : []
    routes.push({ prefix: '/', upstream: upstreamUrl })
    input.routes = routes
  }
}

function isObject (v: unknown): v is Record<string, any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}
