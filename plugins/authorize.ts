/**
 * External authorization on routes with `authorize` (src/authorize/): the auth service is asked
 * after the rate limits and the JWT check, before a request is proxied or a WebSocket's
 * upstream handshake starts. Its 2xx lets the request through with the answer's listed headers
 * (and, with `userHeader`, the user id the registry and `keyBy: user` limits use); any other
 * status goes to the client with its body, before any upgrade; no answer is 503 unless `failOpen`.
 */
import fp from 'fastify-plugin'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { AuthorizeConfig } from '../src/config/types.js'
import { Authorizer, authorizeAgent } from '../src/authorize/authorizer.js'
import { codes } from '../src/errors.js'
import { searchWithoutToken } from '../src/auth/token.js'
import { requestTarget } from './edge.js'
import type { JwtClaims } from './auth.js'

/** What the auth service granted a request. */
export interface Authorization {
  /** Headers of its answer to add to the upstream request. */
  headers: Record<string, string>
  /** The user id its `userHeader` named, or null. */
  userId: string | null
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set once the auth service allowed the request (null before, or on routes without authorize). */
    authorization: Authorization | null
  }
  interface FastifyInstance {
    /**
     * Asks the auth service of `config` about `request` (route name for metrics). True: allowed
     * (`request.authorization` set); false: the client was answered (the service's refusal, or 503).
     */
    authorize (request: FastifyRequest, reply: FastifyReply, config: AuthorizeConfig, route: string): Promise<boolean>
  }
}

/**
 * The request's user id: the one the auth service named, else the verified token's subject.
 * One rule for the registry, the balancer's `hashOn: user` and `keyBy: user` limits.
 */
export function requestUserId (request: FastifyRequest): string | null {
  const named = request.authorization?.userId
  if (named !== undefined && named !== null) return named
  const sub = (request as { user?: JwtClaims | null }).user?.sub
  return typeof sub === 'string' && sub !== '' ? sub : null
}

export default fp(async function authorizePlugin (fastify) {
  fastify.decorateRequest('authorization', null)
  const cfg = fastify.gatewayConfig
  const agent = authorizeAgent()
  fastify.addHook('onClose', async () => { await agent.close() })
  // One authorizer (and cache) per configuration: routes inheriting the top level's share it.
  const authorizers = new Map<AuthorizeConfig, Authorizer>()
  const authorizerOf = (c: AuthorizeConfig): Authorizer => {
    let a = authorizers.get(c)
    if (a === undefined) authorizers.set(c, a = new Authorizer(c, agent))
    return a
  }
  // The token parameter goes to the service no more than it goes upstream.
  const tokenParam = cfg.auth.jwt === undefined ? null : cfg.auth.queryParam
  const metrics = fastify.metrics

  fastify.decorate('authorize', async function authorize (request: FastifyRequest, reply: FastifyReply, config: AuthorizeConfig, route: string): Promise<boolean> {
    const rt = requestTarget(request)
    const search = searchWithoutToken(rt.search, tokenParam)
    const claims = (request as { user?: JwtClaims | null }).user ?? null
    const { decision, cached, seconds } = await authorizerOf(config).decide({
      method: request.method,
      uri: rt.path + search,
      clientIp: request.ip,
      host: request.host,
      proto: request.protocol,
      requestId: request.id,
      headers: request.headers,
      claims
    })
    const tag = cached ? 'cached_' : ''
    switch (decision.kind) {
      case 'allow':
        metrics.authorize(route, `${tag}allowed`, cached ? undefined : seconds)
        request.authorization = { headers: decision.headers, userId: decision.userId }
        return true
      case 'deny':
        metrics.authorize(route, `${tag}denied`, cached ? undefined : seconds)
        request.log.info({ status: decision.status, route }, 'request refused by the auth service')
        // The service's own answer, passed on as it is (the one place, with proxyHttp, where a
        // body the gateway did not make goes to the client).
        void reply.code(decision.status).headers(decision.headers)
        await (decision.body.length === 0 ? reply.send() : reply.send(decision.body))
        return false
      case 'unavailable':
        if (config.failOpen && decision.local !== true) {
          metrics.authorize(route, 'fail_open', seconds)
          request.log.warn({ error: decision.error, route }, 'auth service unavailable: allowing the request (failOpen)')
          request.authorization = { headers: {}, userId: null }
          return true
        }
        metrics.authorize(route, 'unavailable', seconds)
        request.log.warn({ error: decision.error, route }, 'auth service unavailable: refusing the request')
        await reply.send(new codes.GW_ERR_AUTHZ_UNAVAILABLE(decision.error))
        return false
    }
  })
}, { name: 'tollgate-authorize', fastify: '5.x', dependencies: ['tollgate-config', 'tollgate-metrics', 'tollgate-edge'] })
