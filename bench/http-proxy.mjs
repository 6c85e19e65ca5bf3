#!/usr/bin/env node
// The http-proxy (node-http-proxy) peer: old (1.18.1, 2020) but still the most-used proxy library
// in Node. Its README's setup for both kinds of traffic: a node:http server calling
// `proxy.web(req, res)` for requests and `proxy.ws(req, socket, head)` on the server's 'upgrade'
// event for WebSockets (the upstream's 101 is written back by hand, then the two sockets are
// piped: no frame is parsed). `xfwd: true` adds X-Forwarded-For/-Port/-Proto, as the other peers
// do. HTTP goes through an `http.Agent({ keepAlive: true })`, so requests reuse upstream
// connections (without an agent http-proxy sends `Connection: close` upstream on every request);
// WebSocket handshakes get no agent (a new upstream connection each, which the upgrade keeps).
// Nothing is logged. Usage: UPSTREAM=http://127.0.0.1:P PORT=Q node http-proxy.mjs
import http from 'node:http'
import httpProxy from 'http-proxy'

const upstream = process.env.UPSTREAM
if (upstream === undefined) {
  process.stderr.write('http-proxy: UPSTREAM is required\n')
  process.exit(1)
}
// As many idle upstream connections as the load has client connections (wrk's 50, and more).
const agent = new http.Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 256 })
const proxy = httpProxy.createProxyServer({ target: upstream, xfwd: true })
// Without an 'error' listener http-proxy throws (and the process dies) on the first upstream
// error; answer 502 or drop the client socket instead, as a deployed proxy would.
proxy.on('error', (_err, _req, resOrSocket) => {
  if (resOrSocket instanceof http.ServerResponse) {
    if (!resOrSocket.headersSent) resOrSocket.writeHead(502)
    resOrSocket.end()
  } else {
    resOrSocket?.destroy?.()
  }
})

const server = http.createServer((req, res) => { proxy.web(req, res, { agent }) })
server.on('upgrade', (req, socket, head) => { proxy.ws(req, socket, head) })
server.listen({ host: process.env.HOST ?? '127.0.0.1', port: Number(process.env.PORT ?? 0), backlog: 4096 })

const stop = () => { server.close(); process.exit(0) }
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
