/**
 * Opens the upstream WebSocket before the client is answered (handshake first, upgrade second),
 * and classifies every failure as the HTTP status the client should get instead of a 101.
 * The handshake is a plain HTTP/1.1 upgrade request: what comes back on success is the raw
 * socket, which the frame-level relay (bridge.ts) reads and writes itself.
 */
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import tls from 'node:tls'
import { createHash, randomBytes } from 'node:crypto'
import type { Duplex } from 'node:stream'
import type { IncomingMessage } from 'node:http'

export interface UpstreamHandshakeOptions {
  /** ws:// or wss:// URL with path and query. */
  url: string
  headers: Record<string, string | string[]>
  /** Subprotocols to offer (already without any bearer.<jwt> entry). */
  protocols: string[]
  connectTimeout: number
  /** Extra CA (PEM) for wss:// targets. */
  ca?: string
  /** Aborts the attempt (the client went away). */
  signal?: AbortSignal
}

export type HandshakeResult =
  | {
      ok: true
      /** The upstream connection, paused; frames start at `head`, then the socket's data. */
      socket: Duplex
      head: Buffer
      /** The subprotocol the upstream selected ('' for none). */
      protocol: string
      ms: number
    }
  | { ok: false, status: number, reason: 'refused' | 'timeout' | 'rejected' | 'aborted' | 'protocol', error?: Error, ms: number, upstreamStatus?: number }

/** RFC 6455 subprotocol token (the same rule ws applies to the protocols a client offers). */
export const SUBPROTOCOL_RE = /^[!#$%&'*+\-.0-9A-Z^_`|a-z~]+$/
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

/** The Sec-WebSocket-Accept value for a key (RFC 6455 4.2.2). */
export function acceptKey (key: string): string {
  return createHash('sha1').update(key + GUID).digest('base64')
}

/**
 * Resolves once the upstream answered (or failed); never rejects. On success the socket is
 * paused so that nothing the upstream sends right away is lost before the relay reads it.
 */
export function openUpstream (opts: UpstreamHandshakeOptions): Promise<HandshakeResult> {
  const started = performance.now()
  return new Promise((resolve) => {
    let settled = false
    let req: http.ClientRequest | undefined
    const finish = (r: HandshakeResult): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      opts.signal?.removeEventListener('abort', onAbort)
      resolve(r)
    }
    const elapsed = (): number => performance.now() - started
    const fail = (status: number, reason: 'refused' | 'timeout' | 'rejected' | 'aborted' | 'protocol', error?: Error, upstreamStatus?: number): void => {
      if (settled) return
      finish({ ok: false, status, reason, error, ms: elapsed(), upstreamStatus })
      // A late error from the request being torn down must not become an uncaught exception.
      req?.on('error', noop)
      req?.destroy()
    }
    const onAbort = (): void => fail(499, 'aborted')
    // Started first, so that every early return below goes through `finish`, which clears it.
    const timer = setTimeout(() => fail(504, 'timeout'), opts.connectTimeout)
    // Invalid or duplicated subprotocol tokens: the client's request is at fault.
    const bad = opts.protocols.find((p, i) => !SUBPROTOCOL_RE.test(p) || opts.protocols.indexOf(p) !== i)
    if (bad !== undefined) {
      fail(400, 'protocol', new Error(`invalid or duplicated subprotocol ${JSON.stringify(bad)}`))
      return
    }
    const key = randomBytes(16).toString('base64')
    const headers: Record<string, string | string[]> = {}
    for (const name of Object.keys(opts.headers)) {
      const lower = name.toLowerCase()
      if (lower !== 'sec-websocket-protocol' && lower !== 'sec-websocket-extensions') headers[name] = opts.headers[name]
    }
    headers.connection = 'Upgrade'
    headers.upgrade = 'websocket'
    headers['sec-websocket-version'] = '13'
    headers['sec-websocket-key'] = key
    if (opts.protocols.length > 0) headers['sec-websocket-protocol'] = opts.protocols.join(', ')
    try {
      const url = new URL(opts.url)
      const secure = url.protocol === 'wss:' || url.protocol === 'https:'
      if (!secure && url.protocol !== 'ws:' && url.protocol !== 'http:') throw new Error(`unsupported upstream URL ${url.protocol}`)
      const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
      const port = url.port === '' ? (secure ? 443 : 80) : Number(url.port)
      // The target's own host, without a default port (as ws and browsers send it).
      headers.host = url.host
      // Credentials in the target URL become Basic auth, unless the request carries its own.
      if ((url.username !== '' || url.password !== '') && !Object.keys(headers).some((n) => n.toLowerCase() === 'authorization')) {
        headers.authorization = 'Basic ' + Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')
      }
      // Without an agent: the upgraded socket leaves HTTP behind, so there is nothing to pool.
      req = (secure ? https : http).request({
        method: 'GET',
        host,
        port,
        path: url.pathname + url.search,
        headers,
        createConnection: secure
          ? () => tls.connect({ host, port, ca: opts.ca, servername: net.isIP(host) === 0 ? host : undefined, ALPNProtocols: ['http/1.1'] })
          : () => net.connect({ host, port, noDelay: true })
      })
    } catch (err) {
      // An invalid URL or header value: the client's request is at fault.
      fail(400, 'protocol', err as Error)
      return
    }
    if (opts.signal !== undefined) {
      if (opts.signal.aborted) { onAbort(); return }
      opts.signal.addEventListener('abort', onAbort, { once: true })
    }
    req.on('upgrade', (res: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (settled) { socket.destroy(); return }
      const problem = checkAnswer(res, key, opts.protocols)
      if (problem !== null) {
        socket.destroy()
        fail(502, 'protocol', new Error(problem))
        return
      }
      socket.pause()
      ;(socket as net.Socket).setNoDelay?.(true)
      ;(socket as net.Socket).setTimeout?.(0)
      // Until the relay takes the socket over, an error here must not crash the process; the
      // relay sees the socket closed.
      socket.on('error', noop)
      const chosen = res.headers['sec-websocket-protocol']
      finish({ ok: true, socket, head, protocol: typeof chosen === 'string' ? chosen : '', ms: elapsed() })
    })
    req.on('response', (res: IncomingMessage) => {
      res.resume()
      const status = res.statusCode ?? 502
      // A 4xx/5xx goes to the client as it is; any other answer is not a WebSocket upstream: 502.
      fail(status >= 400 && status <= 599 ? status : 502, 'rejected', undefined, status)
    })
    req.on('error', (err: Error) => {
      // Connection and TLS errors (ECONNREFUSED, ERR_TLS_...) make the target unhealthy; a broken
      // HTTP answer (HPE_...) is the upstream's fault too, but says nothing of its liveness.
      const code = (err as NodeJS.ErrnoException).code
      fail(502, code === undefined || code.startsWith('E') ? 'refused' : 'protocol', err)
    })
    req.end()
  })
}

/** What is wrong with a 101 answer, or null (RFC 6455 4.1, as ws's client checks it). */
function checkAnswer (res: IncomingMessage, key: string, offered: readonly string[]): string | null {
  if (res.headers.upgrade?.toLowerCase() !== 'websocket') return 'Invalid Upgrade header'
  if (res.headers['sec-websocket-accept'] !== acceptKey(key)) return 'Invalid Sec-WebSocket-Accept header'
  const chosen = res.headers['sec-websocket-protocol']
  if (chosen !== undefined) {
    if (offered.length === 0) return 'Server sent a subprotocol but none was requested'
    if (!offered.includes(chosen)) return 'Server sent an invalid subprotocol'
  }
  // No extension was offered, so none may be accepted.
  if (res.headers['sec-websocket-extensions'] !== undefined) return 'Server indicated an extension that was not requested'
  return null
}

function noop (): void {}
