/**
 * The connection registry: every live WebSocket connection of this instance, by id.
 * One interface, so that a cluster-wide (Redis) registry can stand where the memory one does.
 */
import type { Bridge } from '../bridge/bridge.js'
import { codes } from '../errors.js'
import { isSendableCode } from '../close-codes.js'

export interface ConnectionFilter {
  route?: string
  user?: string
  limit?: number
  offset?: number
}

export interface ConnectionPage {
  total: number
  connections: Array<Record<string, unknown>>
  /** Cluster mode with Redis unreachable: only this instance's connections are listed. */
  partial?: boolean
}

/** The one filter rule: a connection passes when its route and user are the ones asked for (if any). */
export function matchesFilter (route: unknown, userId: unknown, filter: { route?: string, user?: string }): boolean {
  return (filter.route === undefined || route === filter.route) && (filter.user === undefined || userId === filter.user)
}

/** Filters, sorts by connectedAt and pages connection views (for registries that gather them). */
export function pageOf (all: Array<Record<string, unknown>>, filter: ConnectionFilter = {}): ConnectionPage {
  const limit = filter.limit ?? 100
  const offset = filter.offset ?? 0
  const matched = all.filter((c) => matchesFilter(c.route, c.userId, filter))
  matched.sort((a, b) => String(a.connectedAt).localeCompare(String(b.connectedAt)) || String(a.id).localeCompare(String(b.id)))
  return { total: matched.length, connections: matched.slice(offset, offset + limit) }
}

export interface ConnectionRegistry {
  readonly size: number
  add (bridge: Bridge): void
  remove (bridge: Bridge): void
  get (id: string): Bridge | undefined
  /** Sorted by connectedAt, oldest first. */
  list (filter?: ConnectionFilter): ConnectionPage
  /** Every live connection of this instance (for shutdown and reload). */
  values (): IterableIterator<Bridge>

  // The admin-facing API is asynchronous so that a cluster-wide registry can answer it too.
  /** Filtered, paged listing (sorted by connectedAt). */
  search (filter?: ConnectionFilter): Promise<ConnectionPage>
  /** One connection's view, or null when no such connection is open. */
  find (id: string): Promise<Record<string, unknown> | null>
  /** Closes a connection (client with code/reason, upstream too). False when not found. */
  closeById (id: string, code: number, reason: string): Promise<boolean>
  /**
   * Sends a message to a connection's client. False when not found; throws GW_ERR_CLIENT_BUSY
   * (503) when the client is not reading (more than highWaterMark waits to be written to it).
   */
  sendById (id: string, data: Buffer | string, isBinary: boolean): Promise<boolean>
  /** Sends a message to every connection matching route and/or user; returns how many got it. */
  broadcast (filter: { route?: string, user?: string }, data: Buffer | string, isBinary: boolean): Promise<number>
}

/** The in-memory registry of one instance. Insertion order is connection order. */
export class MemoryRegistry implements ConnectionRegistry {
  private readonly byId = new Map<string, Bridge>()

  get size (): number { return this.byId.size }

  add (bridge: Bridge): void { this.byId.set(bridge.info.id, bridge) }

  remove (bridge: Bridge): void {
    if (this.byId.get(bridge.info.id) === bridge) this.byId.delete(bridge.info.id)
  }

  get (id: string): Bridge | undefined { return this.byId.get(id) }

  values (): IterableIterator<Bridge> { return this.byId.values() }

  async search (filter?: ConnectionFilter): Promise<ConnectionPage> { return this.list(filter) }

  async find (id: string): Promise<Record<string, unknown> | null> {
    return this.byId.get(id)?.toJSON() ?? null
  }

  async closeById (id: string, code: number, reason: string): Promise<boolean> {
    // A plugin may call this with any number: never write a close frame ws would refuse.
    if (!Number.isInteger(code) || !isSendableCode(code)) throw new codes.GW_ERR_BAD_CLOSE_CODE(code)
    const b = this.byId.get(id)
    if (b === undefined || b.closed) return false
    b.close(code, reason)
    return true
  }

  async sendById (id: string, data: Buffer | string, isBinary: boolean): Promise<boolean> {
    const b = this.byId.get(id)
    if (b === undefined) return false
    const r = b.trySend(data, isBinary)
    if (r === 'busy') throw new codes.GW_ERR_CLIENT_BUSY(id)
    return r === 'sent'
  }

  async broadcast (filter: { route?: string, user?: string }, data: Buffer | string, isBinary: boolean): Promise<number> {
    let n = 0
    for (const b of this.byId.values()) {
      if (matchesFilter(b.info.route, b.info.userId, filter) && b.send(data, isBinary)) n++
    }
    return n
  }

  list (filter: ConnectionFilter = {}): ConnectionPage {
    const limit = filter.limit ?? 100
    const offset = filter.offset ?? 0
    let total = 0
    const connections: Array<Record<string, unknown>> = []
    // Map iteration is insertion order, which is connectedAt order.
    for (const b of this.byId.values()) {
      if (!matchesFilter(b.info.route, b.info.userId, filter)) continue
      if (total >= offset && connections.length < limit) connections.push(b.toJSON())
      total++
    }
    return { total, connections }
  }
}
