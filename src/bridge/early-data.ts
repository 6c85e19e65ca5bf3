/**
 * The client's socket between its handshake and its 101. It is not read by anyone then, so a
 * client that hangs up would go unnoticed until the connect timeout: it is read meanwhile, and
 * its end is watched. A client may not send frames before its 101, but some do (they did not wait
 * for the answer): what is read is kept and put back for the relay. What is kept is bounded: past
 * `limit` bytes the socket is paused (TCP backpressure) until the upgrade completes or fails.
 */
import type { Socket } from 'node:net'

export class EarlyData {
  private readonly chunks: Buffer[] = []
  private bytes: number
  private reading = false
  private gone = false

  /**
   * @param head bytes that came with the upgrade request itself (Node's `upgrade` event).
   * @param onGone called once if the client ends or closes its socket meanwhile.
   */
  constructor (private readonly socket: Socket, head: Buffer | undefined, private readonly limit: number, onGone: () => void) {
    this.onGone = () => {
      if (this.gone) return
      this.gone = true
      onGone()
    }
    if (head !== undefined && head.length > 0) this.chunks.push(head)
    this.bytes = head?.length ?? 0
    if (this.bytes >= limit) socket.pause()
    else { socket.on('data', this.onData); this.reading = true }
    // on, not once: onGone runs at most once anyway, stop() removes both, and once would wrap
    // each in a closure of its own.
    socket.on('end', this.onGone)
    socket.on('close', this.onGone)
  }

  private readonly onGone: () => void

  private readonly onData = (chunk: Buffer): void => {
    this.chunks.push(chunk)
    this.bytes += chunk.length
    if (this.bytes >= this.limit) { this.stopReading(); this.socket.pause() }
  }

  private stopReading (): void {
    if (this.reading) this.socket.removeListener('data', this.onData)
    this.reading = false
  }

  /** Stops watching; the socket is left paused. */
  stop (): void {
    this.stopReading()
    this.socket.removeListener('end', this.onGone)
    this.socket.removeListener('close', this.onGone)
    this.socket.pause()
  }

  /** Puts what was read back in front of the socket's data, for whoever reads it next. */
  putBack (): void {
    if (this.chunks.length > 0) this.socket.unshift(this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks))
    this.chunks.length = 0
  }
}
