/**
 * The WebSocket bridge and JWT auth seen from a real browser (Debian's headless Chromium, driven
 * by playwright-core; no browser is ever downloaded). Browsers cannot set headers on a WebSocket,
 * so they authenticate with a `bearer.<jwt>` subprotocol offer or a cookie, and they fail a
 * handshake that offered subprotocols and got none back (spec section 5).
 *
 * The page is served by the gateway itself (a static route), so it shares host:port with the
 * bridge route and its cookie goes along with the handshake.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type CDPSession, type Page } from 'playwright-core'
import { startUpstream } from '../../helpers/upstream.js'
import { startGateway } from '../../helpers/gateway.js'
import { SECRET, sign, now } from '../../helpers/jwt.js'
import { waitFor, within } from '../../helpers/resources.js'
import { haveChromium, launchChromium } from '../../helpers/chromium.js'

const STEP_MS = 5000

/** One message to send: text, or binary bytes (sent from the page as an ArrayBuffer). */
type Msg = { text: string } | { bytes: number[] }
/** What the page saw on one socket. */
interface ProbeResult {
  /** Event names in order: open, message, error, close, timeout. */
  events: string[]
  /** ws.protocol once open ('' when none). */
  protocol: string | null
  replies: Msg[]
  close: { code: number, reason: string, wasClean: boolean } | null
}
interface PageApi {
  probe (url: string, protocols: string[] | null, messages: Msg[], timeoutMs: number): Promise<ProbeResult>
  setCookie (value: string): string
}

// Runs in the page: opens a socket, sends each message after the echo of the previous one
// arrives, then closes with 1000; resolves on close (or after timeoutMs, with 'timeout').
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>tollgate browser test</title></head><body>
<script>
window.tollgate = {
  setCookie (value) { document.cookie = value; return document.cookie },
  probe (url, protocols, messages, timeoutMs) {
    return new Promise((resolve) => {
      const r = { events: [], protocol: null, replies: [], close: null }
      let ws
      try { ws = protocols === null ? new WebSocket(url) : new WebSocket(url, protocols) } catch (e) { r.events.push('throw: ' + e.message); resolve(r); return }
      ws.binaryType = 'arraybuffer'
      const timer = setTimeout(() => { r.events.push('timeout'); try { ws.close() } catch {} resolve(r) }, timeoutMs)
      let next = 0
      const sendNext = () => {
        if (next === messages.length) { ws.close(1000, 'done'); return }
        const m = messages[next++]
        ws.send('text' in m ? m.text : new Uint8Array(m.bytes).buffer)
      }
      ws.onopen = () => { r.events.push('open'); r.protocol = ws.protocol; sendNext() }
      ws.onmessage = (e) => {
        r.events.push('message')
        r.replies.push(typeof e.data === 'string' ? { text: e.data } : { bytes: Array.from(new Uint8Array(e.data)) })
        sendNext()
      }
      ws.onerror = () => { r.events.push('error') }
      ws.onclose = (e) => { r.events.push('close'); r.close = { code: e.code, reason: e.reason, wasClean: e.wasClean }; clearTimeout(timer); resolve(r) }
    })
  }
}
</script></body></html>
`

const TEXT = 'héllo from chromium ✓'
const BYTES = Array.from({ length: 256 }, (_, i) => i)
const ECHO: Msg[] = [{ text: TEXT }, { bytes: BYTES }]

test('a real browser: bearer subprotocol and cookie auth bridge and echo; 401s fail the handshake', { timeout: 30_000 }, async (t) => {
  if (!haveChromium(t)) return
  const started = performance.now()

  const up = await startUpstream()
  t.after(() => up.close())
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-browser-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'index.html'), PAGE)
  const gw = await startGateway({
    auth: { jwt: { secret: SECRET }, forwardClaims: { sub: 'x-user-id' } },
    routes: [
      { prefix: '/ws', upstream: up.wsUrl, auth: 'required' },
      { prefix: '/app', static: dir }
    ]
  })
  t.after(() => gw.close())

  const browser = await launchChromium(t)
  const page: Page = await browser.newPage()
  page.setDefaultTimeout(STEP_MS)
  const pageErrors: string[] = []
  page.on('pageerror', (e) => pageErrors.push(e.message))

  // The handshake answers as the browser saw them, from DevTools' network events.
  const cdp: CDPSession = await page.context().newCDPSession(page)
  const handshakes = new Map<string, { url: string, offered?: string, cookie?: string, status?: number, answered?: string, error?: string }>()
  cdp.on('Network.webSocketCreated', (e) => { handshakes.set(e.requestId, { url: e.url }) })
  cdp.on('Network.webSocketWillSendHandshakeRequest', (e) => {
    const h = lower(e.request.headers)
    Object.assign(handshakes.get(e.requestId) ?? {}, { offered: h['sec-websocket-protocol'], cookie: h.cookie })
  })
  cdp.on('Network.webSocketHandshakeResponseReceived', (e) => {
    Object.assign(handshakes.get(e.requestId) ?? {}, { status: e.response.status, answered: lower(e.response.headers)['sec-websocket-protocol'] })
  })
  cdp.on('Network.webSocketFrameError', (e) => { Object.assign(handshakes.get(e.requestId) ?? {}, { error: e.errorMessage }) })
  await cdp.send('Network.enable')

  const res = await page.goto(`${gw.url}/app/`)
  assert.equal(res?.status(), 200)
  assert.equal(await page.title(), 'tollgate browser test')

  const wsUrl = `${gw.wsUrl}/ws`
  const probe = (url: string, protocols: string[] | null, messages: Msg[] = []): Promise<ProbeResult> =>
    within(page.evaluate(([u, p, m, ms]) => (globalThis as unknown as { tollgate: PageApi }).tollgate.probe(u, p, m, ms), [url, protocols, messages, STEP_MS] as const), STEP_MS + 2000, `probe ${url}`)
  const setCookie = (value: string): Promise<string> =>
    page.evaluate((v) => (globalThis as unknown as { tollgate: PageApi }).tollgate.setCookie(v), value)
  const lastHandshake = async (url: string): Promise<{ offered?: string, cookie?: string, status?: number, answered?: string, error?: string }> => {
    // DevTools events travel apart from the page's own; wait for the last one's outcome.
    let last: ReturnType<typeof handshakes.get>
    await waitFor(() => { last = [...handshakes.values()].filter((h) => h.url === url).at(-1); return last?.status !== undefined || last?.error !== undefined }, `DevTools handshake events for ${url}`, STEP_MS)
    return last!
  }
  const upgradesBefore = (): number => up.upgrades.length

  const token = sign({ sub: 'browser-user', exp: now() + 600 })
  const bearer = `bearer.${token}`

  await t.test('bearer.<jwt> as the only offer: the gateway answers with it, text and binary echo', async () => {
    const n = upgradesBefore()
    const r = await probe(wsUrl, [bearer], ECHO)
    assert.deepEqual(r.events, ['open', 'message', 'message', 'close'])
    assert.equal(r.protocol, bearer)
    assert.deepEqual(r.replies, ECHO)
    assert.deepEqual(r.close, { code: 1000, reason: 'done', wasClean: true })
    assert.equal(up.upgrades.length, n + 1)
    const seen = up.upgrades.at(-1)!
    assert.equal(seen.headers['sec-websocket-protocol'], undefined, 'the bearer offer went upstream')
    assert.equal(seen.headers['x-user-id'], 'browser-user')
    const h = await lastHandshake(wsUrl)
    assert.equal(h.offered, bearer)
    assert.equal(h.status, 101)
    assert.equal(h.answered, bearer)
  })

  await t.test('bearer.<jwt> next to a real subprotocol: the upstream picks the real one', async () => {
    const n = upgradesBefore()
    const r = await probe(wsUrl, [bearer, 'chat.v1'], [{ text: 'ping' }])
    assert.deepEqual(r.events, ['open', 'message', 'close'])
    assert.equal(r.protocol, 'chat.v1')
    assert.deepEqual(r.replies, [{ text: 'ping' }])
    assert.equal(up.upgrades.length, n + 1)
    assert.equal(up.upgrades.at(-1)!.headers['sec-websocket-protocol'], 'chat.v1')
  })

  const rejected: Array<[string, string[] | null]> = [
    ['no token', null],
    ['a token signed with another key', [`bearer.${sign({ sub: 'mallory', exp: now() + 600 }, { key: 'another-secret' })}`]],
    ['an expired token', [`bearer.${sign({ sub: 'browser-user', exp: now() - 60 })}`]],
    ['a malformed token', ['bearer.not-a-jwt']]
  ]
  for (const [name, protocols] of rejected) {
    await t.test(`401 for ${name}: error then close 1006, never open, upstream untouched`, async () => {
      const n = upgradesBefore()
      const r = await probe(wsUrl, protocols)
      assert.deepEqual(r.events, ['error', 'close'])
      assert.equal(r.protocol, null)
      assert.equal(r.close?.code, 1006)
      assert.equal(r.close?.wasClean, false)
      assert.equal(up.upgrades.length, n, 'the upstream saw an upgrade')
      assertRefused(await lastHandshake(wsUrl))
    })
  }

  await t.test('cookie on the gateway origin, no subprotocol: open, text and binary echo', async () => {
    // The page lives under /app/: without path=/ the cookie would not go with /ws.
    assert.match(await setCookie(`access_token=${token}; path=/; SameSite=Strict`), /access_token=/)
    const n = upgradesBefore()
    const url = await page.evaluate(() => `ws://${(globalThis as unknown as { location: { host: string } }).location.host}/ws`)
    assert.equal(url, wsUrl)
    const r = await probe(url, null, ECHO)
    assert.deepEqual(r.events, ['open', 'message', 'message', 'close'])
    assert.equal(r.protocol, '')
    assert.deepEqual(r.replies, ECHO)
    assert.deepEqual(r.close, { code: 1000, reason: 'done', wasClean: true })
    assert.equal(up.upgrades.length, n + 1)
    const seen = up.upgrades.at(-1)!
    assert.equal(seen.headers['sec-websocket-protocol'], undefined)
    assert.equal(seen.headers['x-user-id'], 'browser-user')
    const h = await lastHandshake(url)
    assert.equal(h.status, 101)
    assert.equal(h.offered, undefined)
    assert.match(h.cookie ?? '', /access_token=/)
  })

  await t.test('a bad token in the cookie: 401, close 1006', async () => {
    await setCookie(`access_token=${sign({ sub: 'x', exp: now() - 60 })}; path=/; SameSite=Strict`)
    const n = upgradesBefore()
    const r = await probe(wsUrl, null)
    assert.deepEqual(r.events, ['error', 'close'])
    assert.equal(r.close?.code, 1006)
    assert.equal(up.upgrades.length, n)
    assertRefused(await lastHandshake(wsUrl))
    await setCookie('access_token=; path=/; max-age=0')
  })

  await t.test('Node side: the gateway counted the 401s, the upstream never saw a bearer offer', async () => {
    const text = await (await fetch(`${gw.url}/metrics`, { signal: AbortSignal.timeout(STEP_MS) })).text()
    const count = (result: string): number => {
      const m = new RegExp(`^tollgate_websocket_handshakes_total\\{route="/ws",result="${result}"\\} (\\d+)$`, 'm').exec(text)
      return m === null ? 0 : Number(m[1])
    }
    assert.equal(count('401'), rejected.length + 1)
    assert.equal(count('ok'), 3)
    assert.equal(up.upgrades.length, 3)
    for (const req of up.upgrades) {
      assert.ok(!String(req.headers['sec-websocket-protocol'] ?? '').includes('bearer.'), 'a bearer offer reached the upstream')
    }
    assert.deepEqual(pageErrors, [])
  })

  t.diagnostic(`browser test took ${Math.round(performance.now() - started)} ms`)
})

/**
 * The browser's own account of a refused handshake. A 401 carrying `WWW-Authenticate: Bearer` is
 * an auth challenge to Chromium: it reports "HTTP Authentication failed" (no status, no response
 * event) rather than "Unexpected response code: 401".
 */
function assertRefused (h: { status?: number, error?: string }): void {
  assert.notEqual(h.status, 101)
  assert.match(h.error ?? `status ${h.status}`, /HTTP Authentication failed|Unexpected response code: 401|status 401/)
}

function lower (headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]))
}
