/**
 * POST {prefix}/reload: re-reads the config file and environment, as SIGHUP does. 200 with what
 * changed (and which settings need a restart), 400 with the validation error (nothing changed).
 */
import type { FastifyPluginAsync } from 'fastify'
import { Type } from '@sinclair/typebox'
import { ErrorBody } from '../../src/admin/schemas.js'
import { codes } from '../../src/errors.js'

const Result = Type.Object({
  ok: Type.Boolean(),
  changed: Type.Array(Type.String()),
  restartRequired: Type.Array(Type.String(), { description: 'settings that keep their old value until a restart' })
})

const reload: FastifyPluginAsync = async (fastify) => {
  fastify.post('/reload', {
    schema: { summary: 'Reload the configuration', tags: ['reload'], response: { 200: Result, 400: ErrorBody, 501: ErrorBody } }
  }, async (request, reply) => {
    if (fastify.reloadGateway === null) return reply.send(new codes.GW_ERR_RELOAD_UNAVAILABLE())
    const r = await fastify.reloadGateway()
    if (!r.ok) return reply.send(new codes.GW_ERR_RELOAD_INVALID(r.error ?? 'invalid configuration'))
    request.log.info({ changed: r.changed }, 'reloaded through the admin API')
    return { ok: true, changed: r.changed, restartRequired: r.restartRequired }
  })
}

export default reload
