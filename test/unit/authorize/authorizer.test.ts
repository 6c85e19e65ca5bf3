import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Agent } from 'undici'
import { Authorizer, authorizeHeaders, type AuthorizeQuestion } from '../../../src/authorize/authorizer.js'
import { authServiceFor } from '../../helpers/auth-service.js'
import { resolveConfig } from '../../../src/config/resolve.js'
import type { AuthorizeConfig } from '../../../src/config/types.js'

const question = (over: Partial<AuthorizeQuestion> = {}): AuthorizeQuestion => ({
  method: 'GET', uri: '/a?b=1', clientIp: '10.0.0.1', host: 'gw.example', proto: 'https', requestId: 'r1', headers: {}, claims: null, ...over
})

const config = (over: Partial<AuthorizeConfig> = {}): AuthorizeConfig => ({
  url: 'http://127.0.0.1:1/x', timeout: 1000, forwardHeaders: ['authorization', 'cookie'], upstreamHeaders: [], userHeader: null, failOpen: false, cacheTtl: 0, ...over
})

test('authorizeHeaders: listed client headers, then the gateway\'s own, which a client cannot override', () => {
  const h = authorizeHeaders(question({
    headers: { authorization: 'Bearer t', cookie: ['a=1', 'b=2'] as unknown as string, 'x-forwarded-uri': '/spoof', 'x-other': 'no' },
    claims: { sub: 'u' }
  }), ['authorization', 'cookie', 'x-forwarded-uri'])
  assert.equal(h.authorization, 'Bearer t')
  assert.equal(h.cookie, 'a=1; b=2')
  assert.equal(h['x-forwarded-uri'], '/a?b=1')
  assert.equal(h['x-forwarded-method'], 'GET')
  assert.equal(h['x-forwarded-for'], '10.0.0.1')
  assert.equal(h['x-forwarded-host'], 'gw.example')
  assert.equal(h['x-forwarded-proto'], 'https')
  assert.equal(h['x-request-id'], 'r1')
  assert.equal(h['x-other'], undefined)
  assert.deepEqual(JSON.parse(Buffer.from(h['x-tollgate-claims'], 'base64url').toString()), { sub: 'u' })
  assert.equal(authorizeHeaders(question({ host: '' }), [])['x-forwarded-host'], undefined)
})

test('a user id that is too long or has control characters is ignored; several values take the first', async (t) => {
  let value: string | string[] = 'x'.repeat(300)
  const svc = await authServiceFor(t, () => ({ status: 200, headers: { 'x-user-id': value } }))
  const agent = new Agent()
  t.after(() => agent.close())
  const a = new Authorizer(config({ url: svc.url, userHeader: 'x-user-id' }), agent)
  const userOf = async (): Promise<string | null> => {
    const { decision } = await a.decide(question())
    assert.equal(decision.kind, 'allow')
    return decision.kind === 'allow' ? decision.userId : null
  }
  assert.equal(await userOf(), null)
  value = 'bad\tid'
  assert.equal(await userOf(), null)
  value = ['first', 'second']
  assert.equal(await userOf(), 'first')
  value = 'ok-user'
  assert.equal(await userOf(), 'ok-user')
})

test('decisions are not cached when cacheTtl is 0, and an error is never cached', async (t) => {
  let status = 200
  const svc = await authServiceFor(t, () => ({ status }))
  const agent = new Agent()
  t.after(() => agent.close())
  const none = new Authorizer(config({ url: svc.url }), agent)
  await none.decide(question())
  await none.decide(question())
  assert.equal(svc.asked.length, 2)
  const cached = new Authorizer(config({ url: svc.url, cacheTtl: 60_000 }), agent)
  status = 403
  assert.equal((await cached.decide(question())).decision.kind, 'deny')
  assert.equal((await cached.decide(question())).cached, true, 'a refusal is cached too')
  assert.equal(svc.asked.length, 3)
  const gone = new Authorizer(config({ url: 'http://127.0.0.1:1/x', cacheTtl: 60_000 }), agent)
  assert.equal((await gone.decide(question())).decision.kind, 'unavailable')
  assert.equal((await gone.decide(question())).cached, false)
})

test('config: defaults, inheritance by routes, authorize: false, and events on WebSocket routes only', () => {
  const c = resolveConfig({
    authorize: { url: 'http://auth/x', userHeader: 'X-User-Id' },
    events: { url: 'http://ev/x', on: ['disconnect'] },
    routes: [
      { prefix: '/a', upstream: 'http://127.0.0.1:1' },
      { prefix: '/b', upstream: 'http://127.0.0.1:1', authorize: false, events: false },
      { prefix: '/c', upstream: 'http://127.0.0.1:1', websocket: false, authorize: { url: 'http://other/x', cache: '5s', forwardHeaders: ['X-Api-Key'] } }
    ]
  })
  assert.deepEqual(c.authorize, { url: 'http://auth/x', timeout: 2000, forwardHeaders: ['authorization', 'cookie'], upstreamHeaders: [], userHeader: 'x-user-id', failOpen: false, cacheTtl: 0 })
  assert.equal(c.routes[0].authorize, c.authorize, 'inherited: the same object, so one cache')
  assert.equal(c.routes[1].authorize, null)
  assert.deepEqual(c.routes[2].authorize?.forwardHeaders, ['x-api-key'])
  assert.equal(c.routes[2].authorize?.cacheTtl, 5000)
  assert.deepEqual(c.routes[0].events, { url: 'http://ev/x', connect: false, disconnect: true, timeout: 5000, claims: [] })
  assert.equal(c.routes[1].events, null)
  assert.equal(c.routes[2].events, null, 'an HTTP-only route has no WebSockets')
  assert.equal(c.eventsQueueSize, 100_000)
})
