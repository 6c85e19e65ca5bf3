/**
 * The configuration of live upstreams: `{ url, weight }` targets beside URL strings,
 * `resolve`, the routes' `rebalance`, and a clear GW_ERR_CONFIG naming the key path for each
 * mistake.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { resolveConfig, targetId } from '../../../src/config/resolve.js'
import { ConfigError } from '../../../src/errors.js'

function throwsConfig (input: unknown, path: string, message: string | RegExp): void {
  assert.throws(() => resolveConfig(input), (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`)
    assert.equal(err.code, 'GW_ERR_CONFIG')
    assert.equal(err.path, path)
    if (typeof message === 'string') assert.equal(err.message, message)
    else assert.match(err.message, message)
    return true
  })
}

describe('live upstream config', () => {
  test('weights, resolve and rebalance are resolved with their defaults', () => {
    const cfg = resolveConfig({
      upstreams: { chat: { targets: ['http://127.0.0.1:9001', { url: 'ws://chat.svc:9000/' }, { url: 'http://127.0.0.1:9003', weight: 0 }, { url: 'http://127.0.0.1:9004', weight: 5 }], resolve: '10s' } },
      routes: [{ prefix: '/a', upstream: 'chat' }, { prefix: '/b', upstream: 'chat', rebalance: false }]
    })
    assert.deepEqual(cfg.upstreams.chat.targets, ['http://127.0.0.1:9001', 'http://chat.svc:9000', 'http://127.0.0.1:9003', 'http://127.0.0.1:9004'])
    assert.deepEqual(cfg.upstreams.chat.weights, [1, 1, 0, 5])
    assert.equal(cfg.upstreams.chat.resolve, 10_000)
    assert.deepEqual(cfg.routes.map((r) => r.rebalance), [true, false])
    const plain = resolveConfig({ upstreams: { u: { targets: ['http://h'] } } })
    assert.equal(plain.upstreams.u.resolve, 0)
    assert.equal(plain.upstreams.u.autoRebalance, null)
    assert.deepEqual(resolveConfig({ upstreams: { u: { targets: ['http://h'], rebalance: { auto: true } } } }).upstreams.u.autoRebalance, { minAgeMs: 60_000 })
    assert.deepEqual(resolveConfig({ upstreams: { u: { targets: ['http://h'], rebalance: { auto: true, minAge: '5s' } } } }).upstreams.u.autoRebalance, { minAgeMs: 5000 })
    assert.equal(resolveConfig({ upstreams: { u: { targets: ['http://h'], rebalance: { auto: false, minAge: '5s' } } } }).upstreams.u.autoRebalance, null)
  })

  test('a target listed twice is one; two targets with one host:port are refused', () => {
    assert.deepEqual(resolveConfig({ upstreams: { u: { targets: ['http://h:1', 'ws://h:1/'] } } }).upstreams.u.targets, ['http://h:1'])
    throwsConfig({ upstreams: { u: { targets: ['http://h:1/a', 'http://h:1/b'] } } }, 'upstreams.u.targets[1]', 'upstreams.u.targets[1]: same host:port "h:1" as another target of this upstream')
  })

  test('mistakes name their key path', () => {
    throwsConfig({ upstreams: { u: { targets: [{ url: 'http://h', weight: -1 }] } } }, 'upstreams.u.targets[0].weight', /must be >= 0/)
    throwsConfig({ upstreams: { u: { targets: [{ url: 'http://h', weight: 1.5 }] } } }, 'upstreams.u.targets[0].weight', /integer/)
    throwsConfig({ upstreams: { u: { targets: [{ url: 'http://h', weight: 1001 }] } } }, 'upstreams.u.targets[0].weight', /must be <= 1000/)
    throwsConfig({ upstreams: { u: { targets: [{ url: 'ftp://h' }] } } }, 'upstreams.u.targets[0].url', 'upstreams.u.targets[0].url: invalid URL "ftp://h"')
    throwsConfig({ upstreams: { u: { targets: [{ url: 'http://h', wieght: 2 }] } } }, 'upstreams.u.targets[0].wieght', 'upstreams.u.targets[0].wieght: unknown key')
    throwsConfig({ upstreams: { u: { targets: [{ weight: 2 }] } } }, 'upstreams.u.targets[0]', 'upstreams.u.targets[0]: must be a URL or { url, weight }')
    throwsConfig({ upstreams: { u: { targets: [42] } } }, 'upstreams.u.targets[0]', 'upstreams.u.targets[0]: must be a URL or { url, weight }')
    throwsConfig({ upstreams: { u: { targets: ['ftp://h'] } } }, 'upstreams.u.targets[0]', 'upstreams.u.targets[0]: invalid URL "ftp://h"')
    throwsConfig({ upstreams: { u: { targets: [{ url: 'http://h/?q=1' }] } } }, 'upstreams.u.targets[0].url', 'upstreams.u.targets[0].url: a target URL cannot have a query or fragment')
    throwsConfig({ upstreams: { u: { targets: ['http://h'], resolve: 'often' } } }, 'upstreams.u.resolve', /invalid duration "often"/)
    throwsConfig({ upstreams: { u: { targets: ['http://h'] } }, routes: [{ prefix: '/', upstream: 'u', rebalance: 'no' }] }, 'routes[0].rebalance', /boolean/)
    throwsConfig({ upstreams: { u: { targets: ['http://h'], rebalance: { minAge: '5s' } } } }, 'upstreams.u.rebalance.auto', 'upstreams.u.rebalance.auto: is required')
    throwsConfig({ upstreams: { u: { targets: ['http://h'], rebalance: { auto: true, minAge: 'old' } } } }, 'upstreams.u.rebalance.minAge', /invalid duration "old"/)
  })

  test('targetId is host:port with the port always written', () => {
    assert.equal(targetId('http://h'), 'h:80')
    assert.equal(targetId('https://h/x'), 'h:443')
    assert.equal(targetId('http://[::1]:9000'), '[::1]:9000')
    assert.equal(targetId('http://10.0.0.1:81/base'), '10.0.0.1:81')
  })
})
