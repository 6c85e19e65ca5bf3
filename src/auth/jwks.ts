/**
 * The key set of one JWKS endpoint, for choosing a token's verification key by its `kid`.
 *
 * The kid comes from the token, that is from anyone: a lookup of a kid the set lacks must not
 * become a request to the identity provider, nor push real keys out of a cache. So:
 * - every fetch, whatever triggered it, opens a global interval (`refetchInterval`, 10 s) in which
 *   no other fetch starts; an unknown kid inside it is refused at once;
 * - concurrent lookups share the one fetch in flight;
 * - a kid the last fetch did not have is remembered (the negative cache) for `negativeTtl`, in a
 *   map of its own with a bound (`negativeCacheMax`), so bogus kids never touch the known keys;
 * - the known keys change only when a fetch succeeds with at least one usable key: an endpoint
 *   that is down, slow, or answers garbage leaves them as they were;
 * - keys older than `maxAge` are refreshed in the background when used, so a key the provider
 *   withdraws stops working within about `maxAge`.
 * Nothing here throws: a fetch that fails is logged and a key that cannot be found is `undefined`.
 */
import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto'
import { readAtMost } from '../http/body.js'

/** At most one JWKS fetch starts in this many milliseconds. */
export const JWKS_REFETCH_INTERVAL_MS = 10_000
/** Known keys older than this are refreshed (in the background) when a token uses one. */
export const JWKS_MAX_AGE_MS = 10 * 60_000
/** Kids remembered as absent from the key set; the oldest is forgotten first. */
export const JWKS_NEGATIVE_CACHE_MAX = 4096
/** A fetch that has not finished after this long is abandoned. */
export const JWKS_FETCH_TIMEOUT_MS = 5_000
/** A JWKS document larger than this is refused (real ones are a few KiB). */
export const JWKS_MAX_BYTES = 1024 * 1024
/** Keys past this many in one document are ignored. */
export const JWKS_MAX_KEYS = 1000
/** A kid longer than this is refused without a lookup (and never stored). */
export const JWKS_MAX_KID_LENGTH = 256

/** The part of a pino logger this module uses. */
export interface JwksLogger {
  warn (obj: object, msg: string): void
  debug (obj: object, msg: string): void
}

export interface JwksOptions {
  /** The JWKS document's URL. */
  url: string
  /** Milliseconds between two fetches, at least (default JWKS_REFETCH_INTERVAL_MS). */
  refetchInterval?: number
  /** How long a kid absent from the last fetch is refused without a new one (default: refetchInterval). */
  negativeTtl?: number
  negativeCacheMax?: number
  maxAge?: number
  timeout?: number
  maxBytes?: number
  maxKeys?: number
  /** Clock in milliseconds (default Date.now; tests inject their own). */
  now?: () => number
  log?: JwksLogger
}

interface Key {
  kid: string | undefined
  /** The JWS algorithms this key verifies: its `alg` if it names one, else all its type fits. */
  algs: readonly string[]
  /** SPKI PEM: a string key lets @fastify/jwt reuse one fast-jwt verifier per key. */
  pem: string
}

const silent: JwksLogger = { warn () {}, debug () {} }

/** One JWKS endpoint's keys, fetched on demand under a global rate limit (see the file comment). */
export class JwksKeys {
  readonly #url: string
  readonly #logUrl: string
  readonly #interval: number
  readonly #negativeTtl: number
  readonly #negativeMax: number
  readonly #maxAge: number
  readonly #timeout: number
  readonly #maxBytes: number
  readonly #maxKeys: number
  readonly #now: () => number
  readonly #log: JwksLogger
  #keys: Key[] = []
  #byKid = new Map<string, Key>()
  /** kid (undefined: a token without one) -> when a fetch found it missing. */
  readonly #negative = new Map<string | undefined, number>()
  #lastAttempt: number | undefined
  #fetchedAt: number | undefined
  #inflight: Promise<void> | undefined
  #fetches = 0
  readonly #closing = new AbortController()

  constructor (o: JwksOptions) {
    const url = new URL(o.url)
    this.#url = url.href
    // The query can carry an API key; logs get the origin and path only.
    this.#logUrl = url.origin + url.pathname
    this.#interval = o.refetchInterval ?? JWKS_REFETCH_INTERVAL_MS
    this.#negativeTtl = o.negativeTtl ?? this.#interval
    this.#negativeMax = o.negativeCacheMax ?? JWKS_NEGATIVE_CACHE_MAX
    this.#maxAge = o.maxAge ?? JWKS_MAX_AGE_MS
    this.#timeout = o.timeout ?? JWKS_FETCH_TIMEOUT_MS
    this.#maxBytes = o.maxBytes ?? JWKS_MAX_BYTES
    this.#maxKeys = o.maxKeys ?? JWKS_MAX_KEYS
    this.#now = o.now ?? (() => Date.now())
    this.#log = o.log ?? silent
  }

  /** Fetches started so far (successful or not). */
  get fetches (): number { return this.#fetches }

  /** Known key ids. */
  get kids (): string[] { return [...this.#byKid.keys()] }

  /**
   * The PEM of the key for a token's `kid` and `alg` header values, or undefined when there is
   * none to use. A kid-less token gets the set's only key, if it has exactly one. Waits for a
   * fetch only when one is in flight or may start now; never rejects.
   */
  async getKey (kid: unknown, alg: unknown): Promise<string | undefined> {
    if (kid !== undefined && (typeof kid !== 'string' || kid.length > JWKS_MAX_KID_LENGTH)) return undefined
    let key = this.#find(kid)
    if (key === undefined) {
      const missingSince = this.#negative.get(kid)
      if (missingSince !== undefined && this.#since(missingSince) < this.#negativeTtl) return undefined
      if (this.#inflight === undefined && this.#mayFetch()) this.#start()
      if (this.#inflight === undefined) return undefined
      await this.#inflight
      key = this.#find(kid)
      if (key === undefined) {
        this.#rememberMissing(kid)
        return undefined
      }
    } else if (this.#inflight === undefined && this.#since(this.#fetchedAt ?? 0) >= this.#maxAge && this.#mayFetch()) {
      // Stale but usable: answer now, refresh for the next tokens.
      this.#start()
    }
    // A key published for one algorithm does not verify another (RFC 7517 4.4), and an RSA key
    // is no key at all for an ES256 token: both are "no usable key", not a verifier error.
    if (typeof alg !== 'string' || !key.algs.includes(alg)) return undefined
    return key.pem
  }

  /** Abandons a fetch in flight and starts no other. */
  close (): void {
    this.#closing.abort()
  }

  #find (kid: string | undefined): Key | undefined {
    if (kid !== undefined) return this.#byKid.get(kid)
    return this.#keys.length === 1 ? this.#keys[0] : undefined
  }

  #mayFetch (): boolean {
    if (this.#closing.signal.aborted) return false
    return this.#lastAttempt === undefined || this.#since(this.#lastAttempt) >= this.#interval
  }

  /** Milliseconds since `t`; Infinity when the wall clock went back past it, rather than waiting hours for it to catch up. */
  #since (t: number): number {
    const d = this.#now() - t
    return d < 0 ? Infinity : d
  }

  #rememberMissing (kid: string | undefined): void {
    this.#negative.delete(kid)
    if (this.#negative.size >= this.#negativeMax) {
      const oldest = this.#negative.keys().next()
      if (oldest.done !== true) this.#negative.delete(oldest.value)
    }
    this.#negative.set(kid, this.#now())
  }

  #start (): void {
    this.#lastAttempt = this.#now()
    this.#fetches++
    this.#inflight = this.#download().then((keys) => {
      this.#keys = keys
      this.#byKid = new Map()
      for (const k of keys) if (k.kid !== undefined && !this.#byKid.has(k.kid)) this.#byKid.set(k.kid, k)
      this.#fetchedAt = this.#now()
      this.#log.debug({ jwksUrl: this.#logUrl, keys: keys.length }, 'JWKS fetched')
    }, (err: unknown) => {
      if (this.#closing.signal.aborted) return
      // fetch's own message is only "fetch failed"; the cause says why (ECONNREFUSED, a bad certificate).
      const e = err as Error & { code?: string, cause?: { code?: string, message?: string } }
      const reason = e.cause?.message === undefined ? e.message : `${e.message}: ${e.cause.message}`
      this.#log.warn({ jwksUrl: this.#logUrl, reason, code: e.cause?.code ?? e.code, knownKeys: this.#keys.length }, 'JWKS fetch failed')
    }).finally(() => { this.#inflight = undefined })
  }

  async #download (): Promise<Key[]> {
    const signal = AbortSignal.any([this.#closing.signal, AbortSignal.timeout(this.#timeout)])
    const res = await fetch(this.#url, { signal, headers: { accept: 'application/json' } })
    if (!res.ok) {
      await res.body?.cancel().catch(() => {})
      throw new Error(`status ${res.status}`)
    }
    const declared = Number(res.headers.get('content-length') ?? 0)
    if (declared > this.#maxBytes) {
      await res.body?.cancel().catch(() => {})
      throw new Error(`document larger than ${this.#maxBytes} bytes`)
    }
    const bytes = res.body === null ? Buffer.alloc(0) : await readAtMost(res.body, this.#maxBytes)
    if (bytes === null) throw new Error(`document larger than ${this.#maxBytes} bytes`)
    let doc: unknown
    try {
      doc = JSON.parse(bytes.toString('utf8'))
    } catch {
      throw new Error('document is not JSON')
    }
    return this.#parse(doc)
  }

  /** The usable signing keys of a JWKS document; throws when there is none, so the known keys stay. */
  #parse (doc: unknown): Key[] {
    const list = isObject(doc) ? doc.keys : undefined
    if (!Array.isArray(list)) throw new Error('document has no "keys" array')
    const keys: Key[] = []
    let skipped = 0
    for (const jwk of list.slice(0, this.#maxKeys)) {
      const key = toKey(jwk)
      if (key === undefined) skipped++
      else keys.push(key)
    }
    if (skipped > 0 || list.length > this.#maxKeys) {
      this.#log.warn({ jwksUrl: this.#logUrl, keys: keys.length, skipped, ignored: Math.max(0, list.length - this.#maxKeys) }, 'JWKS keys skipped')
    }
    if (keys.length === 0) throw new Error('document has no usable signing key')
    return keys
  }
}

/** A JWK as a verification key, or undefined when it is not one (encryption key, secret, malformed). */
function toKey (jwk: unknown): Key | undefined {
  if (!isObject(jwk)) return undefined
  const { kid, alg, use } = jwk
  if (kid !== undefined && typeof kid !== 'string') return undefined
  if (alg !== undefined && typeof alg !== 'string') return undefined
  if (use !== undefined && use !== 'sig') return undefined
  // Public keys only: a symmetric ("oct") entry must never become an HMAC secret.
  if (jwk.kty === 'oct') return undefined
  let key: KeyObject
  try {
    key = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' })
  } catch {
    return undefined
  }
  const fits = algorithmsOf(key)
  const algs = alg === undefined ? fits : fits.filter((a) => a === alg)
  if (algs.length === 0) return undefined
  return { kid, algs, pem: key.export({ type: 'spki', format: 'pem' }).toString() }
}

const RSA_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']
const EC_ALGORITHMS: Record<string, string[]> = { prime256v1: ['ES256'], secp384r1: ['ES384'], secp521r1: ['ES512'] }

/** The JWS algorithms a public key's type can verify. */
function algorithmsOf (key: KeyObject): readonly string[] {
  switch (key.asymmetricKeyType) {
    case 'rsa': return RSA_ALGORITHMS
    case 'ec': return EC_ALGORITHMS[key.asymmetricKeyDetails?.namedCurve ?? ''] ?? []
    case 'ed25519': case 'ed448': return ['EdDSA']
    default: return []
  }
}

function isObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}
