import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Readable } from 'node:stream'
import { readAtMost } from '../../../src/http/body.js'

test('readAtMost: the whole body up to the limit, null past it, and the rest left unread', async () => {
  assert.deepEqual(await readAtMost(Readable.from([Buffer.from('ab'), Buffer.from('cd')]), 4), Buffer.from('abcd'))
  assert.deepEqual(await readAtMost(Readable.from([]), 0), Buffer.alloc(0))
  let pulled = 0
  async function * endless (): AsyncGenerator<Uint8Array> { for (;;) { pulled++; yield new Uint8Array(1024) } }
  assert.equal(await readAtMost(endless(), 4096), null)
  assert.equal(pulled, 5, 'stops at the first chunk past the limit')
})
