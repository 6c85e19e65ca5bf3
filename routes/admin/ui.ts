/**
 * The admin dashboard: `{admin.prefix}/ui` and its scripts and style sheet, read from `ui/` once at startup.
 *
 * These routes opt out of the admin token (`config.adminAuth: false`, read by
 * routes/admin/autohooks.ts), because a browser navigation cannot carry a Bearer header: the page
 * and its assets are public and hold no data; every API call the page makes sends the token.
 */
import type { FastifyPluginAsync, FastifyReply } from 'fastify'
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))

/** routes/admin/ under tsx is two levels below the package root; dist/routes/admin/ is three. */
const UI_DIR_CANDIDATES = [join(here, '..', '..', 'ui'), join(here, '..', '..', '..', 'ui')]

/**
 * No inline script or style, nothing from another origin: the page works on a closed network and
 * an injected string cannot run. `form-action 'none'`: the login form is only ever handled by
 * app.js, so a token can never be submitted as a query string.
 */
export const UI_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'"
].join('; ')

interface Asset { body: Buffer, type: string, etag: string }

const ASSET_TYPES: Record<string, string> = { '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' }

/** The folder holding index.html, or null when the package was shipped without it. */
export function findUiDir (candidates: string[] = UI_DIR_CANDIDATES): string | null {
  return candidates.find((dir) => existsSync(join(dir, 'index.html'))) ?? null
}

function asset (body: string, type: string): Asset {
  const buf = Buffer.from(body)
  return { body: buf, type, etag: `"${createHash('sha256').update(buf).digest('base64url').slice(0, 22)}"` }
}

function escapeAttr (s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

const adminUi: FastifyPluginAsync = async (fastify) => {
  const dir = findUiDir()
  if (dir === null) {
    fastify.log.warn({ candidates: UI_DIR_CANDIDATES }, 'admin dashboard disabled: ui/ folder not found')
    return
  }
  // The prefix this plugin was registered with ({admin.prefix}); the page needs it for its asset
  // URLs and API calls, whether it was opened as .../ui or .../ui/.
  const prefix = fastify.prefix
  const read = (name: string): string => readFileSync(join(dir, name), 'utf8')
  const html = asset(read('index.html').replaceAll('%ADMIN_PREFIX%', escapeAttr(prefix)), 'text/html; charset=utf-8')
  // Every script (the page's ES modules) and style sheet in ui/, read once: the dashboard has no
  // build step, and nothing else in that folder is served.
  const assets: Array<[string, Asset]> = [['/ui', html], ['/ui/', html]]
  for (const name of readdirSync(dir).sort()) {
    const type = ASSET_TYPES[name.slice(name.lastIndexOf('.'))]
    if (type !== undefined && /^[a-z0-9-]+\.[a-z]+$/.test(name)) assets.push([`/ui/${name}`, asset(read(name), type)])
  }

  const send = (a: Asset, ifNoneMatch: string | undefined, reply: FastifyReply): FastifyReply => {
    void reply
      .header('content-security-policy', UI_CSP)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('x-frame-options', 'DENY')
      // Revalidate every time (a 304 is cheap): a gateway upgrade must never run a stale app.js.
      .header('cache-control', 'no-cache')
      .header('etag', a.etag)
    if (ifNoneMatch === a.etag) return reply.code(304).send()
    return reply.type(a.type).send(a.body)
  }
  const routeOpts = { schema: { hide: true }, config: { rateLimit: false, adminAuth: false } } as const
  for (const [url, a] of assets) {
    fastify.get(url, routeOpts, async (request, reply) => send(a, request.headers['if-none-match'], reply))
  }
}

export default adminUi
