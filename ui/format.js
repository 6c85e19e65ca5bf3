// Formatting for the dashboard: counts, byte sizes, rates, durations, times of day, short ids.
// Pure: each function takes a value and returns a string (in the browser's locale, through Intl);
// nothing here touches the DOM, so Node can import this module too.

export const nf = new Intl.NumberFormat()
export const nf1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 })
export const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' })

/** @param {number} ms @returns {string} "42 s", "3 min 07 s", "5 h 02 min", "3 d 4 h"; "—" when not finite */
export function duration (ms) {
  if (!Number.isFinite(ms)) return '—'
  const s = Math.max(0, Math.floor(ms / 1000))
  if (s < 60) return s + ' s'
  const m = Math.floor(s / 60)
  if (m < 60) return m + ' min ' + String(s % 60).padStart(2, '0') + ' s'
  const h = Math.floor(m / 60)
  if (h < 48) return h + ' h ' + String(m % 60).padStart(2, '0') + ' min'
  return Math.floor(h / 24) + ' d ' + (h % 24) + ' h'
}

/** @param {number} n a byte count @returns {string} "512 B", "1.5 kB", "3 MB"... */
export function bytes (n) {
  if (n < 1024) return nf.format(n) + ' B'
  const units = ['kB', 'MB', 'GB', 'TB']
  let v = n / 1024
  let i = 0
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++ }
  return nf1.format(v) + ' ' + units[i]
}

/** @param {number | null} n a rate @returns {string} one decimal below 100, none above; "–" for null */
export function rate (n) {
  if (n === null || !Number.isFinite(n)) return '–'
  return n >= 100 ? nf.format(Math.round(n)) : nf1.format(n)
}

/** @param {string} id @returns {string} its first 8 characters */
export const shortId = (id) => id.length > 8 ? id.slice(0, 8) : id
