import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { expectEnvelope } from './support/auth.ts'
import { startGateway, type TestGateway } from './support/gateway.ts'
import { decryptSecret, encryptSecret, masterKey, rewrapSecret } from '../src/lib/secrets.ts'

const ADMIN = 'catalog-admin-key'
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
    gw = await startGateway({ environment: 'prod', plugins: [] }, { env: { SLUICE_ADMIN_KEY: ADMIN, DATABASE_URL: dbUrl(), SLUICE_ENCRYPTION_KEY: KEY_A } })
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
