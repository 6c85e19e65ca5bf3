/**
 * src/bridge/client-handshake.ts: the RFC 6455 4.2.1 checks of a client's handshake
 * (handshakeProblem), what counts as a WebSocket upgrade (isWebSocketUpgrade, asksForWebSocket),
 * the Origin allow-list, the subprotocol the client's 101 names, and the 101's exact bytes
 * (Sec-WebSocket-Accept checked against the RFC 6455 1.3 sample key).
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import { answeredProtocol, asksForWebSocket, handshakeProblem, isWebSocketUpgrade, originAllowed, switchingProtocols } from '../../../src/bridge/client-handshake.js'

const SAMPLE_KEY = 'dGhlIHNhbXBsZSBub25jZQ=='
// The example of RFC 6455 1.3; also computed independently in the first switchingProtocols test.
const SAMPLE_ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo='

const good = (extra: IncomingHttpHeaders = {}): IncomingHttpHeaders => ({
  upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-key': SAMPLE_KEY, 'sec-websocket-version': '13', ...extra
})

describe('isWebSocketUpgrade and asksForWebSocket', () => {
  test('Upgrade: websocket with Connection: upgrade, in any case', () => {
    assert.equal(isWebSocketUpgrade({ upgrade: 'websocket', connection: 'upgrade' }), true)
    assert.equal(isWebSocketUpgrade({ upgrade: 'WebSocket', connection: 'UPGRADE' }), true)
  })

  test('tokens in lists, with spaces', () => {
    assert.equal(isWebSocketUpgrade({ upgrade: 'h2c, websocket', connection: 'keep-alive, Upgrade' }), true)
    assert.equal(isWebSocketUpgrade({ upgrade: ' websocket ', connection: 'keep-alive ,upgrade ' }), true)
  })

  test('array values are lists too', () => {
    const h = { upgrade: ['websocket'], connection: ['keep-alive', 'Upgrade'] } as unknown as IncomingHttpHeaders
    assert.equal(isWebSocketUpgrade(h), true)
  })

  test('other upgrade tokens, near misses, or a missing header: no', () => {
    assert.equal(isWebSocketUpgrade({ upgrade: 'h2c', connection: 'upgrade' }), false)
    assert.equal(isWebSocketUpgrade({ upgrade: 'websockets', connection: 'upgrade' }), false)
    assert.equal(isWebSocketUpgrade({ upgrade: 'websocket/13', connection: 'upgrade' }), false)
    assert.equal(isWebSocketUpgrade({ upgrade: 'websocket', connection: 'keep-alive' }), false)
    assert.equal(isWebSocketUpgrade({ upgrade: 'websocket', connection: 'upgrades' }), false)
    assert.equal(isWebSocketUpgrade({ upgrade: 'websocket' }), false)
    assert.equal(isWebSocketUpgrade({ connection: 'upgrade' }), false)
    assert.equal(isWebSocketUpgrade({}), false)
  })

  test('asksForWebSocket looks at Upgrade only', () => {
    assert.equal(asksForWebSocket({ upgrade: 'websocket' }), true)
    assert.equal(asksForWebSocket({ upgrade: 'foo, WEBSOCKET', connection: 'close' }), true)
    assert.equal(asksForWebSocket({ upgrade: 'h2c', connection: 'upgrade' }), false)
    assert.equal(asksForWebSocket({}), false)
  })
})

describe('handshakeProblem', () => {
  const problem = (method: string, h: IncomingHttpHeaders): { code: string, status: number | undefined, message: string, headers?: Record<string, string> } | null => {
    const p = handshakeProblem(method, h)
    return p === null ? null : { code: p.error.code, status: p.error.statusCode, message: p.error.message, ...(p.headers === undefined ? {} : { headers: p.headers }) }
  }

  test('a well-formed handshake has none (version 13 or 8)', () => {
    assert.equal(handshakeProblem('GET', good()), null)
    assert.equal(handshakeProblem('GET', good({ 'sec-websocket-version': '8' })), null)
    assert.equal(handshakeProblem('GET', good({ 'sec-websocket-key': ` ${SAMPLE_KEY} ` })), null)
  })

  test('the method must be GET (and is checked first)', () => {
    for (const m of ['POST', 'get', 'HEAD', 'CONNECT']) {
      assert.deepEqual(problem(m, {}), { code: 'GW_ERR_BAD_HANDSHAKE', status: 400, message: 'invalid WebSocket handshake: method must be GET' }, m)
    }
  })

  test('Upgrade and Connection must ask for a WebSocket', () => {
    for (const h of [good({ upgrade: 'h2c' }), good({ connection: 'keep-alive' }), good({ upgrade: undefined })]) {
      assert.equal(problem('GET', h)?.message, 'invalid WebSocket handshake: Upgrade must be websocket and Connection must include upgrade')
    }
  })

  test('Sec-WebSocket-Key must be 16 bytes of base64', () => {
    const bad = [undefined, '', 'abc', 'dGhlIHNhbXBsZSBub25jZQ=', 'dGhlIHNhbXBsZSBub25jZQ===', 'dGhlIHNhbXBsZSBub25jZ===', 'dGhlIHNhbXBsZSBub25jZQ', 'dGhlIHNhbXBsZSBub25jZ-==', 'dGhlIHNhbXBsZSBub25j ZQ==', 'ZGhlIHNhbXBsZSBub25jZSBub25jZQ==']
    for (const key of bad) {
      assert.deepEqual(problem('GET', good({ 'sec-websocket-key': key })), { code: 'GW_ERR_BAD_HANDSHAKE', status: 400, message: 'invalid WebSocket handshake: missing or invalid Sec-WebSocket-Key' }, String(key))
    }
    const two = good({ 'sec-websocket-key': [SAMPLE_KEY, SAMPLE_KEY] as unknown as string })
    assert.equal(problem('GET', two)?.message, 'invalid WebSocket handshake: missing or invalid Sec-WebSocket-Key')
  })

  test('an unsupported version answers with the supported ones', () => {
    for (const v of [undefined, '', '12', '14', '13, 8', ' 13']) {
      assert.deepEqual(problem('GET', good({ 'sec-websocket-version': v })), {
        code: 'GW_ERR_BAD_HANDSHAKE', status: 400, message: 'invalid WebSocket handshake: unsupported Sec-WebSocket-Version', headers: { 'sec-websocket-version': '13, 8' }
      }, String(v))
    }
  })

  test('checks run in order: method, upgrade, key, version', () => {
    const all = { upgrade: 'h2c', 'sec-websocket-key': 'x', 'sec-websocket-version': '1' }
    assert.match(problem('POST', all)!.message, /method/)
    assert.match(problem('GET', all)!.message, /Upgrade/)
    assert.match(problem('GET', { ...all, upgrade: 'websocket', connection: 'upgrade' })!.message, /Key/)
    assert.match(problem('GET', { ...all, upgrade: 'websocket', connection: 'upgrade', 'sec-websocket-key': SAMPLE_KEY })!.message, /Version/)
  })
})

describe('originAllowed', () => {
  test('an empty allow-list allows anything, even no Origin', () => {
    assert.equal(originAllowed(undefined, []), true)
    assert.equal(originAllowed('https://evil.example', []), true)
  })

  test('otherwise only a listed origin, compared case-insensitively', () => {
    const list = ['https://app.example', 'HTTP://Local.Example:8080']
    assert.equal(originAllowed('https://app.example', list), true)
    assert.equal(originAllowed('HTTPS://APP.EXAMPLE', list), true)
    assert.equal(originAllowed('http://local.example:8080', list), true)
    assert.equal(originAllowed('https://app.example.evil', list), false)
    assert.equal(originAllowed('https://app.example:443', list), false)
    assert.equal(originAllowed('http://app.example', list), false)
    assert.equal(originAllowed('null', list), false)
    assert.equal(originAllowed(undefined, list), false)
    assert.equal(originAllowed('', list), false)
  })
})

describe('answeredProtocol', () => {
  test('the upstream\'s choice wins', () => {
    assert.equal(answeredProtocol('chat', 'bearer.x', 1), 'chat')
    assert.equal(answeredProtocol('chat', undefined, 0), 'chat')
  })

  test('no choice, and the bearer offer was the only one: the bearer offer', () => {
    assert.equal(answeredProtocol('', 'bearer.eyJ.abc-_x', 0), 'bearer.eyJ.abc-_x')
  })

  test('no choice and other offers, or no bearer offer: none', () => {
    assert.equal(answeredProtocol('', 'bearer.x', 1), '')
    assert.equal(answeredProtocol('', undefined, 0), '')
  })

  test('a bearer offer that is not a valid subprotocol token is never echoed', () => {
    assert.equal(answeredProtocol('', 'bearer.a=b', 0), '')
    assert.equal(answeredProtocol('', 'bearer.a b', 0), '')
    assert.equal(answeredProtocol('', 'bearer.a\r\nX-Evil: 1', 0), '')
  })
})

describe('switchingProtocols', () => {
  test('the RFC 6455 sample key gives the RFC\'s accept value', () => {
    assert.equal(createHash('sha1').update(SAMPLE_KEY + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64'), SAMPLE_ACCEPT)
    assert.equal(switchingProtocols(SAMPLE_KEY, '', ''),
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Accept: ${SAMPLE_ACCEPT}\r\n\r\n`)
  })

  test('the key is trimmed before hashing', () => {
    assert.equal(switchingProtocols(`  ${SAMPLE_KEY} `, '', ''), switchingProtocols(SAMPLE_KEY, '', ''))
  })

  test('with a subprotocol and extensions', () => {
    assert.equal(switchingProtocols(SAMPLE_KEY, 'chat', 'permessage-deflate; client_max_window_bits=15'),
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Accept: ${SAMPLE_ACCEPT}\r\n` +
      'Sec-WebSocket-Protocol: chat\r\n' +
      'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=15\r\n\r\n')
  })

  test('one ends with a blank line; a different key gives a different accept', () => {
    const head = switchingProtocols('AAAAAAAAAAAAAAAAAAAAAA==', 'p', '')
    assert.ok(head.endsWith('Sec-WebSocket-Protocol: p\r\n\r\n'))
    assert.equal(head.split('\r\n\r\n').length, 2)
    assert.equal(head.includes(SAMPLE_ACCEPT), false)
  })
})
