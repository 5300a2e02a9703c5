/**
 * Admin API: `null` for one field of `limits` or `budget` means "not set", as leaving the field
 * out does, on keys, users and teams, created or changed. The field is dropped before it is stored
 * (the quota never sees a null limit), the Swagger says each field is nullable, and a value that is
 * neither null nor in range is still refused naming the field.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startMockUpstream, type MockUpstream } from '../../test/fixtures/mock-upstream.ts'
import { expectEnvelope, startAuthGateway, uid, userWithKey, type AuthGateway } from '../../test/support/auth.ts'
import { createKey, createUser, expectQuotaError, quotaConfig, startQuotaGateway, type QuotaGateway } from '../../test/support/quota.ts'

let upstream: MockUpstream
let gw: AuthGateway

beforeAll(async () => {
  upstream = await startMockUpstream()
  gw = await startAuthGateway(upstream.url)
})
afterAll(async () => {
  await gw?.close()
  await upstream?.stop()
})

const LIMITS = { rpm: 5, tpm: null, max_parallel: null }
const BUDGET = { tokens: 100, usd: null, period: 'day' }

/** The stored text of a row's limits and budget: the nulls must not be in it. */
const stored = async (table: 'api_keys' | 'users' | 'teams', id: string) =>
  await gw.db.selectFrom(table).select(['limits', 'budget']).where('id', '=', id).executeTakeFirstOrThrow()

describe('null inside limits or budget is "not set"', () => {
  test('PATCH /admin/keys/:id {"limits": {"tpm": null, "rpm": 5}} and a budget with usd null', async () => {
    const { key } = await userWithKey(gw, { limits: { rpm: 1, tpm: 1000 }, budget: { tokens: 10, usd: 1, period: 'week' } })
    const patched = await gw.adminOk<{ limits: unknown; budget: unknown }>('PATCH', `/admin/keys/${key.id}`, { limits: { tpm: null, rpm: 5 }, budget: BUDGET })
    expect(patched.limits).toEqual({ rpm: 5 })
    expect(patched.budget).toEqual({ tokens: 100, period: 'day' })
    expect(await stored('api_keys', key.id)).toEqual({ limits: '{"rpm":5}', budget: '{"tokens":100,"period":"day"}' })
    // Every field null: no limit at all, as an empty object says.
    const cleared = await gw.adminOk<{ limits: unknown }>('PATCH', `/admin/keys/${key.id}`, { limits: { rpm: null, tpm: null, max_parallel: null } })
    expect(cleared.limits).toEqual({})
  })

  test('POST /admin/keys, /admin/users and /admin/teams, and PATCH of users and teams', async () => {
    const { key, userId } = await userWithKey(gw, { limits: LIMITS, budget: BUDGET })
    expect(key.limits).toEqual({ rpm: 5 })
    expect(await stored('api_keys', key.id)).toEqual({ limits: '{"rpm":5}', budget: '{"tokens":100,"period":"day"}' })

    const user = await gw.adminOk<{ id: string; limits: unknown; budget: unknown }>('POST', '/admin/users', { id: uid('usr'), limits: LIMITS, budget: BUDGET })
    expect(user).toMatchObject({ limits: { rpm: 5 }, budget: { tokens: 100, period: 'day' } })
    expect(await stored('users', user.id)).toEqual({ limits: '{"rpm":5}', budget: '{"tokens":100,"period":"day"}' })
    const patchedUser = await gw.adminOk('PATCH', `/admin/users/${userId}`, { limits: { rpm: null, tpm: 7 }, budget: { tokens: null, usd: 2, period: 'month' } })
    expect(patchedUser).toMatchObject({ limits: { tpm: 7 }, budget: { usd: 2, period: 'month' } })
    expect(await stored('users', userId)).toEqual({ limits: '{"tpm":7}', budget: '{"usd":2,"period":"month"}' })

    const team = await gw.adminOk<{ id: string }>('POST', '/admin/teams', { id: uid('team'), name: 'Nulls', limits: LIMITS, budget: BUDGET })
    expect(team).toMatchObject({ limits: { rpm: 5 }, budget: { tokens: 100, period: 'day' } })
    const patchedTeam = await gw.adminOk('PATCH', `/admin/teams/${team.id}`, { limits: { max_parallel: 3, rpm: null }, budget: { usd: 9, tokens: null, period: 'total' } })
    expect(patchedTeam).toMatchObject({ limits: { max_parallel: 3 }, budget: { usd: 9, period: 'total' } })
    expect(await stored('teams', team.id)).toEqual({ limits: '{"max_parallel":3}', budget: '{"usd":9,"period":"total"}' })
  })

  test('what is neither null nor valid is still refused, naming the field', async () => {
    const { key } = await userWithKey(gw)
    const cases: Array<[unknown, string, string]> = [
      [{ limits: { tpm: 'many', rpm: 5 } }, 'limits.tpm', 'Expected integer or null'],
      [{ limits: { rpm: 0, tpm: null } }, 'limits.rpm', 'greater or equal to 1'],
      [{ limits: { rpd: null } }, 'limits', ''],
      [{ budget: { usd: 'five', period: 'day' } }, 'budget.usd', 'Expected number or null'],
      [{ budget: { tokens: 5, period: null } }, 'budget.period', ''],
      [{ budget: { tokens: null, usd: null } }, 'budget.period', ''],
    ]
    for (const [body, param, message] of cases) {
      const refusal = await expectEnvelope(await gw.admin('PATCH', `/admin/keys/${key.id}`, body), 'invalid_request')
      expect({ body, param: refusal.param }).toEqual({ body, param: expect.stringMatching(new RegExp(`^${param.replace('.', '\\.')}`)) })
      expect(refusal.message).toContain(message)
    }
    expect(await stored('api_keys', key.id)).toEqual({ limits: null, budget: null })
  })

  test('Swagger: every field of limits and budget in a request body is nullable; period is not', async () => {
    const spec = (await (await fetch(`${gw.url}/swagger/json`)).json()) as {
      paths: Record<string, Record<string, { requestBody: { content: { 'application/json': { schema: { properties: Record<string, { properties: Record<string, { type: unknown }> }> } } } } }>>
    }
    const bodies: Array<[string, string]> = [
      ['/admin/keys', 'post'],
      ['/admin/keys/{id}', 'patch'],
      ['/admin/users', 'post'],
      ['/admin/users/{id}', 'patch'],
      ['/admin/teams', 'post'],
      ['/admin/teams/{id}', 'patch'],
    ]
    for (const [path, method] of bodies) {
      const properties = spec.paths[path]![method]!.requestBody.content['application/json'].schema.properties
      const types = (field: 'limits' | 'budget') => Object.fromEntries(Object.entries(properties[field]!.properties).map(([name, schema]) => [name, schema.type]))
      expect({ path, method, limits: types('limits'), budget: types('budget') }).toEqual({
        path,
        method,
        limits: { rpm: ['integer', 'null'], tpm: ['integer', 'null'], max_parallel: ['integer', 'null'] },
        budget: { tokens: ['integer', 'null'], usd: ['number', 'null'], period: 'string' },
      })
    }
  })
})

describe('null for an optional field of a create body is "not set", as leaving it out is', () => {
  test('POST /admin/users, /admin/teams, /admin/keys, members, revoke and rotate', async () => {
    const user = await gw.adminOk<{ id: string }>('POST', '/admin/users', { id: null, email: null, name: null, limits: null, budget: null, metadata: null })
    expect(user.id).toStartWith('usr_')
    expect(user).toMatchObject({ email: null, name: null, limits: null, budget: null, metadata: null })
    const team = await gw.adminOk<{ id: string }>('POST', '/admin/teams', { id: null, name: 'Nulls', limits: null, budget: null, metadata: null })
    expect(team.id).toStartWith('team_')
    expect(team).toMatchObject({ limits: null, budget: null, metadata: null })
    const member = await gw.adminOk('POST', `/admin/teams/${team.id}/members`, { user_id: user.id, role: null })
    expect(member).toMatchObject({ role: 'member' })
    const key = await gw.adminOk<{ id: string }>('POST', '/admin/keys', {
      user_id: user.id, team_id: null, name: null, environment: null, expires_at: null, models: null, scopes: null, limits: null, budget: null, metadata: null,
    })
    expect(key).toMatchObject({ environment: 'dev', name: null, team_id: null, metadata: null, limits: null })
    const rotated = await gw.adminOk<{ id: string; previous: { status: string } }>('POST', `/admin/keys/${key.id}/rotate`, { grace_seconds: null })
    expect(rotated.previous.status).toBe('revoked')
    const revoked = await gw.adminOk('POST', `/admin/keys/${rotated.id}/revoke`, { reason: null })
    expect(revoked).toMatchObject({ status: 'revoked', revoked_reason: null })
  })
})

describe('the quota sees no null limit', () => {
  let quota: QuotaGateway
  beforeAll(async () => {
    quota = await startQuotaGateway(quotaConfig(upstream.url))
  })
  afterAll(() => quota?.close())

  test('a key with {"rpm": 1, "tpm": null, "max_parallel": null} is limited to one request a minute, with no token limit', async () => {
    const { id, key } = await createKey(quota, await createUser(quota), { limits: { rpm: 1, tpm: null, max_parallel: null }, budget: { tokens: null, usd: 1000, period: 'day' } })
    const first = await quota.chat(key)
    expect(first.status).toBe(200)
    expect(first.headers.get('x-ratelimit-limit-tokens')).toBeNull()
    await first.arrayBuffer()
    expect(await expectQuotaError(await quota.chat(key), 'rate_limit_exceeded')).toContain(`key ${id}`)
    expect((await quota.keyInfo(key)).remaining).toMatchObject({ tokens: null, budget_tokens: null })
  })
})
