import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { expectEnvelope } from './support/auth.ts'
import { bootProblems, startGateway, type TestGateway } from './support/gateway.ts'
import { maskBaseUrl, resealProvider } from '../src/catalog.ts'
import { loadConfig } from '../src/config/load.ts'
import type { ConfigFile } from '../src/config/schema.ts'
import { createDatabase } from '../src/db/index.ts'
import { createGateway } from '../src/server.ts'
import { createLogger } from '../src/lib/logger.ts'
import { decryptSecret, encryptSecret, envelopeKeyId, masterKey, rewrapSecret, type MasterKey } from '../src/lib/secrets.ts'

const ADMIN = 'catalog-admin-key-0123456789abcdef'
const SECRET = 'sk-provider-secret-abcdefghijklmnop'
const KEY_A = Buffer.alloc(32, 7).toString('base64')
const KEY_B = Buffer.alloc(32, 9).toString('base64')
const admin = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }

describe('envelope encryption', () => {
  test('a sealed secret opens with its master key and context only', () => {
    const a = masterKey(KEY_A)
    const b = masterKey(KEY_B)
    const sealed = encryptSecret(a, SECRET, 'p/k')
    expect(sealed).not.toContain(SECRET)
    expect(JSON.parse(sealed).kid).toBe(a.id)
    expect(decryptSecret([a], sealed, 'p/k')).toBe(SECRET)
    expect(() => decryptSecret([b], sealed, 'p/k')).toThrow(/not configured/)
    expect(() => decryptSecret([a], sealed, 'other/k')).toThrow()
  })

  test('rewrapping changes the master key id and keeps the secret', () => {
    const a = masterKey(KEY_A)
    const b = masterKey(KEY_B)
    const sealed = encryptSecret(a, SECRET, 'p/k')
    const moved = rewrapSecret([a], b, sealed, 'p/k')
    expect(JSON.parse(moved).kid).toBe(b.id)
    expect(JSON.parse(moved).ct).toBe(JSON.parse(sealed).ct)
    expect(decryptSecret([b], moved, 'p/k')).toBe(SECRET)
  })

  test('a key that is not 32 bytes is refused', () => {
    expect(() => masterKey(Buffer.alloc(16).toString('base64'))).toThrow(/32 bytes/)
  })
})

describe('providers and models through the admin API', () => {
  let mock: MockUpstream
  let dir: string
  let gw: TestGateway
  const dbUrl = () => `sqlite://${join(dir, 'catalog.db')}`

  beforeAll(async () => {
    mock = await startMockUpstream({ apiKeys: [SECRET] })
    dir = mkdtempSync(join(tmpdir(), 'sluice-catalog-'))
    // Its 401 tests send more wrong admin keys than one address may in a minute.
    gw = await startGateway({ environment: 'prod', plugins: [], server: { admin_attempts_per_minute: 10_000 } }, { env: { SLUICE_ADMIN_KEY: ADMIN, DATABASE_URL: dbUrl(), SLUICE_ENCRYPTION_KEY: KEY_A } })
  })
  afterAll(async () => {
    await gw?.close()
    await mock?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  test('a provider added at run time serves a model, with its secret stored sealed', async () => {
    const created = await fetch(`${gw.url}/admin/providers`, {
      method: 'POST',
      headers: admin,
      body: JSON.stringify({ id: 'live', type: 'openai-compatible', base_url: mock.url, keys: [{ id: 'k1', secret: SECRET }] }),
    })
    expect(created.status).toBe(201)
    const view = await created.json()
    expect(JSON.stringify(view)).not.toContain(SECRET)
    expect(view.keys[0]).toEqual({ id: 'k1', weight: 1, rpm: null, tpm: null, has_secret: true })

    const model = await fetch(`${gw.url}/admin/models`, { method: 'POST', headers: admin, body: JSON.stringify({ name: 'live-gpt', targets: [{ provider: 'live', model: 'mock-gpt' }] }) })
    expect(model.status).toBe(201)

    const chat = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'live-gpt', messages: [{ role: 'user', content: 'hi' }] }) })
    expect(chat.status).toBe(200)
    expect(mock.stats.lastHeaders?.get('authorization')).toBe(`Bearer ${SECRET}`)

    const rows = await gw.gateway.services.db.db.selectFrom('provider_keys').selectAll().execute()
    expect(rows).toHaveLength(1)
    expect(rows[0]!.secret_enc).not.toContain(SECRET)
    expect(rows[0]!.key_version).toBe(masterKey(KEY_A).id)
  })

  test('a base URL that carries a credential (its password, its query values) is stored sealed: no row holds them, the provider still serves', async () => {
    const PASSWORD = 'url-password-PW0123456789'
    const QUERY_SECRET = 'query-secret-QS0123456789'
    const base = mock.url.replace('http://', `http://proxy:${PASSWORD}@`) + `?api-key=${QUERY_SECRET}`
    const created = await fetch(`${gw.url}/admin/providers`, { method: 'POST', headers: admin, body: JSON.stringify({ id: 'url-cred', type: 'openai-compatible', base_url: base, keys: [{ id: 'k1', secret: SECRET }] }) })
    expect(created.status).toBe(201)
    expect((await created.json()).base_url).toBe(mock.url.replace('http://', 'http://proxy:***@') + '?api-key=***')
    expect((await fetch(`${gw.url}/admin/models`, { method: 'POST', headers: admin, body: JSON.stringify({ name: 'url-cred-gpt', targets: [{ provider: 'url-cred', model: 'mock-gpt' }] }) })).status).toBe(201)
    const chat = async () => (await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'url-cred-gpt', messages: [{ role: 'user', content: 'hi' }] }) })).status
    const served = mock.stats.requests
    // The registry is rebuilt from the rows after each change: this call went to the URL read back from them.
    expect(await chat()).toBe(200)
    expect(mock.stats.requests).toBe(served + 1)
    const dump = async () => JSON.stringify(await gw.gateway.services.db.db.selectFrom('providers').selectAll().where('id', '=', 'url-cred').execute())
    const stored = await dump()
    expect(stored).toContain('proxy:***@')
    expect([PASSWORD, QUERY_SECRET].filter((s) => stored.includes(s))).toEqual([])
    // A PATCH of another field writes the row again, the URL still sealed and still served.
    expect((await fetch(`${gw.url}/admin/providers/url-cred`, { method: 'PATCH', headers: admin, body: JSON.stringify({ timeouts: { first_byte_ms: 5000 } }) })).status).toBe(200)
    expect(await chat()).toBe(200)
    const patched = await dump()
    expect([PASSWORD, QUERY_SECRET].filter((s) => patched.includes(s))).toEqual([])
    expect((await fetch(`${gw.url}/admin/models/url-cred-gpt`, { method: 'DELETE', headers: admin })).status).toBe(200)
    expect((await fetch(`${gw.url}/admin/providers/url-cred`, { method: 'DELETE', headers: admin })).status).toBe(200)
  })
  test('a model PATCH removes an optional field sent as null (pricing, fallbacks, strategy, encoding), and refuses null for targets', async () => {
    const created = await fetch(`${gw.url}/admin/models`, {
      method: 'POST',
      headers: admin,
      body: JSON.stringify({
        name: 'priced-gpt',
        targets: [{ provider: 'live', model: 'mock-gpt' }],
        strategy: 'round-robin',
        fallbacks: ['live-gpt'],
        pricing: { input: 1, output: 2 },
        encoding: 'cl100k_base',
      }),
    })
    expect(created.status).toBe(201)
    const patch = (body: unknown) => fetch(`${gw.url}/admin/models/priced-gpt`, { method: 'PATCH', headers: admin, body: JSON.stringify(body) })
    const refused = await patch({ targets: null })
    expect(refused.status).toBe(400)
    expect((await refused.json()).error.param).toBe('targets')
    const cleared = await patch({ pricing: null, fallbacks: null, strategy: null, encoding: null })
    expect(cleared.status).toBe(200)
    const expected = { object: 'model_group', source: 'admin', name: 'priced-gpt', targets: [{ provider: 'live', model: 'mock-gpt' }] }
    expect(await cleared.json()).toEqual(expected)
    expect(await (await fetch(`${gw.url}/admin/models/priced-gpt`, { headers: admin })).json()).toEqual(expected)
    const chat = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'priced-gpt', messages: [{ role: 'user', content: 'hi' }] }) })
    expect(chat.status).toBe(200)
    expect((await fetch(`${gw.url}/admin/models/priced-gpt`, { method: 'DELETE', headers: admin })).status).toBe(200)
  })

  test('a provider PATCH removes base_url, headers, timeouts or options sent as null (the official URL and the defaults apply again), and refuses null for type and keys', async () => {
    const created = await fetch(`${gw.url}/admin/providers`, {
      method: 'POST',
      headers: admin,
      body: JSON.stringify({
        id: 'proxied-claude',
        type: 'anthropic',
        base_url: 'https://llm-proxy.example.com/anthropic',
        keys: [{ id: 'an-1', secret: SECRET }],
        headers: { 'x-proxy-token': 'tok' },
        timeouts: { first_byte_ms: 5000 },
        options: { default_max_tokens: 2048 },
      }),
    })
    expect(created.status).toBe(201)
    const patch = (id: string, body: unknown) => fetch(`${gw.url}/admin/providers/${id}`, { method: 'PATCH', headers: admin, body: JSON.stringify(body) })
    for (const field of ['type', 'keys']) {
      const refused = await patch('proxied-claude', { [field]: null })
      expect({ field, status: refused.status }).toEqual({ field, status: 400 })
      expect((await refused.json()).error.param).toBe(field)
    }
    const cleared = await patch('proxied-claude', { base_url: null, headers: null, timeouts: null, options: null })
    expect(cleared.status).toBe(200)
    const expected = {
      object: 'provider',
      id: 'proxied-claude',
      type: 'anthropic',
      base_url: null,
      source: 'admin',
      keys: [{ id: 'an-1', weight: 1, rpm: null, tpm: null, has_secret: true }],
      headers: [],
      timeouts: null,
      options: null,
    }
    expect(await cleared.json()).toEqual(expected)
    expect(await (await fetch(`${gw.url}/admin/providers/proxied-claude`, { headers: admin })).json()).toEqual(expected)
    // An openai-compatible provider has no official URL to fall back to.
    const noUrl = await patch('live', { base_url: null })
    expect(noUrl.status).toBe(400)
    expect((await noUrl.json()).error.param).toBe('base_url')
    expect((await fetch(`${gw.url}/admin/providers/proxied-claude`, { method: 'DELETE', headers: admin })).status).toBe(200)
  })

  test('bad input is refused and changes nothing', async () => {
    const before = await gw.gateway.services.db.db.selectFrom('providers').selectAll().execute()
    const cases: [unknown, number][] = [
      [{ id: 'x', type: 'nope', keys: [{ id: 'k', secret: 's' }] }, 400],
      [{ id: 'x', type: 'openai-compatible', keys: [{ id: 'k', secret: 's' }] }, 400], // no base_url
      [{ id: 'live', type: 'openai-compatible', base_url: mock.url, keys: [{ id: 'k', secret: 's' }] }, 409],
      [{ id: "x'; DROP TABLE providers; --", type: 'openai', keys: [{ id: 'k', secret: 's' }] }, 400],
    ]
    for (const [body, status] of cases) {
      const res = await fetch(`${gw.url}/admin/providers`, { method: 'POST', headers: admin, body: JSON.stringify(body) })
      expect(res.status).toBe(status)
      expect((await res.json()).error.code).toBeString()
    }
    const model = await fetch(`${gw.url}/admin/models`, { method: 'POST', headers: admin, body: JSON.stringify({ name: 'm2', targets: [{ provider: 'ghost', model: 'x' }] }) })
    expect(model.status).toBe(400)
    expect((await model.json()).error.message).toContain('ghost')
    // A key pasted where a provider id or model name belongs is never echoed whole.
    const pasted = `sk-dev-${'C'.repeat(40)}`
    for (const [method, path] of [['GET', `/admin/providers/${pasted}`], ['DELETE', `/admin/providers/${pasted}`], ['DELETE', `/admin/models/${pasted}`]] as const) {
      const res = await fetch(`${gw.url}${path}`, { method, headers: admin })
      expect(res.status).toBe(404)
      expect(await res.text()).not.toContain(pasted)
    }
    expect(await gw.gateway.services.db.db.selectFrom('providers').selectAll().execute()).toEqual(before)
  })

  test('a provider used by a model cannot be deleted; without the admin key nothing is shown', async () => {
    const del = await fetch(`${gw.url}/admin/providers/live`, { method: 'DELETE', headers: admin })
    expect(del.status).toBe(409)
    const anon = await fetch(`${gw.url}/admin/providers`)
    expect(anon.status).toBe(401)
    expect((await anon.json()).error.code).toBe('invalid_admin_key')
  })

  test('the admin key is checked before the body is read: 401 whatever the body, 400 only with the key', async () => {
    const routes: [string, string, unknown][] = [
      ['POST', '/admin/providers', { id: 'anon', type: 'openai-compatible', base_url: mock.url, keys: [{ id: 'k1', secret: SECRET }] }],
      ['PATCH', '/admin/providers/live', { base_url: 'http://127.0.0.1:9/' }],
      ['POST', '/admin/models', { name: 'anon-gpt', targets: [{ provider: 'live', model: 'mock-gpt' }] }],
    ]
    const callers: Record<string, string>[] = [{}, { authorization: 'Bearer wrong' }, { authorization: 'Token wrong' }, { 'x-api-key': 'wrong' }]
    const before = await gw.gateway.services.db.db.selectFrom('providers').selectAll().execute()
    for (const [method, path, valid] of routes) {
      for (const caller of callers) {
        for (const body of ['{', undefined, '', JSON.stringify(valid)]) {
          const headers = body === undefined ? caller : { ...caller, 'content-type': 'application/json' }
          const res = await fetch(`${gw.url}${path}`, { method, headers, body })
          expect({ method, path, caller, body, status: res.status }).toEqual({ method, path, caller, body, status: 401 })
          await expectEnvelope(res, 'invalid_admin_key')
        }
      }
      const broken = await fetch(`${gw.url}${path}`, { method, headers: admin, body: '{' })
      await expectEnvelope(broken, 'invalid_request')
    }
    expect(await gw.gateway.services.db.db.selectFrom('providers').selectAll().execute()).toEqual(before)
    expect(await gw.gateway.services.db.db.selectFrom('models').selectAll().where('name', '=', 'anon-gpt').execute()).toEqual([])
    const mistyped = await fetch(`${gw.url}/admin/providers/live`, { method: 'PATCH', headers: admin, body: JSON.stringify({ base_url: 5 }) })
    expect((await expectEnvelope(mistyped, 'invalid_request')).param).toBe('base_url')
  })

  test('rotate-encryption-key re-seals secrets; the gateway then starts with the new key only', async () => {
    await gw.close()
    const run = Bun.spawnSync(['bun', 'run', 'src/cli/rotate-encryption-key.ts'], {
      env: { ...process.env, DATABASE_URL: dbUrl(), SLUICE_ENCRYPTION_KEY: KEY_B, SLUICE_ENCRYPTION_KEY_PREVIOUS: KEY_A },
    })
    expect(run.exitCode).toBe(0)
    expect(run.stdout.toString()).toContain('re-sealed 1 secret(s)')

    // Without the new key the stored secret cannot be opened: the boot says which key is missing.
    await expect(startGateway({ environment: 'prod', plugins: [] }, { env: { SLUICE_ADMIN_KEY: ADMIN, DATABASE_URL: dbUrl(), SLUICE_ENCRYPTION_KEY: KEY_A } })).rejects.toThrow(masterKey(KEY_B).id)

    gw = await startGateway({ environment: 'prod', plugins: [] }, { env: { SLUICE_ADMIN_KEY: ADMIN, DATABASE_URL: dbUrl(), SLUICE_ENCRYPTION_KEY: KEY_B } })
    const chat = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'live-gpt', messages: [{ role: 'user', content: 'hi' }] }) })
    expect(chat.status).toBe(200)
    expect(mock.stats.lastHeaders?.get('authorization')).toBe(`Bearer ${SECRET}`)
  })

  test('outside dev a gateway without an encryption key does not start (no secret could be sealed), saying what to set', async () => {
    const failed = await startGateway({ environment: 'prod', plugins: [] }, { env: { SLUICE_ADMIN_KEY: ADMIN } }).then(
      async (started) => {
        await started.close()
        return null
      },
      (error: unknown) => error,
    )
    expect(String(failed)).toContain('SLUICE_ENCRYPTION_KEY: required outside dev (this gateway serves "prod")')
  })
})

describe('the config file refuses what the admin API refuses, naming the path', () => {
  const provider = (extra: Record<string, unknown> = {}) => ({ id: 'up', type: 'openai-compatible' as const, baseUrl: 'http://127.0.0.1:9/v1', keys: [{ id: 'k1', secret: 's' }], ...extra })
  const model = (name: string, extra: Record<string, unknown> = {}) => ({ name, targets: [{ provider: 'up', model: 'm' }], ...extra })

  test('provider ids, key ids and model names of dots only, and model names blank or padded', async () => {
    const problems = await bootProblems({
      providers: [provider({ id: '..' }), provider({ id: 'ok', keys: [{ id: '.', secret: 's' }] }), provider()],
      models: [model('.'), model('...'), model(' '), model(' padded'), model('acme/..'), model('acme/llama 3')],
    })
    expect(problems).toHaveLength(7)
    expect(problems[0]).toStartWith('/providers/0/id: ".." is dots only')
    expect(problems[1]).toStartWith('/providers/1/keys/0/id: key id "." is dots only')
    expect(problems[2]).toStartWith('/models/0/name: "." has a part of dots only')
    expect(problems[3]).toStartWith('/models/1/name: "..." has a part of dots only')
    expect(problems[4]).toBe('/models/2/name: a model name cannot be blank')
    expect(problems[5]).toBe('/models/3/name: a model name cannot begin or end with white space (" padded")')
    expect(problems[6]).toStartWith('/models/4/name: "acme/.." has a part of dots only')
    // A slash is fine: acme/llama 3 is not reported; acme/.. is (its last part is dots only).
    expect(problems.join('\n')).not.toContain('acme/llama')
  })

  test('headers that could not be sent: a name that is no HTTP token, a value with CR, LF, NUL or beyond U+00FF; the value is never repeated', async () => {
    const problems = await bootProblems({
      providers: [provider({ headers: { 'bad header': 'x', 'x-ok': 'fine', 'x-inject': 'a\r\nInjected: 1', 'x-nul': 'a\u0000b', 'x-wide': '日本', 'x-tab': 'a\tb' } })],
      models: [model('m')],
    })
    expect(problems).toEqual([
      expect.stringMatching(/^\/providers\/0\/headers: header name "bad header" is not an HTTP field name/),
      expect.stringMatching(/^\/providers\/0\/headers: the value of header "x-inject" holds a character no HTTP field value may/),
      expect.stringMatching(/^\/providers\/0\/headers: the value of header "x-nul" /),
      expect.stringMatching(/^\/providers\/0\/headers: the value of header "x-wide" /),
    ])
    expect(problems.join('\n')).not.toContain('Injected')
  })

  test('a key secret that could not be sent in a header (CR or LF inside it, NUL, a character beyond U+00FF such as a pasted curly quote) is refused, never repeated; white space around it is fine', async () => {
    const secrets = ['sk-ok-0123456789', 'sk-line\nINJECTED-1', 'sk-cr\rINJECTED-2', 'sk-nul\u0000INJECTED-3', '\u201csk-quoted-INJECTED-4\u201d', 'sk-trailing-newline-0123\n', '  sk-spaced-0123\t', '']
    const problems = await bootProblems({ providers: [provider({ keys: secrets.map((secret, i) => ({ id: `k${i}`, secret })) })], models: [model('m')] })
    expect(problems).toEqual([1, 2, 3, 4].map((j) => expect.stringMatching(new RegExp(`^/providers/0/keys/${j}/secret: holds a character no HTTP header value may`))))
    expect(problems.join('\n')).not.toContain('INJECTED')
  })

  test("a target's weight above 1000000 is refused, as a key's is", async () => {
    const problems = await bootProblems({
      providers: [provider({ keys: [{ id: 'k1', secret: 's', weight: 1_000_001 }] })],
      models: [model('m', { targets: [{ provider: 'up', model: 'm', weight: 1_000_000 }, { provider: 'up', model: 'm', weight: 1e300 }] })],
    })
    expect(problems).toEqual([expect.stringMatching(/^\/providers\/0\/keys\/0\/weight: .*1000000/), expect.stringMatching(/^\/models\/0\/targets\/1\/weight: .*1000000/)])
  })

  test('an encoding tiktoken does not ship is refused even with no tokens plugin', async () => {
    expect(await bootProblems({ providers: [provider()], models: [model('m', { encoding: 'bogus_enc' })] })).toEqual([
      '/models/0/encoding: "bogus_enc" is not one of o200k_base, cl100k_base, p50k_base, p50k_edit, r50k_base, gpt2',
    ])
    const fine = await loadConfig({ config: { plugins: [], providers: [provider()], models: [model('m', { encoding: 'cl100k_base' })] } as ConfigFile, env: {} })
    expect(fine.models[0]?.encoding).toBe('cl100k_base')
  })
})

describe('base URLs as the admin API shows them', () => {
  test('the password and every query value are masked; the rest is kept as written', () => {
    expect(maskBaseUrl('https://user:pass@example.com/v1')).toBe('https://user:***@example.com/v1')
    expect(maskBaseUrl('https://res.openai.azure.com/openai/deployments/d?api-version=2024-06-01&key=SECRET')).toBe('https://res.openai.azure.com/openai/deployments/d?api-version=***&key=***')
    expect(maskBaseUrl('https://TOKEN@example.com/v1')).toBe('https://***@example.com/v1')
    expect(maskBaseUrl('https://example.com/v1?SECRET')).toBe('https://example.com/v1?***')
    // Nothing to hide: the URL as written, not as the parser spells it (no slash added).
    expect(maskBaseUrl('https://api.example.com')).toBe('https://api.example.com')
  })
})

/** {@link resealProvider}'s new `config` of a row of provider `p` with no base URL, or null. */
function resealConfig(config: string, from: readonly MasterKey[], to: MasterKey): string | null {
  return resealProvider({ id: 'p', base_url: null, config }, from, to)?.config ?? null
}

describe('sealed provider headers', () => {
  test('the rotation re-seals them under the new key; rows without headers, or already moved, are left', () => {
    const a = masterKey(KEY_A)
    const b = masterKey(KEY_B)
    const headers = { 'api-key': 'header-secret-0123456789' }
    const row = JSON.stringify({ headers_enc: encryptSecret(a, JSON.stringify(headers), 'p#headers'), timeouts: { total_ms: 5 } })
    const moved = resealConfig(row, [a], b)
    if (moved === null) throw new Error('nothing re-sealed')
    const stored = JSON.parse(moved) as { headers_enc: string; timeouts: unknown }
    expect(envelopeKeyId(stored.headers_enc)).toBe(b.id)
    expect(JSON.parse(decryptSecret([b], stored.headers_enc, 'p#headers'))).toEqual(headers)
    expect(stored.timeouts).toEqual({ total_ms: 5 })
    expect(resealConfig(moved, [a, b], b)).toBeNull()
    expect(resealConfig(JSON.stringify({ timeouts: { total_ms: 5 } }), [a], b)).toBeNull()
    expect(resealConfig(JSON.stringify({ headers: {} }), [a], b)).toBeNull()
  })

  test('headers an older version stored in plain text are sealed under the new key, and no longer kept in plain text', () => {
    const b = masterKey(KEY_B)
    const headers = { 'api-key': 'header-secret-0123456789' }
    const sealed = resealProvider({ id: 'p', base_url: 'https://example.com/v1', config: JSON.stringify({ headers, options: { x: 1 } }) }, [], b)
    if (sealed === null) throw new Error('nothing sealed')
    expect(sealed.moved).toBe(1)
    expect(sealed.base_url).toBe('https://example.com/v1')
    expect(sealed.config).not.toContain('header-secret')
    const stored = JSON.parse(sealed.config) as { headers_enc: string; options: unknown }
    expect(JSON.parse(decryptSecret([b], stored.headers_enc, 'p#headers'))).toEqual(headers)
    expect(stored.options).toEqual({ x: 1 })
  })

  test('a base URL with a credential an older version stored in plain text is sealed, the column keeping the masked form; one without is left', () => {
    const b = masterKey(KEY_B)
    const url = 'https://proxy:pw-secret@example.com/v1?key=q-secret'
    const sealed = resealProvider({ id: 'p', base_url: url, config: '{}' }, [], b)
    if (sealed === null) throw new Error('nothing sealed')
    expect(sealed).toMatchObject({ base_url: 'https://proxy:***@example.com/v1?key=***', moved: 1 })
    expect(decryptSecret([b], (JSON.parse(sealed.config) as { base_url_enc: string }).base_url_enc, 'p#base_url')).toBe(url)
    expect(resealProvider({ id: 'p', base_url: sealed.base_url, config: sealed.config }, [b], b)).toBeNull()
    expect(resealProvider({ id: 'p', base_url: 'https://example.com/v1', config: '{}' }, [], b)).toBeNull()
  })

  test('a sealed base URL moves with them, alone or beside sealed headers', () => {
    const a = masterKey(KEY_A)
    const b = masterKey(KEY_B)
    const url = 'https://proxy:pw-secret@example.com/v1?key=q-secret'
    const alone = resealConfig(JSON.stringify({ base_url_enc: encryptSecret(a, url, 'p#base_url') }), [a], b)
    if (alone === null) throw new Error('nothing re-sealed')
    const moved = JSON.parse(alone) as { base_url_enc: string }
    expect(envelopeKeyId(moved.base_url_enc)).toBe(b.id)
    expect(decryptSecret([b], moved.base_url_enc, 'p#base_url')).toBe(url)
    expect(resealConfig(alone, [a, b], b)).toBeNull()
    // Headers already under the new key, the URL not yet: the URL moves, the headers stay as they were.
    const headersB = encryptSecret(b, '{}', 'p#headers')
    const mixed = resealConfig(JSON.stringify({ headers_enc: headersB, base_url_enc: encryptSecret(a, url, 'p#base_url') }), [a, b], b)
    if (mixed === null) throw new Error('nothing re-sealed')
    const both = JSON.parse(mixed) as { headers_enc: string; base_url_enc: string }
    expect(both.headers_enc).toBe(headersB)
    expect(decryptSecret([b], both.base_url_enc, 'p#base_url')).toBe(url)
  })
})

describe('the admin API checks providers and models as the config file does, in its own terms', () => {
  const HEADER_SECRET = 'header-secret-abcdefghijklmnopqrstuvwxyz'
  let mock: MockUpstream
  let dir: string
  let gw: TestGateway
  const boot = () => startGateway({ environment: 'prod', plugins: [] }, { env: { SLUICE_ADMIN_KEY: ADMIN, DATABASE_URL: `sqlite://${join(dir, 'checks.db')}`, SLUICE_ENCRYPTION_KEY: KEY_A } })
  const call = (method: string, path: string, body?: unknown) => fetch(`${gw.url}${path}`, { method, headers: admin, ...(body !== undefined && { body: JSON.stringify(body) }) })
  const provider = (id: string, extra: Record<string, unknown> = {}) => ({ id, type: 'openai-compatible', base_url: mock.url, keys: [{ id: 'k1', secret: SECRET }], ...extra })
  const model = (name: string, extra: Record<string, unknown> = {}) => ({ name, targets: [{ provider: 'base', model: 'mock-gpt' }], ...extra })
  const rows = async () => ({
    providers: await gw.gateway.services.db.db.selectFrom('providers').selectAll().execute(),
    models: await gw.gateway.services.db.db.selectFrom('models').selectAll().execute(),
  })
  const chat = (name: string) => fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: name, messages: [{ role: 'user', content: 'hi' }] }) })

  beforeAll(async () => {
    mock = await startMockUpstream({ apiKeys: [SECRET] })
    dir = mkdtempSync(join(tmpdir(), 'sluice-catalog-checks-'))
    gw = await boot()
    expect((await call('POST', '/admin/providers', provider('base'))).status).toBe(201)
  })
  afterAll(async () => {
    await gw?.close()
    await mock?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  test('ids and names a URL path cannot carry are refused, naming the field; a slash in a model name works', async () => {
    const before = await rows()
    for (const id of ['.', '..', '...']) {
      const refused = await expectEnvelope(await call('POST', '/admin/providers', provider(id)), 'invalid_request')
      expect({ id, param: refused.param }).toEqual({ id, param: 'id' })
      expect(refused.message).toContain('dots only')
    }
    expect((await expectEnvelope(await call('POST', '/admin/providers', provider('p-dots', { keys: [{ id: '..', secret: SECRET }] })), 'invalid_request')).param).toBe('keys[0].id')
    for (const name of ['.', '..', '...', ' ', '  padded', 'padded\t', 'acme/..', '../x']) {
      const refused = await expectEnvelope(await call('POST', '/admin/models', model(name)), 'invalid_request')
      expect({ name, param: refused.param }).toEqual({ name, param: 'name' })
    }
    expect(await rows()).toEqual(before)

    const slashed = 'acme/llama 3'
    const path = `/admin/models/${encodeURIComponent(slashed)}`
    expect((await call('POST', '/admin/models', model(slashed))).status).toBe(201)
    expect(await (await call('GET', path)).json()).toMatchObject({ object: 'model_group', name: slashed, source: 'admin' })
    expect((await call('PATCH', path, { pricing: { input: 1, output: 2 } })).status).toBe(200)
    expect((await chat(slashed)).status).toBe(200)
    expect((await call('DELETE', path)).status).toBe(200)
    await expectEnvelope(await call('GET', path), 'not_found')

    // With the slash as typed (as /v1/models/{id} takes it): get, change and delete; a trailing slash is no part of the name.
    const raw = '/admin/models/acme/llama%203'
    expect((await call('POST', '/admin/models', model(slashed))).status).toBe(201)
    expect(await (await call('GET', raw)).json()).toMatchObject({ name: slashed })
    expect(await (await call('GET', `${raw}/`)).json()).toMatchObject({ name: slashed })
    expect(await (await call('PATCH', raw, { pricing: { input: 3, output: 4 } })).json()).toMatchObject({ name: slashed, pricing: { input: 3, output: 4 } })
    await expectEnvelope(await call('GET', '/admin/models/acme/llama%204'), 'not_found')
    expect((await call('DELETE', raw)).status).toBe(200)
    await expectEnvelope(await call('GET', path), 'not_found')
  })

  test('headers that could not be sent are refused at POST and PATCH (param "headers"), never echoing the value', async () => {
    // NUL is refused before (the admin routes take none in any field, naming it: headers.x-nul); the catalog check is the config file's guard for it.
    const cases: Record<string, string>[] = [{ 'bad header': 'x' }, { 'x-inject': 'a\r\nInjected: 1' }, { 'x-nul': 'a\u0000b' }, { 'x-lf': 'a\nb' }, { 'x-cr': 'a\rb' }, { 'x-wide': '日本' }, { 'x:colon': 'v' }, { '': 'v' }]
    const before = await rows()
    for (const headers of cases) {
      for (const [method, path, body] of [['POST', '/admin/providers', provider('hdr', { headers })], ['PATCH', '/admin/providers/base', { headers }]] as const) {
        const refused = await expectEnvelope(await call(method, path, body), 'invalid_request')
        expect({ method, headers, param: refused.param }).toEqual({ method, headers, param: 'x-nul' in headers ? 'headers.x-nul' : 'headers' })
        expect(refused.message).not.toContain('Injected')
      }
    }
    expect(await rows()).toEqual(before)
    // Still served as before: nothing of the refused changes reached the registry.
    expect((await call('POST', '/admin/models', model('hdr-gpt'))).status).toBe(201)
    expect((await chat('hdr-gpt')).status).toBe(200)
    expect(mock.stats.lastHeaders?.get('x-inject')).toBeNull()
  })

  test('a key secret that could not be sent in a header is refused at POST and PATCH (param "keys[i].secret"), never echoing it; one with a trailing newline serves', async () => {
    const before = await rows()
    for (const secret of ['sk-line\nINJECTED', 'sk-cr\rINJECTED', '\u201csk-quoted-INJECTED\u201d']) {
      const keys = [{ id: 'k1', secret: SECRET }, { id: 'k2', secret }]
      for (const [method, path, body] of [['POST', '/admin/providers', provider('sec', { keys })], ['PATCH', '/admin/providers/base', { keys }]] as const) {
        const refused = await expectEnvelope(await call(method, path, body), 'invalid_request')
        expect({ method, secret, param: refused.param }).toEqual({ method, secret, param: 'keys[1].secret' })
        expect(refused.message).not.toContain('INJECTED')
      }
    }
    expect(await rows()).toEqual(before)
    // As a secret read from a file arrives: the newline around it is no part of the header sent.
    expect((await call('POST', '/admin/providers', provider('sec-nl', { keys: [{ id: 'k1', secret: `${SECRET}\n` }] }))).status).toBe(201)
    expect((await call('POST', '/admin/models', { name: 'sec-nl-gpt', targets: [{ provider: 'sec-nl', model: 'mock-gpt' }] })).status).toBe(201)
    expect((await chat('sec-nl-gpt')).status).toBe(200)
  })

  test('refusals name the fields the caller sent (base_url, keys, targets, fallbacks, encoding), never a config-file path', async () => {
    const cases: [string, string, unknown, string, string][] = [
      ['POST', '/admin/providers', provider('p1', { type: 'openai', base_url: 'http://' }), 'base_url', 'Invalid value for "base_url": not a URL.'],
      ['POST', '/admin/providers', provider('p2', { keys: [{ id: 'k', secret: 's' }, { id: 'k', secret: 's' }] }), 'keys[1].id', 'Invalid value for "keys[1].id": duplicate key id "k" in provider "p2".'],
      ['PATCH', '/admin/providers/base', { type: 'openai-compatible', base_url: 'http://' }, 'base_url', 'Invalid value for "base_url": not a URL.'],
      ['POST', '/admin/models', model('m1', { targets: [{ provider: 'ghost', model: 'x' }] }), 'targets[0].provider', 'Invalid value for "targets[0].provider": no provider with id "ghost".'],
      ['POST', '/admin/models', model('m2', { fallbacks: ['nowhere'] }), 'fallbacks[0]', 'Invalid value for "fallbacks[0]": no model named "nowhere".'],
      ['POST', '/admin/models', model('m3', { encoding: 'bogus_enc' }), 'encoding', 'Invalid value for "encoding": "bogus_enc" is not one of o200k_base, cl100k_base, p50k_base, p50k_edit, r50k_base, gpt2.'],
      ['PATCH', '/admin/models/ref-gpt', { encoding: 'bogus_enc' }, 'encoding', 'Invalid value for "encoding": "bogus_enc" is not one of o200k_base, cl100k_base, p50k_base, p50k_edit, r50k_base, gpt2.'],
    ]
    expect((await call('POST', '/admin/models', model('ref-gpt'))).status).toBe(201)
    for (const [method, path, body, param, message] of cases) {
      const refused = await expectEnvelope(await call(method, path, body), 'invalid_request')
      expect({ method, path, ...refused }).toEqual({ method, path, param, message })
    }
    expect((await call('POST', '/admin/models', model('enc-gpt', { encoding: 'cl100k_base' }))).status).toBe(201)
  })

  test("a target's weight, as a key's, is at most 1000000: above it POST and PATCH are refused naming the field and the bound, and change nothing", async () => {
    const cases: [string, string, unknown, string][] = [
      ['POST', '/admin/models', model('heavy-gpt', { targets: [{ provider: 'base', model: 'mock-gpt', weight: 1_000_001 }] }), 'targets[0].weight'],
      ['POST', '/admin/models', model('heavy-gpt', { targets: [{ provider: 'base', model: 'mock-gpt' }, { provider: 'base', model: 'mock-gpt', weight: 1e300 }] }), 'targets[1].weight'],
      ['POST', '/admin/providers', provider('heavy', { keys: [{ id: 'k1', secret: SECRET, weight: 2e6 }] }), 'keys[0].weight'],
    ]
    expect((await call('POST', '/admin/models', model('weighed-gpt', { targets: [{ provider: 'base', model: 'mock-gpt', weight: 1_000_000 }] }))).status).toBe(201)
    cases.push(['PATCH', '/admin/models/weighed-gpt', { targets: [{ provider: 'base', model: 'mock-gpt', weight: 1e7 }] }, 'targets[0].weight'])
    const before = await rows()
    for (const [method, path, body, param] of cases) {
      const refused = await expectEnvelope(await call(method, path, body), 'invalid_request')
      expect({ method, path, param: refused.param }).toEqual({ method, path, param })
      expect(refused.message).toContain(`"${param}"`)
      expect(refused.message).toContain('1000000')
    }
    expect(await rows()).toEqual(before)
    expect((await chat('weighed-gpt')).status).toBe(200)
  })

  test('a model another one falls back to cannot be deleted: 409 conflict naming it', async () => {
    expect((await call('POST', '/admin/models', model('fa'))).status).toBe(201)
    expect((await call('POST', '/admin/models', model('fb', { fallbacks: ['fa'] }))).status).toBe(201)
    const refused = await expectEnvelope(await call('DELETE', '/admin/models/fa'), 'conflict')
    expect(refused.message).toBe('Model "fa" is a fallback of model(s) fb; change or delete them first.')
    expect((await call('GET', '/admin/models/fa')).status).toBe(200)
    expect((await call('PATCH', '/admin/models/fb', { fallbacks: [] })).status).toBe(200)
    expect((await call('DELETE', '/admin/models/fa')).status).toBe(200)
  })

  test('a base URL is shown with its password and query values masked, in every answer; the audit trail never has it', async () => {
    const url = new URL(mock.url)
    const secretUrl = `${url.protocol}//user:url-pass-0123456789@${url.host}/v1?api-version=1&key=QUERY-SECRET-0123456789`
    const masked = `${url.protocol}//user:***@${url.host}/v1?api-version=***&key=***`
    const answers = [
      await call('POST', '/admin/providers', provider('cred', { base_url: secretUrl })),
      await call('GET', '/admin/providers/cred'),
      await call('GET', '/admin/providers'),
      await call('PATCH', '/admin/providers/cred', { base_url: secretUrl, timeouts: { total_ms: 30000 } }),
    ]
    for (const res of answers) {
      const text = await res.text()
      expect(res.status).toBeLessThan(300)
      expect(text).not.toContain('url-pass')
      expect(text).not.toContain('QUERY-SECRET')
      expect(text).toContain(masked)
    }
    const trail = await gw.gateway.services.db.db.selectFrom('audit_log').selectAll().where('target_id', '=', 'cred').execute()
    expect(trail.length).toBe(2)
    expect(JSON.stringify(trail)).not.toContain('url-pass')
    expect(JSON.stringify(trail)).not.toContain('QUERY-SECRET')
  })

  test('options are shown as they were written, in every answer', async () => {
    const options = { stream_usage: false, auth_header: 'api-key' }
    const created = await call('POST', '/admin/providers', provider('opts', { options }))
    expect(created.status).toBe(201)
    expect(await created.json()).toMatchObject({ id: 'opts', options })
    expect(await (await call('GET', '/admin/providers/opts')).json()).toMatchObject({ options })
    const listed = (await (await call('GET', '/admin/providers')).json()) as { data: { id: string; options: unknown }[] }
    expect(listed.data.find((p) => p.id === 'opts')?.options).toEqual(options)
    expect(listed.data.find((p) => p.id === 'base')?.options).toBeNull()
    expect(await (await call('PATCH', '/admin/providers/opts', { options: { stream_usage: true } })).json()).toMatchObject({ options: { stream_usage: true } })
  })

  test('header values are stored sealed, sent upstream, and never shown', async () => {
    const headers = { 'api-key': HEADER_SECRET, 'x-team': 'blue' }
    const created = await call('POST', '/admin/providers', provider('sealed', { headers }))
    expect(created.status).toBe(201)
    expect(await created.json()).toMatchObject({ id: 'sealed', headers: ['api-key', 'x-team'] })
    expect(await (await call('GET', '/admin/providers/sealed')).json()).toMatchObject({ headers: ['api-key', 'x-team'] })
    expect(JSON.stringify(await (await call('GET', '/admin/providers')).json())).not.toContain(HEADER_SECRET)

    const row = async () => (await gw.gateway.services.db.db.selectFrom('providers').select('config').where('id', '=', 'sealed').executeTakeFirstOrThrow()).config
    expect(await row()).not.toContain(HEADER_SECRET)
    expect(await row()).not.toContain('blue')

    expect((await call('POST', '/admin/models', model('sealed-gpt', { targets: [{ provider: 'sealed', model: 'mock-gpt' }] }))).status).toBe(201)
    expect((await chat('sealed-gpt')).status).toBe(200)
    expect(mock.stats.lastHeaders?.get('api-key')).toBe(HEADER_SECRET)

    const changed = `${HEADER_SECRET}-2`
    expect((await call('PATCH', '/admin/providers/sealed', { headers: { 'api-key': changed } })).status).toBe(200)
    expect(await row()).not.toContain(changed)
    expect((await chat('sealed-gpt')).status).toBe(200)
    expect(mock.stats.lastHeaders?.get('api-key')).toBe(changed)
    expect(mock.stats.lastHeaders?.get('x-team')).toBeNull()

    // Deleted, the provider keeps its row but none of its secrets.
    expect((await call('DELETE', '/admin/models/sealed-gpt')).status).toBe(200)
    expect((await call('DELETE', '/admin/providers/sealed')).status).toBe(200)
    expect(await row()).toBe('{}')
  })

  test('GET /admin/models/{name} answers a model of either source, 404 not_found with a masked echo otherwise; Swagger has it', async () => {
    const pricing = { input: 1, output: 2 }
    expect((await call('POST', '/admin/models', model('get-gpt', { pricing }))).status).toBe(201)
    expect(await (await call('GET', '/admin/models/get-gpt')).json()).toEqual({ object: 'model_group', source: 'admin', name: 'get-gpt', targets: [{ provider: 'base', model: 'mock-gpt' }], pricing })
    const pasted = `sk-prod-${'D'.repeat(40)}`
    const missing = await call('GET', `/admin/models/${pasted}`)
    const text = await missing.clone().text()
    expect((await expectEnvelope(missing, 'not_found')).message).toStartWith('No model "sk-prod-')
    expect(text).not.toContain(pasted)
    expect((await fetch(`${gw.url}/admin/models/get-gpt`)).status).toBe(401)
    const doc = (await (await fetch(`${gw.url}/swagger/json`)).json()) as { paths: Record<string, Record<string, { summary?: string; tags?: string[] }>> }
    expect(doc.paths['/admin/models/{name}']?.get).toMatchObject({ tags: ['Admin: providers and models'], summary: expect.stringContaining('Get a model group') })
  })

  test('a provider row written before headers were sealed still works, and is sealed once changed', async () => {
    await gw.close()
    // As an older gateway wrote it: the headers in plain text in the config column.
    const db = await createDatabase(`sqlite://${join(dir, 'checks.db')}`)
    try {
      const at = new Date().toISOString()
      await db.db.insertInto('providers').values({ id: 'legacy', type: 'openai-compatible', base_url: mock.url, config: JSON.stringify({ headers: { 'x-legacy': 'old-plain-value' } }), created_at: at, updated_at: at, deleted_at: null }).execute()
      await db.db.insertInto('provider_keys').values({ id: 'legacy/k1', provider_id: 'legacy', secret_enc: encryptSecret(masterKey(KEY_A), SECRET, 'legacy/k1'), key_version: masterKey(KEY_A).id, weight: 1, rpm: null, tpm: null, disabled_at: null, created_at: at, updated_at: at }).execute()
      // One the headers check would refuse now.
      await db.db.insertInto('providers').values({ id: 'legacy-bad', type: 'openai-compatible', base_url: mock.url, config: JSON.stringify({ headers: { 'bad header': 'x' } }), created_at: at, updated_at: at, deleted_at: null }).execute()
      await db.db.insertInto('provider_keys').values({ id: 'legacy-bad/k1', provider_id: 'legacy-bad', secret_enc: encryptSecret(masterKey(KEY_A), SECRET, 'legacy-bad/k1'), key_version: masterKey(KEY_A).id, weight: 1, rpm: null, tpm: null, disabled_at: null, created_at: at, updated_at: at }).execute()
    } finally {
      await db.close()
    }
    gw = await boot()
    expect(await (await call('GET', '/admin/providers/legacy')).json()).toMatchObject({ headers: ['x-legacy'] })
    expect((await call('POST', '/admin/models', model('legacy-gpt', { targets: [{ provider: 'legacy', model: 'mock-gpt' }] }))).status).toBe(201)
    expect((await chat('legacy-gpt')).status).toBe(200)
    expect(mock.stats.lastHeaders?.get('x-legacy')).toBe('old-plain-value')

    expect((await call('PATCH', '/admin/providers/legacy', { timeouts: { total_ms: 60000 } })).status).toBe(200)
    const config = (await gw.gateway.services.db.db.selectFrom('providers').select('config').where('id', '=', 'legacy').executeTakeFirstOrThrow()).config
    expect(config).not.toContain('old-plain-value')
    expect((await chat('legacy-gpt')).status).toBe(200)
    expect(mock.stats.lastHeaders?.get('x-legacy')).toBe('old-plain-value')

    // A row the check would refuse blocks no other change (the model above), nor a change of its other
    // fields; headers sent to it are checked.
    expect((await call('PATCH', '/admin/providers/legacy-bad', { timeouts: { total_ms: 60000 } })).status).toBe(200)
    expect((await expectEnvelope(await call('PATCH', '/admin/providers/legacy-bad', { headers: { 'bad header': 'y' } }), 'invalid_request')).param).toBe('headers')
    expect(await (await call('PATCH', '/admin/providers/legacy-bad', { headers: { 'good-header': 'y' } })).json()).toMatchObject({ headers: ['good-header'] })
  })

  test('a model of the config file that falls back to an admin model keeps it from being deleted', async () => {
    expect((await call('POST', '/admin/models', model('admin-target'))).status).toBe(201)
    await gw.close()
    // loadConfig cannot see the database, so such a config comes from a program that embeds the gateway.
    const loaded = await loadConfig({ config: { environment: 'prod', plugins: [] } as ConfigFile, env: { SLUICE_ADMIN_KEY: ADMIN, DATABASE_URL: `sqlite://${join(dir, 'checks.db')}`, SLUICE_ENCRYPTION_KEY: KEY_A, LOG_LEVEL: 'silent' } })
    const config = { ...loaded, providers: [{ id: 'cfg-up', type: 'openai-compatible' as const, baseUrl: mock.url, keys: [{ id: 'k', secret: SECRET }] }], models: [{ name: 'cfg-gpt', targets: [{ provider: 'cfg-up', model: 'mock-gpt' }], fallbacks: ['admin-target'] }] }
    const gateway = await createGateway(config, { logger: createLogger('silent') })
    const server = gateway.listen({ port: 0, hostname: '127.0.0.1' })
    gw = { gateway, url: `http://127.0.0.1:${server.port}`, close: () => gateway.close() }
    const refused = await expectEnvelope(await call('DELETE', '/admin/models/admin-target'), 'conflict')
    expect(refused.message).toContain('model(s) cfg-gpt')
  })
})
