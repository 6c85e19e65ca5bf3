/**
 * One client <-> upstream pair, relayed frame by frame: the bytes a peer sends pass to the other
 * peer as they are (a client's masked frame is a valid masked frame from the gateway too, and an
 * upstream's frames are unmasked on both hops), and only frame headers are read: for the
 * counters, maxPayload, the message rate limit, close frames and the gateway's own heartbeat
 * pongs. With permessage-deflate, the payload of compressed messages is also read, by a meter
 * that counts what it inflates to (maxPayload) before it is passed on. Frames the gateway
 * writes itself (pings, closes, admin pushes) go in at frame boundaries, and a push at a message
 * boundary. Every way the pair can end goes through one path (`beginClose` ... `onSocketClose`
 * -> `finish`).
 *
 * How one side's connection ends (the other side's is the same, mirrored):
 *
 *   open --(peer's close frame)--> close frame sent back --> TCP ended (end())
 *   open --(gateway closes: beginClose)--> close frame sent --(peer's close frame)--> TCP ended
 *   open --(bad framing from the peer: failed, RFC 6455 7.1.7)--> close frame sent, nothing
 *        more read --> TCP ended right after the frame is flushed
 *   open --(the stream to it stops inside a frame: cut)--> no close frame can follow --> TCP ended
 *   any of these --(no TCP close within the close timeout; 1 s when failed or cut)--> destroyed
 */
import type { Duplex } from 'node:stream'
import {
  CLOSE_ABNORMAL, CLOSE_BAD_GATEWAY, CLOSE_GOING_AWAY, CLOSE_POLICY, REASON_CLIENT_DEAD, REASON_IDLE, REASON_RATE,
  REASON_TOKEN_EXPIRED, REASON_UPSTREAM_DEAD, relayClose
} from '../close-codes.js'
import { TokenBucket } from '../limits/token-bucket.js'
import { DEFAULT_CLOSE_TIMEOUT } from '../config/defaults.js'
import { connectionDue, sideDue, type HeartbeatSettings } from './heartbeat.js'
import type { ConnectionView } from '../admin/schemas.js'
import { closeFrame, encodeFrame, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT, parseClose, randomInto, unmask } from './frames.js'
import { InflateMeter, METER_OK, METER_TOO_BIG, parseDeflateParams, type DeflateParams, type MeterVerdict } from './inflate-meter.js'
import { ProtocolError } from './protocol-errors.js'
import { newSide, type Side } from './side.js'
import { frameError, frameProblem, newFrameHeader, scanFrameHeader } from './frame-scanner.js'
import type { ReusedReads } from './upstream-handshake.js'

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
  /**
   * The name of the upstream (pool) whose target `upstream` is, when the connection went through
   * one: a target URL two upstreams share is then told apart.
   */
  upstreamName?: string
  instanceId: string
  /** Token expiry (ms since epoch) for closeOnExpiry; 0 = none. */
  expiresAt?: number
  /**
   * For the access-log line written when the connection ends: the URL the client asked for
   * (query included, token parameters masked), the client's TCP port, and the time from the
   * request's arrival to the 101 (ms).
   */
  url?: string
  remotePort?: number
  handshakeMs?: number
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
  /**
   * Largest message (all its frames) either peer may send; more closes both sides with 1009.
   * With permessage-deflate it bounds both the compressed bytes of a message, as they cross the
   * gateway, and what the message inflates to.
   */
  maxPayload: number
  /**
   * The negotiated `Sec-WebSocket-Extensions` value (the upstream's answer; '' when none).
   * permessage-deflate in it: RSV1 marks a compressed message's first frame, and compressed
   * messages are inflated (counted, not kept) with its parameters to hold them to maxPayload.
   */
  extensions?: string
  /**
   * Older form of `extensions`: permessage-deflate was negotiated end to end, parameters
   * unknown (counted as the most permissive ones allow). Ignored when `extensions` is given.
   */
  compressed?: boolean
  /** Called once, when the pair starts closing (remove it from listings). */
  onClosing?: (bridge: Bridge) => void
  /** Called once, when both sockets are closed. */
  onEnd?: (bridge: Bridge, end: BridgeEnd) => void
  /** Called with each client heartbeat round trip, in seconds. */
  onRtt?: (seconds: number) => void
  /** Client -> upstream message rate limit (token bucket); exceeding it closes both sides with 1008. */
  messageLimit?: { rate: number, burst: number }
  /** How long a side may take to finish its close handshake before its socket is destroyed (ms). */
  closeTimeout?: number
  /**
   * The upstream socket's reads when it was opened with them (openUpstream's `reads`, plain
   * TCP): chunks come from one reused buffer instead of 'data' events.
   */
  upstreamReads?: ReusedReads | null
}

export type { HeartbeatSettings } from './heartbeat.js'

/** Scratch for the payload of the gateway's own pings (copied into each frame). */
const PING_PAYLOAD = Buffer.alloc(8)
/** How long a failed (or cut) connection may take to close its TCP once the gateway ended it. */
const FAIL_TIMEOUT = 1000

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
  /** permessage-deflate's parameters, when it was negotiated. */
  private readonly deflate: DeflateParams | null
  private closing = false
  /** The frame header being read (scanFrameHeader fills it in place). */
  private readonly header = newFrameHeader()
  private endInfo: BridgeEnd | null = null
  private closeTimer: NodeJS.Timeout | null = null
  /** performance.now() of the last data frame either way, for idleTimeout. */
  private lastDataAt = performance.now()

  /** Wall-clock time (ms) of the last data frame either way, or of the connection. */
  get lastActivityAt (): number { return Math.round(performance.timeOrigin + this.lastDataAt) }

  /**
   * @param client the upgraded client socket (the 101 already written), paused
   * @param upstream the upstream socket after its 101, paused
   * @param upstreamHead bytes the upstream sent right after its 101
   */
  constructor (client: Duplex, upstream: Duplex, upstreamHead: Buffer, info: BridgeInfo, opts: BridgeOptions) {
    this.info = info
    this.opts = opts
    const now = performance.now()
    this.client = newSide('client', client, true, now)
    this.up = newSide('upstream', upstream, false, now)
    this.client.peer = this.up
    this.up.peer = this.client
    this.bucket = opts.messageLimit === undefined ? null : new TokenBucket(opts.messageLimit.rate, opts.messageLimit.burst, now)
    this.deflate = opts.extensions !== undefined
      ? parseDeflateParams(opts.extensions)
      : opts.compressed === true ? parseDeflateParams('permessage-deflate') : null
    this.listen(this.client)
    this.listen(this.up, opts.upstreamReads ?? null)
    // What the upstream sent right after its 101 comes before anything read from now on.
    if (upstreamHead.length > 0) this.onData(this.up, upstreamHead)
    client.resume()
    upstream.resume()
  }

  get closed (): boolean { return this.closing }

  private listen (side: Side, reads: ReusedReads | null = null): void {
    const s = side.socket
    if (reads === null) s.on('data', (chunk: Buffer) => this.onData(side, chunk))
    else {
      const to = side.peer.socket
      reads.onChunk = (chunk: Buffer) => {
        this.onData(side, chunk)
        // What onData keeps of a chunk it copies (partial headers, close frames), except what
        // it wrote: a write that did not finish at once still points into the chunk.
        if (to.writableLength > 0) reads.keep()
      }
    }
    // A peer that half-closes its TCP gets the other half closed too (the upgraded socket of an
    // HTTP server allows half-open connections).
    s.on('end', () => { if (!s.writableEnded) s.end() })
    s.on('close', () => this.onSocketClose(side))
    // 'close' always follows 'error'; the error itself needs nothing more.
    s.on('error', noop)
  }

  /** Sends a message to the client from the gateway (admin push). Returns false when closing or busy. */
  send (data: Buffer | string, isBinary: boolean): boolean {
    return this.trySend(data, isBinary) === 'sent'
  }

  /**
   * Sends a message to the client from the gateway (admin push): 'closed' when the connection is
   * closing, 'busy' when more than highWaterMark already waits to be written to the client (a
   * client that does not read is not sent more: nothing queues without bound).
   */
  trySend (data: Buffer | string, isBinary: boolean): 'sent' | 'closed' | 'busy' {
    if (this.closing) return 'closed'
    let waiting = this.client.socket.writableLength
    if (this.client.pushes !== null) for (const f of this.client.pushes) waiting += f.length
    if (waiting > this.opts.highWaterMark) return 'busy'
    const payload = typeof data === 'string' ? Buffer.from(data) : data
    this.push(this.client, encodeFrame(isBinary ? OP_BINARY : OP_TEXT, payload, false))
    this.lastDataAt = performance.now()
    this.messagesToClient++
    this.bytesToClient += payload.length
    return 'sent'
  }

  /**
   * Closes both sides from the gateway: the client with `code`/`reason`, the upstream with
   * `upstreamCode` (default: the same). Safe to call more than once.
   */
  close (code: number, reason: string, upstreamCode = code, upstreamReason = reason): void {
    if (this.closing) return
    this.beginClose({ by: 'gateway', clientCode: code, upstreamCode, reason })
    this.sendClose(this.client, code, reason)
    this.sendClose(this.up, upstreamCode, upstreamReason)
  }

  /** Ends both sockets at once, without a close handshake (drain timeout passed). */
  terminate (): void {
    if (!this.closing) this.beginClose({ by: 'gateway', clientCode: 1006, upstreamCode: 1006, reason: 'terminated' })
    this.client.socket.destroy()
    this.up.socket.destroy()
  }

  /**
   * One step of the shared heartbeat sweep (see heartbeat.ts): pings due, pong deadlines,
   * idle timeout and token expiry.
   */
  tick (now: number, wallNow: number, s: HeartbeatSettings): void {
    if (this.closing) return
    const due = connectionDue(this.info.expiresAt ?? 0, this.lastDataAt, now, wallNow, s)
    if (due === 'expired') { this.close(CLOSE_POLICY, REASON_TOKEN_EXPIRED); return }
    if (due === 'idle') { this.close(CLOSE_GOING_AWAY, REASON_IDLE); return }
    // 'drain' only follows a write that filled the socket's own buffer: with a highWaterMark
    // below that, the sweep is what notices the other side has emptied.
    if (this.client.paused && this.up.socket.writableLength <= this.opts.highWaterMark) this.client.resume?.()
    if (this.up.paused && this.client.socket.writableLength <= this.opts.highWaterMark) this.up.resume?.()
    if (this.heartbeatSide(this.client, now, s)) {
      // Dead client: drop it, tell the upstream the client went away.
      this.beginClose({ by: 'gateway', clientCode: 1006, upstreamCode: CLOSE_GOING_AWAY, reason: REASON_CLIENT_DEAD })
      this.client.socket.destroy()
      this.sendClose(this.up, CLOSE_GOING_AWAY, REASON_CLIENT_DEAD)
      return
    }
    if (this.heartbeatSide(this.up, now, s)) {
      this.beginClose({ by: 'gateway', clientCode: CLOSE_BAD_GATEWAY, upstreamCode: 1006, reason: REASON_UPSTREAM_DEAD })
      this.up.socket.destroy()
      this.sendClose(this.client, CLOSE_BAD_GATEWAY, REASON_UPSTREAM_DEAD)
    }
  }

  /** Returns true when this side missed its pong deadline; sends its ping when one is due. */
  private heartbeatSide (side: Side, now: number, s: HeartbeatSettings): boolean {
    const due = sideDue(side, now, s)
    if (due === 'dead') return true
    // While reading this side is paused for backpressure its pongs cannot be read: its deadline restarts.
    if (due === 'wait') { side.pingSentAt = now; return false }
    if (due === 'ping') {
      side.lastPingAt = now
      side.pingSentAt = now
      side.pingWrittenAt = 0
      // A pong that carries this ping's payload answers the gateway; any other is relayed.
      randomInto(PING_PAYLOAD, 0, 8)
      side.pingA = PING_PAYLOAD.readUInt32LE(0)
      side.pingB = PING_PAYLOAD.readUInt32LE(4)
      this.control(side, encodeFrame(OP_PING, PING_PAYLOAD, !side.masked), now)
    }
    return false
  }

  private onPong (side: Side): void {
    const now = performance.now()
    if (side === this.client && side.pingWrittenAt !== 0) {
      // From the moment the ping went out, not from when it was due (it may have waited).
      const rtt = now - side.pingWrittenAt
      this.rttMs = Math.round(rtt * 1000) / 1000
      this.lastPongAt = Date.now()
      this.opts.onRtt?.(rtt / 1000)
    }
    side.pingSentAt = 0
    side.pingWrittenAt = 0
  }

  /**
   * Relays what `from` sent: whole runs of frames are written to the other side with one write
   * (the chunk itself when nothing in it is the gateway's business), headers are checked, and
   * only control frames and incomplete headers are ever copied.
   */
  private onData (from: Side, input: Buffer): void {
    const r = from.in
    if (r.done) return
    const to = from.peer
    let chunk = input
    if (r.partial !== null) { chunk = Buffer.concat([r.partial, input]); r.partial = null }
    const len = chunk.length
    const now = performance.now()
    let pos = 0
    /** Start of the bytes read but not yet relayed. */
    let start = 0
    let data = false
    if (r.remaining > 0) {
      const n = r.remaining < len ? r.remaining : len
      r.remaining -= n
      pos = n
      if (r.drop) start = pos
      else {
        data = true
        if (r.inflating) {
          const v = this.metered(from, chunk, 0, n, r.remaining === 0)
          if (v !== METER_OK) {
            // The frame's start has already gone to the other side: none of the rest goes.
            start = pos
            if (r.remaining > 0) r.drop = true
            this.inflateError(from, v, true)
            // Malformed data fails the connection: nothing more of it is read.
            if (r.done) start = pos = len
          }
        }
      }
    }
    while (pos < len) {
      // A frame boundary on the stream to `to`: the gateway's own frames waiting for one go now,
      // so that a stream of large frames never holds them back for long.
      if (to.queue !== null || to.pushes !== null) {
        this.relay(to, chunk, start, pos)
        start = pos
        this.flush(to)
      }
      const h = this.header
      if (!scanFrameHeader(chunk, pos, len, h)) break
      const { opcode, fin, masked } = h
      const plen = h.length
      const hdr = h.size
      const avail = len - pos
      const problem = frameError(h.b0, masked, plen, from.masked, r.inMessage, this.deflate !== null)
      if (problem !== null) {
        // Framing that cannot be trusted: the connection is failed at this frame.
        this.relay(to, chunk, start, pos)
        this.protocolError(from, frameProblem(problem, h.b0, plen))
        start = pos = len
        break
      }
      if (opcode >= 8) {
        // Control frames are handled whole (at most 139 bytes): wait for the rest.
        if (avail < hdr + plen) break
        const end = pos + hdr + plen
        const maskAt = masked ? pos + hdr - 4 : -1
        if (opcode === OP_CLOSE) {
          this.relay(to, chunk, start, pos)
          r.done = true
          this.onCloseFrame(from, unmask(chunk, pos + hdr, plen, maskAt))
          start = pos = len
          break
        }
        const ours = opcode === OP_PONG && from.pingSentAt !== 0 && isHeartbeat(chunk, pos + hdr, plen, maskAt, from)
        if (ours || this.closing) {
          // The gateway's own pong is not relayed; nothing else is, once closing.
          this.relay(to, chunk, start, pos)
          start = end
          if (ours) this.onPong(from)
        }
        pos = end
        continue
      }
      // A data frame: relayed as it arrives, possibly over several chunks.
      if (opcode !== OP_CONTINUATION) {
        r.messageBytes = 0
        // RSV1 (allowed by frameError only with permessage-deflate): a compressed message.
        r.inflating = h.rsv1
        if (r.inflating) (r.meter ??= this.newMeter(from)).begin()
        if (from === this.client && this.bucket !== null && !this.closing && !this.bucket.take(now)) {
          // Closing from here on: this frame and the rest are read and dropped, so that the
          // client's answer to the close frame is still found.
          this.relay(to, chunk, start, pos)
          start = pos
          this.close(CLOSE_POLICY, REASON_RATE)
        }
      }
      r.messageBytes += plen
      if (r.messageBytes > this.opts.maxPayload && !this.closing) {
        this.relay(to, chunk, start, pos)
        start = pos
        this.protocolError(from, new ProtocolError('WS_ERR_UNSUPPORTED_MESSAGE_LENGTH'))
      }
      r.inMessage = !fin
      if (r.inflating && !this.closing) {
        // What this frame's payload in the chunk inflates to is counted before any of it is
        // relayed: over maxPayload (or malformed), the frame is not relayed at all, and the
        // other side, still between frames, gets a close frame.
        r.fin = fin
        r.phase = 0
        if (masked) chunk.copy(r.key ??= Buffer.allocUnsafe(4), 0, pos + hdr - 4, pos + hdr)
        const payloadEnd = pos + hdr + plen
        const v = this.metered(from, chunk, pos + hdr, payloadEnd < len ? payloadEnd : len, payloadEnd <= len)
        if (v !== METER_OK) {
          this.relay(to, chunk, start, pos)
          start = pos
          this.inflateError(from, v, false)
          if (r.done) { start = pos = len; break }
        }
      }
      const drop = this.closing
      if (drop) {
        this.relay(to, chunk, start, pos)
      } else {
        r.openToPeer = !fin
        data = true
        if (from === this.client) {
          this.bytesFromClient += plen
          if (fin) this.messagesFromClient++
        } else {
          this.bytesToClient += plen
          if (fin) this.messagesToClient++
        }
      }
      const end = pos + hdr + plen
      if (end <= len) {
        pos = end
      } else {
        r.remaining = end - len
        r.drop = drop
        pos = len
      }
      if (drop) start = pos
    }
    if (data) this.lastDataAt = now
    this.relay(to, chunk, start, pos)
    // An incomplete header or control frame: a copy, so that the chunk it came in can be freed.
    if (pos < len) r.partial = Buffer.from(chunk.subarray(pos))
    if (to.queue !== null || to.pushes !== null) this.flush(to)
    if (!from.paused && !r.done && !to.cut && to.socket.writableLength > this.opts.highWaterMark) this.pause(from, to)
  }

  /** Writes chunk[start, end) to `to`: the chunk itself when it is all of it. */
  private relay (to: Side, chunk: Buffer, start: number, end: number): void {
    if (end <= start || to.ended || to.cut) return
    to.socket.write(start === 0 && end === chunk.length ? chunk : chunk.subarray(start, end))
  }

  /** True when the stream to `side` is between frames. */
  private atFrameBoundary (side: Side): boolean {
    const r = side.peer.in
    return r.remaining === 0 || r.drop
  }

  /** Writes a control frame of the gateway's own to `side`, now or at the next frame boundary. */
  private control (side: Side, frame: Buffer, now = performance.now()): void {
    if (side.ended || side.cut) return
    if (side.queue === null && this.atFrameBoundary(side)) this.writeControl(side, frame, now)
    else (side.queue ??= []).push(frame)
  }

  private writeControl (side: Side, frame: Buffer, now: number): void {
    side.socket.write(frame)
    if (frame[0] === (0x80 | OP_PING)) side.pingWrittenAt = now
  }

  /**
   * Writes an admin push to `side`, now or once the stream to it is between messages. Control
   * frames may overtake it (RFC 6455 allows them between fragments); after a close frame it is
   * dropped, as nothing may follow a close.
   */
  private push (side: Side, frame: Buffer): void {
    if (side.ended || side.cut || side.closeSent) return
    if (side.pushes === null && this.atFrameBoundary(side) && !side.peer.in.openToPeer) side.socket.write(frame)
    else (side.pushes ??= []).push(frame)
  }

  /** Writes what waits for `side` as far as the stream's boundaries allow: control frames first. */
  private flush (side: Side): void {
    if (!this.atFrameBoundary(side)) return
    const q = side.queue
    if (q !== null) {
      side.queue = null
      const now = performance.now()
      if (!side.ended && !side.cut) for (const frame of q) this.writeControl(side, frame, now)
    }
    const p = side.pushes
    if (p !== null && (side.closeSent || side.ended || side.cut)) side.pushes = null
    else if (p !== null && !side.peer.in.openToPeer) {
      side.pushes = null
      for (const frame of p) side.socket.write(frame)
    }
    this.maybeEnd(side)
  }

  /*
   * The close handshake, per side (flags of Side), and for the pair (`closing`, `endInfo`):
   *
   *                 close frame from the side          close frame to the side
   *   OPEN ----------------------------------+   +------------------------------ OPEN
   *     |                                    v   v                                 |
   *     |                     closeReceived        closeSent                        |
   *     |                          |  (we answer: sendClose)  | (it answers)        |
   *     |                          +-----------+   +----------+                     |
   *     |                                      v   v                                |
   *     |                          closeSent && closeReceived: maybeEnd -> end()    |
   *     |                                        |                                  |
   *     | protocol error: failing               v                 mid-frame: cut    |
   *     +--> close frame, end(), no wait --> TCP closed (ended) <-- end(), no frame -+
   *                                            |
   *                      both sides ended: finish() -> onEnd (metrics, registry, log)
   *
   * The first event that starts closing either side (a close frame, a protocol error, a socket
   * that ends, close()/terminate(), a missed pong) calls beginClose once: it records who closed
   * and the codes each side sees (BridgeEnd), and arms closeTimeout, after which both sockets are
   * destroyed. A close frame is relayed to the peer with relayClose's mapping (1005/1006 are not
   * sendable). A failed or cut side gets FAIL_TIMEOUT (endSoon) to close its TCP.
   */

  /** Sends a close frame to `side` (once); `code` undefined: no status. */
  private sendClose (side: Side, code: number | undefined, reason: string): void {
    if (side.closeSent || side.ended) return
    side.closeSent = true
    // Its close answer must be readable even if it was paused for backpressure.
    if (side.paused) side.resume?.()
    side.pushes = null
    this.control(side, closeFrame(code, reason, !side.masked))
    this.maybeEnd(side)
  }

  /**
   * Once close frames went both ways with `side`, or the gateway's went to a side it failed (and
   * nothing is left to write before it), its TCP is ended: end() writes what is buffered first.
   */
  private maybeEnd (side: Side): void {
    if (side.closeSent && (side.closeReceived || side.failing) && side.queue === null && !side.ended && !side.socket.writableEnded) side.socket.end()
  }

  private onCloseFrame (from: Side, payload: Buffer): void {
    from.closeReceived = true
    const parsed = parseClose(payload)
    if (!parsed.ok) {
      this.protocolError(from, parsed.error)
      return
    }
    if (!this.closing) {
      const relayed = relayClose(from.name, parsed.code, parsed.reason)
      this.beginClose(from === this.client
        ? { by: 'client', clientCode: parsed.code, upstreamCode: relayed.code ?? 1005, reason: parsed.reason }
        : { by: 'upstream', clientCode: relayed.code ?? 1005, upstreamCode: parsed.code, reason: parsed.reason })
      this.sendClose(from.peer, relayed.code, relayed.reason)
    }
    // The close handshake's answer echoes the peer's code, as ws does.
    this.sendClose(from, parsed.code === 1005 ? undefined : parsed.code, parsed.reason)
    this.maybeEnd(from)
  }

  /**
   * A peer broke the protocol (a message over maxPayload: 1009; bad framing or a bad close
   * frame: 1002; invalid compressed data or close reason: 1007): both sides are closed with that
   * code. Text is not UTF-8 validated here: the endpoints do that, and their 1007 passes through.
   */
  private protocolError (from: Side, err: ProtocolError): void {
    const code = err.closeCode
    const reason = err.message
    if (err.fail) {
      // Failing the connection (RFC 6455 7.1.7): framing that cannot be trusted is not read any
      // further, and its TCP ends after the close frame, without waiting for one back (which
      // would never be read). A message that is merely too big is read and dropped instead, so
      // that the peer's answer to the close frame is still found.
      from.in.done = true
      from.failing = true
      this.endSoon(from)
    }
    if (!this.closing) {
      // A side cut off inside a frame gets no close frame: for it, the end is abnormal.
      const other = from.peer.cut ? CLOSE_ABNORMAL : code
      this.beginClose(from === this.client
        ? { by: 'client', clientCode: code, upstreamCode: other, reason }
        : { by: 'upstream', clientCode: other, upstreamCode: code, reason })
      this.sendClose(from.peer, code, reason)
    }
    this.sendClose(from, code, reason)
    this.maybeEnd(from)
  }

  /** A compressed message from `from` inflates past maxPayload (1009) or is malformed (1007). */
  private inflateError (from: Side, verdict: MeterVerdict, midFrame: boolean): void {
    // Part of the frame already went to the other side: a close frame would land inside it, so
    // that side's TCP is ended instead; the message never arrives whole either way.
    if (midFrame) this.cut(from.peer)
    this.protocolError(from, verdict === METER_TOO_BIG
      ? new ProtocolError('WS_ERR_UNSUPPORTED_MESSAGE_LENGTH')
      : new ProtocolError('WS_ERR_INVALID_COMPRESSED_DATA', from.in.meter?.reason))
  }

  /**
   * Counts payload bytes chunk[a, b) of the compressed message in transit from `from`; at the end
   * of its last frame (`frameEnds` and FIN), the message's end too.
   */
  private metered (from: Side, chunk: Buffer, a: number, b: number, frameEnds: boolean): MeterVerdict {
    const r = from.in
    const meter = r.meter!
    let v = meter.write(chunk, a, b, from.masked ? r.key : null, r.phase)
    r.phase += b - a
    if (v === METER_OK && frameEnds && r.fin) v = meter.end()
    return v
  }

  private newMeter (from: Side): InflateMeter {
    const d = this.deflate!
    // Each direction inflates what its sender compressed, with the sender's parameters.
    return new InflateMeter(this.opts.maxPayload, from === this.client ? d.client : d.server)
  }

  /**
   * The stream to `side` stops inside a frame: nothing more is written to it (no close frame can
   * follow part of a frame), and its TCP is ended once what was written is flushed.
   */
  private cut (side: Side): void {
    if (side.cut || side.ended) return
    side.cut = true
    side.closeSent = true
    side.queue = null
    side.pushes = null
    // Both are read on: this side until its TCP ends, the other for its answer to the close
    // frame (nothing is written to this side any more, so its buffer holds nobody back).
    if (side.paused) side.resume?.()
    if (side.peer.paused) side.peer.resume?.()
    if (!side.socket.writableEnded) side.socket.end()
    this.endSoon(side)
  }

  /** A failed or cut side whose TCP has not closed within FAIL_TIMEOUT is destroyed. */
  private endSoon (side: Side): void {
    if (side.endTimer !== null || side.ended) return
    side.endTimer = setTimeout(() => side.socket.destroy(), Math.min(FAIL_TIMEOUT, this.opts.closeTimeout ?? DEFAULT_CLOSE_TIMEOUT))
    side.endTimer.unref()
  }

  /** Stops reading `from` until the socket under `to` drains. */
  private pause (from: Side, to: Side): void {
    const raw = to.socket
    from.paused = true
    from.socket.pause()
    const resume = (): void => {
      raw.removeListener('drain', resume)
      raw.removeListener('close', resume)
      from.resume = null
      if (!from.paused) return
      from.paused = false
      if (!from.ended) from.socket.resume()
    }
    from.resume = resume
    raw.on('drain', resume)
    raw.on('close', resume)
  }

  private onSocketClose (side: Side): void {
    side.ended = true
    side.queue = null
    side.pushes = null
    if (side.endTimer !== null) { clearTimeout(side.endTimer); side.endTimer = null }
    // It ended in the middle of a frame being relayed: the stream to the other side can take no
    // close frame any more (it would land inside that frame), so that side's socket ends too.
    if (side.in.remaining > 0 && !side.in.drop) side.peer.socket.destroy()
    if (!this.closing) {
      // No close frame first: an abnormal end (1006), relayed as 1014 / 1001.
      const relayed = relayClose(side.name, 1006, '')
      this.beginClose(side === this.client
        ? { by: 'client', clientCode: 1006, upstreamCode: relayed.code ?? 1005, reason: '' }
        : { by: 'upstream', clientCode: relayed.code ?? 1005, upstreamCode: 1006, reason: '' })
      this.sendClose(side.peer, relayed.code, relayed.reason)
    }
    if (side.peer.ended) this.finish()
  }

  private beginClose (end: BridgeEnd): void {
    this.closing = true
    this.endInfo = end
    // A peer that never answers the close handshake (or never reads) is cut off.
    this.closeTimer = setTimeout(() => {
      this.client.socket.destroy()
      this.up.socket.destroy()
    }, this.opts.closeTimeout ?? DEFAULT_CLOSE_TIMEOUT)
    this.closeTimer.unref()
    this.opts.onClosing?.(this)
  }

  private finish (): void {
    if (this.closeTimer !== null) clearTimeout(this.closeTimer)
    this.closeTimer = null
    release(this.client)
    release(this.up)
    this.opts.onEnd?.(this, this.endInfo ?? { by: 'gateway', clientCode: 1006, upstreamCode: 1006, reason: '' })
  }

  /** The admin API's view of this connection (the Connection schema of src/admin/schemas.ts). */
  toJSON (): ConnectionView {
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

/** Drops what a finished side still holds: its listener, partial frame, meter and timer. */
function release (side: Side): void {
  side.socket.removeAllListeners('data')
  side.in.partial = null
  side.in.meter = null
  if (side.endTimer !== null) { clearTimeout(side.endTimer); side.endTimer = null }
}

/** Whether a pong's payload is that of the ping in flight to `side`. */
function isHeartbeat (buf: Buffer, at: number, len: number, maskAt: number, side: Side): boolean {
  if (len !== 8) return false
  for (let i = 0; i < 8; i++) PING_PAYLOAD[i] = maskAt < 0 ? buf[at + i] : buf[at + i] ^ buf[maskAt + (i & 3)]
  return PING_PAYLOAD.readUInt32LE(0) === side.pingA && PING_PAYLOAD.readUInt32LE(4) === side.pingB
}

function noop (): void {}
