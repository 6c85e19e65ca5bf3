/**
 * The admin dashboard ({admin.prefix}/ui): what the gateway serves (no token needed for the page,
 * a strict CSP, nothing from another origin), and the page itself in Debian's headless Chromium
 * driven by playwright-core (as in browser.test.ts: no browser is ever downloaded; skipped visibly
 * outside CI when /usr/bin/chromium is missing, a failure under CI).
 *
 * The browser test saves screenshots under test/artifacts/ (git-ignored); with
 * UPDATE_SCREENSHOTS=1 it also refreshes docs/dashboard.png, the one README-dashboard.md shows.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type ConsoleMessage, type Page, type Request } from 'playwright-core'
import ts from 'typescript'
import type WebSocket from 'ws'
import { startUpstream } from '../helpers/upstream.js'
import { startGateway, gatewayFor as gateway } from '../helpers/gateway.js'
import { connect, closed, collect, nextMessage } from '../helpers/ws.js'
import { SECRET, sign, now } from '../helpers/jwt.js'
import { freePort, waitFor, within } from '../helpers/resources.js'
import { buildGateway } from '../../src/gateway/app.js'
import type { GatewayConfigInput } from '../../src/config/schema.js'
import { haveChromium, launchChromium } from '../helpers/chromium.js'

const STEP_MS = 5000
const TOKEN = 'dashboard-admin-token'
const root = fileURLToPath(new URL('../..', import.meta.url))

// ---------- served without a browser ----------

/** The dashboard's ES modules in ui/: app.js (the entry) and every module it imports, even indirectly. */
const UI_MODULES = ['app.js', 'api.js', 'charts.js', 'dom.js', 'format.js', 'metrics.js', 'table.js', 'upstreams.js']

/** Every http(s) URL in a text, to prove nothing is loaded from elsewhere. */
const urls = (s: string): string[] => s.match(/https?:\/\/[^\s'"`)<>]+/g) ?? []

test('GET {prefix}/ui: HTML with a strict CSP and no token needed; assets too; the API still needs the token', async (t) => {
  const gw = await gateway(t, { routes: [], admin: { token: TOKEN } })
  let pageCsp = ''
  for (const path of ['/admin/ui', '/admin/ui/']) {
    const res = await fetch(`${gw.url}${path}`)
    assert.equal(res.status, 200, path)
    assert.match(res.headers.get('content-type') ?? '', /^text\/html/)
    const csp = res.headers.get('content-security-policy') ?? ''
    pageCsp = csp
    assert.match(csp, /(^|; )default-src 'self'(;|$)/)
    assert.match(csp, /(^|; )script-src 'self'(;|$)/)
    assert.match(csp, /frame-ancestors 'none'/)
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/)
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff')
    const html = await res.text()
    assert.match(html, /<meta name="tollgate-admin-prefix" content="\/admin">/)
    assert.match(html, /<script type="module" src="\/admin\/ui\/app\.js"><\/script>/)
    assert.match(html, /<link rel="stylesheet" href="\/admin\/ui\/style\.css">/)
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, 'an inline script')
    assert.doesNotMatch(html, /<style|\sstyle=|\son\w+=/i, 'inline style or event handler')
    assert.doesNotMatch(html, /%ADMIN_PREFIX%/)
    assert.deepEqual(urls(html), [])
  }
  const assets: Array<[string, RegExp]> = [
    ...UI_MODULES.map((name): [string, RegExp] => [`/admin/ui/${name}`, /^text\/javascript/]),
    ['/admin/ui/style.css', /^text\/css/]
  ]
  for (const [path, type] of assets) {
    const res = await fetch(`${gw.url}${path}`)
    assert.equal(res.status, 200, path)
    assert.match(res.headers.get('content-type') ?? '', type, path)
    assert.equal(res.headers.get('content-security-policy'), pageCsp, path)
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff', path)
    assert.equal(res.headers.get('cache-control'), 'no-cache')
    const body = await res.text()
    // Only the SVG namespace, which is a name, not a request.
    assert.deepEqual(urls(body).filter((u) => u !== 'http://www.w3.org/2000/svg'), [], path)
    // A module imports only modules of this list, by relative URL (so each is one the page gets).
    for (const { fileName: spec } of ts.preProcessFile(body, true, true).importedFiles) {
      assert.match(spec, /^\.\/[a-z0-9-]+\.js$/, `${path} imports ${spec}`)
      assert.ok(UI_MODULES.includes(spec.slice(2)), `${path} imports ${spec}, which is not in UI_MODULES`)
    }
    const etag = res.headers.get('etag')!
    assert.equal((await fetch(`${gw.url}${path}`, { headers: { 'if-none-match': etag } })).status, 304)
  }
  // Nothing else in ui/ is served: not the TypeScript declarations, not index.html by its name.
  for (const path of ['/admin/ui/metrics.d.ts', '/admin/ui/upstreams.d.ts', '/admin/ui/index.html', '/admin/ui/nope.js']) {
    assert.equal((await fetch(`${gw.url}${path}`)).status, 404, path)
  }
  for (const path of ['/admin/connections', '/admin/upstreams']) {
    const res = await fetch(`${gw.url}${path}`)
    assert.equal(res.status, 401, path)
    assert.equal((await fetch(`${gw.url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 200, path)
  }
  // The UI is no part of the admin API's OpenAPI document.
  const doc = await (await fetch(`${gw.url}/admin/openapi.json`, { headers: { authorization: `Bearer ${TOKEN}` } })).json() as { paths: Record<string, unknown> }
  assert.ok(Object.keys(doc.paths).every((p) => !p.startsWith('/ui')))
})

test('the UI follows admin.prefix and admin.port', async (t) => {
  const gw = await gateway(t, { routes: [], admin: { token: TOKEN, prefix: '/ops', port: 1 } })
  const res = await fetch(`${gw.adminUrl}/ops/ui`)
  assert.equal(res.status, 200)
  const html = await res.text()
  assert.match(html, /content="\/ops"/)
  assert.match(html, /src="\/ops\/ui\/app\.js"/)
  for (const name of UI_MODULES) assert.equal((await fetch(`${gw.adminUrl}/ops/ui/${name}`)).status, 200, name)
  assert.equal((await fetch(`${gw.url}/ops/ui`)).status, 404)
  assert.equal((await fetch(`${gw.url}/admin/ui`)).status, 404)
})

test('no admin token configured: no dashboard', async (t) => {
  const gw = await gateway(t, { routes: [] })
  for (const path of ['/admin/ui', '/admin/ui/', '/admin/ui/app.js', '/admin/ui/metrics.js', '/admin/ui/style.css']) {
    assert.equal((await fetch(`${gw.url}${path}`)).status, 404, path)
  }
})

// ---------- in a real browser ----------

// Client 0 is the only alice; the others cycle through these (every third one anonymous).
/** The little of the DOM that the functions run in the page touch (the tsconfig has no DOM lib). */
interface Dom {
  document: {
    getElementById (id: string): { textContent: string | null, scrollTop: number } | null
    querySelector (selector: string): { marker?: number } | null
    querySelectorAll (selector: string): { length: number }
    activeElement: unknown
  }
  sessionStorage: { length: number, getItem (key: string): string | null }
}

const USERS = ['bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi']

test('dashboard in headless Chromium: sign in, see, filter, page, message and close connections; errors shown', { timeout: 45_000 }, async (t) => {
  if (!haveChromium(t)) return
  const started = performance.now()
  const artifacts = join(root, 'test', 'artifacts')
  mkdirSync(artifacts, { recursive: true })

  const up = await startUpstream()
  t.after(() => up.close())
  const config: GatewayConfigInput = {
    auth: { jwt: { secret: SECRET } },
    websocket: { pingInterval: '1s' },
    upstreams: {
      chat: { targets: [up.url], healthCheck: { path: '/health', interval: '250ms' } },
      feed: { targets: [up.url, `http://127.0.0.1:${await freePort()}`], balance: 'least-connections', healthCheck: { path: '/health', interval: '250ms', unhealthyAfter: 1 } }
    },
    routes: [
      { prefix: '/chat', upstream: 'chat', auth: 'required' },
      { prefix: '/news', upstream: 'feed', auth: 'optional' }
    ],
    admin: { token: TOKEN },
    // The page must send the token to /metrics too (the counts by route come from there).
    metrics: { protected: true }
  }
  const gw = await startGateway(config)
  t.after(() => gw.close())
  const pool = (name: string) => [...gw.app.upstreamPools.values()].find((p) => p.name === name)!
  // Connections only once the dead target is known to be down, so none is tried on it.
  await waitFor(() => pool('feed').state().some((x) => x.health === 'unhealthy') && pool('chat').state()[0].health === 'healthy', 'health checks', STEP_MS)

  // 62 clients: more than a 50-row page. Each sends a few messages (echoed) so counters differ.
  // Client i's path is <route>/client-i, which finds its registry entry.
  const clients: WebSocket[] = []
  t.after(() => { for (const ws of clients) ws.terminate() })
  const open = async (i: number): Promise<WebSocket> => {
    const user = i === 0 ? 'alice' : i % 3 === 2 ? null : USERS[i % USERS.length]
    const route = i % 3 === 0 ? '/chat' : '/news'
    const headers: Record<string, string> = user === null ? {} : { authorization: `Bearer ${sign({ sub: user, exp: now() + 600 })}` }
    const ws = await connect(`${gw.wsUrl}${route}/client-${i}`, undefined, { headers })
    clients[i] = ws
    const n = i % 5
    const echoes = collect(ws, n)
    for (let k = 0; k < n; k++) ws.send(`message ${k} from client ${i}`.repeat(1 + (i % 3)))
    await echoes
    return ws
  }
  await open(0)
  for (let i = 1; i < 62; i += 16) await Promise.all(Array.from({ length: Math.min(16, 62 - i) }, (_, k) => open(i + k)))
  await waitFor(() => gw.app.connections.size === 62, '62 registered connections', STEP_MS)
  const idOf = (i: number): string => [...gw.app.connections.values()].find((b) => b.info.path.endsWith(`/client-${i}`))!.info.id
  const alice = clients[0]
  const aliceId = idOf(0)
  // Client 1 (carol on /news) chats steadily, for the messages/s chart.
  const carolId = idOf(1)
  const chatter = setInterval(() => { clients[1].send('tick') }, 50)
  t.after(() => clearInterval(chatter))

  const browser = await launchChromium(t)
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 }, colorScheme: 'light', locale: 'en-GB', timezoneId: 'UTC' })
  const page: Page = await context.newPage()
  page.setDefaultTimeout(STEP_MS)
  const pageErrors: string[] = []
  const consoleErrors: string[] = []
  const requests: Request[] = []
  page.on('pageerror', (e) => pageErrors.push(e.message))
  page.on('console', (m: ConsoleMessage) => { if (m.type() === 'error' || m.type() === 'warning') consoleErrors.push(m.text()) })
  page.on('request', (r) => requests.push(r))

  const text = async (selector: string): Promise<string> => (await page.locator(selector).textContent()) ?? ''
  const rows = page.locator('#conn-rows > tr:not(.detail)')
  const row = (id: string) => page.locator(`#conn-rows > tr[data-id="${id}"]`)
  /** Resolves after the page's next successful poll (the "updated" time changes). */
  const nextPoll = async (): Promise<void> => {
    const before = await text('#live')
    await page.waitForFunction((b) => { const s = (globalThis as unknown as Dom).document.getElementById('live')!.textContent!; return s !== b && s.startsWith('Live') }, before, { timeout: STEP_MS })
  }

  const res = await page.goto(`${gw.url}/admin/ui`)
  assert.equal(res?.status(), 200)
  assert.equal(await page.title(), 'Tollgate admin')

  await t.test('a wrong token: a clear message, nothing stored, still on the sign-in form', async () => {
    await page.locator('#token').fill('not-the-token')
    await page.getByRole('button', { name: 'Sign in', exact: true }).click()
    await page.locator('#login-error').filter({ hasText: /Wrong admin token/ }).waitFor()
    assert.match(await text('#login-error'), /401 Unauthorized/)
    assert.equal(await page.locator('#dashboard').isHidden(), true)
    assert.equal(await page.evaluate(() => (globalThis as unknown as Dom).sessionStorage.length), 0)
    await page.screenshot({ path: join(artifacts, 'dashboard-wrong-token.png') })
  })

  await t.test('sign in: the connection a test client opened is listed, with counts by route', async () => {
    await page.locator('#token').fill(TOKEN)
    await page.getByRole('button', { name: 'Sign in', exact: true }).click()
    await row(aliceId).waitFor()
    assert.equal(await page.evaluate(() => (globalThis as unknown as Dom).sessionStorage.getItem('tollgate.adminToken')), TOKEN)
    assert.equal(await text('#total'), '62')
    const cells = await row(aliceId).locator('td').allTextContents()
    assert.equal(cells[1], '/chat')
    assert.equal(cells[2], 'alice')
    assert.equal(cells[3], '127.0.0.1')
    assert.equal(cells[4], up.url)
    assert.equal(await rows.count(), 62)
    assert.match(await text('#page-info'), /^Rows 1–62 of 62$/)
    const byRoute = await page.locator('#by-route li').allTextContents()
    assert.deepEqual(byRoute, ['/news41', '/chat21'])
    await page.locator('#up-rows .badge', { hasText: 'unhealthy' }).waitFor()
    assert.equal(await page.locator('#up-rows .badge', { hasText: /^healthy$/ }).count(), 2)
  })

  await t.test('refresh keeps the same row elements and the scroll position', async () => {
    await page.evaluate((id) => {
      const { document } = globalThis as unknown as Dom
      document.querySelector(`tr[data-id="${id}"]`)!.marker = 42
      document.getElementById('table-wrap')!.scrollTop = 300
    }, aliceId)
    await nextPoll()
    await nextPoll()
    assert.equal(await page.evaluate((id) => ((globalThis as unknown as Dom).document.querySelector(`tr[data-id="${id}"]`)!).marker, aliceId), 42)
    assert.equal(await page.evaluate(() => (globalThis as unknown as Dom).document.getElementById('table-wrap')!.scrollTop), 300)
    await page.evaluate(() => { (globalThis as unknown as Dom).document.getElementById('table-wrap')!.scrollTop = 0 })
    // Two polls in: the chart has a rate.
    assert.match(await text('#mps'), /^\d/)
    assert.match((await page.locator('#chart-mps').getAttribute('aria-label')) ?? '', /now \d/)
  })

  await t.test('paging and sorting', async () => {
    await page.getByLabel('Rows per page').selectOption('50')
    await page.locator('#page-info', { hasText: 'Rows 1–50 of 62' }).waitFor()
    await page.getByRole('button', { name: 'Next page', exact: true }).click()
    await page.locator('#page-info', { hasText: 'Rows 51–62 of 62' }).waitFor()
    await waitForRows(12)
    await page.getByRole('button', { name: 'Previous page', exact: true }).click()
    await waitForRows(50)
    await page.getByRole('button', { name: 'Msgs in', exact: true }).click()
    assert.equal(await page.locator('th[data-sort="messagesFromClient"]').getAttribute('aria-sort'), 'ascending')
    const counts = (await rows.evaluateAll((trs) => trs.map((tr) => Number(tr.children[8].textContent!.replace(/\D/g, '')))))
    assert.deepEqual(counts, [...counts].sort((a, b) => a - b))
    // Back to the default: oldest first.
    await page.getByRole('button', { name: 'Age', exact: true }).click()
    assert.equal(await page.locator('th[data-sort="age"]').getAttribute('aria-sort'), 'descending')
  })

  await t.test('filter by user, then by route', async () => {
    await page.getByLabel('User', { exact: true }).fill('alice')
    await waitForRows(1)
    assert.equal(await rows.first().getAttribute('data-id'), aliceId)
    assert.match(await text('#page-info'), /^Rows 1–1 of 1$/)
    // The chart and the total still count every connection.
    assert.equal(await text('#total'), '62')
    await page.getByLabel('User', { exact: true }).fill('')
    await page.getByLabel('Route', { exact: true }).fill('/chat')
    await waitForRows(21)
    assert.deepEqual(new Set(await rows.evaluateAll((trs) => trs.map((tr) => tr.children[1].textContent))), new Set(['/chat']))
    await page.getByLabel('User', { exact: true }).fill('nobody')
    await page.locator('#empty', { hasText: 'No connection matches the filter.' }).waitFor()
    await page.getByRole('button', { name: 'Clear filters', exact: true }).click()
    await waitForRows(50)
  })

  await t.test('send a message: the client receives it', async () => {
    await row(aliceId).getByRole('button', { name: /Send a message/ }).click()
    const input = page.getByLabel(`Message to ${aliceId.slice(0, 8)}`)
    assert.equal(await input.evaluate((e) => e === (globalThis as unknown as Dom).document.activeElement), true)
    const got = nextMessage(alice)
    await input.fill('hello from the dashboard')
    await page.getByRole('button', { name: 'Send', exact: true }).click()
    assert.deepEqual(await within(got, STEP_MS, 'the pushed message'), { data: Buffer.from('hello from the dashboard'), isBinary: false })
    await page.locator('tr.detail output', { hasText: /^Sent at/ }).waitFor()
    // The send box survives the next refresh.
    await nextPoll()
    assert.equal(await input.isVisible(), true)
    await page.screenshot({ path: join(artifacts, 'dashboard.png'), fullPage: true })
    if (process.env.UPDATE_SCREENSHOTS === '1') {
      mkdirSync(join(root, 'docs'), { recursive: true })
      await page.screenshot({ path: join(root, 'docs', 'dashboard.png'), fullPage: true })
    }
  })

  await t.test('close: asks first (cancel keeps it), then closes with 1008 and the row disappears', async () => {
    page.once('dialog', (d) => { void d.dismiss() })
    await row(carolId).getByRole('button', { name: /Close connection/ }).click()
    await nextPoll()
    assert.equal(await row(carolId).count(), 1)
    assert.equal(gw.app.connections.size, 62)

    let question = ''
    page.once('dialog', (d) => { question = d.message(); void d.accept() })
    const aliceClosed = closed(alice)
    await row(aliceId).getByRole('button', { name: /Close connection/ }).click()
    assert.deepEqual(await within(aliceClosed, STEP_MS, 'alice closed'), { code: 1008, reason: 'closed by administrator' })
    assert.match(question, new RegExp(`Close connection ${aliceId.slice(0, 8)} \\(/chat, alice\\)`))
    await row(aliceId).waitFor({ state: 'detached' })
    await page.locator('#notice', { hasText: `Closed connection ${aliceId.slice(0, 8)}.` }).waitFor()
    await page.locator('#total', { hasText: /^61$/ }).waitFor()
  })

  await t.test('the token only ever travels as a Bearer header, never in a URL; no CSP or script errors', async () => {
    const api = requests.filter((r) => /\/admin\/(connections|upstreams)|\/metrics$/.test(new URL(r.url()).pathname))
    assert.ok(api.length > 10)
    for (const r of requests) assert.ok(!r.url().includes(TOKEN), `token in ${r.url()}`)
    const withToken = api.filter((r) => r.headers().authorization === `Bearer ${TOKEN}`)
    assert.equal(api.length - withToken.length, 1, 'only the wrong-token sign-in went without the right token')
    assert.deepEqual(requests.map((r) => r.url()).filter((u) => !u.startsWith(`${gw.url}/`) && !u.startsWith('data:')), [], 'a request left the gateway')
    assert.deepEqual(pageErrors, [])
    // Chromium logs the rejected sign-in as a failed resource load; anything else is a bug.
    assert.deepEqual(consoleErrors.filter((m) => !/status of 401/.test(m)), [])
  })

  await t.test('the API going away: a banner, retries, and recovery', async () => {
    clearInterval(chatter)
    for (const ws of clients) ws.terminate()
    await waitFor(() => gw.app.connections.size === 0, 'registry empty', STEP_MS)
    await gw.close()
    await page.locator('#banner', { hasText: /Cannot reach the gateway admin API/ }).waitFor()
    assert.match(await text('#live'), /Offline/)
    await page.evaluate(() => { (globalThis as unknown as { scrollTo (x: number, y: number): void }).scrollTo(0, 0) })
    await page.screenshot({ path: join(artifacts, 'dashboard-offline.png') })
    const again = await buildGateway(config, { logger: false })
    t.after(() => again.close())
    await again.listen({ host: '127.0.0.1', port: gw.port })
    // Retries back off 2 s, 4 s...: the second one is within 6 s of the outage.
    await page.locator('#banner').waitFor({ state: 'hidden', timeout: 8000 })
    await page.locator('#total', { hasText: /^0$/ }).waitFor()
    await page.locator('#empty', { hasText: 'No open connections.' }).waitFor()
  })

  t.diagnostic(`dashboard browser test took ${Math.round(performance.now() - started)} ms`)

  async function waitForRows (n: number): Promise<void> {
    try {
      await page.waitForFunction((want) => (globalThis as unknown as Dom).document.querySelectorAll('#conn-rows > tr:not(.detail)').length === want, n, { timeout: STEP_MS })
    } catch (err) {
      throw new Error(`expected ${n} rows, have ${await rows.count()} (${await text('#page-info')}; ${await text('#live')})`, { cause: err })
    }
  }
})
