/**
 * Runs the independent WebSocket peers of peers/ (Python scripts on Debian's python3 and its
 * python3-websockets, python3-aiohttp and python3-tornado packages): each takes its instructions
 * as JSON in argv[1] and prints JSON lines. Outside CI a missing interpreter or module skips the
 * test with the apt-get line that installs it; under CI it fails the test.
 */
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

/** Debian's interpreter, which sees the apt-installed modules (not a pyenv `python3` on PATH). */
export const PYTHON = '/usr/bin/python3'
const PEERS = fileURLToPath(new URL('../peers/', import.meta.url))
const PACKAGES: Record<string, string> = { websockets: 'python3-websockets', aiohttp: 'python3-aiohttp', tornado: 'python3-tornado' }
const found = new Map<string, boolean>()

interface Skippable { skip: (message?: string) => void }

/** True when /usr/bin/python3 can import `module`; otherwise skips the test (fails it under CI). */
export function havePython (t: Skippable, module: 'websockets' | 'aiohttp' | 'tornado'): boolean {
  let ok = found.get(module)
  if (ok === undefined) {
    ok = existsSync(PYTHON) && spawnSync(PYTHON, ['-c', `import ${module}`], { stdio: 'ignore', timeout: 10_000 }).status === 0
    found.set(module, ok)
  }
  if (ok) return true
  const pkg = PACKAGES[module]
  const message = existsSync(PYTHON) ? `${pkg} not installed: apt-get install ${pkg}` : `${PYTHON} not installed: apt-get install python3 ${pkg}`
  if (process.env.CI !== undefined && process.env.CI !== '') assert.fail(`${message} (required under CI: .ci/run installs it)`)
  t.skip(message)
  return false
}

export type Json = Record<string, unknown>

export interface Peer {
  /** JSON lines printed so far. */
  lines: Json[]
  /** Resolves with the first line (already printed or to come) that `pred` accepts. */
  line (pred: (l: Json) => boolean, ms?: number, what?: string): Promise<Json>
  /** Resolves when the process has exited. */
  exited: Promise<{ code: number | null, stderr: string }>
}

/** Starts peers/<script> with `instructions`; killed after the test. */
export function startPeer (t: { after: (fn: () => void) => void }, script: string, instructions: Json): Peer {
  // -B: no __pycache__ left in the work tree.
  const child = spawn(PYTHON, ['-B', PEERS + script, JSON.stringify(instructions)], { cwd: PEERS, stdio: ['pipe', 'pipe', 'pipe'] })
  t.after(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  const lines: Json[] = []
  let waiters: Array<() => void> = []
  let out = ''
  let stderr = ''
  let done = false
  child.stdout.setEncoding('utf8')
  child.stderr.setEncoding('utf8')
  child.stdout.on('data', (s: string) => {
    out += s
    let i: number
    while ((i = out.indexOf('\n')) !== -1) {
      const l = out.slice(0, i).trim()
      out = out.slice(i + 1)
      if (l !== '') lines.push(JSON.parse(l) as Json)
    }
    const w = waiters
    waiters = []
    for (const f of w) f()
  })
  child.stderr.on('data', (s: string) => { stderr += s })
  const exited = new Promise<{ code: number | null, stderr: string }>((resolve) => child.once('close', (code) => {
    done = true
    const w = waiters
    waiters = []
    for (const f of w) f()
    resolve({ code, stderr })
  }))
  return {
    lines,
    exited,
    async line (pred, ms = 10_000, what = 'a line') {
      const deadline = performance.now() + ms
      for (;;) {
        const l = lines.find(pred)
        if (l !== undefined) return l
        if (done) throw new Error(`${script} exited without printing ${what}; stderr: ${stderr.slice(-2000)}`)
        const left = deadline - performance.now()
        if (left <= 0) throw new Error(`${script} printed no ${what} within ${ms} ms; stderr: ${stderr.slice(-2000)}`)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left)
          waiters.push(() => { clearTimeout(timer); resolve() })
        })
      }
    }
  }
}

/** Runs a client script to its end: its one JSON result (an `error` key is a failure). */
export async function runClient (t: { after: (fn: () => void) => void }, script: string, instructions: Json, ms = 15_000): Promise<Json> {
  const p = startPeer(t, script, { timeout: Math.floor(ms / 1000) - 1, ...instructions })
  const result = await p.line(() => true, ms, 'its result')
  assert.equal(result.error, undefined, `${script} failed: ${String(result.error)}`)
  return result
}

/** The same bytes as peers/common.py patterned(): printable ASCII for text. */
export function patterned (size: number, text: boolean): Buffer {
  const b = Buffer.allocUnsafe(size)
  for (let i = 0; i < size; i++) b[i] = text ? 0x20 + (i % 95) : (i * 131 + 17) & 0xff
  return b
}
