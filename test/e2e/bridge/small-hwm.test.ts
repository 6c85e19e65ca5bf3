/**
 * Backpressure with a highWaterMark below the socket's own buffer size: Node emits 'drain' only
 * after a write filled that buffer, so the bridge must also notice an emptied side on its sweep.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startUpstream } from '../../helpers/upstream.js'
import { startGateway } from '../../helpers/gateway.js'
import { connect } from '../../helpers/ws.js'
import type WebSocket from 'ws'

test('highWaterMark 1kb: a slow upstream pauses the client, and every message arrives in order once it reads', { timeout: 30_000 }, async (t) => {
  let upstreamWs: WebSocket | undefined
  const got: number[] = []
  let resolveAll!: () => void
  const all = new Promise<void>((resolve) => { resolveAll = resolve })
  const N = 300
  const up = await startUpstream({
    onConnection: (ws) => {
      upstreamWs = ws
      ws.pause()
      ws.on('message', (d: Buffer) => {
        got.push(d.readUInt32BE(0))
        if (got.length === N) resolveAll()
      })
    }
  })
  t.after(() => up.close())
  const gw = await startGateway({ websocket: { highWaterMark: '1kb', pingInterval: 200, pongTimeout: 2000 }, routes: [{ prefix: '/ws', upstream: up.url }] })
  t.after(() => gw.close())
  const ws = await connect(`${gw.wsUrl}/ws`)
  t.after(() => ws.terminate())
  for (let i = 0; i < N; i++) {
    const m = Buffer.alloc(8 * 1024, i % 256)
    m.writeUInt32BE(i, 0)
    ws.send(m)
  }
  // The gateway stops reading the client well before all 2.4 MB are through.
  const bridge = [...gw.app.connections.values()][0]
  await new Promise<void>((resolve) => {
    const check = (): void => { if (bridge.messagesFromClient > 0) resolve(); else setImmediate(check) }
    check()
  })
  assert.ok(bridge.messagesFromClient < N, `paused after ${bridge.messagesFromClient} messages`)
  upstreamWs!.resume()
  await all
  assert.deepEqual(got, Array.from({ length: N }, (_, i) => i))
})
