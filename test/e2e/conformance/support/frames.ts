/**
 * WebSocket frames as bytes, for peers that misbehave on purpose: any FIN/RSV/opcode/mask
 * combination, any payload, and a reader that reports every frame it sees (masked or not) instead
 * of refusing what a correct peer would refuse. Used by the raw client and the raw upstream alike.
 */
import { randomBytes } from 'node:crypto'
import type { Socket } from 'node:net'

export const OP = { CONT: 0x0, TEXT: 0x1, BINARY: 0x2, CLOSE: 0x8, PING: 0x9, PONG: 0xa } as const
export const RSV1 = 0x40
export const RSV2 = 0x20
export const RSV3 = 0x10

export interface FrameSpec {
  opcode: number
  payload?: Buffer | string
  /** Default true. */
  fin?: boolean
  /** Bits 0x40 (RSV1), 0x20 (RSV2), 0x10 (RSV3), or'ed. */
  rsv?: number
  /** true: a random key; a Buffer: that key; false: unmasked. */
  mask?: boolean | Buffer
}

/** One frame, with the 7-, 16- or 64-bit length form as the payload needs. */
export function frame (spec: FrameSpec): Buffer {
  const payload = typeof spec.payload === 'string' ? Buffer.from(spec.payload) : spec.payload ?? Buffer.alloc(0)
  const len = payload.length
  const key = spec.mask === true ? randomBytes(4) : spec.mask === false || spec.mask === undefined ? null : spec.mask
  const head = Buffer.alloc((len < 126 ? 2 : len < 65536 ? 4 : 10) + (key === null ? 0 : 4))
  head[0] = (spec.fin === false ? 0 : 0x80) | (spec.rsv ?? 0) | spec.opcode
  const m = key === null ? 0 : 0x80
  if (len < 126) head[1] = m | len
  else if (len < 65536) { head[1] = m | 126; head.writeUInt16BE(len, 2) } else { head[1] = m | 127; head.writeBigUInt64BE(BigInt(len), 2) }
  if (key === null) return Buffer.concat([head, payload])
  key.copy(head, head.length - 4)
  const body = Buffer.allocUnsafe(len)
  for (let i = 0; i < len; i++) body[i] = payload[i] ^ key[i & 3]
  return Buffer.concat([head, body])
}

/** A client's frame: masked. */
export function cframe (opcode: number, payload: Buffer | string = '', opts: Omit<FrameSpec, 'opcode' | 'payload' | 'mask'> = {}): Buffer {
  return frame({ ...opts, opcode, payload, mask: true })
}

/** A server's frame: unmasked. */
export function sframe (opcode: number, payload: Buffer | string = '', opts: Omit<FrameSpec, 'opcode' | 'payload' | 'mask'> = {}): Buffer {
  return frame({ ...opts, opcode, payload, mask: false })
}

/** A close frame's payload: the code (2 bytes, any value) and the reason bytes. */
export function closeBody (code: number, reason: Buffer | string = ''): Buffer {
  const r = typeof reason === 'string' ? Buffer.from(reason) : reason
  const b = Buffer.alloc(2 + r.length)
  b.writeUInt16BE(code, 0)
  r.copy(b, 2)
  return b
}

/** `data` cut into pieces of `size` bytes (the last may be shorter). */
export function chops (data: Buffer, size: number): Buffer[] {
  const out: Buffer[] = []
  for (let i = 0; i < data.length; i += size) out.push(data.subarray(i, i + size))
  return out
}

/** A data message as fragments: the first with `opcode`, the rest continuations, FIN on the last. */
export function fragments (opcode: number, parts: Array<Buffer | string>, masked: boolean, firstRsv = 0): Buffer[] {
  return parts.map((p, i) => frame({ opcode: i === 0 ? opcode : OP.CONT, payload: p, fin: i === parts.length - 1, rsv: i === 0 ? firstRsv : 0, mask: masked }))
}

export interface Frame {
  fin: boolean
  /** RSV bits as in the first byte (0x70 mask). */
  rsv: number
  opcode: number
  masked: boolean
  /** Unmasked. */
  payload: Buffer
}

/** A close frame's code and reason (code undefined: empty payload; NaN: a 1-byte payload). */
export function parseCloseFrame (f: Frame): { code: number | undefined, reason: string } {
  if (f.payload.length === 0) return { code: undefined, reason: '' }
  if (f.payload.length === 1) return { code: NaN, reason: '' }
  return { code: f.payload.readUInt16BE(0), reason: f.payload.subarray(2).toString() }
}

/**
 * One end of a WebSocket connection driven by hand over a TCP socket: writes any bytes, and
 * collects every frame the other end (the gateway) sends, in order.
 */
export class RawPeer {
  /** Every frame received so far. */
  readonly received: Frame[] = []
  /** Frames not yet taken by next(). */
  private readonly queue: Frame[] = []
  private buf: Buffer = Buffer.alloc(0)
  private wakers: Array<() => void> = []
  /** performance.now() when the TCP connection closed; null while open. */
  closedAt: number | null = null
  /** performance.now() when the other end ended its half of the TCP connection (FIN). */
  endedAt: number | null = null
  /** Resolves when the TCP connection has closed (both halves, or reset). */
  readonly gone: Promise<void>

  constructor (readonly socket: Socket, rest: Buffer = Buffer.alloc(0)) {
    socket.on('error', () => {})
    socket.on('data', (c: Buffer) => this.push(c))
    // The gateway ending its half counts as ending the connection: a peer that fails the
    // connection may not answer anything more, so this side closes too.
    socket.on('end', () => { this.endedAt ??= performance.now(); this.wake(); if (!socket.destroyed) socket.end() })
    this.gone = new Promise((resolve) => socket.once('close', () => { this.closedAt = performance.now(); this.wake(); resolve() }))
    if (rest.length > 0) this.push(rest)
  }

  get closed (): boolean { return this.closedAt !== null }

  /** Writes bytes (frames built with frame()/cframe()/sframe(), or pieces of them). */
  send (...chunks: Buffer[]): void { for (const c of chunks) this.socket.write(c) }

  /** Writes `data` in pieces of `size` bytes, one write each, waiting for each to be flushed. */
  async sendInChops (data: Buffer, size: number): Promise<void> {
    for (const piece of chops(data, size)) {
      await new Promise<void>((resolve, reject) => this.socket.write(piece, (err) => err ? reject(err) : resolve()))
    }
  }

  /** The next frame (rejects when the connection closes first, or after `ms`). */
  async next (ms = 3000, what = 'a frame'): Promise<Frame> {
    const deadline = performance.now() + ms
    while (this.queue.length === 0) {
      if (this.closed || this.endedAt !== null) throw new Error(`connection ended while waiting for ${what}`)
      const left = deadline - performance.now()
      if (left <= 0) throw new Error(`no ${what} within ${ms} ms`)
      await this.sleep(left)
    }
    return this.queue.shift()!
  }

  /** The next close frame; the frames before it are returned too. */
  async nextClose (ms = 3000): Promise<{ code: number | undefined, reason: string, before: Frame[], frame: Frame }> {
    const before: Frame[] = []
    const deadline = performance.now() + ms
    for (;;) {
      const f = await this.next(Math.max(1, deadline - performance.now()), 'a close frame')
      if (f.opcode === OP.CLOSE) return { ...parseCloseFrame(f), before, frame: f }
      before.push(f)
    }
  }

  /** The next data message, reassembled; control frames met on the way are returned too. */
  async nextMessage (ms = 3000): Promise<{ opcode: number, data: Buffer, frames: Frame[], controls: Frame[] }> {
    const frames: Frame[] = []
    const controls: Frame[] = []
    const deadline = performance.now() + ms
    for (;;) {
      const f = await this.next(Math.max(1, deadline - performance.now()), 'a data message')
      if (f.opcode >= 8) { controls.push(f); if (f.opcode === OP.CLOSE) throw new Error(`close frame (${JSON.stringify(parseCloseFrame(f))}) instead of a data message`); continue }
      frames.push(f)
      if (f.fin) return { opcode: frames[0].opcode, data: Buffer.concat(frames.map((x) => x.payload)), frames, controls }
    }
  }

  /** Resolves when the TCP connection has been ended by the other side (FIN or close) within `ms`. */
  async tcpEnds (ms: number): Promise<void> {
    const deadline = performance.now() + ms
    while (this.endedAt === null && !this.closed) {
      const left = deadline - performance.now()
      if (left <= 0) throw new Error(`TCP connection still open ${ms} ms later`)
      await this.sleep(left)
    }
  }

  destroy (): void { this.socket.destroy() }

  private sleep (ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms)
      function done (): void { clearTimeout(timer); resolve() }
      this.wakers.push(done)
    })
  }

  private wake (): void {
    const w = this.wakers
    this.wakers = []
    for (const f of w) f()
  }

  private push (chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk])
    let got = false
    for (;;) {
      const b = this.buf
      if (b.length < 2) break
      const masked = (b[1] & 0x80) !== 0
      let len = b[1] & 0x7f
      let off = 2
      if (len === 126) { if (b.length < 4) break; len = b.readUInt16BE(2); off = 4 } else if (len === 127) { if (b.length < 10) break; len = Number(b.readBigUInt64BE(2)); off = 10 }
      const keyAt = off
      if (masked) off += 4
      if (b.length < off + len) break
      const payload = Buffer.from(b.subarray(off, off + len))
      if (masked) for (let i = 0; i < len; i++) payload[i] ^= b[keyAt + (i & 3)]
      const f: Frame = { fin: (b[0] & 0x80) !== 0, rsv: b[0] & 0x70, opcode: b[0] & 0x0f, masked, payload }
      this.received.push(f)
      this.queue.push(f)
      got = true
      this.buf = b.subarray(off + len)
    }
    if (got) this.wake()
  }
}
