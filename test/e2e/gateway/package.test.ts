/**
 * The package as users get it: `npm pack` (which builds dist/), `npm install <tarball>` in another
 * folder, then a user's ESM script imports `buildGateway` and `gatewayPlugin` from 'tollgate',
 * loads the example plugins by path, starts, and relays through both to a WebSocket echo upstream;
 * a user's TypeScript (and the examples' JSDoc) are type-checked against the packed types; the
 * package's bin answers --help.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startUpstream } from '../../helpers/upstream.js'
import { now, sign } from '../../helpers/jwt.js'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
/** Building the package; installing it (what the npm cache lacks is fetched). */
const NPM_MS = 180_000
const RUN_MS = 60_000

interface Run { code: number | null, stdout: string, stderr: string }

/** Runs a command to its end, killing it after `ms`. */
function run (t: TestContext, cmd: string, args: string[], opts: { cwd: string, env?: NodeJS.ProcessEnv, ms: number }): Promise<Run> {
  const started = performance.now()
  const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
  t.after(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s })
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${cmd} ${args.join(' ')}: still running after ${opts.ms} ms\nstdout: ${stdout}\nstderr: ${stderr}`))
    }, opts.ms)
    child.once('error', (err) => { clearTimeout(timer); reject(err) })
    child.once('close', (code) => {
      clearTimeout(timer)
      t.diagnostic(`${cmd === process.execPath ? 'node' : cmd} ${args[0]}: ${Math.round(performance.now() - started)} ms`)
      resolve({ code, stdout, stderr })
    })
  })
}

/** Whether dist/ holds, for every source file, an output at least as new as it. */
function distIsFresh (): boolean {
  for (const dir of ['src', 'plugins', 'routes']) {
    for (const rel of readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' })) {
      if (!rel.endsWith('.ts') || rel.endsWith('.d.ts')) continue
      const source = join(ROOT, dir, rel)
      const out = join(ROOT, 'dist', dir, rel.replace(/\.ts$/, '.js'))
      if (!existsSync(out) || statSync(out).mtimeMs < statSync(source).mtimeMs) return false
    }
  }
  return true
}

/** The environment without what this test runner adds (tsx for routes/, the runner's own channel). */
function cleanEnv (): NodeJS.ProcessEnv {
  const env = { ...process.env }
  delete env.FASTIFY_AUTOLOAD_TYPESCRIPT
  delete env.NODE_TEST_CONTEXT
  delete env.NODE_OPTIONS
  return env
}

function ok (r: Run, what: string): void {
  assert.equal(r.code, 0, `${what} failed (exit ${r.code})\nstdout: ${r.stdout}\nstderr: ${r.stderr}`)
}

const SMOKE = `import { buildGateway, gatewayPlugin, PluginLoadError } from 'tollgate'
import Fastify from 'fastify'
import WebSocket from 'ws'

const [upstream, token, secret] = process.argv.slice(2)
const results = {}

function open (url, headers = {}) {
  const ws = new WebSocket(url, { headers })
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws))
    ws.once('error', reject)
    ws.once('unexpected-response', (_req, res) => reject(new Error('handshake answered ' + res.statusCode)))
  })
}
const next = (ws) => new Promise((resolve) => ws.once('message', (data) => resolve(String(data))))
async function relay (url, text, headers) {
  const ws = await open(url, headers)
  const got = next(ws)
  ws.send(text)
  const answer = await got
  ws.close()
  return answer
}

// buildGateway, with the example plugins loaded by path (they import from 'tollgate' themselves).
const app = await buildGateway({
  auth: { jwt: { secret } },
  upstreams: { acme: { targets: [upstream] } },
  routes: [{ prefix: '/echo', upstream }],
  plugins: [
    './plugins/broadcast.js',
    { path: './plugins/tenant-routing.js', prefix: '/tenant', options: { tenants: { acme: 'acme' } } }
  ]
}, { logger: false })
await app.listen({ host: '127.0.0.1', port: 0 })
const base = '127.0.0.1:' + app.server.address().port
results.relay = await relay('ws://' + base + '/echo', 'hello through the package')
results.tenant = await relay('ws://' + base + '/tenant', 'hello tenant', { authorization: 'Bearer ' + token })
const listener = await open('ws://' + base + '/echo')
const pushed = next(listener)
const res = await fetch('http://' + base + '/broadcast', {
  method: 'POST',
  headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json' },
  body: JSON.stringify({ route: '/echo', text: 'pushed' })
})
results.broadcast = { status: res.status, body: await res.json(), received: await pushed }
listener.close()
await app.close()

// gatewayPlugin in the user's own Fastify app.
const own = Fastify()
own.get('/mine', async () => 'mine')
await own.register(gatewayPlugin, { config: { routes: [{ prefix: '/echo', upstream }] } })
await own.listen({ host: '127.0.0.1', port: 0 })
const ownBase = '127.0.0.1:' + own.server.address().port
results.plugin = await relay('ws://' + ownBase + '/echo', 'hello through the plugin')
results.mine = await (await fetch('http://' + ownBase + '/mine')).text()
await own.close()

// A plugin that is not there: a PluginLoadError naming it.
try {
  await buildGateway({ plugins: ['./nope.js'] }, { logger: false })
} catch (err) {
  results.failure = { isPluginLoadError: err instanceof PluginLoadError, message: err.message }
}
console.log(JSON.stringify(results))
`

// A user's plugin in TypeScript, checked against the packed types; wrong uses must not compile.
const CONSUMER_TS = `import Fastify from 'fastify'
import {
  buildGateway, gatewayPlugin, checkHandshake,
  type TollgatePlugin, type JwtClaims, type BridgeTarget, type ConnectionRegistry, type GatewayConfig
} from 'tollgate'

interface PushOptions { route: string }

export const push: TollgatePlugin<PushOptions> = async (fastify, opts) => {
  const config: GatewayConfig = fastify.gatewayConfig
  fastify.get('/me', { onRequest: fastify.authenticate, config: { rateLimit: { max: 5, timeWindow: '1 minute' } } }, async (request) => {
    const claims: JwtClaims = request.user
    const sub: string | undefined = claims.sub
    return { sub, routes: config.routes.length }
  })
  fastify.post('/push', async () => {
    const registry: ConnectionRegistry = fastify.connections
    const delivered: number = await registry.broadcast({ route: opts.route }, 'hi', false)
    const sent: boolean = await fastify.connections.sendById('id', Buffer.from('x'), true)
    return { delivered, sent }
  })
  fastify.route({
    method: 'GET',
    url: '/ws',
    handler: async () => 'upgrade required',
    onRequest: async (request, reply) => {
      if (request.ws && !checkHandshake(request, reply, fastify.gatewayState.draining, fastify.gatewayConfig.websocket.allowedOrigins)) return
      await fastify.checkAuth(request, reply, 'required')
    },
    preHandler: async (request, reply) => {
      const target: BridgeTarget = { target: 'http://127.0.0.1:9000', path: '/', route: '/ws' }
      await fastify.websocketBridge.connect(request, reply, target)
    },
    wsHandler: (socket, request) => fastify.websocketBridge.attach(socket, request)
  })
  fastify.log.info({ instance: fastify.instanceId }, 'push plugin ready')
}

export const wrong: TollgatePlugin<PushOptions> = async (fastify, opts) => {
  // @ts-expect-error: broadcast takes a filter object
  await fastify.connections.broadcast(opts.route, 'hi', false)
  // @ts-expect-error: no such decorator
  fastify.notADecorator()
  // @ts-expect-error: options are typed
  const n: number = opts.route
  return void n
}

const app = await buildGateway({ routes: [{ prefix: '/x', upstream: 'http://127.0.0.1:9000' }], plugins: ['./push.js'] })
// @ts-expect-error: the config is checked too
await buildGateway({ routes: [{ prefix: '/x', upstrem: 'http://127.0.0.1:9000' }] })
const own = Fastify()
await own.register(gatewayPlugin, { config: { routes: [] }, baseDir: '.' })
await own.register(push, { route: '/x' })
void app
`

test('npm pack, install in another folder, import from JS and TS, start, relay', { timeout: 8 * 60_000 }, async (t) => {
  const npmVersion = spawnSync('npm', ['--version'], { encoding: 'utf8' })
  if (npmVersion.error !== undefined || npmVersion.status !== 0) {
    t.skip(`npm is not available (${npmVersion.error?.message ?? npmVersion.stderr}): the packed-package test needs it`)
    return
  }
  const work = mkdtempSync(join(tmpdir(), 'tollgate-pack-'))
  t.after(() => rmSync(work, { recursive: true, force: true }))

  // The package's dist/: the working tree's when it is a build of the current sources (npm ci and
  // npm run build leave it so), else a build made here, in a copy, leaving the working tree alone.
  // Either way it is packed as `npm pack` does, minus the prepare script (which is that build).
  let packDir = ROOT
  if (!distIsFresh()) {
    packDir = join(work, 'source')
    mkdirSync(packDir)
    for (const name of ['package.json', 'tsconfig.json', 'tsconfig.build.json', 'src', 'plugins', 'routes', 'README.md', 'gateway.example.yaml', '.env.example']) {
      if (existsSync(join(ROOT, name))) cpSync(join(ROOT, name), join(packDir, name), { recursive: true })
    }
    symlinkSync(join(ROOT, 'node_modules'), join(packDir, 'node_modules'), 'dir')
    // Type errors are `npm run typecheck`'s business; this only needs the JavaScript and the declarations.
    ok(await run(t, process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json', '--noCheck'], { cwd: packDir, ms: NPM_MS }), 'the build')
  }
  ok(await run(t, 'npm', ['pack', '--ignore-scripts', '--pack-destination', work], { cwd: packDir, ms: NPM_MS }), 'npm pack')
  const tarball = readdirSync(work).find((f) => /^tollgate-.*\.tgz$/.test(f))
  assert.ok(tarball !== undefined, 'npm pack made a tarball')

  // A user's project: the tarball, and the type packages a TypeScript user has.
  const app = join(work, 'app')
  mkdirSync(join(app, 'plugins'), { recursive: true })
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'tollgate-consumer', private: true, type: 'module' }))
  ok(await run(t, 'npm', ['install', join(work, tarball), '@types/node@20', '@types/ws@8', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: app, ms: NPM_MS }), 'npm install')
  assert.ok(!existsSync(join(app, 'node_modules', 'tollgate', 'src')), 'only dist/ is shipped, not the TypeScript sources')

  for (const f of ['broadcast.js', 'tenant-routing.js']) cpSync(join(ROOT, 'examples', 'plugins', f), join(app, 'plugins', f))
  writeFileSync(join(app, 'smoke.mjs'), SMOKE)
  const up = await startUpstream()
  t.after(() => up.close())
  const secret = 'pack-test-secret'
  const token = sign({ sub: 'alice', tenant: 'acme', exp: now() + 600 }, { key: secret })
  // The user's TypeScript: a plugin, and the examples' JSDoc (// @ts-check), against the packed types.
  writeFileSync(join(app, 'push.ts'), CONSUMER_TS)
  writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: true,
      types: ['node'], allowJs: true, checkJs: true
    },
    include: ['push.ts', 'plugins/*.js']
  }))
  const [smoke, help, tsc] = await Promise.all([
    run(t, process.execPath, ['smoke.mjs', up.url, token, secret], { cwd: app, ms: RUN_MS }),
    // The package's command.
    run(t, process.execPath, [join(app, 'node_modules', '.bin', 'tollgate'), '--help'], { cwd: app, ms: RUN_MS }),
    run(t, process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: app, ms: RUN_MS })
  ])
  ok(smoke, 'the smoke script')
  const results = JSON.parse(smoke.stdout.trim().split('\n').pop()!) as Record<string, unknown>
  assert.deepEqual(results, {
    relay: 'hello through the package',
    tenant: 'hello tenant',
    broadcast: { status: 202, body: { delivered: 1 }, received: 'pushed' },
    plugin: 'hello through the plugin',
    mine: 'mine',
    failure: { isPluginLoadError: true, message: 'plugins[0]: cannot load "./nope.js" (ERR_MODULE_NOT_FOUND)' }
  })
  assert.equal(up.upgrades.length, 4)

  ok(help, 'tollgate --help')
  assert.match(help.stdout, /^Usage: tollgate/)
  ok(tsc, 'tsc against the packed types')
})
