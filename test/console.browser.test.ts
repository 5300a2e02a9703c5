/**
 * The admin console in a real browser: headless Chromium (Debian's package, no browser
 * download) driven by playwright-core against a gateway listening on 127.0.0.1.
 *
 * The story: a wrong admin key is refused; sign in; create a user and a key; copy the key;
 * use it through the `openai` client; see the request in Logs and Overview; revoke the key;
 * the key doctor explains the refusal (key_revoked); a change without the CSRF token is
 * refused; sign out. Every page is saved as a screenshot at a laptop and a phone width
 * under test/artifacts/.
 *
 * Without /usr/bin/chromium the suite is skipped with a printed line; with CI set it fails.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import OpenAI from 'openai'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import { startGateway, type TestGateway } from './support/gateway.ts'
import { CHROMIUM, chromiumFor } from './support/chromium.ts'

const ADMIN_KEY = 'sluice-admin-browser-test-0123456789abcdef'
const ARTIFACTS = join(import.meta.dir, 'artifacts')
const LAPTOP = { width: 1366, height: 900 }
const PHONE = { width: 390, height: 844 }

const available = chromiumFor('test/console.browser.test.ts')

describe.skipIf(!available)('admin console in Chromium', () => {
  let gw: TestGateway
  let context: BrowserContext
  let page: Page
  let profile: string
  const pageErrors: string[] = []
  // Filled in as the story goes on.
  let plaintext = ''
  let keyId = ''
  let rotatedDemo = ''
  let csrf = ''

  const shot = async (name: string) => {
    await page.waitForLoadState('networkidle')
    await page.screenshot({ path: join(ARTIFACTS, `console-${name}.png`), fullPage: true })
  }
  const go = async (hash: string, heading: string) => {
    await page.goto(`${gw.url}/console#/${hash}`)
    await page.getByRole('heading', { level: 1, name: heading }).waitFor()
  }

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true })
    // Every built-in plugin (auth, quota, tokens, balance, logging) and the built-in mock model.
    gw = await startGateway({}, { env: { SLUICE_ADMIN_KEY: ADMIN_KEY } })
    profile = mkdtempSync(join(tmpdir(), 'sluice-chromium-'))
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: LAPTOP,
    })
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: gw.url })
    page = context.pages()[0] ?? (await context.newPage())
    // Fail a step within the test's own timeout, so one failure does not take the browser down with it.
    page.setDefaultTimeout(10_000)
    page.on('pageerror', (error) => pageErrors.push(error.message))
  }, 60_000)

  afterAll(async () => {
    await context?.close()
    await gw?.close()
    if (profile) rmSync(profile, { recursive: true, force: true })
  })

  test('the page and its assets come from the gateway itself, with a strict CSP', async () => {
    const res = await fetch(`${gw.url}/console`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-security-policy')).toContain("script-src 'self'")
    expect(res.headers.get('x-frame-options')).toBe('DENY')
    const html = await res.text()
    expect(html).not.toMatch(/https?:\/\//i)
    for (const [, path] of html.matchAll(/(?:src|href)="(\/console\/assets\/[^"]+)"/g)) {
      const asset = await fetch(`${gw.url}${path}`)
      expect({ path, status: asset.status }).toEqual({ path, status: 200 })
      expect(await asset.text()).not.toMatch(/(?:src|href)\s*=\s*["']https?:\/\//i)
    }
  })

  test('a wrong admin key is refused at sign-in with the API message', async () => {
    await page.goto(`${gw.url}/console`)
    await page.getByLabel('Admin key').fill('sluice-admin-wrong')
    await page.getByRole('button', { name: 'Sign in' }).click()
    await expect(page.getByRole('alert').textContent()).resolves.toContain('The admin key is wrong')
    expect(await context.cookies(gw.url)).toEqual([])
    await shot('login-laptop')
  })

  test('signing in sets an HttpOnly, SameSite=Strict session cookie and shows the overview', async () => {
    await page.getByLabel('Admin key').fill(ADMIN_KEY)
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor()
    const [cookie] = await context.cookies(gw.url)
    expect(cookie).toMatchObject({ name: gw.gateway.services.admin.sessions!.cookieName, httpOnly: true, sameSite: 'Strict', secure: false })
    expect(cookie!.name).toMatch(/^sluice_console_[0-9a-f]{8}$/)
    expect(cookie!.expires - Date.now() / 1000).toBeGreaterThan(7.9 * 3600)
    // The page cannot read the cookie; it holds only the CSRF token, from /console/session.
    expect(await page.evaluate(() => document.cookie)).toBe('')
    const session = await page.evaluate(() => fetch('/console/session').then((r) => r.json()))
    expect(session).toMatchObject({ authenticated: true, environment: 'dev' })
    csrf = session.csrf_token
    expect(csrf).toMatch(/^[A-Za-z0-9_-]{43}$/)
  })

  test('signing in to another gateway on this host (another port, another admin key) leaves this one signed in: cookies ignore ports', async () => {
    const otherKey = 'sluice-admin-browser-other-gateway-0123456789'
    const other = await startGateway({ plugins: ['auth'] }, { env: { SLUICE_ADMIN_KEY: otherKey } })
    const second = await context.newPage()
    try {
      second.setDefaultTimeout(10_000)
      await second.goto(`${other.url}/console`)
      await second.getByLabel('Admin key').fill(otherKey)
      await second.getByRole('button', { name: 'Sign in' }).click()
      await second.getByRole('heading', { level: 1, name: 'Overview' }).waitFor()
      // Both cookies are kept for 127.0.0.1, one per gateway.
      expect((await context.cookies(gw.url)).map((c) => c.name).filter((n) => n.startsWith('sluice_console')).length).toBe(2)
      await go('people', 'Users and teams')
      expect(await page.getByLabel('Admin key').count()).toBe(0)
      expect(await page.evaluate(() => fetch('/admin/users').then((r) => r.status))).toBe(200)
      // Signing out there clears that gateway's cookie alone.
      await second.getByRole('button', { name: 'Sign out' }).click()
      await second.getByLabel('Admin key').waitFor()
      expect((await context.cookies(gw.url)).map((c) => c.name)).toEqual([gw.gateway.services.admin.sessions!.cookieName])
      expect(await page.evaluate(() => fetch('/admin/users').then((r) => r.status))).toBe(200)
    } finally {
      await second.close()
      await other.close()
    }
  })

  test('create a user', async () => {
    await go('people', 'Users and teams')
    await page.getByLabel('Id (optional)').first().fill('alice')
    await page.getByLabel('Email').fill('alice@example.com')
    await page.getByLabel('Name', { exact: true }).first().fill('Alice Example')
    await page.getByRole('button', { name: 'Create user' }).click()
    await page.getByText('User alice created.').waitFor()
    await page.getByRole('cell', { name: /Alice Example/ }).waitFor()
    await shot('users-laptop')
  })

  test('create a key: the plaintext is shown once, with a warning, and the copy button copies it', async () => {
    await go('keys', 'Keys')
    await page.getByRole('button', { name: 'Create a key' }).click()
    await page.getByLabel('Owner (user id)').fill('alice')
    await page.getByLabel('Name', { exact: true }).fill('browser key')
    await page.getByRole('checkbox', { name: 'mock-gpt' }).check()
    await page.getByLabel('Requests per minute').fill('600')
    await page.getByRole('button', { name: 'Create key' }).click()
    const secret = page.getByRole('region', { name: /New key browser key for alice/ })
    await secret.waitFor()
    await expect(secret.textContent()).resolves.toContain('this is the only time it is shown')
    const shown = await page.getByLabel('New API key').inputValue()
    expect(shown).toMatch(/^sk-dev-[0-9A-Za-z]{32,}$/)
    await page.getByRole('button', { name: 'Copy key' }).click()
    await page.getByText('Copied to the clipboard.').waitFor()
    plaintext = await page.evaluate(() => navigator.clipboard.readText())
    expect(plaintext).toBe(shown)
    await shot('keys-created-laptop')
    await page.getByRole('button', { name: /I have stored it/ }).click()
    expect(await page.getByLabel('New API key').count()).toBe(0)
    // The list shows the new key, masked, with its owner and access.
    const row = page.getByRole('row', { name: /browser key/ })
    await row.waitFor()
    const rowText = (await row.textContent()) ?? ''
    expect(rowText).toContain('alice')
    expect(rowText).toContain(`${plaintext.slice(0, 12)}…${plaintext.slice(-4)}`)
    expect(rowText).not.toContain(plaintext)
    expect(rowText).toContain('models: mock-gpt')
    expect(rowText).toContain('600 req/min')
    keyId = ((await row.locator('.key-cell .muted.mono').textContent()) ?? '').trim()
    expect(keyId).toMatch(/^key_[0-9A-Za-z]+$/)
  })

  test('the copied key works through the openai client against the same gateway', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: plaintext, maxRetries: 0 })
    const reply = await client.chat.completions.create({ model: 'mock-gpt', messages: [{ role: 'user', content: 'Hello from the console test' }] })
    expect(reply.choices[0]?.message.content?.length).toBeGreaterThan(0)
    // One refusal too, so the overview has an error code to show.
    const refused = await client.chat.completions.create({ model: 'some-other-model', messages: [{ role: 'user', content: 'Hi' }] }).catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(OpenAI.APIError)
  })

  test('the request appears in Logs (filtered by the key) and in the Overview', async () => {
    await go(`logs?key_id=${keyId}`, 'Logs')
    // Log rows are written in batches off the response path: poll for them.
    const ok = page.getByRole('row').filter({ hasText: 'mock-gpt' }).filter({ hasText: '200' })
    for (let i = 0; i < 40 && (await ok.count()) === 0; i++) {
      await Bun.sleep(250)
      await page.getByRole('button', { name: 'Newest' }).click()
    }
    expect(await ok.count()).toBe(1)
    expect(await page.getByLabel('Key id').inputValue()).toBe(keyId)
    await shot('logs-laptop')
    // The refusal is logged too (before a key was accepted, so under no key id): filter by its code.
    await go('logs?code=model_not_allowed', 'Logs')
    await page.getByRole('row').filter({ hasText: 'some-other-model' }).filter({ hasText: '403' }).waitFor()
    expect(await page.getByLabel('Error code').inputValue()).toBe('model_not_allowed')

    await go('overview', 'Overview')
    await page.getByTestId('stat-requests').filter({ hasText: /^[1-9]/ }).waitFor()
    // Top keys names the key, its shortened form and id after it.
    const topKeys = page.getByRole('region', { name: 'Top keys' })
    await topKeys.getByRole('link', { name: 'browser key' }).waitFor()
    expect(await topKeys.getByRole('link', { name: 'browser key' }).getAttribute('href')).toBe(`#/logs?key_id=${keyId}`)
    expect(await topKeys.getByRole('row').filter({ hasText: 'browser key' }).textContent()).toContain(`${plaintext.slice(0, 12)}…${plaintext.slice(-4)} · ${keyId}`)
    await page.getByRole('region', { name: 'Top models' }).getByRole('link', { name: 'mock-gpt' }).waitFor()
    await page.locator('.hbars').getByText('model_not_allowed').waitFor()
    expect(await page.locator('.chart canvas').count()).toBeGreaterThanOrEqual(3)
    await shot('overview-laptop')
  })

  test('a request a client quotes by its x-request-id is found on the Logs page, every column shown', async () => {
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${plaintext}`, 'content-type': 'application/json', 'user-agent': 'console-lookup/1.0' },
      body: JSON.stringify({ model: 'mock-gpt', messages: [{ role: 'user', content: 'Find me' }] }),
    })
    expect(res.status).toBe(200)
    await res.arrayBuffer()
    const requestId = res.headers.get('x-request-id')!
    // The row is written in a batch off the response path: wait for it through the API, then look it up.
    for (let i = 0; i < 80; i++) {
      const found = await fetch(`${gw.url}/admin/logs/${requestId}`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } })
      await found.arrayBuffer()
      if (found.status === 200) break
      await Bun.sleep(100)
    }
    await go('logs', 'Logs')
    await page.getByLabel('Request id').fill(requestId)
    // The page renders again (the list reloaded, as when its answer comes after the typing): what
    // was typed stays. Before, the input was bound to the address and lost it, and Find did nothing.
    const reloaded = page.waitForResponse((r) => r.url().includes('/admin/logs?'))
    await page.getByRole('button', { name: 'Newest' }).click()
    await reloaded
    await Bun.sleep(100)
    await page.getByRole('button', { name: 'Find' }).click()
    const detail = page.getByRole('region', { name: `Request ${requestId}` })
    await detail.waitFor()
    const text = (await detail.textContent()) ?? ''
    for (const part of ['200', 'chat.completions', keyId, 'mock-gpt', 'console-lookup/1.0', '127.0.0.1']) expect(text).toContain(part)
    await shot('logs-request-laptop')
    // An id never answered: the API's own explanation.
    await page.getByLabel('Request id').fill('req_never_answered')
    await page.getByRole('button', { name: 'Find' }).click()
    await page.getByRole('alert').filter({ hasText: 'No request log with id "req_never_answered"' }).waitFor()
  }, 30_000)

  test('change a key (scopes, limits, budget) and rotate it with a grace period', async () => {
    await go('keys?user_id=usr_demo', 'Keys')
    await page.getByRole('button', { name: 'Edit demo' }).click()
    const edit = page.getByRole('dialog', { name: 'Edit demo' })
    await edit.getByRole('checkbox', { name: 'chat' }).check()
    await edit.getByLabel('Tokens per minute').fill('5000')
    await edit.getByLabel('Period').selectOption('month')
    await edit.getByLabel('USD').fill('12.5')
    await shot('keys-edit-laptop')
    await edit.getByRole('button', { name: 'Save changes' }).click()
    await page.getByText('Key demo saved.').waitFor()
    const row = page.getByRole('row', { name: /demo/ })
    await row.getByText('scopes: chat').waitFor()
    expect(await row.textContent()).toContain('5,000 tokens/min')
    expect(await row.textContent()).toContain('$12.50 per month')

    await page.getByRole('button', { name: 'Rotate demo' }).click()
    const rotate = page.getByRole('dialog', { name: 'Rotate demo' })
    await rotate.getByLabel('Grace period').selectOption({ label: '1 hour' })
    await rotate.getByRole('button', { name: 'Rotate key' }).click()
    await page.getByRole('region', { name: /Rotated: the new key of demo/ }).waitFor()
    const fresh = await page.getByLabel('New API key').inputValue()
    expect(fresh).toMatch(/^sk-dev-/)
    rotatedDemo = fresh
    await page.getByRole('button', { name: /I have stored it/ }).click()
    // The old key keeps working for the grace period and says so; the new one has the same settings.
    await page.getByText(/rotated; works until/).waitFor()
    expect(await page.getByRole('row', { name: /demo/ }).filter({ hasText: 'scopes: chat' }).count()).toBe(2)
    const models = await new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: fresh, maxRetries: 0 }).models.list().catch((e: unknown) => e)
    // The new key carries the old one's scopes: chat only, so listing models is refused.
    expect((models as InstanceType<typeof OpenAI.APIError>).code).toBe('insufficient_permissions')
  })

  test("a key's quota: what its limits and budget have left, refilled and reset from the dialog", async () => {
    // Both keys of the demo rotation chain (they share its counts) get 3 requests a minute and a token budget.
    const admin = { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' }
    const keys = (await (await fetch(`${gw.url}/admin/keys?user_id=usr_demo`, { headers: admin })).json()) as { data: { id: string; name: string | null }[] }
    const demo = keys.data.filter((k) => k.name === 'demo')
    expect(demo).toHaveLength(2)
    for (const k of demo) {
      const res = await fetch(`${gw.url}/admin/keys/${k.id}`, { method: 'PATCH', headers: admin, body: JSON.stringify({ limits: { rpm: 3, tpm: 5000 }, budget: { tokens: 100_000, usd: 12.5, period: 'month' } }) })
      expect(res.status).toBe(200)
    }
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: rotatedDemo, maxRetries: 0 })
    const reply = await client.chat.completions.create({ model: 'mock-gpt', messages: [{ role: 'user', content: 'Count me' }] })
    const used = reply.usage!.total_tokens
    expect(used).toBeGreaterThan(0)

    await go('keys?user_id=usr_demo', 'Keys')
    await page.getByRole('button', { name: 'Quota of demo' }).first().click()
    const dialog = page.getByRole('dialog', { name: 'Quota of demo' })
    // One request of 3 taken: back in 20 s.
    await dialog.getByText(/^2 of 3 left, full again in \d+ seconds$/).waitFor()
    await dialog.getByText(`${used.toLocaleString('en-US')} of 100,000 tokens spent`).waitFor()
    expect(await dialog.textContent()).toContain('this month (UTC)')
    expect(await dialog.textContent()).toContain('with every key of its rotation chain')
    await shot('keys-quota-laptop')
    await dialog.getByRole('button', { name: 'Refill rate limits' }).click()
    await dialog.getByText('The rate limits of demo reset.').waitFor()
    await dialog.getByText('3 of 3 left', { exact: true }).waitFor()
    // The budget is kept by a refill, and reset by its own button.
    expect(await dialog.textContent()).toContain(`${used.toLocaleString('en-US')} of 100,000 tokens spent`)
    await dialog.getByRole('button', { name: 'Reset budget spend' }).click()
    await dialog.getByText('The budget spend of demo reset.').waitFor()
    await dialog.getByText('0 of 100,000 tokens spent').waitFor()
    await dialog.getByRole('button', { name: 'Close' }).click()
   }, 30_000)

  test('a key that expires within 7 days is highlighted', async () => {
    const soon = new Date(Date.now() + 3 * 86_400_000).toISOString()
    const later = new Date(Date.now() + 30 * 86_400_000).toISOString()
    for (const [name, expires_at] of [['soon key', soon], ['later key', later]]) {
      const res = await fetch(`${gw.url}/admin/keys`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' }, body: JSON.stringify({ user_id: 'alice', name, expires_at }) })
      expect(res.status).toBe(201)
    }
    await go('keys?user_id=alice', 'Keys')
    await page.getByText(/1 active key expires within 7 days/).waitFor()
    const soonRow = page.getByRole('row', { name: /soon key/ })
    expect(await soonRow.getAttribute('class')).toContain('expiring')
    await soonRow.getByText('expiring', { exact: true }).waitFor()
    expect(await page.getByRole('row', { name: /later key/ }).getAttribute('class')).not.toContain('expiring')
    await shot('keys-laptop')
  })

  test('revoke the key; the client is refused; the key doctor explains key_revoked', async () => {
    await go('keys', 'Keys')
    await page.getByRole('button', { name: 'Revoke browser key' }).click()
    const dialog = page.getByRole('dialog', { name: 'Revoke browser key?' })
    await dialog.getByLabel('Reason (optional)').fill('browser test')
    await dialog.getByRole('button', { name: 'Revoke key' }).click()
    await page.getByText('Key browser key revoked.').waitFor()
    await page.getByRole('row', { name: /browser key/ }).getByText('revoked', { exact: true }).waitFor()

    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: plaintext, maxRetries: 0 })
    const refused = await client.chat.completions.create({ model: 'mock-gpt', messages: [{ role: 'user', content: 'Hi' }] }).catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(OpenAI.AuthenticationError)
    expect((refused as InstanceType<typeof OpenAI.APIError>).code).toBe('key_revoked')

    await page.getByRole('link', { name: 'Diagnose browser key' }).click()
    const diagnosis = page.getByTestId('diagnosis')
    await diagnosis.waitFor()
    const text = (await diagnosis.textContent()) ?? ''
    expect(text).toContain('Refused')
    expect(text).toContain('HTTP 401')
    expect(text).toContain('key_revoked')
    expect(text).toContain('browser test')
    expect(text).toContain('alice')
    await shot('doctor-laptop')

    // Pasting the key gives the same answer.
    await page.getByRole('radio', { name: 'Paste a key' }).check()
    await page.getByLabel('API key').fill(plaintext)
    await page.getByLabel('Model (optional)').fill('mock-gpt')
    await page.getByRole('button', { name: 'Diagnose' }).click()
    await page.getByTestId('diagnosis').getByText('key_revoked').first().waitFor()
  })

  test("the key's changes are on the Audit page: created and revoked, with the reason, by the console", async () => {
    await go('keys', 'Keys')
    await page.getByRole('link', { name: 'Changes to browser key' }).click()
    await page.getByRole('heading', { level: 1, name: 'Audit' }).waitFor()
    expect(await page.getByLabel('Object id').inputValue()).toBe(keyId)
    const revoked = page.getByRole('row').filter({ hasText: 'key.revoke' })
    await revoked.waitFor()
    expect(await revoked.textContent()).toContain('reason: browser test')
    // Made in the console, so by `console`; the admin API's own calls are by `admin`.
    expect(await revoked.locator('td').last().textContent()).toBe('console')
    await page.getByRole('row').filter({ hasText: 'key.create' }).waitFor()
    // Newest first: the revocation above the creation; nothing about other objects.
    const actions = await page.locator('tbody tr').evaluateAll((rows) => rows.map((r) => r.querySelector('code')?.textContent))
    expect(actions).toEqual(['key.revoke', 'key.create'])
    await shot('audit-laptop')
    // Every change of a kind: a prefix.
    await page.getByLabel('Object id').fill('')
    await page.getByLabel('Action').fill('user.')
    await page.getByRole('button', { name: 'Filter' }).click()
    await page.getByRole('row').filter({ hasText: 'user.create' }).first().waitFor()
    expect(await page.getByRole('row').filter({ hasText: 'key.' }).count()).toBe(0)
   }, 30_000)

  test('providers page shows each provider key and its health', async () => {
    await go('providers', 'Providers')
    const row = page.getByRole('row', { name: /mock/ }).first()
    await row.getByText('healthy').waitFor()
    await shot('providers-laptop')
  })

  test('a change without the CSRF token is refused with 403 insufficient_permissions', async () => {
    const attempt = await page.evaluate(async () => {
      const res = await fetch('/admin/users', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id: 'mallory' }) })
      return { status: res.status, body: await res.json() }
    })
    expect(attempt.status).toBe(403)
    expect(attempt.body.error).toMatchObject({ code: 'insufficient_permissions', type: 'permission_error' })
    expect(attempt.body.error.message).toContain('x-sluice-csrf')
    // A wrong token is no better; the right one works; reads need none.
    const wrong = await page.evaluate(() => fetch('/admin/users', { method: 'POST', headers: { 'content-type': 'application/json', 'x-sluice-csrf': 'x'.repeat(43) }, body: '{"id":"mallory"}' }).then((r) => r.status))
    expect(wrong).toBe(403)
    const right = await page.evaluate((token) => fetch('/admin/users', { method: 'POST', headers: { 'content-type': 'application/json', 'x-sluice-csrf': token }, body: '{"id":"bob"}' }).then((r) => r.status), csrf)
    expect(right).toBe(201)
    expect(await page.evaluate(() => fetch('/admin/users/mallory').then((r) => r.status))).toBe(404)
  })

  test('every page reads well at a phone width', async () => {
    await page.setViewportSize(PHONE)
    for (const [hash, heading, name] of [
      ['overview', 'Overview', 'overview'],
      ['keys', 'Keys', 'keys'],
      ['people', 'Users and teams', 'users'],
      [`doctor?key_id=${keyId}`, 'Key doctor', 'doctor'],
      ['providers', 'Providers', 'providers'],
      [`logs?key_id=${keyId}`, 'Logs', 'logs'],
      [`audit?target_id=${keyId}`, 'Audit', 'audit'],
    ] as const) {
      await go(hash, heading)
      if (name === 'doctor') await page.getByTestId('diagnosis').waitFor()
      // Nothing wider than the screen: no sideways scrolling.
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth)
      expect({ page: name, overflow }).toEqual({ page: name, overflow: 0 })
      await shot(`${name}-phone`)
    }
    await page.setViewportSize(LAPTOP)
  }, 60_000)

  test('the console is usable from the keyboard: a skip link, then the page links in order', async () => {
    // A fresh load: focus starts at the top of the document.
    await go('overview', 'Overview')
    await page.reload()
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor()
    await page.keyboard.press('Tab')
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Skip to content')
    await page.keyboard.press('Tab')
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Overview')
    await page.keyboard.press('Tab')
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Keys')
    await page.keyboard.press('Enter')
    await page.getByRole('heading', { level: 1, name: 'Keys' }).waitFor()
    // Focus moves to the new page's heading (in an effect, after the page has painted).
    await page.waitForFunction(() => document.activeElement?.tagName === 'H1', undefined, { timeout: 3000 }).catch(() => {})
    expect(await page.evaluate(() => document.activeElement?.tagName)).toBe('H1')
  })

  test('sign out ends the session everywhere: the old cookie no longer opens the admin API', async () => {
    const [cookie] = await context.cookies(gw.url)
    await page.getByRole('button', { name: 'Sign out' }).click()
    await page.getByLabel('Admin key').waitFor()
    expect(await context.cookies(gw.url)).toEqual([])
    const replay = await fetch(`${gw.url}/admin/keys`, { headers: { cookie: `${cookie!.name}=${cookie!.value}` } })
    expect(replay.status).toBe(401)
    expect(((await replay.json()) as { error: { code: string } }).error.code).toBe('invalid_admin_key')
    expect(pageErrors).toEqual([])
  })
})
