/**
 * Configuration (spec section 3): defaults, validation messages that name the key path, the
 * environment over the file, file loading, demo mode, and the shipped example files.
 */
import { describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { resolveConfig } from '../../../src/config/resolve.js'
import { configPathFromArgv, loadConfig, readConfigFile } from '../../../src/config/load.js'
import * as D from '../../../src/config/defaults.js'
import { ConfigError } from '../../../src/errors.js'

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const PEM = '-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n'

/** A small valid configuration to break one key at a time. */
function base (): Record<string, any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  return {
    upstreams: { chat: { targets: ['http://127.0.0.1:9001', 'http://127.0.0.1:9002'] } },
    routes: [{ prefix: '/chat', upstream: 'chat' }]
  }
}

/** Asserts that `fn` throws a ConfigError whose key path and whole message are the given ones. */
function throwsConfig (fn: () => unknown, path: string, message: string | RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`)
    assert.equal(err.code, 'GW_ERR_CONFIG')
    assert.equal(err.path, path)
    if (typeof message === 'string') assert.equal(err.message, message)
    else assert.match(err.message, message)
    assert.ok(err.message.startsWith(path === '' ? '' : `${path}: `), err.message)
    assert.ok(!err.message.includes('\n'), `one line, no stack: ${err.message}`)
    return true
  })
}

async function tmp (t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tollgate-config-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

async function writeJson (file: string, value: unknown): Promise<string> {
  await mkdir(dirname(file), { recursive: true })
  await writeFile(file, JSON.stringify(value))
  return file
}

describe('defaults', () => {
  test('the exported defaults are the values of spec section 3', () => {
    assert.equal(D.DEFAULT_HOST, '0.0.0.0')
    assert.equal(D.DEFAULT_PORT, 8080)
    assert.equal(D.DEFAULT_DRAIN_TIMEOUT, 10_000)
    assert.equal(D.DEFAULT_RELOAD_DRAIN, 0)
    assert.equal(D.DEFAULT_PROXY_TIMEOUT, 60_000)
    assert.equal(D.DEFAULT_PING_INTERVAL, 30_000)
    assert.equal(D.DEFAULT_PONG_TIMEOUT, 10_000)
    assert.equal(D.DEFAULT_IDLE_TIMEOUT, 0)
    assert.equal(D.DEFAULT_MAX_PAYLOAD, 1024 * 1024)
    assert.equal(D.DEFAULT_CONNECT_TIMEOUT, 10_000)
    assert.equal(D.DEFAULT_HIGH_WATER_MARK, 1024 * 1024)
    assert.equal(D.DEFAULT_ADMIN_PREFIX, '/admin')
    assert.equal(D.DEFAULT_REDIS_KEY_PREFIX, 'gw:')
    assert.deepEqual([...D.DEFAULT_TOKEN_SOURCES], ['header', 'query', 'cookie', 'protocol'])
    assert.equal(D.DEFAULT_QUERY_PARAM, 'access_token')
    assert.equal(D.DEFAULT_COOKIE_NAME, 'access_token')
    assert.deepEqual(D.DEFAULT_JWT_ALGORITHMS_SECRET, ['HS256'])
  })

  test('an empty configuration resolves to the defaults', () => {
    const cfg = resolveConfig({}, { baseDir: '/srv/gw' })
    assert.deepEqual(cfg.server, {
      host: D.DEFAULT_HOST,
      port: D.DEFAULT_PORT,
      trustProxy: false,
      drainTimeout: D.DEFAULT_DRAIN_TIMEOUT,
      reloadDrain: D.DEFAULT_RELOAD_DRAIN,
      drainPace: D.DEFAULT_DRAIN_PACE,
      proxyTimeout: D.DEFAULT_PROXY_TIMEOUT,
      encodedSlashes: 'refuse',
      underscoresInHeaders: false,
      maxBodySize: null
    })
    assert.deepEqual(cfg.websocket, {
      pingInterval: D.DEFAULT_PING_INTERVAL,
      pongTimeout: D.DEFAULT_PONG_TIMEOUT,
      idleTimeout: D.DEFAULT_IDLE_TIMEOUT,
      maxPayload: D.DEFAULT_MAX_PAYLOAD,
      connectTimeout: D.DEFAULT_CONNECT_TIMEOUT,
      highWaterMark: D.DEFAULT_HIGH_WATER_MARK,
      allowedOrigins: [],
      compression: 'passthrough'
    })
    assert.deepEqual(cfg.auth, {
      tokenSources: [...D.DEFAULT_TOKEN_SOURCES],
      queryParam: D.DEFAULT_QUERY_PARAM,
      cookieName: D.DEFAULT_COOKIE_NAME,
      closeOnExpiry: true,
      forwardClaims: {}
    })
    assert.deepEqual(cfg.admin, { token: undefined, prefix: D.DEFAULT_ADMIN_PREFIX, port: 0 })
    assert.deepEqual(cfg.upstreams, {})
    assert.deepEqual(cfg.routes, [])
    assert.equal(cfg.rateLimit, null, 'rate limits are off unless configured')
    assert.equal(cfg.authorize, null, 'external authorization is off unless configured')
    assert.equal(cfg.events, null, 'lifecycle events are off unless configured')
    assert.equal(cfg.eventsQueueSize, D.DEFAULT_EVENTS_QUEUE_SIZE)
    assert.equal(cfg.redis, undefined)
    assert.deepEqual(cfg.metrics, { protected: false })
    assert.deepEqual(cfg.plugins, [])
    assert.equal(cfg.baseDir, '/srv/gw')
  })

  test('baseDir defaults to the working directory', () => {
    assert.equal(resolveConfig({}).baseDir, process.cwd())
  })

  test('the default token sources are a copy, not the exported constant', () => {
    const cfg = resolveConfig({})
    cfg.auth.tokenSources.pop()
    assert.equal(D.DEFAULT_TOKEN_SOURCES.length, 4)
  })

  test('upstream and route defaults', () => {
    const cfg = resolveConfig(base())
    assert.deepEqual(cfg.upstreams.chat, {
      name: 'chat',
      targets: ['http://127.0.0.1:9001', 'http://127.0.0.1:9002'],
      weights: [1, 1],
      resolve: 0,
      autoRebalance: null,
      balance: 'round-robin',
      hashOn: 'ip',
      healthCheck: undefined,
      closeOnUnhealthy: false,
      ca: undefined
    })
    assert.deepEqual(cfg.routes, [{
      index: 0,
      prefix: '/chat',
      upstream: cfg.upstreams.chat,
      static: null,
      rewritePrefix: '/chat',
      websocket: true,
      http: true,
      auth: 'none',
      rateLimit: null,
      headers: {},
      maxBodySize: null,
      dotfiles: 'deny',
      followSymlinks: false,
      rebalance: true,
      authorize: null,
      events: null
    }])
    assert.equal(cfg.routes[0].upstream, cfg.upstreams.chat, 'routes share the upstream object')
  })

  test('health check defaults', () => {
    const input = base()
    input.upstreams.chat.healthCheck = { path: '/healthz' }
    const cfg = resolveConfig(input)
    assert.deepEqual(cfg.upstreams.chat.healthCheck, {
      path: '/healthz',
      interval: D.DEFAULT_HEALTH_INTERVAL,
      timeout: D.DEFAULT_HEALTH_TIMEOUT,
      unhealthyAfter: 2,
      healthyAfter: 1
    })
  })

  test('redis defaults apply once a url is set; without one there is no redis', () => {
    assert.deepEqual(resolveConfig({ redis: { url: 'redis://127.0.0.1:6379' } }).redis, {
      url: 'redis://127.0.0.1:6379', failOpen: true, keyPrefix: D.DEFAULT_REDIS_KEY_PREFIX
    })
    assert.equal(resolveConfig({ redis: { failOpen: false, keyPrefix: 'x:' } }).redis, undefined)
    assert.deepEqual(resolveConfig({ redis: { url: 'rediss://r:6380', failOpen: false, keyPrefix: 'a:' } }).redis, {
      url: 'rediss://r:6380', failOpen: false, keyPrefix: 'a:'
    })
  })

  test('jwt defaults: HS256 for a secret, RS256 for a public key', () => {
    assert.deepEqual(resolveConfig({ auth: { jwt: { secret: 's3cret' } } }).auth.jwt, {
      secret: 's3cret',
      publicKey: undefined,
      jwksUrl: undefined,
      algorithms: D.DEFAULT_JWT_ALGORITHMS_SECRET,
      issuer: undefined,
      audience: undefined,
      clockToleranceSec: 0,
      requiredClaims: []
    })
    const pk = resolveConfig({ auth: { jwt: { publicKey: PEM } } }).auth.jwt
    assert.equal(pk?.publicKey, PEM, 'PEM text is kept as is')
    assert.deepEqual(pk?.algorithms, ['RS256'])
    const full = resolveConfig({
      auth: { jwt: { secret: 's', algorithms: ['HS512'], issuer: 'https://issuer.example', audience: 'my-api', clockToleranceSec: 5 } }
    }).auth.jwt
    assert.deepEqual(full, {
      secret: 's', publicKey: undefined, jwksUrl: undefined, algorithms: ['HS512'], issuer: 'https://issuer.example', audience: 'my-api', clockToleranceSec: 5, requiredClaims: []
    })
  })

  test('units are resolved to milliseconds and bytes', () => {
    const input = base()
    input.server = { drainTimeout: '2s', reloadDrain: '1m', proxyTimeout: 1500 }
    input.websocket = { pingInterval: '15s', pongTimeout: '500ms', idleTimeout: '1h', maxPayload: '64kb', connectTimeout: 2000, highWaterMark: 4096 }
    input.upstreams.chat.healthCheck = { path: '/h', interval: '10s', timeout: '1.5s', unhealthyAfter: 3, healthyAfter: 2 }
    const cfg = resolveConfig(input)
    assert.deepEqual(
      [cfg.server.drainTimeout, cfg.server.reloadDrain, cfg.server.proxyTimeout],
      [2000, 60_000, 1500]
    )
    assert.deepEqual(cfg.websocket, {
      pingInterval: 15_000, pongTimeout: 500, idleTimeout: 3_600_000, maxPayload: 65_536, connectTimeout: 2000, highWaterMark: 4096, allowedOrigins: [], compression: 'passthrough'
    })
    assert.deepEqual(cfg.upstreams.chat.healthCheck, { path: '/h', interval: 10_000, timeout: 1500, unhealthyAfter: 3, healthyAfter: 2 })
  })

  test('values given are kept', () => {
    const cfg = resolveConfig({
      server: { host: '127.0.0.1', port: 0 },
      auth: { tokenSources: ['cookie'], queryParam: 'token', cookieName: 'sid', closeOnExpiry: false, forwardClaims: { sub: 'X-User-Id', role: 'x-role' } },
      websocket: { allowedOrigins: ['https://app.example'] },
      admin: { token: 't0ken-0123456789ab', prefix: '/ops/', port: 9090 },
      metrics: { protected: true }
    })
    assert.equal(cfg.server.host, '127.0.0.1')
    assert.equal(cfg.server.port, 0)
    assert.deepEqual(cfg.auth.tokenSources, ['cookie'])
    assert.equal(cfg.auth.queryParam, 'token')
    assert.equal(cfg.auth.cookieName, 'sid')
    assert.equal(cfg.auth.closeOnExpiry, false)
    assert.deepEqual(cfg.auth.forwardClaims, { sub: 'x-user-id', role: 'x-role' }, 'header names lower-cased')
    assert.deepEqual(cfg.websocket.allowedOrigins, ['https://app.example'])
    assert.deepEqual(cfg.admin, { token: 't0ken-0123456789ab', prefix: '/ops', port: 9090 })
    assert.equal(cfg.metrics.protected, true)
  })

  test('trustProxy accepts a boolean, a hop count, a CIDR string and a list', () => {
    for (const v of [true, false, 2, '10.0.0.0/8', ['127.0.0.1', '10.0.0.0/8']]) {
      assert.deepEqual(resolveConfig({ server: { trustProxy: v } }).server.trustProxy, v)
    }
  })

  test('the input object is not modified', () => {
    const input = base()
    input.routes[0].headers = { 'X-Extra': 'v' }
    const copy = structuredClone(input)
    resolveConfig(input)
    assert.deepEqual(input, copy)
  })
})

describe('validation: every failure names its key path', () => {
  test('the configuration must be an object', () => {
    for (const v of [null, undefined, 42, 'x', [], [{}]]) {
      throwsConfig(() => resolveConfig(v), '', 'configuration must be an object')
    }
  })

  test('unknown keys, top level and nested', () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ ...base(), foo: 1 }, 'foo'],
      [{ server: { foo: 1 } }, 'server.foo'],
      [{ server: { tls: { cert: 'c', key: 'k', ca: 'x' } } }, 'server.tls.ca'],
      [{ websocket: { x: 1 } }, 'websocket.x'],
      [{ auth: { jwt: { secret: 's', expiresIn: 1 } } }, 'auth.jwt.expiresIn'],
      [{ auth: { tokens: [] } }, 'auth.tokens'],
      [{ upstreams: { chat: { targets: ['http://h'], weight: 2 } } }, 'upstreams.chat.weight'],
      [{ upstreams: { chat: { targets: ['http://h'], healthCheck: { path: '/', port: 1 } } } }, 'upstreams.chat.healthCheck.port'],
      [{ routes: [{ prefix: '/a', upstream: 'http://h', bogus: true }] }, 'routes[0].bogus'],
      [{ routes: [{ prefix: '/a', upstream: 'http://h' }, { prefix: '/b', upstream: 'http://h', timeout: 1 }] }, 'routes[1].timeout'],
      [{ routes: [{ prefix: '/a', upstream: 'http://h', rateLimit: { bogus: 1 } }] }, 'routes[0].rateLimit.bogus'],
      [{ rateLimit: { http: { max: 1, window: '1s', burst: 2 } } }, 'rateLimit.http.burst'],
      [{ rateLimit: { messages: { rate: 1, burst: 1, x: 1 } } }, 'rateLimit.messages.x'],
      [{ admin: { user: 'root' } }, 'admin.user'],
      [{ redis: { host: 'h' } }, 'redis.host'],
      [{ metrics: { path: '/m' } }, 'metrics.path'],
      [{ plugins: [{ path: './p.js', name: 'p' }] }, 'plugins[0].name']
    ]
    for (const [input, path] of cases) throwsConfig(() => resolveConfig(input), path, `${path}: unknown key`)
  })

  test('an unknown key whose name is not an identifier is quoted', () => {
    throwsConfig(() => resolveConfig({ server: { 'drain timeout': 1 } }), 'server["drain timeout"]', 'server["drain timeout"]: unknown key')
  })

  test('wrong types', () => {
    const cases: Array<[Record<string, unknown>, string, string]> = [
      [{ server: { port: 'abc' } }, 'server.port', 'must be integer'],
      [{ server: { port: 80.5 } }, 'server.port', 'must be integer'],
      [{ server: { port: 70000 } }, 'server.port', 'must be <= 65535'],
      [{ server: { port: -1 } }, 'server.port', 'must be >= 0'],
      [{ server: { host: '' } }, 'server.host', 'must NOT have fewer than 1 characters'],
      [{ server: { trustProxy: {} } }, 'server.trustProxy', 'invalid value {}'],
      [{ server: { trustProxy: [1] } }, 'server.trustProxy[0]', 'must be string'],
      [{ server: 'x' }, 'server', 'must be object'],
      [{ routes: {} }, 'routes', 'must be array'],
      [{ routes: [{ prefix: '/a', upstream: 'http://h', websocket: 'yes' }] }, 'routes[0].websocket', 'must be boolean'],
      [{ routes: [{ prefix: '/a', upstream: 'http://h', auth: 'maybe' }] }, 'routes[0].auth', 'invalid value "maybe"'],
      [{ routes: [{ prefix: '/a', upstream: 'http://h', headers: { 'x-a': 1 } }] }, 'routes[0].headers.x-a', 'must be string'],
      [{ routes: [{ prefix: '/a', upstream: 'http://h', rateLimit: true }] }, 'routes[0].rateLimit', 'invalid value true'],
      [{ routes: [{ prefix: '/a', upstream: 'http://h', rateLimit: { http: { max: 0, window: '1m' } } }] }, 'routes[0].rateLimit.http.max', 'must be >= 1'],
      [{ routes: [{ prefix: 'chat', upstream: 'http://h' }] }, 'routes[0].prefix', 'invalid path prefix starting with / "chat"'],
      [{ routes: [{ upstream: 'http://h' }] }, 'routes[0].prefix', 'is required'],
      [{ upstreams: { chat: {} } }, 'upstreams.chat.targets', 'is required'],
      [{ upstreams: { chat: { targets: [] } } }, 'upstreams.chat.targets', 'must NOT have fewer than 1 items'],
      [{ upstreams: { chat: { targets: 'http://h' } } }, 'upstreams.chat.targets', 'must be array'],
      [{ upstreams: { chat: { targets: ['http://h'], balance: 'random' } } }, 'upstreams.chat.balance', 'invalid value "random"'],
      [{ upstreams: { chat: { targets: ['http://h'], balance: 'hash', hashOn: 'header:' } } }, 'upstreams.chat.hashOn', 'invalid value "header:"'],
      [{ upstreams: { chat: { targets: ['http://h'], healthCheck: { path: 'healthz' } } } }, 'upstreams.chat.healthCheck.path', 'invalid value "healthz"'],
      [{ auth: { tokenSources: ['header', 'body'] } }, 'auth.tokenSources[1]', 'invalid value "body"'],
      [{ auth: { jwt: { secret: 's', algorithms: [] } } }, 'auth.jwt.algorithms', 'must NOT have fewer than 1 items'],
      [{ auth: { closeOnExpiry: 'yes' } }, 'auth.closeOnExpiry', 'must be boolean'],
      [{ rateLimit: { keyBy: 'header' } }, 'rateLimit.keyBy', 'invalid value "header"'],
      [{ rateLimit: { concurrent: 0 } }, 'rateLimit.concurrent', 'must be >= 1'],
      [{ rateLimit: { messages: { rate: 0, burst: 1 } } }, 'rateLimit.messages.rate', 'must be > 0'],
      [{ websocket: { allowedOrigins: 'https://a' } }, 'websocket.allowedOrigins', 'must be array'],
      [{ admin: { prefix: 'admin' } }, 'admin.prefix', 'invalid value "admin"'],
      [{ admin: { port: 65536 } }, 'admin.port', 'must be <= 65535'],
      [{ redis: { url: 'localhost:6379' } }, 'redis.url', 'invalid value "localhost:6379"'],
      [{ metrics: { protected: 1 } }, 'metrics.protected', 'must be boolean'],
      [{ plugins: './p.js' }, 'plugins', 'must be array'],
      [{ plugins: [5] }, 'plugins[0]', 'invalid value 5']
    ]
    for (const [input, path, detail] of cases) throwsConfig(() => resolveConfig(input), path, `${path}: ${detail}`)
  })

  test('bad durations', () => {
    const hint = '(use milliseconds or a string such as "500ms", "30s", "5m", "1h")'
    const cases: Array<[Record<string, unknown>, string, unknown]> = [
      [{ websocket: { pingInterval: '30 sec' } }, 'websocket.pingInterval', '30 sec'],
      [{ websocket: { idleTimeout: '1d' } }, 'websocket.idleTimeout', '1d'],
      [{ websocket: { connectTimeout: true } }, 'websocket.connectTimeout', true],
      [{ server: { drainTimeout: -1 } }, 'server.drainTimeout', -1],
      [{ server: { reloadDrain: '10' } }, 'server.reloadDrain', '10'],
      [{ server: { proxyTimeout: '1m30s' } }, 'server.proxyTimeout', '1m30s'],
      [{ upstreams: { chat: { targets: ['http://h'], healthCheck: { path: '/', interval: '5x' } } } }, 'upstreams.chat.healthCheck.interval', '5x'],
      [{ rateLimit: { http: { max: 1, window: '1w' } } }, 'rateLimit.http.window', '1w'],
      [{ routes: [{ prefix: '/a', upstream: 'http://h', rateLimit: { handshake: { max: 1, window: 'soon' } } }] }, 'routes[0].rateLimit.handshake.window', 'soon']
    ]
    for (const [input, path, value] of cases) {
      throwsConfig(() => resolveConfig(input), path, `${path}: invalid duration ${JSON.stringify(value)} ${hint}`)
    }
  })

  test('bad sizes', () => {
    const hint = '(use bytes or a string such as "64kb", "1mb")'
    const cases: Array<[Record<string, unknown>, string, unknown]> = [
      [{ websocket: { maxPayload: '1tb' } }, 'websocket.maxPayload', '1tb'],
      [{ websocket: { maxPayload: '64k' } }, 'websocket.maxPayload', '64k'],
      [{ websocket: { maxPayload: 1.5 } }, 'websocket.maxPayload', 1.5],
      [{ websocket: { highWaterMark: -1 } }, 'websocket.highWaterMark', -1],
      [{ websocket: { highWaterMark: '1 megabyte' } }, 'websocket.highWaterMark', '1 megabyte']
    ]
    for (const [input, path, value] of cases) {
      throwsConfig(() => resolveConfig(input), path, `${path}: invalid size ${JSON.stringify(value)} ${hint}`)
    }
  })

  test('timers and maxPayload that must not be zero', () => {
    for (const key of ['pingInterval', 'pongTimeout', 'connectTimeout', 'maxPayload']) {
      for (const v of [0, key === 'maxPayload' ? '0kb' : '0s']) {
        throwsConfig(() => resolveConfig({ websocket: { [key]: v } }), `websocket.${key}`, `websocket.${key}: must be greater than 0`)
      }
    }
    // 0 means "off" for these.
    const cfg = resolveConfig({ websocket: { idleTimeout: 0 }, server: { reloadDrain: '0s', drainTimeout: 0 } })
    assert.equal(cfg.websocket.idleTimeout, 0)
    assert.equal(cfg.server.reloadDrain, 0)
    assert.equal(cfg.server.drainTimeout, 0)
  })

  test('unknown upstream name', () => {
    const input = base()
    input.routes.push({ prefix: '/chatroom', upstream: 'chatt' })
    throwsConfig(() => resolveConfig(input), 'routes[1].upstream', 'routes[1].upstream: unknown upstream "chatt"')
    // A host:port without a scheme is a name, not a URL.
    throwsConfig(() => resolveConfig({ routes: [{ prefix: '/', upstream: '127.0.0.1:9001' }] }), 'routes[0].upstream', 'routes[0].upstream: unknown upstream "127.0.0.1:9001"')
  })

  test('a route with neither upstream nor static', () => {
    throwsConfig(() => resolveConfig({ ...base(), routes: [{ prefix: '/chat' }] }), 'routes[0].upstream', 'routes[0].upstream: is required (a name from upstreams, or a URL)')
  })

  test('a route with both upstream and static', () => {
    throwsConfig(
      () => resolveConfig({ ...base(), routes: [{ prefix: '/chat', upstream: 'chat', static: './public' }] }),
      'routes[0].static', 'routes[0].static: a route has either upstream or static, not both'
    )
  })

  test('a static route cannot take WebSockets, nor turn off HTTP', () => {
    throwsConfig(
      () => resolveConfig({ routes: [{ prefix: '/s', static: './public', websocket: true }] }),
      'routes[0].websocket', 'routes[0].websocket: a static route cannot serve WebSockets'
    )
    throwsConfig(
      () => resolveConfig({ routes: [{ prefix: '/s', static: './public', http: false }] }),
      'routes[0]', 'routes[0]: route serves neither HTTP nor WebSocket (websocket and http are both false)'
    )
  })

  test('duplicate prefixes, also after normalisation', () => {
    const input = base()
    input.routes.push({ prefix: '/chat', upstream: 'http://127.0.0.1:9003' })
    throwsConfig(() => resolveConfig(input), 'routes[1].prefix', 'routes[1].prefix: duplicate prefix "/chat" (also routes[0])')
    throwsConfig(
      () => resolveConfig({ ...base(), routes: [{ prefix: '/a', upstream: 'chat' }, { prefix: '/chat', upstream: 'chat' }, { prefix: '/chat//', static: './x' }] }),
      'routes[2].prefix', 'routes[2].prefix: duplicate prefix "/chat" (also routes[1])'
    )
    throwsConfig(
      () => resolveConfig({ routes: [{ prefix: '/', upstream: 'http://h' }, { prefix: '//', upstream: 'http://h' }] }),
      'routes[1].prefix', 'routes[1].prefix: duplicate prefix "/" (also routes[0])'
    )
  })

  test('target URLs: scheme, query, fragment', () => {
    throwsConfig(() => resolveConfig({ upstreams: { chat: { targets: ['ftp://127.0.0.1'] } } }), 'upstreams.chat.targets[0]', 'upstreams.chat.targets[0]: invalid URL "ftp://127.0.0.1"')
    throwsConfig(() => resolveConfig({ upstreams: { chat: { targets: ['http://h', '127.0.0.1:9001'] } } }), 'upstreams.chat.targets[1]', 'upstreams.chat.targets[1]: invalid URL "127.0.0.1:9001"')
    throwsConfig(() => resolveConfig({ upstreams: { chat: { targets: ['http://h/?a=1'] } } }), 'upstreams.chat.targets[0]', 'upstreams.chat.targets[0]: a target URL cannot have a query or fragment')
    throwsConfig(() => resolveConfig({ upstreams: { chat: { targets: ['http://h/#x'] } } }), 'upstreams.chat.targets[0]', 'upstreams.chat.targets[0]: a target URL cannot have a query or fragment')
    throwsConfig(() => resolveConfig({ upstreams: { chat: { targets: ['http://bad host'] } } }), 'upstreams.chat.targets[0]', 'upstreams.chat.targets[0]: invalid URL "http://bad host"')
    throwsConfig(() => resolveConfig({ routes: [{ prefix: '/', upstream: 'ftp://127.0.0.1' }] }), 'routes[0].upstream', 'routes[0].upstream: unsupported scheme "ftp:" (use http, https, ws or wss)')
    throwsConfig(() => resolveConfig({ routes: [{ prefix: '/', upstream: 'http://h?x=1' }] }), 'routes[0].upstream', 'routes[0].upstream: a target URL cannot have a query or fragment')
  })

  test('hashOn without balance "hash"', () => {
    for (const balance of [undefined, 'round-robin', 'least-connections', 'ip-hash']) {
      throwsConfig(
        () => resolveConfig({ upstreams: { chat: { targets: ['http://h'], balance, hashOn: 'user' } } }),
        'upstreams.chat.hashOn', 'upstreams.chat.hashOn: only applies when balance is "hash"'
      )
    }
    for (const hashOn of ['ip', 'user', 'header:x-tenant', 'cookie:sid']) {
      const cfg = resolveConfig({ upstreams: { chat: { targets: ['http://h'], balance: 'hash', hashOn } } })
      assert.equal(cfg.upstreams.chat.balance, 'hash')
      assert.equal(cfg.upstreams.chat.hashOn, hashOn)
    }
    assert.equal(resolveConfig({ upstreams: { chat: { targets: ['http://h'], balance: 'hash' } } }).upstreams.chat.hashOn, 'ip')
  })

  test('websocket and http both false', () => {
    throwsConfig(
      () => resolveConfig({ ...base(), routes: [{ prefix: '/chat', upstream: 'chat', websocket: false, http: false }] }),
      'routes[0]', 'routes[0]: route serves neither HTTP nor WebSocket (websocket and http are both false)'
    )
    const cfg = resolveConfig({ ...base(), routes: [{ prefix: '/a', upstream: 'chat', websocket: false }, { prefix: '/b', upstream: 'chat', http: false }] })
    assert.deepEqual(cfg.routes.map((r) => [r.websocket, r.http]), [[false, true], [true, false]])
  })

  test('jwt without a secret or a public key', () => {
    throwsConfig(() => resolveConfig({ auth: { jwt: {} } }), 'auth.jwt', 'auth.jwt: needs a secret, a publicKey or a jwksUrl')
    throwsConfig(() => resolveConfig({ auth: { jwt: { algorithms: ['HS256'], issuer: 'i' } } }), 'auth.jwt', 'auth.jwt: needs a secret, a publicKey or a jwksUrl')
  })

  test('jwt public key: a missing file names auth.jwt.publicKey', async (t) => {
    const dir = await tmp(t)
    throwsConfig(
      () => resolveConfig({ auth: { jwt: { publicKey: './nope.pem' } } }, { baseDir: dir }),
      'auth.jwt.publicKey', `auth.jwt.publicKey: cannot read ${join(dir, 'nope.pem')} (ENOENT)`
    )
    await writeFile(join(dir, 'pub.pem'), PEM)
    assert.equal(resolveConfig({ auth: { jwt: { publicKey: './pub.pem' } } }, { baseDir: dir }).auth.jwt?.publicKey, PEM)
  })

  test('tls: missing files name server.tls.cert, then server.tls.key', async (t) => {
    const dir = await tmp(t)
    const input = { server: { tls: { cert: './cert.pem', key: './key.pem' } } }
    throwsConfig(() => resolveConfig(input, { baseDir: dir }), 'server.tls.cert', `server.tls.cert: cannot read ${join(dir, 'cert.pem')} (ENOENT)`)
    await writeFile(join(dir, 'cert.pem'), 'CERT')
    throwsConfig(() => resolveConfig(input, { baseDir: dir }), 'server.tls.key', `server.tls.key: cannot read ${join(dir, 'key.pem')} (ENOENT)`)
    await writeFile(join(dir, 'key.pem'), 'KEY')
    assert.deepEqual(resolveConfig(input, { baseDir: dir }).server.tls, {
      cert: 'CERT', key: 'KEY', certPath: join(dir, 'cert.pem'), keyPath: join(dir, 'key.pem')
    })
    throwsConfig(() => resolveConfig({ server: { tls: { cert: './cert.pem' } } }, { baseDir: dir }), 'server.tls.key', 'server.tls.key: is required')
  })

  test('tls: a folder instead of a file', async (t) => {
    const dir = await tmp(t)
    throwsConfig(
      () => resolveConfig({ server: { tls: { cert: dir, key: dir } } }),
      'server.tls.cert', `server.tls.cert: cannot read ${dir} (EISDIR)`
    )
  })

  test('upstream ca: PEM text, a file, or a missing file', async (t) => {
    const dir = await tmp(t)
    const withCa = (ca: string): Record<string, unknown> => ({ upstreams: { chat: { targets: ['https://h'], ca } } })
    assert.equal(resolveConfig(withCa(PEM)).upstreams.chat.ca, PEM)
    await writeFile(join(dir, 'ca.pem'), PEM)
    assert.equal(resolveConfig(withCa('./ca.pem'), { baseDir: dir }).upstreams.chat.ca, PEM)
    assert.equal(resolveConfig(withCa(join(dir, 'ca.pem'))).upstreams.chat.ca, PEM)
    throwsConfig(() => resolveConfig(withCa('./none.pem'), { baseDir: dir }), 'upstreams.chat.ca', `upstreams.chat.ca: cannot read ${join(dir, 'none.pem')} (ENOENT)`)
  })

  test('admin.prefix "/" is refused', () => {
    throwsConfig(() => resolveConfig({ admin: { prefix: '/' } }), 'admin.prefix', 'admin.prefix: must not be "/"')
    throwsConfig(() => resolveConfig({ admin: { prefix: '///' } }), 'admin.prefix', 'admin.prefix: must not be "/"')
    assert.equal(resolveConfig({ admin: { prefix: '/ops/' } }).admin.prefix, '/ops')
  })

  test('an unknown key inside a union reports the key, not the union', () => {
    // rateLimit is `{...} | false`: the object branch's own error says more than "invalid value".
    throwsConfig(
      () => resolveConfig({ routes: [{ prefix: '/a', upstream: 'http://h', rateLimit: { http: { max: 1, window: '1s', per: 'ip' } } }] }),
      'routes[0].rateLimit.http.per', 'routes[0].rateLimit.http.per: unknown key'
    )
    throwsConfig(
      () => resolveConfig({ plugins: ['./a.js', { path: './b.js', opts: {} }] }),
      'plugins[1].opts', 'plugins[1].opts: unknown key'
    )
  })
})

describe('routes', () => {
  test('upstream as a URL: ws:// and wss:// become http:// and https://', () => {
    const cfg = resolveConfig({
      routes: [
        { prefix: '/a', upstream: 'ws://127.0.0.1:9001/' },
        { prefix: '/b', upstream: 'wss://echo.example/base/' },
        { prefix: '/c', upstream: 'HTTP://Example.COM:80/x' },
        { prefix: '/d', upstream: 'https://api.example:8443' }
      ]
    })
    assert.deepEqual(cfg.routes[0].upstream, {
      name: 'ws://127.0.0.1:9001/', targets: ['http://127.0.0.1:9001'], weights: [1], resolve: 0, autoRebalance: null, balance: 'round-robin', hashOn: 'ip', closeOnUnhealthy: false
    })
    assert.deepEqual(cfg.routes.map((r) => r.upstream?.targets), [
      ['http://127.0.0.1:9001'], ['https://echo.example/base'], ['http://example.com/x'], ['https://api.example:8443']
    ])
    assert.deepEqual(cfg.upstreams, {}, 'URL upstreams are not added to the named ones')
  })

  test('named upstream targets are normalised the same way', () => {
    const cfg = resolveConfig({ upstreams: { chat: { targets: ['ws://127.0.0.1:9001/', 'wss://h:9443/ws//'] } } })
    assert.deepEqual(cfg.upstreams.chat.targets, ['http://127.0.0.1:9001', 'https://h:9443/ws'])
  })

  test('prefix is normalised; rewritePrefix defaults to the prefix', () => {
    const cfg = resolveConfig({
      ...base(),
      routes: [
        { prefix: '/chat/', upstream: 'chat' },
        { prefix: '/', upstream: 'chat' },
        { prefix: '/v1', upstream: 'chat', rewritePrefix: '/v2/' },
        { prefix: '/strip', upstream: 'chat', rewritePrefix: '' },
        { prefix: '/root', upstream: 'chat', rewritePrefix: '/' }
      ]
    })
    assert.deepEqual(cfg.routes.map((r) => [r.index, r.prefix, r.rewritePrefix]), [
      [0, '/chat', '/chat'],
      [1, '/', '/'],
      [2, '/v1', '/v2'],
      [3, '/strip', '/'],
      [4, '/root', '/']
    ])
    throwsConfig(
      () => resolveConfig({ routes: [{ prefix: '/a', upstream: 'http://h', rewritePrefix: 'b' }] }),
      'routes[0].rewritePrefix', 'routes[0].rewritePrefix: invalid value "b"'
    )
  })

  test('static routes: folder made absolute against baseDir, no WebSocket', () => {
    const cfg = resolveConfig({ routes: [{ prefix: '/static', static: './public' }, { prefix: '/abs', static: '/var/www' }] }, { baseDir: '/srv/gw' })
    assert.equal(cfg.routes[0].static, '/srv/gw/public')
    assert.equal(cfg.routes[0].upstream, null)
    assert.equal(cfg.routes[0].websocket, false)
    assert.equal(cfg.routes[0].http, true)
    assert.equal(cfg.routes[1].static, '/var/www')
    assert.equal(resolveConfig({ routes: [{ prefix: '/s', static: './p', websocket: false }] }).routes[0].websocket, false)
  })

  test('headers are lower-cased; auth is kept', () => {
    const cfg = resolveConfig({ ...base(), auth: { jwt: { secret: 's' } }, routes: [{ prefix: '/chat', upstream: 'chat', auth: 'required', headers: { 'X-Extra': 'V', 'x-b': 'b' } }] })
    assert.deepEqual(cfg.routes[0].headers, { 'x-extra': 'V', 'x-b': 'b' })
    assert.equal(cfg.routes[0].auth, 'required')
  })

  test('rate limits: inheritance, override and false', () => {
    const input = base()
    input.rateLimit = { keyBy: 'user', http: { max: 100, window: '1m' }, handshake: { max: 30, window: 60_000 }, concurrent: 100, messages: { rate: 100, burst: 200 } }
    input.routes = [
      { prefix: '/inherit', upstream: 'chat' },
      { prefix: '/off', upstream: 'chat', rateLimit: false },
      { prefix: '/override', upstream: 'chat', rateLimit: { handshake: { max: 5, window: '10s' } } },
      { prefix: '/ip', upstream: 'chat', rateLimit: { keyBy: 'ip', concurrent: 2 } }
    ]
    const cfg = resolveConfig(input)
    const top = { keyBy: 'user', http: { max: 100, window: 60_000 }, handshake: { max: 30, window: 60_000 }, concurrent: 100, messages: { rate: 100, burst: 200 } }
    assert.deepEqual(cfg.rateLimit, top)
    assert.deepEqual(cfg.routes[0].rateLimit, top)
    assert.equal(cfg.routes[0].rateLimit, cfg.rateLimit, 'inherited, not copied')
    assert.equal(cfg.routes[1].rateLimit, null)
    // An override replaces the top-level limits (limits it does not set are off) but inherits keyBy.
    assert.deepEqual(cfg.routes[2].rateLimit, { keyBy: 'user', http: undefined, handshake: { max: 5, window: 10_000 }, concurrent: undefined, messages: undefined })
    assert.deepEqual(cfg.routes[3].rateLimit, { keyBy: 'ip', http: undefined, handshake: undefined, concurrent: 2, messages: undefined })
  })

  test('rate limits: a route override without a top level, and no limits at all', () => {
    const cfg = resolveConfig({ ...base(), routes: [{ prefix: '/a', upstream: 'chat', rateLimit: { http: { max: 1, window: '1s' } } }, { prefix: '/b', upstream: 'chat' }] })
    assert.equal(cfg.rateLimit, null)
    assert.deepEqual(cfg.routes[0].rateLimit, { keyBy: 'ip', http: { max: 1, window: 1000 }, handshake: undefined, concurrent: undefined, messages: undefined })
    assert.equal(cfg.routes[1].rateLimit, null)
  })

  test('plugins: relative paths made absolute, package names kept', () => {
    const cfg = resolveConfig({
      plugins: ['./extra/audit.js', '../shared/p.js', '/opt/p.js', 'tollgate-plugin-x', '@scope/plugin', { path: './q.js', options: { a: 1 }, prefix: '/q' }]
    }, { baseDir: '/srv/gw' })
    assert.deepEqual(cfg.plugins, [
      { path: '/srv/gw/extra/audit.js', options: {} },
      { path: '/srv/shared/p.js', options: {} },
      { path: '/opt/p.js', options: {} },
      { path: 'tollgate-plugin-x', options: {} },
      { path: '@scope/plugin', options: {} },
      { path: '/srv/gw/q.js', options: { a: 1 }, prefix: '/q' }
    ])
  })
})

describe('environment variables over the file', () => {
  test('HOST and PORT override the file and keep its other server keys', async (t) => {
    const dir = await tmp(t)
    const file = await writeJson(join(dir, 'gw.json'), { server: { host: '127.0.0.1', port: 9000, drainTimeout: '5s' } })
    const fromFile = loadConfig({ env: { GATEWAY_CONFIG: file } })
    assert.equal(fromFile.config.server.host, '127.0.0.1')
    assert.equal(fromFile.config.server.port, 9000)
    const { config } = loadConfig({ env: { GATEWAY_CONFIG: file, HOST: '::1', PORT: '9100' } })
    assert.equal(config.server.host, '::1')
    assert.equal(config.server.port, 9100)
    assert.equal(config.server.drainTimeout, 5000)
    assert.equal(loadConfig({ env: { GATEWAY_CONFIG: file, PORT: '0' } }).config.server.port, 0)
    assert.equal(loadConfig({ env: { GATEWAY_CONFIG: file, PORT: ' 9200 ' } }).config.server.port, 9200)
  })

  test('HOST and PORT without a file', () => {
    const { config } = loadConfig({ env: { HOST: '127.0.0.1', PORT: '3000' } })
    assert.equal(config.server.host, '127.0.0.1')
    assert.equal(config.server.port, 3000)
  })

  test('empty variables are ignored', () => {
    const { config, logLevel } = loadConfig({ env: { HOST: '', PORT: ' ', ADMIN_TOKEN: '', JWT_SECRET: '', REDIS_URL: '', UPSTREAM_URL: '', LOG_LEVEL: '' } })
    assert.equal(config.server.host, D.DEFAULT_HOST)
    assert.equal(config.server.port, D.DEFAULT_PORT)
    assert.equal(config.admin.token, undefined)
    assert.equal(config.auth.jwt, undefined)
    assert.equal(config.redis, undefined)
    assert.deepEqual(config.routes, [])
    assert.equal(logLevel, 'info')
  })

  test('an invalid PORT', () => {
    for (const port of ['abc', '70000', '65536', '-1', '80.5', '8080x', '0x50']) {
      throwsConfig(() => loadConfig({ env: { PORT: port } }), 'PORT', `PORT: invalid port "${port}" (an integer from 0 to 65535)`)
    }
  })

  test('ADMIN_TOKEN overrides admin.token and keeps the rest of admin', async (t) => {
    const dir = await tmp(t)
    const file = await writeJson(join(dir, 'gw.json'), { admin: { token: 'from-file-0123456789', prefix: '/ops', port: 9091 } })
    assert.deepEqual(loadConfig({ env: { GATEWAY_CONFIG: file, ADMIN_TOKEN: 'from-env-0123456789' } }).config.admin, { token: 'from-env-0123456789', prefix: '/ops', port: 9091 })
    assert.equal(loadConfig({ env: { GATEWAY_CONFIG: file } }).config.admin.token, 'from-file-0123456789')
    assert.equal(loadConfig({ env: { ADMIN_TOKEN: 'only-env-0123456789' } }).config.admin.token, 'only-env-0123456789')
  })

  test('JWT_SECRET overrides the file, replaces a file publicKey, keeps the other jwt keys', async (t) => {
    const dir = await tmp(t)
    await writeFile(join(dir, 'pub.pem'), PEM)
    const file = await writeJson(join(dir, 'gw.json'), { auth: { jwt: { publicKey: './pub.pem', issuer: 'https://issuer.example' }, queryParam: 'tok' } })
    const { config } = loadConfig({ env: { GATEWAY_CONFIG: file, JWT_SECRET: 'env-secret' } })
    assert.equal(config.auth.jwt?.secret, 'env-secret')
    assert.equal(config.auth.jwt?.publicKey, undefined)
    assert.deepEqual(config.auth.jwt?.algorithms, ['HS256'])
    assert.equal(config.auth.jwt?.issuer, 'https://issuer.example')
    assert.equal(config.auth.queryParam, 'tok')

    const file2 = await writeJson(join(dir, 'gw2.json'), { auth: { jwt: { secret: 'file-secret' } } })
    assert.equal(loadConfig({ env: { GATEWAY_CONFIG: file2, JWT_SECRET: 'env-secret' } }).config.auth.jwt?.secret, 'env-secret')
    assert.equal(loadConfig({ env: { JWT_SECRET: 'only-env-0123456789' } }).config.auth.jwt?.secret, 'only-env-0123456789')
  })

  test('JWT_PUBLIC_KEY: PEM text or a path; replaces a file secret', async (t) => {
    const dir = await tmp(t)
    await writeFile(join(dir, 'pub.pem'), PEM)
    const file = await writeJson(join(dir, 'conf', 'gw.json'), { auth: { jwt: { secret: 'file-secret', algorithms: ['ES256'] } } })
    const byPem = loadConfig({ env: { GATEWAY_CONFIG: file, JWT_PUBLIC_KEY: PEM } }).config.auth.jwt
    assert.equal(byPem?.publicKey, PEM.trim(), 'surrounding whitespace is trimmed from variables')
    assert.equal(byPem?.secret, undefined)
    assert.deepEqual(byPem?.algorithms, ['ES256'])
    assert.equal(loadConfig({ env: { JWT_PUBLIC_KEY: join(dir, 'pub.pem') } }).config.auth.jwt?.publicKey, PEM)
    assert.equal(loadConfig({ env: { JWT_PUBLIC_KEY: './pub.pem' }, cwd: dir }).config.auth.jwt?.publicKey, PEM, 'relative to the cwd without a file')
    throwsConfig(
      () => loadConfig({ env: { JWT_PUBLIC_KEY: './missing.pem' }, cwd: dir }),
      'auth.jwt.publicKey', `auth.jwt.publicKey: cannot read ${join(dir, 'missing.pem')} (ENOENT)`
    )
  })

  test('REDIS_URL sets redis.url and keeps the file\'s other redis keys', async (t) => {
    const dir = await tmp(t)
    const file = await writeJson(join(dir, 'gw.json'), { redis: { url: 'redis://file:6379', keyPrefix: 'a:', failOpen: false } })
    assert.deepEqual(loadConfig({ env: { GATEWAY_CONFIG: file, REDIS_URL: 'redis://env:6379' } }).config.redis, { url: 'redis://env:6379', keyPrefix: 'a:', failOpen: false })
    assert.deepEqual(loadConfig({ env: { REDIS_URL: 'redis://127.0.0.1:6379' } }).config.redis, { url: 'redis://127.0.0.1:6379', keyPrefix: 'gw:', failOpen: true })
    throwsConfig(() => loadConfig({ env: { REDIS_URL: 'localhost:6379' } }), 'redis.url', 'redis.url: invalid value "localhost:6379"')
  })

  test('UPSTREAM_URL quick mode: one route "/" to the URL, HTTP and WebSocket', () => {
    const loaded = loadConfig({ env: { UPSTREAM_URL: 'ws://127.0.0.1:9001' } })
    assert.equal(loaded.demo, false)
    assert.equal(loaded.config.routes.length, 1)
    const [route] = loaded.config.routes
    assert.equal(route.prefix, '/')
    assert.equal(route.rewritePrefix, '/')
    assert.deepEqual(route.upstream?.targets, ['http://127.0.0.1:9001'])
    assert.equal(route.websocket, true)
    assert.equal(route.http, true)
    assert.equal(route.auth, 'none')
  })

  test('UPSTREAM_URL adds to the file\'s routes and replaces a file route "/"', async (t) => {
    const dir = await tmp(t)
    const file = await writeJson(join(dir, 'gw.json'), {
      upstreams: { chat: { targets: ['http://127.0.0.1:9001'] } },
      routes: [{ prefix: '/', upstream: 'chat', auth: 'required' }, { prefix: '/chat', upstream: 'chat' }]
    })
    const { config, input } = loadConfig({ env: { GATEWAY_CONFIG: file, UPSTREAM_URL: 'https://api.example' } })
    assert.deepEqual(config.routes.map((r) => [r.prefix, r.upstream?.targets]), [
      ['/chat', ['http://127.0.0.1:9001']],
      ['/', ['https://api.example']]
    ])
    assert.equal(config.routes[1].auth, 'none')
    assert.deepEqual(input.routes?.at(-1), { prefix: '/', upstream: 'https://api.example' })
    // The file itself is untouched by the merge.
    assert.equal((JSON.parse(await readFile(file, 'utf8')) as { routes: unknown[] }).routes.length, 2)
  })

  test('an invalid UPSTREAM_URL names the variable', () => {
    for (const url of ['localhost:9001', '127.0.0.1', 'ftp://h', 'http://', 'http:/h']) {
      throwsConfig(() => loadConfig({ env: { UPSTREAM_URL: url } }), 'UPSTREAM_URL', `UPSTREAM_URL: invalid URL "${url}" (use http://, https://, ws:// or wss://)`)
    }
  })

  test('LOG_LEVEL: default info, valid levels, invalid level', () => {
    assert.equal(loadConfig({ env: {} }).logLevel, 'info')
    for (const level of ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']) {
      assert.equal(loadConfig({ env: { LOG_LEVEL: level } }).logLevel, level)
    }
    for (const level of ['verbose', 'warning', 'INFO', '10']) {
      throwsConfig(() => loadConfig({ env: { LOG_LEVEL: level } }), 'LOG_LEVEL', `LOG_LEVEL: invalid level "${level}" (one of fatal, error, warn, info, debug, trace, silent)`)
    }
  })

  test('the process environment is not read unless passed', () => {
    const before = process.env.PORT
    process.env.PORT = 'not-a-port'
    try {
      assert.equal(loadConfig({}).config.server.port, D.DEFAULT_PORT)
    } finally {
      if (before === undefined) delete process.env.PORT
      else process.env.PORT = before
    }
  })
})

describe('config files', () => {
  const sample = {
    server: { port: 9000, drainTimeout: '5s' },
    upstreams: { chat: { targets: ['http://127.0.0.1:9001'] } },
    routes: [{ prefix: '/chat', upstream: 'chat' }]
  }
  const sampleYaml = [
    '# comment',
    'server:',
    '  port: 9000',
    '  drainTimeout: 5s',
    'upstreams:',
    '  chat:',
    '    targets: [http://127.0.0.1:9001]',
    'routes:',
    '  - prefix: /chat',
    '    upstream: chat',
    ''
  ].join('\n')

  for (const ext of ['.json', '.yaml', '.yml', '.YAML']) {
    test(`loads a ${ext} file`, async (t) => {
      const dir = await tmp(t)
      const file = join(dir, `gateway${ext}`)
      await writeFile(file, ext === '.json' ? JSON.stringify(sample) : sampleYaml)
      const loaded = loadConfig({ env: { GATEWAY_CONFIG: file } })
      assert.equal(loaded.file, file)
      assert.equal(loaded.demo, false)
      assert.deepEqual(loaded.input, sample)
      assert.equal(loaded.config.server.port, 9000)
      assert.equal(loaded.config.server.drainTimeout, 5000)
      assert.deepEqual(loaded.config.routes[0].upstream?.targets, ['http://127.0.0.1:9001'])
      assert.equal(loaded.config.baseDir, dir)
      assert.deepEqual(readConfigFile(file), sample)
    })
  }

  test('an empty YAML file is an empty configuration', async (t) => {
    const dir = await tmp(t)
    const file = join(dir, 'empty.yaml')
    await writeFile(file, '# nothing yet\n')
    const loaded = loadConfig({ env: { GATEWAY_CONFIG: file } })
    assert.equal(loaded.demo, false, 'a config file turns demo mode off, even an empty one')
    assert.deepEqual(loaded.config.routes, [])
  })

  test('a missing file names GATEWAY_CONFIG', async (t) => {
    const dir = await tmp(t)
    const file = join(dir, 'nope.yaml')
    throwsConfig(() => loadConfig({ env: { GATEWAY_CONFIG: file } }), 'GATEWAY_CONFIG', `GATEWAY_CONFIG: cannot read config file ${file} (ENOENT)`)
    throwsConfig(() => loadConfig({ argv: ['--config', file] }), 'GATEWAY_CONFIG', `GATEWAY_CONFIG: cannot read config file ${file} (ENOENT)`)
  })

  test('a folder instead of a file', async (t) => {
    const dir = await tmp(t)
    await mkdir(join(dir, 'conf.yaml'))
    throwsConfig(() => loadConfig({ env: { GATEWAY_CONFIG: join(dir, 'conf.yaml') } }), 'GATEWAY_CONFIG', `GATEWAY_CONFIG: cannot read config file ${join(dir, 'conf.yaml')} (EISDIR)`)
  })

  test('unparsable YAML: one line naming the file and the line, no stack', async (t) => {
    const dir = await tmp(t)
    const cases: Array<[string, string, number]> = [
      ['flow.yaml', 'server:\n  port: 1\nroutes: [unclosed\n', 4],
      ['dup.yml', 'server:\n  port: 1\n  port: 2\n', 3],
      ['tabs.yaml', 'server:\n\tport: 1\n', 2]
    ]
    for (const [name, text, line] of cases) {
      const file = join(dir, name)
      await writeFile(file, text)
      throwsConfig(() => loadConfig({ env: { GATEWAY_CONFIG: file } }), file, new RegExp(`^${escapeRe(file)}: invalid YAML at line ${line}: \\S`))
    }
  })

  test('unparsable JSON: one line naming the file, no stack', async (t) => {
    const dir = await tmp(t)
    for (const [name, text] of [['trunc.json', '{"server": '], ['comma.json', '{"server": {"port": 1,}}'], ['yaml.json', 'server:\n  port: 1\n'] /* V8 quotes this text, line breaks included */, ['blank.json', '']]) {
      const file = join(dir, name)
      await writeFile(file, text)
      throwsConfig(() => loadConfig({ env: { GATEWAY_CONFIG: file } }), file, new RegExp(`^${escapeRe(file)}: invalid JSON: \\S`))
    }
  })

  test('the top level must be an object', async (t) => {
    const dir = await tmp(t)
    for (const [name, text] of [['list.yaml', '- a\n- b\n'], ['scalar.yml', 'hello\n'], ['array.json', '[1]'], ['num.json', '42']]) {
      const file = join(dir, name)
      await writeFile(file, text)
      throwsConfig(() => loadConfig({ env: { GATEWAY_CONFIG: file } }), file, `${file}: the config file must hold an object at its top level`)
    }
  })

  test('an unsupported extension', async (t) => {
    const dir = await tmp(t)
    for (const name of ['gateway.toml', 'gateway.conf', 'gateway.yaml.bak']) {
      const file = join(dir, name)
      await writeFile(file, 'x = 1\n')
      const ext = name.slice(name.lastIndexOf('.'))
      throwsConfig(() => loadConfig({ env: { GATEWAY_CONFIG: file } }), 'GATEWAY_CONFIG', `GATEWAY_CONFIG: unsupported config file type "${ext}" (use .json, .yaml or .yml)`)
    }
    const bare = join(dir, 'gateway')
    await writeFile(bare, '{}')
    throwsConfig(() => loadConfig({ env: { GATEWAY_CONFIG: bare } }), 'GATEWAY_CONFIG', `GATEWAY_CONFIG: unsupported config file type "${bare}" (use .json, .yaml or .yml)`)
  })

  test('a validation error in a file names the key path', async (t) => {
    const dir = await tmp(t)
    const file = join(dir, 'gw.yaml')
    await writeFile(file, [
      'upstreams:',
      '  chat: { targets: [http://127.0.0.1:9001] }',
      'routes:',
      '  - { prefix: /chat, upstream: chat }',
      '  - { prefix: /chatroom, upstream: chatt }',
      ''
    ].join('\n'))
    throwsConfig(() => loadConfig({ env: { GATEWAY_CONFIG: file } }), 'routes[1].upstream', 'routes[1].upstream: unknown upstream "chatt"')
  })

  test('--config PATH, --config=PATH and -c PATH; argv wins over GATEWAY_CONFIG', async (t) => {
    const dir = await tmp(t)
    const a = await writeJson(join(dir, 'a.json'), { server: { port: 1111 } })
    const b = await writeJson(join(dir, 'b.json'), { server: { port: 2222 } })
    assert.equal(loadConfig({ argv: ['--config', a] }).config.server.port, 1111)
    assert.equal(loadConfig({ argv: [`--config=${a}`] }).config.server.port, 1111)
    assert.equal(loadConfig({ argv: ['-c', a] }).config.server.port, 1111)
    assert.equal(loadConfig({ argv: ['--config', a], env: { GATEWAY_CONFIG: b } }).config.server.port, 1111)
    assert.equal(loadConfig({ argv: ['--verbose'], env: { GATEWAY_CONFIG: b } }).config.server.port, 2222)
    assert.equal(loadConfig({ argv: ['--config', a] }).file, a)
  })

  test('configPathFromArgv', () => {
    assert.equal(configPathFromArgv([]), undefined)
    assert.equal(configPathFromArgv(['serve', '--port', '1']), undefined)
    assert.equal(configPathFromArgv(['--config', 'gw.yaml']), 'gw.yaml')
    assert.equal(configPathFromArgv(['x', '--config=./conf/gw.yml', 'y']), './conf/gw.yml')
    assert.equal(configPathFromArgv(['-c', 'gw.json']), 'gw.json')
    assert.equal(configPathFromArgv(['--config=a.yaml', '--config', 'b.yaml']), 'a.yaml', 'the first one wins')
    throwsConfig(() => configPathFromArgv(['--config']), '--config', '--config: needs a file path')
    throwsConfig(() => configPathFromArgv(['--config', '--verbose']), '--config', '--config: needs a file path')
  })

  test('a relative config path is resolved against cwd', async (t) => {
    const dir = await tmp(t)
    const file = await writeJson(join(dir, 'conf', 'gw.json'), { server: { port: 3333 } })
    const byEnv = loadConfig({ env: { GATEWAY_CONFIG: 'conf/gw.json' }, cwd: dir })
    assert.equal(byEnv.file, file)
    assert.equal(byEnv.config.server.port, 3333)
    assert.equal(loadConfig({ argv: ['--config', './conf/gw.json'], cwd: dir }).file, file)
    assert.equal(loadConfig({ argv: ['--config=conf/gw.json'], cwd: dir }).file, file)
  })

  test('relative paths inside the file are resolved against the file\'s folder, not cwd', async (t) => {
    const dir = await tmp(t)
    const confDir = join(dir, 'conf')
    const elsewhere = join(dir, 'elsewhere')
    await mkdir(join(confDir, 'tls'), { recursive: true })
    await mkdir(elsewhere)
    await writeFile(join(confDir, 'tls', 'cert.pem'), 'CERT')
    await writeFile(join(confDir, 'tls', 'key.pem'), 'KEY')
    await writeFile(join(confDir, 'pub.pem'), PEM)
    await writeFile(join(confDir, 'ca.pem'), PEM)
    const file = join(confDir, 'gateway.yaml')
    await writeFile(file, [
      'server:',
      '  tls: { cert: ./tls/cert.pem, key: tls/key.pem }',
      'auth:',
      '  jwt: { publicKey: ./pub.pem }',
      'upstreams:',
      '  api: { targets: [https://127.0.0.1:9443], ca: ./ca.pem }',
      'routes:',
      '  - { prefix: /api, upstream: api }',
      '  - { prefix: /static, static: ./public }',
      'plugins: [./plugins/audit.js, some-package]',
      ''
    ].join('\n'))
    const { config } = loadConfig({ argv: ['--config', '../conf/gateway.yaml'], cwd: elsewhere })
    assert.equal(config.baseDir, confDir)
    assert.equal(config.server.tls?.cert, 'CERT')
    assert.equal(config.server.tls?.key, 'KEY')
    assert.equal(config.server.tls?.certPath, join(confDir, 'tls', 'cert.pem'))
    assert.equal(config.server.tls?.keyPath, join(confDir, 'tls', 'key.pem'))
    assert.equal(config.auth.jwt?.publicKey, PEM)
    assert.equal(config.upstreams.api.ca, PEM)
    assert.equal(config.routes[1].static, join(confDir, 'public'))
    assert.deepEqual(config.plugins.map((p) => p.path), [join(confDir, 'plugins', 'audit.js'), 'some-package'])
  })

  test('without a file, relative paths are resolved against cwd', async (t) => {
    const dir = await tmp(t)
    const { config } = loadConfig({ env: { UPSTREAM_URL: 'http://127.0.0.1:9001' }, cwd: dir })
    assert.equal(config.baseDir, dir)
  })
})

describe('demo mode', () => {
  test('on with no file and no UPSTREAM_URL', () => {
    const loaded = loadConfig({ env: {} })
    assert.equal(loaded.demo, true)
    assert.equal(loaded.file, undefined)
    assert.deepEqual(loaded.config.routes, [])
    assert.equal(loadConfig().demo, true)
  })

  test('HOST, PORT, LOG_LEVEL and other server settings do not turn it off', () => {
    const loaded = loadConfig({ env: { HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'debug', ADMIN_TOKEN: 'admin-token-0123456789', JWT_SECRET: 's', REDIS_URL: 'redis://127.0.0.1:6379', GATEWAY_CONFIG: '' } })
    assert.equal(loaded.demo, true)
    assert.equal(loaded.config.server.port, 0)
    assert.equal(loaded.logLevel, 'debug')
  })

  test('off with a config file (GATEWAY_CONFIG or --config) or UPSTREAM_URL', async (t) => {
    const dir = await tmp(t)
    const file = await writeJson(join(dir, 'gw.json'), {})
    assert.equal(loadConfig({ env: { GATEWAY_CONFIG: file } }).demo, false)
    assert.equal(loadConfig({ argv: ['--config', file] }).demo, false)
    assert.equal(loadConfig({ env: { UPSTREAM_URL: 'http://127.0.0.1:9001' } }).demo, false)
  })
})

describe('shipped examples', () => {
  const exampleFile = join(REPO_ROOT, 'gateway.example.yaml')

  test('gateway.example.yaml validates through loadConfig', () => {
    const loaded = loadConfig({ argv: ['--config', exampleFile], env: {} })
    const { config } = loaded
    assert.equal(loaded.demo, false)
    assert.equal(config.server.host, D.DEFAULT_HOST)
    assert.equal(config.server.port, D.DEFAULT_PORT)
    assert.equal(config.server.drainTimeout, D.DEFAULT_DRAIN_TIMEOUT)
    assert.equal(config.server.proxyTimeout, D.DEFAULT_PROXY_TIMEOUT)
    assert.deepEqual(config.websocket, {
      pingInterval: D.DEFAULT_PING_INTERVAL,
      pongTimeout: D.DEFAULT_PONG_TIMEOUT,
      idleTimeout: D.DEFAULT_IDLE_TIMEOUT,
      maxPayload: D.DEFAULT_MAX_PAYLOAD,
      connectTimeout: D.DEFAULT_CONNECT_TIMEOUT,
      highWaterMark: D.DEFAULT_HIGH_WATER_MARK,
      allowedOrigins: [],
      compression: 'passthrough'
    })
    assert.equal(config.admin.prefix, D.DEFAULT_ADMIN_PREFIX)
    assert.ok(config.routes.length >= 2)
    for (const r of config.routes) assert.ok(r.upstream !== null || r.static !== null)
    assert.deepEqual(config.upstreams.chat.targets, ['http://127.0.0.1:9001', 'http://127.0.0.1:9002'])
    assert.ok(config.auth.jwt !== undefined)
  })

  test('gateway.example.yaml still validates with the environment set', () => {
    const { config } = loadConfig({ argv: ['--config', exampleFile], env: { PORT: '0', ADMIN_TOKEN: 'admin-token-0123456789', JWT_SECRET: 'y', UPSTREAM_URL: 'http://127.0.0.1:1' } })
    assert.equal(config.server.port, 0)
    assert.equal(config.routes.at(-1)?.prefix, '/')
  })

  test('gateway.example.yaml mentions every key of spec section 3 and the gateway\'s own keys', async () => {
    const text = await readFile(exampleFile, 'utf8')
    const keys = [
      'server', 'host', 'port', 'trustProxy', 'tls', 'cert', 'key', 'drainTimeout', 'reloadDrain', 'proxyTimeout',
      'auth', 'jwt', 'secret', 'publicKey', 'algorithms', 'issuer', 'audience', 'clockToleranceSec',
      'tokenSources', 'queryParam', 'cookieName', 'closeOnExpiry', 'forwardClaims',
      'upstreams', 'targets', 'balance', 'hashOn', 'healthCheck', 'interval', 'timeout', 'unhealthyAfter', 'healthyAfter',
      'closeOnUnhealthy', 'ca',
      'routes', 'prefix', 'upstream', 'rewritePrefix', 'websocket', 'http', 'rateLimit', 'headers', 'static',
      'pingInterval', 'pongTimeout', 'idleTimeout', 'maxPayload', 'connectTimeout', 'highWaterMark', 'allowedOrigins',
      'keyBy', 'handshake', 'concurrent', 'messages', 'rate', 'burst', 'max', 'window',
      'admin', 'token', 'redis', 'url', 'failOpen', 'keyPrefix', 'metrics', 'protected', 'plugins'
    ]
    for (const key of keys) assert.match(text, new RegExp(`(^|[\\s{,#-])${key}:`, 'm'), key)
  })

  test('.env.example documents every variable and sets none', async () => {
    const text = await readFile(join(REPO_ROOT, '.env.example'), 'utf8')
    const names = ['HOST', 'PORT', 'GATEWAY_CONFIG', 'UPSTREAM_URL', 'JWT_SECRET', 'JWT_PUBLIC_KEY', 'ADMIN_TOKEN', 'REDIS_URL', 'LOG_LEVEL']
    const env: Record<string, string> = {}
    for (const line of text.split('\n')) {
      const s = line.trim()
      if (s === '' || s.startsWith('#')) continue
      const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(s)
      assert.ok(m !== null, `not a NAME=value line: ${line}`)
      env[m[1]] = m[2]
    }
    for (const name of names) {
      assert.match(text, new RegExp(`^#?\\s*${name}=`, 'm'), name)
      // The line above the variable is its comment.
      const lines = text.split('\n')
      const i = lines.findIndex((l) => new RegExp(`^#?\\s*${name}=`).test(l))
      assert.match(lines[i - 1], /^#\s*\S/, `${name} has a comment line`)
    }
    // Copied to .env as is, it changes nothing: demo mode, all defaults.
    const loaded = loadConfig({ env })
    assert.equal(loaded.demo, true)
    assert.equal(loaded.config.server.port, D.DEFAULT_PORT)
  })
})

function escapeRe (s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

test('edge settings: encodedSlashes, underscoresInHeaders, maxBodySize, static dotfiles/followSymlinks, requiredClaims, compression', () => {
  const cfg = resolveConfig({
    server: { encodedSlashes: 'keep', underscoresInHeaders: true, maxBodySize: '1mb' },
    auth: { jwt: { secret: 's', requiredClaims: ['exp', 'sub', 'exp'] } },
    websocket: { compression: 'off' },
    routes: [
      { prefix: '/a', upstream: 'http://127.0.0.1:1' },
      { prefix: '/b', upstream: 'http://127.0.0.1:1', maxBodySize: '16kb' },
      { prefix: '/s', static: '/srv/www', dotfiles: 'allow', followSymlinks: true }
    ]
  })
  assert.equal(cfg.server.encodedSlashes, 'keep')
  assert.equal(cfg.server.underscoresInHeaders, true)
  assert.deepEqual(cfg.routes.map((r) => r.maxBodySize), [1024 * 1024, 16 * 1024, 1024 * 1024])
  assert.deepEqual([cfg.routes[2].dotfiles, cfg.routes[2].followSymlinks], ['allow', true])
  assert.deepEqual(cfg.auth.jwt?.requiredClaims, ['exp', 'sub'])
  assert.equal(cfg.websocket.compression, 'off')
  throwsConfig(() => resolveConfig({ server: { encodedSlashes: 'decode' } }), 'server.encodedSlashes', /invalid value "decode"/)
  throwsConfig(() => resolveConfig({ websocket: { compression: 'on' } }), 'websocket.compression', /invalid value "on"/)
  throwsConfig(() => resolveConfig({ server: { maxBodySize: '1 lot' } }), 'server.maxBodySize', /invalid size/)
  throwsConfig(() => resolveConfig({ routes: [{ prefix: '/a', upstream: 'http://127.0.0.1:1', dotfiles: 'allow' }] }), 'routes[0].dotfiles', 'routes[0].dotfiles: only applies to static routes')
  throwsConfig(() => resolveConfig({ routes: [{ prefix: '/a', upstream: 'http://127.0.0.1:1', followSymlinks: true }] }), 'routes[0].followSymlinks', 'routes[0].followSymlinks: only applies to static routes')
  throwsConfig(() => resolveConfig({ auth: { jwt: { secret: 's', requiredClaims: [''] } } }), 'auth.jwt.requiredClaims[0]', /auth\.jwt\.requiredClaims\[0\]/)
})

test('admin.token shorter than 16 characters is a configuration error', () => {
  throwsConfig(() => resolveConfig({ admin: { token: 'short' } }), 'admin.token', 'admin.token: must be at least 16 characters (got 5)')
  throwsConfig(() => resolveConfig({ admin: { token: 'x'.repeat(15) } }), 'admin.token', /at least 16/)
  assert.equal(resolveConfig({ admin: { token: 'x'.repeat(16) } }).admin.token, 'x'.repeat(16))
  throwsConfig(() => loadConfig({ env: { ADMIN_TOKEN: 'abc' } }), 'admin.token', /at least 16/)
})

test('route prefixes that differ only by case are refused', () => {
  throwsConfig(() => resolveConfig({ routes: [{ prefix: '/api', upstream: 'http://127.0.0.1:1' }, { prefix: '/API/', upstream: 'http://127.0.0.1:2' }] }),
    'routes[1].prefix', 'routes[1].prefix: prefix "/API" differs from routes[0]\'s "/api" only by case')
})
