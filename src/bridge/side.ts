/**
 * One side of a bridged pair (the client, or the upstream) as the relay sees it: where reading
 * its frames stands (Reader), its heartbeat clock, backpressure, the close handshake's flags
 * (drawn in bridge.ts above sendClose, as ws keeps _closeFrameSent/_closeFrameReceived) and the
 * gateway's own frames waiting for a boundary on the stream to it.
 */
import type { Duplex } from 'node:stream'
import type { InflateMeter } from './inflate-meter.js'

/** Where reading one side's frames stands. */
export interface Reader {
  /** Payload bytes of the frame in transit still to come (> 0: mid-frame). */
  remaining: number
  /** The frame in transit is discarded, not relayed. */
  drop: boolean
  /** The start of a frame whose header (or whole control frame) has not all arrived. */
  partial: Buffer | null
  /** The sender is in the middle of a fragmented data message (framing checks). */
  inMessage: boolean
  /** The receiver is in the middle of a fragmented message: relayed fragments, no final one yet. */
  openToPeer: boolean
  /** Payload bytes of the current message so far (maxPayload). */
  messageBytes: number
  /** A close frame or a protocol error was read: the rest is ignored. */
  done: boolean
  /** The message in transit is compressed: its payload goes through `meter` before it is relayed. */
  inflating: boolean
  /** The frame in transit is its message's last (the meter's message ends with it). */
  fin: boolean
  /** The masking key of the frame in transit (client frames), and how much of its payload was metered. */
  key: Buffer | null
  phase: number
  /** Counts what this side's compressed messages inflate to; made at the first one. */
  meter: InflateMeter | null
}

export interface Side {
  readonly name: 'client' | 'upstream'
  readonly socket: Duplex
  /** Frames from this side are masked (the client) or not (the upstream); frames to it the reverse. */
  readonly masked: boolean
  readonly in: Reader
  peer: Side
  /** performance.now() of the unanswered ping (when it was due); 0 when none is pending. */
  pingSentAt: number
  /**
   * The payload of the ping in flight to this side, as two 32-bit halves: fresh for each ping,
   * so that only a peer that read it can answer it (a constant one could be replayed by a
   * socket that never reads, to look alive while it holds the other side paused).
   */
  pingA: number
  pingB: number
  /** performance.now() when that ping was actually written (it may wait for a frame boundary). */
  pingWrittenAt: number
  /** performance.now() of the last ping sent. */
  lastPingAt: number
  /** Reading from this side is paused because the other side is full. */
  paused: boolean
  /** Ends the pause (set while paused). */
  resume: (() => void) | null
  /** The socket has closed. */
  ended: boolean
  closeSent: boolean
  closeReceived: boolean
  /** The gateway failed this connection (bad framing): its TCP ends right after the close frame. */
  failing: boolean
  /** The stream to this side stopped inside a frame: nothing more is written to it, not even a close frame. */
  cut: boolean
  /** Destroys the socket of a failed or cut side that has not closed in time. */
  endTimer: NodeJS.Timeout | null
  /** Control frames of the gateway's own (pings, close) waiting for a frame boundary on the stream to this side. */
  queue: Buffer[] | null
  /** Admin pushes waiting for a message boundary on the stream to this side. */
  pushes: Buffer[] | null
}

/** A side in its opening state: nothing read, nothing owed, no ping in flight. */
export function newSide (name: 'client' | 'upstream', socket: Duplex, masked: boolean, now: number): Side {
  return {
    name,
    socket,
    masked,
    in: { remaining: 0, drop: false, partial: null, inMessage: false, openToPeer: false, messageBytes: 0, done: false, inflating: false, fin: false, key: null, phase: 0, meter: null },
    peer: undefined as unknown as Side,
    pingSentAt: 0,
    pingA: 0,
    pingB: 0,
    pingWrittenAt: 0,
    lastPingAt: now,
    paused: false,
    resume: null,
    ended: false,
    closeSent: false,
    closeReceived: false,
    failing: false,
    cut: false,
    endTimer: null,
    queue: null,
    pushes: null
  }
}
