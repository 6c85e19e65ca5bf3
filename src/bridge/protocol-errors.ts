/**
 * The ways a peer can break the WebSocket protocol that the relay detects, each with a stable
 * code (ws's own code where ws has one for the same condition, see ws/lib/receiver.js), the
 * close status the gateway answers with, and whether the connection is failed.
 *
 * Failing a connection (RFC 6455 7.1.7) is more than closing it: the gateway writes its close
 * frame, reads nothing more of that peer, and ends the TCP connection right after the frame
 * instead of waiting for a close frame back (as ws ends the socket after a receiver error). A
 * message that is merely too big is closed, not failed: the gateway keeps reading (and dropping)
 * so that it sees the peer's answer to its close frame.
 */
import { CLOSE_INVALID_DATA, CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG } from '../close-codes.js'

interface ProtocolErrorSpec {
  readonly status: number
  readonly message: string
  readonly fail: boolean
}

export const protocolErrors = {
  WS_ERR_EXPECTED_MASK: { status: CLOSE_PROTOCOL_ERROR, message: 'MASK must be set', fail: true },
  WS_ERR_UNEXPECTED_MASK: { status: CLOSE_PROTOCOL_ERROR, message: 'MASK must be clear', fail: true },
  WS_ERR_UNEXPECTED_RSV_1: { status: CLOSE_PROTOCOL_ERROR, message: 'RSV1 must be clear', fail: true },
  WS_ERR_UNEXPECTED_RSV_2_3: { status: CLOSE_PROTOCOL_ERROR, message: 'RSV2 and RSV3 must be clear', fail: true },
  WS_ERR_INVALID_OPCODE: { status: CLOSE_PROTOCOL_ERROR, message: 'invalid opcode', fail: true },
  /** ws reports this one as WS_ERR_INVALID_OPCODE ("invalid opcode 0"). */
  WS_ERR_UNEXPECTED_CONTINUATION: { status: CLOSE_PROTOCOL_ERROR, message: 'unexpected continuation frame', fail: true },
  /** ws reports this one as WS_ERR_INVALID_OPCODE ("invalid opcode 1"). */
  WS_ERR_EXPECTED_CONTINUATION: { status: CLOSE_PROTOCOL_ERROR, message: 'expected a continuation frame', fail: true },
  WS_ERR_EXPECTED_FIN: { status: CLOSE_PROTOCOL_ERROR, message: 'FIN must be set', fail: true },
  WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH: { status: CLOSE_PROTOCOL_ERROR, message: 'invalid payload length', fail: true },
  WS_ERR_INVALID_CLOSE_CODE: { status: CLOSE_PROTOCOL_ERROR, message: 'invalid status code', fail: true },
  WS_ERR_INVALID_UTF8: { status: CLOSE_INVALID_DATA, message: 'invalid UTF-8 sequence', fail: true },
  /** ws passes zlib's error on with 1007; the reason is the meter's own (zlib's words). */
  WS_ERR_INVALID_COMPRESSED_DATA: { status: CLOSE_INVALID_DATA, message: 'invalid compressed data', fail: true },
  WS_ERR_UNSUPPORTED_MESSAGE_LENGTH: { status: CLOSE_TOO_BIG, message: 'message too big', fail: false }
} as const satisfies Record<string, ProtocolErrorSpec>

export type ProtocolErrorCode = keyof typeof protocolErrors

/** A protocol error a peer made: its code, the close status to send, and the close reason (`message`). */
export class ProtocolError extends Error {
  readonly code: ProtocolErrorCode
  /** The status of the close frame the gateway sends for it. */
  readonly closeCode: number
  /** The connection is failed (RFC 6455 7.1.7), not just closed. */
  readonly fail: boolean

  /** @param detail a more precise close reason than the code's message (at most 123 bytes are sent) */
  constructor (code: ProtocolErrorCode, detail?: string) {
    const spec: ProtocolErrorSpec = protocolErrors[code]
    super(detail ?? spec.message)
    this.name = 'ProtocolError'
    this.code = code
    this.closeCode = spec.status
    this.fail = spec.fail
  }
}
