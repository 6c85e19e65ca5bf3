/**
 * Human units in configuration (spec section 3): durations and sizes, as numbers or strings.
 * The schema's string patterns and the parsers must agree, so each accepted form is also checked
 * through resolveConfig.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { parseDuration, parseSize } from '../../../src/config/units.js'
import { resolveConfig } from '../../../src/config/resolve.js'

describe('parseDuration', () => {
  test('a number is milliseconds', () => {
    assert.equal(parseDuration(0), 0)
    assert.equal(parseDuration(1500), 1500)
    assert.equal(parseDuration(2.5), 2.5)
  })

  test('strings with each unit', () => {
    assert.equal(parseDuration('500ms'), 500)
    assert.equal(parseDuration('30s'), 30_000)
    assert.equal(parseDuration('5m'), 300_000)
    assert.equal(parseDuration('1h'), 3_600_000)
    assert.equal(parseDuration('0s'), 0)
    assert.equal(parseDuration('0ms'), 0)
  })

  test('decimals are rounded to whole milliseconds', () => {
    assert.equal(parseDuration('1.5s'), 1500)
    assert.equal(parseDuration('0.5m'), 30_000)
    assert.equal(parseDuration('0.25h'), 900_000)
    assert.equal(parseDuration('1.4ms'), 1)
    assert.equal(parseDuration('1.6ms'), 2)
  })

  test('surrounding and inner spaces and upper-case units are accepted', () => {
    assert.equal(parseDuration(' 30s '), 30_000)
    assert.equal(parseDuration('30 s'), 30_000)
    assert.equal(parseDuration('30S'), 30_000)
    assert.equal(parseDuration('500MS'), 500)
  })

  test('invalid numbers', () => {
    assert.equal(parseDuration(-1), undefined)
    assert.equal(parseDuration(Number.NaN), undefined)
    assert.equal(parseDuration(Number.POSITIVE_INFINITY), undefined)
  })

  test('invalid strings', () => {
    for (const v of ['', ' ', '30', 's', '-1s', '+1s', '1d', '1w', '30 sec', '30secs', '1e3ms', '.5s', '1.s', '1h30m', 'abc', '30s!', '1,5s']) {
      assert.equal(parseDuration(v), undefined, JSON.stringify(v))
    }
  })
})

describe('parseSize', () => {
  test('a number is bytes', () => {
    assert.equal(parseSize(0), 0)
    assert.equal(parseSize(1024), 1024)
  })

  test('strings with each unit', () => {
    assert.equal(parseSize('10b'), 10)
    assert.equal(parseSize('64kb'), 64 * 1024)
    assert.equal(parseSize('1mb'), 1024 * 1024)
    assert.equal(parseSize('1gb'), 1024 ** 3)
    assert.equal(parseSize('0kb'), 0)
  })

  test('decimals are rounded to whole bytes', () => {
    assert.equal(parseSize('1.5kb'), 1536)
    assert.equal(parseSize('0.5mb'), 512 * 1024)
    assert.equal(parseSize('1.5b'), 2)
  })

  test('spaces and upper-case units are accepted', () => {
    assert.equal(parseSize(' 64kb '), 65_536)
    assert.equal(parseSize('64 kb'), 65_536)
    assert.equal(parseSize('1MB'), 1_048_576)
    assert.equal(parseSize('2Kb'), 2048)
  })

  test('invalid numbers: negative, fractional, not finite', () => {
    assert.equal(parseSize(-1), undefined)
    assert.equal(parseSize(1.5), undefined)
    assert.equal(parseSize(Number.NaN), undefined)
    assert.equal(parseSize(Number.POSITIVE_INFINITY), undefined)
  })

  test('invalid strings', () => {
    for (const v of ['', '1024', 'kb', '64k', '1m', '1tb', '-1kb', '1 k b', '1e3b', '.5kb', '64 kilobytes', '1mb2', '1,5kb']) {
      assert.equal(parseSize(v), undefined, JSON.stringify(v))
    }
  })
})

describe('the schema accepts exactly the lower-case forms the parsers read', () => {
  const durations = ['0', '500ms', '30s', '5m', '1h', '1.5s', ' 30s ', '30 s']
  const badDurations = ['30', '1d', '30 sec', '-1s', '1e3ms', '']
  const sizes = ['0', '10b', '64kb', '1mb', '1gb', '1.5kb', ' 64kb ']
  const badSizes = ['1024', '64k', '1tb', '-1kb', '']

  test('durations', () => {
    for (const v of durations) {
      const input = v === '0' ? 0 : v
      const cfg = resolveConfig({ server: { drainTimeout: input } })
      assert.equal(cfg.server.drainTimeout, parseDuration(input), JSON.stringify(v))
    }
    for (const v of badDurations) {
      assert.equal(parseDuration(v), undefined)
      assert.throws(() => resolveConfig({ server: { drainTimeout: v } }), {
        name: 'ConfigError',
        message: `server.drainTimeout: invalid duration ${JSON.stringify(v)} (use milliseconds or a string such as "500ms", "30s", "5m", "1h")`
      })
    }
  })

  test('sizes', () => {
    for (const v of sizes) {
      const input = v === '0' ? 0 : v
      const cfg = resolveConfig({ websocket: { highWaterMark: input } })
      assert.equal(cfg.websocket.highWaterMark, parseSize(input), JSON.stringify(v))
    }
    for (const v of badSizes) {
      assert.equal(parseSize(v), undefined)
      assert.throws(() => resolveConfig({ websocket: { highWaterMark: v } }), {
        name: 'ConfigError',
        message: `websocket.highWaterMark: invalid size ${JSON.stringify(v)} (use bytes or a string such as "64kb", "1mb")`
      })
    }
  })
})
