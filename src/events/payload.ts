/**
 * The lifecycle events of a WebSocket connection, as POSTed to a route's `events.url` and given
 * to in-process `onConnect`/`onClose` listeners: one `connect` when the client got its 101, one
 * `disconnect` when both sides are closed (or, in cluster mode, when the instance that held the
 * connection is gone: `closedBy: "instance-lost"`).
 */
import type { BridgeEnd, BridgeInfo } from '../bridge/bridge.js'

export interface ConnectEvent {
  type: 'connect'
  id: string
  route: string
  path: string
  userId: string | null
  clientIp: string
  instanceId: string
  /** When the client got its 101 (ISO 8601). */
  connectedAt: string
  /** When the event happened (ISO 8601). */
  at: string
  /** The route's `events.claims` taken from the verified token, when it lists any. */
  claims?: Record<string, unknown>
}

export interface DisconnectEvent extends Omit<ConnectEvent, 'type'> {
  type: 'disconnect'
  closedBy: BridgeEnd['by'] | 'instance-lost'
  clientCode: number
  upstreamCode: number
  reason: string
  durationMs: number
  messagesFromClient: number
  messagesToClient: number
  bytesFromClient: number
  bytesToClient: number
}

export type LifecycleEvent = ConnectEvent | DisconnectEvent

/** What a connection's counters are when it ends (a Bridge has these). */
export interface Counters {
  messagesFromClient: number
  messagesToClient: number
  bytesFromClient: number
  bytesToClient: number
}

/** The event for a connection that just opened. */
export function connectEvent (info: BridgeInfo, connectedAt: number): ConnectEvent {
  const at = new Date(connectedAt).toISOString()
  return { type: 'connect', id: info.id, route: info.route, path: info.path, userId: info.userId, clientIp: info.clientIp, instanceId: info.instanceId, connectedAt: at, at }
}

/** The event for a connection that ended, `now` ms since the epoch. */
export function disconnectEvent (info: BridgeInfo, connectedAt: number, end: BridgeEnd, counters: Counters, now = Date.now()): DisconnectEvent {
  return {
    type: 'disconnect',
    id: info.id,
    route: info.route,
    path: info.path,
    userId: info.userId,
    clientIp: info.clientIp,
    instanceId: info.instanceId,
    connectedAt: new Date(connectedAt).toISOString(),
    at: new Date(now).toISOString(),
    closedBy: end.by,
    clientCode: end.clientCode,
    upstreamCode: end.upstreamCode,
    reason: end.reason,
    durationMs: Math.max(0, now - connectedAt),
    messagesFromClient: counters.messagesFromClient,
    messagesToClient: counters.messagesToClient,
    bytesFromClient: counters.bytesFromClient,
    bytesToClient: counters.bytesToClient
  }
}

/**
 * The `disconnect` a survivor sends for a connection of an instance that died: what the
 * connect said, with abnormal close codes (1006) and counters unknown (0).
 */
export function lostEvent (connect: ConnectEvent, now = Date.now()): DisconnectEvent {
  const { type: _type, at: _at, claims: _claims, ...rest } = connect
  return {
    ...rest,
    type: 'disconnect',
    at: new Date(now).toISOString(),
    closedBy: 'instance-lost',
    clientCode: 1006,
    upstreamCode: 1006,
    reason: 'instance lost',
    durationMs: Math.max(0, now - Date.parse(connect.connectedAt)),
    messagesFromClient: 0,
    messagesToClient: 0,
    bytesFromClient: 0,
    bytesToClient: 0
  }
}

/** The `Idempotency-Key` of an event: the same on every retry and from every instance. */
export function idempotencyKey (event: LifecycleEvent): string {
  return `${event.id}:${event.type}`
}

/** An event and where it goes, as queued (in memory or in a Redis stream). */
export interface QueuedEvent {
  event: LifecycleEvent
  url: string
}

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/
const str = (v: unknown, max: number): v is string => typeof v === 'string' && v.length <= max
const int = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
const nullableStr = (v: unknown, max: number): boolean => v === null || str(v, max)

/** Largest queued entry read back from Redis; anything longer is not an event the gateway wrote. */
export const MAX_ENTRY_BYTES = 64 * 1024

/**
 * Reads a queued event back from Redis, where anything may have been written: null unless it
 * has the shape the gateway writes (and a URL that is at least a URL). The event returned holds
 * only an event's own fields, so nothing else written into the entry is posted.
 */
export function parseQueued (raw: unknown): QueuedEvent | null {
  if (typeof raw !== 'string' || raw.length > MAX_ENTRY_BYTES) return null
  let v: unknown
  try { v = JSON.parse(raw) } catch { return null }
  if (v === null || typeof v !== 'object') return null
  const { event: e, url } = v as { event?: Record<string, unknown>, url?: unknown }
  if (!str(url, 2048) || !/^https?:\/\//.test(url) || e === null || typeof e !== 'object') return null
  if (e.type !== 'connect' && e.type !== 'disconnect') return null
  if (!str(e.id, 128) || e.id === '' || !str(e.route, 1024) || !str(e.path, 8192) || !nullableStr(e.userId, 1024) || !str(e.clientIp, 64) || !str(e.instanceId, 128)) return null
  if (!str(e.connectedAt, 40) || !ISO.test(e.connectedAt) || !str(e.at, 40) || !ISO.test(e.at)) return null
  if (e.claims !== undefined && (e.claims === null || typeof e.claims !== 'object' || Array.isArray(e.claims))) return null
  // Claims nested deeper than JSON.stringify goes could never be posted (and would be retried for ever).
  if (e.claims !== undefined) { try { JSON.stringify(e.claims) } catch { return null } }
  // Rebuilt field by field: whatever else was written into Redis is not posted on.
  const base = { id: e.id, route: e.route, path: e.path, userId: e.userId as string | null, clientIp: e.clientIp, instanceId: e.instanceId, connectedAt: e.connectedAt, at: e.at }
  const claims = e.claims === undefined ? {} : { claims: e.claims as Record<string, unknown> }
  if (e.type === 'connect') return { event: { type: 'connect', ...base, ...claims }, url }
  if (!['client', 'upstream', 'gateway', 'instance-lost'].includes(e.closedBy as string)) return null
  if (!int(e.clientCode) || !int(e.upstreamCode) || !str(e.reason, 1024) || !int(e.durationMs)) return null
  if (!int(e.messagesFromClient) || !int(e.messagesToClient) || !int(e.bytesFromClient) || !int(e.bytesToClient)) return null
  return {
    event: {
      type: 'disconnect',
      ...base,
      ...claims,
      closedBy: e.closedBy as DisconnectEvent['closedBy'],
      clientCode: e.clientCode,
      upstreamCode: e.upstreamCode,
      reason: e.reason,
      durationMs: e.durationMs,
      messagesFromClient: e.messagesFromClient,
      messagesToClient: e.messagesToClient,
      bytesFromClient: e.bytesFromClient,
      bytesToClient: e.bytesToClient
    },
    url
  }
}
