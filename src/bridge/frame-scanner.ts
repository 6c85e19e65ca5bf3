/**
 * Reading relayed frames' headers: a pure scanner over buffered bytes and the framing rules,
 * each broken rule a coded problem with its close status (src/bridge/protocol-errors.ts), as
 * ws's receiver has them. The relay (bridge.ts) keeps where each side's stream stands between
 * reads: between frames (a header to scan, possibly split across reads), inside a data frame's
 * payload (bytes still to pass), or failed (nothing more is read).
 */
import { OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PONG, OP_TEXT } from './frames.js'
import { ProtocolError, type ProtocolErrorCode } from './protocol-errors.js'

/** A scanned frame header; scanFrameHeader fills one in place (no allocation per frame). */
export interface FrameHeader {
  /** The first byte: FIN, RSV1-3, opcode. */
  b0: number
  fin: boolean
  rsv1: boolean
  opcode: number
  masked: boolean
  /** Payload length; a 64-bit length above 2^53 reads as Number.MAX_SAFE_INTEGER. */
  length: number
  /** Header bytes, the masking key included: the payload starts at pos + size. */
  size: number
}

export function newFrameHeader (): FrameHeader {
  return { b0: 0, fin: false, rsv1: false, opcode: 0, masked: false, length: 0, size: 0 }
}

/** 2^53 / 2^32: a 64-bit length whose high word is above this is not a safe integer. */
const MAX_SAFE_HIGH = 0x1fffff

/**
 * Scans the frame header that starts at buf[pos] (bytes up to `len` are there) into `out`.
 * Returns false when the header is not complete yet (read more, then scan again from `pos`): ws's
 * GET_INFO, GET_PAYLOAD_LENGTH_16/64 and GET_MASK states, done at once over what is buffered.
 */
export function scanFrameHeader (buf: Buffer, pos: number, len: number, out: FrameHeader): boolean {
  const avail = len - pos
  if (avail < 2) return false
  const b0 = buf[pos]
  const b1 = buf[pos + 1]
  let length = b1 & 0x7f
  let size = 2
  if (length === 126) {
    if (avail < 4) return false
    length = buf.readUInt16BE(pos + 2)
    size = 4
  } else if (length === 127) {
    if (avail < 10) return false
    const high = buf.readUInt32BE(pos + 2)
    length = high > MAX_SAFE_HIGH ? Number.MAX_SAFE_INTEGER : high * 0x100000000 + buf.readUInt32BE(pos + 6)
    size = 10
  }
  const masked = (b1 & 0x80) !== 0
  if (masked) size += 4
  if (avail < size) return false
  out.b0 = b0
  out.fin = (b0 & 0x80) !== 0
  out.rsv1 = (b0 & 0x40) !== 0
  out.opcode = b0 & 0x0f
  out.masked = masked
  out.length = length
  out.size = size
  return true
}

/**
 * What is wrong with a frame's header (RFC 6455 5.2 and 5.5, RFC 7692 6), checked in the order
 * ws's receiver checks it; null when nothing is.
 * @param b0 the header's first byte: FIN, RSV1-3, opcode
 * @param masked the MASK bit
 * @param length the payload length
 * @param fromClient the frame comes from a client (it must be masked) or a server (it must not)
 * @param inMessage the sender is in the middle of a fragmented data message
 * @param deflate permessage-deflate was negotiated: RSV1 may mark a data message's first frame
 */
export function frameError (b0: number, masked: boolean, length: number, fromClient: boolean, inMessage: boolean, deflate: boolean): ProtocolErrorCode | null {
  if ((b0 & 0x30) !== 0) return 'WS_ERR_UNEXPECTED_RSV_2_3'
  const rsv1 = (b0 & 0x40) !== 0
  if (rsv1 && !deflate) return 'WS_ERR_UNEXPECTED_RSV_1'
  const opcode = b0 & 0x0f
  if (opcode === OP_CONTINUATION) {
    if (rsv1) return 'WS_ERR_UNEXPECTED_RSV_1'
    if (!inMessage) return 'WS_ERR_UNEXPECTED_CONTINUATION'
  } else if (opcode === OP_TEXT || opcode === OP_BINARY) {
    if (inMessage) return 'WS_ERR_EXPECTED_CONTINUATION'
  } else if (opcode >= OP_CLOSE && opcode <= OP_PONG) {
    if ((b0 & 0x80) === 0) return 'WS_ERR_EXPECTED_FIN'
    if (rsv1) return 'WS_ERR_UNEXPECTED_RSV_1'
    // A close payload of one byte cannot hold a status code.
    if (length > 125 || (opcode === OP_CLOSE && length === 1)) return 'WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH'
  } else return 'WS_ERR_INVALID_OPCODE'
  if (masked !== fromClient) return fromClient ? 'WS_ERR_EXPECTED_MASK' : 'WS_ERR_UNEXPECTED_MASK'
  return null
}

/** frameError's code as an error, with the close reason ws would give (it names the opcode or length). */
export function frameProblem (code: ProtocolErrorCode, b0: number, length: number): ProtocolError {
  if (code === 'WS_ERR_INVALID_OPCODE') return new ProtocolError(code, `invalid opcode ${b0 & 0x0f}`)
  if (code === 'WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH') return new ProtocolError(code, `invalid payload length ${length}`)
  return new ProtocolError(code)
}

