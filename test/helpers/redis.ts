/**
 * Redis for tests: REDIS_URL (default redis://127.0.0.1:6379). When it is unreachable, tests that
 * need it are skipped with a visible message, except under CI, where they fail.
 */
import { Redis } from 'ioredis'
import { randomBytes } from 'node:crypto'
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
