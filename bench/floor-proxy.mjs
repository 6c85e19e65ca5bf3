#!/usr/bin/env node
// The "node floor" path: the least a Node.js process can do and still proxy the bench's traffic,
// to show how much of the gateway's CPU is Node's own and how much is the gateway's.
// - WebSocket: node:http's 'upgrade' event, the request head written as it came to a new
//   net.Socket to the upstream, then bytes piped both ways. No frame is parsed, no header is
//   added or checked, nothing is logged or counted, no heartbeat: nginx's data path, in Node.
// - HTTP: node:http server, one undici Agent (keep-alive), the answer's status, headers and body
//   written to the response as they arrive. No routing, no hop-by-hop filtering, no logging.
// It is not a usable proxy (no error answers beyond closing, no limits); it is a measuring stick.
// Usage: UPSTREAM=http://127.0.0.1:P PORT=Q node floor-proxy.mjs
import http from 'node:http'
import net from 'node:net'
import { Agent } from 'undici'
// The gateway's own list (the harness builds dist/ before it starts any proxy).
import { HOP_BY_HOP } from '../dist/src/edge/forward-headers.js'

const upstream = process.env.UPSTREAM
if (upstream === undefined) {
  process.stderr.write('floor-proxy: UPSTREAM is required\n')
  process.exit(1)
}
const target = new URL(upstream)
const origin = target.origin
const agent = new Agent({ connections: 256, keepAliveTimeout: 60_000 })

const server = http.createServer((req, res) => {
  const headers = {}
  // Hop-by-hop headers: undici refuses or acts on them (the bench's clients send none).
  for (const name in req.headers) if (!HOP_BY_HOP.has(name)) headers[name] = req.headers[name]
  let resume = null
  agent.dispatch({
    origin,
    path: req.url,
    method: req.method,
    headers,
    body: req.method === 'GET' || req.method === 'HEAD' ? null : req
  }, {
    onConnect () {},
    onHeaders (status, raw, resumeFn) {
      resume = resumeFn
      const out = []
      for (let i = 0; i < raw.length; i += 2) out.push(raw[i].toString('latin1'), raw[i + 1].toString('latin1'))
      res.writeHead(status, out)
      return true
    },
    onData (chunk) {
      if (res.write(chunk)) return true
      res.once('drain', () => resume?.())
      return false
    },
    onComplete () { res.end() },
    onError () { if (res.headersSent) res.destroy(); else { res.statusCode = 502; res.end() } }
  })
})

server.on('upgrade', (req, socket, head) => {
  const up = net.connect({ host: target.hostname, port: Number(target.port), noDelay: true })
  let lines = `${req.method} ${req.url} HTTP/1.1\r\n`
  for (let i = 0; i < req.rawHeaders.length; i += 2) lines += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`
  up.write(lines + '\r\n')
  if (head.length > 0) up.write(head)
  socket.setNoDelay(true)
  up.pipe(socket)
  socket.pipe(up)
  const end = () => { up.destroy(); socket.destroy() }
  up.on('error', end)
  socket.on('error', end)
  up.on('close', end)
  socket.on('close', end)
})

server.listen({ host: process.env.HOST ?? '127.0.0.1', port: Number(process.env.PORT ?? 0), backlog: 4096 })
const stop = () => { server.close(); process.exit(0) }
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
