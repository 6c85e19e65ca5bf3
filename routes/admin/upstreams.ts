/** GET {prefix}/upstreams: each upstream's targets with their health and open connection counts. */
import type { FastifyPluginAsync } from 'fastify'
import { Type } from '@sinclair/typebox'

const Target = Type.Object({
  url: Type.String(),
  health: Type.String({ description: '"unchecked" while no health check is configured' }),
  openConnections: Type.Integer({ description: 'open WebSocket connections of this instance to the target' })
})
const Upstream = Type.Object({ name: Type.String(), balance: Type.String(), targets: Type.Array(Target) })

const upstreams: FastifyPluginAsync = async (fastify) => {
  fastify.get('/upstreams', {
    schema: { summary: 'Upstreams and their targets', tags: ['upstreams'], response: { 200: Type.Object({ upstreams: Type.Array(Upstream) }) } }
  }, async () => {
    const open = new Map<string, number>()
    for (const b of fastify.connections.values()) open.set(b.info.upstream, (open.get(b.info.upstream) ?? 0) + 1)
    return {
      upstreams: [...fastify.upstreamPools.values()].map((pool) => ({
        name: pool.name,
        balance: pool.config.balance,
        targets: pool.config.targets.map((url) => ({ url, health: 'unchecked', openConnections: open.get(url) ?? 0 }))
      }))
    }
  })
}

export default upstreams
