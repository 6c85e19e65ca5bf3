// Readings from /proc shared by the harness and the load generator: CPU time and RSS of
// processes, busy time of cores. Linux only (the bench needs /proc).
import { readdirSync, readFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'

/** Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`, 100 nearly everywhere). */
export const CLK_TCK = Number(process.env.BENCH_CLK_TCK) ||
  Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim()) || 100

/** User+sys CPU µs of processes (all their threads): /proc/<pid>/stat fields 14 and 15. */
export function cpuMicros (pids) {
  const t = cpuTimes(pids)
  return t.user + t.sys
}

/**
 * User and sys (kernel) CPU µs of processes, apart: /proc/<pid>/stat fields 14 and 15. The sys
 * part is the kernel's work for the process's system calls (sockets, epoll, memory), which a proxy
 * cannot make cheaper than the calls it needs.
 */
export function cpuTimes (pids) {
  let user = 0
  let sys = 0
  for (const pid of pids) {
    try {
      const s = readFileSync(`/proc/${pid}/stat`, 'latin1')
      // Fields after "(comm) ": index 0 is field 3 (state); utime is field 14, stime field 15.
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
      user += Number(f[11])
      sys += Number(f[12])
    } catch { /* process gone */ }
  }
  return { user: user * 1e6 / CLK_TCK, sys: sys * 1e6 / CLK_TCK }
}

/** Sum of VmRSS (KiB) of processes. */
export function rssKiB (pids) {
  let kib = 0
  for (const pid of pids) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'latin1'))
      if (m) kib += Number(m[1])
    } catch { /* process gone */ }
  }
  return kib
}

/**
 * RSS and PSS (KiB) of processes, summed. RSS counts a page shared by several processes (the node
 * binary's code, about 44 MiB) in each of them; PSS splits it between them, so the sum of PSS is
 * the memory they take together. PSS is null when a process has no /proc/<pid>/smaps_rollup
 * (kernels before 4.14); RSS then comes from VmRSS, as rssKiB reads it.
 */
export function memKiB (pids) {
  let rss = 0
  let pss = 0
  for (const pid of pids) {
    let t = null
    try { t = readFileSync(`/proc/${pid}/smaps_rollup`, 'latin1') } catch { /* older kernel, hidden, or gone */ }
    const r = t === null ? null : /^Rss:\s+(\d+)/m.exec(t)
    const p = t === null ? null : /^Pss:\s+(\d+)/m.exec(t)
    if (r !== null && p !== null) {
      rss += Number(r[1])
      if (pss !== null) pss += Number(p[1])
    } else {
      rss += rssKiB([pid])
      pss = null
    }
  }
  return { rss, pss }
}

/** Busy and steal time (µs) of the given CPUs (all when null), from /proc/stat. */
export function coreTimes (cores) {
  let busy = 0
  let steal = 0
  for (const line of readFileSync('/proc/stat', 'latin1').split('\n')) {
    const m = /^cpu(\d+) (.*)$/.exec(line)
    if (m === null || (cores !== null && !cores.includes(Number(m[1])))) continue
    const [user, nice, system, , , irq, softirq, st] = m[2].trim().split(/\s+/).map(Number)
    busy += user + nice + system + irq + softirq + st
    steal += st
  }
  return { busy: busy * 1e6 / CLK_TCK, steal: steal * 1e6 / CLK_TCK }
}

/** Children of a process (nginx workers), by scanning /proc. */
export function childPids (ppid) {
  const out = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const s = readFileSync(`/proc/${name}/stat`, 'latin1')
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
      if (Number(f[1]) === ppid) out.push(Number(name))
    } catch { /* gone */ }
  }
  return out
}
