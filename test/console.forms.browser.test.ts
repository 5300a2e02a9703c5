/**
 * The console's forms, lists and session in Chromium, where the story of
 * console.browser.test.ts does not go: what an operator typed survives a refusal, an edit sends
 * only what changed, every action reports its own error, lists page past their first page and
 * keep what was loaded, Overview's Refresh reaches now, Logs keeps its page in the address, and
 * a sign-in in another tab does not break this one. Same browser setup as console.browser.test.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import { startGateway, type TestGateway } from './support/gateway.ts'
import { CHROMIUM, chromiumFor } from './support/chromium.ts'

/** Each test's bound: a page or two and their requests take 0.2-3 s alone, and over 5 s (bun's default) in loaded full runs. */
const SLOW = 30_000
const ADMIN_KEY = 'sluice-admin-forms-test-0123456789abcdef'
const HOUR = 3_600_000

const available = chromiumFor('test/console.forms.browser.test.ts')

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
    const hint = page.locator('#admin-key-hint')
    await hint.waitFor()
    expect(await hint.textContent()).toBe("Kept only in this browser's session cookie (HttpOnly, 2 hours).")
    await signIn(page)
  }, SLOW)

  test('a create or an edit the API refuses keeps what the operator typed', async () => {
    await admin('POST', '/admin/keys', { user_id: 'olga', name: 'plain' })
    await open(page, 'keys', 'Keys')
    await page.getByRole('button', { name: 'Create a key' }).click()
    await page.locator('#create-user').fill('nobody')
    await page.locator('#create-team').fill('ops')
    await page.locator('#create-name').fill('my important key')
    await page.locator('#create-rpm').fill('42')
    await page.locator('#create-budget-period').selectOption('month')
    await page.locator('#create-budget-tokens').fill('5000')
    await page.locator('#create-key input[name=scopes][value=chat]').check()
    await page.getByRole('button', { name: 'Create key' }).click()
    await page.locator('#create-key [role=alert]').filter({ hasText: 'No user with id "nobody"' }).waitFor()
    expect(await values(page, ['#create-user', '#create-team', '#create-name', '#create-rpm', '#create-budget-period', '#create-budget-tokens'])).toEqual(['nobody', 'ops', 'my important key', '42', 'month', '5000'])
    expect(await page.locator('#create-key input[name=scopes][value=chat]').isChecked()).toBe(true)

    await page.getByRole('button', { name: 'Edit plain' }).click()
    const dialog = page.getByRole('dialog', { name: 'Edit plain' })
    // The create form's error stays with the create form.
    expect(await dialog.getByRole('alert').count()).toBe(0)
    await dialog.getByLabel('Name', { exact: true }).fill('renamed')
    await dialog.getByLabel('Tokens per minute').fill('999')
    await dialog.getByLabel('Requests per minute').fill('99999999999')
    await dialog.getByRole('button', { name: 'Save changes' }).click()
    await dialog.getByRole('alert').filter({ hasText: 'limits.rpm' }).waitFor()
    // Beside the field the API's param names, which is focused and described by it; not again under the form.
    expect(await page.locator('#edit-rpm-error').textContent()).toContain('limits.rpm')
    expect(await dialog.getByRole('alert').count()).toBe(1)
    expect(await page.locator('#edit-rpm').getAttribute('aria-invalid')).toBe('true')
    expect((await page.locator('#edit-rpm').getAttribute('aria-describedby'))?.split(' ')).toContain('edit-rpm-error')
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('edit-rpm')
    expect(await values(page, ['#edit-name', '#edit-tpm', '#edit-rpm'])).toEqual(['renamed', '999', '99999999999'])
    expect(await page.locator('#create-key [role=alert]').count()).toBe(1)
    await dialog.getByRole('button', { name: 'Cancel' }).click()
    // Opened again, the dialog starts clean: no error left from last time.
    await page.getByRole('button', { name: 'Edit plain' }).click()
    expect(await dialog.getByRole('alert').count()).toBe(0)
    expect(await page.locator('#edit-name').inputValue()).toBe('plain')
    await dialog.getByRole('button', { name: 'Cancel' }).click()
  }, SLOW)

  test('a budget amount without a period is refused in the form, before anything is sent', async () => {
    await open(page, 'keys?status=active', 'Keys')
    await page.getByRole('button', { name: 'Create a key' }).click()
    await page.locator('#create-user').fill('olga')
    await page.locator('#create-name').fill('no period')
    await page.locator('#create-budget-tokens').fill('1000')
    const sent = changes.length
    await page.getByRole('button', { name: 'Create key' }).click()
    await page.locator('#create-budget-period-error').filter({ hasText: 'A budget needs a period' }).waitFor()
    expect(changes.slice(sent)).toEqual([])
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('create-budget-period')
  }, SLOW)

  test('an edit sends only the fields the operator changed; a USD budget below a cent can be changed', async () => {
    const key = await admin('POST', '/admin/keys', { user_id: 'olga', name: 'stale', limits: { rpm: 10 }, expires_at: '2030-06-01T12:34:56.789Z', budget: { usd: 0.125, period: 'day' } })
    await open(page, 'keys?user_id=olga', 'Keys')
    await page.getByRole('button', { name: 'Edit stale' }).waitFor()
    // Another operator changes the key while this page shows the old values.
    await admin('PATCH', `/admin/keys/${key.id}`, { limits: { rpm: 500, tpm: 100_000 }, scopes: ['chat'] })
    await page.getByRole('button', { name: 'Edit stale' }).click()
    const dialog = page.getByRole('dialog', { name: 'Edit stale' })
    await dialog.getByLabel('Name', { exact: true }).fill('stale renamed')
    const sent = changes.length
    await dialog.getByRole('button', { name: 'Save changes' }).click()
    await page.getByText('Key stale saved.').waitFor()
    expect(changes.slice(sent)).toEqual([`PATCH /admin/keys/${key.id} {"name":"stale renamed"}`])
    expect(await admin('GET', `/admin/keys/${key.id}`)).toMatchObject({
      name: 'stale renamed',
      limits: { rpm: 500, tpm: 100_000 },
      scopes: ['chat'],
      expires_at: '2030-06-01T12:34:56.789Z',
      budget: { usd: 0.125, period: 'day' },
    })

    await page.getByRole('button', { name: 'Edit stale renamed' }).click()
    await page.getByRole('dialog', { name: 'Edit stale renamed' }).getByLabel('USD').fill('0.0005')
    await page.getByRole('button', { name: 'Save changes' }).click()
    await page.getByText('Key stale renamed saved.').waitFor()
    expect((await admin('GET', `/admin/keys/${key.id}`)).budget).toEqual({ usd: 0.0005, period: 'day' })
  }, SLOW)

  test('a key with models: [] and scopes: [] (nothing allowed) is turned back into every model and endpoint, and back again', async () => {
    const key = await admin('POST', '/admin/keys', { user_id: 'olga', name: 'nothing', models: [], scopes: [] })
    await open(page, 'keys?user_id=olga', 'Keys')
    // Loaded afresh: the list then holds the key made through the API.
    await page.reload()
    const row = page.getByRole('row').filter({ hasText: 'nothing' })
    await row.waitFor()
    expect(await row.textContent()).toContain('models: none')
    await page.getByRole('button', { name: 'Edit nothing' }).click()
    const dialog = page.getByRole('dialog', { name: 'Edit nothing' })
    expect(await dialog.getByLabel('Only the models ticked').isChecked()).toBe(true)
    expect(await dialog.getByLabel('Only the scopes ticked').isChecked()).toBe(true)
    await dialog.getByLabel('Every model').check()
    await dialog.getByLabel('Every endpoint').check()
    let sent = changes.length
    await dialog.getByRole('button', { name: 'Save changes' }).click()
    await page.getByText('Key nothing saved.').waitFor()
    expect(changes.slice(sent)).toEqual([`PATCH /admin/keys/${key.id} {"scopes":null,"models":null}`])
    expect(await admin('GET', `/admin/keys/${key.id}`)).toMatchObject({ models: null, scopes: null })
    await row.getByText('models: all').waitFor()

    await page.getByRole('button', { name: 'Edit nothing' }).click()
    expect(await dialog.getByLabel('Every model').isChecked()).toBe(true)
    await dialog.getByLabel('Only the models ticked').check()
    sent = changes.length
    await dialog.getByRole('button', { name: 'Save changes' }).click()
    await page.getByText('Key nothing saved.').waitFor()
    expect(changes.slice(sent)).toEqual([`PATCH /admin/keys/${key.id} {"models":[]}`])
    expect(await admin('GET', `/admin/keys/${key.id}`)).toMatchObject({ models: [], scopes: null })
  }, SLOW)

  test('the unfiltered key list shows a key whose owner is disabled, or whose team is deleted, as refused, and why', async () => {
    await admin('POST', '/admin/users', { id: 'paul', name: 'Paul' })
    await admin('POST', '/admin/users', { id: 'rita', name: 'Rita' })
    await admin('POST', '/admin/teams', { id: 'gone', name: 'Gone' })
    await admin('POST', '/admin/teams/gone/members', { user_id: 'rita' })
    await admin('POST', '/admin/keys', { user_id: 'paul', name: 'paul key', expires_at: new Date(Date.now() + 86_400_000).toISOString() })
    await admin('POST', '/admin/keys', { user_id: 'rita', team_id: 'gone', name: 'rita team key' })
    await admin('POST', '/admin/keys', { user_id: 'rita', name: 'rita own key' })
    await admin('PATCH', '/admin/users/paul', { disabled: true })
    await admin('DELETE', '/admin/teams/gone')
    await open(page, 'keys', 'Keys')
    await page.reload()
    const status = (name: string) => page.getByRole('row').filter({ hasText: name }).locator('td[data-label="Status"]')
    await status('paul key').getByText('refused', { exact: true }).waitFor()
    expect(await status('paul key').textContent()).toContain('owner paul is disabled: every request is refused with invalid_user_for_key')
    // Its expiry changes nothing: not marked as expiring, and no rotation offered (the API would refuse it).
    expect(await status('paul key').textContent()).not.toContain('expiring')
    expect(await page.getByRole('button', { name: 'Rotate paul key' }).count()).toBe(0)
    expect(await status('rita team key').textContent()).toContain('team gone is deleted')
    expect(await status('rita own key').textContent()).toBe('active')
  }, SLOW)

  test('an action on Keys keeps the rows loaded with "Load more"', async () => {
    await admin('POST', '/admin/users', { id: 'many' })
    for (let i = 0; i < 52; i++) await admin('POST', '/admin/keys', { user_id: 'many', name: `many ${i}` })
    await open(page, 'keys?user_id=many', 'Keys')
    const rows = page.locator('tbody tr')
    await page.getByRole('button', { name: 'Load more keys' }).click()
    await page.getByRole('button', { name: 'Revoke many 0', exact: true }).waitFor()
    expect(await rows.count()).toBe(52)
    await page.getByRole('button', { name: 'Revoke many 0', exact: true }).click()
    await page.getByRole('dialog', { name: 'Revoke many 0?' }).getByRole('button', { name: 'Revoke key' }).click()
    await page.getByText('Key many 0 revoked.').waitFor()
    await page.getByRole('row', { name: /many 0\b/ }).getByText('revoked', { exact: true }).waitFor()
    expect(await rows.count()).toBe(52)
  }, 20_000)

  test('users past the first page are reached with "Load more"; cut suggestion lists say so', async () => {
    for (let i = 0; i < 505; i += 50) {
      await Promise.all(Array.from({ length: Math.min(50, 505 - i) }, (_, j) => admin('POST', '/admin/users', { id: `bulk${String(i + j).padStart(3, '0')}` })))
    }
    await open(page, 'people', 'Users and teams')
    const users = page.locator('section[aria-labelledby=users-title] tbody tr')
    await users.first().waitFor()
    const more = page.getByRole('button', { name: 'Load more users' })
    while (await more.count()) {
      const shown = await users.count()
      await more.click()
      await page.waitForFunction((n) => document.querySelectorAll('section[aria-labelledby=users-title] tbody tr').length > n, shown)
    }
    // Newest first: olga, created before the 505 others, is on the last page.
    expect(await users.count()).toBeGreaterThan(505)
    await page.getByRole('cell', { name: 'Olga olga' }).waitFor()

    await open(page, 'keys', 'Keys')
    await page.getByRole('button', { name: 'Create a key' }).click()
    await page.locator('#create-user-hint').filter({ hasText: 'Suggestions show the first 500 users only; type any id.' }).waitFor()
  }, 30_000)

  test("a refused delete reports once, in its dialog; a people action's error is not shown twice", async () => {
    await open(page, 'people', 'Users and teams')
    await page.getByRole('button', { name: 'Delete team ops' }).click()
    await admin('DELETE', '/admin/teams/ops')
    await page.getByRole('dialog', { name: 'Delete team ops?' }).getByRole('button', { name: 'Delete' }).click()
    await page.getByRole('dialog').getByRole('alert').waitFor()
    expect(await page.getByRole('alert').count()).toBe(1)
    await page.keyboard.press('Escape')
  })

  test("Overview's Refresh moves the period's end to now", async () => {
    // A context of its own: its clock is faked, and moved on while the page stays open.
    const own = await browser.newContext({ viewport: { width: 1366, height: 900 } })
    try {
      const p = await newPage(own)
      await p.clock.install()
      await signIn(p)
      await p.getByTestId('stat-requests').filter({ hasNotText: '…' }).waitFor()
      const later = Date.now() + 3 * 60_000
      await p.clock.setSystemTime(later)
      const asked = p.waitForRequest((r) => new URL(r.url()).pathname === '/admin/usage')
      await p.getByRole('button', { name: 'Refresh' }).click()
      const to = Date.parse(new URL((await asked).url()).searchParams.get('to') ?? '')
      expect(to).toBeGreaterThanOrEqual(later)
    } finally {
      await own.close()
    }
  })

  test('Logs: the page is in the address (Back and Reload keep it); ".." is looked up under /admin/logs', async () => {
    const key = await admin('POST', '/admin/keys', { user_id: 'olga', name: 'logged' })
    const call = (path: string, body?: unknown) =>
      fetch(`${gw.url}${path}`, { method: body ? 'POST' : 'GET', headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json' }, body: body ? JSON.stringify(body) : undefined }).then((r) => r.arrayBuffer())
    await call('/v1/chat/completions', { model: 'mock-gpt', messages: [{ role: 'user', content: 'older' }] })
    await Bun.sleep(5)
    await call('/v1/models')
    for (let i = 0; i < 80 && (await admin('GET', `/admin/logs?key_id=${key.id}`)).data.length < 2; i++) await Bun.sleep(100)

    await open(page, `logs?key_id=${key.id}&limit=1`, 'Logs')
    const row = page.locator('tbody tr')
    // Newest first, one a page: the models list, then the chat completion.
    await row.filter({ hasText: 'olga' }).waitFor()
    expect(await row.textContent()).not.toContain('mock-gpt')
    await page.getByRole('button', { name: 'Older' }).click()
    await row.filter({ hasText: 'mock-gpt' }).waitFor()
    expect(new URL(page.url()).hash).toMatch(/[?&]before=[A-Za-z0-9_-]+/)
    await page.reload()
    await row.filter({ hasText: 'mock-gpt' }).waitFor()
    await page.getByRole('button', { name: 'Newer' }).click()
    await page.waitForFunction(() => !location.hash.includes('before='))
    await row.filter({ hasNotText: 'mock-gpt' }).waitFor()
    await page.goBack()
    await row.filter({ hasText: 'mock-gpt' }).waitFor()

    const asked: string[] = []
    const listen = (r: { url(): string }) => asked.push(new URL(r.url()).pathname)
    page.on('request', listen)
    await page.getByLabel('Request id').fill('..')
    await page.getByRole('button', { name: 'Find' }).click()
    await page.getByRole('alert').filter({ hasText: 'No request log with id ".."' }).waitFor()
    page.off('request', listen)
    expect(asked.filter((p) => !p.startsWith('/admin/logs'))).toEqual([])
  }, 20_000)

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
    // Two tabs, four page loads and two sign-ins: past bun's 5 s on a busy machine (seen twice in full runs).
  }, 30_000)

  test('Logs: a row opens that request with every column, the filter kept', async () => {
    const key = await admin('POST', '/admin/keys', { user_id: 'olga', name: 'row details' })
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json', 'user-agent': 'row-details-agent/1.0' },
      body: JSON.stringify({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] }),
    })
    expect(res.status).toBe(404)
    const requestId = res.headers.get('x-request-id') ?? ''
    // Log rows are written in batches: wait for it through the API.
    for (let i = 0; i < 100 && (await admin('GET', `/admin/logs?key_id=${key.id}`)).data.length === 0; i++) await Bun.sleep(50)
    await open(page, `logs?key_id=${key.id}`, 'Logs')
    await page.getByRole('link', { name: `Details of ${requestId}` }).click()
    const detail = page.getByRole('region', { name: `Request ${requestId}` })
    await detail.waitFor()
    const text = (await detail.textContent()) ?? ''
    expect(text).toContain('model_not_found')
    expect(text).toContain('row-details-agent/1.0')
    const hash = new URLSearchParams(new URL(page.url()).hash.split('?')[1])
    expect(hash.get('key_id')).toBe(key.id)
    expect(hash.get('id')).toBe(requestId)
  }, SLOW)

  test('a session that ends in the middle of a form asks to sign in again over the page, and the form keeps what was typed', async () => {
    const own = await browser.newContext({ viewport: { width: 1366, height: 900 } })
    try {
      const p = await newPage(own)
      await signIn(p)
      await open(p, 'keys', 'Keys')
      await p.getByRole('button', { name: 'Create a key' }).click()
      await p.locator('#create-user').fill('olga')
      await p.locator('#create-name').fill('typed before the session ended')
      await p.locator('#create-rpm').fill('77')
      // The session cookie is gone, as when it expires.
      await own.clearCookies()
      await p.getByRole('button', { name: 'Create key' }).click()
      const again = p.getByRole('dialog', { name: 'Sign in again' })
      await again.getByText('Your session has ended. Sign in again.').waitFor()
      await again.getByLabel('Admin key').fill(ADMIN_KEY)
      await again.getByRole('button', { name: 'Sign in' }).click()
      await again.waitFor({ state: 'detached' })
      expect(await values(p, ['#create-user', '#create-name', '#create-rpm'])).toEqual(['olga', 'typed before the session ended', '77'])
      // The refusal was the sign-in's business: the form does not go on showing it.
      expect(await p.locator('#create-key [role=alert]').count()).toBe(0)
      await p.getByRole('button', { name: 'Create key' }).click()
      await p.getByRole('heading', { name: 'New key typed before the session ended for olga' }).waitFor()

      // A page opened while the session was gone asks again for its lists after the sign-in.
      await own.clearCookies()
      await p.getByRole('link', { name: 'Users and teams' }).click()
      await again.getByLabel('Admin key').fill(ADMIN_KEY)
      await again.getByRole('button', { name: 'Sign in' }).click()
      await again.waitFor({ state: 'detached' })
      await p.getByRole('table', { name: 'Users' }).getByRole('button', { name: /^Delete / }).first().waitFor()
      expect(await p.getByRole('alert').count()).toBe(0)
      // Signing out on purpose still leaves nothing of the page behind.
      await p.getByRole('button', { name: 'Sign out' }).click()
      await p.getByLabel('Admin key').waitFor()
      expect(await p.locator('#create-user').count()).toBe(0)
    } finally {
      await own.close()
    }
  }, SLOW)

  test('an expired key can be given a new expiry (and so work again) or be revoked from Keys', async () => {
    const lapsed = await admin('POST', '/admin/keys', { user_id: 'olga', name: 'lapsed', expires_at: new Date(Date.now() + 1_000).toISOString() })
    const gone = await admin('POST', '/admin/keys', { user_id: 'olga', name: 'lapsed too', expires_at: new Date(Date.now() + 1_000).toISOString() })
    await Bun.sleep(1_200)
    expect((await admin('GET', `/admin/keys/${lapsed.id}`)).status).toBe('expired')
    await open(page, 'keys?status=expired', 'Keys')
    await page.getByRole('button', { name: 'Edit lapsed', exact: true }).click()
    const dialog = page.getByRole('dialog', { name: 'Edit lapsed' })
    await dialog.getByLabel('Expires at').fill('2031-06-30T12:00')
    await dialog.getByRole('button', { name: 'Save changes' }).click()
    await page.getByText('Key lapsed saved.').waitFor()
    const extended = await admin('GET', `/admin/keys/${lapsed.id}`)
    expect(extended.status).toBe('active')
    expect(extended.expires_at).toBe(new Date('2031-06-30T12:00').toISOString())
    const check = await fetch(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${lapsed.key}` } })
    expect(check.status).toBe(200)

    // An expired key cannot be rotated (the API refuses it), but it can be revoked for good.
    expect(await page.getByRole('button', { name: 'Rotate lapsed too' }).count()).toBe(0)
    await page.getByRole('button', { name: 'Revoke lapsed too' }).click()
    await page.getByRole('dialog', { name: 'Revoke lapsed too?' }).getByRole('button', { name: 'Revoke key' }).click()
    await page.getByText('Key lapsed too revoked.').waitFor()
    expect((await admin('GET', `/admin/keys/${gone.id}`)).status).toBe('revoked')
  }, SLOW)

  test('a revoked key says when and why in the list: by the operator with a reason, or by a rotation', async () => {
    const left = await admin('POST', '/admin/keys', { user_id: 'olga', name: 'left the company' })
    await admin('POST', `/admin/keys/${left.id}/revoke`, { reason: 'Olga left; laptop not returned' })
    const old = await admin('POST', '/admin/keys', { user_id: 'olga', name: 'rotated away' })
    const successor = await admin('POST', `/admin/keys/${old.id}/rotate`, { grace_seconds: 0 })
    await open(page, 'keys?user_id=olga&status=revoked', 'Keys')
    const status = (name: string) => page.getByRole('row').filter({ hasText: name }).locator('td[data-label="Status"]')
    await status('left the company').getByText('Olga left; laptop not returned').waitFor()
    // When: relative, with the time itself on hover.
    expect(await status('left the company').locator('[title]').count()).toBe(1)
    expect(await status('rotated away').textContent()).toContain(`replaced by ${successor.id}`)
  }, SLOW)

  test("Keys of one owner or team say so when the owner is disabled or deleted, or the team deleted: those keys are refused", async () => {
    await admin('POST', '/admin/users', { id: 'leaver' })
    await admin('POST', '/admin/keys', { user_id: 'leaver', name: 'still active' })
    await admin('PATCH', '/admin/users/leaver', { disabled: true })
    await open(page, 'keys?user_id=leaver', 'Keys')
    await page.getByRole('status').filter({ hasText: 'User leaver is disabled' }).waitFor()
    expect(await page.getByRole('status').filter({ hasText: 'User leaver is disabled' }).textContent()).toContain('invalid_user_for_key')
    await admin('DELETE', '/admin/users/leaver')
    await open(page, 'keys?user_id=leaver&status=active', 'Keys')
    await page.getByRole('status').filter({ hasText: 'User leaver is deleted' }).waitFor()

    await admin('POST', '/admin/teams', { id: 'gone-team', name: 'Gone' })
    await admin('POST', '/admin/teams/gone-team/members', { user_id: 'olga' })
    await admin('POST', '/admin/keys', { user_id: 'olga', team_id: 'gone-team', name: 'team key' })
    await admin('DELETE', '/admin/teams/gone-team')
    await open(page, 'keys?team_id=gone-team', 'Keys')
    await page.getByRole('status').filter({ hasText: 'Team gone-team is deleted' }).waitFor()
    // An active owner: nothing said.
    await open(page, 'keys?user_id=olga', 'Keys')
    await page.getByRole('row').nth(1).waitFor()
    expect(await page.getByRole('status').filter({ hasText: 'User olga is' }).count()).toBe(0)
  })

  test('a long name without spaces wraps in its cell: the row actions stay in view', async () => {
    const long = `Ω${'ｘ'.repeat(60)}${'x'.repeat(139)}`
    await admin('POST', '/admin/teams', { id: 'longname', name: long })
    await admin('POST', '/admin/users', { id: 'longuser', name: long })
    await admin('POST', '/admin/keys', { user_id: 'longuser', name: long })
    /** How far a button reaches past the right edge of its table's box (0 when it is inside). */
    const overflow = (name: string) =>
      page.getByRole('button', { name, exact: true }).evaluate((button) => {
        const wrap = button.closest('.table-wrap')
        return wrap ? Math.max(0, button.getBoundingClientRect().right - wrap.getBoundingClientRect().right) : -1
      })
    await open(page, 'people', 'Users and teams')
    expect(await overflow('Delete team longname')).toBe(0)
    expect(await overflow('Delete longuser')).toBe(0)
    await open(page, 'keys?user_id=longuser', 'Keys')
    expect(await overflow(`Revoke ${long}`)).toBe(0)
    // Its dialogs keep their close button in view too.
    await page.getByRole('button', { name: `Edit ${long}`, exact: true }).click()
    const close = page.getByRole('dialog').getByRole('button', { name: 'Close' })
    expect(await close.evaluate((button) => button.getBoundingClientRect().right <= (button.closest('dialog')?.getBoundingClientRect().right ?? 0))).toBe(true)
    await close.click()
    await open(page, 'people', 'Users and teams')
    await page.getByRole('button', { name: 'Members of longname' }).click()
    const title = page.getByRole('heading', { name: `Members of ${long}` })
    expect(await title.evaluate((h) => h.scrollWidth <= h.clientWidth)).toBe(true)
  }, SLOW)

  test('Key doctor says what is left of each budget there is, the largest request now and the end of a grace period', async () => {
    const usd = await admin('POST', '/admin/keys', { user_id: 'olga', name: 'usd only', budget: { period: 'month', usd: 5 }, limits: { tpm: 300 } })
    await open(page, `doctor?key_id=${usd.id}`, 'Key doctor')
    const left = page.getByTestId('diagnosis').locator('dt:text-is("Left now") + dd')
    await left.waitFor()
    // No token budget: nothing about one, and never "budget ∞" beside the USD that is left.
    expect((await left.textContent())?.replace(/\s+/g, ' ').trim()).toBe('requests ∞, tokens 300, budget $5.00')
    const largest = page.getByTestId('diagnosis').locator('dt:text-is("Largest request") + dd')
    expect((await largest.textContent())?.trim()).toBe('300 tokens (prompt + max_tokens)')

    const old = await admin('POST', '/admin/keys', { user_id: 'olga', name: 'rotated out' })
    const rotated = await admin('POST', `/admin/keys/${old.id}/rotate`, { grace_seconds: 3600 })
    expect(rotated.key).toBeString()
    await open(page, `doctor?key_id=${old.id}`, 'Key doctor')
    const status = page.getByTestId('diagnosis').locator('dt:text-is("Status") + dd')
    await status.getByText('rotated: works until').waitFor()
  }, SLOW)

  test("Overview's daily charts label each bar with its UTC day, in a browser west of UTC too", async () => {
    const key = await admin('POST', '/admin/keys', { user_id: 'olga', name: 'charted' })
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'mock-gpt', messages: [{ role: 'user', content: 'hi' }] }),
    })
    expect(res.status).toBe(200)
    // New York: a UTC midnight is the evening before there.
    const own = await browser.newContext({ viewport: { width: 1366, height: 900 }, timezoneId: 'America/New_York', locale: 'en-US' })
    try {
      const p = await newPage(own)
      // The axes are drawn on a canvas: keep every text drawn.
      await p.addInitScript(() => {
        const drawn: string[] = []
        Object.assign(window, { drawn })
        const fillText = CanvasRenderingContext2D.prototype.fillText
        CanvasRenderingContext2D.prototype.fillText = function (text, x, y, maxWidth) {
          drawn.push(String(text))
          return maxWidth === undefined ? fillText.call(this, text, x, y) : fillText.call(this, text, x, y, maxWidth)
        }
      })
      await signIn(p)
      await p.getByTestId('stat-requests').filter({ hasNotText: '…' }).waitFor()
      await p.locator('.chart canvas').first().waitFor()
      const day = (ms: number) => new Date(ms).toLocaleDateString('en-US', { month: 'short', day: 'numeric', timeZone: 'UTC' })
      const drawn = await p.evaluate(() => (window as unknown as { drawn: string[] }).drawn)
      expect(drawn).toContain(day(Date.now()))
      expect(drawn).not.toContain(day(Date.now() - 86_400_000))
    } finally {
      await own.close()
    }
  })

  test('more keys expiring within 7 days than one page of the list: Keys does not give the page size as their number', async () => {
    await admin('POST', '/admin/users', { id: 'soon-owner' })
    const soon = new Date(Date.now() + 3 * 86_400_000).toISOString()
    const before = await admin('GET', '/admin/keys/expiring?within=7d&limit=500')
    expect(before.next_cursor).toBeNull()
    const missing = 501 - before.data.length
    for (let i = 0; i < missing; i += 50) {
      await Promise.all(Array.from({ length: Math.min(50, missing - i) }, (_, j) => admin('POST', '/admin/keys', { user_id: 'soon-owner', name: `soon ${i + j}`, expires_at: soon })))
    }
    await open(page, 'keys', 'Keys')
    const note = page.getByRole('status').filter({ hasText: 'within 7 days' })
    await note.waitFor()
    expect(await note.textContent()).toBe('More than 500 active keys expire within 7 days (highlighted).')
  }, 30_000)

  test('no errors in the page', () => {
    expect(pageErrors).toEqual([])
  })
})
