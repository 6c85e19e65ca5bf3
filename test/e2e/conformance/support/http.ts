/**
 * HTTP/1.x at the byte level, for the proxy's conformance cases: a client that writes exactly the
 * bytes a test gives and parses the answers as they come (interim 1xx, HEAD/204/304 without a
 * body, Content-Length, chunked with trailers, close-delimited), a node:http upstream that records
 * what it received (raw header lines and trailers included), and a raw net.Server upstream that
 * answers with bytes the test writes.
 */
import { connect as tcpConnect, createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { parseHead, type Head } from './raw.js'

export interface HttpResponse {
  version: string
  status: number
  /** Header lines as received: [name, value] in order. */
  lines: Array<[string, string]>
  /** Lower-case name -> values joined with ', '. */
  headers: Record<string, string>
  body: Buffer
  chunked: boolean
  trailers: Array<[string, string]>
  /** The bytes of this response as received. */
  raw: Buffer
}

function headerLines (text: string): Array<[string, string]> {
  return text.split('\r\n').filter((l) => l !== '').map((l) => { const i = l.indexOf(':'); return [l.slice(0, i).trim(), l.slice(i + 1).trim()] as [string, string] })
}

/** One client TCP connection to `port`, driven by hand. */
export class RawHttp {
  private buf = Buffer.alloc(0)
  private wakers: Array<() => void> = []
  ended = false

  private constructor (readonly socket: Socket) {
    socket.on('data', (c: Buffer) => { this.buf = Buffer.concat([this.buf, c]); this.wake() })
    socket.on('end', () => { this.ended = true; this.wake() })
    socket.on('close', () => { this.ended = true; this.wake() })
    socket.on('error', () => {})
  }

  static async open (port: number, t?: { after: (fn: () => void) => void }): Promise<RawHttp> {
    const s = tcpConnect(port, '127.0.0.1')
    await new Promise<void>((resolve, reject) => { s.once('connect', resolve); s.once('error', reject) })
    const c = new RawHttp(s)
    t?.after(() => s.destroy())
    return c
  }

  write (data: string | Buffer): void { this.socket.write(data) }

  /** Bytes received and not yet parsed as a response. */
  pending (): Buffer { return this.buf }

  /** Resolves once the server has ended the connection (rejects after `ms`). */
  async closedByServer (ms = 3000): Promise<void> {
    const deadline = performance.now() + ms
    while (!this.ended) {
      if (performance.now() > deadline) throw new Error(`the connection is still open ${ms} ms later`)
      await this.wait(deadline - performance.now())
    }
  }

  /**
   * The next response (an interim 1xx counts as one). `method` HEAD: no body whatever the
   * headers say; 1xx, 204, 304: no body either.
   */
  async response (method = 'GET', ms = 5000): Promise<HttpResponse> {
    const deadline = performance.now() + ms
    const need = async (pred: () => boolean, what: string): Promise<void> => {
      while (!pred()) {
        if (this.ended) throw new Error(`connection ended before ${what}; got ${JSON.stringify(this.buf.toString('latin1').slice(0, 500))}`)
        const left = deadline - performance.now()
        if (left <= 0) throw new Error(`no ${what} within ${ms} ms; got ${JSON.stringify(this.buf.toString('latin1').slice(0, 500))}`)
        await this.wait(left)
      }
    }
    await need(() => this.buf.indexOf('\r\n\r\n') !== -1, 'response head')
    const end = this.buf.indexOf('\r\n\r\n')
    const headText = this.buf.subarray(0, end).toString('latin1')
    const [statusLine, ...rest] = headText.split('\r\n')
    const m = /^(HTTP\/\d\.\d) (\d{3})/.exec(statusLine)
    if (m === null) throw new Error(`not a status line: ${JSON.stringify(statusLine)}`)
    const lines = headerLines(rest.join('\r\n'))
    const headers: Record<string, string> = {}
    for (const [n, v] of lines) { const k = n.toLowerCase(); headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}` }
    const status = Number(m[2])
    let pos = end + 4
    let body = Buffer.alloc(0)
    let chunked = false
    const trailers: Array<[string, string]> = []
    if (method === 'HEAD' || status < 200 || status === 204 || status === 304) {
      // no body
    } else if (/\bchunked\b/i.test(headers['transfer-encoding'] ?? '')) {
      chunked = true
      const parts: Buffer[] = []
      for (;;) {
        await need(() => this.buf.indexOf('\r\n', pos) !== -1, 'a chunk size line')
        const eol = this.buf.indexOf('\r\n', pos)
        const size = parseInt(this.buf.subarray(pos, eol).toString('latin1').split(';')[0].trim(), 16)
        pos = eol + 2
        if (size === 0) {
          await need(() => this.buf.indexOf('\r\n\r\n', pos - 2) !== -1, 'the end of the chunked body')
          const tEnd = this.buf.indexOf('\r\n\r\n', pos - 2)
          trailers.push(...headerLines(this.buf.subarray(pos, tEnd).toString('latin1')))
          pos = tEnd + 4
          break
        }
        await need(() => this.buf.length >= pos + size + 2, 'a chunk')
        parts.push(this.buf.subarray(pos, pos + size))
        pos += size + 2
      }
      body = Buffer.concat(parts)
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length'])
      await need(() => this.buf.length >= pos + n, 'the body')
      body = this.buf.subarray(pos, pos + n)
      pos += n
    } else {
      await need(() => this.ended, 'the end of a close-delimited body')
      body = this.buf.subarray(pos)
      pos = this.buf.length
    }
    const raw = Buffer.from(this.buf.subarray(0, pos))
    this.buf = this.buf.subarray(pos)
    return { version: m[1], status, lines, headers, body: Buffer.from(body), chunked, trailers, raw }
  }

  private wait (ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.max(1, ms))
      function done (): void { clearTimeout(timer); resolve() }
      this.wakers.push(done)
    })
  }

  private wake (): void { const w = this.wakers; this.wakers = []; for (const f of w) f() }
}

/** Sends one request on a fresh connection and returns the (final) response. */
export async function rawRequest (port: number, bytes: string | Buffer, method = 'GET'): Promise<HttpResponse> {
  const c = await RawHttp.open(port)
  try {
    c.write(bytes)
    let r = await c.response(method)
    while (r.status < 200 && r.status !== 101) r = await c.response(method)
    return r
  } finally { c.socket.destroy() }
}

export interface Seen {
  method: string
  url: string
  httpVersion: string
  /** Header lines as node:http received them (name case kept). */
  lines: Array<[string, string]>
  headers: IncomingMessage['headers']
  body: Buffer
  trailers: Array<[string, string]>
}

/** A node:http upstream that records every request; `answer` defaults to 200 "ok". */
export async function recordingUpstream (t: { after: (fn: () => Promise<void>) => void }, answer?: (req: IncomingMessage, res: ServerResponse, seen: Seen) => void): Promise<{ url: string, seen: Seen[], upgrades: Seen[] }> {
  const seen: Seen[] = []
  const upgrades: Seen[] = []
  const pairs = (raw: string[]): Array<[string, string]> => { const out: Array<[string, string]> = []; for (let i = 0; i < raw.length; i += 2) out.push([raw[i], raw[i + 1]]); return out }
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const s: Seen = { method: req.method ?? '', url: req.url ?? '', httpVersion: req.httpVersion, lines: pairs(req.rawHeaders), headers: req.headers, body: Buffer.concat(chunks), trailers: pairs(req.rawTrailers) }
      seen.push(s)
      if (answer !== undefined) answer(req, res, s)
      else res.writeHead(200, { 'content-type': 'text/plain' }).end('ok')
    })
  })
  server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
    upgrades.push({ method: req.method ?? '', url: req.url ?? '', httpVersion: req.httpVersion, lines: pairs(req.rawHeaders), headers: req.headers, body: Buffer.alloc(0), trailers: [] })
    socket.destroy()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, upgrades }
}

/**
 * A net.Server upstream that reads each request (head, then a Content-Length or chunked body)
 * and writes the bytes `respond` returns for it; requests are recorded as they arrived.
 */
export async function rawHttpUpstream (t: { after: (fn: () => Promise<void>) => void }, respond: (head: Head) => string | Buffer): Promise<{ url: string, requests: Array<{ head: Head, raw: Buffer }> }> {
  const requests: Array<{ head: Head, raw: Buffer }> = []
  const sockets = new Set<Socket>()
  const server = createTcpServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    let buf = Buffer.alloc(0)
    socket.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c])
      for (;;) {
        const end = buf.indexOf('\r\n\r\n')
        if (end === -1) return
        const head = parseHead(buf.subarray(0, end).toString('latin1'))
        let len = end + 4
        if (/chunked/i.test(head.headers['transfer-encoding'] ?? '')) {
          const last = buf.indexOf('\r\n0\r\n', end)
          const fin = last === -1 ? -1 : buf.indexOf('\r\n\r\n', last + 2)
          if (fin === -1) return
          len = fin + 4
        } else if (head.headers['content-length'] !== undefined) {
          len += Number(head.headers['content-length'])
          if (buf.length < len) return
        }
        requests.push({ head, raw: Buffer.from(buf.subarray(0, len)) })
        buf = buf.subarray(len)
        socket.write(respond(head))
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()) }))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests }
}
