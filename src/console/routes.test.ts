/**
 * The console's server side without a browser: the page and its assets, sign-in, the
 * session cookie on the admin API (reads with the cookie, changes with the CSRF header too),
 * the bearer path unchanged, sign-out across instances, expiry, and the console turned off.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLocalBus } from '../lib/bus.ts'
import { startGateway, type TestGateway } from '../../test/support/gateway.ts'
import { createTestPostgresDatabase, postgresUrlForTests } from '../../test/support/services.ts'
import { CSRF_HEADER, SESSION_COOKIE_PREFIX } from './session.ts'

const postgresUrl = await postgresUrlForTests('src/console/routes.test.ts')

const ADMIN_KEY = 'sluice-admin-console-routes-0123456789'
const ENCRYPTION_KEY = Buffer.alloc(32, 9).toString('base64')
const BASE = 'http://gw.test'
const HOUR = 3_600_000

let clock = Date.parse('2030-01-01T00:00:00Z')
const env = { SLUICE_ADMIN_KEY: ADMIN_KEY, SLUICE_ENCRYPTION_KEY: ENCRYPTION_KEY }

async function boot(options: { env?: Record<string, string>; bus?: ReturnType<typeof createLocalBus>; config?: Record<string, unknown> } = {}): Promise<TestGateway> {
  return startGateway(
    { plugins: ['auth', 'balance'], ...options.config },
    { env: { ...env, ...options.env }, listen: false, gateway: { now: () => clock, ...(options.bus && { services: { bus: options.bus } }) } },
  )
}

const call = (gw: TestGateway, path: string, init: RequestInit & { headers?: Record<string, string> } = {}) => gw.gateway.handle(new Request(BASE + path, init))

async function signIn(gw: TestGateway, headers: Record<string, string> = {}): Promise<{ cookie: string; csrf: string; setCookie: string }> {
  const res = await call(gw, '/console/login', { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ admin_key: ADMIN_KEY }) })
  expect(res.status).toBe(200)
  const setCookie = res.headers.get('set-cookie') ?? ''
  const body = (await res.json()) as { csrf_token: string }
  return { cookie: setCookie.split(';')[0]!, csrf: body.csrf_token, setCookie }
}

const errorOf = async (res: Response) => ((await res.json()) as { error: { code: string; message: string; type: string } }).error

let gw: TestGateway
beforeAll(async () => {
  gw = await boot()
})
afterAll(() => gw.close())

describe('page and assets', () => {
  test('GET /console is the HTML shell with a strict CSP, linking hashed local assets', async () => {
    for (const path of ['/console', '/console/']) {
      const res = await call(gw, path)
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toStartWith('text/html')
      expect(res.headers.get('content-security-policy')).toContain("default-src 'none'; script-src 'self'")
      expect(res.headers.get('content-security-policy')).toContain("frame-ancestors 'none'")
      expect(res.headers.get('cache-control')).toBe('no-store')
      const html = await res.text()
      expect(html).toMatch(/<script type="module" src="\/console\/assets\/app-[0-9a-z]+\.js"><\/script>/)
      expect(html).not.toMatch(/https?:\/\//)
    }
  })

  test('assets are served from memory, cacheable forever, with an ETag; unknown ones are 404 in the envelope', async () => {
    const html = await (await call(gw, '/console')).text()
    const [script, style] = [/src="([^"]+\.js)"/.exec(html)![1]!, /href="([^"]+\.css)"/.exec(html)![1]!]
    const js = await call(gw, script)
    expect(js.status).toBe(200)
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8')
    expect(js.headers.get('cache-control')).toContain('immutable')
    expect((await js.text()).length).toBeGreaterThan(20_000)
    const css = await call(gw, style)
    expect(css.headers.get('content-type')).toBe('text/css; charset=utf-8')
    expect(await css.text()).toContain('.uplot')
    const again = await call(gw, script, { headers: { 'if-none-match': js.headers.get('etag')! } })
    expect(again.status).toBe(304)
    const missing = await call(gw, '/console/assets/nope.js')
    expect(missing.status).toBe(404)
    expect((await errorOf(missing)).code).toBe('not_found')
  })

  test('the console routes stay out of the OpenAPI document', async () => {
    const doc = (await (await call(gw, '/swagger/json')).json()) as { paths: Record<string, unknown> }
    expect(Object.keys(doc.paths).filter((p) => p.startsWith('/console'))).toEqual([])
  })
})

describe('sign-in', () => {
  test('a wrong admin key is 401 invalid_admin_key and sets no cookie', async () => {
    const res = await call(gw, '/console/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ admin_key: 'sluice-admin-wrong' }) })
    expect(res.status).toBe(401)
    expect(res.headers.get('set-cookie')).toBeNull()
    expect(await errorOf(res)).toMatchObject({ code: 'invalid_admin_key', type: 'authentication_error' })
  })

  test('an API key pasted in place of the admin key is told for what it is, masked', async () => {
    const apiKey = `sk-dev-${'Q'.repeat(43)}`
    const res = await call(gw, '/console/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ admin_key: `${apiKey}\n` }) })
    expect(res.status).toBe(401)
    const error = await errorOf(res)
    expect(error).toMatchObject({ code: 'invalid_admin_key', param: 'admin_key' })
    expect(error.message).toContain('is an API key')
    expect(error.message).toContain(`${apiKey.slice(0, 12)}…${apiKey.slice(-4)}`)
    expect(error.message).not.toContain(apiKey)
  })

  test('the admin key pasted with white space around it signs in, as it does in a bearer header (which drops it)', async () => {
    for (const pasted of [` ${ADMIN_KEY}`, `${ADMIN_KEY} `, `${ADMIN_KEY}\n`, `\t${ADMIN_KEY}\r\n`]) {
      const res = await call(gw, '/console/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ admin_key: pasted }) })
      expect({ pasted, status: res.status }).toEqual({ pasted, status: 200 })
    }
    // White space inside is no part of any admin key: still the wrong key.
    const split = await call(gw, '/console/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ admin_key: `${ADMIN_KEY.slice(0, 10)} ${ADMIN_KEY.slice(10)}` }) })
    expect(split.status).toBe(401)
  })

  test('a sign-in body larger than a sign-in needs is 413 unread: nobody without the key makes the gateway parse megabytes', async () => {
    // Valid JSON, mostly white space: parsed, it would be a 200; the size alone refuses it.
    const padded = JSON.stringify({ admin_key: ADMIN_KEY }) + ' '.repeat(64 * 1024)
    const res = await call(gw, '/console/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: padded })
    expect(res.status).toBe(413)
    expect(res.headers.get('set-cookie')).toBeNull()
    expect(await errorOf(res)).toMatchObject({ code: 'request_too_large' })
    // Nested values by the million, which took the serving thread seconds to parse, are refused the same way.
    const nested = `{"admin_key":"x","pad":[${Array.from({ length: 100_000 }, () => '[[{}]]').join(',')}]}`
    const deep = await call(gw, '/console/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: nested })
    expect(deep.status).toBe(413)
  })

  test('a body that is not JSON, or lacks admin_key, is 400 invalid_request', async () => {
    const broken = await call(gw, '/console/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{' })
    expect(broken.status).toBe(400)
    const empty = await call(gw, '/console/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
    expect(empty.status).toBe(400)
    expect((await errorOf(empty)).message).toContain('admin_key')
  })

  test('the right key sets an HttpOnly, SameSite=Strict, 8-hour cookie; Secure behind an HTTPS proxy', async () => {
    const { setCookie, csrf } = await signIn(gw)
    expect(setCookie).toMatch(new RegExp(`^${SESSION_COOKIE_PREFIX}[0-9a-f]{8}=v1\\.[^;]+; Path=/; Max-Age=28800; HttpOnly; SameSite=Strict$`))
    expect(csrf).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect((await signIn(gw, { 'x-forwarded-proto': 'https' })).setCookie).toEndWith('; Secure')
  })

  test('GET /console/session tells the page whether it is signed in, and its CSRF token', async () => {
    const anonymous = await (await call(gw, '/console/session')).json()
    expect(anonymous).toEqual({ object: 'console_session', authenticated: false, csrf_token: null, expires_at: null, environment: 'dev', session_ttl_ms: 8 * HOUR })
    const { cookie, csrf } = await signIn(gw)
    const signed = await (await call(gw, '/console/session', { headers: { cookie } })).json()
    expect(signed).toMatchObject({ authenticated: true, csrf_token: csrf, expires_at: new Date(clock + 8 * HOUR).toISOString(), session_ttl_ms: 8 * HOUR })
  })

  test('the sign-in form learns the configured session lifetime from /console/session, signed in or not', async () => {
    const short = await boot({ config: { console: { session_ttl_ms: 90 * 60_000 } } })
    try {
      expect(await (await call(short, '/console/session')).json()).toMatchObject({ authenticated: false, session_ttl_ms: 90 * 60_000 })
      const { cookie } = await signIn(short)
      expect(await (await call(short, '/console/session', { headers: { cookie } })).json()).toMatchObject({ authenticated: true, expires_at: new Date(clock + 90 * 60_000).toISOString(), session_ttl_ms: 90 * 60_000 })
    } finally {
      await short.close()
    }
  })
})

describe('the admin API with a session', () => {
  let cookie: string
  let csrf: string
  beforeAll(async () => {
    ;({ cookie, csrf } = await signIn(gw))
  })

  test('reads need only the cookie, on every admin route family', async () => {
    for (const path of ['/admin/users', '/admin/keys', '/admin/keys/expiring', '/admin/providers', '/admin/models', '/admin/providers/health']) {
      const res = await call(gw, path, { headers: { cookie } })
      expect({ path, status: res.status }).toEqual({ path, status: 200 })
    }
  })

  test('a change without the CSRF header, or with a wrong one, is 403 insufficient_permissions and changes nothing', async () => {
    for (const headers of [{}, { [CSRF_HEADER]: 'x'.repeat(43) }] as Record<string, string>[]) {
      const res = await call(gw, '/admin/users', { method: 'POST', headers: { cookie, 'content-type': 'application/json', ...headers }, body: '{"id":"mallory"}' })
      expect(res.status).toBe(403)
      expect(await errorOf(res)).toMatchObject({ code: 'insufficient_permissions', type: 'permission_error' })
    }
    expect((await call(gw, '/admin/users/mallory', { headers: { cookie } })).status).toBe(404)
    // The doctor checks the admin key itself, in its handler: the same rule holds there.
    const doctor = await call(gw, '/admin/doctor', { method: 'POST', headers: { cookie, 'content-type': 'application/json' }, body: '{"key":"sk-dev-x"}' })
    expect(doctor.status).toBe(403)
  })

  test('with the CSRF header a change goes through, the doctor answers', async () => {
    const res = await call(gw, '/admin/users', { method: 'POST', headers: { cookie, 'content-type': 'application/json', [CSRF_HEADER]: csrf }, body: '{"id":"carol"}' })
    expect(res.status).toBe(201)
    const doctor = await call(gw, '/admin/doctor', { method: 'POST', headers: { cookie, 'content-type': 'application/json', [CSRF_HEADER]: csrf }, body: '{"key":"sk-dev-nope"}' })
    expect(doctor.status).toBe(200)
    expect(((await doctor.json()) as { error: { code: string } }).error.code).toBe('invalid_api_key')
  })

  test('a request that sends a key is judged by the key alone: the bearer path is unchanged', async () => {
    const wrong = await call(gw, '/admin/users', { headers: { cookie, authorization: 'Bearer sluice-admin-wrong' } })
    expect(wrong.status).toBe(401)
    expect((await errorOf(wrong)).message).toBe('The admin key is wrong. Use the key printed at first start or the value of SLUICE_ADMIN_KEY.')
    const viaHeader = await call(gw, '/admin/users', { headers: { cookie, 'x-api-key': 'nope' } })
    expect(viaHeader.status).toBe(401)
    const bearer = await call(gw, '/admin/users', { method: 'POST', headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' }, body: '{"id":"dave"}' })
    expect(bearer.status).toBe(201)
    const none = await call(gw, '/admin/users')
    expect((await errorOf(none)).message).toBe('No admin key was sent. Send it as `Authorization: Bearer <admin key>`.')
  })

  test('a forged or stale cookie is 401 invalid_admin_key that says to sign in again', async () => {
    const res = await call(gw, '/admin/users', { headers: { cookie: `${gw.gateway.services.admin.sessions!.cookieName}=v1.AAAAAAAAAAAAAAAAAAAAAA.1.9999999999.forged` } })
    expect(res.status).toBe(401)
    expect(await errorOf(res)).toMatchObject({ code: 'invalid_admin_key' })
    expect((await errorOf(await call(gw, '/admin/users', { headers: { cookie: `${gw.gateway.services.admin.sessions!.cookieName}=junk` } }))).message).toContain('Sign in again at /console')
  })

  test('the cookie opens nothing on /v1: client routes want an API key', async () => {
    const res = await call(gw, '/v1/models', { headers: { cookie } })
    expect(res.status).toBe(401)
    expect((await errorOf(res)).code).toBe('missing_api_key')
  })
})

describe('session end', () => {
  test('a session expires after its time', async () => {
    const { cookie } = await signIn(gw)
    clock += 8 * HOUR - 1000
    expect((await call(gw, '/admin/users', { headers: { cookie } })).status).toBe(200)
    clock += 1000
    expect((await call(gw, '/admin/users', { headers: { cookie } })).status).toBe(401)
  })

  test('sign-out needs the CSRF header, then ends the session and clears the cookie', async () => {
    const { cookie, csrf } = await signIn(gw)
    const forced = await call(gw, '/console/logout', { method: 'POST', headers: { cookie } })
    expect(forced.status).toBe(403)
    expect((await call(gw, '/admin/users', { headers: { cookie } })).status).toBe(200)
    const out = await call(gw, '/console/logout', { method: 'POST', headers: { cookie, [CSRF_HEADER]: csrf } })
    expect(out.status).toBe(200)
    expect(out.headers.get('set-cookie')).toBe(`${cookie.split('=')[0]}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict`)
    expect((await call(gw, '/admin/users', { headers: { cookie } })).status).toBe(401)
    // Signing out without a live session just clears the cookie.
    const again = await call(gw, '/console/logout', { method: 'POST', headers: { cookie } })
    expect(again.status).toBe(200)
  })
})

describe('many instances', () => {
  test('a session holds on every instance with the same keys, and a sign-out reaches them all over the bus', async () => {
    const bus = createLocalBus()
    const a = await boot({ bus })
    const b = await boot({ bus })
    try {
      const { cookie, csrf } = await signIn(a)
      expect((await call(b, '/admin/users', { headers: { cookie } })).status).toBe(200)
      expect((await call(a, '/console/logout', { method: 'POST', headers: { cookie, [CSRF_HEADER]: csrf } })).status).toBe(200)
      expect((await call(b, '/admin/users', { headers: { cookie } })).status).toBe(401)
    } finally {
      await a.close()
      await b.close()
    }
  })

  test('a new admin key, or another master key, ends every session', async () => {
    const { cookie } = await signIn(gw)
    const rekeyed = await boot({ env: { SLUICE_ADMIN_KEY: `${ADMIN_KEY}-new` } })
    const otherMaster = await boot({ env: { SLUICE_ENCRYPTION_KEY: Buffer.alloc(32, 1).toString('base64') } })
    try {
      expect((await call(rekeyed, '/admin/users', { headers: { cookie } })).status).toBe(401)
      expect((await call(otherMaster, '/admin/users', { headers: { cookie } })).status).toBe(401)
    } finally {
      await rekeyed.close()
      await otherMaster.close()
    }
  })
})

describe('sign-outs outlive a restart', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-console-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))
  const databases = [
    { name: 'SQLite file', available: true, open: async () => ({ url: `sqlite://${join(dir, 'revocations.db')}`, drop: async () => {} }) },
    {
      name: 'Postgres',
      available: postgresUrl !== null,
      open: async () => {
        const made = await createTestPostgresDatabase(postgresUrl!, 'console_revocations')
        return { url: made.url, drop: () => made.drop() }
      },
    },
  ]
  for (const database of databases) {
    test.skipIf(!database.available)(`a signed-out session stays out after a restart, and on an instance started later (${database.name})`, async () => {
      const { url, drop } = await database.open()
      const started: TestGateway[] = []
      const start = async () => {
        const booted = await boot({ env: { DATABASE_URL: url } })
        started.push(booted)
        return booted
      }
      try {
        const first = await start()
        const out = await signIn(first)
        const kept = await signIn(first)
        expect((await call(first, '/console/logout', { method: 'POST', headers: { cookie: out.cookie, [CSRF_HEADER]: out.csrf } })).status).toBe(200)
        // A second instance on the same database, started after the sign-out: no bus message reached it.
        const later = await start()
        await first.close()
        const restarted = await start()
        for (const gw of [later, restarted]) {
          expect((await call(gw, '/admin/users', { headers: { cookie: out.cookie } })).status).toBe(401)
          expect((await call(gw, '/admin/users', { headers: { cookie: kept.cookie } })).status).toBe(200)
        }
        // Once the session would have expired anyway, its row goes at the next start.
        const rows = async () => (await restarted.gateway.services.db.db.selectFrom('console_revocations').select('session_id').execute()).length
        expect(await rows()).toBe(1)
        clock += 9 * HOUR
        const afterExpiry = await start()
        expect(await rows()).toBe(0)
        expect((await call(afterExpiry, '/admin/users', { headers: { cookie: out.cookie } })).status).toBe(401)
      } finally {
        for (const gw of started) await gw.close().catch(() => {})
        await drop()
      }
    })
  }
})

describe('console turned off', () => {
  test('console.enabled false: no /console routes, and no cookie opens the admin API', async () => {
    const { cookie } = await signIn(gw)
    const off = await boot({ config: { console: { enabled: false } } })
    try {
      expect(off.gateway.services.admin.sessions).toBeNull()
      expect((await errorOf(await call(off, '/console'))).code).toBe('not_found')
      expect((await call(off, '/console/login', { method: 'POST', body: '{}' })).status).toBe(404)
      expect((await call(off, '/admin/users', { headers: { cookie } })).status).toBe(401)
      expect((await call(off, '/admin/users', { headers: { authorization: `Bearer ${ADMIN_KEY}` } })).status).toBe(200)
    } finally {
      await off.close()
    }
  })

  test('a bad console config stops the boot with its path', async () => {
    await expect(boot({ config: { console: { session_ttl_ms: 5 } } })).rejects.toThrow('/console/session_ttl_ms')
    await expect(boot({ config: { console: { enable: true } } })).rejects.toThrow('/console')
  })
})

describe('two gateways on one host', () => {
  const OTHER_ADMIN = 'sluice-admin-console-routes-other-0123456789'
  /** A browser's cookies for one host: by name alone, whatever the port (as browsers keep them). */
  const jar = new Map<string, string>()
  const keep = (res: Response) => {
    const [pair] = (res.headers.get('set-cookie') ?? '').split(';')
    const eq = pair!.indexOf('=')
    jar.set(pair!.slice(0, eq), pair!.slice(eq + 1))
  }
  const cookies = () => [...jar].map(([name, value]) => `${name}=${value}`).join('; ')
  const login = (g: TestGateway, key: string) => call(g, '/console/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ admin_key: key }) })

  test('each has its own session cookie: signing in to one does not sign the browser out of the other; a restart keeps the name, and the session', async () => {
    const a = await boot()
    const b = await boot({ env: { SLUICE_ADMIN_KEY: OTHER_ADMIN } })
    // Another deployment with the same admin key but its own encryption key: its sessions are not a's either.
    const c = await boot({ env: { SLUICE_ENCRYPTION_KEY: Buffer.alloc(32, 3).toString('base64') } })
    try {
      for (const [g, key] of [[a, ADMIN_KEY], [b, OTHER_ADMIN], [c, ADMIN_KEY]] as const) {
        const res = await login(g, key)
        expect(res.status).toBe(200)
        keep(res)
      }
      expect(jar.size).toBe(3)
      for (const g of [a, b, c]) expect((await call(g, '/admin/users', { headers: { cookie: cookies() } })).status).toBe(200)
    } finally {
      await Promise.all([b.close(), c.close()])
    }
    // The same gateway started again (same admin key and encryption key): the same cookie, still signed in.
    await a.close()
    const again = await boot()
    try {
      expect(again.gateway.services.admin.sessions!.cookieName).toBe(a.gateway.services.admin.sessions!.cookieName)
      expect((await call(again, '/admin/users', { headers: { cookie: cookies() } })).status).toBe(200)
    } finally {
      await again.close()
    }
  })
})
