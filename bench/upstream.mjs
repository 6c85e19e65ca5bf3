#!/usr/bin/env node
// The bench's echo upstream: `ws` servers that echo every message back as it came (text stays
// text, binary stays binary), and answer plain HTTP:
//   - GET /big: a 64 KiB 200 (with Content-Length), the `httpBig` scenario;
//   - any other GET: a 64-byte 200 at once;
//   - any other method: the same 64-byte 200 once the request body (the `httpPost` scenario's
//     16 KiB) has been read to its end, with `x-received: <bytes>` (the harness's pre-check
//     compares it with what it sent, so a proxy that drops or cuts bodies is caught).
// One process, one listening port per path (BENCH_PORTS="direct:9001,gateway:9002,..."), so the
// sockets each proxy leaves open upstream are counted for that proxy alone.
// Started by bench/run.mjs with an IPC channel: it reports { ready } once listening and answers
// { cmd: 'stats' } with the WebSocket and TCP sockets open per port. It exits with the harness.
import http from 'node:http'
import { WebSocketServer } from 'ws'

const host = process.env.BENCH_HOST ?? '127.0.0.1'
const ports = (process.env.BENCH_PORTS ?? 'direct:0').split(',').map((kv) => {
  const [name, port] = kv.split(':')
  return { name, port: Number(port) }
})
const body = Buffer.alloc(64, 'x')
const headers = { 'content-type': 'text/plain', 'content-length': String(body.length) }
// One buffer for every /big answer: the upstream's cost per answer stays a write, not a fill.
const big = Buffer.alloc(64 * 1024, 'y')
const bigHeaders = { 'content-type': 'application/octet-stream', 'content-length': String(big.length) }
const binaryOpts = { binary: true }
const textOpts = { binary: false }

function onRequest (req, res) {
  if (req.method === 'GET' && (req.url === '/big' || req.url.startsWith('/big?'))) {
    req.resume()
    res.writeHead(200, bigHeaders)
    res.end(big)
    return
  }
  if (req.method === 'GET' || req.method === 'HEAD') {
    // No body: answered at once, as before the POST scenario existed (the `http` row's cost).
    req.resume()
    res.writeHead(200, headers)
    res.end(body)
    return
  }
  // The whole body is read before the answer, as an application would (and so keep-alive stays
  // usable); only its length is kept.
  let received = 0
  req.on('data', (chunk) => { received += chunk.length })
  req.on('end', () => {
    res.writeHead(200, { ...headers, 'x-received': String(received) })
    res.end(body)
  })
}

function onConnection (ws) {
  ws.on('message', (data, isBinary) => { ws.send(data, isBinary ? binaryOpts : textOpts) })
  ws.on('error', () => {})
}

const servers = ports.map(({ name, port }) => {
  const s = { name, port, tcpOpen: 0, tcpAccepted: 0, wsAccepted: 0, server: http.createServer(onRequest) }
  s.server.on('connection', (socket) => {
    s.tcpOpen++
    s.tcpAccepted++
    socket.once('close', () => { s.tcpOpen-- })
  })
  s.wss = new WebSocketServer({ server: s.server, perMessageDeflate: false, maxPayload: 4 * 1024 * 1024 })
  s.wss.on('connection', (ws) => { s.wsAccepted++; onConnection(ws) })
  return s
})

await Promise.all(servers.map((s) => new Promise((resolve, reject) => {
  s.server.once('error', reject)
  s.server.listen({ host, port: s.port, backlog: 4096 }, () => { s.port = s.server.address().port; resolve() })
})))
process.send?.({ ready: true, ports: Object.fromEntries(servers.map((s) => [s.name, s.port])) })

process.on('message', (m) => {
  if (m?.cmd !== 'stats') return
  const byName = {}
  for (const s of servers) byName[s.name] = { wsOpen: s.wss.clients.size, tcpOpen: s.tcpOpen, tcpAccepted: s.tcpAccepted, wsAccepted: s.wsAccepted }
  process.send?.({ id: m.id, ok: true, result: byName })
})
// The harness died or closed the channel: never outlive it.
process.on('disconnect', () => process.exit(0))
process.on('SIGTERM', () => process.exit(0))
process.on('SIGINT', () => process.exit(0))
