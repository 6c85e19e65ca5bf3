/**
 * Target changes made through the admin API, sent to every instance of a cluster over Redis
 * pub/sub (channel `<keyPrefix>upstreams`), so that each applies them to its own pools:
 *
 *   { from, op: 'add',       upstream, url, weight }
 *   { from, op: 'update',    upstream, target, weight?, state?, closeWithinMs? }
 *   { from, op: 'remove',    upstream, target, close }
 *   { from, op: 'rebalance', upstream, minAgeMs }
 *
 * `target` is the `host:port` id. As with the registry's bus (src/registry/bus-messages.ts),
 * anything that can write to Redis can publish here, so every message is parsed as hostile
 * input: one that does not fit is refused with a reason (logged, rate limited) and nothing of it
 * is used; no message can throw. Fields this version does not know are ignored.
 */
import type { Redis } from 'ioredis'
import { RateLimitedWarning, MAX_INSTANCE_ID_LENGTH, type Parsed } from '../registry/bus-messages.js'
import { duplicateClient } from '../cluster/redis.js'

export type TargetCommand =
  | { op: 'add', upstream: string, url: string, weight: number }
  | { op: 'update', upstream: string, target: string, weight?: number, state?: 'active' | 'drain', closeWithinMs?: number }
  | { op: 'remove', upstream: string, target: string, close: boolean }
  | { op: 'rebalance', upstream: string, minAgeMs: number }

export interface TargetMessage { from: string, cmd: TargetCommand }

/** The largest message worth parsing: a URL, a name and a few numbers. */
export const MAX_TARGET_MESSAGE_LENGTH = 8 * 1024
export const MAX_UPSTREAM_NAME_LENGTH = 2048
export const MAX_TARGET_URL_LENGTH = 2048
/** The largest weight a target may have. */
export const MAX_WEIGHT = 1000
/** The longest closeWithin or minAge a message may ask for (a day), in whole milliseconds. */
export const MAX_WINDOW_MS = 86_400_000

type Fields = Record<string, unknown>

const isText = (v: unknown, max: number): v is string => typeof v === 'string' && v.length > 0 && v.length <= max
const isWeight = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= MAX_WEIGHT
const isWindow = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= MAX_WINDOW_MS

/** Checks one message from the bus; never throws. */
export function parseTargetMessage (raw: string): Parsed<TargetMessage> {
  if (raw.length > MAX_TARGET_MESSAGE_LENGTH) return { ok: false, reason: 'too-large' }
  let v: unknown
  try {
    v = JSON.parse(raw)
  } catch {
    return { ok: false, reason: 'not-json' }
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return { ok: false, reason: 'not-object' }
  const m = v as Fields
  if (!isText(m.from, MAX_INSTANCE_ID_LENGTH)) return { ok: false, reason: 'bad-from' }
  if (!isText(m.upstream, MAX_UPSTREAM_NAME_LENGTH)) return { ok: false, reason: 'bad-field' }
  const upstream = m.upstream
  switch (m.op) {
    case 'add':
      if (!isText(m.url, MAX_TARGET_URL_LENGTH) || !isWeight(m.weight)) return { ok: false, reason: 'bad-field' }
      return { ok: true, value: { from: m.from, cmd: { op: 'add', upstream, url: m.url, weight: m.weight } } }
    case 'update': {
      if (!isText(m.target, MAX_TARGET_URL_LENGTH)) return { ok: false, reason: 'bad-id' }
      if (m.weight !== undefined && !isWeight(m.weight)) return { ok: false, reason: 'bad-field' }
      if (m.state !== undefined && m.state !== 'active' && m.state !== 'drain') return { ok: false, reason: 'bad-field' }
      if (m.closeWithinMs !== undefined && !isWindow(m.closeWithinMs)) return { ok: false, reason: 'bad-field' }
      const cmd: TargetCommand = { op: 'update', upstream, target: m.target }
      if (m.weight !== undefined) cmd.weight = m.weight
      if (m.state !== undefined) cmd.state = m.state
      if (m.closeWithinMs !== undefined) cmd.closeWithinMs = m.closeWithinMs
      return { ok: true, value: { from: m.from, cmd } }
    }
    case 'remove':
      if (!isText(m.target, MAX_TARGET_URL_LENGTH)) return { ok: false, reason: 'bad-id' }
      if (typeof m.close !== 'boolean') return { ok: false, reason: 'bad-field' }
      return { ok: true, value: { from: m.from, cmd: { op: 'remove', upstream, target: m.target, close: m.close } } }
    case 'rebalance':
      if (!isWindow(m.minAgeMs)) return { ok: false, reason: 'bad-field' }
      return { ok: true, value: { from: m.from, cmd: { op: 'rebalance', upstream, minAgeMs: m.minAgeMs } } }
    default:
      return { ok: false, reason: 'bad-op' }
  }
}

export interface TargetBusLogger { warn (o: object, msg: string): void }

/**
 * Publishes this instance's target changes and hands the other instances' to `onCommand`, on a
 * subscriber connection of its own (a duplicate of the shared client).
 */
export class TargetBus {
  private readonly sub: Redis
  private readonly refused: RateLimitedWarning
  private readonly failed: RateLimitedWarning

  constructor (
    private readonly redis: Redis,
    readonly channel: string,
    private readonly instanceId: string,
    private readonly onCommand: (cmd: TargetCommand, from: string) => void,
    log?: TargetBusLogger
  ) {
    const warn = (o: object, msg: string): void => { log?.warn(o, msg) }
    this.refused = new RateLimitedWarning(warn, 'upstream bus: message ignored')
    this.failed = new RateLimitedWarning(warn, 'upstream bus: publish failed')
    // A Redis Cluster client duplicates differently from a single-server one.
    this.sub = duplicateClient(redis)
    this.sub.on('error', () => { /* the main client reports outages */ })
    this.sub.on('message', (channel: string, message: string) => { this.receive(channel, message) })
  }

  /** Subscribes (again on every reconnection); waits up to `waitMs` for the first subscription. */
  async start (waitMs = 1000): Promise<void> {
    const subscribed = new Promise<void>((resolve) => {
      this.sub.on('ready', () => { this.sub.subscribe(this.channel).then(() => resolve(), () => {}) })
    })
    this.sub.connect().catch(() => { /* reconnects on its own */ })
    await Promise.race([subscribed, new Promise((resolve) => setTimeout(resolve, waitMs).unref())])
  }

  stop (): void {
    this.sub.disconnect()
  }

  /** Sends `cmd` to the other instances; false when Redis did not take it. */
  async publish (cmd: TargetCommand): Promise<boolean> {
    try {
      await this.redis.publish(this.channel, JSON.stringify({ from: this.instanceId, ...cmd }))
      return true
    } catch (err) {
      this.failed.hit({ op: cmd.op, err: (err as Error).message })
      return false
    }
  }

  /** One message from the bus: checked, then applied unless it is this instance's own. */
  receive (channel: string, message: string): void {
    if (channel !== this.channel) return
    const parsed = parseTargetMessage(message)
    if (!parsed.ok) { this.refused.hit({ reason: parsed.reason }); return }
    if (parsed.value.from === this.instanceId) return
    try {
      this.onCommand(parsed.value.cmd, parsed.value.from)
    } catch (err) {
      this.refused.hit({ reason: 'handler-failed', err: (err as Error).message })
    }
  }
}
