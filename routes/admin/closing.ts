/**
 * GET {prefix}/closing: this instance's paced closes (shutdown, reload drain, closeOnUnhealthy,
 * target drain or removal, rebalance), those in progress and the last few finished.
 */
import type { FastifyPluginAsync } from 'fastify'
import { Type } from '@sinclair/typebox'

const PacedClose = Type.Object({
  id: Type.String(),
  cause: Type.Union(['shutdown', 'reload', 'unhealthy', 'drain', 'remove', 'rebalance'].map((c) => Type.Literal(c))),
  state: Type.Union([Type.Literal('running'), Type.Literal('finished'), Type.Literal('cancelled')]),
  code: Type.Integer({ description: 'the close code sent (1001 at shutdown, 1012 otherwise)' }),
  total: Type.Integer({ description: 'connections the pace was given' }),
  closed: Type.Integer({ description: 'connections done so far, including those skipped' }),
  skipped: Type.Integer({ description: 'connections that had ended by themselves before their turn' }),
  windowMs: Type.Integer({ description: 'the window the closes are spread over (0: all at once)' }),
  maxPerSecond: Type.Integer({ description: 'at most this many closes in any one-second span' }),
  startedAt: Type.String({ format: 'date-time' }),
  finishedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()])
})

const closing: FastifyPluginAsync = async (fastify) => {
  fastify.get('/closing', {
    schema: {
      summary: 'Paced closes of this instance',
      description: 'The paced closes in progress on this instance (oldest first), then its last finished ones (newest first). Per instance, in cluster mode too.',
      tags: ['connections'],
      response: { 200: Type.Object({ instanceId: Type.String(), closing: Type.Array(PacedClose) }) }
    }
  }, async () => ({ instanceId: fastify.instanceId, closing: fastify.metrics.pacedCloses.list() }))
}

export default closing
