/**
 * Lifecycle events (src/events/): for each WebSocket of a route with `events`, a `connect` when
 * it opened and a `disconnect` when it ended, queued for delivery to the route's `events.url`
 * (at least once, in order per connection). Built on the bridge's in-process `onConnect` and
 * `onClose` hooks, which custom route plugins use the same way.
 */
import fp from 'fastify-plugin'
import type { EventsConfig } from '../src/config/types.js'
import type { EventDestination, EventQueue } from '../src/events/queue.js'
import type { JwtClaims } from './auth.js'

export interface EventsPluginOptions {
  /** The queue that outlives a reload (memory, or Redis streams in cluster mode). */
  queue: EventQueue
}

export default fp<EventsPluginOptions>(async function eventsPlugin (fastify, opts) {
  const byRoute = new Map<string, EventsConfig>()
  for (const r of fastify.gatewayConfig.routes) if (r.events !== null) byRoute.set(r.prefix, r.events)
  if (byRoute.size === 0) return
  const queue = opts.queue
  const to = new Map<EventsConfig, EventDestination>()
  for (const e of byRoute.values()) to.set(e, { url: e.url, timeout: e.timeout })
  queue.allow(to.values())

  fastify.websocketBridge.onConnect((event, request) => {
    const e = byRoute.get(event.route)
    if (e === undefined) return
    if (e.claims.length > 0) {
      const user = (request as { user?: JwtClaims | null }).user
      if (user != null) {
        const claims: Record<string, unknown> = {}
        for (const name of e.claims) if (user[name] !== undefined) claims[name] = user[name]
        if (Object.keys(claims).length > 0) event = { ...event, claims }
      }
    }
    // Recorded even when only disconnects are wanted: a lost instance's connections need theirs
    // (and not recorded when no disconnect is wanted, lost instance or not).
    queue.push(event, to.get(e)!, e.connect, e.disconnect)
  })
  fastify.websocketBridge.onClose((event) => {
    const e = byRoute.get(event.route)
    if (e === undefined || !e.disconnect) return
    queue.push(event, to.get(e)!)
  })
}, { name: 'tollgate-events', fastify: '5.x', dependencies: ['tollgate-config', 'tollgate-websocket-bridge'] })
