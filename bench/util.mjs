// Helpers shared by the benchmark scripts (run.mjs, features.mjs, idle-scale.mjs): free ports,
// HTTP probes, deadlines, CPU pinning, and request/response over a child's IPC channel.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { delimiter, join } from 'node:path'

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** The path of `cmd` on PATH, or null. */
export function which (cmd) {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' })
  return r.status === 0 ? r.stdout.trim() : null
}

/**
 * A peer's binary (nginx, haproxy, caddy) on PATH or in /usr/sbin, /usr/local/sbin (where
 * Debian puts daemons, often missing from a user's PATH), or null.
 */
export function findBinary (name) {
  const dirs = (process.env.PATH ?? '').split(delimiter).concat(['/usr/sbin', '/usr/local/sbin'])
  for (const d of dirs) {
    const p = join(d, name)
    if (d !== '' && existsSync(p)) return p
  }
  return null
}

/** A TCP port free on 127.0.0.1 right now. */
export function freePort () {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

/** One HTTP GET; resolves { status, headers, body } or rejects (timeout included). */
export function httpGet (url, headers = {}, timeoutMs = 3000) {
  return httpRequest(url, { headers, timeoutMs })
}

/** One HTTP request (a GET unless `method`; `body` a Buffer or string); resolves { status, headers, body } or rejects. */
export function httpRequest (url, { method = 'GET', headers = {}, body, timeoutMs = 3000 } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false, timeout: timeoutMs }, (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', reject)
    req.end(body)
  })
}

/** Polls `url` until it answers below 500; `alive()` false (the process died) ends the wait early. */
export async function waitHttp (url, timeoutMs, alive) {
  const end = Date.now() + timeoutMs
  let last = ''
  while (Date.now() < end) {
    if (alive !== undefined && !alive()) throw new Error(`process exited while waiting for ${url}`)
    try {
      const r = await httpGet(url, {}, 1000)
      if (r.status < 500) return r
      last = `status ${r.status}`
    } catch (err) { last = err.message }
    await sleep(100)
  }
  throw new Error(`${url} not answering after ${timeoutMs} ms (${last})`)
}

/** `promise`, or a rejection (with `timeout: true`) after `ms`. */
export function withTimeout (promise, ms, what) {
  let timer
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_resolve, reject) => { timer = setTimeout(() => reject(Object.assign(new Error(`${what}: no result within ${ms} ms`), { timeout: true })), ms) })
  ])
}

/** The CPUs this process may run on (taskset's list), or [] when unknown. */
export function allowedCpus () {
  const r = spawnSync('taskset', ['-pc', String(process.pid)], { encoding: 'utf8' })
  const m = /list:\s*(.*)$/m.exec(r.stdout ?? '')
  if (m === null) return []
  const list = []
  for (const part of m[1].trim().split(',')) {
    const [a, b] = part.split('-').map(Number)
    for (let c = a; c <= (b ?? a); c++) list.push(c)
  }
  return list
}

/** The environment for a child: the bench's own settings win over a developer's shell. */
export function cleanEnv (add) {
  const env = { ...process.env }
  for (const k of ['UPSTREAM_URL', 'PORT', 'HOST', 'JWT_SECRET', 'JWT_PUBLIC_KEY', 'ADMIN_TOKEN', 'REDIS_URL', 'LOG_LEVEL', 'GATEWAY_CONFIG', 'WORKERS', 'NODE_OPTIONS']) delete env[k]
  return { ...env, NODE_ENV: 'production', ...add }
}

let ipcSeq = 0
/** Request/response over a child's IPC channel ({ ...msg, id } -> { id, ok, result | error }), with a deadline. */
export function ipc (p, msg, timeoutMs) {
  const id = ++ipcSeq
  return withTimeout(new Promise((resolve, reject) => {
    const onMessage = (m) => {
      if (m?.id !== id) return
      cleanup()
      if (m.ok === false) reject(new Error(m.error))
      else resolve(m.ok === true ? m.result : m)
    }
    const onExit = () => { cleanup(); reject(new Error(`${p.name} exited`)) }
    const cleanup = () => { p.child.removeListener('message', onMessage); p.child.removeListener('exit', onExit) }
    p.child.on('message', onMessage)
    p.child.once('exit', onExit)
    p.child.send({ ...msg, id })
  }), timeoutMs, `${p.name} ${msg.cmd}`)
}

/** Resolves with a child's first `{ ready }` message (rejects if it exits first). */
export function waitReady (p, timeoutMs) {
  return withTimeout(new Promise((resolve, reject) => {
    p.child.on('message', function onMsg (m) { if (m?.ready) { p.child.removeListener('message', onMsg); resolve(m) } })
    p.child.once('exit', () => reject(new Error(`${p.name} exited before it was ready`)))
  }), timeoutMs, `${p.name} start`)
}
