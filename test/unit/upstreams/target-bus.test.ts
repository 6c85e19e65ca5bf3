/**
 * The upstream bus's messages as hostile input: every malformed message is refused with a
 * reason, never thrown on; TargetBus drops them (logged, rate limited) and ignores its own.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import type { Redis } from 'ioredis'
import { MAX_TARGET_MESSAGE_LENGTH, TargetBus, parseTargetMessage, type TargetCommand } from '../../../src/upstreams/target-bus.js'

const ok = (m: object): string => JSON.stringify({ from: 'i-1', upstream: 'chat', ...m })

describe('parseTargetMessage', () => {
  test('accepts each command, ignoring unknown fields', () => {
    assert.deepEqual(parseTargetMessage(ok({ op: 'add', url: 'http://10.0.0.1:80', weight: 2, extra: true })), { ok: true, value: { from: 'i-1', cmd: { op: 'add', upstream: 'chat', url: 'http://10.0.0.1:80', weight: 2 } } })
    assert.deepEqual(parseTargetMessage(ok({ op: 'update', target: '10.0.0.1:80', state: 'drain', closeWithinMs: 500 })), { ok: true, value: { from: 'i-1', cmd: { op: 'update', upstream: 'chat', target: '10.0.0.1:80', state: 'drain', closeWithinMs: 500 } } })
    assert.deepEqual(parseTargetMessage(ok({ op: 'remove', target: '10.0.0.1:80', close: false })), { ok: true, value: { from: 'i-1', cmd: { op: 'remove', upstream: 'chat', target: '10.0.0.1:80', close: false } } })
    assert.deepEqual(parseTargetMessage(ok({ op: 'rebalance', minAgeMs: 0 })), { ok: true, value: { from: 'i-1', cmd: { op: 'rebalance', upstream: 'chat', minAgeMs: 0 } } })
  })

  test('refuses anything malformed with a reason', () => {
    const cases: Array<[string, string]> = [
      ['x'.repeat(MAX_TARGET_MESSAGE_LENGTH + 1), 'too-large'],
      ['{', 'not-json'],
      ['null', 'not-object'],
      ['[1]', 'not-object'],
      ['"add"', 'not-object'],
      [JSON.stringify({ upstream: 'chat', op: 'add' }), 'bad-from'],
      [JSON.stringify({ from: '', upstream: 'chat', op: 'add' }), 'bad-from'],
      [JSON.stringify({ from: 'x'.repeat(300), upstream: 'chat', op: 'add' }), 'bad-from'],
      [JSON.stringify({ from: 'i', op: 'add', url: 'http://h', weight: 1 }), 'bad-field'],
      [JSON.stringify({ from: 'i', upstream: 7, op: 'add', url: 'http://h', weight: 1 }), 'bad-field'],
      [ok({ op: 'explode' }), 'bad-op'],
      [ok({ op: { toString: 1 } }), 'bad-op'],
      [ok({ op: 'add', url: 'http://h', weight: -1 }), 'bad-field'],
      [ok({ op: 'add', url: 'http://h', weight: 1.5 }), 'bad-field'],
      [ok({ op: 'add', url: 'http://h', weight: 1001 }), 'bad-field'],
      [ok({ op: 'add', url: '', weight: 1 }), 'bad-field'],
      [ok({ op: 'add', url: ['http://h'], weight: 1 }), 'bad-field'],
      [ok({ op: 'update', weight: 1 }), 'bad-id'],
      [ok({ op: 'update', target: 'h:1', state: 'gone' }), 'bad-field'],
      [ok({ op: 'update', target: 'h:1', closeWithinMs: -5 }), 'bad-field'],
      [ok({ op: 'update', target: 'h:1', closeWithinMs: 1e12 }), 'bad-field'],
      [ok({ op: 'update', target: 'h:1', closeWithinMs: '1s' }), 'bad-field'],
      [ok({ op: 'remove', target: 'h:1' }), 'bad-field'],
      [ok({ op: 'remove', target: 'h:1', close: 'yes' }), 'bad-field'],
      [ok({ op: 'rebalance' }), 'bad-field'],
      [ok({ op: 'rebalance', minAgeMs: Number.NaN }), 'bad-field']
    ]
    for (const [raw, reason] of cases) assert.deepEqual(parseTargetMessage(raw), { ok: false, reason }, raw.slice(0, 80))
  })
})

describe('TargetBus', () => {
  function fakeRedis (): Redis & { published: Array<[string, string]> } {
    const sub = Object.assign(new EventEmitter(), { connect: async () => {}, subscribe: async () => 1, disconnect: () => {} })
    return Object.assign({ published: [] as Array<[string, string]> }, {
      duplicate: () => sub,
      async publish (this: { published: Array<[string, string]> }, channel: string, message: string) { this.published.push([channel, message]); return 1 }
    }) as unknown as Redis & { published: Array<[string, string]> }
  }

  test('hands other instances\' commands on, ignores its own, drops malformed ones with a warning', async () => {
    const redis = fakeRedis()
    const got: Array<[TargetCommand, string]> = []
    const warnings: Array<Record<string, unknown>> = []
    const bus = new TargetBus(redis, 'gw:upstreams', 'me', (cmd, from) => { got.push([cmd, from]) }, { warn: (o) => warnings.push(o as Record<string, unknown>) })
    assert.equal(await bus.publish({ op: 'rebalance', upstream: 'chat', minAgeMs: 5 }), true)
    assert.deepEqual(redis.published, [['gw:upstreams', JSON.stringify({ from: 'me', op: 'rebalance', upstream: 'chat', minAgeMs: 5 })]])
    bus.receive('gw:upstreams', redis.published[0][1])
    assert.deepEqual(got, [], 'its own message')
    bus.receive('gw:upstreams', JSON.stringify({ from: 'other', op: 'remove', upstream: 'chat', target: 'h:1', close: true }))
    assert.deepEqual(got, [[{ op: 'remove', upstream: 'chat', target: 'h:1', close: true }, 'other']])
    bus.receive('gw:upstreams', '{"from":')
    bus.receive('gw:upstreams', 'null')
    bus.receive('gw:elsewhere', JSON.stringify({ from: 'other', op: 'rebalance', upstream: 'chat', minAgeMs: 1 }))
    assert.equal(got.length, 1)
    assert.equal(warnings.length, 1, 'rate limited: one line for the burst')
    assert.equal(warnings[0].reason, 'not-json')
  })

  test('a handler that throws is contained; a failed publish answers false', async () => {
    const redis = fakeRedis()
    ;(redis as unknown as { publish: () => Promise<never> }).publish = async () => { throw new Error('down') }
    const warnings: Array<Record<string, unknown>> = []
    const bus = new TargetBus(redis, 'c', 'me', () => { throw new Error('boom') }, { warn: (o) => warnings.push(o as Record<string, unknown>) })
    assert.doesNotThrow(() => bus.receive('c', JSON.stringify({ from: 'x', op: 'rebalance', upstream: 'u', minAgeMs: 0 })))
    assert.equal(await bus.publish({ op: 'rebalance', upstream: 'u', minAgeMs: 0 }), false)
    assert.deepEqual(warnings.map((w) => w.reason ?? w.op), ['handler-failed', 'rebalance'])
  })
})
