/**
 * Helpers of the live-upstreams tests: named WebSocket/HTTP upstreams that can listen on any
 * loopback address (DNS tests give several addresses one port), the admin API, waiting for a
 * condition, and clients that record when and how they were closed.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { WebSocketServer, type WebSocket as ServerSocket } from 'ws'
import type WebSocket from 'ws'
import type { TestContext } from 'node:test'
import { connect } from '../../helpers/ws.js'
import type { TargetJson } from '../../../ui/upstreams.js'

export const ADMIN = 'live-upstreams-admin-token'

export interface NamedUpstream {
  name: string
  url: string
  host: string
  port: number
  /** Upgrade requests received (their Host header and path). */
  upgrades: Array<{ host: string | undefined, url: string | undefined }>
  /** HTTP requests received (health probes excluded). */
  requests: Array<{ host: string | undefined, url: string | undefined }>
  /** Open WebSocket connections on this upstream. */
  sockets: Set<ServerSocket>
  close (): Promise<void>
}

/**
 * An upstream that names itself: each WebSocket message is answered `<name>:<message>`, HTTP
 * requests with `<name>`; /healthz answers 200.
 */
export async function namedUpstream (t: TestContext, name: string, host = '127.0.0.1', port = 0): Promise<NamedUpstream> {
  const upgrades: NamedUpstream['upgrades'] = []
  const requests: NamedUpstream['requests'] = []
  const sockets = new Set<ServerSocket>()
  const tcp = new Set<Socket>()
  const server: Server = createServer((req, res) => {
    if (req.url !== '/healthz') requests.push({ host: req.headers.host, url: req.url })
    res.writeHead(200, { 'content-type': 'text/plain', 'x-upstream': name }).end(name)
  })
  server.on('connection', (s: Socket) => { tcp.add(s); s.on('close', () => tcp.delete(s)) })
  const wss = new WebSocketServer({ noServer: true })
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    upgrades.push({ host: req.headers.host, url: req.url })
    socket.on('error', () => {})
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.add(ws)
      ws.on('close', () => sockets.delete(ws))
      ws.on('error', () => {})
      ws.on('message', (data) => ws.send(`${name}:${String(data)}`))
    })
  })
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(port, host, resolve) })
  const actual = (server.address() as AddressInfo).port
  const up: NamedUpstream = {
    name,
    url: `http://${host}:${actual}`,
    host,
    port: actual,
    upgrades,
    requests,
    sockets,
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.terminate()
      for (const s of tcp) s.destroy()
      wss.close()
      server.close(() => resolve())
    })
  }
  t.after(() => up.close())
  return up
}

/** Polls `check` until it holds (for state with no event to await, such as another instance's). */
export async function waitFor (check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

export interface AdminAnswer { status: number, body: any } // eslint-disable-line @typescript-eslint/no-explicit-any -- JSON answers, checked by the tests

/** One admin API call with the token. */
export async function admin (base: string, method: string, path: string, body?: unknown): Promise<AdminAnswer> {
  const res = await fetch(`${base}/admin${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body)
  })
  const text = await res.text()
  return { status: res.status, body: text === '' ? null : JSON.parse(text) }
}

/** The targets of upstream `name` as GET /upstreams shows them. */
export async function targetsOf (base: string, name = 'chat'): Promise<Listed[]> {
  const res = await admin(base, 'GET', '/upstreams')
  return (res.body.upstreams as Array<{ name: string, targets: Listed[] }>).find((u) => u.name === name)?.targets ?? []
}

/** A target as GET /upstreams lists it (the dashboard's type of it). */
export type Listed = TargetJson & { openConnections: number, inFlight: number }

/** A client that remembers when and with what code it was closed. */
export interface TrackedClient {
  ws: WebSocket
  /** Which upstream answered its first message. */
  upstream: string
  closedAt: number | null
  code: number | null
  closed: Promise<void>
}

/** Opens a client and asks it which upstream it reached (the first message's answer). */
export async function tracked (url: string): Promise<TrackedClient> {
  const ws = await connect(url)
  const c: TrackedClient = { ws, upstream: '', closedAt: null, code: null, closed: Promise.resolve() }
  c.closed = new Promise((resolve) => {
    ws.once('close', (code: number) => { c.closedAt = Date.now(); c.code = code; resolve() })
  })
  c.upstream = await whoAnswers(ws)
  return c
}

/** Sends a message and returns the name of the upstream that answered it. */
export function whoAnswers (ws: WebSocket): Promise<string> {
  return new Promise((resolve, reject) => {
    ws.once('message', (data) => { resolve(String(data).split(':', 1)[0]) })
    ws.once('close', () => reject(new Error('closed before answering')))
    ws.send('who')
  })
}

/** Opens `n` clients, a few at a time. */
export async function trackedMany (url: string, n: number, batch = 50): Promise<TrackedClient[]> {
  const out: TrackedClient[] = []
  for (let i = 0; i < n; i += batch) {
    out.push(...await Promise.all(Array.from({ length: Math.min(batch, n - i) }, () => tracked(url))))
  }
  return out
}

/** How many of `clients` reached each upstream name. */
export function spread (clients: Iterable<{ upstream: string }>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const c of clients) out[c.upstream] = (out[c.upstream] ?? 0) + 1
  return out
}

/** The largest number of `times` (ms) that fall in any window of `windowMs`. */
export function maxInWindow (times: number[], windowMs: number): number {
  const sorted = [...times].sort((a, b) => a - b)
  let best = 0
  let lo = 0
  for (let hi = 0; hi < sorted.length; hi++) {
    while (sorted[hi] - sorted[lo] >= windowMs) lo++
    best = Math.max(best, hi - lo + 1)
  }
  return best
}
