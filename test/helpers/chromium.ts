/**
 * Debian's Chromium driven by playwright-core, for the browser tests. CI installs it (.ci/run);
 * elsewhere a test without it is skipped, never silently passed.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { chromium, type Browser } from 'playwright-core'
import { within } from './resources.js'

export const CHROMIUM = '/usr/bin/chromium'

/** True when Chromium is installed; otherwise skips the test (and fails it under CI). */
export function haveChromium (t: { skip: (message?: string) => void }): boolean {
  if (existsSync(CHROMIUM)) return true
  if (process.env.CI !== undefined && process.env.CI !== '') assert.fail(`${CHROMIUM} is missing: CI must install it (apt-get install chromium)`)
  t.skip('chromium not installed: apt-get install chromium')
  return false
}

/** A headless Chromium, closed after the test. */
export async function launchChromium (t: { after: (fn: () => Promise<void>) => void }): Promise<Browser> {
  const browser = await within(chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    // A first start after the package is installed, on a machine busy with the rest of the
    // suite, has been seen to take more than 15 s.
    timeout: 45_000
  }), 46_000, 'chromium launch')
  t.after(() => browser.close())
  return browser
}
