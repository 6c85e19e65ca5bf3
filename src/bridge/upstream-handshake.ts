/**
 * Opens the upstream WebSocket before the client is answered (handshake first, upgrade second),
 * and classifies every failure as the HTTP status the client should get instead of a 101.
 */
import WebSocket from 'ws'
import type { IncomingMessage } from 'node:http'

export interface UpstreamHandshakeOptions {
  /** ws:// or wss:// URL with path and query. */
  url: string
  headers: Record<string, string | string[]>
  /** Subprotocols to offer (already without any bearer.<jwt> entry). */
  protocols: string[]
  connectTimeout: number
  maxPayload: number
  /** Extra CA (PEM) for wss:// targets. */
  ca?: string
  /** Aborts the attempt (the client went away). */
  signal?: AbortSignal
}

export type HandshakeResult =
  | { ok: true, socket: WebSocket, ms: number }
  | { ok: false, status: number, reason: 'refused' | 'timeout' | 'rejected' | 'aborted' | 'protocol', error?: Error, ms: number, upstreamStatus?: number }

/** RFC 6455 subprotocol token (the same rule ws applies to the protocols a client offers). */
const SUBPROTOCOL_RE = /^[!#$%&'*+\-.0-9A-Z^_`|a-z~]+$/

/**
 * Resolves once the upstream answered (or failed); never rejects. On success the socket is
 * paused so that no message the upstream sends right away is lost before the bridge listens.
 * The socket's `protocol` is the subprotocol the upstream selected ('' for none).
 */
export function openUpstream (opts: UpstreamHandshakeOptions): Promise<HandshakeResult> {
  const started = performance.now()
  return new Promise((resolve) => {
    let settled = false
    let ws: WebSocket | undefined
    const finish = (r: HandshakeResult): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      opts.signal?.removeEventListener('abort', onAbort)
      resolve(r)
    }
    const elapsed = (): number => performance.now() - started
    const fail = (status: number, reason: 'refused' | 'timeout' | 'rejected' | 'aborted' | 'protocol', error?: Error, upstreamStatus?: number): void => {
      if (ws !== undefined) {
        ws.removeAllListeners()
        // A late error from the socket being torn down must not become an uncaught exception.
        ws.on('error', noop)
        ws.terminate()
      }
      finish({ ok: false, status, reason, error, ms: elapsed(), upstreamStatus })
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
    // The offers go as a plain header rather than as ws's `protocols` argument: ws's client fails a
    // 101 that selects none of the offered subprotocols, but the gateway must pass that answer on
    // (the upstream's choice, none included, is what the client gets). The upstream's choice is
    // checked against the offers in the 'upgrade' listener below instead.
    const headers: Record<string, string | string[]> = { ...opts.headers }
    for (const name of Object.keys(headers)) if (name.toLowerCase() === 'sec-websocket-protocol') delete headers[name]
    if (opts.protocols.length > 0) headers['sec-websocket-protocol'] = opts.protocols.join(', ')
    try {
      ws = new WebSocket(opts.url, {
        headers: headers as Record<string, string>,
        maxPayload: opts.maxPayload,
        perMessageDeflate: false,
        followRedirects: false,
        ca: opts.ca
      })
    } catch (err) {
      // An invalid URL or header value: the client's request is at fault.
      fail(400, 'protocol', err as Error)
      return
    }
    const socket = ws
    if (opts.signal !== undefined) {
      if (opts.signal.aborted) { onAbort(); return }
      opts.signal.addEventListener('abort', onAbort, { once: true })
    }
    let selected = ''
    socket.once('upgrade', (res: IncomingMessage) => {
      const chosen = res.headers['sec-websocket-protocol']
      // One that was offered is taken out of ws's view (it offered none, so it would refuse any);
      // one that was not offered is left for ws to refuse ("Server sent a subprotocol but none
      // was requested"), which ends in the 'error' listener: 502.
      if (chosen !== undefined && opts.protocols.includes(chosen)) {
        selected = chosen
        delete res.headers['sec-websocket-protocol']
      }
    })
    socket.once('open', () => {
      socket.pause()
      socket.removeAllListeners()
      if (selected !== '') Object.defineProperty(socket, 'protocol', { value: selected, enumerable: true, configurable: true })
      finish({ ok: true, socket, ms: elapsed() })
    })
    socket.once('unexpected-response', (_req, res: IncomingMessage) => {
      res.resume()
      const status = res.statusCode ?? 502
      // A 4xx/5xx goes to the client as it is; any other answer is not a WebSocket upstream: 502.
      fail(status >= 400 && status <= 599 ? status : 502, 'rejected', undefined, status)
    })
    socket.once('error', (err: Error) => {
      // A 101 with a subprotocol we did not offer, a bad accept key etc. is the upstream's fault.
      const code = (err as NodeJS.ErrnoException).code
      fail(502, code === undefined || code.startsWith('E') ? 'refused' : 'protocol', err)
    })
  })
}

function noop (): void {}
