/**
 * The connection registry: every live WebSocket connection of this instance, by id.
 * One interface, so that a cluster-wide (Redis) registry can stand where the memory one does.
 */
import type { Bridge } from '../bridge/bridge.js'
import { codes } from '../errors.js'
import { isSendableCode } from '../close-codes.js'
import { OrderedIndex } from './ordered-index.js'

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

/** How many connections are open, in all and per route and per instance (the dashboard's totals). */
export interface ConnectionTotals {
  total: number
  routes: Record<string, number>
  instances: Array<{ instanceId: string, connections: number }>
  /** Cluster mode with Redis unreachable: only this instance is counted. */
  partial?: boolean
}

export interface ConnectionRegistry {
  readonly size: number
  add (bridge: Bridge): void
  remove (bridge: Bridge): void
  get (id: string): Bridge | undefined
  /** This instance's connections, sorted by connectedAt, oldest first. */
  list (filter?: ConnectionFilter): ConnectionPage
  /** Every live connection of this instance (for shutdown and reload). */
  values (): IterableIterator<Bridge>

  // The admin-facing API is asynchronous so that a cluster-wide registry can answer it too.
  /**
   * Filtered, paged listing, in a stable order: by connectedAt on one instance; in cluster mode by
   * instance id, then by connectedAt within each instance.
   */
  search (filter?: ConnectionFilter): Promise<ConnectionPage>
  /** Open connections in all, per route and per instance, without listing them. */
  totals (): Promise<ConnectionTotals>
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

/**
 * The in-memory registry of one instance. Besides the map by id it keeps an ordered index of all
 * connections, one per route and one per user (connection order, which is connectedAt order), so
 * that a listing page costs O(log n + page) whatever its offset. With both a route and a user
 * asked, the user's connections are walked (a user holds few).
 */
export class MemoryRegistry implements ConnectionRegistry {
  private readonly byId = new Map<string, Bridge>()
  private readonly all = new OrderedIndex<Bridge>()
  private readonly byRoute = new Map<string, OrderedIndex<Bridge>>()
  private readonly byUser = new Map<string, OrderedIndex<Bridge>>()

  /** @param instanceId this instance's id, for totals */
  constructor (private readonly instanceId = 'local') {}

  get size (): number { return this.byId.size }

  add (bridge: Bridge): void {
    const old = this.byId.get(bridge.info.id)
    if (old === bridge) return
    if (old !== undefined) this.remove(old)
    this.byId.set(bridge.info.id, bridge)
    this.all.add(bridge)
    indexOf(this.byRoute, bridge.info.route).add(bridge)
    if (bridge.info.userId !== null) indexOf(this.byUser, bridge.info.userId).add(bridge)
  }

  remove (bridge: Bridge): void {
    if (this.byId.get(bridge.info.id) !== bridge) return
    this.byId.delete(bridge.info.id)
    this.all.delete(bridge)
    unindex(this.byRoute, bridge.info.route, bridge)
    if (bridge.info.userId !== null) unindex(this.byUser, bridge.info.userId, bridge)
  }

  get (id: string): Bridge | undefined { return this.byId.get(id) }

  values (): IterableIterator<Bridge> { return this.all.values() }

  async search (filter?: ConnectionFilter): Promise<ConnectionPage> { return this.list(filter) }

  async totals (): Promise<ConnectionTotals> {
    return { total: this.size, routes: this.routeCounts(), instances: [{ instanceId: this.instanceId, connections: this.size }] }
  }

  /** Open connections per route. */
  routeCounts (): Record<string, number> {
    const routes: Record<string, number> = {}
    for (const [route, index] of this.byRoute) routes[route] = index.size
    return routes
  }

  /** How many connections pass `filter` (O(1), or O(the user's connections) with route and user). */
  count (filter: { route?: string, user?: string } = {}): number {
    if (filter.user !== undefined) {
      const u = this.byUser.get(filter.user)
      if (u === undefined) return 0
      if (filter.route === undefined) return u.size
      let n = 0
      for (const b of u.values()) if (b.info.route === filter.route) n++
      return n
    }
    if (filter.route !== undefined) return this.byRoute.get(filter.route)?.size ?? 0
    return this.size
  }

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
    const from = filter.user !== undefined ? this.byUser.get(filter.user) : filter.route !== undefined ? this.byRoute.get(filter.route) : this.all
    if (from === undefined) return 0
    // A snapshot: a send may end a connection, which must not disturb the walk.
    for (const b of [...from.values()]) {
      if (matchesFilter(b.info.route, b.info.userId, filter) && b.send(data, isBinary)) n++
    }
    return n
  }

  list (filter: ConnectionFilter = {}): ConnectionPage {
    const limit = filter.limit ?? 100
    const offset = filter.offset ?? 0
    if (filter.user !== undefined && filter.route !== undefined) {
      const u = this.byUser.get(filter.user)
      const matched = u === undefined ? [] : [...u.values()].filter((b) => b.info.route === filter.route)
      return { total: matched.length, connections: matched.slice(offset, offset + limit).map((b) => b.toJSON()) }
    }
    const index = filter.user !== undefined ? this.byUser.get(filter.user) : filter.route !== undefined ? this.byRoute.get(filter.route) : this.all
    if (index === undefined) return { total: 0, connections: [] }
    return { total: index.size, connections: index.page(offset, limit).map((b) => b.toJSON()) }
  }
}

function indexOf (map: Map<string, OrderedIndex<Bridge>>, key: string): OrderedIndex<Bridge> {
  let index = map.get(key)
  if (index === undefined) { index = new OrderedIndex(); map.set(key, index) }
  return index
}

function unindex (map: Map<string, OrderedIndex<Bridge>>, key: string, bridge: Bridge): void {
  const index = map.get(key)
  if (index === undefined) return
  index.delete(bridge)
  if (index.size === 0) map.delete(key)
}
