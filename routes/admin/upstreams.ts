/** GET {prefix}/upstreams: each upstream's targets with their health and load. */
import type { FastifyPluginAsync } from 'fastify'
import { Type } from '@sinclair/typebox'

const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()])

const Target = Type.Object({
  url: Type.String(),
  healthy: Type.Boolean({ description: 'may be picked now (neither down nor unhealthy)' }),
  health: Type.String({ description: 'healthy | unhealthy (active checks) | down (passive back-off) | unchecked' }),
  openConnections: Type.Integer({ description: 'open WebSocket connections of this instance to the target' }),
  inFlight: Type.Integer({ description: 'HTTP requests of this instance in flight to the target' }),
  lastError: Nullable(Type.String()),
  downUntil: Nullable(Type.String({ format: 'date-time' }))
})
const Upstream = Type.Object({ name: Type.String(), balance: Type.String(), targets: Type.Array(Target) })

const upstreams: FastifyPluginAsync = async (fastify) => {
  fastify.get('/upstreams', {
    schema: { summary: 'Upstreams and their targets', tags: ['upstreams'], response: { 200: Type.Object({ upstreams: Type.Array(Upstream) }) } }
  }, async () => ({
    upstreams: [...fastify.upstreamPools.values()].map((pool) => ({ name: pool.name, balance: pool.config.balance, targets: pool.state() }))
  }))
}

export default upstreams
