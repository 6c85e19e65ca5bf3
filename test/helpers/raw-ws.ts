/**
 * A hand-made WebSocket client over a raw TCP socket, for the frames a ws client would never
 * produce on its own (fragments with control frames between them, bad framing, split headers).
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { connect as tcpConnect, type Socket } from 'node:net'

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

export interface Frame { fin: boolean, opcode: number, payload: Buffer }

/** One masked client frame (RFC 6455 5.2), with the 7-, 16- or 64-bit length form as needed. */
export function encodeFrame (opcode: number, payload: Buffer, fin = true): Buffer {
  const mask = randomBytes(4)
  const len = payload.length
  const head = Buffer.alloc(len < 126 ? 2 : len < 65536 ? 4 : 10)
  head[0] = (fin ? 0x80 : 0) | opcode
  if (len < 126) head[1] = 0x80 | len
  else if (len < 65536) { head[1] = 0x80 | 126; head.writeUInt16BE(len, 2) } else { head[1] = 0x80 | 127; head.writeBigUInt64BE(BigInt(len), 2) }
  const masked = Buffer.alloc(len)
  for (let i = 0; i < len; i++) masked[i] = payload[i] ^ mask[i & 3]
  return Buffer.concat([head, mask, masked])
}

/** One frame; `key`: masked with it (what a client writes). */
export function wireFrame (b0: number, payload: Buffer, key: Buffer | null): Buffer {
  const len = payload.length
  const head = Buffer.alloc((len < 126 ? 2 : len < 65536 ? 4 : 10) + (key === null ? 0 : 4))
  head[0] = b0
  const m = key === null ? 0 : 0x80
  if (len < 126) head[1] = m | len
  else if (len < 65536) { head[1] = m | 126; head.writeUInt16BE(len, 2) } else { head[1] = m | 127; head.writeBigUInt64BE(BigInt(len), 2) }
  if (key === null) return Buffer.concat([head, payload])
  key.copy(head, head.length - 4)
  const body = Buffer.from(payload)
  for (let i = 0; i < len; i++) body[i] ^= key[i & 3]
  return Buffer.concat([head, body])
}

/** A hand-made WebSocket client over a raw TCP socket: sends any frame, collects the server's. */
export class RawClient {
  private buf = Buffer.alloc(0)
  private readonly frames: Frame[] = []
  private waiter: (() => void) | null = null
  closed = false

  private constructor (readonly socket: Socket, rest: Buffer) {
    socket.on('data', (c: Buffer) => this.push(c))
    socket.on('close', () => { this.closed = true; this.wake() })
    this.push(rest)
  }

  /** Does the HTTP upgrade by hand and checks the server's accept key. */
  static open (port: number, path: string, extraHeaders = ''): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const key = randomBytes(16).toString('base64')
      const socket = tcpConnect(port, '127.0.0.1')
      let head = Buffer.alloc(0)
      socket.on('error', reject)
      socket.on('connect', () => socket.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extraHeaders}\r\n`))
      const onData = (c: Buffer): void => {
        head = Buffer.concat([head, c])
        const end = head.indexOf('\r\n\r\n')
        if (end === -1) return
        socket.off('data', onData)
        const text = head.subarray(0, end).toString('latin1')
        const accept = createHash('sha1').update(key + WS_GUID).digest('base64')
        if (!text.startsWith('HTTP/1.1 101') || !text.toLowerCase().includes(`sec-websocket-accept: ${accept.toLowerCase()}`)) {
          socket.destroy()
          reject(new Error(`handshake failed: ${text}`))
          return
        }
        socket.off('error', reject)
        socket.on('error', () => {})
        resolve(new RawClient(socket, head.subarray(end + 4)))
      }
      socket.on('data', onData)
    })
  }

  send (frame: Buffer): void { this.socket.write(frame) }

  /** The next frame from the server (fails if the socket closes first or after `ms`). */
  async next (ms = 3000): Promise<Frame> {
    const deadline = performance.now() + ms
    while (this.frames.length === 0) {
      if (this.closed) throw new Error('socket closed while waiting for a frame')
      const left = deadline - performance.now()
      if (left <= 0) throw new Error('no frame in time')
      let timer: NodeJS.Timeout | undefined
      await new Promise<void>((resolve) => { this.waiter = resolve; timer = setTimeout(resolve, left) })
      clearTimeout(timer)
      this.waiter = null
    }
    return this.frames.shift()!
  }

  private wake (): void { this.waiter?.() }

  private push (chunk: Buffer): void {
    this.buf = Buffer.concat([this.buf, chunk])
    for (;;) {
      if (this.buf.length < 2) break
      const b1 = this.buf[1]
      assert.equal(b1 & 0x80, 0, 'server frames are not masked')
      let len = b1 & 0x7f
      let off = 2
      if (len === 126) { if (this.buf.length < 4) break; len = this.buf.readUInt16BE(2); off = 4 } else if (len === 127) { if (this.buf.length < 10) break; len = Number(this.buf.readBigUInt64BE(2)); off = 10 }
      if (this.buf.length < off + len) break
      this.frames.push({ fin: (this.buf[0] & 0x80) !== 0, opcode: this.buf[0] & 0x0f, payload: Buffer.from(this.buf.subarray(off, off + len)) })
      this.buf = this.buf.subarray(off + len)
    }
    if (this.frames.length > 0) this.wake()
  }
}

export function closePayload (code: number, reason = ''): Buffer {
  const b = Buffer.alloc(2 + Buffer.byteLength(reason))
  b.writeUInt16BE(code, 0)
  b.write(reason, 2)
  return b
}
