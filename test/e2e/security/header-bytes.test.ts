/**
 * Header bytes from 0x80 to 0xFF (obs-text, RFC 9110 5.5) pass through the gateway as the same
 * single bytes, in both directions, on HTTP requests and WebSocket handshakes alike. A proxy that
 * re-encodes them (one byte into two UTF-8 bytes) hands the upstream a value its client never
 * sent. The upstream here is a raw TCP server, so the assertions are on the bytes it read.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { gatewayFor } from '../../helpers/gateway.js'
import { acceptKey } from '../../../src/bridge/upstream-handshake.js'
import { rawHttpUpstream } from '../conformance/support/http.js'
import type { Head } from '../conformance/support/raw.js'

/** A header value with obs-text: é (0xE9), ÿ (0xFF) and 0x80, one byte each. */
const VALUE = Buffer.from('caf\xe9 \xff\x80', 'latin1')
const END = Buffer.from('\r\n\r\n')

/** The upstream's answer: a 101 to a handshake, else a 200 with the same obs-text in a header. */
function respond (head: Head): Buffer | string {
  const key = head.headers['sec-websocket-key']
  if (key !== undefined) return `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\n\r\n`
  return Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-back: '), VALUE, Buffer.from('\r\n\r\nok')])
}

/** Writes `head` (bytes) on a new connection; resolves with the bytes of the answer's head. */
async function exchange (port: number, head: Buffer): Promise<Buffer> {
  return await new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.write(head))
    let buf = Buffer.alloc(0)
    const timer = setTimeout(() => { s.destroy(); reject(new Error('no answer')) }, 5000)
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c])
      const end = buf.indexOf(END)
      if (end === -1) return
      clearTimeout(timer)
      s.destroy()
      resolve(buf.subarray(0, end + 4))
    })
    s.on('error', reject)
  })
}

const line = (name: string): Buffer => Buffer.concat([Buffer.from(`${name}: `), VALUE, Buffer.from('\r\n')])

/** The value bytes of header `name` in a head (case-insensitive name). */
function valueIn (head: Buffer, name: string): Buffer | undefined {
  const text = head.toString('latin1')
  const at = text.toLowerCase().indexOf(`\r\n${name}:`)
  if (at === -1) return undefined
  const start = at + name.length + 3
  const end = text.indexOf('\r\n', start)
  return head.subarray(start, end).subarray(text[start] === ' ' ? 1 : 0)
}

test('obs-text header bytes reach the upstream unchanged: HTTP request and WebSocket handshake', async (t) => {
  const up = await rawHttpUpstream(t, respond)
  const gw = await gatewayFor(t, { routes: [{ prefix: '/', upstream: up.url }] })

  const http = await exchange(gw.port, Buffer.concat([Buffer.from(`GET /x HTTP/1.1\r\nHost: 127.0.0.1:${gw.port}\r\n`), line('X-Name'), Buffer.from('\r\n')]))
  assert.match(http.toString('latin1'), /^HTTP\/1\.1 200 /)
  assert.deepEqual(valueIn(up.requests.at(-1)!.raw, 'x-name'), VALUE, 'HTTP: the upstream read the same bytes')
  assert.deepEqual(valueIn(http, 'x-back'), VALUE, 'HTTP: the client read the upstream\'s bytes')

  const ws = await exchange(gw.port, Buffer.concat([
    Buffer.from(`GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${gw.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n`),
    line('X-Name'), Buffer.from('\r\n')
  ]))
  assert.match(ws.toString('latin1'), /^HTTP\/1\.1 101 /)
  const head = up.requests.at(-1)!.raw
  assert.match(head.toString('latin1'), /^GET \/ws HTTP\/1\.1\r\n/)
  assert.deepEqual(valueIn(head, 'x-name'), VALUE, 'WebSocket: the upstream read the same bytes')
})
