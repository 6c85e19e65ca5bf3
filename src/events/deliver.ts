/**
 * One POST of a lifecycle event to its endpoint: JSON body, `Idempotency-Key: <id>:<type>`, a
 * 2xx within the timeout counts as delivered; anything else is retried by the scheduler.
 */
import { Agent, request } from 'undici'
import { idempotencyKey, type LifecycleEvent } from './payload.js'

export interface DeliveryResult {
  ok: boolean
  /** The status, or why there was none (timeout, connection error). */
  outcome: string
}

export class EventPoster {
  private readonly agent = new Agent({ keepAliveTimeout: 10_000, connections: 64 })

  /** POSTs `event` to `url`, giving up after `timeout` ms. Never throws. */
  async post (url: string, event: LifecycleEvent, timeout: number): Promise<DeliveryResult> {
    let body: string
    try {
      body = JSON.stringify(event)
    } catch {
      return { ok: false, outcome: 'unserialisable' }
    }
    try {
      const res = await request(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': idempotencyKey(event), 'user-agent': 'tollgate-events' },
        body,
        dispatcher: this.agent,
        signal: AbortSignal.timeout(timeout)
      })
      // The answer's body is not used; read away so the connection is reused.
      await res.body.dump({ limit: 64 * 1024 })
      return { ok: res.statusCode >= 200 && res.statusCode < 300, outcome: String(res.statusCode) }
    } catch (err) {
      const e = err as { name?: string, code?: string }
      return { ok: false, outcome: e.name === 'TimeoutError' || e.name === 'AbortError' ? 'timeout' : e.code ?? 'error' }
    }
  }

  /**
   * Ends every connection at once: called once the queue's shutdown grace is over, when a POST
   * still in flight is given up on (Agent.close would wait for it, up to its own timeout).
   */
  async close (): Promise<void> {
    await this.agent.destroy()
  }
}
