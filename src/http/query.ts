/** Reading a request's query string: one splitter and one decoder for every reader. */

/** One parameter of a query string: as sent (`raw`, `rawName`), and its name decoded. */
export interface QueryPair {
  raw: string
  rawName: string
  name: string
  /** Index of '=' in `raw`, -1 when the parameter has no value. */
  eq: number
}

/** The parameters of the query in `url` (after its first '?'), in order; [] without a query. */
export function queryPairs (url: string): QueryPair[] {
  const q = url.indexOf('?')
  if (q === -1) return []
  return url.slice(q + 1).split('&').map((raw) => {
    const eq = raw.indexOf('=')
    const rawName = eq === -1 ? raw : raw.slice(0, eq)
    return { raw, rawName, name: formDecode(rawName), eq }
  })
}

/** Decodes a query component as a form does (`+` is a space); a malformed escape is kept as it is. */
export function formDecode (s: string): string {
  try { return decodeURIComponent(s.replace(/\+/g, ' ')) } catch { return s }
}
