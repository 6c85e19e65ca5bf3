/**
 * `server.drainPace` in the configuration: a duration, default 0 (DEFAULT_DRAIN_PACE), shorter
 * than `server.drainTimeout`; wrong values are a GW_ERR_CONFIG naming `server.drainPace`.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { resolveConfig } from '../../../src/config/resolve.js'
import { loadConfig } from '../../../src/config/load.js'
import { DEFAULT_DRAIN_PACE } from '../../../src/config/defaults.js'
import { ConfigError } from '../../../src/errors.js'

function configError (fn: () => unknown): ConfigError {
  try {
    fn()
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`)
    assert.equal(err.code, 'GW_ERR_CONFIG')
    return err
  }
  assert.fail('no error')
}

describe('server.drainPace', () => {
  test('default 0: all at once', () => {
    assert.equal(DEFAULT_DRAIN_PACE, 0)
    assert.equal(resolveConfig({}).server.drainPace, 0)
  })

  test('durations: milliseconds or strings', () => {
    assert.equal(resolveConfig({ server: { drainPace: '2s' } }).server.drainPace, 2000)
    assert.equal(resolveConfig({ server: { drainPace: 750 } }).server.drainPace, 750)
    assert.equal(resolveConfig({ server: { drainPace: '1m', drainTimeout: '2m' } }).server.drainPace, 60_000)
    assert.equal(resolveConfig({ server: { drainPace: 0, drainTimeout: 0 } }).server.drainPace, 0)
  })

  test('not shorter than drainTimeout: refused, naming server.drainPace', () => {
    for (const server of [{ drainPace: '10s' }, { drainPace: '5s', drainTimeout: '5s' }, { drainPace: '6s', drainTimeout: '5s' }, { drainPace: 1, drainTimeout: 0 }]) {
      const err = configError(() => resolveConfig({ server }))
      assert.equal(err.path, 'server.drainPace')
      assert.match(err.message, /^server\.drainPace: must be shorter than server\.drainTimeout \(\d+ms\)/)
    }
  })

  test('hostile values: a clear error naming the key', () => {
    for (const drainPace of ['soon', '-1s', -5, true, { s: 1 }, '1.5.s']) {
      const err = configError(() => resolveConfig({ server: { drainPace } } as never))
      assert.equal(err.path, 'server.drainPace', String(drainPace))
      assert.ok(err.message.startsWith('server.drainPace: '), err.message)
      assert.ok(!err.message.includes('\n'))
    }
  })

  test('from the environment-less file loader too', () => {
    const { config } = loadConfig({ argv: [], env: { UPSTREAM_URL: 'http://127.0.0.1:1' } })
    assert.equal(config.server.drainPace, 0)
  })
})
