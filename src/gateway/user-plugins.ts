/**
 * Loading users' plugins (`plugins` in the configuration) by path or package name, and
 * registering each in a context of its own. Package names resolve from the config file's folder
 * first, then from where tollgate is installed; every failure is a PluginLoadError naming the plugin.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, isAbsolute, join, relative, sep } from 'node:path'
import { pathToFileURL } from 'node:url'
import type { FastifyInstance, FastifyPluginAsync, FastifyPluginCallback, FastifyPluginOptions } from 'fastify'
import { PluginLoadError } from '../errors.js'
import type { GatewayConfig } from '../config/types.js'

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
