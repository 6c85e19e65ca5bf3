/**
 * Where a JWT can come from on a request, and how to remove it from what goes upstream.
 * Browsers cannot set headers on a WebSocket, hence the query, cookie and subprotocol sources.
 */
import type { IncomingHttpHeaders } from 'node:http'
import type { TokenSource } from '../config/types.js'
import { cookieValue } from '../http/cookie.js'
import { bearerToken } from '../http/headers.js'
import { formDecode, queryPairs } from '../http/query.js'

export const BEARER_PROTOCOL_PREFIX = 'bearer.'

export interface FoundToken {
  token: string
  source: TokenSource
}

export interface TokenLookup {
  sources: readonly TokenSource[]
  queryParam: string
  cookieName: string
}

/** Reads the first token found in `sources` order; undefined when none is present. */
export function findToken (headers: IncomingHttpHeaders, url: string, isWebSocket: boolean, o: TokenLookup): FoundToken | undefined {
  for (const source of o.sources) {
    let token: string | undefined
    switch (source) {
      case 'header': {
        token = bearerToken(headers.authorization) ?? undefined
        break
      }
      case 'query':
        token = queryValue(url, o.queryParam)
        break
      case 'cookie':
        token = cookieValue(headers.cookie, o.cookieName) ?? undefined
        break
      case 'protocol':
        if (isWebSocket) token = bearerProtocol(headers['sec-websocket-protocol'])?.slice(BEARER_PROTOCOL_PREFIX.length)
        break
    }
    if (token !== undefined && token !== '') return { token, source }
  }
  return undefined
}

/** The value of query parameter `name` in a request URL, decoded. */
export function queryValue (url: string, name: string): string | undefined {
  const p = queryPairs(url).find((x) => x.name === name)
  if (p === undefined) return undefined
  return p.eq === -1 ? '' : formDecode(p.raw.slice(p.eq + 1))
}

/** The query string (without "?") minus every `name` parameter; other parameters stay byte for byte. */
export function queryWithout (url: string, name: string): string {
  return queryPairs(url).filter((p) => p.raw !== '' && p.name !== name).map((p) => p.raw).join('&')
}

/**
 * A request's search (`?...` or '') as it leaves the gateway: without the gateway's token
 * parameter when there is one (`tokenParam` null: the gateway does no JWT auth, nothing removed).
 */
export function searchWithoutToken (search: string, tokenParam: string | null): string {
  if (tokenParam === null || search === '') return search
  const q = queryWithout(search, tokenParam)
  return q === '' ? '' : `?${q}`
}


/** Splits a Sec-WebSocket-Protocol header into its offers. */
export function parseProtocols (h: string | string[] | undefined): string[] {
  if (h === undefined) return []
  const s = Array.isArray(h) ? h.join(',') : h
  return s.split(',').map((p) => p.trim()).filter((p) => p !== '')
}

/** The `bearer.<jwt>` offer, if the client made one. */
export function bearerProtocol (h: string | string[] | undefined): string | undefined {
  return parseProtocols(h).find((p) => p.startsWith(BEARER_PROTOCOL_PREFIX))
}

/** Header values for `forwardClaims` (claim -> header) from verified claims. */
export function claimHeaders (claims: Record<string, unknown> | null | undefined, forward: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {}
  if (claims == null) return out
  for (const [claim, header] of Object.entries(forward)) {
    const v = claims[claim]
    if (v === undefined || v === null) continue
    const text = typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : JSON.stringify(v)
    // Header values must be visible ASCII; anything else is percent-encoded rather than dropped.
    out[header] = /^[\x20-\x7e]*$/.test(text) ? text : encodeURIComponent(text)
  }
  return out
}
