/**
 * Static routes (`static: ./public`): files served from a folder, as nginx's `root`, behind the
 * route's auth and HTTP limits like any other route.
 *
 * Dotfiles (any path segment starting with `.`: `.env`, `.git/config`) are 404 unless the route
 * says `dotfiles: allow`; a symlink whose real path leaves the real root (a file or a folder on
 * the way) is 404 unless `followSymlinks: true`. Both answer exactly as a missing file does, so
 * neither tells whether the file exists.
 */
import fastifyStatic from '@fastify/static'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { realpath } from 'node:fs/promises'
import { join, normalize, sep } from 'node:path'
import type { RouteConfig } from '../src/config/types.js'

/** What @fastify/send serves for a folder (its default `index`). */
const INDEX = 'index.html'
/** A `..` segment: @fastify/send refuses such a path itself, without touching the disk. */
const UP_PATH = /(?:^|[\\/])\.\.(?:[\\/]|$)/

/** Registers one static route in `scope` (the proxy routes' scope). */
export async function registerStatic (scope: FastifyInstance, route: RouteConfig): Promise<void> {
  const limits = scope.routeLimits(route.rateLimit, route.prefix)
  const root = route.static!
  const inRoot = route.followSymlinks ? null : rootChecker(root)
  // A scope of its own, so the route's auth and HTTP limits guard its files like any route's.
  await scope.register(async function staticScope (inner) {
    // The same order as proxied routes: the HTTP limit counts requests auth will refuse too.
    inner.addHook('onRequest', async (request, reply) => {
      if (route.rateLimit?.keyBy === 'user') await inner.identify(request)
      if (limits !== null && !await limits.http(request, reply)) return
      if (route.auth !== 'none' && (request as { user?: unknown }).user == null) {
        if (!await inner.checkAuth(request, reply, route.auth)) return
      }
      if (route.authorize !== null && !await inner.authorize(request, reply, route.authorize, route.prefix)) return
      if (inRoot !== null && !reply.sent) await refuseOutsideRoot(request, reply, route.prefix, root, inRoot)
    })
    await inner.register(fastifyStatic, {
      root,
      // Without the trailing slash: @fastify/static then serves `${prefix}/*` and, with `redirect`,
      // answers the bare prefix with a 301 to the folder (as nginx does); given `/static/` it would
      // register no redirect and `/static` would be a 404.
      prefix: route.prefix,
      decorateReply: false,
      redirect: true,
      wildcard: true,
      // 'ignore' makes @fastify/send answer a path with a dot segment 404 before it looks at the
      // disk ('deny' would be a 403, which tells the name is special).
      dotfiles: route.dotfiles === 'allow' ? 'allow' : 'ignore'
    })
  })
}

/**
 * A check of real paths against the real root: the root's own real path is looked up once (the
 * folder may be a symlink itself, e.g. a deploy's `current`), again later if it did not exist yet.
 */
function rootChecker (root: string): (realPath: string) => Promise<boolean> {
  let realRoot: Promise<string> | null = null
  return async (realPath) => {
    realRoot ??= realpath(root)
    let r: string
    try {
      r = await realRoot
    } catch {
      realRoot = null
      return false
    }
    return realPath === r || realPath.startsWith(r.endsWith(sep) ? r : r + sep)
  }
}

/**
 * Answers 404 when the file the request names (or, for a folder URL, its index file) resolves to
 * a real path outside the real root, or does not resolve at all. The path is worked out as
 * @fastify/static and @fastify/send will (the raw URL after the prefix, decodeURI, normalised
 * under the root), so the file checked is the file that would be opened. Nothing but a realpath
 * is done (no stat, no open), and every failure is the same 404 as a missing file.
 */
async function refuseOutsideRoot (request: FastifyRequest, reply: FastifyReply, prefix: string, root: string, inRoot: (realPath: string) => Promise<boolean>): Promise<void> {
  const url = request.raw.url ?? '/'
  const q = url.indexOf('?')
  const pathname = q === -1 ? url : url.slice(0, q)
  const rest = prefix === '/' ? pathname : pathname.slice(prefix.length)
  let decoded: string
  try {
    decoded = decodeURI(rest)
  } catch {
    return // @fastify/static answers an undecodable path 404 itself
  }
  const rel = normalize('.' + sep + decoded)
  // @fastify/send refuses these (and a NUL) before any file system access.
  if (UP_PATH.test(rel) || decoded.includes('\0')) return
  const file = join(root, rel)
  const target = decoded.endsWith('/') ? join(file, INDEX) : file
  let real: string | null
  try {
    real = await realpath(target)
  } catch {
    real = null
  }
  // Awaited: the hook chain must not go on to the file handler before the 404 is sent.
  if (real === null || !await inRoot(real)) await reply.callNotFound()
}
