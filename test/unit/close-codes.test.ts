import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import {
  CLOSE_ABNORMAL, CLOSE_BAD_GATEWAY, CLOSE_GOING_AWAY, CLOSE_NO_STATUS, CLOSE_NORMAL, CLOSE_POLICY,
  CLOSE_SERVICE_RESTART, CLOSE_TLS, CLOSE_TOO_BIG, CLOSE_INTERNAL, REASON_CLIENT_LOST, REASON_UPSTREAM_LOST,
  isAdminCloseCode, isSendableCode, relayClose
} from '../../src/close-codes.js'

// ws does not export lib/validation.js (package "exports"), but the file is there: load it by path
// so that the rule is checked against the very ws version the gateway runs with.
const require = createRequire(import.meta.url)
const { isValidStatusCode } = require(join(dirname(require.resolve('ws')), 'lib', 'validation.js')) as { isValidStatusCode: (code: number) => boolean }

test('isSendableCode is exactly ws\'s isValidStatusCode, for every code from 0 to 65535', () => {
  const differ: number[] = []
  for (let code = 0; code <= 65535; code++) if (isSendableCode(code) !== isValidStatusCode(code)) differ.push(code)
  assert.deepEqual(differ, [])
})

test('isSendableCode against an explicit table (RFC 6455 7.4 and the IANA registry)', () => {
  const sendable = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]
  const not = [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535, -1000]
  for (const c of sendable) assert.equal(isSendableCode(c), true, `${c} is sendable`)
  for (const c of not) assert.equal(isSendableCode(c), false, `${c} is not sendable`)
})

test('close-code constants have their RFC 6455 / IANA values', () => {
  assert.deepEqual(
    [CLOSE_NORMAL, CLOSE_GOING_AWAY, CLOSE_NO_STATUS, CLOSE_ABNORMAL, CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_INTERNAL, CLOSE_SERVICE_RESTART, CLOSE_BAD_GATEWAY, CLOSE_TLS],
    [1000, 1001, 1005, 1006, 1008, 1009, 1011, 1012, 1014, 1015])
})

test('relayClose: 1005 (no status) relays as a close frame without status, on either side', () => {
  for (const from of ['client', 'upstream'] as const) {
    assert.deepEqual(relayClose(from, 1005, ''), { code: undefined, reason: '' })
    // A frame without a status cannot carry a reason either.
    assert.deepEqual(relayClose(from, 1005, 'ignored'), { code: undefined, reason: '' })
  }
})

test('relayClose: 1006 and 1015 (never on the wire) become 1014 from the upstream, 1001 from the client', () => {
  for (const code of [1006, 1015]) {
    assert.deepEqual(relayClose('upstream', code, ''), { code: 1014, reason: REASON_UPSTREAM_LOST })
    assert.deepEqual(relayClose('client', code, 'whatever'), { code: 1001, reason: REASON_CLIENT_LOST })
  }
  assert.equal(REASON_UPSTREAM_LOST, 'upstream connection lost')
})

test('relayClose: sendable codes pass through with their reason, on either side', () => {
  for (const from of ['client', 'upstream'] as const) {
    assert.deepEqual(relayClose(from, 1000, ''), { code: 1000, reason: '' })
    assert.deepEqual(relayClose(from, 1000, 'done'), { code: 1000, reason: 'done' })
    assert.deepEqual(relayClose(from, 4000, 'custom'), { code: 4000, reason: 'custom' })
    assert.deepEqual(relayClose(from, 1014, 'its own 1014'), { code: 1014, reason: 'its own 1014' })
    assert.deepEqual(relayClose(from, 3000, ''), { code: 3000, reason: '' })
  }
})

test('relayClose: any other unsendable code is mapped like an abnormal end', () => {
  for (const code of [0, 999, 1004, 1016, 2999, 5000]) {
    assert.deepEqual(relayClose('upstream', code, 'x'), { code: 1014, reason: REASON_UPSTREAM_LOST }, `${code} from upstream`)
    assert.deepEqual(relayClose('client', code, 'x'), { code: 1001, reason: REASON_CLIENT_LOST }, `${code} from client`)
  }
})

test('relayClose never yields a code ws would refuse to send', () => {
  for (const from of ['client', 'upstream'] as const) {
    for (let code = 0; code <= 6000; code++) {
      const r = relayClose(from, code, 'r')
      assert.ok(r.code === undefined || isValidStatusCode(r.code), `${from} ${code} -> ${r.code}`)
    }
  }
})

test('isAdminCloseCode: 1000 and the application ranges only', () => {
  for (const c of [1000, 3000, 4000, 4999]) assert.equal(isAdminCloseCode(c), true, String(c))
  for (const c of [999, 1001, 1005, 1006, 1008, 1011, 1014, 2999, 5000]) assert.equal(isAdminCloseCode(c), false, String(c))
})
