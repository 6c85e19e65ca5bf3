// A presence service fed by Tollgate's lifecycle events: who is online, per user.
// Run: PORT=9200 GATEWAY_ADMIN=http://127.0.0.1:8080/admin ADMIN_TOKEN=... node examples/services/presence-service.mjs
import { createServer } from 'node:http'

const online = new Map() // user id -> Set of connection ids
const applied = new Set() // Idempotency-Key values already applied (delivery is at least once)

function apply (event) {
  const user = event.userId ?? 'anonymous'
  const conns = online.get(user) ?? new Set()
  if (event.type === 'connect') conns.add(event.id)
  else conns.delete(event.id)
  if (conns.size > 0) online.set(user, conns)
  else online.delete(user)
}

// Events missed while this service was down are not replayed for ever: ask the gateway who is
// really connected and take its word for it.
async function resync () {
  const admin = process.env.GATEWAY_ADMIN
  if (admin === undefined) return
  for (const user of [...online.keys()]) {
    const res = await fetch(`${admin}/users/${encodeURIComponent(user)}/connections?limit=1000`, { headers: { authorization: `Bearer ${process.env.ADMIN_TOKEN}` } })
    if (!res.ok) continue
    const { connections } = await res.json()
    if (connections.length === 0) online.delete(user)
    else online.set(user, new Set(connections.map((c) => c.id)))
  }
}

createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/presence') {
    res.writeHead(200, { 'content-type': 'application/json' })
    return res.end(JSON.stringify(Object.fromEntries([...online].map(([user, conns]) => [user, conns.size]))))
  }
  if (req.method === 'POST' && req.url === '/resync') {
    return resync().then(() => { res.writeHead(204); res.end() }, () => { res.writeHead(502); res.end() })
  }
  if (req.method !== 'POST' || req.url !== '/events') {
    res.writeHead(404)
    return res.end()
  }
  let body = ''
  req.setEncoding('utf8')
  req.on('data', (chunk) => { body += chunk })
  req.on('end', () => {
    const key = req.headers['idempotency-key']
    if (!applied.has(key)) {
      try {
        apply(JSON.parse(body))
      } catch {
        res.writeHead(400)
        return res.end()
      }
      applied.add(key)
      if (applied.size > 100_000) applied.delete(applied.values().next().value)
    }
    res.writeHead(204) // any 2xx: delivered; anything else is retried with back-off
    res.end()
  })
}).listen(Number(process.env.PORT ?? 9200), '127.0.0.1')
