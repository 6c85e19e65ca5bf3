// The Prometheus text format as GET /metrics serves it, and what the dashboard computes from it:
// the messages counter and its rate between two polls, the open connections by route, the route
// names. Pure: text and numbers in, values out; no DOM, no fetch, so Node imports it for the unit
// tests (test/unit/ui/metrics.test.ts; the types they see are in metrics.d.ts beside this file).

/** @param {string} s a label value as written between the quotes @returns {string} */
export function unescapeLabel (s) {
  return s.replace(/\\(["\\n])/g, (_m, c) => c === 'n' ? '\n' : c)
}

/**
 * Samples of one metric family: [{ labels, value }]. Only the lines of that exact name (not of
 * `name_bucket`, `name_sum`...); comments are skipped, and so are values that are not finite
 * (NaN, +Inf, -Inf).
 * @param {string} text @param {string} name
 * @returns {Array<{ labels: Record<string, string>, value: number }>}
 */
export function samples (text, name) {
  const out = []
  const head = name + '{'
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue
    let labels = {}
    let rest
    if (line.startsWith(head)) {
      const end = line.lastIndexOf('}')
      if (end < 0) continue
      const re = /(\w+)="((?:[^"\\]|\\.)*)"/g
      let m
      while ((m = re.exec(line.slice(head.length, end))) !== null) labels[m[1]] = unescapeLabel(m[2])
      rest = line.slice(end + 1)
    } else if (line[name.length] === ' ') {
      rest = line.slice(name.length)
    } else {
      continue
    }
    const value = Number(rest.trim().split(/\s+/)[0])
    if (Number.isFinite(value)) out.push({ labels, value })
  }
  return out
}

/**
 * Per second, how much a counter grew since the previous reading; null without one.
 * @param {{ value: number, at: number } | null} prev the previous reading (`at` in ms)
 * @param {number} value @param {number} at
 * @returns {number | null}
 */
export function counterRate (prev, value, at) {
  // A counter that went down means the gateway restarted: skip one point rather than plot a dive.
  if (prev !== null && value >= prev.value && at > prev.at) return (value - prev.value) / ((at - prev.at) / 1000)
  return null
}

/**
 * What the dashboard shows from one scrape: `messages`, the total of
 * tollgate_websocket_messages_total (every route, both directions); `byRoute`, the routes with open
 * connections on this instance (tollgate_websocket_connections_active); `routeNames`, those and
 * every route that saw a handshake (for the route filter's suggestions).
 * @param {string} text
 * @returns {{ messages: number, byRoute: Map<string, number>, routeNames: Set<string> }}
 */
export function dashboardMetrics (text) {
  const messages = samples(text, 'tollgate_websocket_messages_total').reduce((sum, s) => sum + s.value, 0)
  const byRoute = new Map()
  for (const s of samples(text, 'tollgate_websocket_connections_active')) if (s.value > 0) byRoute.set(s.labels.route, s.value)
  const routeNames = new Set(byRoute.keys())
  for (const s of samples(text, 'tollgate_websocket_handshakes_total')) if (s.labels.route) routeNames.add(s.labels.route)
  return { messages, byRoute, routeNames }
}
