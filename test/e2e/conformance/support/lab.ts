/**
 * One gateway with two routes, for the WebSocket conformance cases:
 *   /w/<n>  -> a correct upstream (ws, echoes every message), for misbehaving clients;
 *   /r/<n>  -> a hand-driven upstream (startRawUpstream), for misbehaving upstreams.
 * Each connection gets its own path, so that the upstream end is found whatever the order.
 */
import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import type WebSocket from 'ws'
import type { ClientOptions } from 'ws'
import { startUpstream, type TestUpstream, type UpstreamOptions } from '../../../helpers/upstream.js'
import { gatewayFor as startGatewayFor, startGateway, type TestGateway } from '../../../helpers/gateway.js'
import { connect } from '../../../helpers/ws.js'
import { waitFor, within } from '../../../helpers/resources.js'
import type { GatewayConfigInput } from '../../../../src/config/schema.js'
import { openRawClient, startRawUpstream, type Head, type RawUpstream, type RawUpstreamConn, type RawUpstreamOptions } from './raw.js'
import type { Frame, RawPeer } from './frames.js'

export { within }

export interface Msg { data: Buffer, isBinary: boolean }
export interface CloseInfo { code: number, reason: string }

/** A correct peer (ws) and what it saw: messages, pings, pongs, and its close. */
export interface GoodPeer {
  ws: WebSocket
  messages: Msg[]
  pings: Buffer[]
  pongs: Buffer[]
  /** Resolves with the close code and reason it ended with. */
  closed: Promise<CloseInfo>
  /** Set once closed. */
  closeInfo: CloseInfo | null
}

export function watch (ws: WebSocket): GoodPeer {
  const p: GoodPeer = { ws, messages: [], pings: [], pongs: [], closed: undefined as unknown as Promise<CloseInfo>, closeInfo: null }
  ws.on('message', (data: Buffer, isBinary: boolean) => p.messages.push({ data: Buffer.from(data), isBinary }))
  ws.on('ping', (d: Buffer) => p.pings.push(Buffer.from(d)))
  ws.on('pong', (d: Buffer) => p.pongs.push(Buffer.from(d)))
  ws.on('error', () => {})
  p.closed = new Promise((resolve) => ws.once('close', (code: number, reason: Buffer) => { p.closeInfo = { code, reason: reason.toString() }; resolve(p.closeInfo) }))
  return p
}

export interface LabOptions {
  /** Merged into the gateway config (websocket and server keys are merged one level deep). */
  config?: Partial<GatewayConfigInput>
  good?: Omit<UpstreamOptions, 'onConnection'> & { echo?: boolean }
  raw?: RawUpstreamOptions
}

export interface Lab {
  gw: TestGateway
  good: TestUpstream
  raw: RawUpstream
  /** A misbehaving (hand-driven) client and the correct upstream's end of its connection. */
  rawToGood (t: After, extra?: string): Promise<{ client: RawPeer, head: Head, server: GoodPeer, req: IncomingMessage }>
  /** A correct client (ws) and the hand-driven upstream's end of its connection. */
  goodToRaw (t: After, opts?: ClientOptions): Promise<{ client: GoodPeer, up: RawUpstreamConn }>
  /** Hand-driven at both ends: to see exactly which frames the gateway passes on. */
  rawToRaw (t: After, extra?: string): Promise<{ client: RawPeer, head: Head, up: RawUpstreamConn }>
  /** A correct client (ws) and the correct upstream (ws). */
  goodToGood (t: After, opts?: ClientOptions): Promise<{ client: GoodPeer, server: GoodPeer, req: IncomingMessage }>
  /** Waits until no bridge is left (every socket of every connection closed). */
  drained (ms?: number): Promise<void>
  close (): Promise<void>
}

interface After { after: (fn: () => void | Promise<void>) => void }

export async function makeLab (opts: LabOptions = {}): Promise<Lab> {
  const waiting = new Map<string, (c: { server: GoodPeer, req: IncomingMessage }) => void>()
  const arrived = new Map<string, { server: GoodPeer, req: IncomingMessage }>()
  const { echo = true, ...goodOpts } = opts.good ?? {}
  const good = await startUpstream({
    ...goodOpts,
    onConnection: (ws, req) => {
      const server = watch(ws)
      if (echo) ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }))
      const path = req.url ?? ''
      const w = waiting.get(path)
      if (w !== undefined) { waiting.delete(path); w({ server, req }) } else arrived.set(path, { server, req })
    }
  })
  const raw = await startRawUpstream(opts.raw)
  const c = opts.config ?? {}
  const gw = await startGateway({
    ...c,
    server: { drainTimeout: '200ms', ...c.server },
    websocket: { ...c.websocket },
    routes: [{ prefix: '/w', upstream: good.url }, { prefix: '/r', upstream: raw.url }, ...(c.routes ?? [])]
  })
  let n = 0
  const goodConn = (path: string): Promise<{ server: GoodPeer, req: IncomingMessage }> => {
    const a = arrived.get(path)
    if (a !== undefined) { arrived.delete(path); return Promise.resolve(a) }
    return within(new Promise((resolve) => waiting.set(path, resolve)), 3000, `the upstream connection for ${path}`)
  }
  const lab: Lab = {
    gw,
    good,
    raw,
    async rawToGood (t, extra = '') {
      const path = `/w/${++n}`
      const conn = goodConn(path)
      const { peer: client, head } = await openRawClient(gw.port, path, extra)
      t.after(() => client.destroy())
      const { server, req } = await conn
      t.after(() => server.ws.terminate())
      return { client, head, server, req }
    },
    async goodToRaw (t, clientOpts = {}) {
      const path = `/r/${++n}`
      const conn = raw.connection(path)
      const ws = await connect(gw.wsUrl + path, undefined, clientOpts)
      const client = watch(ws)
      t.after(() => ws.terminate())
      const up = await conn
      t.after(() => up.peer.destroy())
      return { client, up }
    },
    async rawToRaw (t, extra = '') {
      const path = `/r/${++n}`
      const conn = raw.connection(path)
      const { peer: client, head } = await openRawClient(gw.port, path, extra)
      t.after(() => client.destroy())
      const up = await conn
      t.after(() => up.peer.destroy())
      return { client, head, up }
    },
    async goodToGood (t, clientOpts = {}) {
      const path = `/w/${++n}`
      const conn = goodConn(path)
      const ws = await connect(gw.wsUrl + path, undefined, clientOpts)
      const client = watch(ws)
      t.after(() => ws.terminate())
      const { server, req } = await conn
      t.after(() => server.ws.terminate())
      return { client, server, req }
    },
    drained: (ms = 3000) => waitFor(() => gw.app.websocketBridge.active === 0, () => `every bridge to end (${gw.app.websocketBridge.active} left)`, ms),
    async close () {
      await gw.close()
      await good.close()
      await raw.close()
    }
  }
  return lab
}

/** gatewayFor (closed after the test), whose open WebSockets get 200 ms to close when it stops. */
export const gatewayFor: typeof startGatewayFor = (t, config, opts) => startGatewayFor(t, { ...config, server: { drainTimeout: '200ms', ...config.server } }, opts)

/** makeLab, closed after the test. */
export async function labFor (t: After, opts: LabOptions = {}): Promise<Lab> {
  const lab = await makeLab(opts)
  t.after(() => lab.close())
  return lab
}

/**
 * The gateway failed the connection of a misbehaving peer: it got a close frame with `code`
 * (1002 by default). Returns the frames received before it, and `tcpEnded()`, which checks that
 * the TCP connection ended within `ms` of that close frame (the peer does not answer it: a
 * failed connection is closed without waiting for the peer's close frame). Checking that last
 * lets a test assert what the other peer saw first.
 */
export async function assertFailedConnection (bad: RawPeer, code = 1002, ms = 1000): Promise<{ before: Frame[], frame: Frame, tcpEnded: () => Promise<void> }> {
  const c = await bad.nextClose(3000)
  const at = performance.now()
  assert.equal(c.code, code, `close frame code (reason ${JSON.stringify(c.reason)})`)
  return {
    before: c.before,
    frame: c.frame,
    async tcpEnded () {
      try {
        await bad.tcpEnds(Math.max(0, at + ms - performance.now()))
      } catch {
        assert.fail(`the gateway sent its ${code} close frame (reason ${JSON.stringify(c.reason)}) but the misbehaving peer's TCP connection was still open ${ms} ms later`)
      }
    }
  }
}

/** A correct peer was closed (cleanly, with `code`) within 3 s. */
export async function assertClosedWith (peer: GoodPeer, code: number | number[], what: string): Promise<CloseInfo> {
  const c = await within(peer.closed, 3000, `${what} to be closed`)
  const codes = Array.isArray(code) ? code : [code]
  assert.ok(codes.includes(c.code), `${what} closed with ${c.code} ${JSON.stringify(c.reason)}, expected ${codes.join(' or ')}`)
  return c
}
