#!/usr/bin/env node
// The fast-gateway peer (3.4.7: the last release that installs on Node 20, see bench/README.md).
// Configured as its README and typings document it: one route `proxyType: 'websocket'` for
// `/ws` (fast-gateway's own WebSocket proxy: faye-websocket on both sides, messages piped from
// one to the other, so every frame is parsed and sent again) and one HTTP route for everything
// else (its default `http` proxy, fast-proxy-lite: node:http requests through an
// `http.Agent({ keepAlive: true })` of its own, so upstream connections are reused), served by
// restana, fast-gateway's default server. Nothing is logged.
// Usage: UPSTREAM=http://127.0.0.1:P PORT=Q node fast-gateway.mjs
import gateway from 'fast-gateway'

const upstream = process.env.UPSTREAM
if (upstream === undefined) {
  process.stderr.write('fast-gateway: UPSTREAM is required\n')
  process.exit(1)
}
const wsTarget = upstream.replace(/^http/, 'ws')
const server = gateway({
  routes: [
    // The WebSocket route is matched (micromatch) on the request's path; the upstream gets the
    // same path: `${target}${pathname}?${query}`.
    { proxyType: 'websocket', prefix: '/ws', target: wsTarget },
    // prefix '' with the default pathRegex '/*': every path, forwarded unchanged.
    { prefix: '', target: upstream }
  ]
})
await server.start(Number(process.env.PORT ?? 0), process.env.HOST ?? '127.0.0.1')

const stop = () => { server.close().finally(() => process.exit(0)) }
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
