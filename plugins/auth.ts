/**
 * JWT auth (@fastify/jwt) for HTTP routes and WebSocket handshakes. The check runs in an
 * onRequest hook, so a WebSocket handshake without a valid token gets a plain 401 before any
 * upgrade or upstream connection. Keys: an HMAC secret, a public key, or a JWKS endpoint
 * (src/auth/jwks.ts: keys chosen by kid, fetched at most once per interval whatever the tokens
 * say, so rotation needs no restart and bogus kids cannot make the gateway hammer the provider).
 */
import fp from 'fastify-plugin'
import fastifyJwt from '@fastify/jwt'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { findToken, type FoundToken } from '../src/auth/token.js'
import { JwksKeys } from '../src/auth/jwks.js'
import type { AuthMode } from '../src/config/types.js'
import { codes } from '../src/errors.js'

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
/** The token a request carried, and why it failed verification (none when it passed). */
interface Attempt { found: FoundToken | undefined, error: AuthError | undefined }
const kAttempt = Symbol('tollgate.authAttempt')
type WithAttempt = FastifyRequest & { [kAttempt]?: Attempt }

/** Marks an error thrown by this plugin's own checks: the value is the reason sent to the client. */
const kReason = Symbol('tollgate.reason')
type AuthError = Error & { code?: string, [kReason]?: string }

function refusal (reason: string): AuthError {
  return Object.assign(new Error(reason), { [kReason]: reason })
}

/** Maps verification errors to a short, token-free reason for the 401 body. */
function reasonOf (err: AuthError): string {
  if (err[kReason] !== undefined) return err[kReason]
  // fast-jwt's own codes (static keys are checked with its verifier directly) and the ones
  // @fastify/jwt wraps them in (request.jwtVerify, used with JWKS).
  switch (err.code) {
    case 'FST_JWT_AUTHORIZATION_TOKEN_EXPIRED': case 'FAST_JWT_EXPIRED': return 'token expired'
    case 'FAST_JWT_INACTIVE': return 'token not yet valid'
    case 'FAST_JWT_MALFORMED': case 'FAST_JWT_INVALID_TYPE': case 'FST_JWT_BAD_REQUEST': return 'malformed token'
    case 'FAST_JWT_INVALID_ALGORITHM': return 'token algorithm not allowed'
    case 'FAST_JWT_MISSING_SIGNATURE': return 'token is not signed'
    case 'FST_JWT_AUTHORIZATION_TOKEN_INVALID': return reasonOfDetail(/: (.*)$/.exec(err.message)?.[1] ?? '')
    case 'FAST_JWT_INVALID_KEY': case 'FAST_JWT_INVALID_SIGNATURE': case 'FAST_JWT_INVALID_CLAIM_VALUE': case 'FAST_JWT_MISSING_REQUIRED_CLAIM':
      return reasonOfDetail(err.message)
    default:
      return 'invalid token'
  }
}

function reasonOfDetail (detail: string): string {
  // fast-jwt's requiredClaims message; the name is one from the configuration, not the token.
  const claim = /^The (.+) claim is required\.$/.exec(detail)?.[1]
  if (claim !== undefined) return /^[\x21\x23-\x5b\x5d-\x7e]{1,64}$/.test(claim) ? `missing required claim ${claim}` : 'missing required claim'
  if (/malformed|base64url|serialized/i.test(detail)) return 'malformed token'
  if (/signature/i.test(detail)) return 'invalid signature'
  if (/iss claim/i.test(detail)) return 'invalid issuer'
  if (/aud claim/i.test(detail)) return 'invalid audience'
  if (/algorithm/i.test(detail)) return 'token algorithm not allowed'
  return 'invalid token'
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
      const jwks = new JwksKeys({ url: jwt.jwksUrl!, log: fastify.log })
      fastify.addHook('onClose', async () => { jwks.close() })
      const allowed = new Set(jwt.algorithms)
      secret = async (_request, token) => {
        const alg = token.header.alg
        // Refused before the key lookup: a token that no key could verify never causes a fetch.
        if (alg === 'none') throw refusal('token is not signed')
        if (alg === undefined || !allowed.has(alg)) throw refusal('token algorithm not allowed')
        const pem = await jwks.getKey(token.header.kid, alg)
        if (pem === undefined) throw refusal('unknown signing key')
        return pem
      }
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
        // Checked by fast-jwt on both paths (the static verifier and request.jwtVerify).
        requiredClaims: jwt.requiredClaims.length > 0 ? jwt.requiredClaims : undefined,
        extractToken: (request: FastifyRequest) => (request as WithToken)[kToken]
      },
      messages: { authorizationTokenInvalid: (err: Error) => `Authorization token is invalid: ${err.message}` }
    })
  }

  /**
   * With a static key (secret or public key), a token is checked by @fastify/jwt's own verifier
   * (fast-jwt, built once with the options above) in one synchronous call. request.jwtVerify()
   * does the same check behind a second decode and a callback chain. A JWKS key needs the
   * token's kid, so it goes that way.
   */
  const staticKey = jwt !== undefined && (jwt.secret !== undefined || jwt.publicKey !== undefined)
  const verify = async (request: FastifyRequest, token: string): Promise<void> => {
    if (staticKey) {
      request.user = fastify.jwt.verify<JwtClaims>(token)
      return
    }
    ;(request as WithToken)[kToken] = token
    await request.jwtVerify()
  }

  /**
   * Finds and verifies the request's token once: identify() (keyBy user, before the limits) and
   * checkAuth() (after them) share the outcome, so a bad token is not verified twice.
   */
  async function attempt (request: FastifyRequest): Promise<Attempt> {
    const memo = (request as WithAttempt)[kAttempt]
    if (memo !== undefined) return memo
    const found = findToken(request.headers, request.url, request.ws, lookup)
    let error: AuthError | undefined
    if (found !== undefined && jwt !== undefined) {
      try {
        await verify(request, found.token)
        request.tokenSource = found.source
      } catch (err) {
        error = err as AuthError
      }
    }
    const outcome = { found, error }
    ;(request as WithAttempt)[kAttempt] = outcome
    return outcome
  }

  async function checkAuth (request: FastifyRequest, reply: FastifyReply, mode: AuthMode): Promise<boolean> {
    if (mode === 'none') return true
    if (jwt === undefined) throw new Error('auth requested on a gateway without auth.jwt')
    const { found, error } = await attempt(request)
    if (found === undefined) {
      if (mode === 'optional') return true
      await reply.header('www-authenticate', 'Bearer').send(new codes.GW_ERR_AUTH_REQUIRED())
      return false
    }
    if (error !== undefined) {
      const reason = reasonOf(error)
      request.log.info({ reason, code: error.code, source: found.source }, 'token rejected')
      await reply.header('www-authenticate', `Bearer error="invalid_token", error_description="${reason}"`).send(new codes.GW_ERR_AUTH_INVALID(reason))
      return false
    }
    return true
  }

  fastify.decorate('checkAuth', checkAuth)
  // Not an auth route (or before the limits): an invalid token only means the request is keyed by IP.
  fastify.decorate('identify', async (request: FastifyRequest) => { if (jwt !== undefined) await attempt(request) })
  fastify.decorate('authenticate', async (request: FastifyRequest, reply: FastifyReply) => { await checkAuth(request, reply, 'required') })
  fastify.decorate('authenticateOptional', async (request: FastifyRequest, reply: FastifyReply) => { await checkAuth(request, reply, 'optional') })
}, { name: 'tollgate-auth', fastify: '5.x', dependencies: ['tollgate-config'] })
