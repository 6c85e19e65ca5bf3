/**
 * Real upstream servers for tests: an HTTP + WebSocket server on 127.0.0.1:0 whose behaviour a
 * test controls, recording what it received.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import { WebSocketServer, type WebSocket } from 'ws'

export interface UpstreamOptions {
  /** HTTP handler; default: JSON echo of method, path, query, headers, body. */
  http?: (req: IncomingMessage, res: ServerResponse, body: Buffer) => void
  /** What to do with a WebSocket connection; default: echo every message as it came. */
  onConnection?: (ws: WebSocket, req: IncomingMessage) => void
  /** Subprotocol choice; default: ws's default (the first offered). */
  handleProtocols?: (protocols: Set<string>, req: IncomingMessage) => string | false
  /** Reject the upgrade with this status (e.g. 403). */
  rejectStatus?: number
  /** Never answer upgrade requests (to test connect timeouts). */
  hangUpgrades?: boolean
  /** Serve https/wss with this key pair. */
  tls?: { key: string, cert: string }
  maxPayload?: number
  /** Accept permessage-deflate when offered (default: off). */
  perMessageDeflate?: boolean
}

export interface TestUpstream {
  url: string
  wsUrl: string
  port: number
  server: Server
  wss: WebSocketServer
  /** Upgrade requests seen (headers and url). */
  upgrades: IncomingMessage[]
  /** Server-side sockets of open WebSocket connections. */
  sockets: Set<WebSocket>
  /** Resolves with the next WebSocket connection. */
  nextConnection (): Promise<{ ws: WebSocket, req: IncomingMessage }>
  /** TCP sockets currently open on the server. */
  openTcp (): number
  close (): Promise<void>
}

export async function startUpstream (opts: UpstreamOptions = {}): Promise<TestUpstream> {
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      if (opts.http !== undefined) { opts.http(req, res, body); return }
      const url = new URL(req.url ?? '/', 'http://x')
      const out = JSON.stringify({ method: req.method, url: req.url, path: url.pathname, query: Object.fromEntries(url.searchParams), headers: req.headers, body: body.toString() })
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(out)
    })
  }
  const server = opts.tls !== undefined ? createHttpsServer(opts.tls, handler) : createServer(handler)
  const tcp = new Set<Socket>()
  server.on('connection', (s: Socket) => { tcp.add(s); s.on('close', () => tcp.delete(s)) })
  server.on('secureConnection', (s: Socket) => { tcp.add(s); s.on('close', () => tcp.delete(s)) })
  const wss = new WebSocketServer({ noServer: true, handleProtocols: opts.handleProtocols, maxPayload: opts.maxPayload, perMessageDeflate: opts.perMessageDeflate ?? false })
  const upgrades: IncomingMessage[] = []
  const sockets = new Set<WebSocket>()
  const waiters: Array<(c: { ws: WebSocket, req: IncomingMessage }) => void> = []
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    upgrades.push(req)
    socket.on('error', () => {})
    if (opts.hangUpgrades === true) return
    if (opts.rejectStatus !== undefined) {
      socket.end(`HTTP/1.1 ${opts.rejectStatus} Rejected\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`)
      return
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.add(ws)
      ws.on('close', () => sockets.delete(ws))
      ws.on('error', () => {})
      const w = waiters.shift()
      if (w !== undefined) w({ ws, req })
      if (opts.onConnection !== undefined) opts.onConnection(ws, req)
      else ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const scheme = opts.tls !== undefined ? 'https' : 'http'
  return {
    url: `${scheme}://127.0.0.1:${port}`,
    wsUrl: `${scheme === 'https' ? 'wss' : 'ws'}://127.0.0.1:${port}`,
    port,
    server,
    wss,
    upgrades,
    sockets,
    nextConnection: () => new Promise((resolve) => waiters.push(resolve)),
    openTcp: () => tcp.size,
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.terminate()
      for (const s of tcp) s.destroy()
      wss.close()
      server.close(() => resolve())
    })
  }
}

/** startUpstream, closed after the test. */
export async function upstreamFor (t: { after: (fn: () => Promise<void>) => void }, opts: UpstreamOptions = {}): Promise<TestUpstream> {
  const up = await startUpstream(opts)
  t.after(() => up.close())
  return up
}
