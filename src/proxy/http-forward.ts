/**
 * One proxied HTTP request, dispatched with undici straight from the client's request to the
 * client's response: the answer's status, headers and body chunks are written as they arrive,
 * with backpressure both ways (undici pauses while the client's socket is full; the upload is
 * read only as fast as the upstream takes it). No stream objects or promises per request: this
 * is the hot path of every proxied request.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Transform, type Readable } from 'node:stream'
import type { Dispatcher } from 'undici'
import { connectionTokens, HOP_BY_HOP } from '../edge/forward-headers.js'
import { codes } from '../errors.js'

/** What the gateway adds to the response's Via (RFC 9110 7.6.3): it received it over HTTP/1.1. */
const VIA = '1.1 tollgate'

export interface ForwardOptions {
  /** Target origin, e.g. http://127.0.0.1:9001 */
  origin: string
  /** Path and query to request. */
  path: string
  method: string
  headers: Record<string, string | string[]>
  /** The client's request body, or null when there is none. */
  body: IncomingMessage | null
  /**
   * Largest body forwarded, in bytes; null or undefined: no limit. The body is counted as it
   * streams: the chunk that goes past the limit is not sent, the upstream request is aborted (its
   * connection closed mid-body, so the upstream never sees a complete request) and `onFailure`
   * gets GW_ERR_BODY_TOO_LARGE, unless the answer had started (then the client's connection is
   * destroyed).
   */
  maxBodySize?: number | null
  /**
   * The client said it takes trailers (`TE: trailers`, RFC 9110 10.1.4): the upstream's trailers
   * (and its Trailer header) are then passed on when the answer goes out chunked; otherwise they
   * are dropped, as the hop-by-hop fields they were in HTTP/1.1's first definition.
   */
  acceptTrailers?: boolean
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
  /** Called once when the response has closed, whether it finished or not. */
  onClose?: () => void
}

/**
 * Response header names never copied from the upstream (hop-by-hop, RFC 9110 7.6.1). Via and
 * Trailer are not in this test: forwardRequest handles them itself.
 */
function isHopByHop (name: string, listed: readonly string[]): boolean {
  return HOP_BY_HOP.has(name) || (listed.length > 0 && listed.includes(name))
}

/** undici hands on raw header bytes (its types say strings); field values are latin1 (RFC 9110 5.5). */
function latin1 (b: Buffer | string): string {
  return typeof b === 'string' ? b : b.toString('latin1')
}

function noop (): void {}

const NONE: readonly string[] = Object.freeze([])

/**
 * The lengths of the names the copy treats apart (hop-by-hop, Via, Trailer, Content-Length): a
 * name of another length is none of them, and needs no lower-casing (a new string when it has
 * capitals, a hash for a table) unless the answer lists names in Connection or the gateway sets
 * headers of its own.
 */
const SPECIAL_LENGTH: boolean[] = []
for (const n of [...HOP_BY_HOP, 'via', 'trailer', 'content-length']) SPECIAL_LENGTH[n.length] = true

/** `name` lower-cased when it may be one the copy treats apart; null when it cannot be. */
function specialLower (name: string): string | null {
  return SPECIAL_LENGTH[name.length] === true ? name.toLowerCase() : null
}

/**
 * `listed` with the names one Connection line lists. Those in HOP_BY_HOP are dropped anyway,
 * so they are left out (`keep-alive`, the usual one: the list then stays empty and no name is
 * looked up in it), except `trailer`, which also decides whether a Trailer header goes out.
 */
function withListed (listed: readonly string[], value: string): readonly string[] {
  let out: string[] | null = null
  for (const t of connectionTokens(value)) {
    if (t !== 'trailer' && HOP_BY_HOP.has(t)) continue
    out ??= listed.slice()
    out.push(t)
  }
  return out ?? listed
}

/** Whether `o` has an enumerable key (reply.getHeaders() is usually empty). */
function hasKeys (o: object): boolean {
  for (const _ in o) return true
  return false
}

/** Forwards one request; the response `res` is answered in every case. */
export function forwardRequest (agent: Dispatcher, res: ServerResponse, o: ForwardOptions): void {
  const handler = new ForwardHandler(res, o)
  // A client that leaves before the answer is complete: the upstream request stops too. One
  // listener for the caller's bookkeeping as well (`on`: a response closes once, and `once`
  // would wrap it and remove it again, on every request).
  res.on('close', () => { handler.onResponseClose() })
  let body: Readable | null = o.body
  if (body !== null && o.maxBodySize !== undefined && o.maxBodySize !== null) {
    body = limitBody(body, o.maxBodySize, (err) => { handler.tooLarge = err })
  }
  try {
    agent.dispatch({
      origin: o.origin,
      path: o.path,
      method: o.method as Dispatcher.HttpMethod,
      headers: o.headers,
      body,
      headersTimeout: o.timeout,
      bodyTimeout: o.timeout
    }, handler)
  } catch (err) {
    // undici refuses some header values synchronously (e.g. an invalid character).
    handler.onError(err as Error)
  }
}

/**
 * undici's handler for one request: the answer goes to `res` as it arrives. A class, not an
 * object literal of closures: one object per request, its methods shared.
 */
class ForwardHandler implements Dispatcher.DispatchHandler {
  private abort: ((err?: Error) => void) | null = null
  private resume: (() => void) | null = null
  private drainListener: (() => void) | null = null
  private failed = false
  /** Set when the body went past maxBodySize: whatever undici reports then, that is the failure. */
  tooLarge: Error | null = null
  /** Connection-listed names of the answer. */
  private listed: readonly string[] = NONE
  /** Whether the answer's trailers can be passed on. */
  private passTrailers = false

  constructor (private readonly res: ServerResponse, private readonly o: ForwardOptions) {}

  onResponseClose (): void {
    if (!this.failed && !this.res.writableFinished) this.abort?.()
    this.o.onClose?.()
  }

  onConnect (abort: (err?: Error) => void): void {
    this.abort = abort
    if (this.res.destroyed) abort()
  }

  onHeaders (status: number, raw: Buffer[], resume: () => void): boolean {
    if (status < 200) return true
    const { res, o } = this
    this.resume = resume
    // Each name is read out of undici's buffer once, and lower-cased only when it may matter
    // (specialLower). Names listed in any Connection header line are hop-by-hop too, and they
    // are only known once every line has been seen: the copy is a second pass.
    const names: string[] = new Array(raw.length >> 1)
    const lowers: Array<string | null> = new Array(raw.length >> 1)
    let listed = this.listed
    for (let i = 0, j = 0; i < raw.length; i += 2, j++) {
      const name = raw[i].toString('latin1')
      const lower = specialLower(name)
      names[j] = name
      lowers[j] = lower
      if (lower === 'connection') listed = withListed(listed, raw[i + 1].toString('latin1'))
    }
    this.listed = listed
    const headers: string[] = []
    const extra = o.extraHeaders?.()
    const hasExtra = extra !== undefined && hasKeys(extra)
    // Listed names and the gateway's own headers can be any names: each one is then compared.
    const everyName = hasExtra || listed.length > 0
    let via: string | null = null
    let announced: string | null = null
    let length = hasExtra && extra['content-length'] !== undefined
    for (let i = 0, j = 0; i < raw.length; i += 2, j++) {
      const name = names[j]
      const lower = lowers[j] ?? (everyName ? name.toLowerCase() : null)
      if (lower === null) {
        headers.push(name, raw[i + 1].toString('latin1'))
        continue
      }
      if (lower === 'via') {
        const v = raw[i + 1].toString('latin1')
        via = via === null ? v : `${via}, ${v}`
        continue
      }
      if (lower === 'trailer') {
        const v = raw[i + 1].toString('latin1')
        announced = announced === null ? v : `${announced}, ${v}`
        continue
      }
      if (lower === 'content-length') length = true
      if (isHopByHop(lower, listed) || (hasExtra && extra[lower] !== undefined)) continue
      headers.push(name, raw[i + 1].toString('latin1'))
    }
    const hasBody = status !== 204 && status !== 304 && o.method !== 'HEAD'
    // Trailers can only follow a chunked body: Node chunks an answer that has a body and no
    // Content-Length when the client speaks HTTP/1.1 (an HTTP/1.0 client gets the body up to
    // the connection's end, and no trailers). Node refuses a Trailer header on anything else.
    this.passTrailers = o.acceptTrailers === true && hasBody && res.useChunkedEncodingByDefault && !length
    if (this.passTrailers && announced !== null && !listed.includes('trailer')) headers.push('Trailer', announced)
    if (!hasExtra || extra.via === undefined) headers.push('Via', via === null ? VIA : `${via}, ${VIA}`)
    if (hasExtra) {
      for (const name in extra) {
        const v = extra[name]
        if (v === undefined) continue
        if (Array.isArray(v)) for (const x of v) headers.push(name, x)
        else headers.push(name, String(v))
      }
    }
    res.writeHead(status, headers)
    // HEAD, 204 and 304 answers end with their head (Node writes no body for them): the client
    // has its whole answer even when the upstream then breaks its own framing (a 204 with a
    // Content-Length, say), which undici reports as an error once the head is through.
    if (!hasBody) res.end()
    return true
  }

  onData (chunk: Buffer): boolean {
    if (this.res.write(chunk)) return true
    this.drainListener ??= () => { this.resume?.() }
    this.res.once('drain', this.drainListener)
    return false
  }

  onComplete (trailers: Array<Buffer | string> | null): void {
    const res = this.res
    if (res.writableEnded) return
    if (this.passTrailers && trailers !== null && trailers.length > 0) {
      const fields: Array<[string, string]> = []
      for (let i = 0; i < trailers.length; i += 2) {
        const name = latin1(trailers[i])
        if (!isHopByHop(name.toLowerCase(), this.listed)) fields.push([name, latin1(trailers[i + 1])])
      }
      try {
        res.addTrailers(fields)
      } catch {
        // Node checks names and values again: trailers it refuses are left out, not the body.
      }
    }
    res.end()
  }

  onError (e: Error & { code?: string }): void {
    if (this.failed) return
    this.failed = true
    const err = this.tooLarge ?? e
    const res = this.res
    // The client already has its whole answer.
    if (res.writableEnded) return
    if (res.headersSent) res.destroy(err)
    else if (!res.destroyed) this.o.onFailure(err)
  }
}

/**
 * `body` counted as it streams to undici, without holding it: a chunk that would take it past
 * `max` bytes is not passed on; the stream errors instead, and undici then aborts the upstream
 * request (it closes that connection mid-body; before the request was written, it writes none of
 * it). The client's own stream is only unpiped, never destroyed, so its connection can still
 * carry the 413.
 */
function limitBody (body: Readable, max: number, onTooLarge: (err: Error) => void): Transform {
  let seen = 0
  const counted = new Transform({
    transform (chunk: Buffer, _encoding, cb) {
      seen += chunk.length
      if (seen <= max) { cb(null, chunk); return }
      const err = new codes.GW_ERR_BODY_TOO_LARGE(max)
      onTooLarge(err)
      cb(err)
    }
  })
  // undici listens for the error while it owns the stream; this keeps an error after that from
  // being an uncaught exception.
  counted.on('error', noop)
  body.pipe(counted)
  return counted
}
