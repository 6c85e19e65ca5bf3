/**
 * The two hand-driven ends of a bridged connection: a client that does its HTTP upgrade by hand
 * over net.Socket, and an upstream (a net.Server) that answers the gateway's handshake by hand;
 * both then hand the socket to a RawPeer, which sends whatever frames a test builds.
 */
import { createHash, randomBytes } from 'node:crypto'
import { connect as tcpConnect, createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { RawPeer } from './frames.js'

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
export const accept = (key: string): string => createHash('sha1').update(key + GUID).digest('base64')

export interface Head {
  /** The first line (request line or status line). */
  line: string
  /** Lower-case names; repeated headers joined with ', '. */
  headers: Record<string, string>
  raw: string
}

export function parseHead (text: string): Head {
  const [line, ...rest] = text.split('\r\n')
  const headers: Record<string, string> = {}
  for (const l of rest) {
    const i = l.indexOf(':')
    if (i <= 0) continue
    const name = l.slice(0, i).trim().toLowerCase()
    const value = l.slice(i + 1).trim()
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`
  }
  return { line, headers, raw: text }
}

/** Reads from `socket` until a blank line; resolves with the head and the bytes after it. */
export function readHead (socket: Socket, ms = 3000): Promise<{ head: Head, rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0)
    const timer = setTimeout(() => { cleanup(); reject(new Error(`no HTTP head within ${ms} ms (got ${JSON.stringify(buf.toString('latin1'))})`)) }, ms)
    const onData = (c: Buffer): void => {
      buf = Buffer.concat([buf, c])
      const end = buf.indexOf('\r\n\r\n')
      if (end === -1) return
      cleanup()
      resolve({ head: parseHead(buf.subarray(0, end).toString('latin1')), rest: buf.subarray(end + 4) })
    }
    const onClose = (): void => { cleanup(); reject(new Error(`connection closed before an HTTP head (got ${JSON.stringify(buf.toString('latin1'))})`)) }
    function cleanup (): void { clearTimeout(timer); socket.off('data', onData); socket.off('close', onClose) }
    socket.on('data', onData)
    socket.on('close', onClose)
  })
}

export interface RawClientResult { peer: RawPeer, head: Head }

/**
 * Opens a WebSocket by hand: `extra` header lines (each ending in \r\n) are added to the request.
 * Rejects (with the answer head in the message) unless the answer is a 101 with the right accept key.
 */
export async function openRawClient (port: number, path: string, extra = '', host = `127.0.0.1:${port}`): Promise<RawClientResult> {
  const key = randomBytes(16).toString('base64')
  const socket = tcpConnect(port, '127.0.0.1')
  socket.setNoDelay(true)
  socket.on('error', () => {})
  socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`)
  const { head, rest } = await readHead(socket)
  if (!head.line.startsWith('HTTP/1.1 101') || head.headers['sec-websocket-accept'] !== accept(key)) {
    socket.destroy()
    throw new Error(`handshake failed: ${head.raw}`)
  }
  return { peer: new RawPeer(socket, rest), head }
}

export interface RawUpstreamConn {
  peer: RawPeer
  /** The gateway's upgrade request as it arrived. */
  request: Head
  /** The request target (path and query). */
  path: string
}

export interface RawUpstreamOptions {
  /**
   * The Sec-WebSocket-Extensions answer for an offer (undefined: none), or a fixed answer.
   * Default: none (no extension accepted).
   */
  extensions?: string | ((offer: string | undefined, request: Head) => string | undefined)
}

export interface RawUpstream {
  url: string
  port: number
  /** Every upgrade request received, in order. */
  requests: Head[]
  /** The connection whose request target is `path` (already arrived or the next to). */
  connection (path: string, ms?: number): Promise<RawUpstreamConn>
  close (): Promise<void>
}

/** An upstream whose frames the test writes by hand: it completes each handshake and hands over the socket. */
export async function startRawUpstream (opts: RawUpstreamOptions = {}): Promise<RawUpstream> {
  const requests: Head[] = []
  const arrived = new Map<string, RawUpstreamConn>()
  const waiting = new Map<string, (c: RawUpstreamConn) => void>()
  const sockets = new Set<Socket>()
  const server: Server = createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    socket.setNoDelay(true)
    readHead(socket).then(({ head, rest }) => {
      requests.push(head)
      const key = head.headers['sec-websocket-key'] ?? ''
      const offer = head.headers['sec-websocket-extensions']
      const ext = typeof opts.extensions === 'function' ? opts.extensions(offer, head) : opts.extensions
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${accept(key)}\r\n` + (ext === undefined ? '' : `Sec-WebSocket-Extensions: ${ext}\r\n`) + '\r\n')
      const path = head.line.split(' ')[1] ?? ''
      const conn = { peer: new RawPeer(socket, rest), request: head, path }
      const w = waiting.get(path)
      if (w !== undefined) { waiting.delete(path); w(conn) } else arrived.set(path, conn)
    }, () => socket.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    connection (path, ms = 3000) {
      const c = arrived.get(path)
      if (c !== undefined) { arrived.delete(path); return Promise.resolve(c) }
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => { waiting.delete(path); reject(new Error(`no upstream connection for ${path} within ${ms} ms`)) }, ms)
        waiting.set(path, (conn) => { clearTimeout(timer); resolve(conn) })
      })
    },
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy()
      server.close(() => resolve())
    })
  }
}
