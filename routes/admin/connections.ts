/**
 * Live connections: list (filter, page), count (totals), inspect, close, and push a message to
 * one client.
 */
import type { FastifyPluginAsync } from 'fastify'
import { Type, type Static } from '@sinclair/typebox'
import { Connection, ErrorBody, IdParams } from '../../src/admin/schemas.js'
import { codes } from '../../src/errors.js'
import { CLOSE_POLICY, isAdminCloseCode, REASON_ADMIN } from '../../src/close-codes.js'

const ListQuery = Type.Object({
  route: Type.Optional(Type.String({ minLength: 1 })),
  user: Type.Optional(Type.String({ minLength: 1 })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
  offset: Type.Optional(Type.Integer({ minimum: 0, default: 0 }))
}, { additionalProperties: false })

const CloseQuery = Type.Object({
  code: Type.Optional(Type.Integer({ description: '1000 or 3000-4999 (default 1008)' })),
  reason: Type.Optional(Type.String({ maxLength: 123, description: 'at most 123 bytes (default "closed by administrator")' }))
}, { additionalProperties: false })

/** Exactly one of `text` or `binary` (base64). */
const MessageBody = Type.Object({
  text: Type.Optional(Type.String()),
  binary: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9+/]*={0,2}$', description: 'base64' }))
}, { additionalProperties: false, minProperties: 1, maxProperties: 1 })

const NotFound = { 404: ErrorBody }

const connections: FastifyPluginAsync = async (fastify) => {
  const registry = fastify.connections

  fastify.get<{ Querystring: Static<typeof ListQuery> }>('/connections', {
    schema: {
      summary: 'List live WebSocket connections',
      tags: ['connections'],
      querystring: ListQuery,
      response: { 200: Type.Object({ total: Type.Integer(), partial: Type.Optional(Type.Boolean()), connections: Type.Array(Type.Ref(Connection)) }) }
    }
  }, async (request) => registry.search(request.query))

  fastify.get('/connections/totals', {
    schema: {
      summary: 'Count open connections, in all, per route and per instance',
      tags: ['connections'],
      response: {
        200: Type.Object({
          total: Type.Integer(),
          partial: Type.Optional(Type.Boolean()),
          routes: Type.Record(Type.String(), Type.Integer()),
          instances: Type.Array(Type.Object({ instanceId: Type.String(), connections: Type.Integer() }))
        })
      }
    }
  }, async () => registry.totals())

  fastify.get<{ Params: Static<typeof IdParams> }>('/connections/:id', {
    schema: { summary: 'Inspect one connection', tags: ['connections'], params: IdParams, response: { 200: Type.Ref(Connection), ...NotFound } }
  }, async (request, reply) => {
    const c = await registry.find(request.params.id)
    if (c === null) return reply.send(new codes.GW_ERR_CONNECTION_NOT_FOUND(request.params.id))
    return c
  })

  fastify.delete<{ Params: Static<typeof IdParams>, Querystring: Static<typeof CloseQuery> }>('/connections/:id', {
    schema: {
      summary: 'Close a connection (client and upstream)',
      tags: ['connections'],
      params: IdParams,
      querystring: CloseQuery,
      response: { 204: Type.Null(), 400: ErrorBody, ...NotFound }
    }
  }, async (request, reply) => {
    const code = request.query.code ?? CLOSE_POLICY
    if (request.query.code !== undefined && !isAdminCloseCode(code)) return reply.send(new codes.GW_ERR_BAD_CLOSE_CODE(code))
    const reason = request.query.reason ?? REASON_ADMIN
    if (Buffer.byteLength(reason) > 123) return reply.send(new codes.GW_ERR_BAD_CLOSE_CODE(`${code} (reason longer than 123 bytes)`))
    if (!await registry.closeById(request.params.id, code, reason)) {
      return reply.send(new codes.GW_ERR_CONNECTION_NOT_FOUND(request.params.id))
    }
    request.log.info({ connId: request.params.id, code }, 'connection closed by administrator')
    return reply.code(204).send()
  })

  fastify.post<{ Params: Static<typeof IdParams>, Body: Static<typeof MessageBody> }>('/connections/:id/messages', {
    schema: {
      summary: 'Send a message to one client (server push)',
      tags: ['connections'],
      params: IdParams,
      body: MessageBody,
      response: { 202: Type.Object({ sent: Type.Boolean() }), ...NotFound, 503: ErrorBody }
    }
  }, async (request, reply) => {
    const body = request.body
    const [data, isBinary] = body.text !== undefined ? [body.text, false] : [Buffer.from(body.binary ?? '', 'base64'), true]
    let sent: boolean
    try {
      sent = await registry.sendById(request.params.id, data, isBinary)
    } catch (err) {
      // A client that does not read is not sent more (503, GW_ERR_CLIENT_BUSY).
      if ((err as { code?: string }).code === 'GW_ERR_CLIENT_BUSY') return reply.send(err as Error)
      throw err
    }
    if (!sent) return reply.send(new codes.GW_ERR_CONNECTION_NOT_FOUND(request.params.id))
    return reply.code(202).send({ sent: true })
  })
}

export default connections
