/**
 * src/gateway/reload-diff.ts, with configurations resolved by resolveConfig: restartOnly (the
 * settings a reload cannot change), keepRestartOnly (the next configuration with those kept at
 * their running values) and diff (which routes, upstreams and sections of the input changed).
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { resolveConfig } from '../../../src/config/resolve.js'
import type { GatewayConfigInput } from '../../../src/config/schema.js'
import type { GatewayConfig } from '../../../src/config/types.js'
import { diff, keepRestartOnly, restartOnly } from '../../../src/gateway/reload-diff.js'

const U1 = 'http://127.0.0.1:9001'

/** A small valid input, with `extra` merged in at the top level. */
function input (extra: Partial<GatewayConfigInput> = {}): GatewayConfigInput {
  return { routes: [{ prefix: '/a', upstream: U1 }], ...extra } as GatewayConfigInput
}

let dir = ''
/** Resolved against a folder holding cert.pem/key.pem (resolveConfig reads TLS files). */
const resolve = (i: GatewayConfigInput): GatewayConfig => resolveConfig(structuredClone(i), { baseDir: dir })

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tollgate-reload-diff-'))
  await writeFile(join(dir, 'cert.pem'), 'CERT-1')
  await writeFile(join(dir, 'key.pem'), 'KEY-1')
  await writeFile(join(dir, 'cert2.pem'), 'CERT-2')
  await writeFile(join(dir, 'key2.pem'), 'KEY-2')
})
after(async () => { await rm(dir, { recursive: true, force: true }) })

const TLS = { tls: { cert: 'cert.pem', key: 'key.pem' } }
const TLS2 = { tls: { cert: 'cert2.pem', key: 'key2.pem' } }

describe('restartOnly', () => {
  test('nothing for the same configuration, or for changes a reload can make', () => {
    const a = resolve(input())
    assert.deepEqual(restartOnly(a, resolve(input())), [])
    const b = resolve(input({
      routes: [{ prefix: '/b', upstream: U1 }],
      websocket: { pingInterval: '5s' },
      admin: { token: 'a-long-enough-admin-token-1234' },
      auth: { cookieName: 'other' },
      server: { proxyTimeout: '3s' }
    }))
    assert.deepEqual(restartOnly(a, b), [])
  })

  test('each restart-only setting, alone', () => {
    const a = resolve(input())
    const cases: Array<[Partial<GatewayConfigInput>, string]> = [
      [{ server: { host: '127.0.0.1' } }, 'server.host'],
      [{ server: { port: 9999 } }, 'server.port'],
      [{ server: TLS }, 'server.tls'],
      [{ admin: { port: 9100 } }, 'admin.port'],
      [{ redis: { url: 'redis://127.0.0.1:6379' } }, 'redis'],
      [{ server: { trustProxy: true } }, 'server.trustProxy'],
      [{ auth: { queryParam: 'tk' } }, 'auth.queryParam']
    ]
    for (const [extra, name] of cases) assert.deepEqual(restartOnly(a, resolve(input(extra))), [name], name)
  })

  test('all of them at once, in a fixed order', () => {
    const a = resolve(input())
    const b = resolve(input({
      server: { host: '127.0.0.1', port: 9999, trustProxy: ['10.0.0.0/8'], ...TLS },
      admin: { port: 9100 },
      redis: { url: 'redis://127.0.0.1:6379' },
      auth: { queryParam: 'tk' }
    }))
    assert.deepEqual(restartOnly(a, b), ['server.host', 'server.port', 'server.tls', 'admin.port', 'redis', 'server.trustProxy', 'auth.queryParam'])
  })

  test('TLS: removing it needs a restart; new certificate files do not', () => {
    assert.deepEqual(restartOnly(resolve(input({ server: TLS })), resolve(input())), ['server.tls'])
    assert.deepEqual(restartOnly(resolve(input({ server: TLS })), resolve(input({ server: TLS2 }))), [])
  })

  test('redis: any change of url, failOpen or keyPrefix, and removing it', () => {
    const r = resolve(input({ redis: { url: 'redis://127.0.0.1:6379' } }))
    assert.deepEqual(restartOnly(r, resolve(input({ redis: { url: 'redis://127.0.0.1:6380' } }))), ['redis'])
    assert.deepEqual(restartOnly(r, resolve(input({ redis: { url: 'redis://127.0.0.1:6379', failOpen: false } }))), ['redis'])
    assert.deepEqual(restartOnly(r, resolve(input({ redis: { url: 'redis://127.0.0.1:6379', keyPrefix: 'x:' } }))), ['redis'])
    assert.deepEqual(restartOnly(r, resolve(input())), ['redis'])
    assert.deepEqual(restartOnly(r, resolve(input({ redis: { url: 'redis://127.0.0.1:6379' } }))), [])
  })

  test('trustProxy compares by value: an equal list is no change, a reordered one is', () => {
    const a = resolve(input({ server: { trustProxy: ['10.0.0.1', '10.0.0.2'] } }))
    assert.deepEqual(restartOnly(a, resolve(input({ server: { trustProxy: ['10.0.0.1', '10.0.0.2'] } }))), [])
    assert.deepEqual(restartOnly(a, resolve(input({ server: { trustProxy: ['10.0.0.2', '10.0.0.1'] } }))), ['server.trustProxy'])
    assert.deepEqual(restartOnly(resolve(input({ server: { trustProxy: 1 } })), resolve(input({ server: { trustProxy: 2 } }))), ['server.trustProxy'])
    assert.deepEqual(restartOnly(resolve(input({ server: { trustProxy: 1 } })), resolve(input({ server: { trustProxy: '1' } }))), ['server.trustProxy'])
  })
})

describe('keepRestartOnly', () => {
  const prevInput = input({
    server: { host: '0.0.0.0', port: 8080, trustProxy: ['10.0.0.1'] },
    admin: { port: 9100, token: 'a-long-enough-admin-token-1234' },
    redis: { url: 'redis://127.0.0.1:6379' },
    auth: { queryParam: 'tk' }
  })
  const nextInput = input({
    routes: [{ prefix: '/b', upstream: U1 }],
    server: { host: '127.0.0.1', port: 9090, trustProxy: true, proxyTimeout: '3s' },
    admin: { port: 9200, token: 'another-long-admin-token-56789' },
    auth: { queryParam: 'jwt', cookieName: 'c2' },
    websocket: { pingInterval: '7s' }
  })

  test('the restart-only settings come from the running configuration, the rest from the new one', () => {
    const prev = resolve(prevInput)
    const next = resolve(nextInput)
    const kept = keepRestartOnly(next, prev)
    assert.equal(kept.server.host, '0.0.0.0')
    assert.equal(kept.server.port, 8080)
    assert.deepEqual(kept.server.trustProxy, ['10.0.0.1'])
    assert.equal(kept.admin.port, 9100)
    assert.deepEqual(kept.redis, prev.redis)
    assert.equal(kept.auth.queryParam, 'tk')
    // What a reload may change:
    assert.equal(kept.server.proxyTimeout, 3000)
    assert.equal(kept.admin.token, 'another-long-admin-token-56789')
    assert.equal(kept.auth.cookieName, 'c2')
    assert.equal(kept.websocket.pingInterval, 7000)
    assert.deepEqual(kept.routes.map((r) => r.prefix), ['/b'])
    assert.equal(kept.routes, next.routes)
    assert.equal(kept.upstreams, next.upstreams)
  })

  test('the result reports no restart-only change against the running configuration', () => {
    const prev = resolve(prevInput)
    const next = resolve(nextInput)
    assert.ok(restartOnly(prev, next).length > 0)
    assert.deepEqual(restartOnly(prev, keepRestartOnly(next, prev)), [])
  })

  test('redis removed by the new configuration is kept', () => {
    const prev = resolve(prevInput)
    const kept = keepRestartOnly(resolve(input()), prev)
    assert.deepEqual(kept.redis, { url: 'redis://127.0.0.1:6379', failOpen: true, keyPrefix: prev.redis!.keyPrefix })
  })

  test('neither configuration is changed', () => {
    const prev = resolve(prevInput)
    const next = resolve(nextInput)
    const prevCopy = structuredClone(prev)
    const nextCopy = structuredClone(next)
    keepRestartOnly(next, prev)
    assert.deepEqual(prev, prevCopy)
    assert.deepEqual(next, nextCopy)
  })

  test('TLS: renewed certificates are taken; TLS cannot be turned on by a reload', () => {
    const renewed = keepRestartOnly(resolve(input({ server: TLS2 })), resolve(input({ server: TLS })))
    assert.equal(renewed.server.tls?.cert, 'CERT-2')
    assert.equal(renewed.server.tls?.key, 'KEY-2')
    assert.equal(keepRestartOnly(resolve(input({ server: TLS })), resolve(input())).server.tls, undefined)
  })

  test('TLS cannot be turned off by a reload: the running certificate stays', () => {
    const prev = resolve(input({ server: TLS }))
    const kept = keepRestartOnly(resolve(input()), prev)
    assert.deepEqual(restartOnly(prev, kept), [])
    assert.equal(kept.server.tls?.cert, 'CERT-1')
    // And so a later reload with renewed certificates still renews them (runtime.ts calls
    // setSecureContext only when the kept configuration has tls).
    const renewed = resolve(input({ server: TLS2 }))
    assert.deepEqual(restartOnly(kept, renewed), [])
    assert.equal(keepRestartOnly(renewed, kept).server.tls?.cert, 'CERT-2')
  })
})

describe('diff', () => {
  test('the same input: no change', () => {
    assert.deepEqual(diff(input(), input()), [])
    assert.deepEqual(diff({}, {}), [])
  })

  test('routes, by prefix: added, changed, removed', () => {
    const a = input({ routes: [{ prefix: '/a', upstream: U1 }, { prefix: '/b', upstream: U1 }, { prefix: '/c', upstream: U1 }] })
    const b = input({ routes: [{ prefix: '/c', upstream: U1 }, { prefix: '/b', upstream: U1, websocket: false }, { prefix: '/d', upstream: U1 }] })
    resolve(a)
    resolve(b)
    assert.deepEqual(diff(a, b), ['routes[/b] changed', 'routes[/d] added', 'routes[/a] removed'])
  })

  test('the order of routes alone is no change', () => {
    const a = input({ routes: [{ prefix: '/a', upstream: U1 }, { prefix: '/b', upstream: U1 }] })
    const b = input({ routes: [{ prefix: '/b', upstream: U1 }, { prefix: '/a', upstream: U1 }] })
    assert.deepEqual(diff(a, b), [])
  })

  test('no routes on either side', () => {
    assert.deepEqual(diff({}, input()), ['routes[/a] added'])
    assert.deepEqual(diff(input(), {}), ['routes[/a] removed'])
  })

  test('upstreams by name: added, changed, removed', () => {
    const a = input({ upstreams: { one: { targets: [U1] }, two: { targets: [U1] } } })
    const b = input({ upstreams: { one: { targets: [U1, 'http://127.0.0.1:9002'] }, three: { targets: [U1] } } })
    resolve(a)
    resolve(b)
    assert.deepEqual(diff(a, b).sort(), ['upstreams.one', 'upstreams.three', 'upstreams.two'])
    assert.deepEqual(diff(a, structuredClone(a)), [])
  })

  test('top-level sections', () => {
    const sections: Array<[Partial<GatewayConfigInput>, string]> = [
      [{ server: { port: 1 } }, 'server'],
      [{ auth: { cookieName: 'x' } }, 'auth'],
      [{ websocket: { maxPayload: '2mb' } }, 'websocket'],
      [{ rateLimit: { http: { max: 10, window: '1m' } } }, 'rateLimit'],
      [{ admin: { prefix: '/ops' } }, 'admin'],
      [{ redis: { url: 'redis://127.0.0.1:6379' } }, 'redis'],
      [{ metrics: { protected: true } }, 'metrics'],
      [{ plugins: ['./p.js'] }, 'plugins']
    ]
    for (const [extra, name] of sections) {
      resolve(input(extra))
      assert.deepEqual(diff(input(), input(extra)), [name], name)
      assert.deepEqual(diff(input(extra), input()), [name], name)
    }
  })

  test('everything at once: routes first, then upstreams, then sections in a fixed order', () => {
    const a = input()
    const b = input({
      routes: [{ prefix: '/a', upstream: 'up' }],
      upstreams: { up: { targets: [U1] } },
      plugins: ['./p.js'],
      server: { port: 1 },
      metrics: { protected: true }
    })
    resolve(b)
    assert.deepEqual(diff(a, b), ['routes[/a] changed', 'upstreams.up', 'server', 'metrics', 'plugins'])
  })
})
