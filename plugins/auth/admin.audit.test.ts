/**
 * Admin API when the audit write fails after a change is stored: the key cache must already
 * have dropped the changed key, so a revoked key (or the key of a user just disabled, or a key
 * just rotated) is refused at once, not after cache_ttl_ms. The audit insert is made to fail by
 * a real SQLite trigger on audit_log, dropped again after each case.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'bun:test'
import { sql } from 'kysely'
import { startMockUpstream, type MockUpstream } from '../../test/fixtures/mock-upstream.ts'
import { chat, expectApiError, startAuthGateway, userWithKey, type AuthGateway } from '../../test/support/auth.ts'

let upstream: MockUpstream
let gw: AuthGateway

beforeAll(async () => {
  upstream = await startMockUpstream()
  // A long TTL: only an invalidation can make the gateway forget a cached key within the test.
  gw = await startAuthGateway(upstream.url, { config: { plugins: [{ use: 'auth', options: { demo_key: false, cache_ttl_ms: 600_000 } }] } })
})
afterAll(async () => {
  await gw?.close()
  await upstream?.stop()
})
afterEach(() => auditWorks())

const auditFails = () => sql`create trigger audit_down before insert on audit_log begin select raise(abort, 'audit log unavailable'); end`.execute(gw.db)
const auditWorks = () => sql`drop trigger if exists audit_down`.execute(gw.db)

/** The admin call fails (the audit row could not be written), though its change is stored. */
async function failsOnAudit(method: string, path: string, body?: unknown): Promise<void> {
  await auditFails()
  const res = await gw.admin(method, path, body)
  expect(res.status).toBe(500)
  await res.arrayBuffer()
  await auditWorks()
}

describe('an audit write that fails does not leave a stale key in the cache', () => {
  test('revoke: the key is refused with key_revoked right after the failed call; a retry says it is revoked already', async () => {
    const { key } = await userWithKey(gw)
    const client = gw.client(key.key)
    expect((await chat(client)).object).toBe('chat.completion')
    await failsOnAudit('POST', `/admin/keys/${key.id}/revoke`, { reason: 'leaked' })
    expect((await gw.db.selectFrom('api_keys').select('status').where('id', '=', key.id).executeTakeFirstOrThrow()).status).toBe('revoked')
    expect(await expectApiError(chat(client), 'key_revoked')).toContain('leaked')
    expect((await gw.admin('POST', `/admin/keys/${key.id}/revoke`, {})).status).toBe(409)
  })

  test('rotate without grace: the old key is refused at once', async () => {
    const { key } = await userWithKey(gw)
    const client = gw.client(key.key)
    await chat(client)
    await failsOnAudit('POST', `/admin/keys/${key.id}/rotate`, {})
    await expectApiError(chat(client), 'key_revoked')
  })

  test('PATCH key: a narrowed models list applies at once', async () => {
    const { key } = await userWithKey(gw)
    const client = gw.client(key.key)
    await chat(client, 'other-gpt')
    await failsOnAudit('PATCH', `/admin/keys/${key.id}`, { models: ['mock-gpt'] })
    await expectApiError(chat(client, 'other-gpt'), 'model_not_allowed')
  })

  test('PATCH user {disabled: true} and DELETE user: their keys are refused at once', async () => {
    const disabled = await userWithKey(gw)
    const deleted = await userWithKey(gw)
    await chat(gw.client(disabled.key.key))
    await chat(gw.client(deleted.key.key))
    await failsOnAudit('PATCH', `/admin/users/${disabled.userId}`, { disabled: true })
    await expectApiError(chat(gw.client(disabled.key.key)), 'invalid_user_for_key')
    await failsOnAudit('DELETE', `/admin/users/${deleted.userId}`)
    await expectApiError(chat(gw.client(deleted.key.key)), 'invalid_user_for_key')
  })

  test('team member added: a key bound to the team works again at once', async () => {
    const { key, userId, teamId } = await userWithKey(gw, {}, { team: true })
    const client = gw.client(key.key)
    await gw.adminOk('DELETE', `/admin/teams/${teamId}/members/${userId}`)
    await expectApiError(chat(client), 'invalid_user_for_key')
    await failsOnAudit('POST', `/admin/teams/${teamId}/members`, { user_id: userId })
    expect((await chat(client)).object).toBe('chat.completion')
  })

  test('team member removed, team deleted: keys bound to the team are refused at once', async () => {
    const removed = await userWithKey(gw, {}, { team: true })
    const teamGone = await userWithKey(gw, {}, { team: true })
    await chat(gw.client(removed.key.key))
    await chat(gw.client(teamGone.key.key))
    await failsOnAudit('DELETE', `/admin/teams/${removed.teamId}/members/${removed.userId}`)
    await expectApiError(chat(gw.client(removed.key.key)), 'invalid_user_for_key')
    await failsOnAudit('DELETE', `/admin/teams/${teamGone.teamId}`)
    await expectApiError(chat(gw.client(teamGone.key.key)), 'invalid_user_for_key')
  })
})
