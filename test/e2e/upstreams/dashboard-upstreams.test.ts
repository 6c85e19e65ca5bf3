/**
 * The dashboard's upstream targets panel in headless Chromium (as test/e2e/dashboard.test.ts:
 * Debian's /usr/bin/chromium, skipped visibly when missing, a failure under CI): targets with
 * weight, state, source and connections; Drain and Activate; Rebalance shows its dry run for
 * confirmation, a declined one closes nothing, a confirmed one closes the surplus (1012).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { Dialog, Page } from 'playwright-core'
import { gatewayFor } from '../../helpers/gateway.js'
import { haveChromium, launchChromium } from '../../helpers/chromium.js'
import { ADMIN, admin, namedUpstream, spread, targetsOf, trackedMany, waitFor } from './live-helpers.js'

const STEP_MS = 5000

test('dashboard: upstream targets with weight and state; drain, activate, rebalance after a dry run', { timeout: 45_000 }, async (t) => {
  if (!haveChromium(t)) return
  const a = await namedUpstream(t, 'a')
  const b = await namedUpstream(t, 'b')
  const gw = await gatewayFor(t, {
    upstreams: { chat: { targets: [a.url] } },
    routes: [{ prefix: '/chat', upstream: 'chat' }],
    admin: { token: ADMIN }
  })
  const clients = await trackedMany(`${gw.wsUrl}/chat`, 8)
  t.after(() => { for (const c of clients) c.ws.terminate() })
  await admin(gw.url, 'POST', '/upstreams/chat/targets', { url: b.url, weight: 3 })
  const idB = `127.0.0.1:${b.port}`

  const browser = await launchChromium(t)
  const page: Page = await (await browser.newContext({ viewport: { width: 1400, height: 900 }, locale: 'en-GB', timezoneId: 'UTC' })).newPage()
  page.setDefaultTimeout(STEP_MS)
  const pageErrors: string[] = []
  page.on('pageerror', (e) => pageErrors.push(e.message))
  await page.goto(`${gw.url}/admin/ui`)
  await page.locator('#token').fill(ADMIN)
  await page.getByRole('button', { name: 'Sign in', exact: true }).click()

  const rowOf = (url: string) => page.locator('#up-rows > tr', { has: page.locator('td.upstream', { hasText: url }) })
  await rowOf(b.url).waitFor()
  const cells = async (url: string): Promise<string[]> => (await rowOf(url).locator('td').allTextContents()).map((s) => s.trim())
  // Upstream, target, weight, state, source, health, open, in flight, balance, last error, action.
  assert.deepEqual((await cells(a.url)).slice(1, 7), [a.url, '1', 'active', 'config', 'unchecked', '8'])
  assert.deepEqual((await cells(b.url)).slice(1, 7), [b.url, '3', 'active', 'admin', 'unchecked', '0'])

  // Drain b from the page: the gateway stops sending it new connections.
  await page.getByRole('button', { name: `Drain target ${idB} of chat` }).click()
  await page.locator('#up-notice', { hasText: `${idB} is now drain` }).waitFor()
  await waitFor(async () => (await cells(b.url))[3] === 'drain', 'the drained state shown')
  assert.equal((await targetsOf(gw.url)).find((x) => x.id === idB)!.state, 'drain')
  assert.deepEqual(spread(await trackedMany(`${gw.wsUrl}/chat`, 2)).a, 2)
  await page.getByRole('button', { name: `Activate target ${idB} of chat` }).click()
  await waitFor(async () => (await cells(b.url))[3] === 'active', 'the active state shown')

  // Rebalance: the dry run is shown in the confirmation; declining closes nothing.
  const dialogs: string[] = []
  let accept = false
  page.on('dialog', (d: Dialog) => { dialogs.push(d.message()); void (accept ? d.accept() : d.dismiss()) })
  // The page rebalances connections at least 60 s old: none is here, so it says so and asks nothing.
  await page.getByRole('button', { name: 'Rebalance upstream chat' }).click()
  await page.locator('#up-notice', { hasText: 'Nothing to close' }).waitFor()
  assert.deepEqual(dialogs, [])
  // Make the connections old enough for the page's rebalance, as an hour-old deployment's are.
  for (const bridge of gw.app.connections.values()) (bridge as unknown as { connectedAt: number }).connectedAt -= 3_600_000
  await page.getByRole('button', { name: 'Rebalance upstream chat' }).click()
  await page.locator('#up-notice', { hasText: 'cancelled' }).waitFor()
  assert.equal(dialogs.length, 1)
  assert.match(dialogs[0], /^Rebalance chat\?\n\nWould close 7 of 10 connections/)
  assert.ok(clients.every((c) => c.code === null), 'declined: nothing closed')
  accept = true
  await page.getByRole('button', { name: 'Rebalance upstream chat' }).click()
  await page.locator('#up-notice', { hasText: /^Closing 7 of 10/ }).waitFor()
  await waitFor(() => clients.filter((c) => c.code === 1012).length === 7, 'seven connections closed with 1012')
  assert.deepEqual(pageErrors, [])
})
