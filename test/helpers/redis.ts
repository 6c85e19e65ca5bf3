/**
 * Redis for tests: REDIS_URL (default redis://127.0.0.1:6379). When it is unreachable, tests that
 * need it are skipped with a visible message, except under CI, where they fail. And redis-server
 * processes of a test's own (a Sentinel set, a Redis Cluster of three masters), started on free
 * ports in temp dirs and killed after the test.
 */
import { Redis } from 'ioredis'
import { randomBytes } from 'node:crypto'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'

let available: Promise<boolean> | undefined
export function redisAvailable (): Promise<boolean> {
  available ??= (async () => {
    const r = new Redis(REDIS_URL, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000 })
    r.on('error', () => {})
    try {
      await r.connect()
      return (await r.ping()) === 'PONG'
    } catch {
      return false
    } finally {
      r.disconnect()
    }
  })()
  return available
}

/** Skips the test (or fails it under CI) when Redis is unreachable; returns false when skipped. */
export async function needRedis (t: TestContext): Promise<boolean> {
  if (await redisAvailable()) return true
  if (process.env.CI !== undefined && process.env.CI !== '') throw new Error(`Redis is unreachable at ${REDIS_URL} (required under CI)`)
  t.skip(`Redis unreachable at ${REDIS_URL}: skipped (start redis-server or set REDIS_URL)`)
  return false
}

/** A key prefix of its own for one test, and a cleanup that deletes its keys. */
export function testPrefix (t: TestContext): string {
  const prefix = `gwtest:${randomBytes(4).toString('hex')}:`
  t.after(async () => {
    const r = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
    r.on('error', () => {})
    try {
      await r.connect()
      const keys = await r.keys(`${prefix}*`)
      if (keys.length > 0) await r.del(...keys)
    } catch { /* Redis gone: nothing to clean */ } finally { r.disconnect() }
  })
  return prefix
}

// ------------------------------------------------------------------ redis-server processes

/** Debian's redis-server (Sentinel runs as `redis-server <conf> --sentinel`), or null. */
export const REDIS_SERVER = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find((p) => existsSync(p)) ?? null
const REDIS_CLI = ['/usr/bin/redis-cli', '/usr/local/bin/redis-cli'].find((p) => existsSync(p)) ?? null

/** Skips the test (or fails it under CI) without redis-server and redis-cli; returns false when skipped. */
export function needRedisServer (t: TestContext): boolean {
  if (REDIS_SERVER !== null && REDIS_CLI !== null) return true
  if (process.env.CI !== undefined && process.env.CI !== '') throw new Error('redis-server and redis-cli are required under CI (apt-get install redis-server)')
  t.skip('redis-server or redis-cli not installed: skipped (apt-get install redis-server)')
  return false
}

export interface RedisProcess {
  port: number
  url: string
  /** Kills the process (SIGKILL) and waits for it to exit. */
  kill (): Promise<void>
}

/** A TCP port free on 127.0.0.1 right now, below 55536 (a Cluster node also takes port + 10000 unless told otherwise). */
async function freeLowPort (): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = createServer()
      s.once('error', reject)
      s.listen(0, '127.0.0.1', () => { const a = s.address() as AddressInfo; s.close(() => resolve(a.port)) })
    })
    if (port < 55536) return port
  }
}

/** Polls `check` every 50 ms until it is true, at most `ms`. */
async function until (check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms
  for (;;) {
    if (await check().catch(() => false)) return
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** One PING on a fresh connection. */
async function pings (port: number): Promise<boolean> {
  const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 500 })
  r.on('error', () => {})
  try { await r.connect(); return (await r.ping()) === 'PONG' } finally { r.disconnect() }
}

/**
 * Starts `redis-server` in a temp dir of its own, on a free port, with `config` lines added
 * (`--sentinel` when `sentinel`); it is killed, and its dir removed, after the test.
 */
export async function startRedisServer (t: TestContext, config: string[] = [], sentinel = false): Promise<RedisProcess> {
  if (REDIS_SERVER === null) throw new Error('redis-server not installed')
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-redis-'))
  const port = await freeLowPort()
  const conf = join(dir, 'redis.conf')
  writeFileSync(conf, [`port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, 'save ""', 'appendonly no', ...config].join('\n') + '\n')
  const proc: ChildProcess = spawn(REDIS_SERVER, sentinel ? [conf, '--sentinel'] : [conf], { stdio: 'ignore' })
  const exited = new Promise<void>((resolve) => { proc.once('exit', () => resolve()) })
  const kill = async (): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
    await exited
  }
  t.after(async () => { await kill(); rmSync(dir, { recursive: true, force: true }) })
  await until(() => pings(port), 10_000, `redis-server on port ${port}`)
  return { port, url: `redis://127.0.0.1:${port}`, kill }
}

export interface SentinelSet {
  name: string
  sentinels: Array<{ host: string, port: number }>
  primary: RedisProcess
  replica: RedisProcess
  /** The port of the primary the Sentinel names now. */
  primaryPort (): Promise<number>
  /** Asks the Sentinel for a failover and waits until the replica is the primary. */
  failover (): Promise<void>
}

/** A primary, a replica of it, and one Sentinel watching them (quorum 1, 1 s to notice a failure). */
export async function startSentinelSet (t: TestContext, name = 'tollgate'): Promise<SentinelSet> {
  const primary = await startRedisServer(t)
  const replica = await startRedisServer(t, [`replicaof 127.0.0.1 ${primary.port}`])
  const p = new Redis(primary.port, '127.0.0.1')
  t.after(() => { p.disconnect() })
  await until(async () => /connected_slaves:1/.test(await p.info('replication')), 10_000, 'the replica to sync')
  const sentinel = await startRedisServer(t, [
    `sentinel monitor ${name} 127.0.0.1 ${primary.port} 1`,
    `sentinel down-after-milliseconds ${name} 1000`,
    `sentinel failover-timeout ${name} 5000`
  ], true)
  const s = new Redis(sentinel.port, '127.0.0.1')
  t.after(() => { s.disconnect() })
  const primaryPort = async (): Promise<number> => Number(((await s.call('SENTINEL', 'get-master-addr-by-name', name)) as string[])[1])
  // Ready once the Sentinel has found the replica (a failover needs one).
  await until(async () => ((await s.call('SENTINEL', 'replicas', name)) as unknown[]).length === 1, 10_000, 'the Sentinel to see the replica')
  return {
    name,
    sentinels: [{ host: '127.0.0.1', port: sentinel.port }],
    primary,
    replica,
    primaryPort,
    failover: async () => {
      await s.call('SENTINEL', 'FAILOVER', name)
      const r = new Redis(replica.port, '127.0.0.1')
      try {
        await until(async () => await primaryPort() === replica.port && /role:master/.test(await r.info('replication')), 15_000, 'the failover')
      } finally { r.disconnect() }
    }
  }
}

/** A Redis Cluster of three masters (no replicas), every slot covered; its nodes' URLs. */
export async function startRedisCluster (t: TestContext): Promise<string[]> {
  if (REDIS_CLI === null) throw new Error('redis-cli not installed')
  const nodes: RedisProcess[] = []
  for (let i = 0; i < 3; i++) {
    const bus = await freeLowPort()
    nodes.push(await startRedisServer(t, ['cluster-enabled yes', `cluster-port ${bus}`, 'cluster-node-timeout 2000', 'cluster-config-file nodes.conf']))
  }
  execFileSync(REDIS_CLI, ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'], { stdio: 'ignore', timeout: 20_000 })
  for (const n of nodes) {
    const r = new Redis(n.port, '127.0.0.1')
    try {
      await until(async () => /cluster_state:ok/.test(String(await r.call('CLUSTER', 'INFO'))), 15_000, 'the cluster to be ok')
    } finally { r.disconnect() }
  }
  return nodes.map((n) => n.url)
}
