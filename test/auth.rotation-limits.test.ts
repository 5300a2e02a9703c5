/**
 * During a rotation's grace period old and new key share one set of counters (their lineage),
 * so they must share one set of limits and budget too: a PATCH of limits or budget on either key
 * reaches every key of the chain still served, on every instance. Two gateways in this process on
 * one SQLite file and one Redis (the bus and the quota's counters), both with the keys warm in
 * their caches; the mock upstream is the only fake.
 *
 * Needs Redis: skipped with a printed line without it, a failure with CI set.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { deleteTaggedKeys } from './support/redis-procs.ts'
import { redisUrlForTests, uniqueTestName } from './support/services.ts'
import { createKey, createUser, eventually, expectQuotaError, quotaConfig, startQuotaGateway, type QuotaGateway } from './support/quota.ts'

setDefaultTimeout(20_000)

const redisUrl = await redisUrlForTests('test/auth.rotation-limits.test.ts')

interface KeyView {
  id: string
  key: string
  status: string
  name: string | null
  lineage_id: string
  limits: Record<string, number> | null
  budget: Record<string, unknown> | null
}

describe.skipIf(redisUrl === null)('limits and budget of a rotation chain, on two instances', () => {
  const tag = uniqueTestName('auth_rotation_limits')
  let dir: string
  let upstream: MockUpstream
  let a: QuotaGateway
  let b: QuotaGateway

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-rotation-limits-'))
    upstream = await startMockUpstream()
    const config = quotaConfig(upstream.url, { quota: { hash_tag: tag } })
    const env = { DATABASE_URL: `sqlite://${join(dir, 'sluice.db')}` }
    // One after the other: the first runs the migrations.
    a = await startQuotaGateway(config, { redisUrl, env })
    b = await startQuotaGateway(config, { redisUrl, env })
  })
  afterAll(async () => {
    await a?.close()
    await b?.close()
    await upstream?.stop()
    if (redisUrl) await deleteTaggedKeys(redisUrl, tag)
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  /** The status of a chat whose body is read, so its usage settles. */
  const chat = async (gw: QuotaGateway, key: string): Promise<number> => {
    const res = await gw.chat(key)
    await res.arrayBuffer()
    return res.status
  }
  const refused = async (gw: QuotaGateway, key: string): Promise<true | undefined> => {
    const res = await gw.chat(key)
    if (res.status === 200) {
      await res.arrayBuffer()
      return undefined
    }
    await expectQuotaError(res, 'insufficient_quota')
    return true
  }
  const view = (id: string) => a.adminOk<KeyView>('GET', `/admin/keys/${id}`)

  /** A key with a large budget rotated with a grace period; both keys used on both instances since, so both cache both. */
  const rotatedInGrace = async () => {
    const old = await createKey(a, await createUser(a), { limits: { rpm: 1000 }, budget: { tokens: 1_000_000, period: 'total' } })
    const fresh = await a.adminOk<KeyView>('POST', `/admin/keys/${old.id}/rotate`, { grace_seconds: 3600 })
    for (const gw of [a, b]) for (const key of [old.key, fresh.key]) expect(await chat(gw, key)).toBe(200)
    // Every request settled: the chain has spent some of its budget.
    await eventually(async () => ((await a.keyInfo(fresh.key)).remaining.budget_tokens! < 1_000_000 ? true : undefined), 5000, 'usage to settle')
    return { old, fresh }
  }

  test('the budget tightened on the new key binds the old key at once, on both instances; the new key too', async () => {
    const { old, fresh } = await rotatedInGrace()
    const patched = await a.adminOk<KeyView>('PATCH', `/admin/keys/${fresh.id}`, { budget: { tokens: 1, period: 'total' }, limits: { rpm: 500 } })
    expect(patched.budget).toEqual({ tokens: 1, period: 'total' })
    // The instance that took the change drops its cached records before it answers.
    await expectQuotaError(await a.chat(old.key), 'insufficient_quota')
    await expectQuotaError(await a.chat(fresh.key), 'insufficient_quota')
    // The other one hears of it over the bus.
    await eventually(() => refused(b, old.key), 1000, 'instance B to refuse the old key')
    await eventually(() => refused(b, fresh.key), 1000, 'instance B to refuse the new key')

    const before = await view(old.id)
    expect(before).toMatchObject({ status: 'active', lineage_id: old.id, limits: { rpm: 500 }, budget: { tokens: 1, period: 'total' } })
    expect((await a.keyInfo(old.key)).budget).toEqual({ tokens: 1, period: 'total' })
  })

  test('the reverse: a PATCH on the old key during its grace period reaches the new key as well', async () => {
    const { old, fresh } = await rotatedInGrace()
    await a.adminOk('PATCH', `/admin/keys/${old.id}`, { budget: { tokens: 1, period: 'total' } })
    await expectQuotaError(await a.chat(fresh.key), 'insufficient_quota')
    await eventually(() => refused(b, fresh.key), 1000, 'instance B to refuse the new key')
    expect((await view(fresh.id)).budget).toEqual({ tokens: 1, period: 'total' })
    // And loosened again through the old key, both keys are admitted again everywhere.
    await a.adminOk('PATCH', `/admin/keys/${old.id}`, { budget: null })
    for (const gw of [a, b]) {
      for (const key of [old.key, fresh.key]) {
        await eventually(async () => ((await chat(gw, key)) === 200 ? true : undefined), 1000, 'admission after the budget is removed')
      }
    }
    expect((await view(fresh.id)).budget).toBeNull()
  })

  test('revoking the new key during the grace revokes the old one with it, on both instances; the audit names it', async () => {
    const { old, fresh } = await rotatedInGrace()
    await a.adminOk('POST', `/admin/keys/${fresh.id}/revoke`, { reason: 'leaked' })
    // Before, the old key went on being served for the rest of its hour of grace.
    for (const gw of [a, b]) {
      for (const key of [fresh.key, old.key]) {
        await eventually(async () => ((await chat(gw, key)) === 401 ? true : undefined), 1000, 'the key to be refused')
      }
    }
    expect(await view(old.id)).toMatchObject({ status: 'revoked' })
    const db = a.gateway.services.db.db
    const row = await db.selectFrom('audit_log').select('details').where('action', '=', 'key.revoke').where('target_id', '=', fresh.id).executeTakeFirstOrThrow()
    expect(JSON.parse(row.details ?? '{}')).toEqual({ reason: 'leaked', also_revoked: [old.id] })
  })

  test('what is shared reaches only keys still served, name stays per key; the audit names the keys the change reached', async () => {
    const first = await createKey(a, await createUser(a), { limits: { rpm: 1000 } })
    // Rotated without grace: revoked at once, it stays as it was.
    const second = await a.adminOk<KeyView>('POST', `/admin/keys/${first.id}/rotate`, {})
    const third = await a.adminOk<KeyView>('POST', `/admin/keys/${second.id}/rotate`, { grace_seconds: 600 })
    expect(third.lineage_id).toBe(first.id)
    await a.adminOk('PATCH', `/admin/keys/${third.id}`, { name: 'newest', limits: { rpm: 3 } })
    expect(await view(first.id)).toMatchObject({ status: 'revoked', name: null, limits: { rpm: 1000 } })
    expect(await view(second.id)).toMatchObject({ status: 'active', name: null, limits: { rpm: 3 } })
    expect(await view(third.id)).toMatchObject({ status: 'active', name: 'newest', limits: { rpm: 3 } })

    const db = a.gateway.services.db.db
    const row = await db.selectFrom('audit_log').select('details').where('action', '=', 'key.update').where('target_id', '=', third.id).executeTakeFirstOrThrow()
    expect(JSON.parse(row.details ?? '{}')).toEqual({ fields: ['name', 'limits'], also_applied_to: [second.id] })

    // A change of other fields reaches no other key, and is audited as before.
    await a.adminOk('PATCH', `/admin/keys/${second.id}`, { name: 'older' })
    expect((await view(third.id)).name).toBe('newest')
    const other = await db.selectFrom('audit_log').select('details').where('action', '=', 'key.update').where('target_id', '=', second.id).executeTakeFirstOrThrow()
    expect(JSON.parse(other.details ?? '{}')).toEqual({ fields: ['name'] })

    // A key never rotated: its PATCH is its own.
    const single = await createKey(a, await createUser(a))
    await a.adminOk('PATCH', `/admin/keys/${single.id}`, { limits: { rpm: 9 } })
    expect((await view(single.id)).limits).toEqual({ rpm: 9 })
  })
})
