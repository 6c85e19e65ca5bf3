/**
 * One client <-> upstream pair: relays messages both ways in order, passes close codes through,
 * applies backpressure, answers to the heartbeat sweep, and keeps the counters the admin API
 * shows. Every way the pair can end goes through one path (`close`/`onSocketClose` -> `finish`).
 */
import type WebSocket from 'ws'
import type { RawData } from 'ws'
import {
  CLOSE_BAD_GATEWAY, CLOSE_GOING_AWAY, REASON_CLIENT_DEAD, REASON_IDLE, REASON_UPSTREAM_DEAD,
  relayClose, REASON_TOKEN_EXPIRED, CLOSE_POLICY, REASON_RATE
} from '../close-codes.js'
import { TokenBucket } from '../limits/token-bucket.js'

export interface BridgeInfo {
  id: string
  /** The route's prefix. */
  route: string
  /** The path the client asked for (without query). */
  path: string
  clientIp: string
  userId: string | null
  subprotocol: string | null
  /** Target URL of the upstream socket. */
  upstream: string
  instanceId: string
  /** Token expiry (ms since epoch) for closeOnExpiry; 0 = none. */
  expiresAt?: number
}

/** What happened at the end, for logs, metrics and limits. */
export interface BridgeEnd {
  /** Who ended it first. */
  by: 'client' | 'upstream' | 'gateway'
  /** Close code the client was sent or sent (1006 when its TCP dropped). */
  clientCode: number
  upstreamCode: number
  reason: string
}

export interface BridgeOptions {
  highWaterMark: number
  /** Called once, when the pair starts closing (remove it from listings). */
  onClosing?: (bridge: Bridge) => void
  /** Called once, when both sockets are closed. */
  onEnd?: (bridge: Bridge, end: BridgeEnd) => void
  /** Called with each client heartbeat round trip, in seconds. */
  onRtt?: (seconds: number) => void
  /** Client -> upstream message rate limit (token bucket); exceeding it closes both sides with 1008. */
  messageLimit?: { rate: number, burst: number }
}

/** Pong timing and pause state kept per side for the heartbeat sweep. */
interface Side {
  ws: WebSocket
  /** performance.now() of the unanswered ping; 0 when none is pending. */
  pingSentAt: number
  /** performance.now() of the last ping sent. */
  lastPingAt: number
  /** Reading from this side is paused because the other side is full. */
  paused: boolean
  /** Ends the pause (set while paused). */
  resume: (() => void) | null
  closed: boolean
  /** Code this side closed with (or was closed with). */
  code: number
}

export interface HeartbeatSettings {
  pingInterval: number
  pongTimeout: number
  idleTimeout: number
}

export class Bridge {
  readonly info: BridgeInfo
  readonly connectedAt = Date.now()
  lastPongAt = 0
  rttMs: number | null = null
  messagesFromClient = 0
  messagesToClient = 0
  bytesFromClient = 0
  bytesToClient = 0

  private readonly client: Side
  private readonly up: Side
  private readonly opts: BridgeOptions
  private readonly bucket: TokenBucket | null
  private closing = false
  private endInfo: BridgeEnd | null = null
  /** performance.now() of the last data frame either way, for idleTimeout. */
  private lastDataAt = performance.now()

  /** Wall-clock time (ms) of the last data frame either way, or of the connection. */
  get lastActivityAt (): number { return Math.round(performance.timeOrigin + this.lastDataAt) }

  constructor (client: WebSocket, upstream: WebSocket, info: BridgeInfo, opts: BridgeOptions) {
    this.info = info
    this.opts = opts
    const now = performance.now()
    this.client = { ws: client, pingSentAt: 0, lastPingAt: now, paused: false, resume: null, closed: false, code: 0 }
    this.up = { ws: upstream, pingSentAt: 0, lastPingAt: now, paused: false, resume: null, closed: false, code: 0 }
    this.bucket = opts.messageLimit === undefined ? null : new TokenBucket(opts.messageLimit.rate, opts.messageLimit.burst, now)

    client.on('message', (data, isBinary) => this.relay(this.client, this.up, data, isBinary))
    upstream.on('message', (data, isBinary) => this.relay(this.up, this.client, data, isBinary))
    client.on('pong', () => this.onPong(this.client))
    upstream.on('pong', () => this.onPong(this.up))
    client.on('close', (code, reason) => this.onSocketClose(this.client, code, reason))
    upstream.on('close', (code, reason) => this.onSocketClose(this.up, code, reason))
    // 'close' always follows 'error' in ws; the error itself needs no handling beyond being caught.
    client.on('error', (err: Error & { code?: string }) => this.onProtocolError(this.client, err))
    upstream.on('error', (err: Error & { code?: string }) => this.onProtocolError(this.up, err))
    // The upstream socket was paused by openUpstream until this point.
    upstream.resume()
  }

  get closed (): boolean { return this.closing }

  /** Sends a message to the client from the gateway (admin push). Returns false when closing. */
  send (data: Buffer | string, isBinary: boolean): boolean {
    if (this.closing) return false
    this.client.ws.send(data, { binary: isBinary })
    this.lastDataAt = performance.now()
    this.messagesToClient++
    this.bytesToClient += typeof data === 'string' ? Buffer.byteLength(data) : data.length
    return true
  }

  /**
   * Closes both sides from the gateway: the client with `code`/`reason`, the upstream with
   * `upstreamCode` (default: the same). Safe to call more than once.
   */
  close (code: number, reason: string, upstreamCode = code, upstreamReason = reason): void {
    if (this.closing) return
    this.beginClose({ by: 'gateway', clientCode: code, upstreamCode, reason })
    closeSide(this.client, code, reason)
    closeSide(this.up, upstreamCode, upstreamReason)
  }

  /** Ends both sockets at once, without a close handshake (drain timeout passed). */
  terminate (): void {
    if (!this.closing) this.beginClose({ by: 'gateway', clientCode: 1006, upstreamCode: 1006, reason: 'terminated' })
    this.client.ws.terminate()
    this.up.ws.terminate()
  }

  /**
   * One step of the shared heartbeat sweep (see heartbeat.ts): pings due, pong deadlines,
   * idle timeout and token expiry.
   */
  tick (now: number, wallNow: number, s: HeartbeatSettings): void {
    if (this.closing) return
    if (this.info.expiresAt !== undefined && this.info.expiresAt > 0 && wallNow >= this.info.expiresAt) {
      this.close(CLOSE_POLICY, REASON_TOKEN_EXPIRED)
      return
    }
    if (s.idleTimeout > 0 && now - this.lastDataAt >= s.idleTimeout) {
      this.close(CLOSE_GOING_AWAY, REASON_IDLE)
      return
    }
    // 'drain' only follows a write that filled the socket's own buffer: with a highWaterMark
    // below that, the sweep is what notices the other side has emptied.
    if (this.client.paused && this.up.ws.bufferedAmount <= this.opts.highWaterMark) this.client.resume?.()
    if (this.up.paused && this.client.ws.bufferedAmount <= this.opts.highWaterMark) this.up.resume?.()
    if (this.heartbeatSide(this.client, now, s)) {
      // Dead client: drop it, tell the upstream the client went away.
      this.beginClose({ by: 'gateway', clientCode: 1006, upstreamCode: CLOSE_GOING_AWAY, reason: REASON_CLIENT_DEAD })
      this.client.ws.terminate()
      closeSide(this.up, CLOSE_GOING_AWAY, REASON_CLIENT_DEAD)
      return
    }
    if (this.heartbeatSide(this.up, now, s)) {
      this.beginClose({ by: 'gateway', clientCode: CLOSE_BAD_GATEWAY, upstreamCode: 1006, reason: REASON_UPSTREAM_DEAD })
      this.up.ws.terminate()
      closeSide(this.client, CLOSE_BAD_GATEWAY, REASON_UPSTREAM_DEAD)
    }
  }

  /** Returns true when this side missed its pong deadline. */
  private heartbeatSide (side: Side, now: number, s: HeartbeatSettings): boolean {
    if (side.pingSentAt !== 0) {
      // While reading this side is paused for backpressure its pongs cannot be read: not a sign of death.
      if (side.paused) { side.pingSentAt = now; return false }
      return now - side.pingSentAt >= s.pongTimeout
    }
    if (now - side.lastPingAt >= s.pingInterval) {
      side.lastPingAt = now
      side.pingSentAt = now
      side.ws.ping()
    }
    return false
  }

  private onPong (side: Side): void {
    if (side.pingSentAt !== 0) {
      const now = performance.now()
      if (side === this.client) {
        this.rttMs = Math.round((now - side.pingSentAt) * 1000) / 1000
        this.lastPongAt = Date.now()
        this.opts.onRtt?.((now - side.pingSentAt) / 1000)
      }
      side.pingSentAt = 0
    }
  }

  private relay (from: Side, to: Side, data: RawData, isBinary: boolean): void {
    if (to.closed || this.closing) return
    const buf = data as Buffer
    const now = performance.now()
    if (from === this.client && this.bucket !== null && !this.bucket.take(now)) {
      this.close(CLOSE_POLICY, REASON_RATE)
      return
    }
    to.ws.send(buf, { binary: isBinary })
    if (from === this.client) {
      this.messagesFromClient++
      this.bytesFromClient += buf.length
    } else {
      this.messagesToClient++
      this.bytesToClient += buf.length
    }
    this.lastDataAt = now
    if (!from.paused && to.ws.bufferedAmount > this.opts.highWaterMark) this.pause(from, to)
  }

  /** Stops reading `from` until the socket under `to` drains. */
  private pause (from: Side, to: Side): void {
    const raw = (to.ws as unknown as { _socket?: NodeJS.WritableStream })._socket
    if (raw === undefined) return
    from.paused = true
    from.ws.pause()
    const resume = (): void => {
      raw.removeListener('drain', resume)
      raw.removeListener('close', resume)
      from.resume = null
      if (!from.paused) return
      from.paused = false
      if (!from.closed) from.ws.resume()
    }
    from.resume = resume
    raw.on('drain', resume)
    raw.on('close', resume)
  }

  /**
   * ws closes a peer that breaks the protocol (a message over maxPayload: 1009, invalid UTF-8:
   * 1007, other framing errors: 1002) and stops reading it, so its close would surface as 1006:
   * pass the real reason to the other side now. Socket errors (ECONNRESET...) need nothing here:
   * 'close' follows and is relayed as an abnormal end.
   */
  private onProtocolError (side: Side, err: Error & { code?: string }): void {
    const code = err.code === undefined || !err.code.startsWith('WS_ERR_') ? undefined : PROTOCOL_ERROR_CODES[err.code] ?? 1002
    if (code === undefined || this.closing) return
    const reason = code === 1009 ? 'message too big' : code === 1007 ? 'invalid UTF-8' : 'protocol error'
    const other = side === this.client ? this.up : this.client
    this.beginClose(side === this.client
      ? { by: 'client', clientCode: code, upstreamCode: code, reason }
      : { by: 'upstream', clientCode: code, upstreamCode: code, reason })
    closeSide(other, code, reason)
  }

  private onSocketClose (side: Side, code: number, reasonBuf: Buffer): void {
    side.closed = true
    side.code = code
    const other = side === this.client ? this.up : this.client
    if (!this.closing) {
      const from = side === this.client ? 'client' : 'upstream'
      const reason = reasonBuf.toString()
      const relayed = relayClose(from, code, reason)
      this.beginClose(from === 'client'
        ? { by: from, clientCode: code, upstreamCode: relayed.code ?? 1005, reason }
        : { by: from, clientCode: relayed.code ?? 1005, upstreamCode: code, reason })
      closeSide(other, relayed.code, relayed.reason)
    }
    if (other.closed) this.finish()
  }

  private beginClose (end: BridgeEnd): void {
    this.closing = true
    this.endInfo = end
    this.opts.onClosing?.(this)
  }

  private finish (): void {
    this.client.ws.removeAllListeners()
    this.up.ws.removeAllListeners()
    this.client.ws.on('error', noop)
    this.up.ws.on('error', noop)
    this.opts.onEnd?.(this, this.endInfo ?? { by: 'gateway', clientCode: this.client.code, upstreamCode: this.up.code, reason: '' })
  }

  /** The admin API's view of this connection (spec section 7, C). */
  toJSON (): Record<string, unknown> {
    const i = this.info
    return {
      id: i.id,
      route: i.route,
      path: i.path,
      clientIp: i.clientIp,
      userId: i.userId,
      subprotocol: i.subprotocol,
      upstream: i.upstream,
      instanceId: i.instanceId,
      connectedAt: new Date(this.connectedAt).toISOString(),
      lastActivityAt: new Date(this.lastActivityAt).toISOString(),
      lastPongAt: this.lastPongAt === 0 ? null : new Date(this.lastPongAt).toISOString(),
      rttMs: this.rttMs,
      messagesFromClient: this.messagesFromClient,
      messagesToClient: this.messagesToClient,
      bytesFromClient: this.bytesFromClient,
      bytesToClient: this.bytesToClient
    }
  }
}

/** Closes one socket with a relayed code; a socket already closing is left to finish. */
function closeSide (side: Side, code: number | undefined, reason: string): void {
  if (side.closed) return
  const ws = side.ws
  if (ws.readyState === ws.CLOSING || ws.readyState === ws.CLOSED) return
  if (side.paused) { side.paused = false; ws.resume() }
  if (code === undefined) ws.close()
  else ws.close(code, reason)
}

const PROTOCOL_ERROR_CODES: Record<string, number> = {
  WS_ERR_UNSUPPORTED_MESSAGE_LENGTH: 1009,
  WS_ERR_INVALID_UTF8: 1007
}

function noop (): void {}
