/**
 * The client's side of a WebSocket handshake, as the gateway serves it: the RFC 6455 4.2.1
 * checks of the request, the Origin allow-list, and the 101 the client gets once the upstream
 * has answered its own (src/bridge/upstream-handshake.ts). Pure: headers in, a coded error or
 * the answer's bytes out.
 */
import type { IncomingHttpHeaders } from 'node:http'
import { codes, type GatewayError } from '../errors.js'
import { acceptKey, SUBPROTOCOL_RE } from './upstream-handshake.js'

const WS_KEY_RE = /^[+/0-9A-Za-z]{22}==$/

/** A refused handshake: the error to answer with, and headers that go with it. */
export interface HandshakeProblem { error: GatewayError, headers?: Record<string, string> }

/**
 * Whether the request asks for a WebSocket upgrade: `Upgrade` lists `websocket` and
 * `Connection` lists `upgrade` (RFC 6455 4.2.1, both case-insensitive). Any other upgrade token
 * (`h2c`, `websockets`) is not a WebSocket handshake and is never switched or forwarded.
 */
export function isWebSocketUpgrade (headers: IncomingHttpHeaders): boolean {
  return listHas(headers.upgrade, 'websocket') && listHas(headers.connection, 'upgrade')
}

/** Whether `Upgrade` lists `websocket` (whatever `Connection` says). */
export function asksForWebSocket (headers: IncomingHttpHeaders): boolean {
  return listHas(headers.upgrade, 'websocket')
}

function listHas (value: string | string[] | undefined, token: string): boolean {
  if (value === undefined) return false
  const s = Array.isArray(value) ? value.join(',') : value
  if (s.length === token.length) return s.toLowerCase() === token
  return s.split(',').some((t) => t.trim().toLowerCase() === token)
}

/** The RFC 6455 4.2.1 checks of a client's handshake: null when it is well formed. */
export function handshakeProblem (method: string, headers: IncomingHttpHeaders): HandshakeProblem | null {
  const key = headers['sec-websocket-key']
  const version = headers['sec-websocket-version']
  if (method !== 'GET') return { error: new codes.GW_ERR_BAD_HANDSHAKE('method must be GET') }
  if (!isWebSocketUpgrade(headers)) return { error: new codes.GW_ERR_BAD_HANDSHAKE('Upgrade must be websocket and Connection must include upgrade') }
  if (typeof key !== 'string' || !WS_KEY_RE.test(key.trim())) return { error: new codes.GW_ERR_BAD_HANDSHAKE('missing or invalid Sec-WebSocket-Key') }
  if (version !== '13' && version !== '8') {
    return { error: new codes.GW_ERR_BAD_HANDSHAKE('unsupported Sec-WebSocket-Version'), headers: { 'sec-websocket-version': '13, 8' } }
  }
  return null
}

/**
 * Whether `origin` may open a WebSocket: always with an empty allow-list; otherwise only a listed
 * one (case-insensitive). Browsers send cookies with cross-site handshakes: an allow-list stops
 * cross-site WebSocket hijacking of cookie-authenticated sockets.
 */
export function originAllowed (origin: string | undefined, allowed: readonly string[]): boolean {
  if (allowed.length === 0) return true
  const o = origin?.toLowerCase()
  return o !== undefined && allowed.some((a) => a.toLowerCase() === o)
}

/**
 * The subprotocol the client's 101 names: the upstream's choice; or, when the only offer was the
 * `bearer.<jwt>` token and the upstream picked none, that offer (browsers fail a handshake that
 * offered subprotocols and got none back); else none ('').
 */
export function answeredProtocol (upstreamChoice: string, bearerOffer: string | undefined, otherOffers: number): string {
  if (upstreamChoice !== '') return upstreamChoice
  return bearerOffer !== undefined && otherOffers === 0 && SUBPROTOCOL_RE.test(bearerOffer) ? bearerOffer : ''
}

/** The client's 101 answer head for its `Sec-WebSocket-Key`. */
export function switchingProtocols (clientKey: string, protocol: string, extensions: string): string {
  return 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Accept: ${acceptKey(clientKey.trim())}\r\n` +
    (protocol === '' ? '' : `Sec-WebSocket-Protocol: ${protocol}\r\n`) +
    (extensions === '' ? '' : `Sec-WebSocket-Extensions: ${extensions}\r\n`) + '\r\n'
}
