/**
 * The gateway as one Fastify plugin: config, registry, bridge, HTTP proxy and the configured
 * routes, then the autoloaded routes/ (health, admin), then the user's plugins.
 * Users who run their own Fastify app register this plugin with a configuration object.
 */
import fp from 'fastify-plugin'
import autoload from '@fastify/autoload'
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, isAbsolute, join, relative, sep } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import type { FastifyInstance, FastifyPluginAsync, FastifyPluginCallback, FastifyPluginOptions } from 'fastify'
import configPlugin from '../plugins/config.js'
import edgePlugin from '../plugins/edge.js'
import registryPlugin from '../plugins/registry.js'
import websocketBridgePlugin from '../plugins/websocket-bridge.js'
import httpProxyPlugin from '../plugins/http-proxy.js'
import proxyRoutesPlugin from '../plugins/proxy-routes.js'
import metricsPlugin from '../plugins/metrics.js'
import authPlugin from '../plugins/auth.js'
import redisPlugin from '../plugins/redis.js'
import rateLimitPlugin from '../plugins/rate-limit.js'
import adminPlugin from '../plugins/admin.js'
import { resolveConfig } from './config/resolve.js'
import { PluginLoadError } from './errors.js'
import type { GatewayConfigInput } from './config/schema.js'
import type { GatewayConfig } from './config/types.js'
import type { SharedState } from './shared.js'
import type { ReloadResult } from './runtime.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Reloads the configuration (set by the runtime that owns this app); null when unavailable. */
    reloadGateway: (() => Promise<ReloadResult>) | null
  }
}

const here = dirname(fileURLToPath(import.meta.url))

export interface GatewayPluginOptions {
  /** The configuration, as in a config file (validated here), or already resolved. */
  config: GatewayConfigInput | GatewayConfig
  /** Folder for relative paths in `config` (default: cwd). */
  baseDir?: string
  /** State that outlives this app (hot reload); made here when absent. */
  shared?: SharedState
  /** What POST {admin.prefix}/reload calls; without it that route answers 501. */
  reload?: () => Promise<ReloadResult>
}

const kResolved = Symbol.for('tollgate.resolvedConfig')

/** Marks a configuration as resolved so it is not validated twice. */
export function markResolved (config: GatewayConfig): GatewayConfig {
  Object.defineProperty(config, kResolved, { value: true, enumerable: false })
  return config
}

/** Validates `config` unless it is already resolved. */
export function ensureResolved (config: GatewayConfigInput | GatewayConfig, baseDir?: string): GatewayConfig {
  if ((config as Record<symbol, unknown>)[kResolved] === true) return config as GatewayConfig
  return markResolved(resolveConfig(config, { baseDir }))
}

async function gateway (fastify: FastifyInstance, opts: GatewayPluginOptions): Promise<void> {
  const config = ensureResolved(opts.config, opts.baseDir)
  await fastify.register(edgePlugin, { encodedSlashes: config.server.encodedSlashes })
  await fastify.register(configPlugin, { config })
  await fastify.register(redisPlugin, { shared: opts.shared })
  fastify.decorate('reloadGateway', opts.reload ?? null)
  await fastify.register(registryPlugin)
  await fastify.register(metricsPlugin)
  await fastify.register(authPlugin)
  await fastify.register(rateLimitPlugin)
  await fastify.register(websocketBridgePlugin)
  await fastify.register(httpProxyPlugin)
  await fastify.register(proxyRoutesPlugin)
  // routes/admin and routes/metrics are registered by the admin plugin (public or admin port).
  await fastify.register(autoload, { dir: join(here, '..', 'routes'), ignorePattern: /^(admin|metrics\.)/ })
  await fastify.register(adminPlugin)
  await registerUserPlugins(fastify, config)
}

/** The gateway as a Fastify plugin (fastify-plugin wrapped: its decorators are visible to the parent). */
export const gatewayPlugin = fp(gateway, { name: 'tollgate', fastify: '5.x' })

/**
 * A custom route plugin, as listed in `plugins` of the configuration: a plain Fastify plugin that
 * gets its `options` from the config and finds what the gateway offers on `fastify` (decorators
 * `gatewayConfig`, `authenticate`, `connections`, `websocketBridge`...).
 */
export type TollgatePlugin<Options extends FastifyPluginOptions = Record<string, unknown>> = FastifyPluginAsync<Options>

type UserPlugin = FastifyPluginAsync<Record<string, unknown>> | FastifyPluginCallback<Record<string, unknown>>

/**
 * Registers the plugins of `config.plugins` in order, after the gateway's own, each in an
 * encapsulated context of its own (with its `prefix`), even when wrapped with fastify-plugin: a
 * plugin's hooks and decorators never reach the gateway's routes or the other plugins.
 * @throws PluginLoadError naming the plugin when one cannot be loaded or throws while registering.
 */
export async function registerUserPlugins (fastify: FastifyInstance, config: GatewayConfig): Promise<void> {
  for (const [index, entry] of config.plugins.entries()) {
    const name = displayName(entry.path, config.baseDir)
    const plugin = await loadUserPlugin(entry.path, config.baseDir, index, name)
    const scope = async function userPluginScope (instance: FastifyInstance): Promise<void> {
      try {
        // A copy: the configuration stays as it was read, whatever the plugin does with its options.
        await instance.register(plugin as FastifyPluginAsync<Record<string, unknown>>, { ...entry.options })
      } catch (err) {
        throw new PluginLoadError(index, name, `plugins[${index}] "${name}": ${(err as Error)?.message ?? String(err)}`, { cause: err })
      }
    }
    // Shown by fastify.printPlugins() and in avvio's timeout errors.
    Object.defineProperty(scope, Symbol.for('fastify.display-name'), { value: `plugins[${index}] ${name}` })
    await fastify.register(scope, entry.prefix === undefined ? {} : { prefix: entry.prefix })
  }
}

/** How a plugin is named in messages: as written when it is a package, else relative to the config's folder. */
function displayName (path: string, baseDir: string): string {
  if (!isAbsolute(path)) return path
  const rel = relative(baseDir, path)
  return rel === '' || rel.startsWith('..') || isAbsolute(rel) ? path : `.${sep}${rel}`
}

/** Marks the error of a plugin that is not there at all (as opposed to one of its imports). */
const kNotFound = Symbol('tollgate.pluginNotFound')

/** Imports a plugin (an absolute path, or a package name resolved from `baseDir`) and returns its default export. */
async function loadUserPlugin (path: string, baseDir: string, index: number, name: string): Promise<UserPlugin> {
  let mod: Record<string, unknown>
  let file: string | null = null
  try {
    file = resolvePlugin(path, baseDir)
    mod = await (file === null ? importFromHere(path) : import(pathToFileURL(file).href)) as Record<string, unknown>
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    const code = e?.code ?? e?.name ?? 'Error'
    // The plugin itself missing needs no more words.
    if ((e as { [kNotFound]?: boolean })?.[kNotFound] === true) throw new PluginLoadError(index, name, `plugins[${index}]: cannot load "${name}" (${code})`)
    // Node's ESM loader leaves a syntax error's location out of the error: the message gives it.
    const at = e instanceof SyntaxError && file !== null ? syntaxErrorAt(file, baseDir) : null
    if (at !== null) throw new PluginLoadError(index, name, `plugins[${index}]: cannot load "${name}" (${code}: ${firstLine(e.message)} at ${at})`)
    // Anything else (a missing dependency of the plugin, a throw at its top level) keeps its stack, as `cause`.
    throw new PluginLoadError(index, name, `plugins[${index}]: cannot load "${name}" (${code}: ${firstLine(e?.message)})`, { cause: err })
  }
  let plugin = mod.default
  // CommonJS compiled from ESM (`exports.default = plugin`) arrives as { default: { default: plugin } }.
  if (typeof plugin === 'object' && plugin !== null && typeof (plugin as { default?: unknown }).default === 'function') plugin = (plugin as { default: unknown }).default
  if (typeof plugin !== 'function') {
    throw new PluginLoadError(index, name, `plugins[${index}]: "${name}" does not export a Fastify plugin (its default export is ${plugin === null ? 'null' : typeof plugin}, not a function)`)
  }
  return plugin as UserPlugin
}

/**
 * The file of a plugin. Package names resolve as `require` would from a file in `baseDir` (the
 * config file's folder), or, for packages that only export an `import` condition, through their
 * `exports`; null when not found there (then they are imported from where tollgate is installed).
 */
function resolvePlugin (path: string, baseDir: string): string | null {
  if (isAbsolute(path)) {
    if (!existsSync(path)) throw Object.assign(new Error(`Cannot find module '${path}'`), { code: 'ERR_MODULE_NOT_FOUND', [kNotFound]: true })
    return path
  }
  try {
    return createRequire(join(baseDir, 'noop.js')).resolve(path)
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ERR_PACKAGE_PATH_NOT_EXPORTED' ? importEntry(path, baseDir) : null
  }
}

/** Imports a package from tollgate's own location: a global install finds global plugins. */
async function importFromHere (name: string): Promise<unknown> {
  try {
    return await import(name)
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    // Not found from here either: the package is missing (not one of its dependencies).
    if (e?.code === 'ERR_MODULE_NOT_FOUND' && (e.message.includes(`'${name}'`) || e.message.includes(`'${packageName(name)}'`))) Object.assign(e, { [kNotFound]: true })
    throw err
  }
}

/** `./x.js:2` for a file that does not parse, from `node --check` (only run when startup fails anyway). */
function syntaxErrorAt (file: string, baseDir: string): string | null {
  if (!/\.[cm]?js$/.test(file)) return null
  const r = spawnSync(process.execPath, ['--check', file], { encoding: 'utf8', timeout: 10_000 })
  const m = /^(.*):(\d+)$/.exec((r.stderr ?? '').split('\n', 1)[0])
  return m === null ? null : `${displayName(m[1], baseDir)}:${m[2]}`
}

/** `@scope/name/sub` -> `@scope/name`; `name/sub` -> `name`. */
function packageName (spec: string): string {
  const parts = spec.split('/')
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]
}

/** The file a package's `exports` map gives for the `node`/`import`/`default` conditions, found from `baseDir`. */
function importEntry (spec: string, baseDir: string): string | null {
  const pkg = packageName(spec)
  const subpath = spec === pkg ? '.' : `.${spec.slice(pkg.length)}`
  for (let dir = baseDir; ; dir = dirname(dir)) {
    const pkgDir = join(dir, 'node_modules', pkg)
    if (existsSync(join(pkgDir, 'package.json'))) {
      const exp = (JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { exports?: unknown }).exports
      const isMap = typeof exp === 'object' && exp !== null && !Array.isArray(exp) && Object.keys(exp).some((k) => k.startsWith('.'))
      const target = isMap ? conditionTarget((exp as Record<string, unknown>)[subpath]) : subpath === '.' ? conditionTarget(exp) : null
      return target === null ? null : join(pkgDir, target)
    }
    if (dirname(dir) === dir) return null
  }
}

function conditionTarget (x: unknown): string | null {
  if (typeof x === 'string') return x
  if (Array.isArray(x)) return x.map(conditionTarget).find((t) => t !== null) ?? null
  if (typeof x !== 'object' || x === null) return null
  for (const [condition, value] of Object.entries(x)) {
    if (condition !== 'node' && condition !== 'import' && condition !== 'default') continue
    const t = conditionTarget(value)
    if (t !== null) return t
  }
  return null
}

function firstLine (s: string | undefined): string {
  return (s ?? '').split('\n', 1)[0]
}
