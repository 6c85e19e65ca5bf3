// The admin API client: fetch with the admin token as a Bearer header (never in a URL), a timeout,
// and errors that say what went wrong (AuthError for a 401, ApiError for the rest); and the calls
// the dashboard makes: {prefix}/connections (list, send a message, close), {prefix}/upstreams
// (list, drain or activate a target, rebalance) and GET /metrics. No DOM: the token comes from whoever creates the client.

export const METRICS_URL = '/metrics'
export const REQUEST_TIMEOUT_MS = 8000

/** The gateway answered 401: the token is wrong, or no longer accepted. */
export class AuthError extends Error {}

/** Any other failure; `status` is the HTTP status, or 0 when no answer came (network, timeout). */
export class ApiError extends Error {
  /** @param {number} status @param {string} message */
  constructor (status, message) { super(message); this.status = status }
}

/** The query string of GET {prefix}/connections for a filter and a page. */
export function listQuery (route, user, limit, offset) {
  const q = new URLSearchParams()
  if (route !== '') q.set('route', route)
  if (user !== '') q.set('user', user)
  q.set('limit', String(limit))
  q.set('offset', String(offset))
  return q.toString()
}

/**
 * The client of the admin API under `prefix`. Each request sends `getToken()` (read when it is
 * made), unless it is given a token of its own, as the sign-in check is.
 * @param {string} prefix @param {() => string | null} getToken
 */
export function createClient (prefix, getToken) {
  /** fetch with the Bearer token, a timeout, and errors that say what went wrong. */
  async function request (url, { method = 'GET', body, accept = 'application/json', token = getToken() } = {}) {
    const headers = { accept, authorization: 'Bearer ' + token }
    if (body !== undefined) headers['content-type'] = 'application/json'
    let res
    try {
      res = await fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
        credentials: 'omit',
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS)
      })
    } catch (err) {
      throw new ApiError(0, err && err.name === 'TimeoutError' ? 'no answer within ' + REQUEST_TIMEOUT_MS / 1000 + ' s' : 'network error')
    }
    if (res.status === 401) throw new AuthError('unauthorized')
    const text = await res.text()
    if (!res.ok) {
      let message = 'HTTP ' + res.status
      try { const j = JSON.parse(text); if (j && j.message) message += ': ' + j.message } catch { /* not JSON */ }
      throw new ApiError(res.status, message)
    }
    if (accept !== 'application/json') return text
    return text === '' ? null : JSON.parse(text)
  }

  const api = (path, opts) => request(prefix + path, opts)

  return {
    /** The sign-in check: resolves when the gateway accepts `token`, throws AuthError when not. */
    checkToken: (token) => request(prefix + '/connections?limit=1', { token }),
    /** One page of connections: `query` from listQuery. */
    connections: (query) => api('/connections?' + query),
    /** Open connections in all, per route and per instance (cluster-wide), whatever the table's filter. */
    connectionTotals: () => api('/connections/totals'),
    upstreams: () => api('/upstreams'),
    /**
     * The text of GET /metrics, or the ApiError it answered with (a 401 included): the dashboard
     * does without metrics. Throws only when the gateway could not be reached.
     */
    metrics: () => request(METRICS_URL, { accept: 'text/plain' }).catch((err) => {
      if (err instanceof AuthError) return new ApiError(401, 'HTTP 401')
      if (err instanceof ApiError && err.status !== 0) return err
      throw err
    }),
    /** @param {string} id @param {{ text: string } | { binary: string }} body */
    sendMessage: (id, body) => api('/connections/' + encodeURIComponent(id) + '/messages', { method: 'POST', body }),
    /** @param {string} id */
    closeConnection: (id) => api('/connections/' + encodeURIComponent(id), { method: 'DELETE' }),
    /** @param {string} upstream @param {string} target its id (host:port) @param {{ weight?: number, state?: string }} body */
    updateTarget: (upstream, target, body) => api('/upstreams/' + encodeURIComponent(upstream) + '/targets/' + encodeURIComponent(target), { method: 'PATCH', body }),
    /** @param {string} upstream @param {{ dryRun?: boolean, minAgeMs?: number }} body */
    rebalance: (upstream, body) => api('/upstreams/' + encodeURIComponent(upstream) + '/rebalance', { method: 'POST', body })
  }
}
