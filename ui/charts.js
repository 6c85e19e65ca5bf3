// The charts: the SVG line charts of the summary cards (active connections, messages per second)
// drawn from the poll history, and the bars of "Connections by route". Each draws only into the
// element it is given, with text nodes and attributes (no HTML); the data come from app.js.
import { setAttr } from './dom.js'
import { nf } from './format.js'

/** How far back the history (and so the charts) go. */
export const HISTORY_MS = 10 * 60 * 1000
// The chart shows at least a minute, at most ten, so a fresh page is not one pixel wide.
const MIN_WINDOW_MS = 60 * 1000

const SVG = 'http://www.w3.org/2000/svg'
function svgEl (name, attrs) {
  const n = document.createElementNS(SVG, name)
  for (const k in attrs) n.setAttribute(k, attrs[k])
  return n
}

/** The axis maximum: the smallest 1, 2, 2.5 or 5 times a power of ten that is at least `v`. */
export function niceMax (v) {
  if (v <= 0) return 1
  const p = 10 ** Math.floor(Math.log10(v))
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p
  return 10 * p
}

/**
 * Draws `p[key]` of every history point `p` ({ at: performance.now() time, [key]: number or null })
 * into `svg`, and says the same in its aria-label.
 * @param {SVGSVGElement} svg
 * @param {Array<{ at: number }>} history oldest first
 * @param {string} key @param {string} title @param {(v: number) => string} fmt
 * @param {number} maxGapMs a line breaks where two points are further apart than this
 */
export function drawChart (svg, history, key, title, fmt, maxGapMs) {
  const width = Math.max(200, Math.round(svg.clientWidth || 320))
  const height = Math.max(80, Math.round(svg.clientHeight || 120))
  const pad = { left: 38, right: 8, top: 8, bottom: 18 }
  const h = history
  const now = performance.now()
  const span = Math.min(HISTORY_MS, Math.max(MIN_WINDOW_MS, h.length > 0 ? now - h[0].at : 0))
  const x0 = now - span
  const values = h.map((p) => p[key]).filter((v) => v !== null)
  const max = niceMax(Math.max(0, ...values))
  const x = (t) => pad.left + (width - pad.left - pad.right) * (t - x0) / span
  const y = (v) => pad.top + (height - pad.top - pad.bottom) * (1 - v / max)

  svg.setAttribute('viewBox', '0 0 ' + width + ' ' + height)
  svg.replaceChildren()
  for (const f of [0, 0.5, 1]) {
    const gy = y(max * f)
    svg.append(svgEl('line', { class: 'grid-line', x1: pad.left, x2: width - pad.right, y1: gy, y2: gy }))
    const label = svgEl('text', { class: 'axis', x: pad.left - 6, y: gy + 4, 'text-anchor': 'end' })
    label.textContent = fmt(max * f)
    svg.append(label)
  }
  const from = svgEl('text', { class: 'axis', x: pad.left, y: height - 4, 'text-anchor': 'start' })
  from.textContent = '−' + Math.round(span / 60000) + ' min'
  const to = svgEl('text', { class: 'axis', x: width - pad.right, y: height - 4, 'text-anchor': 'end' })
  to.textContent = 'now'
  svg.append(from, to)

  // Segments break where a poll failed or polls were far apart (a sleeping laptop).
  let line = ''
  let area = ''
  let segment = []
  const flush = () => {
    if (segment.length === 0) return
    line += 'M' + segment.map(([px, py]) => px.toFixed(1) + ',' + py.toFixed(1)).join('L')
    if (segment.length > 1) {
      area += 'M' + segment[0][0].toFixed(1) + ',' + y(0).toFixed(1) + 'L' +
        segment.map(([px, py]) => px.toFixed(1) + ',' + py.toFixed(1)).join('L') +
        'L' + segment[segment.length - 1][0].toFixed(1) + ',' + y(0).toFixed(1) + 'Z'
    }
    segment = []
  }
  let prevAt = null
  for (const p of h) {
    if (p[key] === null || (prevAt !== null && p.at - prevAt > maxGapMs)) flush()
    if (p[key] !== null) segment.push([x(p.at), y(p[key])])
    prevAt = p.at
  }
  flush()
  if (area !== '') svg.append(svgEl('path', { class: 'area', d: area }))
  if (line !== '') svg.append(svgEl('path', { class: 'line', d: line }))
  const last = [...h].reverse().find((p) => p[key] !== null)
  if (last !== undefined) svg.append(svgEl('circle', { class: 'dot', cx: x(last.at), cy: y(last[key]), r: 3 }))

  const peak = values.length > 0 ? Math.max(...values) : null
  setAttr(svg, 'aria-label', last === undefined
    ? title + ': no data yet'
    : title + ' over the last ' + Math.round(span / 60000) + ' min: now ' + fmt(last[key]) + ', peak ' + fmt(peak))
}

/**
 * The bars of "Connections by route" into `list` (a <ul>): one item per [route, count], the
 * longest bar for the first; a click on a route's name calls `onPick(route)`.
 * @param {HTMLElement} list @param {Array<[string, number]>} entries largest first
 * @param {(route: string) => void} onPick
 */
export function drawRouteBars (list, entries, onPick) {
  const max = entries.length > 0 ? entries[0][1] : 1
  list.replaceChildren(...entries.map(([route, n]) => {
    const li = document.createElement('li')
    const name = document.createElement('button')
    name.type = 'button'
    name.className = 'linkish route-name'
    name.textContent = route
    name.title = 'Show only ' + route
    name.addEventListener('click', () => onPick(route))
    const count = document.createElement('span')
    count.className = 'count'
    count.textContent = nf.format(n)
    const track = document.createElement('span')
    track.className = 'bar'
    track.setAttribute('aria-hidden', 'true')
    const fill = document.createElement('span')
    // CSSOM, not a style attribute: the CSP allows no inline styles.
    fill.style.width = Math.max(2, Math.round(100 * n / max)) + '%'
    track.append(fill)
    li.append(name, track, count)
    return li
  }))
}
