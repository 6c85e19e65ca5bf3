/**
 * JWT auth (@fastify/jwt) for HTTP routes and WebSocket handshakes. The check runs in an
 * onRequest hook, so a WebSocket handshake without a valid token gets a plain 401 before any
 * upgrade or upstream connection. Keys: an HMAC secret, a public key, or a JWKS endpoint
 * (get-jwks: keys chosen by kid and cached, so rotation needs no restart).
 */
import fp from 'fastify-plugin'
import fastifyJwt from '@fastify/jwt'
import buildGetJwks from 'get-jwks'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { findToken, type FoundToken } from '../src/auth/token.js'
import type { AuthMode } from '../src/config/types.js'
import { codes, errorBody } from '../src/errors.js'

/** Verified JWT claims. */
export type JwtClaims = Record<string, unknown> & { sub?: string, exp?: number, nbf?: number, iss?: string, aud?: string | string[] }

declare module '@fastify/jwt' {
  interface FastifyJWT {
    payload: JwtClaims
    user: JwtClaims
  }
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Where the request's token came from, when it had one. */
    tokenSource: FoundToken['source'] | null
  }
  interface FastifyInstance {
    /** onRequest hook: a valid JWT is required (401 otherwise); claims in `request.user`. */
    authenticate (request: FastifyRequest, reply: FastifyReply): Promise<void>
    /** onRequest hook: a valid JWT is used when present; none is fine; an invalid one is 401. */
    authenticateOptional (request: FastifyRequest, reply: FastifyReply): Promise<void>
    /** Verifies a token if one is present (for keyBy user on routes without auth); never answers. */
    identify (request: FastifyRequest): Promise<void>
    /** Runs the check for `mode`; returns false when it already answered 401. */
    checkAuth (request: FastifyRequest, reply: FastifyReply, mode: AuthMode): Promise<boolean>
  }
}

const kToken = Symbol('tollgate.token')
type WithToken = FastifyRequest & { [kToken]?: string }

/** Maps verification errors to a short, token-free reason for the 401 body. */
function reasonOf (err: Error & { code?: string }): string {
  switch (err.code) {
    case 'FST_JWT_AUTHORIZATION_TOKEN_EXPIRED': return 'token expired'
    case 'FAST_JWT_INACTIVE': return 'token not yet valid'
    case 'FAST_JWT_MALFORMED': case 'FAST_JWT_INVALID_TYPE': case 'FST_JWT_BAD_REQUEST': return 'malformed token'
    case 'FAST_JWT_INVALID_ALGORITHM': return 'token algorithm not allowed'
    case 'FST_JWT_AUTHORIZATION_TOKEN_UNSIGNED': return 'token is not signed'
    case 'FST_JWT_AUTHORIZATION_TOKEN_INVALID': {
      const m = /: (.*)$/.exec(err.message)
      const detail = m?.[1] ?? ''
      if (/malformed|base64url|serialized/i.test(detail)) return 'malformed token'
      if (/signature/i.test(detail)) return 'invalid signature'
      if (/iss claim/i.test(detail)) return 'invalid issuer'
      if (/aud claim/i.test(detail)) return 'invalid audience'
      if (/algorithm/i.test(detail)) return 'token algorithm not allowed'
      return 'invalid token'
    }
    default:
      return err.name === 'GetJwksError' || /jwk/i.test(err.message) ? 'unknown signing key' : 'invalid token'
  }
}

export default fp(async function authPlugin (fastify) {
  const auth = fastify.gatewayConfig.auth
  const jwt = auth.jwt
  fastify.decorateRequest('tokenSource', null)
  const lookup = { sources: auth.tokenSources, queryParam: auth.queryParam, cookieName: auth.cookieName }

  if (jwt !== undefined) {
    let secret: string | { public: string } | ((request: FastifyRequest, token: { header: { kid?: string, alg?: string } }) => Promise<string>)
    if (jwt.secret !== undefined) secret = jwt.secret
    else if (jwt.publicKey !== undefined) secret = { public: jwt.publicKey }
    else {
      const url = new URL(jwt.jwksUrl!)
      const jwks = buildGetJwks({ jwksPath: url.pathname + url.search, ttl: 10 * 60_000, max: 100 })
      secret = async (_request, token) => jwks.getPublicKey({ domain: url.origin, kid: token.header.kid, alg: token.header.alg })
    }
    await fastify.register(fastifyJwt, {
      secret: secret as never,
      // The key callback (JWKS) needs the token's header for its kid.
      decode: { complete: true },
      verify: {
        algorithms: jwt.algorithms as never,
        allowedIss: jwt.issuer,
        allowedAud: jwt.audience,
        clockTolerance: jwt.clockToleranceSec * 1000,
        extractToken: (request: FastifyRequest) => (request as WithToken)[kToken]
      },
      messages: { authorizationTokenInvalid: (err: Error) => `Authorization token is invalid: ${err.message}` }
    })
  }

  async function checkAuth (request: FastifyRequest, reply: FastifyReply, mode: AuthMode): Promise<boolean> {
    if (mode === 'none') return true
    const found = findToken(request.headers, request.url, request.ws, lookup)
    if (found === undefined) {
      if (mode === 'optional') return true
      await reply.code(401).header('www-authenticate', 'Bearer').send(errorBody(new codes.GW_ERR_AUTH_REQUIRED()))
      return false
    }
    if (jwt === undefined) throw new Error('auth requested on a gateway without auth.jwt')
    ;(request as WithToken)[kToken] = found.token
    try {
      await request.jwtVerify()
    } catch (err) {
      const reason = reasonOf(err as Error & { code?: string })
      request.log.info({ reason, code: (err as { code?: string }).code, source: found.source }, 'token rejected')
      await reply.code(401).header('www-authenticate', `Bearer error="invalid_token", error_description="${reason}"`).send(errorBody(new codes.GW_ERR_AUTH_INVALID(reason)))
      return false
    }
    request.tokenSource = found.source
    return true
  }

  fastify.decorate('checkAuth', checkAuth)
  fastify.decorate('identify', async (request: FastifyRequest) => {
    if (jwt === undefined) return
    const found = findToken(request.headers, request.url, request.ws, lookup)
    if (found === undefined) return
    ;(request as WithToken)[kToken] = found.token
    try {
      await request.jwtVerify()
      request.tokenSource = found.source
    } catch {
      // Not an auth route: an invalid token only means the request is keyed by IP.
    }
  })
  fastify.decorate('authenticate', async (request: FastifyRequest, reply: FastifyReply) => { await checkAuth(request, reply, 'required') })
  fastify.decorate('authenticateOptional', async (request: FastifyRequest, reply: FastifyReply) => { await checkAuth(request, reply, 'optional') })
}, { name: 'tollgate-auth', fastify: '5.x', dependencies: ['tollgate-config'] })
