/**
 * Failed admin keys per client address: a wrong bearer key on /admin/* and a wrong key at the
 * console's sign-in share one limit (10, then one more every 6 s); a client out of attempts gets
 * 429 rate_limit_exceeded with Retry-After, even with the right key, until it has one again. Right
 * keys take nothing from it, a console session is not held back, nor is the client API.
 */
import { afterEach, describe, expect, test } from 'bun:test'
import { startGateway, type TestGateway } from './support/gateway.ts'
import { expectError } from './support/http.ts'

const ADMIN_KEY = 'sluice-failed-attempts-admin-key-0123456789'
const WRONG = 'sluice-failed-attempts-wrong-key-0123456789'

let clock = Date.parse('2030-01-01T00:00:00Z')
let gw: TestGateway
afterEach(() => gw?.close())

const boot = async (server: { trusted_proxies?: number } = {}) => {
  gw = await startGateway({ plugins: [{ use: 'auth', options: { demo_key: false } }], server }, { env: { SLUICE_ADMIN_KEY: ADMIN_KEY }, gateway: { now: () => clock } })
  return gw
}
const users = (key: string, headers: Record<string, string> = {}) => fetch(`${gw.url}/admin/users`, { headers: { authorization: `Bearer ${key}`, ...headers } })
const signIn = (key: string) => fetch(`${gw.url}/console/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ admin_key: key }) })

describe('failed admin keys per client address', () => {
  test('ten wrong bearer keys are 401; the eleventh, and then the right key too, 429 with Retry-After until an attempt comes back', async () => {
    await boot()
    for (let i = 0; i < 10; i++) await expectError(await users(WRONG), 'invalid_admin_key')
    const limited = await users(WRONG)
    const error = await expectError(limited, 'rate_limit_exceeded')
    expect(error.message).toContain('Too many wrong admin keys')
    expect(limited.headers.get('retry-after')).toBe('6')
    // The right key is not looked at meanwhile: a guess that hits would otherwise stand out.
    const right = await users(ADMIN_KEY)
    await expectError(right, 'rate_limit_exceeded')
    clock += 3000
    expect((await users(ADMIN_KEY)).headers.get('retry-after')).toBe('3')
    clock += 3000
    expect((await users(ADMIN_KEY)).status).toBe(200)
    // One attempt came back, no more: the next wrong key spends it.
    await expectError(await users(WRONG), 'invalid_admin_key')
    await expectError(await users(WRONG), 'rate_limit_exceeded')
    // A minute gives them all back.
    clock += 60_000
    for (let i = 0; i < 10; i++) await expectError(await users(WRONG), 'invalid_admin_key')
    await expectError(await users(WRONG), 'rate_limit_exceeded')
  })

  test('Swagger documents the 429 on every admin operation', async () => {
    await boot()
    const spec = (await (await fetch(`${gw.url}/swagger/json`)).json()) as { paths: Record<string, Record<string, { responses?: Record<string, { description?: string }> }>> }
    for (const [path, operation] of [['/admin/users', 'get'], ['/admin/keys', 'post'], ['/admin/keys/{id}', 'patch']] as const) {
      expect({ path, doc: spec.paths[path]?.[operation]?.responses?.['429']?.description }).toEqual({ path, doc: expect.stringContaining('rate_limit_exceeded') })
    }
  })

  test('right keys take nothing: many of them, then ten wrong ones, are all answered as such', async () => {
    await boot()
    for (let i = 0; i < 30; i++) expect((await users(ADMIN_KEY)).status).toBe(200)
    for (let i = 0; i < 10; i++) await expectError(await users(WRONG), 'invalid_admin_key')
    await expectError(await users(WRONG), 'rate_limit_exceeded')
  })

  test('no key, or a header of the wrong form, is no guess: it takes nothing', async () => {
    await boot()
    for (let i = 0; i < 20; i++) await expectError(await fetch(`${gw.url}/admin/users`), 'invalid_admin_key')
    for (let i = 0; i < 20; i++) await expectError(await fetch(`${gw.url}/admin/users`, { headers: { authorization: 'Basic abc' } }), 'invalid_admin_key')
    expect((await users(ADMIN_KEY)).status).toBe(200)
    for (let i = 0; i < 10; i++) await expectError(await users(WRONG), 'invalid_admin_key')
  })

  test('X-Forwarded-For is not read by default: a client does not escape the limit by writing one', async () => {
    await boot()
    for (let i = 0; i < 10; i++) await expectError(await users(WRONG, { 'x-forwarded-for': `203.0.113.${i}` }), 'invalid_admin_key')
    await expectError(await users(WRONG, { 'x-forwarded-for': '203.0.113.99' }), 'rate_limit_exceeded')
  })

  test('behind trusted_proxies, each client counts by the address the outermost proxy saw, which it cannot choose', async () => {
    await boot({ trusted_proxies: 1 })
    // The proxy appends what it saw; what the client wrote before it changes nothing.
    for (let i = 0; i < 10; i++) await expectError(await users(WRONG, { 'x-forwarded-for': `6.6.6.${i}, 198.51.100.1` }), 'invalid_admin_key')
    await expectError(await users(WRONG, { 'x-forwarded-for': '7.7.7.7, 198.51.100.1' }), 'rate_limit_exceeded')
    // Another client through the same proxy is not held back.
    expect((await users(ADMIN_KEY, { 'x-forwarded-for': '198.51.100.2' })).status).toBe(200)
    await expectError(await users(WRONG, { 'x-forwarded-for': '198.51.100.2' }), 'invalid_admin_key')
  })

  test("the console's sign-in shares the limit; a session signed in before still works, and so does the client API", async () => {
    await boot()
    const before = await signIn(ADMIN_KEY)
    expect(before.status).toBe(200)
    const cookie = (before.headers.get('set-cookie') ?? '').split(';')[0]!
    for (let i = 0; i < 5; i++) await expectError(await signIn(WRONG), 'invalid_admin_key')
    for (let i = 0; i < 5; i++) await expectError(await users(WRONG), 'invalid_admin_key')
    const refused = await signIn(ADMIN_KEY)
    const error = await expectError(refused, 'rate_limit_exceeded')
    expect(error.param).toBeNull()
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0)
    await expectError(await users(ADMIN_KEY), 'rate_limit_exceeded')
    // A session is no guess at the key: it goes on.
    expect((await fetch(`${gw.url}/admin/users`, { headers: { cookie } })).status).toBe(200)
    // The client API never looks at this limit.
    await expectError(await fetch(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${WRONG}` } }), 'invalid_api_key')
    expect((await fetch(`${gw.url}/health`)).status).toBe(200)
  })

  test("a page of another site cannot spend a visitor's attempts: the sign-in takes JSON only, which a browser sends across sites only with the gateway's leave (it gives none)", async () => {
    await boot()
    // What a form or a no-cors fetch of any web page may send without a preflight: text/plain, a form's types.
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', null]) {
      for (let i = 0; i < 11; i++) {
        const res = await fetch(`${gw.url}/console/login`, { method: 'POST', headers: type === null ? {} : { 'content-type': type }, body: JSON.stringify({ admin_key: WRONG }) })
        const error = await expectError(res, 'invalid_request')
        expect(error.message).toContain('application/json')
      }
    }
    // Nothing was counted: the visitor still signs in, and its bearer key works.
    expect((await signIn(ADMIN_KEY)).status).toBe(200)
    expect((await users(ADMIN_KEY)).status).toBe(200)
    // JSON with its parameters is JSON.
    const withCharset = await fetch(`${gw.url}/console/login`, { method: 'POST', headers: { 'content-type': 'Application/JSON; charset=utf-8' }, body: JSON.stringify({ admin_key: ADMIN_KEY }) })
    expect(withCharset.status).toBe(200)
  })

  test("the console's preflight grants no other site: a cross-site JSON sign-in is never sent by a browser", async () => {
    await boot()
    const res = await fetch(`${gw.url}/console/login`, { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' } })
    expect(res.headers.get('access-control-allow-origin')).toBeNull()
  })
})
