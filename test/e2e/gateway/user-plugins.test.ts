/**
 * Custom route plugins (`plugins` in the config): loading by path and by package name, options
 * and prefix, encapsulation, load failures (from buildGateway and from the process), the gateway's
 * decorators used from a plugin (auth, registry push, rate limit, config, logger), the two example
 * plugins end to end, and gatewayPlugin registered in a user's own Fastify app.
 */
import { after, describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { register } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import { buildGateway } from '../../../src/gateway/app.js'
import { gatewayPlugin } from '../../../src/gateway/plugin.js'
import { markResolved } from '../../../src/config/resolve.js'
import { loadConfig } from '../../../src/config/load.js'
import { PluginLoadError } from '../../../src/errors.js'
import type { GatewayConfigInput } from '../../../src/config/schema.js'
import { startGateway, type TestGateway } from '../../helpers/gateway.js'
import { upstreamFor as upstream } from '../../helpers/upstream.js'
import { connect, closed, nextMessage, HandshakeError } from '../../helpers/ws.js'
import { SECRET, now, sign } from '../../helpers/jwt.js'
import type WebSocket from 'ws'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const EXAMPLES = join(ROOT, 'examples', 'plugins')

// The examples import helpers from 'tollgate', as a user's plugin does. Here that name means the
// sources under test (in production it is the installed package, see package.test.ts).
const SRC_INDEX = pathToFileURL(join(ROOT, 'src', 'index.ts')).href
register('data:text/javascript,' + encodeURIComponent(
  `export async function resolve (specifier, context, next) { return next(specifier === 'tollgate' ? ${JSON.stringify(SRC_INDEX)} : specifier, context) }`
))

/** Plugin files and packages for these tests, in a folder of their own (it stands for the config file's folder). */
const FIX = mkdtempSync(join(tmpdir(), 'tollgate-plugins-'))
after(() => rmSync(FIX, { recursive: true, force: true }))

function write (rel: string, text: string): void {
  const file = join(FIX, rel)
  mkdirSync(dirname(file), { recursive: true })
  writeFileSync(file, text)
}

write('package.json', JSON.stringify({ type: 'module' }))
write('hello.js', `export default async function hello (fastify, opts) {
  fastify.get('/hello', async () => ({ options: opts, prefix: fastify.prefix }))
}`)
// What fastify-plugin does, without importing it from a folder that cannot resolve it.
write('wrapped.js', `async function wrapped (fastify) {
  fastify.decorate('wrappedThing', 42)
  fastify.addHook('onRequest', async (request, reply) => { reply.header('x-wrapped', 'yes') })
  fastify.get('/wrapped', async () => ({ thing: fastify.wrappedThing, prefix: fastify.prefix }))
}
wrapped[Symbol.for('skip-override')] = true
wrapped[Symbol.for('plugin-meta')] = { name: 'wrapped', fastify: '5.x', dependencies: ['tollgate-config', 'tollgate-auth', 'tollgate-registry', 'tollgate-rate-limit', 'tollgate-websocket-bridge'] }
export default wrapped`)
write('needs-missing.js', `async function needs (fastify) {}
needs[Symbol.for('skip-override')] = true
needs[Symbol.for('plugin-meta')] = { name: 'needs', dependencies: ['tollgate-nonexistent'] }
export default needs`)
write('node_modules/tollgate-plugin-esm/package.json', JSON.stringify({ name: 'tollgate-plugin-esm', type: 'module', main: 'index.js' }))
write('node_modules/tollgate-plugin-esm/index.js', `export default async function (fastify, opts) {
  fastify.get('/esm', async () => ({ kind: 'esm', options: opts }))
}`)
write('node_modules/tollgate-plugin-cjs/package.json', JSON.stringify({ name: 'tollgate-plugin-cjs', main: 'index.js' }))
write('node_modules/tollgate-plugin-cjs/index.js', `module.exports = async function (fastify, opts) {
  fastify.get('/cjs', async () => ({ kind: 'cjs', options: opts }))
}`)
// Only an `import` condition: require.resolve() cannot see it.
write('node_modules/@acme/tollgate-import-only/package.json', JSON.stringify({
  name: '@acme/tollgate-import-only', type: 'module', exports: { '.': { types: './lib/index.d.ts', import: './lib/index.js' } }
}))
write('node_modules/@acme/tollgate-import-only/lib/index.js', `export default async function (fastify) {
  fastify.get('/import-only', async () => ({ kind: 'import-only' }))
}`)
write('node_modules/tollgate-plugin-broken-dep/package.json', JSON.stringify({ name: 'tollgate-plugin-broken-dep', type: 'module', main: 'index.js' }))
write('node_modules/tollgate-plugin-broken-dep/index.js', `import 'left-pad-that-is-not-installed'
export default async function () {}`)
write('syntax.js', 'export default async function (fastify) {\n  fastify.get(\'/x\', ))\n}\n')
write('not-a-plugin.js', 'export default { hello: 1 }\n')
write('throws.js', `export default async function throws () {
  throw new Error('boom: no database')
}`)
write('child-throws.js', `export default async function (fastify) {
  fastify.register(async function child () { throw new Error('child failed') })
}`)
write('dup.js', `export default async function (fastify) {
  fastify.get('/health', async () => 'mine')
}`)
write('uses.js', `export default async function uses (fastify, opts) {
  fastify.get('/me', { onRequest: fastify.authenticate }, async (request) => ({ sub: request.user.sub, tenant: request.user.tenant }))
  fastify.get('/maybe', { onRequest: fastify.authenticateOptional }, async (request) => ({ sub: request.user?.sub ?? null }))
  fastify.get('/limited', { config: { rateLimit: { max: 2, timeWindow: '1 minute' } } }, async () => ({ ok: true }))
  fastify.get('/connections', async (request) => fastify.connections.search({ route: request.query.route, user: request.query.user }))
  fastify.get('/connections/:id', async (request, reply) => (await fastify.connections.find(request.params.id)) ?? reply.code(404).send())
  fastify.post('/push', async (request) => {
    const { route, user, text } = request.body
    return { delivered: await fastify.connections.broadcast({ route, user }, text, false) }
  })
  fastify.post('/send/:id', async (request, reply) => {
    const ok = await fastify.connections.sendById(request.params.id, Buffer.from(request.body.binary, 'base64'), true)
    return reply.code(ok ? 202 : 404).send({ ok })
  })
  fastify.delete('/connections/:id', async (request, reply) => {
    const ok = await fastify.connections.closeById(request.params.id, 4000, 'bye from plugin')
    return reply.code(ok ? 204 : 404).send()
  })
  fastify.get('/info', async (request) => {
    request.log.info({ tag: opts.tag }, 'plugin says hello')
    return { routes: fastify.gatewayConfig.routes.map((r) => r.prefix), instanceId: fastify.instanceId, tag: opts.tag }
  })
}`)

const token = (claims: Record<string, unknown>): string => sign({ exp: now() + 600, ...claims })
const bearer = (claims: Record<string, unknown>): Record<string, string> => ({ authorization: `Bearer ${token(claims)}` })

async function gateway (t: TestContext, config: GatewayConfigInput, opts: { captureLogs?: boolean, baseDir?: string } = {}): Promise<TestGateway> {
  const gw = await startGateway(config, { baseDir: FIX, ...opts })
  t.after(() => gw.close())
  return gw
}

async function json<T = Record<string, unknown>> (url: string, init: RequestInit = {}): Promise<{ status: number, headers: Headers, body: T }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000), ...init })
  const text = await res.text()
  return { status: res.status, headers: res.headers, body: (text === '' ? null : JSON.parse(text)) as T }
}

const post = (body: unknown, headers: Record<string, string> = {}): RequestInit => ({ method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })

async function client (t: TestContext, url: string, headers: Record<string, string> = {}): Promise<WebSocket> {
  const ws = await connect(url, undefined, { headers })
  t.after(() => ws.terminate())
  return ws
}

/** buildGateway's rejection: a PluginLoadError with this message. */
async function failsWith (config: GatewayConfigInput, message: string | RegExp, baseDir = FIX): Promise<PluginLoadError> {
  let caught: unknown
  try {
    const app = await buildGateway(config, { logger: false, baseDir })
    await app.close()
  } catch (err) {
    caught = err
  }
  assert.ok(caught instanceof PluginLoadError, `expected a PluginLoadError, got ${String(caught)}`)
  assert.equal(caught.code, 'GW_ERR_PLUGIN')
  if (typeof message === 'string') assert.equal(caught.message, message)
  else assert.match(caught.message, message)
  return caught
}

describe('loading', () => {
  test('by path relative to the config file\'s folder, with options and prefix; one file twice is two plugins', async (t) => {
    const file = join(FIX, 'gateway.yaml')
    writeFileSync(file, [
      'server: { host: 127.0.0.1, port: 0 }',
      'plugins:',
      '  - ./hello.js',
      '  - { path: ./hello.js, prefix: /p, options: { greeting: hi, n: 2 } }',
      ''
    ].join('\n'))
    // Loaded from elsewhere: the plugin paths still resolve against the config file's folder.
    const { config } = loadConfig({ argv: ['--config', file], env: {}, cwd: tmpdir() })
    const app = await buildGateway(markResolved(config), { logger: false })
    t.after(() => app.close())
    const plain = await app.inject('/hello')
    assert.equal(plain.statusCode, 200)
    assert.deepEqual(plain.json(), { options: {}, prefix: '' })
    const prefixed = await app.inject('/p/hello')
    assert.deepEqual(prefixed.json(), { options: { greeting: 'hi', n: 2 }, prefix: '/p' })
  })

  test('by absolute path', async (t) => {
    const app = await buildGateway({ plugins: [{ path: join(FIX, 'hello.js'), options: { a: 1 } }] }, { logger: false, baseDir: tmpdir() })
    t.after(() => app.close())
    assert.deepEqual((await app.inject('/hello')).json(), { options: { a: 1 }, prefix: '' })
  })

  test('by package name, resolved from the config\'s folder: ESM, CommonJS, and an `import`-only exports map', async (t) => {
    const app = await buildGateway({
      plugins: [
        { path: 'tollgate-plugin-esm', options: { x: 'y' } },
        { path: 'tollgate-plugin-cjs', prefix: '/c', options: { z: true } },
        '@acme/tollgate-import-only'
      ]
    }, { logger: false, baseDir: FIX })
    t.after(() => app.close())
    assert.deepEqual((await app.inject('/esm')).json(), { kind: 'esm', options: { x: 'y' } })
    assert.deepEqual((await app.inject('/c/cjs')).json(), { kind: 'cjs', options: { z: true } })
    assert.deepEqual((await app.inject('/import-only')).json(), { kind: 'import-only' })
  })

  test('each plugin is encapsulated, even one wrapped with fastify-plugin; it may depend on the gateway\'s plugins by name', async (t) => {
    const up = await upstream(t)
    const gw = await gateway(t, { routes: [{ prefix: '/api', upstream: up.url }], plugins: [{ path: './wrapped.js', prefix: '/w' }, './hello.js'] })
    const mine = await fetch(`${gw.url}/w/wrapped`)
    assert.deepEqual(await mine.json(), { thing: 42, prefix: '/w' })
    assert.equal(mine.headers.get('x-wrapped'), 'yes')
    // Its hook and decorator stay in its own context: not on the gateway's routes, not on the other plugin's.
    for (const path of ['/health', '/api/x', '/hello']) {
      const res = await fetch(`${gw.url}${path}`)
      assert.equal(res.status, 200, path)
      assert.equal(res.headers.get('x-wrapped'), null, path)
    }
    assert.equal(gw.app.hasDecorator('wrappedThing'), false)
  })
})

describe('load failures name the plugin', () => {
  test('a missing file or package', async () => {
    await failsWith({ plugins: ['./nope.js'] }, 'plugins[0]: cannot load "./nope.js" (ERR_MODULE_NOT_FOUND)')
    await failsWith({ plugins: ['./hello.js', { path: 'tollgate-plugin-nope', options: {} }] }, 'plugins[1]: cannot load "tollgate-plugin-nope" (ERR_MODULE_NOT_FOUND)')
    await failsWith({ plugins: ['@acme/nope/sub'] }, 'plugins[0]: cannot load "@acme/nope/sub" (ERR_MODULE_NOT_FOUND)')
  })

  test('a plugin that cannot be imported says why: a dependency it lacks, a syntax error', async () => {
    const dep = await failsWith({ plugins: ['tollgate-plugin-broken-dep'] }, /^plugins\[0\]: cannot load "tollgate-plugin-broken-dep" \(ERR_MODULE_NOT_FOUND: Cannot find package 'left-pad-that-is-not-installed' imported from .*\)$/)
    assert.ok(dep.cause instanceof Error)
    // Node's error alone would not say where.
    await failsWith({ plugins: ['./syntax.js'] }, 'plugins[0]: cannot load "./syntax.js" (SyntaxError: Unexpected token \')\' at ./syntax.js:2)')
  })

  test('a module whose default export is not a plugin', async () => {
    await failsWith({ plugins: ['./not-a-plugin.js'] }, 'plugins[0]: "./not-a-plugin.js" does not export a Fastify plugin (its default export is object, not a function)')
  })

  test('a plugin that throws while registering, directly or from a child plugin, or breaks a Fastify rule', async () => {
    const err = await failsWith({ plugins: ['./hello.js', './throws.js'] }, 'plugins[1] "./throws.js": boom: no database')
    assert.equal((err.cause as Error).message, 'boom: no database')
    assert.equal(err.index, 1)
    assert.equal(err.plugin, './throws.js')
    await failsWith({ plugins: ['./child-throws.js'] }, 'plugins[0] "./child-throws.js": child failed')
    await failsWith({ plugins: ['./dup.js'] }, /^plugins\[0\] "\.\/dup\.js": .*GET.*\/health/)
    await failsWith({ plugins: ['./needs-missing.js'] }, /^plugins\[0\] "\.\/needs-missing\.js": .*tollgate-nonexistent/)
  })

  test('an example plugin that checks its options fails startup with its own message', async () => {
    await failsWith({ auth: { jwt: { secret: SECRET } }, plugins: [join(EXAMPLES, 'tenant-routing.js')] },
      'plugins[0] "./examples/plugins/tenant-routing.js": tenant-routing needs a prefix (e.g. prefix: /tenant)', ROOT)
    await failsWith({ auth: { jwt: { secret: SECRET } }, plugins: [{ path: join(EXAMPLES, 'tenant-routing.js'), prefix: '/t', options: { tenants: { acme: 'acmee' } } }] },
      'plugins[0] "./examples/plugins/tenant-routing.js": tenant-routing: tenants.acme: unknown upstream "acmee"', ROOT)
  })

  describe('the process exits with code 1 and a message naming the plugin', { concurrency: 2 }, () => {
    /** Runs `tollgate --config <file>` (as npm start does) and returns its exit code and stderr. */
    async function run (t: TestContext, plugins: unknown[]): Promise<{ code: number | null, stderr: string }> {
      const dir = mkdtempSync(join(FIX, 'cli-'))
      writeFileSync(join(dir, 'throws.js'), 'export default async function throws () {\n  throw new Error(\'boom: no database\')\n}\n')
      writeFileSync(join(dir, 'gateway.json'), JSON.stringify({ server: { host: '127.0.0.1', port: 0 }, plugins }))
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/gateway/cli.ts', '--config', join(dir, 'gateway.json')], {
        cwd: ROOT,
        env: { PATH: process.env.PATH ?? '' },
        stdio: ['ignore', 'ignore', 'pipe']
      })
      t.after(() => { if (child.exitCode === null) child.kill('SIGKILL') })
      let stderr = ''
      child.stderr!.setEncoding('utf8').on('data', (s: string) => { stderr += s })
      const code = await new Promise<number | null>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`still running after 45 s; stderr: ${stderr}`)), 45_000)
        child.once('exit', (c) => { clearTimeout(timer); resolve(c) })
      })
      return { code, stderr }
    }

    test('a missing file: one line, no stack', async (t) => {
      const { code, stderr } = await run(t, ['./nope.js'])
      assert.equal(code, 1)
      assert.equal(stderr, 'tollgate: cannot start: plugins[0]: cannot load "./nope.js" (ERR_MODULE_NOT_FOUND)\n')
    })

    test('a plugin that throws: the line naming it, then its own stack', async (t) => {
      const { code, stderr } = await run(t, [{ path: './throws.js', options: {} }])
      assert.equal(code, 1)
      const lines = stderr.split('\n')
      assert.equal(lines[0], 'tollgate: cannot start: plugins[0] "./throws.js": boom: no database')
      assert.match(stderr, /at throws \(file:\/\/.*throws\.js:2/)
    })
  })
})

describe('what a plugin can use', () => {
  test('auth hooks and claims, rate limit on its routes, the registry (list, find, push, send, close), config and logger', async (t) => {
    const up = await upstream(t)
    const gw = await gateway(t, {
      auth: { jwt: { secret: SECRET } },
      routes: [{ prefix: '/chat', upstream: up.url, auth: 'required' }, { prefix: '/news', upstream: up.url }],
      plugins: [{ path: './uses.js', prefix: '/x', options: { tag: 'v1' } }]
    }, { captureLogs: true })

    // Auth: the gateway's hooks on the plugin's routes.
    const none = await json(`${gw.url}/x/me`)
    assert.equal(none.status, 401)
    assert.equal(none.headers.get('www-authenticate'), 'Bearer')
    assert.equal((await json(`${gw.url}/x/me`, { headers: { authorization: 'Bearer nope' } })).status, 401)
    assert.deepEqual((await json(`${gw.url}/x/me`, { headers: bearer({ sub: 'alice', tenant: 'acme' }) })).body, { sub: 'alice', tenant: 'acme' })
    assert.deepEqual((await json(`${gw.url}/x/maybe`)).body, { sub: null })
    assert.deepEqual((await json(`${gw.url}/x/maybe`, { headers: bearer({ sub: 'bob' }) })).body, { sub: 'bob' })

    // Rate limit: `config.rateLimit` on the plugin's route.
    assert.equal((await json(`${gw.url}/x/limited`)).status, 200)
    assert.equal((await json(`${gw.url}/x/limited`)).status, 200)
    const limited = await json<{ code: string }>(`${gw.url}/x/limited`)
    assert.equal(limited.status, 429)
    assert.equal(limited.body.code, 'GW_ERR_RATE_LIMITED')
    assert.ok(Number(limited.headers.get('retry-after')) > 0)
    assert.equal(limited.headers.get('x-ratelimit-limit'), '2')
    // The gateway's own routes are not limited by it.
    assert.equal((await json(`${gw.url}/health`)).status, 200)

    // Registry: connections of configured routes, seen and reached from the plugin.
    const alice = await client(t, `${gw.wsUrl}/chat`, bearer({ sub: 'alice' }))
    const alice2 = await client(t, `${gw.wsUrl}/chat/room`, bearer({ sub: 'alice' }))
    const bob = await client(t, `${gw.wsUrl}/chat`, bearer({ sub: 'bob' }))
    const anon = await client(t, `${gw.wsUrl}/news`)
    const list = await json<{ total: number, connections: Array<{ id: string, userId: string | null, route: string }> }>(`${gw.url}/x/connections?route=/chat`)
    assert.equal(list.body.total, 3)
    const aliceList = await json<{ total: number, connections: Array<{ id: string, userId: string | null, path: string }> }>(`${gw.url}/x/connections?user=alice`)
    assert.deepEqual(aliceList.body.connections.map((c) => c.path).sort(), ['/chat', '/chat/room'])
    const bobId = list.body.connections.find((c) => c.userId === 'bob')!.id
    assert.equal((await json<{ userId: string }>(`${gw.url}/x/connections/${bobId}`)).body.userId, 'bob')
    assert.equal((await json(`${gw.url}/x/connections/nope`)).status, 404)

    // Push to every connection of a user (server push), then of a route.
    const gotA = nextMessage(alice)
    const gotA2 = nextMessage(alice2)
    assert.deepEqual((await json(`${gw.url}/x/push`, post({ user: 'alice', text: 'for alice' }))).body, { delivered: 2 })
    assert.equal((await gotA).data.toString(), 'for alice')
    assert.equal((await gotA2).data.toString(), 'for alice')
    const gotNews = nextMessage(anon)
    assert.deepEqual((await json(`${gw.url}/x/push`, post({ route: '/news', text: 'headline' }))).body, { delivered: 1 })
    assert.deepEqual(await gotNews, { data: Buffer.from('headline'), isBinary: false })
    // Bob got neither: the next thing he hears is the echo of what he sends.
    const echo = nextMessage(bob)
    bob.send('ping')
    assert.equal((await echo).data.toString(), 'ping')

    // Send one binary message to one connection, then close it.
    const gotBin = nextMessage(bob)
    assert.equal((await json(`${gw.url}/x/send/${bobId}`, post({ binary: Buffer.from([1, 2, 3]).toString('base64') }))).status, 202)
    assert.deepEqual(await gotBin, { data: Buffer.from([1, 2, 3]), isBinary: true })
    const bobClosed = closed(bob)
    assert.equal((await json(`${gw.url}/x/connections/${bobId}`, { method: 'DELETE' })).status, 204)
    assert.deepEqual(await bobClosed, { code: 4000, reason: 'bye from plugin' })
    assert.equal((await json(`${gw.url}/x/connections/${bobId}`, { method: 'DELETE' })).status, 404)

    // Config and logger.
    const info = await json<{ routes: string[], instanceId: string, tag: string }>(`${gw.url}/x/info`)
    assert.deepEqual(info.body.routes, ['/chat', '/news'])
    assert.equal(info.body.instanceId, gw.app.instanceId)
    assert.equal(info.body.tag, 'v1')
    const line = gw.logs.find((l) => l.msg === 'plugin says hello')
    assert.ok(line !== undefined, 'the plugin logged through the gateway\'s logger')
    assert.equal(line.tag, 'v1')
    assert.equal(typeof line.reqId, 'string')
  })
})

describe('example plugins', () => {
  test('broadcast: authenticated POST /broadcast pushes to every connection of a route', async (t) => {
    const up = await upstream(t)
    const gw = await gateway(t, {
      auth: { jwt: { secret: SECRET } },
      routes: [{ prefix: '/chat', upstream: up.url, auth: 'optional' }, { prefix: '/news', upstream: up.url }],
      plugins: [{ path: join(EXAMPLES, 'broadcast.js'), options: { role: 'ops', rateLimit: { max: 4, timeWindow: '1 minute' } } }]
    }, { captureLogs: true, baseDir: ROOT })
    const alice = await client(t, `${gw.wsUrl}/chat`, bearer({ sub: 'alice' }))
    const bob = await client(t, `${gw.wsUrl}/chat/room`, bearer({ sub: 'bob' }))
    const anon = await client(t, `${gw.wsUrl}/news`)
    const url = `${gw.url}/broadcast`
    const ops = { sub: 'op1', roles: ['ops'] }

    const anonymous = await json<{ code: string }>(url, post({ route: '/chat', text: 'x' }))
    assert.equal(anonymous.status, 401)
    assert.equal(anonymous.body.code, 'GW_ERR_AUTH_REQUIRED')
    assert.equal((await json(url, post({ route: '/chat', text: 'x' }, bearer({ sub: 'alice' })))).status, 403)
    assert.equal((await json(url, post({ route: '/nowhere', text: 'x' }, bearer(ops)))).status, 404)
    assert.equal((await json(url, post({ route: '/chat' }, bearer(ops)))).status, 400)

    const [a, b] = [nextMessage(alice), nextMessage(bob)]
    const sent = await json(url, post({ route: '/chat', text: 'maintenance at 22:00' }, bearer({ sub: 'op2', roles: ['ops'] })))
    assert.equal(sent.status, 202)
    assert.deepEqual(sent.body, { delivered: 2 })
    assert.deepEqual(await a, { data: Buffer.from('maintenance at 22:00'), isBinary: false })
    assert.deepEqual(await b, { data: Buffer.from('maintenance at 22:00'), isBinary: false })
    // The other route's client got nothing: its next message is its own echo.
    const echo = nextMessage(anon)
    anon.send('still here')
    assert.equal((await echo).data.toString(), 'still here')

    const onlyBob = nextMessage(bob)
    assert.deepEqual((await json(url, post({ route: '/chat', user: 'bob', text: 'psst' }, bearer({ sub: 'op2', roles: ['ops'] })))).body, { delivered: 1 })
    assert.equal((await onlyBob).data.toString(), 'psst')
    const log = gw.logs.find((l) => l.msg === 'broadcast sent')
    assert.equal(log?.by, 'op2')

    // Rate limited per caller (op1 made 2 requests above): the 4th within the minute is refused.
    assert.equal((await json(url, post({ route: '/chat', user: 'nobody', text: 'x' }, bearer(ops)))).status, 202)
    assert.equal((await json(url, post({ route: '/chat', user: 'nobody', text: 'x' }, bearer(ops)))).status, 202)
    const limited = await json(url, post({ route: '/chat', user: 'nobody', text: 'x' }, bearer(ops)))
    assert.equal(limited.status, 429)
    // Another caller has its own allowance.
    assert.equal((await json(url, post({ route: '/chat', user: 'nobody', text: 'x' }, bearer({ sub: 'op3', roles: ['ops'] })))).status, 202)
  })

  test('tenant routing: the upstream is chosen by a claim, through the gateway\'s bridge', async (t) => {
    const acme = await upstream(t)
    const globex = await upstream(t)
    const gw = await gateway(t, {
      auth: { jwt: { secret: SECRET }, forwardClaims: { sub: 'x-user-id' } },
      upstreams: { acme: { targets: [acme.url] } },
      admin: { token: 'admin-token-0123456789' },
      plugins: [{
        path: join(EXAMPLES, 'tenant-routing.js'),
        prefix: '/tenant',
        options: { tenants: { acme: 'acme', globex: globex.wsUrl, initech: 'ws://127.0.0.1:1' } }
      }]
    }, { baseDir: ROOT })

    // acme, token in the query: bridged to the acme upstream, path after the prefix, token parameter removed.
    const alice = await client(t, `${gw.wsUrl}/tenant/room?x=1&access_token=${token({ sub: 'alice', tenant: 'acme' })}`, { 'x-tenant': 'globex', 'x-user-id': 'mallory' })
    assert.equal(acme.upgrades.length, 1)
    assert.equal(globex.upgrades.length, 0)
    const seen = acme.upgrades[0]
    assert.equal(seen.url, '/room?x=1')
    assert.equal(seen.headers['x-tenant'], 'acme')
    assert.equal(seen.headers['x-user-id'], 'alice')
    const echoA = nextMessage(alice)
    alice.send('hello acme')
    assert.equal((await echoA).data.toString(), 'hello acme')

    // globex, token in the header, bare prefix: the URL upstream.
    const bob = await client(t, `${gw.wsUrl}/tenant`, bearer({ sub: 'bob', tenant: 'globex' }))
    assert.equal(globex.upgrades.length, 1)
    assert.equal(globex.upgrades[0].url, '/')
    assert.equal(globex.upgrades[0].headers['x-tenant'], 'globex')
    const echoB = nextMessage(bob)
    bob.send(Buffer.from([7, 7]), { binary: true })
    assert.deepEqual(await echoB, { data: Buffer.from([7, 7]), isBinary: true })

    // Listed like any connection, under the plugin's prefix; closed from the admin API like any.
    const list = await json<{ total: number, connections: Array<{ id: string, userId: string, route: string, upstream: string }> }>(
      `${gw.url}/admin/connections?route=/tenant`, { headers: { authorization: 'Bearer admin-token-0123456789' } })
    assert.equal(list.body.total, 2)
    assert.deepEqual(list.body.connections.map((c) => [c.userId, c.upstream]).sort(), [['alice', acme.url], ['bob', globex.wsUrl]])
    const bobClosed = closed(bob)
    const bobId = list.body.connections.find((c) => c.userId === 'bob')!.id
    assert.equal((await fetch(`${gw.url}/admin/connections/${bobId}`, { method: 'DELETE', headers: { authorization: 'Bearer admin-token-0123456789' } })).status, 204)
    assert.equal((await bobClosed).code, 1008)

    // Refusals, each a plain HTTP status before any upgrade and before any upstream is contacted.
    const status = async (headers: Record<string, string>, path = '/tenant'): Promise<number> => {
      try {
        const ws = await connect(`${gw.wsUrl}${path}`, undefined, { headers })
        ws.terminate()
        return 101
      } catch (e) {
        if (e instanceof HandshakeError) return e.status
        throw e
      }
    }
    assert.equal(await status({}), 401)
    assert.equal(await status(bearer({ sub: 'eve', tenant: 'umbrella' })), 403)
    assert.equal(await status(bearer({ sub: 'eve' })), 403)
    assert.equal(acme.upgrades.length + globex.upgrades.length, 2)
    // A tenant whose upstream is down: the bridge's own 502.
    assert.equal(await status(bearer({ sub: 'carl', tenant: 'initech' })), 502)
    // A plain GET is told to upgrade.
    assert.equal((await fetch(`${gw.url}/tenant`, { headers: bearer({ sub: 'bob', tenant: 'globex' }) })).status, 426)
  })
})

describe('library use', () => {
  test('gatewayPlugin in the user\'s own Fastify app behaves as the gateway: routes, relay, decorators, user plugins', async (t) => {
    const up = await upstream(t)
    const app: FastifyInstance = Fastify({ logger: false })
    app.get('/mine', async () => ({ mine: true }))
    await app.register(gatewayPlugin, {
      config: { routes: [{ prefix: '/echo', upstream: up.url }], admin: { token: 'admin-token-0123456789' }, plugins: ['./hello.js'] },
      baseDir: FIX
    })
    await app.listen({ host: '127.0.0.1', port: 0 })
    t.after(() => app.close())
    const port = (app.server.address() as AddressInfo).port
    assert.deepEqual(await (await fetch(`http://127.0.0.1:${port}/mine`)).json(), { mine: true })
    assert.deepEqual(await (await fetch(`http://127.0.0.1:${port}/hello`)).json(), { options: {}, prefix: '' })
    assert.equal((await fetch(`http://127.0.0.1:${port}/health`)).status, 200)
    const echoed = await (await fetch(`http://127.0.0.1:${port}/echo/a?b=1`)).json() as { path: string }
    assert.equal(echoed.path, '/echo/a')
    const ws = await client(t, `ws://127.0.0.1:${port}/echo`)
    const got = nextMessage(ws)
    ws.send('relayed')
    assert.equal((await got).data.toString(), 'relayed')
    // The decorators are the app's own (gatewayPlugin is fastify-plugin wrapped).
    assert.equal(app.connections.size, 1)
    const listed = await fetch(`http://127.0.0.1:${port}/admin/connections`, { headers: { authorization: 'Bearer admin-token-0123456789' } })
    assert.equal(((await listed.json()) as { total: number }).total, 1)
  })
})
