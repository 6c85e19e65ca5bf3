/**
 * JwksKeys against a real JWKS HTTP server on 127.0.0.1:0 whose answers the test controls and
 * whose requests it counts. Time is an injected clock: the refetch interval passes when the test
 * says so, with no sleeps.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { generateKeyPairSync, createPublicKey, type KeyObject } from 'node:crypto'
import { JwksKeys, JWKS_REFETCH_INTERVAL_MS, JWKS_NEGATIVE_CACHE_MAX, type JwksOptions } from '../../../src/auth/jwks.js'
import { freePort } from '../../helpers/resources.js'

type Mode = 'ok' | 'status500' | 'garbage' | 'not-jwks' | 'no-usable-key' | 'hang' | 'huge'

interface Provider {
  url: string
  requests: number
  mode: Mode
  /** Resolves the next request's arrival (for 'hang'). */
  arrived: Promise<void>
  setKeys (keys: Array<Record<string, unknown>>): void
  close (): Promise<void>
}

async function startProvider (t: { after: (fn: () => Promise<void>) => void }, keys: Array<Record<string, unknown>>): Promise<Provider> {
  let doc = JSON.stringify({ keys })
  let onArrive: () => void = () => {}
  const state: Provider = {
    url: '',
    requests: 0,
    mode: 'ok',
    arrived: Promise.resolve(),
    setKeys (ks) { doc = JSON.stringify({ keys: ks }) },
    close: async () => {}
  }
  state.arrived = new Promise((resolve) => { onArrive = resolve })
  const server: Server = createServer((req, res) => {
    state.requests++
    onArrive()
    state.arrived = new Promise((resolve) => { onArrive = resolve })
    switch (state.mode) {
      case 'ok': res.writeHead(200, { 'content-type': 'application/json' }).end(doc); return
      case 'status500': res.writeHead(500).end('{"error":"boom"}'); return
      case 'garbage': res.writeHead(200, { 'content-type': 'application/json' }).end('{"keys": [ {"kty": "RSA", '); return
      case 'not-jwks': res.writeHead(200, { 'content-type': 'application/json' }).end('{"hello":"world"}'); return
      case 'no-usable-key': res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [{ kty: 'oct', k: 'c2VjcmV0', kid: 'k1' }, { kty: 'RSA', kid: 'kx' }, { kty: 'EC', crv: 'P-256', kid: 'ky', x: 'AA', y: 'AA' }] })); return
      case 'hang': return
      case 'huge': res.writeHead(200, { 'content-type': 'application/json' }); res.write('{"keys":["'); res.end('x'.repeat(64 * 1024)); return
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json?api_key=secret-in-url`
  state.close = () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) })
  t.after(() => state.close())
  return state
}

function rsa (): { privateKey: KeyObject, jwk: (kid: string, extra?: Record<string, unknown>) => Record<string, unknown> } {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  return { privateKey, jwk: (kid, extra = {}) => ({ ...createPublicKey(privateKey).export({ format: 'jwk' }), kid, use: 'sig', ...extra }) }
}

function ec (): Record<string, unknown> {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  return publicKey.export({ format: 'jwk' }) as Record<string, unknown>
}

interface Logged { level: 'warn' | 'debug', obj: Record<string, unknown>, msg: string }

function setup (url: string, o: Partial<JwksOptions> = {}): { keys: JwksKeys, clock: { now: number }, logs: Logged[] } {
  const clock = { now: 1_000_000 }
  const logs: Logged[] = []
  const keys = new JwksKeys({
    url,
    now: () => clock.now,
    log: {
      warn: (obj, msg) => logs.push({ level: 'warn', obj: obj as Record<string, unknown>, msg }),
      debug: (obj, msg) => logs.push({ level: 'debug', obj: obj as Record<string, unknown>, msg })
    },
    ...o
  })
  return { keys, clock, logs }
}

const pemOf = (k: KeyObject): string => createPublicKey(k).export({ type: 'spki', format: 'pem' }).toString()

test('the default interval is 10 s', () => {
  assert.equal(JWKS_REFETCH_INTERVAL_MS, 10_000)
})

test('a known kid is fetched once and then served from memory', async (t) => {
  const k1 = rsa()
  const p = await startProvider(t, [k1.jwk('k1')])
  const { keys } = setup(p.url)
  assert.equal(await keys.getKey('k1', 'RS256'), pemOf(k1.privateKey))
  for (let i = 0; i < 5; i++) assert.equal(await keys.getKey('k1', 'RS256'), pemOf(k1.privateKey))
  assert.equal(p.requests, 1)
})

test('50 distinct unknown kids at once share one fetch; more inside the interval make none', async (t) => {
  const k1 = rsa()
  const p = await startProvider(t, [k1.jwk('k1')])
  const { keys, clock } = setup(p.url)
  const found = await Promise.all(Array.from({ length: 50 }, (_, i) => keys.getKey(`bogus-${i}`, 'RS256')))
  assert.deepEqual(new Set(found), new Set([undefined]))
  assert.equal(p.requests, 1, 'one fetch for 50 concurrent lookups')
  for (let i = 50; i < 100; i++) assert.equal(await keys.getKey(`bogus-${i}`, 'RS256'), undefined)
  clock.now += JWKS_REFETCH_INTERVAL_MS - 1
  for (let i = 100; i < 150; i++) assert.equal(await keys.getKey(`bogus-${i}`, 'RS256'), undefined)
  assert.equal(p.requests, 1, 'no fetch before the interval has passed')
  // Once the interval has passed, one fetch again, however many kids arrive together.
  clock.now += 1
  await Promise.all(Array.from({ length: 50 }, (_, i) => keys.getKey(`late-${i}`, 'RS256')))
  assert.equal(p.requests, 2)
  assert.equal(keys.fetches, 2)
  // The real key was known all along.
  assert.equal(await keys.getKey('k1', 'RS256'), pemOf(k1.privateKey))
  assert.equal(p.requests, 2)
})

test('bogus kids beyond the negative cache bound never evict known keys', async (t) => {
  const k1 = rsa()
  const k2 = rsa()
  const p = await startProvider(t, [k1.jwk('k1'), k2.jwk('k2')])
  const { keys, clock } = setup(p.url, { negativeCacheMax: 16 })
  assert.ok(JWKS_NEGATIVE_CACHE_MAX >= 1000)
  assert.notEqual(await keys.getKey('k1', 'RS256'), undefined)
  // Each round opens the interval again, so every batch of 200 really is looked up.
  for (let round = 0; round < 3; round++) {
    clock.now += JWKS_REFETCH_INTERVAL_MS
    await Promise.all(Array.from({ length: 200 }, (_, i) => keys.getKey(`bogus-${round}-${i}`, 'RS256')))
  }
  assert.equal(p.requests, 4)
  assert.deepEqual(keys.kids.sort(), ['k1', 'k2'])
  assert.equal(await keys.getKey('k1', 'RS256'), pemOf(k1.privateKey))
  assert.equal(await keys.getKey('k2', 'RS256'), pemOf(k2.privateKey))
  assert.equal(p.requests, 4, 'known keys answered without a fetch')
})

test('a kid found missing stays refused without a fetch until its negative entry expires', async (t) => {
  const k1 = rsa()
  const p = await startProvider(t, [k1.jwk('k1')])
  const { keys, clock } = setup(p.url, { negativeTtl: 60_000 })
  assert.equal(await keys.getKey('gone', 'RS256'), undefined)
  clock.now += JWKS_REFETCH_INTERVAL_MS
  assert.equal(await keys.getKey('gone', 'RS256'), undefined)
  assert.equal(p.requests, 1, 'negative cache hit: no fetch although the interval has passed')
  clock.now += 60_000
  assert.equal(await keys.getKey('gone', 'RS256'), undefined)
  assert.equal(p.requests, 2)
})

test('rotation: a kid published later is found at the next allowed fetch, and withdrawn ones go', async (t) => {
  const k1 = rsa()
  const k2 = rsa()
  const p = await startProvider(t, [k1.jwk('k1')])
  const { keys, clock } = setup(p.url, { refetchInterval: 50 })
  assert.notEqual(await keys.getKey('k1', 'RS256'), undefined)
  p.setKeys([k2.jwk('k2')])
  assert.equal(await keys.getKey('k2', 'RS256'), undefined, 'inside the interval: refused without a fetch')
  assert.equal(p.requests, 1)
  clock.now += 50
  assert.equal(await keys.getKey('k2', 'RS256'), pemOf(k2.privateKey), 'the kid seen missing is found after the interval')
  assert.equal(p.requests, 2)
  assert.deepEqual(keys.kids, ['k2'], 'a successful fetch replaces the set')
  assert.equal(await keys.getKey('k1', 'RS256'), undefined)
})

test('stale keys are refreshed in the background after maxAge, and stay usable meanwhile', async (t) => {
  const k1 = rsa()
  const k2 = rsa()
  const p = await startProvider(t, [k1.jwk('k1')])
  const { keys, clock } = setup(p.url, { maxAge: 60_000 })
  assert.notEqual(await keys.getKey('k1', 'RS256'), undefined)
  p.setKeys([k2.jwk('k2')])
  clock.now += 60_000
  const arrived = p.arrived
  // The stale key still answers at once; the refresh it started removes it.
  assert.equal(await keys.getKey('k1', 'RS256'), pemOf(k1.privateKey))
  await arrived
  await keys.getKey('k2', 'RS256')
  assert.equal(p.requests, 2)
  assert.deepEqual(keys.kids, ['k2'])
})

for (const mode of ['status500', 'garbage', 'not-jwks', 'no-usable-key', 'huge'] as const) {
  test(`a refetch answered with ${mode} keeps the known keys and is logged without the URL's query`, async (t) => {
    const k1 = rsa()
    const p = await startProvider(t, [k1.jwk('k1')])
    const { keys, clock, logs } = setup(p.url, { maxBytes: 16 * 1024 })
    assert.notEqual(await keys.getKey('k1', 'RS256'), undefined)
    p.mode = mode
    clock.now += JWKS_REFETCH_INTERVAL_MS
    assert.equal(await keys.getKey('new', 'RS256'), undefined)
    assert.equal(p.requests, 2)
    assert.equal(await keys.getKey('k1', 'RS256'), pemOf(k1.privateKey))
    const failed = logs.filter((l) => l.msg === 'JWKS fetch failed')
    assert.equal(failed.length, 1)
    assert.equal(failed[0].level, 'warn')
    assert.equal(failed[0].obj.knownKeys, 1)
    assert.equal(typeof failed[0].obj.reason, 'string')
    assert.doesNotMatch(JSON.stringify(logs), /secret-in-url/)
    // A failed fetch counts against the interval too: the endpoint is not retried at once.
    assert.equal(await keys.getKey('new2', 'RS256'), undefined)
    assert.equal(p.requests, 2)
  })
}

test('a hung endpoint (timeout), then a refused connection: known keys stay, lookups end', async (t) => {
  const k1 = rsa()
  const p = await startProvider(t, [k1.jwk('k1')])
  const { keys, clock, logs } = setup(p.url, { timeout: 200 })
  assert.notEqual(await keys.getKey('k1', 'RS256'), undefined)
  p.mode = 'hang'
  clock.now += JWKS_REFETCH_INTERVAL_MS
  const arrived = p.arrived
  const pending = keys.getKey('new', 'RS256')
  await arrived
  assert.equal(await pending, undefined, 'the hung fetch was abandoned after the timeout')
  assert.equal(await keys.getKey('k1', 'RS256'), pemOf(k1.privateKey))
  await p.close()
  clock.now += JWKS_REFETCH_INTERVAL_MS
  assert.equal(await keys.getKey('new', 'RS256'), undefined)
  assert.equal(await keys.getKey('k1', 'RS256'), pemOf(k1.privateKey))
  assert.equal(keys.fetches, 3)
  assert.equal(logs.filter((l) => l.msg === 'JWKS fetch failed').length, 2)
})

test('an endpoint down from the start: unknown, no crash, one attempt per interval', async () => {
  const port = await freePort()
  const { keys, clock } = setup(`http://127.0.0.1:${port}/jwks.json`)
  const found = await Promise.all(Array.from({ length: 20 }, (_, i) => keys.getKey(`k${i}`, 'RS256')))
  assert.deepEqual(new Set(found), new Set([undefined]))
  assert.equal(keys.fetches, 1)
  clock.now += JWKS_REFETCH_INTERVAL_MS
  assert.equal(await keys.getKey('k1', 'RS256'), undefined)
  assert.equal(keys.fetches, 2)
})

test('keys are matched on algorithm and type; odd kids are refused without a fetch', async (t) => {
  const k1 = rsa()
  const p = await startProvider(t, [k1.jwk('rs', { alg: 'RS256' }), { ...ec(), kid: 'es' }, k1.jwk('enc', { use: 'enc' })])
  const { keys } = setup(p.url)
  assert.notEqual(await keys.getKey('rs', 'RS256'), undefined)
  assert.equal(await keys.getKey('rs', 'RS512'), undefined, 'the JWK names RS256 only')
  assert.notEqual(await keys.getKey('es', 'ES256'), undefined)
  assert.equal(await keys.getKey('es', 'RS256'), undefined, 'an EC key does not verify RS256')
  assert.equal(await keys.getKey('enc', 'RS256'), undefined, 'encryption keys are not loaded')
  assert.equal(await keys.getKey(undefined, 'RS256'), undefined, 'no kid and more than one key')
  assert.equal(await keys.getKey(42, 'RS256'), undefined)
  assert.equal(await keys.getKey('x'.repeat(10_000), 'RS256'), undefined)
  assert.equal(p.requests, 1)
  assert.deepEqual(keys.kids.sort(), ['es', 'rs'])
})

test('a token without kid uses the only key of a one-key set', async (t) => {
  const k1 = rsa()
  const p = await startProvider(t, [k1.jwk('only')])
  const { keys } = setup(p.url)
  assert.equal(await keys.getKey(undefined, 'RS256'), pemOf(k1.privateKey))
})

test('close() abandons a fetch in flight and starts no other', async (t) => {
  const p = await startProvider(t, [])
  p.mode = 'hang'
  const { keys, clock, logs } = setup(p.url)
  const arrived = p.arrived
  const pending = keys.getKey('k1', 'RS256')
  await arrived
  keys.close()
  assert.equal(await pending, undefined)
  clock.now += JWKS_REFETCH_INTERVAL_MS
  assert.equal(await keys.getKey('k1', 'RS256'), undefined)
  assert.equal(keys.fetches, 1)
  assert.equal(logs.filter((l) => l.msg === 'JWKS fetch failed').length, 0, 'shutting down is not a failure')
})

test('a wall clock that goes back does not block fetches until it catches up', async (t) => {
  const k1 = rsa()
  const p = await startProvider(t, [k1.jwk('k1')])
  const { keys, clock } = setup(p.url)
  assert.equal(await keys.getKey('k2', 'RS256'), undefined)
  assert.equal(p.requests, 1)
  clock.now -= 3_600_000
  assert.equal(await keys.getKey('k2', 'RS256'), undefined)
  assert.equal(p.requests, 2, 'one fetch after the jump, not one an hour later')
  assert.equal(await keys.getKey('k3', 'RS256'), undefined)
  assert.equal(p.requests, 2, 'and the interval holds again from there')
})
