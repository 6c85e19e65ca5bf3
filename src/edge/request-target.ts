/**
 * The request target, normalised once at the edge. Everything behind it (route match, auth,
 * limits, rewritePrefix, the path sent upstream, static files) reads the one result, never the
 * raw target: an upstream that normalises differently from the gateway's router is how a
 * protected prefix gets walked around (`/public/../private`, `//private`, `/%2e/private`).
 *
 * What it does, in order:
 * - absolute-form (`http://host/path`, RFC 9112 3.2.2) is reduced to its path; its authority
 *   replaces Host. Any other form (`*`, authority-form, a relative path) is refused.
 * - percent-encoded unreserved characters are decoded (`%7E` -> `~`, `%2e` -> `.`), other
 *   escapes get upper-case hex (RFC 3986 6.2.2). `%2F` and `%5C` are refused unless `keep`
 *   (then they separate segments for routing but go upstream as sent), `%00` always is, and so
 *   are a raw `\`, a `#`, and a malformed escape (including escapes that are not UTF-8).
 * - runs of `/` are merged, then `.` and `..` segments resolved (RFC 3986 5.2.4); a `..` that
 *   would climb above `/` is refused.
 * - path parameters (`;jsessionid=...`, which Tomcat and Jetty strip before matching) do not
 *   count for routing, so `/private;x/secret` is routed as `/private/secret`; they still go
 *   upstream. A dot or empty segment carrying parameters (`..;x`, `/;x/`) is refused.
 * The query string is passed on as it came.
 */

export type EncodedSlashes = 'refuse' | 'keep'

/** The decided form of one request target. */
export interface RequestTarget {
  /** The path routes are matched against (and auth, limits and logs see). */
  readonly path: string
  /** The query, with its `?`, or ''. */
  readonly search: string
  /** The authority of an absolute-form target (it replaces Host), else null. */
  readonly authority: string | null
  /**
   * The path as it goes upstream after the first `segments` segments of `path` (a route
   * prefix's), with a leading `/` (or '' when nothing is left). Same as slicing `path` unless the
   * target carried path parameters or kept encoded slashes.
   */
  after (segments: number): string
}

/** Why a target is refused (400). */
export type TargetProblem =
  | 'unsupported request target' | 'malformed percent-encoding' | 'encoded slash in path'
  | 'encoded NUL in path' | 'backslash in path' | 'fragment in request target'
  | 'path climbs above the root' | 'path parameters on an empty or dot segment'

const UNRESERVED = (() => {
  const t = new Uint8Array(256)
  for (let c = 0; c < 256; c++) {
    const ch = String.fromCharCode(c)
    t[c] = /[A-Za-z0-9\-._~]/.test(ch) ? 1 : 0
  }
  return t
})()
const HEX = '0123456789ABCDEF'
/** Targets that need no work: origin-form, no escapes, dot segments, `//`, `;`, `\` or `#`. */
const NEEDS_WORK = /[%;\\#]|\/\/|\/\.(?:\.)?(?:\/|$|\?)/
/** RFC 3986 authority without userinfo: reg-name or IP literal, optional port. */
const AUTHORITY_RE = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,=%]+)(?::\d{1,5})?$/

class SimpleTarget implements RequestTarget {
  constructor (readonly path: string, readonly search: string, readonly authority: string | null) {}
  after (segments: number): string {
    if (segments === 0) return this.path
    let i = 0
    for (let n = 0; n < segments; n++) {
      i = this.path.indexOf('/', i + 1)
      if (i === -1) return ''
    }
    return this.path.slice(i)
  }
}

/** One segment as routed (`route`) and as sent upstream (`sep` + `raw`). */
interface Segment { sep: string, raw: string, route: string }

class SegmentedTarget implements RequestTarget {
  readonly path: string
  constructor (private readonly segs: Segment[], readonly search: string, readonly authority: string | null) {
    this.path = segs.length === 0 ? '/' : segs.map((s) => '/' + s.route).join('')
  }

  after (segments: number): string {
    if (segments >= this.segs.length) return segments === 0 ? '/' : ''
    let out = ''
    for (let i = segments; i < this.segs.length; i++) out += this.segs[i].sep + this.segs[i].raw
    return segments === 0 && out === '' ? '/' : out
  }
}

/**
 * Normalises a request target (`req.url` as Node's parser gave it).
 * @returns the decided target, or the reason it is refused
 */
export function normaliseTarget (url: string, encodedSlashes: EncodedSlashes = 'refuse'): RequestTarget | TargetProblem {
  let authority: string | null = null
  let target = url
  if (target.charCodeAt(0) !== 47 /* / */) {
    const m = /^(https?):\/\/([^/?#]*)/i.exec(target)
    if (m === null || !AUTHORITY_RE.test(m[2])) return 'unsupported request target'
    authority = m[2].toLowerCase()
    target = target.slice(m[0].length)
    if (target === '' || target[0] === '?') target = '/' + target
    if (target[0] !== '/') return 'unsupported request target'
  }
  const q = target.indexOf('?')
  const rawPath = q === -1 ? target : target.slice(0, q)
  const search = q === -1 ? '' : target.slice(q)
  if (!NEEDS_WORK.test(rawPath)) return new SimpleTarget(rawPath, search, authority)
  const segs = segments(rawPath, encodedSlashes)
  if (typeof segs === 'string') return segs
  const t = new SegmentedTarget(segs, search, authority)
  // Escapes that are not UTF-8 (%C0%AE, %FF): the router could not decode them either.
  if (rawPath.includes('%') && !decodable(t.path)) return 'malformed percent-encoding'
  return t
}

/** Splits, decodes and resolves a path that needs it (see the module comment). */
function segments (path: string, encodedSlashes: EncodedSlashes): Segment[] | TargetProblem {
  // Pass 1: decode escapes and split into [separator, text] pieces. A kept %2F/%5C separates
  // pieces for routing but stays the piece's separator upstream.
  const pieces: Array<{ sep: string, text: string }> = []
  let sep = '/'
  let text = ''
  for (let i = 1; i < path.length; i++) {
    const c = path.charCodeAt(i)
    if (c === 47 /* / */) { pieces.push({ sep, text }); sep = '/'; text = ''; continue }
    if (c === 92 /* \ */) return 'backslash in path'
    if (c === 35 /* # */) return 'fragment in request target'
    if (c !== 37 /* % */) { text += path[i]; continue }
    const h = hexByte(path, i + 1)
    if (h < 0) return 'malformed percent-encoding'
    i += 2
    if (h === 0) return 'encoded NUL in path'
    if (h === 0x2f || h === 0x5c) {
      if (encodedSlashes !== 'keep') return 'encoded slash in path'
      pieces.push({ sep, text }); sep = h === 0x2f ? '%2F' : '%5C'; text = ''
      continue
    }
    text += UNRESERVED[h] === 1 ? String.fromCharCode(h) : '%' + HEX[h >> 4] + HEX[h & 15]
  }
  pieces.push({ sep, text })

  // Pass 2: merge empty segments, resolve dot segments, set each segment's routing form.
  const out: Segment[] = []
  const last = pieces.length - 1
  for (let i = 0; i <= last; i++) {
    const { sep, text } = pieces[i]
    const semi = text.indexOf(';')
    const name = semi === -1 ? text : text.slice(0, semi)
    if (semi !== -1 && (name === '' || name === '.' || name === '..')) return 'path parameters on an empty or dot segment'
    if (name === '.' || (text === '' && i < last)) {
      // A trailing `.` or `/` leaves the path ending in `/`.
      if (i === last) out.push({ sep: '/', raw: '', route: '' })
      continue
    }
    if (name === '..') {
      if (out.length === 0) return 'path climbs above the root'
      out.pop()
      if (i === last) out.push({ sep: '/', raw: '', route: '' })
      continue
    }
    if (text === '' && out.length > 0 && out[out.length - 1].raw === '') continue
    out.push({ sep, raw: text, route: name })
  }
  return out
}

function decodable (path: string): boolean {
  try {
    decodeURIComponent(path)
    return true
  } catch {
    return false
  }
}

function hexByte (s: string, i: number): number {
  if (i + 1 >= s.length) return -1
  const a = hexDigit(s.charCodeAt(i))
  const b = hexDigit(s.charCodeAt(i + 1))
  return a < 0 || b < 0 ? -1 : a * 16 + b
}

function hexDigit (c: number): number {
  if (c >= 48 && c <= 57) return c - 48
  if (c >= 65 && c <= 70) return c - 55
  if (c >= 97 && c <= 102) return c - 87
  return -1
}

/** The number of segments in a route prefix (`/` has none, `/a/b` two). */
export function prefixSegments (prefix: string): number {
  if (prefix === '/') return 0
  let n = 0
  for (let i = 0; i < prefix.length; i++) if (prefix.charCodeAt(i) === 47) n++
  return n
}

/**
 * A path as a case-insensitive upstream reads it: lower case, and each segment without trailing
 * dots and spaces (Express matches case-insensitively by default; IIS and Windows also drop a
 * segment's trailing dots and spaces).
 */
export function foldPath (path: string): string {
  const lower = path.toLowerCase()
  // Most paths hold no dot or space at all: no pattern is run for them.
  if (lower.indexOf('.') === -1 && lower.indexOf(' ') === -1 && lower.indexOf('%20') === -1) return lower
  return FOLDABLE.test(lower) ? lower.replace(FOLD_TRAILING, '') : lower
}
const FOLDABLE = /(?:\.|%20| )(?:\/|$)/
const FOLD_TRAILING = /(?:\.|%20| )+(?=\/|$)/g

/**
 * Which of `prefixes` a path falls under once folded (foldPath), the longest one; null when none.
 * When that differs from the prefix the (case-sensitive) router chose, a case-insensitive
 * upstream would serve the request as another route's: the edge refuses it.
 */
export function prefixMatcher (prefixes: readonly string[]): (path: string) => string | null {
  const folded = [...prefixes].map((p) => ({ p, f: foldPath(p) })).sort((a, b) => b.f.length - a.f.length)
  return (path) => {
    const f = foldPath(path)
    for (const { p, f: pf } of folded) {
      if (pf === '/' || f === pf || (f.startsWith(pf) && f.charCodeAt(pf.length) === 47)) return p
    }
    return null
  }
}
