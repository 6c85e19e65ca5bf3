// Child processes of the benchmark scripts: each in its own process group (so its own children,
// e.g. nginx workers, stop with it), with RLIMIT_NOFILE raised and optionally pinned to a core.
// `sh -c ... exec` keeps the PID. Shared by run.mjs and features.mjs.
import { spawn } from 'node:child_process'
import { closeSync, openSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'

/**
 * @param {{ cwd: string, nofile?: number, wrap?: (argv: string[]) => string[], onProblem: (msg: string) => void }} o
 *   wrap: a prefix for the command line (e.g. `nice -n`); onProblem: told when a child dies unexpectedly.
 */
export function createChildren ({ cwd, nofile = 65536, wrap = (argv) => argv, onProblem }) {
  const procs = new Set()
  let shuttingDown = false

  /** Starts `argv` as child `name` (in `dir`, default `cwd`); output goes to `logFile` (appended) when given. */
  function launch (name, argv, { core = null, env = process.env, logFile, ipc = false, cwd: dir = cwd } = {}) {
    const pinned = wrap(core !== null ? ['taskset', '-c', String(core), ...argv] : argv)
    const script = `ulimit -n ${nofile} 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"`
    const out = logFile !== undefined ? openSync(logFile, 'a') : 'ignore'
    const stdio = ['ignore', out, out]
    if (ipc) stdio.push('ipc')
    const child = spawn('/bin/sh', ['-c', script, 'sh', ...pinned], { cwd: dir, env, stdio, detached: true })
    if (typeof out === 'number') closeSync(out)
    const p = { name, child, pid: child.pid, exited: false, expected: false, exit: null }
    procs.add(p)
    child.on('exit', (code, signal) => {
      p.exited = true
      p.exit = signal ?? code
      if (!p.expected && !shuttingDown) onProblem(`${name} (pid ${p.pid}) exited unexpectedly (${signal ?? `code ${code}`})${logFile !== undefined ? `; log: ${logFile}` : ''}`)
    })
    child.on('error', (err) => { p.exited = true; if (!shuttingDown) onProblem(`${name}: ${err.message}`) })
    return p
  }

  /** Stops one child: SIGTERM to its group, SIGKILL after `graceMs`. */
  async function stop (p, graceMs = 5000) {
    p.expected = true
    if (!p.exited) {
      try { process.kill(-p.pid, 'SIGTERM') } catch { /* gone */ }
      const end = Date.now() + graceMs
      while (!p.exited && Date.now() < end) await sleep(50)
      if (!p.exited) {
        try { process.kill(-p.pid, 'SIGKILL') } catch { /* gone */ }
        const end2 = Date.now() + 2000
        while (!p.exited && Date.now() < end2) await sleep(50)
      }
    }
    procs.delete(p)
  }

  async function stopAll () {
    shuttingDown = true
    await Promise.all([...procs].map((p) => stop(p)))
  }

  /** Last resort (process exit): SIGKILL whatever is left. */
  function killAll () {
    for (const p of procs) if (!p.exited) { try { process.kill(-p.pid, 'SIGKILL') } catch { /* gone */ } }
  }

  return { procs, launch, stop, stopAll, killAll }
}
