/**
 * The errors module: every key is its own stable code, every error has an HTTP status, and the
 * JSON body of an error reply has the documented shape.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { codes, errorBody } from '../../src/errors.js'

test('each key of codes equals the code of the error it makes, with a 4xx/5xx status and a status text', () => {
  for (const [key, Err] of Object.entries(codes)) {
    const err = new Err('x') as Error & { code: string, statusCode: number }
    assert.equal(err.code, key)
    assert.match(key, /^GW_ERR_[A-Z_]+$/)
    assert.ok(err.statusCode >= 400 && err.statusCode <= 599, `${key}: status ${err.statusCode}`)
    const body = errorBody(err)
    assert.deepEqual(Object.keys(body), ['statusCode', 'code', 'error', 'message'])
    assert.equal(body.code, key)
    assert.notEqual(body.error, 'Error', `${key}: a status text for ${err.statusCode}`)
  }
})

test('errorBody of an error without code or status is a 500 GW_ERR_INTERNAL', () => {
  assert.deepEqual(errorBody(new Error('boom')), { statusCode: 500, code: 'GW_ERR_INTERNAL', error: 'Internal Server Error', message: 'boom' })
})
