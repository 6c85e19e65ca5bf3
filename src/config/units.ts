/**
 * Human units in configuration: durations ("500ms", "30s", "5m", "1h") and sizes ("64kb", "1mb").
 * A plain number is taken as milliseconds or bytes.
 */

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }
const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 }

/**
 * The grammar, written once: the config schema validates strings with these patterns (JSON
 * Schema patterns take no flags, hence the letter classes) and the parsers below read them.
 */
export const DURATION_PATTERN = '^\\s*(\\d+(?:\\.\\d+)?)\\s*([mM][sS]|[sSmMhH])\\s*$'
export const SIZE_PATTERN = '^\\s*(\\d+(?:\\.\\d+)?)\\s*([bB]|[kKmMgG][bB])\\s*$'
const DURATION_RE = new RegExp(DURATION_PATTERN)
const SIZE_RE = new RegExp(SIZE_PATTERN)

/** Parses a duration; returns milliseconds, or undefined when the value is not a duration. */
export function parseDuration (value: number | string): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : undefined
  const m = DURATION_RE.exec(value)
  if (m === null) return undefined
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2].toLowerCase()])
}

/** Parses a size; returns bytes, or undefined when the value is not a size. */
export function parseSize (value: number | string): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 ? value : undefined
  const m = SIZE_RE.exec(value)
  if (m === null) return undefined
  return Math.round(Number(m[1]) * SIZE_UNITS[m[2].toLowerCase()])
}
