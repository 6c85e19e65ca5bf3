/** WebSocket client helpers that await events instead of sleeping. */
import WebSocket, { type ClientOptions } from 'ws'
import { once } from 'node:events'

export class HandshakeError extends Error {
  constructor (readonly status: number, readonly body: string, readonly headers: Record<string, string | string[] | undefined>) {
    super(`handshake failed with ${status}`)
  }
}

/** Opens a client; resolves when open, rejects with HandshakeError(status) on a non-101 answer. */
export function connect (url: string, protocols?: string | string[], opts: ClientOptions = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, { perMessageDeflate: false, ...opts })
    ws.once('open', () => { ws.removeAllListeners('error'); ws.on('error', () => {}); resolve(ws) })
    ws.once('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => { ws.terminate(); reject(new HandshakeError(res.statusCode ?? 0, Buffer.concat(chunks).toString(), res.headers)) })
    })
    ws.once('error', reject)
  })
}

/** The next message: data and whether it was binary. */
export async function nextMessage (ws: WebSocket): Promise<{ data: Buffer, isBinary: boolean }> {
  const [data, isBinary] = await once(ws, 'message') as [Buffer, boolean]
  return { data, isBinary }
}

/** Resolves with the close code and reason (works when already closed too). */
export function closed (ws: WebSocket): Promise<{ code: number, reason: string }> {
  return new Promise((resolve) => {
    ws.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() }))
  })
}

/** Collects `n` messages. */
export function collect (ws: WebSocket, n: number): Promise<Array<{ data: Buffer, isBinary: boolean }>> {
  return new Promise((resolve, reject) => {
    const out: Array<{ data: Buffer, isBinary: boolean }> = []
    if (n === 0) { resolve(out); return }
    const onMsg = (data: Buffer, isBinary: boolean): void => {
      out.push({ data, isBinary })
      if (out.length === n) { ws.off('message', onMsg); ws.off('close', onClose); resolve(out) }
    }
    const onClose = (code: number): void => reject(new Error(`closed (${code}) after ${out.length} of ${n} messages`))
    ws.on('message', onMsg)
    ws.on('close', onClose)
  })
}
