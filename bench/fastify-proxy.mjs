#!/usr/bin/env node
// The @fastify/http-proxy peer: the plain plugin with `websocket: true` in front of the bench's
// echo upstream, one route for everything (`/`), Fastify's logger at LOG_LEVEL (info: one line
// per request, as the gateway logs). Usage: UPSTREAM=http://127.0.0.1:P PORT=Q node fastify-proxy.mjs
import Fastify from 'fastify'
import proxy from '@fastify/http-proxy'

const upstream = process.env.UPSTREAM
const port = Number(process.env.PORT ?? 0)
if (upstream === undefined) {
  process.stderr.write('fastify-proxy: UPSTREAM is required\n')
  process.exit(1)
}
const level = process.env.LOG_LEVEL ?? 'info'
const app = Fastify({ logger: level === 'silent' ? false : { level } })
await app.register(proxy, {
  upstream,
  prefix: '/',
  websocket: true,
  wsServerOptions: { perMessageDeflate: false, maxPayload: 1024 * 1024 },
  wsClientOptions: { perMessageDeflate: false }
})
await app.listen({ host: process.env.HOST ?? '127.0.0.1', port, backlog: 4096 })

const stop = () => { app.close().finally(() => process.exit(0)) }
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
