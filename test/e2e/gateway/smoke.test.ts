import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startUpstream } from '../../helpers/upstream.js'
import { startGateway } from '../../helpers/gateway.js'
import { connect, nextMessage, closed } from '../../helpers/ws.js'

test('HTTP and WebSocket through one route', async (t) => {
  const up = await startUpstream()
  t.after(() => up.close())
  const gw = await startGateway({ routes: [{ prefix: '/chat', upstream: up.url }] })
  t.after(() => gw.close())
  const res = await fetch(`${gw.url}/chat/a?b=1`, { method: 'POST', body: 'hello' })
  assert.equal(res.status, 200)
  const echo = await res.json() as { method: string, path: string, body: string }
  assert.deepEqual([echo.method, echo.path, echo.body], ['POST', '/chat/a', 'hello'])
  const ws = await connect(`${gw.wsUrl}/chat`)
  ws.send('x')
  const m = await nextMessage(ws)
  assert.equal(m.data.toString(), 'x')
  assert.equal(m.isBinary, false)
  const c = closed(ws)
  ws.close(4001, 'bye')
  assert.deepEqual(await c, { code: 4001, reason: 'bye' })
})
