// A forward-auth service for Tollgate's `authorize`: API keys in, user ids out.
// Run: PORT=9100 node examples/services/auth-service.mjs
import { createServer } from 'node:http'

const users = new Map([['key-alice', 'alice'], ['key-bob', 'bob']]) // API key -> user id

createServer((req, res) => {
  // Tollgate forwards the client's Authorization header and says what the request is.
  const key = (req.headers.authorization ?? '').replace(/^Bearer /, '')
  const user = users.get(key)
  if (user === undefined) {
    res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer' })
    return res.end('{"error":"unknown API key"}')
  }
  if (req.headers['x-forwarded-uri'].startsWith('/billing') && user !== 'alice') {
    res.writeHead(403, { 'content-type': 'application/json' })
    return res.end('{"error":"billing is for alice"}')
  }
  // Allowed: Tollgate adds x-user-id upstream (upstreamHeaders) and lists the connection as this user (userHeader).
  res.writeHead(204, { 'x-user-id': user })
  res.end()
}).listen(Number(process.env.PORT ?? 9100), '127.0.0.1')
