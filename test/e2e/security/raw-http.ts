/**
 * HTTP/1.1 requests written byte for byte (fetch and undici normalise paths and headers before
 * sending, which is exactly what these tests must not let them do).
 */
import { connect } from 'node:net'

export interface RawResponse { status: number, headers: Record<string, string>, body: string, raw: string }

/**
 * Sends `target` as the request line's target, with `headers` as given (Host defaults to the
 * gateway's, Connection: close), and reads the whole answer.
 */
export async function rawRequest (port: number, target: string, headers: Record<string, string> = {}, opts: { method?: string, body?: string, version?: string } = {}): Promise<RawResponse> {
  const h: Record<string, string> = { host: `127.0.0.1:${port}`, connection: 'close', ...headers }
  if (opts.body !== undefined && h['content-length'] === undefined && h['transfer-encoding'] === undefined) h['content-length'] = String(Buffer.byteLength(opts.body))
  const head = `${opts.method ?? 'GET'} ${target} HTTP/${opts.version ?? '1.1'}\r\n` +
    Object.entries(h).filter(([, v]) => v !== '').map(([k, v]) => `${k}: ${v}\r\n`).join('') + '\r\n'
  return await rawExchange(port, head + (opts.body ?? ''))
}

/** Writes `text` on a new connection and parses what comes back until the server closes it (or a 101's head). */
export async function rawExchange (port: number, text: string): Promise<RawResponse> {
  return await new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.write(text))
    const chunks: Buffer[] = []
    s.on('data', (c: Buffer) => {
      chunks.push(c)
      // A 101 leaves the connection open: its head is the whole answer here.
      const text = Buffer.concat(chunks).toString('latin1')
      const end = text.indexOf('\r\n\r\n')
      if (end === -1) return
      if (text.startsWith('HTTP/1.1 101 ')) { s.destroy(); return }
      // A keep-alive answer is complete at its Content-Length.
      const len = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end))
      if (len !== null && text.length - end - 4 >= Number(len[1])) s.destroy()
    })
    s.on('error', reject)
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`no complete answer to ${JSON.stringify(text.split('\r\n', 1)[0])}`)) }, 5000)
    s.on('close', () => {
      clearTimeout(timer)
      resolve(parseResponse(Buffer.concat(chunks).toString('latin1')))
    })
  })
}

export function parseResponse (raw: string): RawResponse {
  const end = raw.indexOf('\r\n\r\n')
  const headText = end === -1 ? raw : raw.slice(0, end)
  const [statusLine, ...lines] = headText.split('\r\n')
  const headers: Record<string, string> = {}
  for (const l of lines) {
    const i = l.indexOf(':')
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim()
  }
  let body = end === -1 ? '' : raw.slice(end + 4)
  if (headers['transfer-encoding'] === 'chunked') body = dechunk(body)
  return { status: Number(statusLine.split(' ')[1] ?? 0), headers, body, raw }
}

function dechunk (s: string): string {
  let out = ''
  let i = 0
  for (;;) {
    const nl = s.indexOf('\r\n', i)
    if (nl === -1) return out
    const n = parseInt(s.slice(i, nl), 16)
    if (!(n > 0)) return out
    out += s.slice(nl + 2, nl + 2 + n)
    i = nl + 2 + n + 2
  }
}
