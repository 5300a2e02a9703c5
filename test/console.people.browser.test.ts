/**
 * Editing users and teams in the console, in Chromium: a user's name and email, a team's name,
 * and the models, limits and budget of each, set and cleared through the page and checked in
 * what the admin API stores; an API refusal is shown beside the field its `param` names. Same
 * browser setup as console.browser.test.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { chromium, type Browser, type Page } from 'playwright-core'
import { startGateway, upstreamConfig, type TestGateway } from './support/gateway.ts'
import { CHROMIUM, chromiumFor } from './support/chromium.ts'

const ADMIN_KEY = 'sluice-admin-people-test-0123456789abcdef'

const available = chromiumFor('test/console.people.browser.test.ts')

describe.skipIf(!available)('console: editing users and teams in Chromium', () => {
  let gw: TestGateway
  let browser: Browser
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
  const stored = async (path: string) => {
    const { name, email, models, limits, budget } = await admin('GET', path)
    return { name, email, models, limits, budget }
  }
  const openPeople = async () => {
    // Loaded afresh: the lists then hold what the test made through the API.
    await page.goto(`${gw.url}/console#/people`)
    await page.reload()
    await page.getByRole('heading', { level: 1, name: 'Users and teams' }).waitFor()
  }

  beforeAll(async () => {
    // No request goes upstream: the provider is only there to have two models to choose from.
    // The default plugins (auth, quota), not upstreamConfig's none.
    const { plugins: _none, ...config } = upstreamConfig('http://127.0.0.1:9/v1')
    config.models = [
      { name: 'mock-gpt', targets: [{ provider: 'up', model: 'mock-gpt' }] },
      { name: 'mock-mini', targets: [{ provider: 'up', model: 'mock-mini' }] },
    ]
    gw = await startGateway(config, { env: { SLUICE_ADMIN_KEY: ADMIN_KEY } })
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    })
    const context = await browser.newContext({ viewport: { width: 1366, height: 900 } })
    page = await context.newPage()
    page.setDefaultTimeout(10_000)
    page.on('pageerror', (error) => pageErrors.push(error.message))
    page.on('request', (r) => {
      if (r.method() !== 'GET' && new URL(r.url()).pathname.startsWith('/admin/')) changes.push(`${r.method()} ${new URL(r.url()).pathname} ${r.postData() ?? ''}`)
    })
    await page.goto(`${gw.url}/console`)
    await page.getByLabel('Admin key').fill(ADMIN_KEY)
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor()
  }, 60_000)

  afterAll(async () => {
    await browser?.close()
    await gw?.close()
  })

  test("a user is renamed and given models, limits and a budget; the edit sends only what changed and the list shows it", async () => {
    await admin('POST', '/admin/users', { id: 'ana', name: 'Ana', email: 'ana@example.com', models: ['mock-gpt'], limits: { rpm: 10, tpm: 1000 }, budget: { tokens: 5000, period: 'month' } })
    await openPeople()
    await page.getByRole('button', { name: 'Edit ana' }).click()
    const dialog = page.getByRole('dialog', { name: 'Edit user Ana' })
    await dialog.waitFor()
    expect(await dialog.getByLabel('Name', { exact: true }).inputValue()).toBe('Ana')
    expect(await dialog.getByLabel('Requests per minute').inputValue()).toBe('10')
    expect(await dialog.getByLabel('mock-gpt').isChecked()).toBe(true)
    expect(await dialog.getByLabel('mock-mini').isChecked()).toBe(false)
    await dialog.getByLabel('Name', { exact: true }).fill('Ana Lima')
    await dialog.getByLabel('mock-mini').check()
    await dialog.getByLabel('Requests per minute').fill('20')
    await dialog.getByLabel('USD').fill('2.5')
    const sent = changes.length
    await dialog.getByRole('button', { name: 'Save changes' }).click()
    await page.getByRole('status').filter({ hasText: 'User Ana saved.' }).waitFor()
    // The email was not touched: not sent, so a change made meanwhile elsewhere stays.
    expect(changes.slice(sent)).toEqual([
      'PATCH /admin/users/ana {"name":"Ana Lima","models":["mock-gpt","mock-mini"],"limits":{"rpm":20,"tpm":1000},"budget":{"period":"month","tokens":5000,"usd":2.5}}',
    ])
    expect(await stored('/admin/users/ana')).toEqual({
      name: 'Ana Lima', email: 'ana@example.com', models: ['mock-gpt', 'mock-mini'], limits: { rpm: 20, tpm: 1000 }, budget: { tokens: 5000, usd: 2.5, period: 'month' },
    })
    expect(await dialog.isVisible()).toBe(false)
    // The list is asked again and shows the new values.
    const row = page.getByRole('row').filter({ hasText: 'Ana Lima' })
    await row.getByText('20 req/min').waitFor()
    expect(await row.textContent()).toContain('models: mock-gpt, mock-mini')
  })

  test("a user's name, email, models, limits and budget are cleared (null) through the page", async () => {
    await admin('POST', '/admin/users', { id: 'bo', name: 'Bo', email: 'bo@example.com', models: ['mock-gpt'], limits: { max_parallel: 3 }, budget: { usd: 9, period: 'day' } })
    await openPeople()
    await page.getByRole('button', { name: 'Edit bo' }).click()
    const dialog = page.getByRole('dialog', { name: 'Edit user Bo' })
    await dialog.getByLabel('Name', { exact: true }).fill('')
    await dialog.getByLabel('Email').fill('')
    await dialog.getByLabel('Every model').check()
    await dialog.getByLabel('Requests in flight').fill('')
    await dialog.getByLabel('Period').selectOption('')
    await dialog.getByLabel('USD').fill('')
    await dialog.getByRole('button', { name: 'Save changes' }).click()
    await page.getByRole('status').filter({ hasText: 'User Bo saved.' }).waitFor()
    expect(await stored('/admin/users/bo')).toEqual({ name: null, email: null, models: null, limits: null, budget: null })
    // Without a name or email the row shows the id alone.
    const row = page.getByRole('row').filter({ has: page.getByText('bo', { exact: true }) })
    await row.getByText('limits: none').waitFor()
    expect(await row.textContent()).toContain('models: all')
    expect(await row.textContent()).toContain('budget: none')
  })

  test('a team is renamed and its models, limits and budget set, then cleared', async () => {
    await admin('POST', '/admin/teams', { id: 'ops', name: 'Ops' })
    await openPeople()
    // Its members shown meanwhile: their heading follows the new name.
    await page.getByRole('button', { name: 'Members of ops' }).click()
    await page.getByRole('heading', { name: 'Members of Ops' }).waitFor()
    await page.getByRole('button', { name: 'Edit team ops' }).click()
    let dialog = page.getByRole('dialog', { name: 'Edit team Ops' })
    await dialog.getByLabel('Name', { exact: true }).fill('Operations')
    await dialog.getByLabel('mock-mini').check()
    await dialog.getByLabel('Tokens per minute').fill('50000')
    await dialog.getByLabel('Requests in flight').fill('4')
    await dialog.getByLabel('Period').selectOption('week')
    await dialog.getByLabel('Tokens', { exact: true }).fill('100000')
    await dialog.getByRole('button', { name: 'Save changes' }).click()
    await page.getByRole('status').filter({ hasText: 'Team Ops saved.' }).waitFor()
    expect(await stored('/admin/teams/ops')).toEqual({
      name: 'Operations', email: undefined, models: ['mock-mini'], limits: { tpm: 50000, max_parallel: 4 }, budget: { tokens: 100000, period: 'week' },
    })
    const row = page.getByRole('row').filter({ hasText: 'Operations' })
    await row.getByText('4 in flight').waitFor()
    await page.getByRole('heading', { name: 'Members of Operations' }).waitFor()

    // Saved untouched: nothing is sent.
    await page.getByRole('button', { name: 'Edit team ops' }).click()
    let sent = changes.length
    await page.getByRole('dialog', { name: 'Edit team Operations' }).getByRole('button', { name: 'Save changes' }).click()
    await page.getByRole('status').filter({ hasText: 'Nothing changed in team Operations.' }).waitFor()
    expect(changes.slice(sent)).toEqual([])

    await page.getByRole('button', { name: 'Edit team ops' }).click()
    dialog = page.getByRole('dialog', { name: 'Edit team Operations' })
    await dialog.getByLabel('Every model').check()
    await dialog.getByLabel('Tokens per minute').fill('')
    await dialog.getByLabel('Requests in flight').fill('')
    await dialog.getByLabel('Period').selectOption('')
    await dialog.getByLabel('Tokens', { exact: true }).fill('')
    sent = changes.length
    await dialog.getByRole('button', { name: 'Save changes' }).click()
    await page.getByRole('status').filter({ hasText: 'Team Operations saved.' }).waitFor()
    expect(changes.slice(sent)).toEqual(['PATCH /admin/teams/ops {"models":null,"limits":null,"budget":null}'])
    expect(await stored('/admin/teams/ops')).toEqual({ name: 'Operations', email: undefined, models: null, limits: null, budget: null })
    await row.getByText('limits: none').waitFor()
  })

  test("the API's refusal shows beside the field its param names, the field focused and described by it; what was typed stays", async () => {
    await admin('POST', '/admin/users', { id: 'cy', name: 'Cy' })
    await admin('POST', '/admin/users', { id: 'dee', email: 'dee@example.com' })
    await openPeople()
    // By keyboard: the row's Edit button, then the dialog's fields.
    await page.getByRole('button', { name: 'Edit cy' }).focus()
    await page.keyboard.press('Enter')
    const dialog = page.getByRole('dialog', { name: 'Edit user Cy' })
    await dialog.waitFor()
    await dialog.getByLabel('Tokens per minute').fill('700')
    await dialog.getByLabel('Requests per minute').fill('99999999999')
    await dialog.getByRole('button', { name: 'Save changes' }).click()
    const error = page.locator('#edit-user-rpm-error')
    await error.waitFor()
    expect(await error.getAttribute('role')).toBe('alert')
    expect(await error.textContent()).toContain('limits.rpm')
    // Only there: not again under the form.
    expect(await dialog.getByRole('alert').count()).toBe(1)
    const rpm = page.locator('#edit-user-rpm')
    expect(await rpm.getAttribute('aria-invalid')).toBe('true')
    expect((await rpm.getAttribute('aria-describedby'))?.split(' ')).toContain('edit-user-rpm-error')
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('edit-user-rpm')
    expect(await page.locator('#edit-user-tpm').inputValue()).toBe('700')
    expect(await stored('/admin/users/cy')).toEqual({ name: 'Cy', email: null, models: null, limits: null, budget: null })

    // Fixed, the same dialog saves.
    await rpm.fill('60')
    await dialog.getByRole('button', { name: 'Save changes' }).click()
    await page.getByRole('status').filter({ hasText: 'User Cy saved.' }).waitFor()
    expect((await stored('/admin/users/cy')).limits).toEqual({ rpm: 60, tpm: 700 })

    // A refusal about no one field (another user has that email) shows under the form.
    await page.getByRole('button', { name: 'Edit cy' }).click()
    expect(await dialog.getByRole('alert').count()).toBe(0)
    await dialog.getByLabel('Email').fill('dee@example.com')
    await dialog.getByRole('button', { name: 'Save changes' }).click()
    await dialog.getByRole('alert').filter({ hasText: 'dee@example.com' }).waitFor()
    expect(await dialog.getByRole('alert').count()).toBe(1)
    // Escape closes the dialog and sends nothing.
    const sent = changes.length
    await page.keyboard.press('Escape')
    await dialog.waitFor({ state: 'hidden' })
    expect(changes.slice(sent)).toEqual([])
    expect((await stored('/admin/users/cy')).email).toBeNull()
  })

  test('models: [] (no model) and null (every model) are both offered, and each turns into the other; ticking a model chooses "only"', async () => {
    await admin('POST', '/admin/users', { id: 'eve', name: 'Eve', models: [] })
    await admin('POST', '/admin/teams', { id: 'qa', name: 'QA', models: [] })
    await openPeople()
    for (const [kind, id, name, path] of [['user', 'eve', 'Eve', '/admin/users/eve'], ['team', 'qa', 'QA', '/admin/teams/qa']] as const) {
      const row = page.getByRole('row').filter({ hasText: name })
      expect(await row.textContent()).toContain('models: none')
      await page.getByRole('button', { name: kind === 'user' ? `Edit ${id}` : `Edit team ${id}` }).click()
      const dialog = page.getByRole('dialog', { name: `Edit ${kind} ${name}` })
      expect(await dialog.getByLabel('Only the models ticked').isChecked()).toBe(true)
      expect(await dialog.getByLabel('Every model').isChecked()).toBe(false)
      expect(await dialog.getByLabel('mock-gpt').isChecked()).toBe(false)
      await dialog.getByLabel('Every model').check()
      let sent = changes.length
      await dialog.getByRole('button', { name: 'Save changes' }).click()
      await page.getByRole('status').filter({ hasText: `${kind === 'user' ? 'User' : 'Team'} ${name} saved.` }).waitFor()
      expect(changes.slice(sent)).toEqual([`PATCH ${path} {"models":null}`])
      expect((await stored(path)).models).toBeNull()
      await row.getByText('models: all').waitFor()

      // Back to no model: "only", nothing ticked.
      await page.getByRole('button', { name: kind === 'user' ? `Edit ${id}` : `Edit team ${id}` }).click()
      expect(await dialog.getByLabel('Every model').isChecked()).toBe(true)
      await dialog.getByLabel('Only the models ticked').check()
      sent = changes.length
      await dialog.getByRole('button', { name: 'Save changes' }).click()
      await page.getByRole('status').filter({ hasText: `${kind === 'user' ? 'User' : 'Team'} ${name} saved.` }).waitFor()
      expect(changes.slice(sent)).toEqual([`PATCH ${path} {"models":[]}`])
      expect((await stored(path)).models).toEqual([])
      await row.getByText('models: none').waitFor()
    }
    // Ticking a model under "every" chooses "only"; choosing "every" again clears the ticks.
    await page.getByRole('button', { name: 'Edit eve' }).click()
    const dialog = page.getByRole('dialog', { name: 'Edit user Eve' })
    await dialog.getByLabel('Every model').check()
    await dialog.getByLabel('mock-mini').check()
    expect(await dialog.getByLabel('Only the models ticked').isChecked()).toBe(true)
    await dialog.getByLabel('Every model').check()
    expect(await dialog.getByLabel('mock-mini').isChecked()).toBe(false)
    await dialog.getByLabel('mock-gpt').check()
    await dialog.getByRole('button', { name: 'Save changes' }).click()
    await page.getByRole('status').filter({ hasText: 'User Eve saved.' }).waitFor()
    expect((await stored('/admin/users/eve')).models).toEqual(['mock-gpt'])
  })

  test('no errors in the page', () => {
    expect(pageErrors).toEqual([])
  })
})
