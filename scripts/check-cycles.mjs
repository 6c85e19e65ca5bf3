#!/usr/bin/env node
// Fails (exit 1) on any circular import among the modules of src/, plugins/ and routes/, and
// prints each cycle it finds, one line a cycle: `a.ts -> b.ts (type) -> a.ts`.
// Usage: node scripts/check-cycles.mjs   (this repository, or the folder given as argument)
//
// Every edge counts: `import`, `import type`, `export ... from`, side-effect imports and
// `import('...')` with a literal specifier (values and types alike). A type-only cycle costs
// nothing at run time, but it still means neither module can be read, moved or tested without
// the other, which is what the layering is meant to prevent.
//
// Imports are read with the TypeScript parser the project already depends on (not a regex):
// comments, strings and template literals that happen to contain `import ... from` are not edges.
import { readFileSync, readdirSync, existsSync, statSync } from 'node:fs'
import { join, dirname, resolve, relative, sep } from 'node:path'
import ts from 'typescript'

const root = resolve(process.argv[2] ?? new URL('..', import.meta.url).pathname)
const dirs = ['src', 'plugins', 'routes']

function tsFiles (dir) {
  if (!existsSync(dir)) return []
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) return tsFiles(path)
    return name.endsWith('.ts') && !name.endsWith('.d.ts') ? [path] : []
  })
}

/** The relative specifiers a file imports, each with whether only types are imported. */
function imports (file) {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true)
  const out = []
  const add = (spec, typeOnly) => { if (spec.startsWith('.')) out.push({ spec, typeOnly }) }
  const visit = (node) => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.importClause
      const named = clause?.namedBindings !== undefined && ts.isNamedImports(clause.namedBindings) ? clause.namedBindings.elements : null
      // `import { type A, type B } from` is as type-only as `import type { A, B } from`.
      const allTypes = clause !== undefined && (clause.isTypeOnly || (clause.name === undefined && named !== null && named.length > 0 && named.every((e) => e.isTypeOnly)))
      add(node.moduleSpecifier.text, allTypes)
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier !== undefined && ts.isStringLiteral(node.moduleSpecifier)) {
      const named = node.exportClause !== undefined && ts.isNamedExports(node.exportClause) ? node.exportClause.elements : null
      add(node.moduleSpecifier.text, node.isTypeOnly || (named !== null && named.length > 0 && named.every((e) => e.isTypeOnly)))
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference) && ts.isStringLiteral(node.moduleReference.expression)) {
      add(node.moduleReference.expression.text, node.isTypeOnly)
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments.length > 0 && ts.isStringLiteralLike(node.arguments[0])) {
      add(node.arguments[0].text, false)
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      add(node.argument.literal.text, true)
    }
    ts.forEachChild(node, visit)
  }
  visit(source)
  return out
}

/** `./x.js` from `dir` -> the `.ts` file it is compiled from, when it is one of ours. */
function resolveSpec (dir, spec, known) {
  const path = resolve(dir, spec)
  for (const candidate of [path.replace(/\.(m|c)?js$/, '.$1ts'), path, `${path}.ts`, join(path, 'index.ts')]) {
    if (known.has(candidate)) return candidate
  }
  return null
}

const files = dirs.flatMap((d) => tsFiles(join(root, d)))
const known = new Set(files)
/** file -> [{ to, typeOnly }] */
const graph = new Map(files.map((f) => [f, []]))
for (const file of files) {
  for (const { spec, typeOnly } of imports(file)) {
    const to = resolveSpec(dirname(file), spec, known)
    if (to === null) continue
    const edges = graph.get(file)
    const same = edges.find((e) => e.to === to)
    // Two imports of one module: the edge is a value edge if either one is.
    if (same !== undefined) same.typeOnly &&= typeOnly
    else edges.push({ to, typeOnly })
  }
}

const name = (f) => relative(root, f).split(sep).join('/')
const order = [...files].sort()
const rank = new Map(order.map((f, i) => [f, i]))

// Strongly connected components (Tarjan): a cycle never leaves one.
function components () {
  let next = 0
  const index = new Map()
  const low = new Map()
  const stack = []
  const onStack = new Set()
  const out = []
  const visit = (v) => {
    index.set(v, next); low.set(v, next); next++
    stack.push(v); onStack.add(v)
    for (const { to } of graph.get(v)) {
      if (!index.has(to)) { visit(to); low.set(v, Math.min(low.get(v), low.get(to))) } else if (onStack.has(to)) low.set(v, Math.min(low.get(v), index.get(to)))
    }
    if (low.get(v) !== index.get(v)) return
    const scc = []
    let w
    do { w = stack.pop(); onStack.delete(w); scc.push(w) } while (w !== v)
    out.push(scc)
  }
  for (const f of order) if (!index.has(f)) visit(f)
  return out
}

// Every elementary cycle, each once: from its first module (in file-name order), through later ones only.
const MAX_CYCLES = 100
const cycles = []
for (const scc of components()) {
  const members = new Set(scc)
  if (scc.length === 1 && !graph.get(scc[0]).some((e) => e.to === scc[0])) continue
  for (const first of [...scc].sort((a, b) => rank.get(a) - rank.get(b))) {
    const path = [first]
    const seen = new Set(path)
    const walk = (v) => {
      for (const { to } of graph.get(v)) {
        if (cycles.length >= MAX_CYCLES) return
        if (!members.has(to) || rank.get(to) < rank.get(first)) continue
        if (to === first) {
          cycles.push(path.map((m, i) => {
            const hop = i + 1 < path.length ? path[i + 1] : first
            return `${name(m)} -> ${graph.get(m).find((e) => e.to === hop).typeOnly ? '(type) ' : ''}`
          }).join('') + name(first))
        } else if (!seen.has(to)) {
          path.push(to); seen.add(to)
          walk(to)
          path.pop(); seen.delete(to)
        }
      }
    }
    walk(first)
  }
}

if (cycles.length > 0) {
  console.error(`check-cycles: ${cycles.length}${cycles.length >= MAX_CYCLES ? '+' : ''} circular import${cycles.length === 1 ? '' : 's'} among ${dirs.join('/, ')}/ ("(type)": the import names types only):`)
  for (const c of cycles) console.error(`  ${c}`)
  process.exit(1)
}
console.log(`check-cycles: no circular imports among ${files.length} modules of ${dirs.join('/, ')}/`)
