/**
 * `GET /admin/audit`: every change made through the admin API is in the trail (users, teams,
 * keys, quota resets, providers, models, provider key health), newest first, filtered and
 * paged, on SQLite and on Postgres; a provider secret or a plaintext key never is.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { expectEnvelope } from './support/auth.ts'
import { expectError } from './support/http.ts'
import { startGateway, type TestGateway } from './support/gateway.ts'
import { createTestPostgresDatabase, postgresUrlForTests, type TestPostgresDatabase } from './support/services.ts'

const ADMIN = 'sluice-audit-tests-admin-key-0123456789abcdef'
const SECRET = 'sk-provider-audit-secret-abcdefghijklmnop'
const MASTER = Buffer.alloc(32, 5).toString('base64')
const headers = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }

interface Entry {
  object: string
  id: string
  at: string
  actor: string
  action: string
  target_type: string | null
  target_id: string | null
  details: unknown
}
interface Page {
  object: string
  data: Entry[]
  next_cursor: string | null
}

const postgresUrl = await postgresUrlForTests('test/audit.test.ts')

let upstream: MockUpstream
beforeAll(async () => {
  upstream = await startMockUpstream({ apiKeys: [SECRET] })
})
afterAll(async () => {
  await upstream?.stop()
})

function auditSuite(databaseUrl: () => string): void {
  let gw: TestGateway
  let plaintext = ''
  let keyId = ''
  const call = async (method: string, path: string, body?: unknown): Promise<Response> =>
    fetch(gw.url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
  const ok = async <T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T> => {
    const res = await call(method, path, body)
    const text = await res.text()
    if (res.status >= 300) throw new Error(`${method} ${path} → ${res.status} ${text}`)
    return JSON.parse(text) as T
  }
  const trail = (query = '') => ok<Page>('GET', `/admin/audit${query}`)

  beforeAll(async () => {
    gw = await startGateway(
      { environment: 'dev', plugins: [{ use: 'auth', options: { demo_key: false } }, 'quota', 'balance'] },
      { env: { SLUICE_ADMIN_KEY: ADMIN, DATABASE_URL: databaseUrl(), SLUICE_ENCRYPTION_KEY: MASTER } },
    )
    // One change of every kind the trail keeps, in this order.
    await ok('POST', '/admin/users', { id: 'usr_audit' })
    await ok('POST', '/admin/teams', { id: 'team_audit', name: 'Audit' })
    await ok('POST', '/admin/teams/team_audit/members', { user_id: 'usr_audit' })
    const key = await ok<{ id: string; key: string }>('POST', '/admin/keys', { user_id: 'usr_audit', limits: { rpm: 5 } })
    plaintext = key.key
    keyId = key.id
    await ok('POST', '/admin/providers', { id: 'audited', type: 'openai-compatible', base_url: upstream.url, keys: [{ id: 'k1', secret: SECRET }] })
    await ok('PATCH', '/admin/providers/audited', { keys: [{ id: 'k2', secret: SECRET }] })
    await ok('POST', '/admin/models', { name: 'audited-gpt', targets: [{ provider: 'audited', model: 'mock-gpt' }] })
    // One call through the new key, so the balance plugin knows its health.
    const chat = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${plaintext}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'audited-gpt', messages: [{ role: 'user', content: 'hi' }] }),
    })
    expect(chat.status).toBe(200)
    await chat.arrayBuffer()
    await ok('POST', '/admin/providers/audited/keys/k2/reset')
    await ok('POST', `/admin/keys/${keyId}/quota/reset`, { budget: false })
    await ok('POST', `/admin/keys/${keyId}/revoke`, { reason: 'left the company' })
    await ok('DELETE', '/admin/models/audited-gpt')
  })
  afterAll(() => gw?.close())

  test('every change is there, newest first, with what it changed', async () => {
    const page = await trail()
    expect(page.object).toBe('list')
    expect(page.next_cursor).toBeNull()
    expect(page.data.map((e) => e.action)).toEqual([
      'model.delete',
      'key.revoke',
      'quota.reset',
      'provider_key.reset',
      'model.create',
      'provider.update',
      'provider.create',
      'key.create',
      'team.member.add',
      'team.create',
      'user.create',
    ])
    const byAction = new Map(page.data.map((e) => [e.action, e]))
    expect(byAction.get('key.revoke')).toMatchObject({ object: 'audit_entry', actor: 'admin', target_type: 'key', target_id: keyId, details: { reason: 'left the company' } })
    expect(byAction.get('quota.reset')).toMatchObject({ target_type: 'key', target_id: keyId, details: { limits: true, budget: false, counted_as: keyId } })
    expect(byAction.get('provider.create')).toMatchObject({ target_type: 'provider', target_id: 'audited', details: { type: 'openai-compatible', keys: ['k1'] } })
    expect(byAction.get('provider.update')).toMatchObject({ details: { fields: ['keys'], keys: ['k2'] } })
    expect(byAction.get('model.create')).toMatchObject({ target_type: 'model', target_id: 'audited-gpt', details: { targets: ['audited/mock-gpt'] } })
    expect(byAction.get('provider_key.reset')).toMatchObject({ target_type: 'provider_key', target_id: 'audited/k2' })
    for (let i = 1; i < page.data.length; i++) expect(page.data[i - 1]!.at >= page.data[i]!.at).toBe(true)
    // Every change here was made with the admin key (the console's are by `console`: see the browser test).
    expect([...new Set(page.data.map((e) => e.actor))]).toEqual(['admin'])
  })

  test('no provider secret and no plaintext key, in the answer or in the table', async () => {
    const answer = JSON.stringify(await trail())
    const table = JSON.stringify(await gw.gateway.services.db.db.selectFrom('audit_log').selectAll().execute())
    for (const text of [answer, table]) {
      expect(text).not.toContain(SECRET)
      expect(text).not.toContain(plaintext)
      expect(text).not.toContain(plaintext.slice(-20))
    }
  })

  test('filters: an object, a kind of object, an action or every action of a kind (key.), a start time', async () => {
    const actions = async (query: string) => (await trail(query)).data.map((e) => e.action)
    expect(await actions(`?target_id=${keyId}`)).toEqual(['key.revoke', 'quota.reset', 'key.create'])
    expect(await actions('?target_type=provider')).toEqual(['provider.update', 'provider.create'])
    expect(await actions('?action=key.revoke')).toEqual(['key.revoke'])
    expect(await actions('?action=team.')).toEqual(['team.member.add', 'team.create'])
    // A prefix is a prefix, not a pattern: `_` matches only itself.
    expect(await actions('?action=provider_key.')).toEqual(['provider_key.reset'])
    expect(await actions('?action=provider.')).toEqual(['provider.update', 'provider.create'])
    const all = (await trail()).data
    expect(await actions(`?from=${encodeURIComponent(all[1]!.at)}`)).toEqual(all.filter((e) => e.at >= all[1]!.at).map((e) => e.action))
    // An offset is applied: the same instant written in another zone selects the same entries.
    const shifted = new Date(Date.parse(all[1]!.at) + 5.5 * 3_600_000).toISOString().replace('Z', '+05:30')
    expect(await actions(`?from=${encodeURIComponent(shifted)}`)).toEqual(all.filter((e) => e.at >= all[1]!.at).map((e) => e.action))
  })

  test('cursor pages cover the trail once, in order', async () => {
    const all = (await trail()).data.map((e) => e.id)
    const seen: string[] = []
    let before: string | null = null
    for (let pages = 0; pages < 20; pages++) {
      const page: Page = await trail(`?limit=3${before ? `&before=${encodeURIComponent(before)}` : ''}`)
      expect(page.data.length).toBeLessThanOrEqual(3)
      seen.push(...page.data.map((e) => e.id))
      before = page.next_cursor
      if (!before) break
    }
    expect(seen).toEqual(all)
  })

  test('refusals: no admin key, a bad limit, cursor or time', async () => {
    await expectEnvelope(await fetch(`${gw.url}/admin/audit`), 'invalid_admin_key')
    await expectEnvelope(await fetch(`${gw.url}/admin/audit`, { headers: { authorization: `Bearer ${plaintext}` } }), 'invalid_admin_key')
    for (const [query, param] of [
      ['?limit=0', 'limit'],
      ['?limit=501', 'limit'],
      ['?before=not-a-cursor', 'before'],
      ['?from=yesterday', 'from'],
      // Rolled over to March 2 by Date.parse; read in the server's own zone; not RFC 3339.
      ['?from=2026-02-30T00:00:00Z', 'from'],
      ['?from=2026-12-07T02:48:26', 'from'],
      ['?from=2026-12-07%2002:48:26Z', 'from'],
      ['?from=2026-12-07', 'from'],
    ] as const) {
      expect((await expectError(await call('GET', `/admin/audit${query}`), 'invalid_request')).param).toBe(param)
    }
  })

  test('the route is in Swagger', async () => {
    const spec = (await (await fetch(`${gw.url}/swagger/json`)).json()) as { paths: Record<string, Record<string, { tags?: string[] }>> }
    expect(spec.paths['/admin/audit']?.get?.tags).toEqual(['Admin: audit'])
  })
}

describe('audit trail on SQLite', () => {
  auditSuite(() => 'sqlite::memory:')
})

describe.skipIf(postgresUrl === null)('audit trail on Postgres', () => {
  let pg: TestPostgresDatabase
  beforeAll(async () => {
    pg = await createTestPostgresDatabase(postgresUrl!, 'audit_trail')
  })
  afterAll(() => pg.drop())
  auditSuite(() => pg.url)
})
