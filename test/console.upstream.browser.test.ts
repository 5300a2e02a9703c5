/**
 * The console in Chromium against a gateway whose provider is a real HTTP mock upstream, with
 * traffic the test controls: Providers says which upstream model a key is cooling down for (it
 * serves its other models meanwhile); Overview's charts count in whole requests. Same browser
 * setup as console.browser.test.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { chromium, type Browser, type Page } from 'playwright-core'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { startGateway, upstreamConfig, type TestGateway } from './support/gateway.ts'
import { CHROMIUM, chromiumFor } from './support/chromium.ts'

const ADMIN_KEY = 'sluice-admin-providers-test-0123456789abcdef'

const available = chromiumFor('test/console.upstream.browser.test.ts')

describe.skipIf(!available)('console against a mock upstream in Chromium', () => {
  let upstream: MockUpstream
  let gw: TestGateway
  let browser: Browser
  let page: Page
  const pageErrors: string[] = []

  const admin = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${gw.url}${path}`, { method, headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) })
    const data = (await res.json()) as Record<string, any>
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(data)}`)
    return data
  }

  beforeAll(async () => {
    upstream = await startMockUpstream()
    gw = await startGateway(
      upstreamConfig(upstream.url, {
        // The mock answers every request for mock-fail-429 with a 429.
        models: [
          { name: 'mock-gpt', targets: [{ provider: 'up', model: 'mock-gpt' }] },
          { name: 'limited', targets: [{ provider: 'up', model: 'mock-fail-429' }] },
        ],
        plugins: ['auth', 'quota', 'tokens', 'balance', 'logging'],
      }),
      { env: { SLUICE_ADMIN_KEY: ADMIN_KEY } },
    )
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    })
    page = await (await browser.newContext({ viewport: { width: 1366, height: 900 } })).newPage()
    page.setDefaultTimeout(10_000)
    // The charts are drawn on a canvas: keep every text drawn.
    await page.addInitScript(() => {
      const drawn: string[] = []
      Object.assign(window, { drawn })
      const fillText = CanvasRenderingContext2D.prototype.fillText
      CanvasRenderingContext2D.prototype.fillText = function (text, x, y, maxWidth) {
        drawn.push(String(text))
        return maxWidth === undefined ? fillText.call(this, text, x, y) : fillText.call(this, text, x, y, maxWidth)
      }
    })
    page.on('pageerror', (error) => pageErrors.push(error.message))
    await page.goto(`${gw.url}/console`)
    await page.getByLabel('Admin key').fill(ADMIN_KEY)
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor()
  }, 60_000)

  afterAll(async () => {
    await browser?.close()
    await gw?.close()
    await upstream?.stop()
  })

  test('a key cooling down for one model says which, and that its other models are served', async () => {
    await admin('POST', '/admin/users', { id: 'ann' })
    const key = await admin('POST', '/admin/keys', { user_id: 'ann' })
    const call = (model: string) =>
      fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
      })
    expect((await call('limited')).status).toBeGreaterThanOrEqual(429)
    const health = await admin('GET', '/admin/providers/health')
    expect(health.data[0].cooling_models.map((c: { model: string }) => c.model)).toEqual(['mock-fail-429'])
    // The key still serves the other model.
    expect((await call('mock-gpt')).status).toBe(200)

    await page.goto(`${gw.url}/console#/providers`)
    await page.getByRole('heading', { level: 1, name: 'Providers' }).waitFor()
    const row = page.getByRole('row', { name: /up/ }).first()
    await row.getByText('cooling').first().waitFor()
    const backAt = row.locator('td[data-label="Back at"]')
    expect((await backAt.textContent()) ?? '').toContain('mock-fail-429: cooling until')
    expect((await backAt.textContent()) ?? '').toContain('its other models are served')
  })

  test("Overview's request chart counts in whole requests", async () => {
    // Two requests so far (one refused upstream): the axis goes 0, 1, 2, not 0, 0.5, 1, 1.5.
    // Log rows are written in batches: wait for both through the API.
    const requests = async () => ((await admin('GET', '/admin/usage?group_by=model')).data as { requests: number }[]).reduce((n, g) => n + g.requests, 0)
    for (let i = 0; i < 100 && (await requests()) < 2; i++) await Bun.sleep(50)
    expect(await requests()).toBe(2)
    await page.goto(`${gw.url}/console#/overview`)
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor()
    await page.getByTestId('stat-requests').filter({ hasText: '2' }).waitFor()
    await page.locator('.chart canvas').first().waitFor()
    const drawn = await page.evaluate(() => (window as unknown as { drawn: string[] }).drawn)
    expect(drawn).toContain('2')
    expect(drawn.filter((t) => /^\d+\.\d+$/.test(t))).toEqual([])
  })

  test('no errors in the page', () => {
    expect(pageErrors).toEqual([])
  })
})
