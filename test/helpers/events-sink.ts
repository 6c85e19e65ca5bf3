/**
 * A real lifecycle-events endpoint for tests: an HTTP server on 127.0.0.1:0 that records every
 * POST ({ headers, body }) and answers it as the test says: 204 by default, or 500 for the next
 * N, or never (hanging past the gateway's timeout) for the next N or until told to recover.
 * Waiting is on its requests, not on a clock: `until(pred)` checks at each one.
 */
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { DisconnectEvent, LifecycleEvent } from '../../src/events/payload.js'

export interface SinkRequest {
  method: string
  path: string
  headers: IncomingHttpHeaders
  /** The parsed JSON body (null when it was not JSON). */
  body: LifecycleEvent
  raw: string
  /** What the sink answered: a status, or 'hang'. */
  answer: number | 'hang'
  /** performance.now() when it arrived. */
  at: number
}

export interface EventsSink {
  /** The URL to configure as `events.url`. */
  url: string
  /** Every POST, oldest first, whatever it was answered. */
  requests: SinkRequest[]
  /** The requests answered 2xx. */
  delivered (): SinkRequest[]
  /** The delivered events, one per Idempotency-Key (the first delivery of each), in delivery order. */
  deduped (): LifecycleEvent[]
  /** Delivered events of one connection (first delivery of each key), in order. */
  of (connId: string): LifecycleEvent[]
  /** The delivered `disconnect` of a connection, if any. */
  disconnectOf (connId: string): DisconnectEvent | undefined
  /** Answer the next `n` requests with `status` (default 500). */
  failNext (n: number, status?: number): void
  /** Never answer the next `n` requests (Infinity: until `recover()`). */
  hangNext (n: number): void
  /** Back to answering 204; hung requests stay hung (the client has given up on them). */
  recover (): void
  /** Resolves once `pred()` holds, checked now and after each request; rejects after `ms`. */
  until (pred: () => boolean, what: string | (() => string), ms?: number): Promise<void>
  close (): Promise<void>
}

export async function startEventsSink (): Promise<EventsSink> {
  const sockets = new Set<Socket>()
  const hung = new Set<ServerResponse>()
  const checks = new Set<() => void>()
  let failing = 0
  let failStatus = 500
  let hanging = 0
  const requests: SinkRequest[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString()
      let body: LifecycleEvent
      try { body = JSON.parse(raw) as LifecycleEvent } catch { body = null as unknown as LifecycleEvent }
      let answer: number | 'hang' = 204
      if (hanging > 0) { hanging--; answer = 'hang' } else if (failing > 0) { failing--; answer = failStatus }
      requests.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers, body, raw, answer, at: performance.now() })
      if (answer === 'hang') {
        hung.add(res)
        res.on('close', () => hung.delete(res))
      } else {
        res.writeHead(answer, answer === 204 ? {} : { 'content-type': 'application/json' })
        res.end(answer === 204 ? undefined : '{"error":"try again"}')
      }
      for (const c of [...checks]) c()
    })
  })
  server.on('connection', (s: Socket) => { sockets.add(s); s.on('close', () => sockets.delete(s)) })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const delivered = (): SinkRequest[] => requests.filter((r) => typeof r.answer === 'number' && r.answer >= 200 && r.answer < 300)
  const deduped = (): LifecycleEvent[] => {
    const seen = new Set<string>()
    const out: LifecycleEvent[] = []
    for (const r of delivered()) {
      const key = String(r.headers['idempotency-key'])
      if (seen.has(key)) continue
      seen.add(key)
      out.push(r.body)
    }
    return out
  }
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/events`,
    requests,
    delivered,
    deduped,
    of: (connId) => deduped().filter((e) => e.id === connId),
    disconnectOf: (connId) => deduped().find((e): e is DisconnectEvent => e.id === connId && e.type === 'disconnect'),
    failNext (n, status = 500) { failing = n; failStatus = status },
    hangNext (n) { hanging = n },
    recover () { failing = 0; hanging = 0 },
    until (pred, what, ms = 5000) {
      return new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (!pred()) return
          checks.delete(check)
          clearTimeout(timer)
          resolve()
        }
        const timer = setTimeout(() => {
          checks.delete(check)
          reject(new Error(`events sink: timed out after ${ms} ms waiting for ${typeof what === 'function' ? what() : what} (${requests.length} requests: ${requests.map((r) => `${r.body?.type}:${String(r.answer)}`).join(' ')})`))
        }, ms)
        checks.add(check)
        check()
      })
    },
    close: () => new Promise<void>((resolve) => {
      for (const r of hung) r.destroy()
      for (const s of sockets) s.destroy()
      server.close(() => resolve())
    })
  }
}

/** startEventsSink, closed after the test. */
export async function eventsSinkFor (t: { after: (fn: () => Promise<void>) => void }): Promise<EventsSink> {
  const sink = await startEventsSink()
  t.after(() => sink.close())
  return sink
}
