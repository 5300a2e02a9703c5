/**
 * Two instances during an encryption key change: one was given only the old master key, the other
 * sealed a provider secret with the new one. The first cannot open that secret: its admin reads
 * and changes of providers say so, naming the master key id to set, with 503 `not_ready` instead
 * of a 500 that tells the operator nothing.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { masterKey } from '../src/lib/secrets.ts'
import { startGateway, type TestGateway } from './support/gateway.ts'
import { REQUEST_ID, type ErrorEnvelopeBody } from './support/http.ts'

const ADMIN = 'catalog-mixed-keys-admin-0123456789'
const OLD_KEY = Buffer.alloc(32, 1).toString('base64')
const NEW_KEY = Buffer.alloc(32, 2).toString('base64')
const headers = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }

describe('an instance without the master key a secret was sealed with', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-mixed-keys-'))
  const databaseUrl = `sqlite://${join(dir, 'sluice.db')}`
  let withOldKey: TestGateway
  let withNewKey: TestGateway

  beforeAll(async () => {
    const env = { SLUICE_ADMIN_KEY: ADMIN, DATABASE_URL: databaseUrl }
    withOldKey = await startGateway({ environment: 'dev', plugins: [] }, { env: { ...env, SLUICE_ENCRYPTION_KEY: OLD_KEY } })
    withNewKey = await startGateway(
      { environment: 'dev', plugins: [] },
      { env: { ...env, SLUICE_ENCRYPTION_KEY: NEW_KEY, SLUICE_ENCRYPTION_KEY_PREVIOUS: OLD_KEY } },
    )
  })
  afterAll(async () => {
    await withNewKey?.close()
    await withOldKey?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  test('GET and PATCH /admin/providers answer 503 naming the master key id to set', async () => {
    const created = await fetch(`${withNewKey.url}/admin/providers`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ id: 'sealed-new', type: 'openai-compatible', base_url: 'http://127.0.0.1:9/v1', keys: [{ id: 'k', secret: 'sk-new' }] }),
    })
    expect(created.status).toBe(201)
    const newKeyId = masterKey(NEW_KEY).id

    for (const [method, body] of [['GET', undefined], ['PATCH', { base_url: 'http://127.0.0.1:9/v2' }]] as const) {
      const path = method === 'GET' ? '/admin/providers' : '/admin/providers/sealed-new'
      const res = await fetch(`${withOldKey.url}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
      expect(res.headers.get('x-request-id') ?? '').toMatch(REQUEST_ID)
      const envelope = (await res.json()) as ErrorEnvelopeBody
      expect({ status: res.status, code: envelope.error.code, type: envelope.error.type }).toEqual({ status: 503, code: 'not_ready', type: 'api_error' })
      expect(envelope.error.message).toContain(`sealed with master key ${newKeyId}`)
      expect(envelope.error.message).toContain('SLUICE_ENCRYPTION_KEY')
      expect(envelope.error.message).not.toContain('sk-new')
    }
  })
})
