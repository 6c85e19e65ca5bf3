/**
 * Upstreams and their targets: GET lists them with health and load; POST/PATCH/DELETE change
 * the targets at run time (cluster-wide with Redis; until the next reload or restart); POST
 * rebalance closes the connections above each target's weighted fair share, paced.
 */
import type { FastifyPluginAsync } from 'fastify'
import { Type, type Static } from '@sinclair/typebox'
import { Ajv } from 'ajv'
import { ErrorBody } from '../../src/admin/schemas.js'

const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()])

const TargetId = Type.String({ minLength: 1, maxLength: 300, description: 'the target\'s host:port (`id` in GET /upstreams)' })
const Weight = Type.Integer({ minimum: 0, maximum: 1000, description: '0: no new connections' })
const TargetUrl = Type.String({ pattern: '^(https?|wss?)://[^\\s/]+', maxLength: 2048, description: 'http(s) or ws(s) URL, optionally with a base path' })
const Persisted = Type.Literal('until the next reload or restart', { description: 'runtime changes last until the next config reload or restart' })
const Scope = Type.Union([Type.Literal('cluster'), Type.Literal('instance')], { description: 'cluster: sent to every instance (Redis); instance: this one only' })

const Target = Type.Object({
  id: Type.String({ description: 'host:port, the target\'s name in this API' }),
  url: Type.String(),
  weight: Type.Integer(),
  state: Type.String({ description: 'active | drain (no new connections; an address DNS no longer gives is shown as drain)' }),
  source: Type.String({ description: 'config | dns | admin' }),
  resolvedFrom: Nullable(Type.String({ description: 'for a dns target: the configured URL whose name resolved to it' })),
  healthy: Type.Boolean({ description: 'may be picked now (neither down nor unhealthy)' }),
  health: Type.String({ description: 'healthy | unhealthy (active checks) | down (passive back-off) | unchecked' }),
  openConnections: Type.Integer({ description: 'open WebSocket connections of this instance to the target' }),
  inFlight: Type.Integer({ description: 'HTTP requests of this instance in flight to the target' }),
  lastError: Nullable(Type.String()),
  downUntil: Nullable(Type.String({ format: 'date-time' }))
})
const Upstream = Type.Object({
  name: Type.String(),
  balance: Type.String(),
  resolveMs: Type.Integer({ description: 'how often host names are re-resolved into targets; 0: not at all' }),
  targets: Type.Array(Target)
})
const Closing = Type.Union([Type.Object({
  id: Type.String({ description: 'the paced close, as listed by GET /closing' }),
  total: Type.Integer(),
  windowMs: Type.Number(),
  maxPerSecond: Type.Number()
}), Type.Null()], { description: 'the paced close of the connections on this instance, or null' })
const TargetAnswer = Type.Object({
  upstream: Type.String(),
  target: Target,
  closing: Closing,
  scope: Scope,
  persisted: Persisted
})

const NameParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 2048 }) })
const TargetParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 2048 }), target: TargetId })
const AddBody = Type.Object({ url: TargetUrl, weight: Type.Optional(Weight) }, { additionalProperties: false })
const PatchBody = Type.Object({
  weight: Type.Optional(Weight),
  state: Type.Optional(Type.Union([Type.Literal('active'), Type.Literal('drain')])),
  closeWithin: Type.Optional(Type.Union([Type.Integer({ minimum: 0, maximum: 86_400_000 }), Type.String({ minLength: 1, maxLength: 32 })], { description: 'duration (whole ms, or "30s"; at most a day): close the drained target\'s connections with 1012, paced over it' }))
}, { additionalProperties: false, minProperties: 1 })
const DeleteQuery = Type.Object({
  close: Type.Optional(Type.Boolean({ description: 'also close its open connections with 1012, paced over server.drainPace' }))
}, { additionalProperties: false })
const RebalanceBody = Type.Object({
  dryRun: Type.Optional(Type.Boolean({ description: 'only say what would be closed' })),
  minAgeMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400_000, description: 'only connections at least this old are closed (default 60000)' }))
}, { additionalProperties: false })
const TargetPlan = Type.Object({
  id: Type.String(),
  url: Type.String(),
  weight: Type.Integer(),
  eligible: Type.Boolean({ description: 'takes new connections (active, weight > 0, healthy); other targets are left alone' }),
  connections: Type.Integer({ description: 'this instance\'s connections to the target' }),
  fairShare: Type.Number({ description: 'its weighted share of the eligible targets\' connections' }),
  surplus: Type.Integer({ description: 'connections above the share (rounded up)' }),
  picked: Type.Array(Type.String(), { description: 'ids of the connections closed (or that would be)' })
})
const RebalanceAnswer = Type.Object({
  upstream: Type.String(),
  dryRun: Type.Boolean(),
  minAgeMs: Type.Integer(),
  instanceId: Type.String({ description: 'the instance these counts are of; in cluster mode every instance rebalances its own' }),
  total: Type.Integer(),
  targets: Type.Array(TargetPlan),
  closing: Closing,
  scope: Scope
})

const Errors = { 400: ErrorBody, 404: ErrorBody }

const upstreams: FastifyPluginAsync = async (fastify) => {
  const manager = fastify.upstreamTargets
  // Fastify's own Ajv removes unknown keys; a change request with a misspelt key must fail (400)
  // rather than do something else than asked. Bodies are not coerced either ("3" is no weight);
  // the query string and path are text, so those are.
  const strict = new Ajv({ removeAdditional: false, coerceTypes: false, useDefaults: true, allErrors: false })
  const lenient = new Ajv({ removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: false })
  fastify.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? strict : lenient).compile(schema))

  fastify.get('/upstreams', {
    schema: { summary: 'Upstreams and their targets', tags: ['upstreams'], response: { 200: Type.Object({ upstreams: Type.Array(Upstream) }) } }
  }, async () => ({
    // Routes naming the same upstream URL share its pool: listed once.
    upstreams: [...new Set(fastify.upstreamPools.values())].map((pool) => ({ name: pool.name, balance: pool.config.balance, resolveMs: pool.config.resolve, targets: pool.state() }))
  }))

  fastify.post<{ Params: Static<typeof NameParams>, Body: Static<typeof AddBody> }>('/upstreams/:name/targets', {
    schema: {
      summary: 'Add a target (until the next reload or restart); 409 when it exists or the upstream has the most targets it may have',
      tags: ['upstreams'],
      params: NameParams,
      body: AddBody,
      response: { 201: TargetAnswer, ...Errors, 409: ErrorBody }
    }
  }, async (request, reply) => {
    const answer = await manager.add(request.params.name, request.body.url, request.body.weight ?? 1)
    request.log.info({ upstream: answer.upstream, target: answer.target.url, weight: answer.target.weight }, 'upstream target added by administrator')
    return reply.code(201).send(answer)
  })

  fastify.patch<{ Params: Static<typeof TargetParams>, Body: Static<typeof PatchBody> }>('/upstreams/:name/targets/:target', {
    schema: {
      summary: 'Change a target\'s weight or state; drain it, optionally closing its connections paced',
      tags: ['upstreams'],
      params: TargetParams,
      body: PatchBody,
      response: { 200: TargetAnswer, ...Errors }
    }
  }, async (request) => {
    const answer = await manager.update(request.params.name, request.params.target, request.body)
    request.log.info({ upstream: answer.upstream, target: answer.target.url, weight: answer.target.weight, state: answer.target.state, closing: answer.closing?.total ?? 0 }, 'upstream target changed by administrator')
    return answer
  })

  fastify.delete<{ Params: Static<typeof TargetParams>, Querystring: Static<typeof DeleteQuery> }>('/upstreams/:name/targets/:target', {
    schema: {
      summary: 'Remove a target; ?close=true also closes its connections, paced',
      tags: ['upstreams'],
      params: TargetParams,
      querystring: DeleteQuery,
      response: { 200: TargetAnswer, ...Errors }
    }
  }, async (request) => {
    const answer = await manager.remove(request.params.name, request.params.target, request.query.close === true)
    request.log.info({ upstream: answer.upstream, target: answer.target.url, closing: answer.closing?.total ?? 0 }, 'upstream target removed by administrator')
    return answer
  })

  fastify.post<{ Params: Static<typeof NameParams>, Body: Static<typeof RebalanceBody> | undefined }>('/upstreams/:name/rebalance', {
    schema: {
      summary: 'Close the connections above each target\'s weighted fair share (1012, paced), or say which with dryRun',
      tags: ['upstreams'],
      params: NameParams,
      body: RebalanceBody,
      response: { 200: RebalanceAnswer, ...Errors }
    },
    // Every field is optional, so is the body: `curl -X POST .../rebalance` rebalances.
    preValidation: async (request) => { request.body ??= {} }
  }, async (request) => {
    const body = request.body ?? {}
    return await manager.rebalance(request.params.name, { dryRun: body.dryRun, minAgeMs: body.minAgeMs })
  })
}

export default upstreams
