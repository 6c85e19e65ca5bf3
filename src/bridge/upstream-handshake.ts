/**
 * Opens the upstream WebSocket before the client is answered (handshake first, upgrade second),
 * and classifies every failure as the HTTP status the client should get instead of a 101.
 * The handshake is a plain HTTP/1.1 upgrade request on a raw socket: what comes back on
 * success is that socket, which the frame-level relay (bridge.ts) reads and writes itself.
 */
import http from 'node:http'
import net from 'node:net'
import tls from 'node:tls'
import * as crypto from 'node:crypto'
import { randomInto } from './frames.js'
import { parseTarget, type TargetCache } from '../edge/forward-headers.js'
import type { Duplex } from 'node:stream'
import { codes, type GatewayError } from '../errors.js'

export interface UpstreamHandshakeOptions {
  /** Where parsed target origins are kept (the app's); parsed each time without it. */
  targets?: TargetCache
  /** ws://, wss://, http:// or https:// URL with path and query (http(s) as targets are configured). */
  url: string
  headers: Record<string, string | string[]>
  /** Subprotocols to offer (already without any bearer.<jwt> entry). */
  protocols: string[]
  /**
   * The client's permessage-deflate offers, passed on as they are (`Sec-WebSocket-Extensions`):
   * the frame-level relay carries compressed frames end to end. Empty: no extension is offered.
   */
  extensions?: string
  connectTimeout: number
  /** Extra CA (PEM) for wss:// targets. */
  ca?: string
  /** Cancels the attempt (the client went away). */
  cancel?: HandshakeCancel
}

/**
 * Cancels an upstream handshake in flight: `cancel()` ends it with 499 'aborted'. One per
 * handshake, so it is a plain object rather than an AbortController (an EventTarget and its
 * listener bookkeeping cost a few percent of a handshake).
 */
export class HandshakeCancel {
  cancelled = false
  /** Set by openUpstream while its attempt runs (one attempt at a time). */
  onCancel: (() => void) | null = null
  cancel (): void {
    if (this.cancelled) return
    this.cancelled = true
    this.onCancel?.()
  }
}

/** Read buffer of a busy upstream socket: Node's own read size. */
const MAX_READ = 64 * 1024
/**
 * Read buffer of a quiet one (handshakes, pongs, small messages, idle connections): a slice of
 * Node's shared Buffer pool (allocUnsafe takes sizes under 4 KiB from it), so that an idle
 * upstream socket holds half a KiB, not 64.
 */
const MIN_READ = 512
/** Short reads in a row (a quarter of the buffer or less) after which the buffer shrinks a step. */
const SHRINK_AFTER = 8

/**
 * Reads of an upstream socket into a buffer used again and again (net's `onread`), instead of
 * a new 64 KiB buffer, Buffer object and 'data' event for every read. Streaming large messages,
 * those buffers are most of the process's allocation, and the external memory they add brings on
 * full garbage collections: reusing one buffer cuts the relay's CPU per byte.
 *
 * The buffer follows the traffic: a read that fills it makes the next one 4 times larger (512 B
 * to 64 KiB in four reads), a run of short reads makes it 4 times smaller again, so that a
 * connection that streamed once does not keep 64 KiB (a connection that goes silent after a burst
 * keeps it until its next reads: the heartbeat's pongs shrink it within a few ping intervals).
 *
 * A chunk given to `onChunk` is only valid until it returns: the next read overwrites it. A
 * consumer that keeps it (a write that could not finish at once still points at it) calls
 * `keep()`, and the next read goes to a fresh buffer.
 */
export class ReusedReads {
  private buf = Buffer.allocUnsafe(MIN_READ)
  private kept = false
  private shortReads = 0
  onChunk: (chunk: Buffer) => void = noop
  /** net.connect's `onread` option: `buffer` is asked for the next read's buffer after each read. */
  readonly onread = {
    buffer: (): Buffer => this.buf,
    // true: keep reading (false would pause the socket; backpressure pauses it explicitly).
    callback: (n: number, buf: Uint8Array): boolean => { this.read(n, buf as Buffer); return true }
  }

  keep (): void { this.kept = true }

  private read (n: number, buf: Buffer): void {
    this.onChunk(buf.subarray(0, n))
    let size = buf.length
    if (n === size) {
      if (size < MAX_READ) size = Math.min(size * 4, MAX_READ)
      this.shortReads = 0
    } else if (size > MIN_READ && n <= size / 4) {
      // A stream of large frames has its short reads too (a frame's last bytes): only a run of
      // them means the traffic got lighter.
      if (++this.shortReads >= SHRINK_AFTER) {
        size = Math.max(size / 4, MIN_READ)
        this.shortReads = 0
      }
    } else this.shortReads = 0
    if (this.kept || size !== buf.length) {
      this.kept = false
      this.buf = Buffer.allocUnsafe(size)
    }
  }
}

export type HandshakeResult =
  | {
      ok: true
      /** The upstream connection, paused; frames start at `head`, then the socket's data. */
      socket: Duplex
      head: Buffer
      /**
       * For a plain-TCP upstream: its reads, which go to `reads.onChunk` instead of 'data'
       * events (null for TLS, whose socket emits 'data' as usual).
       */
      reads: ReusedReads | null
      /** The subprotocol the upstream selected ('' for none). */
      protocol: string
      /** The extension the upstream accepted (its `Sec-WebSocket-Extensions` answer; '' for none). */
      extensions: string
      ms: number
    }
  | {
      ok: false
      reason: HandshakeFailure
      /** What the client is answered: a GW_ERR_* carrying its status; `cause` is the underlying error, if any. */
      error: GatewayError
      ms: number
      /** The upstream's own status, when it answered something other than 101. */
      upstreamStatus?: number
    }

/**
 * Why an upstream handshake failed: `refused` (no connection, or closed before answering) and
 * `timeout` make the target unhealthy and may be retried elsewhere; `rejected`: it answered
 * without upgrading; `protocol`: a malformed request or answer; `aborted`: the client left.
 */
export type HandshakeFailure = 'refused' | 'timeout' | 'rejected' | 'aborted' | 'protocol'

/** RFC 6455 subprotocol token (the same rule ws applies to the protocols a client offers). */
/**
 * The client's `Sec-WebSocket-Extensions` offers that the relay can carry end to end: the
 * permessage-deflate ones (RFC 7692), as the client wrote them; other extensions are not offered.
 */
export function deflateOffers (header: string | string[] | undefined): string {
  if (header === undefined) return ''
  const all = (Array.isArray(header) ? header.join(',') : header).split(',')
  return all.map((e) => e.trim()).filter((e) => e.split(';', 1)[0].trim().toLowerCase() === 'permessage-deflate').join(', ')
}

export const SUBPROTOCOL_RE = /^[!#$%&'*+\-.0-9A-Z^_`|a-z~]+$/
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

/**
 * One-shot SHA-1 in base64: crypto.hash (Node 20.12+) skips the Hash object createHash makes,
 * which is most of the digest's cost for a 60-byte input (two per handshake).
 */
const sha1Base64: (data: string) => string = typeof crypto.hash === 'function'
  ? (data) => crypto.hash('sha1', data, 'base64')
  : (data) => crypto.createHash('sha1').update(data).digest('base64')

/** The Sec-WebSocket-Accept value for a key (RFC 6455 4.2.2). */
export function acceptKey (key: string): string {
  return sha1Base64(key + GUID)
}

/** 502: the upstream could not be reached or did not speak WebSocket; `cause` says how. */
function unavailable (cause: Error): GatewayError {
  return new codes.GW_ERR_UPSTREAM_UNAVAILABLE({ cause })
}

/** The largest answer head (status line and headers) accepted from an upstream. */
const MAX_HEAD = 16 * 1024

/**
 * Resolves once the upstream answered (or failed); never rejects. On success the socket is
 * paused so that nothing the upstream sends right away is lost before the relay reads it.
 * The request is written and the answer's head parsed on the raw socket: a WebSocket handshake
 * needs none of an HTTP client's machinery (about a quarter of the gateway's CPU per handshake).
 */
export function openUpstream (opts: UpstreamHandshakeOptions): Promise<HandshakeResult> {
  const started = performance.now()
  return new Promise((resolve) => {
    let settled = false
    let socket: net.Socket | null = null
    const finish = (r: HandshakeResult): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (opts.cancel !== undefined && opts.cancel.onCancel === onAbort) opts.cancel.onCancel = null
      resolve(r)
    }
    const elapsed = (): number => performance.now() - started
    const fail = (reason: HandshakeFailure, error: GatewayError, upstreamStatus?: number): void => {
      if (settled) return
      finish({ ok: false, reason, error, ms: elapsed(), upstreamStatus })
      if (socket !== null) {
        detach(socket)
        // A late error from the socket being torn down must not become an uncaught exception.
        socket.on('error', noop)
        socket.destroy()
      }
    }
    const onAbort = (): void => fail('aborted', new codes.GW_ERR_CLIENT_GONE())
    // Started first, so that every early return below goes through `finish`, which clears it.
    const timer = setTimeout(() => fail('timeout', new codes.GW_ERR_UPSTREAM_TIMEOUT()), opts.connectTimeout)
    // Invalid or duplicated subprotocol tokens: the client's request is at fault.
    const bad = opts.protocols.find((p, i) => !SUBPROTOCOL_RE.test(p) || opts.protocols.indexOf(p) !== i)
    if (bad !== undefined) {
      fail('protocol', new codes.GW_ERR_BAD_HANDSHAKE(`invalid or duplicated subprotocol ${JSON.stringify(bad)}`))
      return
    }
    const nonce = Buffer.allocUnsafe(16)
    randomInto(nonce, 0, 16)
    const key = nonce.toString('base64')
    let request: string
    let host: string
    let servername: string | undefined
    let port: number
    let secure: boolean
    try {
      // The path and query as given, not as URL parsing normalizes them: `/a/%2e%2e/b` must not
      // become `/b` (which would step outside the route's rewritePrefix or the target's base path).
      const origin = /^(?:wss?|https?):\/\/[^/?#]*/i.exec(opts.url)?.[0]
      if (origin === undefined) throw new Error(`unsupported upstream URL ${JSON.stringify(opts.url)}`)
      const o = opts.targets?.parts(origin) ?? parseTarget(origin)
      secure = o.secure
      host = o.hostname
      servername = o.servername ?? (net.isIP(host) === 0 ? host : undefined)
      port = o.port
      let target = opts.url.slice(origin.length).split('#', 1)[0]
      if (target === '' || target[0] === '?') target = '/' + target
      // A request-target is visible ASCII (RFC 3986; Node's own parser refuses anything else from
      // a client): a configured prefix with other text must be percent-encoded.
      if (/[^\x21-\x7e]/.test(target)) throw new Error('invalid characters in the upstream path')
      let head = `GET ${target} HTTP/1.1\r\nHost: ${o.host}\r\n`
      for (const name of Object.keys(opts.headers)) {
        const lower = name.toLowerCase()
        if (lower === 'host' || lower === 'connection' || lower === 'upgrade' || lower.startsWith('sec-websocket-')) continue
        const value = opts.headers[name]
        // The same checks http.request makes: a bad name or value is the client's request at fault.
        http.validateHeaderName(name)
        for (const v of Array.isArray(value) ? value : [value]) {
          http.validateHeaderValue(name, v)
          head += `${name}: ${v}\r\n`
        }
      }
      head += `Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\n`
      if (opts.protocols.length > 0) head += `Sec-WebSocket-Protocol: ${opts.protocols.join(', ')}\r\n`
      if (opts.extensions !== undefined && opts.extensions !== '') {
        http.validateHeaderValue('sec-websocket-extensions', opts.extensions)
        head += `Sec-WebSocket-Extensions: ${opts.extensions}\r\n`
      }
      request = head + '\r\n'
    } catch (err) {
      // An invalid URL or header value: the client's request is at fault.
      fail('protocol', new codes.GW_ERR_BAD_HANDSHAKE((err as Error).message, { cause: err }))
      return
    }
    if (opts.cancel !== undefined) {
      if (opts.cancel.cancelled) { onAbort(); return }
      // One attempt at a time per canceller (a retry starts after the first attempt finished).
      if (opts.cancel.onCancel !== null) { fail('protocol', new codes.GW_ERR_INTERNAL('HandshakeCancel is already in use by another attempt')); return }
      opts.cancel.onCancel = onAbort
    }
    const reads = secure ? null : new ReusedReads()
    const s = secure
      ? tls.connect({ host, port, ca: opts.ca, servername, ALPNProtocols: ['http/1.1'] })
      : net.connect({ host, port, noDelay: true, onread: reads!.onread })
    socket = s
    s.once(secure ? 'secureConnect' : 'connect', onConnect)
    // latin1: header values are byte strings (one char per byte, as Node's parser made them),
    // so obs-text bytes go upstream as the single bytes the client sent.
    function onConnect (): void { s.write(request, 'latin1') }
    let received: Buffer | null = null
    function detach (x: net.Socket): void {
      if (reads !== null) reads.onChunk = noop
      x.removeListener('data', onData)
      x.removeListener('error', onError)
      x.removeListener('close', onClose)
      x.removeListener(secure ? 'secureConnect' : 'connect', onConnect)
    }
    function onData (chunk: Buffer): void {
      // A chunk from the ReusedReads buffer is overwritten by the next read: what is kept past
      // this call (an incomplete head, the bytes after the 101) is copied out of it.
      let reused = reads !== null
      let buf = chunk
      if (received !== null) { buf = Buffer.concat([received, chunk]); reused = false }
      received = null
      let end = buf.indexOf('\r\n\r\n')
      if (end === -1 || end > MAX_HEAD) {
        if (buf.length > MAX_HEAD) fail('protocol', unavailable(new Error('upstream answer head too large')))
        else received = reused ? Buffer.from(buf) : buf
        return
      }
      let answer = parseHead(buf.toString('latin1', 0, end))
      // Informational answers (100 Continue, 103 Early Hints...) before the real one are skipped.
      while (answer !== null && answer.status >= 100 && answer.status < 200 && answer.status !== 101) {
        buf = buf.subarray(end + 4)
        end = buf.indexOf('\r\n\r\n')
        if (end === -1) { received = reused ? Buffer.from(buf) : buf; return }
        answer = parseHead(buf.toString('latin1', 0, end))
      }
      if (answer === null) { fail('protocol', unavailable(new Error('invalid HTTP answer from the upstream'))); return }
      if (answer.status !== 101) {
        // A 4xx/5xx goes to the client as it is; any other answer is not a WebSocket upstream: 502.
        const rejected: GatewayError = new codes.GW_ERR_UPSTREAM_REJECTED(answer.status)
        if (answer.status >= 400 && answer.status <= 599) rejected.statusCode = answer.status
        fail('rejected', rejected, answer.status)
        return
      }
      const problem = checkAnswer(answer.headers, key, opts.protocols, opts.extensions ?? '')
      if (problem !== null) { fail('protocol', unavailable(new Error(problem))); return }
      // Not removeAllListeners(): that would also take the socket's own listeners, and it
      // un-pauses a paused stream on the next tick.
      detach(s)
      s.pause()
      s.setNoDelay(true)
      // Until the relay takes the socket over, an error here must not crash the process; the
      // relay sees the socket closed.
      s.on('error', noop)
      const rest = buf.subarray(end + 4)
      const chosen = answer.headers['sec-websocket-protocol']
      finish({ ok: true, socket: s, head: rest.length === 0 ? EMPTY : reused ? Buffer.from(rest) : rest, reads, protocol: chosen ?? '', extensions: answer.headers['sec-websocket-extensions'] ?? '', ms: elapsed() })
    }
    function onError (err: Error): void {
      // Connection errors (ECONNREFUSED, ETIMEDOUT, ERR_TLS_... handshake failures) make the
      // target unhealthy; certificate errors (CERT_HAS_EXPIRED, DEPTH_ZERO_SELF_SIGNED_CERT...)
      // are the upstream's fault too, but say nothing of its liveness.
      const code = (err as NodeJS.ErrnoException).code
      fail(code === undefined || code.startsWith('E') ? 'refused' : 'protocol', unavailable(err))
    }
    function onClose (): void { fail('refused', unavailable(new Error('the upstream closed the connection before answering'))) }
    if (reads !== null) reads.onChunk = onData
    else s.on('data', onData)
    s.on('error', onError)
    s.on('close', onClose)
  })
}

/**
 * A control character other than the CR LF ending a line (a bare CR or LF above all, see
 * crlfOnly): it would let an upstream smuggle header lines into the client's 101, which repeats
 * some of these values.
 */
// eslint-disable-next-line no-control-regex -- control characters are what is refused
const HEAD_CONTROL_RE = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/

/**
 * Whether every CR and LF in `text` is one of a CR LF pair. Found by indexOf, line by line: the
 * same test as one pattern with look-around (`\r(?!\n)|(?<!\r)\n`) cost about 3,000 instructions
 * per handshake, tried at every position of the head.
 */
function crlfOnly (text: string): boolean {
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) {
    if (i === 0 || text.charCodeAt(i - 1) !== 13) return false
  }
  for (let i = text.indexOf('\r'); i !== -1; i = text.indexOf('\r', i + 1)) {
    if (text.charCodeAt(i + 1) !== 10) return false
  }
  return true
}
const STATUS_LINE_RE = /^HTTP\/1\.[01] (\d{3})(?: |\r|$)/
const HEADER_NAME_RE = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/

/** The status and lower-cased headers of an HTTP/1.x answer head, or null when it is not one. */
function parseHead (text: string): { status: number, headers: Record<string, string> } | null {
  if (HEAD_CONTROL_RE.test(text) || !crlfOnly(text)) return null
  const m = STATUS_LINE_RE.exec(text)
  if (m === null) return null
  const headers: Record<string, string> = {}
  // Line by line after the status line, without splitting the head into an array first.
  let at = text.indexOf('\r\n')
  while (at !== -1) {
    const start = at + 2
    at = text.indexOf('\r\n', start)
    const line = at === -1 ? text.slice(start) : text.slice(start, at)
    const colon = line.indexOf(':')
    if (colon <= 0) return null
    const name = line.slice(0, colon).toLowerCase()
    if (!HEADER_NAME_RE.test(name)) return null
    const value = line.slice(colon + 1).trim()
    const seen = headers[name]
    headers[name] = seen === undefined ? value : `${seen}, ${value}`
  }
  return { status: Number(m[1]), headers }
}

/** What is wrong with a 101 answer, or null (RFC 6455 4.1, as ws's client checks it). */
function checkAnswer (headers: Record<string, string>, key: string, offered: readonly string[], extensionOffer: string): string | null {
  if (headers.upgrade?.toLowerCase() !== 'websocket') return 'Invalid Upgrade header'
  if (headers['sec-websocket-accept'] !== acceptKey(key)) return 'Invalid Sec-WebSocket-Accept header'
  const chosen = headers['sec-websocket-protocol']
  if (chosen !== undefined) {
    if (offered.length === 0) return 'Server sent a subprotocol but none was requested'
    if (!offered.includes(chosen)) return 'Server sent an invalid subprotocol'
  }
  // Only permessage-deflate is ever offered, and only when the client offered it: the upstream
  // may accept that one extension, once, or none.
  const accepted = headers['sec-websocket-extensions']
  if (accepted !== undefined && accepted !== '') {
    const names = accepted.split(',').map((e) => e.split(';', 1)[0].trim().toLowerCase())
    if (extensionOffer === '' || names.length !== 1 || names[0] !== 'permessage-deflate') return 'Server indicated an extension that was not requested'
  }
  return null
}

const EMPTY = Buffer.alloc(0)

function noop (): void {}
