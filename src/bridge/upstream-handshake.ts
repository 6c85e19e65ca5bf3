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
  | { ok: false, status: number, reason: 'refused' | 'timeout' | 'rejected' | 'aborted' | 'protocol', error?: Error, ms: number }

/**
 * Resolves once the upstream answered (or failed); never rejects. On success the socket is
 * paused so that no message the upstream sends right away is lost before the bridge listens.
 */
export function openUpstream (opts: UpstreamHandshakeOptions): Promise<HandshakeResult> {
  const started = performance.now()
  return new Promise((resolve) => {
    let settled = false
    let ws: WebSocket
    const finish = (r: HandshakeResult): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      opts.signal?.removeEventListener('abort', onAbort)
      resolve(r)
    }
    const elapsed = (): number => performance.now() - started
    const fail = (status: number, reason: 'refused' | 'timeout' | 'rejected' | 'aborted' | 'protocol', error?: Error): void => {
      ws.removeAllListeners()
      // A late error from the socket being torn down must not become an uncaught exception.
      ws.on('error', noop)
      ws.terminate()
      finish({ ok: false, status, reason, error, ms: elapsed() })
    }
    const onAbort = (): void => fail(499, 'aborted')
    try {
      ws = new WebSocket(opts.url, opts.protocols, {
        headers: opts.headers as Record<string, string>,
        maxPayload: opts.maxPayload,
        perMessageDeflate: false,
        followRedirects: false,
        ca: opts.ca
      })
    } catch (err) {
      // Invalid subprotocol tokens or URL: the client's request is at fault.
      finish({ ok: false, status: 400, reason: 'protocol', error: err as Error, ms: elapsed() })
      return
    }
    const timer = setTimeout(() => fail(504, 'timeout'), opts.connectTimeout)
    if (opts.signal !== undefined) {
      if (opts.signal.aborted) { onAbort(); return }
      opts.signal.addEventListener('abort', onAbort, { once: true })
    }
    ws.once('open', () => {
      ws.pause()
      ws.removeAllListeners()
      finish({ ok: true, socket: ws, ms: elapsed() })
    })
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      res.resume()
      const status = res.statusCode ?? 502
      fail(status >= 400 && status <= 599 ? status : 502, 'rejected')
    })
    ws.once('error', (err: Error) => {
      // A 101 with a subprotocol we did not offer, a bad accept key etc. is the upstream's fault.
      const code = (err as NodeJS.ErrnoException).code
      fail(502, code === undefined || code.startsWith('E') ? 'refused' : 'protocol', err)
    })
  })
}

function noop (): void {}
