/** Token minting for tests: HS secrets, RSA/EC key pairs, and a JWKS server on loopback. */
import { createSigner } from 'fast-jwt'
import { generateKeyPairSync, createHmac, createPublicKey, type KeyObject } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

export const SECRET = 'test-secret-please-change'

/** Signs claims with HS256 (or `algorithm`) and `key` (default SECRET). */
export function sign (claims: Record<string, unknown>, opts: { key?: string | KeyObject, algorithm?: string, kid?: string } = {}): string {
  const key = opts.key ?? SECRET
  const pem = typeof key === 'string' ? key : key.export({ type: 'pkcs8', format: 'pem' }).toString()
  const signer = createSigner({ key: pem, algorithm: (opts.algorithm ?? 'HS256') as never, kid: opts.kid, noTimestamp: 'iat' in claims })
  return signer(claims)
}

/** A token with alg "none" (unsigned). */
export function unsigned (claims: Record<string, unknown>): string {
  const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url')
  return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`
}

/** HS256 signed with an arbitrary string as the HMAC key (e.g. a public key PEM: algorithm confusion). */
export function hmacWith (claims: Record<string, unknown>, secret: string): string {
  const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url')
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`
  return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`
}

export function rsaPair (): { privateKey: KeyObject, publicPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  return { privateKey, publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() }
}

export function ecPair (): { privateKey: KeyObject, publicPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  return { privateKey, publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() }
}

export const now = (): number => Math.floor(Date.now() / 1000)

export interface JwksServer {
  url: string
  /** Replaces the served key set. */
  setKeys (keys: Array<{ kid: string, key: KeyObject, alg?: string }>): void
  requests: number
  close (): Promise<void>
}

/** Serves a JWKS document at /.well-known/jwks.json. */
export async function startJwks (keys: Array<{ kid: string, key: KeyObject, alg?: string }>): Promise<JwksServer> {
  let doc = ''
  const setKeys = (ks: Array<{ kid: string, key: KeyObject, alg?: string }>): void => {
    doc = JSON.stringify({ keys: ks.map(({ kid, key, alg }) => ({ ...createPublicKey(key).export({ format: 'jwk' }), kid, alg: alg ?? 'RS256', use: 'sig' })) })
  }
  setKeys(keys)
  const state = { requests: 0 }
  const server: Server = createServer((req, res) => {
    state.requests++
    if (req.url !== '/.well-known/jwks.json') { res.writeHead(404).end(); return }
    res.writeHead(200, { 'content-type': 'application/json' }).end(doc)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    setKeys,
    get requests () { return state.requests },
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) })
  }
}
