/**
 * The Swagger UI in Chromium, opened by a host name as an operator would (not localhost, where
 * Swagger UI skips its online validator): it renders every operation, asks nothing of any other
 * host, and its Content-Security-Policy blocks nothing it needs.
 *
 * Without /usr/bin/chromium the suite is skipped with a printed line; with CI set it fails.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext } from 'playwright-core'
import { startGateway, type TestGateway } from './support/gateway.ts'
import { CHROMIUM, chromiumFor } from './support/chromium.ts'

const HOST = 'sluice-docs.test'

const available = chromiumFor('test/docs.browser.test.ts')

describe.skipIf(!available)('Swagger UI in Chromium', () => {
  let gw: TestGateway
  let context: BrowserContext
  let profile: string

  beforeAll(async () => {
    gw = await startGateway({}, { env: { SLUICE_ADMIN_KEY: 'sluice-docs-browser-admin-key-0123456789' } })
    profile = mkdtempSync(join(tmpdir(), 'sluice-chromium-docs-'))
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--host-resolver-rules=MAP ${HOST} 127.0.0.1`],
    })
  }, 60_000)

  afterAll(async () => {
    await context?.close()
    await gw?.close()
    if (profile) rmSync(profile, { recursive: true, force: true })
  })

  test('opened by a host name, it renders the operations with no request off the gateway and no CSP violation', async () => {
    const port = new URL(gw.url).port
    const outside: string[] = []
    // Every request that would leave the gateway is listed and aborted: nothing reaches the internet.
    await context.route('**/*', (route) => {
      const url = new URL(route.request().url())
      if (url.hostname === HOST && url.port === port) return route.continue()
      outside.push(url.href)
      return route.abort()
    })
    const page = await context.newPage()
    const messages: string[] = []
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') messages.push(m.text())
    })
    page.on('pageerror', (e) => messages.push(e.message))
    await page.goto(`http://${HOST}:${port}/swagger`)
    await page.locator('.opblock').first().waitFor({ timeout: 15_000 })
    expect(await page.locator('.opblock').count()).toBeGreaterThan(30)
    // Try it out reaches the gateway (connect-src 'self').
    await page.locator('.opblock-summary-path', { hasText: /^\/health$/ }).first().click()
    await page.locator('button.try-out__btn').first().click()
    await page.locator('button.execute').first().click()
    await page.locator('.live-responses-table tbody .response-col_status').first().waitFor({ timeout: 10_000 })
    expect(await page.locator('.live-responses-table tbody .response-col_status').first().innerText()).toBe('200')
    await page.waitForLoadState('networkidle')
    expect(outside).toEqual([])
    expect(await page.locator('img[alt="Online validator badge"]').count()).toBe(0)
    expect(messages.filter((m) => /Content Security Policy/i.test(m))).toEqual([])
    await page.close()
  }, 60_000)

  test("Try it out on a paged list sends no page size of its own: GET /admin/users answers 200, where the form held limit 0 and the gateway refused it", async () => {
    const port = new URL(gw.url).port
    const page = await context.newPage()
    await page.goto(`http://${HOST}:${port}/swagger`)
    await page.locator('.opblock').first().waitFor({ timeout: 15_000 })
    // The admin key, as an operator gives it through Authorize.
    await page.locator('button.authorize').first().click()
    const adminScheme = page.locator('.auth-container', { hasText: 'admin' }).filter({ hasText: 'The admin key' })
    await adminScheme.locator('input').fill('sluice-docs-browser-admin-key-0123456789')
    await adminScheme.locator('button.authorize').click()
    await page.locator('button.close-modal').click()
    const block = page.locator('.opblock-get', { has: page.locator('.opblock-summary-path', { hasText: /^\/admin\/users$/ }) }).first()
    await block.locator('.opblock-summary').click()
    await block.locator('button.try-out__btn').click()
    expect(await block.locator('tr[data-param-name="limit"] input').inputValue()).toBe('')
    await block.locator('button.execute').click()
    await block.locator('.live-responses-table tbody .response-col_status').first().waitFor({ timeout: 10_000 })
    expect(await block.locator('.live-responses-table tbody .response-col_status').first().innerText()).toBe('200')
    // The admin key stays in the page's memory: not written to the origin's storage, where it would
    // outlive the tab, the browser and a console sign-out, for any script of the origin to read.
    const stored = await page.evaluate(() => JSON.stringify({ local: { ...localStorage }, session: { ...sessionStorage } }))
    expect(stored).not.toContain('sluice-docs-browser-admin-key-0123456789')
    await page.close()
  }, 60_000)
})
