/**
 * The gateway's own route plugins, autoloaded from routes/, one folder per listener:
 * - routes/public/: the gateway's listener (health, readiness);
 * - routes/ops/: the admin listener (`admin.port`, or the gateway's own), no admin token (/metrics);
 * - routes/admin/: the admin listener under `admin.prefix`, behind routes/admin/autohooks.ts.
 * Every file in a folder is a route plugin; nothing is skipped by name.
 */
import autoload from '@fastify/autoload'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'
import { gatewayErrorHandler } from '../errors.js'

const routesDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'routes')

// @fastify/autoload loads .ts route files only when it detects a TypeScript loader, and it does
// not detect tsx loaded with `--import` (tests, `npm run dev`). When this module runs as
// TypeScript, routes/ is TypeScript too: say so, so no script has to.
if (import.meta.url.endsWith('.ts')) process.env.FASTIFY_AUTOLOAD_TYPESCRIPT ??= '1'

export type RouteFolder = 'public' | 'ops' | 'admin'

/** Registers every route plugin of routes/<folder> on `app`, under `prefix`. */
export async function registerRoutes (app: FastifyInstance, folder: RouteFolder, prefix = ''): Promise<void> {
  // In a scope of their own with the gateway's error handler (also inside a host app that has another).
  await app.register(async function routesScope (scope) {
    scope.setErrorHandler(gatewayErrorHandler)
    await registerFolder(scope, folder, prefix)
  })
}

async function registerFolder (app: FastifyInstance, folder: RouteFolder, prefix: string): Promise<void> {
  await app.register(autoload, {
    dir: join(routesDir, folder),
    // A folder's autohooks.ts (the admin token check) applies to its routes, not to other folders.
    autoHooks: true,
    cascadeHooks: true,
    options: { prefix }
  })
}
