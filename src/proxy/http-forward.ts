/**
 * One proxied HTTP request, dispatched with undici straight from the client's request to the
 * client's response: the answer's status, headers and body chunks are written as they arrive,
 * with backpressure both ways (undici pauses while the client's socket is full; the upload is
 * read only as fast as the upstream takes it). No stream objects or promises per request: this
 * is the hot path of every proxied request.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Dispatcher } from 'undici'
import { connectionTokens, HOP_BY_HOP } from '../bridge/forward-headers.js'

export interface ForwardOptions {
  /** Target origin, e.g. http://127.0.0.1:9001 */
  origin: string
  /** Path and query to request. */
  path: string
  method: string
  headers: Record<string, string | string[]>
  /** The client's request body, or null when there is none. */
  body: IncomingMessage | null
  /** Time to wait for the answer's headers, then between body chunks (ms). */
  timeout: number
  /**
   * Response headers the gateway itself sets (rate-limit headers, `Connection: close` while
   * draining...), asked for when the upstream's answer starts: sent with the upstream's, and
   * winning over them.
   */
  extraHeaders?: () => Record<string, string | number | string[] | undefined>
  /**
   * The request failed before any of the answer was sent to the client: the caller answers
   * (502/504, or a retry on another target). After that, a failure just ends the response.
   */
  onFailure: (err: Error & { code?: string }) => void
}

/** Response header names never copied from the upstream (hop-by-hop, RFC 9110 7.6.1). */
function isHopByHop (name: string, listed: readonly string[]): boolean {
  return HOP_BY_HOP.has(name) || (listed.length > 0 && listed.includes(name))
}

/** Forwards one request; the response `res` is answered in every case. */
export function forwardRequest (agent: Dispatcher, res: ServerResponse, o: ForwardOptions): void {
  let abort: ((err?: Error) => void) | null = null
  let resume: (() => void) | null = null
  let failed = false
  const onDrain = (): void => { resume?.() }
  // A client that leaves before the answer is complete: the upstream request stops too.
  const onClose = (): void => { if (!res.writableFinished) abort?.() }
  res.once('close', onClose)
  const handler: Dispatcher.DispatchHandler = {
    onConnect (a) {
      abort = a
      if (res.destroyed) a()
    },
    onHeaders (status, raw, resumeFn) {
      if (status < 200) return true
      resume = resumeFn
      // Names listed in any Connection header line are hop-by-hop too.
      let listed: string[] = []
      for (let i = 0; i < raw.length; i += 2) {
        if (raw[i].length === 10 && raw[i].toString('latin1').toLowerCase() === 'connection') listed = listed.concat(connectionTokens(raw[i + 1].toString('latin1')))
      }
      const headers: string[] = []
      const extra = o.extraHeaders?.()
      for (let i = 0; i < raw.length; i += 2) {
        const name = raw[i].toString('latin1')
        const lower = name.toLowerCase()
        if (isHopByHop(lower, listed) || (extra !== undefined && extra[lower] !== undefined)) continue
        headers.push(name, raw[i + 1].toString('latin1'))
      }
      if (extra !== undefined) {
        for (const name in extra) {
          const v = extra[name]
          if (v === undefined) continue
          if (Array.isArray(v)) for (const x of v) headers.push(name, x)
          else headers.push(name, String(v))
        }
      }
      res.writeHead(status, headers)
      return true
    },
    onData (chunk) {
      if (res.write(chunk)) return true
      res.once('drain', onDrain)
      return false
    },
    onComplete () {
      res.end()
    },
    onError (err: Error & { code?: string }) {
      if (failed) return
      failed = true
      res.removeListener('close', onClose)
      if (res.headersSent) res.destroy(err)
      else if (!res.destroyed) o.onFailure(err)
    }
  }
  try {
    agent.dispatch({
      origin: o.origin,
      path: o.path,
      method: o.method as Dispatcher.HttpMethod,
      headers: o.headers,
      body: o.body,
      headersTimeout: o.timeout,
      bodyTimeout: o.timeout
    }, handler)
  } catch (err) {
    // undici refuses some header values synchronously (e.g. an invalid character).
    handler.onError!(err as Error)
  }
}
