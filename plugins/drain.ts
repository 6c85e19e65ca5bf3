/**
 * Draining, the one owner of shutdown. When the app closes (SIGTERM through the runtime, or
 * `app.close()`), this plugin's preClose hook turns `gatewayState.draining` on, and from then on:
 * new handshakes and proxied requests are answered 503, `/ready` answers 503, every answer says
 * `Connection: close` and keep-alive sockets close once idle. It then closes the open WebSockets
 * with 1001, paced over `server.drainPace` (all at once when 0), and waits until the bridge is
 * idle (no connection, no handshake in flight), or for `server.drainTimeout` (counted from the
 * start, so it bounds the whole drain), after which the rest are terminated.
 */
import fp from 'fastify-plugin'
import { CLOSE_GOING_AWAY, REASON_GOING_AWAY } from '../src/close-codes.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Lifecycle state: `draining` turns true when shutdown starts. */
    gatewayState: { draining: boolean }
  }
}

export default fp(async function drainPlugin (fastify) {
  const state = { draining: false }
  fastify.decorate('gatewayState', state)

  // Node's server.close() ends only the keep-alive sockets idle at that moment: a socket whose
  // request is in flight would then hold close() (and the process) for keepAliveTimeout after the
  // answer. While draining, answers say `Connection: close`, and sockets whose answer had already
  // started are closed as soon as they are idle.
  // Callback style: these run on every request, and an async hook costs a promise each time.
  fastify.addHook('onSend', (_request, reply, payload, done) => {
    if (state.draining && !reply.raw.headersSent) void reply.header('connection', 'close')
    done(null, payload)
  })
  fastify.addHook('onResponse', (_request, _reply, done) => {
    if (state.draining) setImmediate(() => fastify.server.closeIdleConnections())
    done()
  })

  fastify.addHook('preClose', async () => {
    state.draining = true
    // The bridge plugin registers after this one; at close time it is there (or never was).
    if (!fastify.hasDecorator('websocketBridge')) return
    const bridge = fastify.websocketBridge
    if (bridge.active === 0 && bridge.handshaking === 0) return
    // Handshakes still in progress are answered 503 or closed with 1001 as they complete.
    const idle = bridge.whenIdle()
    // Clients reconnect (elsewhere) at a bounded rate instead of all at once.
    const pace = bridge.closePaced({ code: CLOSE_GOING_AWAY, reason: REASON_GOING_AWAY, cause: 'shutdown' })
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(true), fastify.gatewayConfig.server.drainTimeout) })
    const late = await Promise.race([idle.then(() => false), timedOut])
    pace.cancel()
    if (late) {
      fastify.log.warn({ open: bridge.active, handshakes: bridge.handshaking }, 'drain timeout: terminating remaining WebSocket connections')
      bridge.terminateAll()
    }
    clearTimeout(timer)
  })
}, { name: 'tollgate-drain', fastify: '5.x', dependencies: ['tollgate-config'] })
