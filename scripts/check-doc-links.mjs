#!/usr/bin/env node
// Checks that every relative link and #anchor in README.md and docs/*.md resolves.
// Usage: node scripts/check-doc-links.mjs   (exit 1 when a link is broken; README.md and docs/ of
// this repository, or of the folder given as argument)
import { readFileSync, readdirSync, existsSync, statSync } from 'node:fs'
import { join, dirname, resolve, relative } from 'node:path'

const root = resolve(process.argv[2] ?? new URL('..', import.meta.url).pathname)
const files = ['README.md', ...readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)]

// GitHub's heading ids: lower-case, punctuation dropped (but - and _), spaces to -, -1/-2 for repeats.
function slugs (text) {
  const seen = new Map()
  const out = new Set()
  let fence = false
  for (const line of text.split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) { fence = !fence; continue }
    if (fence) continue
    const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)
    if (!m) continue
    const plain = m[1].replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1').replace(/<[^>]+>/g, '')
    const base = plain.toLowerCase().replace(/[^\p{L}\p{N}\p{M} _-]/gu, '').replace(/ /g, '-')
    const n = seen.get(base) ?? 0
    seen.set(base, n + 1)
    out.add(n === 0 ? base : `${base}-${n}`)
  }
  for (const m of text.matchAll(/<a\s+(?:name|id)="([^"]+)"/g)) out.add(m[1])
  return out
}

function links (text) {
  const found = []
  let fence = false
  text.split('\n').forEach((line, i) => {
    if (/^\s*(```|~~~)/.test(line)) { fence = !fence; return }
    if (fence) return
    const noCode = line.replace(/`[^`]*`/g, (c) => ' '.repeat(c.length))
    for (const m of noCode.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) found.push({ target: m[1], line: i + 1 })
  })
  return found
}

const cache = new Map()
const slugsOf = (abs) => { if (!cache.has(abs)) cache.set(abs, slugs(readFileSync(abs, 'utf8'))); return cache.get(abs) }

let broken = 0
let checked = 0
for (const file of files) {
  const abs = join(root, file)
  for (const { target, line } of links(readFileSync(abs, 'utf8'))) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue // http:, https:, mailto:
    checked++
    const [pathPart, anchor] = target.split('#', 2)
    const dest = pathPart === '' ? abs : resolve(dirname(abs), decodeURI(pathPart))
    let problem
    if (!existsSync(dest)) problem = `no such file ${relative(root, dest)}`
    else if (anchor !== undefined) {
      if (statSync(dest).isDirectory() || !dest.endsWith('.md')) problem = 'anchor on a file that is not Markdown'
      else if (!slugsOf(dest).has(anchor)) problem = `no heading #${anchor} in ${relative(root, dest)}`
    }
    if (problem) { broken++; console.log(`${file}:${line}: ${target}: ${problem}`) }
  }
}
console.log(`${checked} relative links checked in ${files.length} files, ${broken} broken`)
process.exit(broken === 0 ? 0 : 1)
