/**
 * A stand-in for Bridge in registry tests: what the registries read (info, counters, toJSON)
 * and what they call (close, trySend, send), recorded. Its view is the minimal one; a test that
 * needs the admin API's whole view overrides toJSON.
 */
import type { Bridge } from '../../src/bridge/bridge.js'

export class FakeBridge {
  closed = false
  closes: Array<[number, string]> = []
  sent: Array<[Buffer | string, boolean]> = []
  sendResult: 'sent' | 'closed' | 'busy' = 'sent'
  messagesFromClient = 0
  messagesToClient = 0
  lastPongAt = 0
  readonly info: { id: string, route: string, userId: string | null, instanceId: string }
  constructor (id: string, route: string, userId: string | null, instanceId = 'inst-a') {
    this.info = { id, route, userId, instanceId }
  }

  toJSON (): Record<string, unknown> { return { id: this.info.id, route: this.info.route, userId: this.info.userId } }
  close (code: number, reason: string): void { this.closes.push([code, reason]); this.closed = true }
  trySend (data: Buffer | string, isBinary: boolean): 'sent' | 'closed' | 'busy' {
    if (this.sendResult === 'sent') this.sent.push([data, isBinary])
    return this.sendResult
  }

  send (data: Buffer | string, isBinary: boolean): boolean { return this.trySend(data, isBinary) === 'sent' }
  get bridge (): Bridge { return this as unknown as Bridge }
}
