/**
 * The operator's view of the quota (`GET /admin/{keys,users,teams}/:id/quota`) and its reset
 * (`POST …/quota/reset`), through a real gateway with auth and quota, with the quota in process
 * and in Redis: the counts a subject's own limits and budget have left, a reset that unblocks a
 * refused client at once, and what a reset leaves alone (held slots, the part not asked for).
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from 'bun:test'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { deleteTaggedKeys } from './support/redis-procs.ts'
import { redisUrlForTests, uniqueTestName } from './support/services.ts'
import { PRICING, QUOTA_ADMIN_KEY, createKey, createTeam, createUser, eventually, expectQuotaError, quotaConfig, startQuotaGateway, type QuotaGateway, quotaBackends } from './support/quota.ts'

setDefaultTimeout(15_000)

const redisUrl = await redisUrlForTests('test/quota.admin.test.ts')

interface Bucket {
  limit: number
  remaining: number
  full_at: string | null
}
interface Spend {
  limit: number
  spent: number
  remaining: number
}
interface QuotaView {
  object: 'quota'
  subject: 'key' | 'user' | 'team'
  id: string
  counted_as: string
  store: 'redis' | 'memory'
  requests: Bucket | null
  tokens: Bucket | null
  parallel: { limit: number; in_flight: number } | null
  budget: { period: string; period_start: string | null; resets_at: string | null; tokens: Spend | null; usd: Spend | null } | null
}

let upstream: MockUpstream
beforeAll(async () => {
  upstream = await startMockUpstream()
})
afterAll(async () => {
  await upstream?.stop()
})

const SLOW_MS = 800

const backends = quotaBackends(redisUrl)

for (const backend of backends) {
  describe.skipIf(!backend.available)(`admin quota view and reset (${backend.name})`, () => {
    const tag = uniqueTestName('qadmin')
    let gw: QuotaGateway

    beforeAll(async () => {
      gw = await startQuotaGateway(quotaConfig(upstream.url, { quota: { hash_tag: tag }, slowMs: SLOW_MS }), { redisUrl: backend.redis })
    })
    afterAll(async () => {
      await gw?.close()
      if (backend.redis) await deleteTaggedKeys(backend.redis, tag)
    })

    const quota = (scope: 'keys' | 'users' | 'teams', id: string) => gw.adminOk<QuotaView>('GET', `/admin/${scope}/${id}/quota`)
    const reset = (scope: 'keys' | 'users' | 'teams', id: string, body?: unknown) => gw.adminOk<QuotaView>('POST', `/admin/${scope}/${id}/quota/reset`, body)
    /** A chat that must pass; returns the tokens the mock reported. */
    const chatOk = async (key: string, body?: Record<string, unknown>): Promise<{ prompt: number; completion: number; total: number }> => {
      const res = await gw.chat(key, body)
      const text = await res.text()
      expect({ status: res.status, text }).toMatchObject({ status: 200 })
      const usage = (JSON.parse(text) as { usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number } }).usage
      return { prompt: usage.prompt_tokens, completion: usage.completion_tokens, total: usage.total_tokens }
    }

    test("a key's view: its limits and budget with what is left, before and after requests; the budget's UTC period", async () => {
      const user = await createUser(gw)
      const { id, key } = await createKey(gw, user, {
        limits: { rpm: 5, tpm: 100_000, max_parallel: 3 },
        budget: { tokens: 10_000, usd: 50, period: 'day' },
      })
      const fresh = await quota('keys', id)
      const day = new Date()
      const start = `${day.toISOString().slice(0, 10)}T00:00:00.000Z`
      expect(fresh).toEqual({
        object: 'quota',
        subject: 'key',
        id,
        counted_as: id,
        store: backend.redis ? 'redis' : 'memory',
        requests: { limit: 5, remaining: 5, full_at: null },
        tokens: { limit: 100_000, remaining: 100_000, full_at: null },
        parallel: { limit: 3, in_flight: 0 },
        budget: {
          period: 'day',
          period_start: start,
          resets_at: new Date(Date.parse(start) + 86_400_000).toISOString(),
          tokens: { limit: 10_000, spent: 0, remaining: 10_000 },
          usd: { limit: 50, spent: 0, remaining: 50 },
        },
      })

      const first = await chatOk(key, { max_tokens: 50 })
      const second = await chatOk(key, { max_tokens: 50 })
      const tokens = first.total + second.total
      const usd = ((first.prompt + second.prompt) * PRICING.input + (first.completion + second.completion) * PRICING.output) / 1e6
      const seen = await eventually(async () => {
        const v = await quota('keys', id)
        return v.budget?.tokens?.spent === tokens ? v : undefined
      }, 5000, 'the settled budget spend')
      const before = Date.now()
      expect(seen.requests).toMatchObject({ limit: 5, remaining: 3 })
      // Two of five a minute taken: full again within 24 s.
      const full = Date.parse(seen.requests!.full_at!)
      expect(full).toBeGreaterThan(before)
      expect(full).toBeLessThanOrEqual(before + 24_000 + 1000)
      expect(seen.tokens!.remaining).toBeGreaterThanOrEqual(100_000 - tokens - 2)
      expect(seen.tokens!.remaining).toBeLessThanOrEqual(100_000 - tokens + 100)
      expect(seen.budget!.tokens).toEqual({ limit: 10_000, spent: tokens, remaining: 10_000 - tokens })
      expect(seen.budget!.usd!.spent).toBeCloseTo(usd, 6)
      expect(seen.budget!.usd!.remaining).toBeCloseTo(50 - usd, 6)
      expect(seen.parallel).toEqual({ limit: 3, in_flight: 0 })
    })

    test('a key without limits or budget shows nulls; an unknown id is 404 not_found; the admin key is required', async () => {
      const user = await createUser(gw)
      const { id } = await createKey(gw, user)
      expect(await quota('keys', id)).toMatchObject({ requests: null, tokens: null, parallel: null, budget: null })

      const missing = await gw.admin('GET', '/admin/keys/key_nope/quota')
      expect(missing.status).toBe(404)
      expect(((await missing.json()) as { error: { code: string } }).error.code).toBe('not_found')
      const missingReset = await gw.admin('POST', '/admin/teams/team_nope/quota/reset')
      expect(missingReset.status).toBe(404)
      // A key pasted where its id belongs is never echoed whole.
      const pasted = `sk-dev-${'Q'.repeat(40)}`
      const echoed = await gw.admin('GET', `/admin/keys/${pasted}/quota`)
      expect(echoed.status).toBe(404)
      expect(await echoed.text()).not.toContain(pasted)

      for (const [method, path] of [['GET', `/admin/keys/${id}/quota`], ['POST', `/admin/keys/${id}/quota/reset`]] as const) {
        const res = await fetch(gw.url + path, { method, headers: { authorization: 'Bearer sluice-wrong-admin-key-000000000000000000', 'content-type': 'application/json' }, body: method === 'POST' ? '{"limits": "broken' : undefined })
        expect(res.status).toBe(401)
        expect(((await res.json()) as { error: { code: string } }).error.code).toBe('invalid_admin_key')
      }
    })

    test('a reset answers a refused client at once: rpm and budget both spent, reset, the next request passes; audited', async () => {
      const user = await createUser(gw)
      const { id, key } = await createKey(gw, user, { limits: { rpm: 2 }, budget: { tokens: 1_000_000, period: 'total' } })
      await chatOk(key)
      await chatOk(key)
      await expectQuotaError(await gw.chat(key), 'rate_limit_exceeded')

      const after = await reset('keys', id)
      expect(after.requests).toEqual({ limit: 2, remaining: 2, full_at: null })
      expect(after.budget).toMatchObject({ period: 'total', period_start: null, resets_at: null, tokens: { limit: 1_000_000, spent: 0, remaining: 1_000_000 } })
      await chatOk(key)

      const rows = await gw.gateway.services.db.db.selectFrom('audit_log').selectAll().where('action', '=', 'quota.reset').where('target_id', '=', id).execute()
      expect(rows).toHaveLength(1)
      expect(rows[0]).toMatchObject({ target_type: 'key', actor: 'admin' })
      expect(JSON.parse(rows[0]!.details!)).toEqual({ limits: true, budget: true, parallel: false, counted_as: id })
    })

    test('reset only what is asked: {"budget": false} refills the buckets and keeps the spend; {"limits": false} the other way', async () => {
      const user = await createUser(gw)
      const { id, key } = await createKey(gw, user, { limits: { rpm: 3 }, budget: { tokens: 100_000, period: 'month' } })
      const used = await chatOk(key)
      await eventually(async () => ((await quota('keys', id)).budget?.tokens?.spent === used.total ? true : undefined), 5000, 'the spend')

      const limitsOnly = await reset('keys', id, { budget: false })
      expect(limitsOnly.requests!.remaining).toBe(3)
      expect(limitsOnly.budget!.tokens!.spent).toBe(used.total)

      await chatOk(key)
      const budgetOnly = await reset('keys', id, { limits: false })
      expect(budgetOnly.requests!.remaining).toBe(2)
      expect(budgetOnly.budget!.tokens!.spent).toBe(0)

      const bad = await gw.admin('POST', `/admin/keys/${id}/quota/reset`, { limits: 'yes' })
      expect(bad.status).toBe(400)
      const body = (await bad.json()) as { error: { code: string; param: string | null } }
      expect(body.error.code).toBe('invalid_request')
      expect(body.error.param).toBe('limits')
      const unknown = await gw.admin('POST', `/admin/keys/${id}/quota/reset`, { leases: true })
      expect(unknown.status).toBe(400)
      // A body that is there but broken is refused, never taken for "no body" (which resets everything).
      for (const broken of ['{"budget": fal', '[]', 'null']) {
        const res = await fetch(`${gw.url}/admin/keys/${id}/quota/reset`, { method: 'POST', headers: { authorization: `Bearer ${QUOTA_ADMIN_KEY}`, 'content-type': 'application/json' }, body: broken })
        expect(res.status).toBe(400)
        expect(((await res.json()) as { error: { code: string } }).error.code).toBe('invalid_request')
      }
      // Nothing was reset by the refused calls.
      expect((await quota('keys', id)).requests!.remaining).toBe(2)
    })

    test('requests in flight: in_flight counts them, and a reset keeps their max_parallel slots', async () => {
      const user = await createUser(gw)
      const { id, key } = await createKey(gw, user, { limits: { max_parallel: 1 } })
      const slow = gw.chat(key, { model: `mock-slow-${SLOW_MS}` })
      await eventually(async () => ((await quota('keys', id)).parallel?.in_flight === 1 ? true : undefined), 3000, 'the slot taken')
      const afterReset = await reset('keys', id)
      expect(afterReset.parallel).toEqual({ limit: 1, in_flight: 1 })
      await expectQuotaError(await gw.chat(key), 'rate_limit_exceeded')
      expect((await slow).status).toBe(200)
      await eventually(async () => ((await quota('keys', id)).parallel?.in_flight === 0 ? true : undefined), 3000, 'the slot freed')
    })

    test('a budget reset with a request in flight: when it ends it brings only what it used beyond its reservation, so what a request after the reset spent stays counted', async () => {
      const user = await createUser(gw)
      const { id, key } = await createKey(gw, user, { budget: { tokens: 100_000, period: 'total' } })
      // A reserves its prompt and the 256-token estimate, and uses its prompt and 16 words.
      const a = gw.chat(key, { model: `mock-slow-${SLOW_MS}` })
      await eventually(async () => ((await quota('keys', id)).budget?.tokens?.spent ?? 0) > 256 ? true : undefined, 3000, 'A reserved')
      await reset('keys', id, { budget: true, limits: false })
      const b = await chatOk(key, { max_tokens: 100 })
      await eventually(async () => ((await quota('keys', id)).budget?.tokens?.spent === b.total ? true : undefined), 3000, "B's spend")
      const aRes = await a
      expect(aRes.status).toBe(200)
      await aRes.arrayBuffer()
      // A's unused reservation (about 250 tokens) is not refunded into the fresh count: B's spend stays whole.
      await Bun.sleep(200)
      const view = await quota('keys', id)
      expect(view.budget!.tokens!.spent).toBe(b.total)
    })

    test('{"parallel": true} frees the max_parallel slots at once (one held by a request whose end was never heard, say); the running request ends harmlessly', async () => {
      const user = await createUser(gw)
      const { id, key } = await createKey(gw, user, { limits: { max_parallel: 1 } })
      const slow = gw.chat(key, { model: `mock-slow-${SLOW_MS}` })
      await eventually(async () => ((await quota('keys', id)).parallel?.in_flight === 1 ? true : undefined), 3000, 'the slot taken')
      await expectQuotaError(await gw.chat(key), 'rate_limit_exceeded')
      const freed = await reset('keys', id, { parallel: true, limits: false, budget: false })
      expect(freed.parallel).toEqual({ limit: 1, in_flight: 0 })
      // Admitted while the slow request still runs.
      const next = gw.chat(key, { model: `mock-slow-${SLOW_MS}` })
      expect((await slow).status).toBe(200)
      expect((await next).status).toBe(200)
      await eventually(async () => ((await quota('keys', id)).parallel?.in_flight === 0 ? true : undefined), 3000, 'both slots freed')
      const rows = await gw.gateway.services.db.db.selectFrom('audit_log').selectAll().where('action', '=', 'quota.reset').where('target_id', '=', id).execute()
      expect(JSON.parse(rows[0]!.details!)).toEqual({ limits: false, budget: false, parallel: true, counted_as: id })
    })

    test("a team's view counts what all its keys spent; a user's view its own limits; a reset of the team unblocks every key", async () => {
      const alice = await createUser(gw, { limits: { rpm: 100 } })
      const bob = await createUser(gw)
      const team = await createTeam(gw, [alice, bob], { budget: { tokens: 1_000_000, period: 'week' } })
      const a = await createKey(gw, alice, { team_id: team })
      const b = await createKey(gw, bob, { team_id: team })
      const spent = (await chatOk(a.key)).total + (await chatOk(b.key)).total
      const teamView = await eventually(async () => {
        const v = await quota('teams', team)
        return v.budget?.tokens?.spent === spent ? v : undefined
      }, 5000, "the team's spend")
      expect(teamView).toMatchObject({ subject: 'team', id: team, counted_as: team, requests: null, tokens: null, parallel: null })
      // Weeks start on Monday (UTC).
      expect(new Date(teamView.budget!.period_start!).getUTCDay()).toBe(1)
      expect(Date.parse(teamView.budget!.resets_at!) - Date.parse(teamView.budget!.period_start!)).toBe(7 * 86_400_000)

      const aliceView = await quota('users', alice)
      expect(aliceView).toMatchObject({ subject: 'user', id: alice, requests: { limit: 100, remaining: 99 }, budget: null })

      // The budget lowered to what the team spent: spent, every key of the team refused.
      await gw.adminOk('PATCH', `/admin/teams/${team}`, { budget: { tokens: spent, period: 'week' } })
      await eventually(async () => ((await gw.chat(b.key, { max_tokens: 1 })).status === 429 ? true : undefined), 5000, 'the team budget refusing')
      await expectQuotaError(await gw.chat(a.key, { max_tokens: 1 }), 'insufficient_quota')
      const cleared = await reset('teams', team, { budget: true })
      expect(cleared.budget!.tokens).toEqual({ limit: spent, spent: 0, remaining: spent })
      await chatOk(a.key, { max_tokens: 1 })
      await chatOk(b.key, { max_tokens: 1 })
    })

    test('a rotated key is counted under its lineage: both keys of the chain show and reset the same counts', async () => {
      const user = await createUser(gw)
      const old = await createKey(gw, user, { limits: { rpm: 4 } })
      await chatOk(old.key)
      const next = await gw.adminOk<{ id: string; key: string }>('POST', `/admin/keys/${old.id}/rotate`, { grace_seconds: 3600 })
      await chatOk(next.key)
      const viaNew = await quota('keys', next.id)
      expect(viaNew).toMatchObject({ id: next.id, counted_as: old.id, requests: { limit: 4, remaining: 2 } })
      expect((await quota('keys', old.id)).requests!.remaining).toBe(2)
      await reset('keys', next.id)
      expect((await quota('keys', old.id)).requests!.remaining).toBe(4)
    })

    test('the routes are in the Swagger spec, under Admin: quota', async () => {
      const spec = (await (await fetch(`${gw.url}/swagger/json`)).json()) as { paths: Record<string, Record<string, { tags?: string[] }>> }
      for (const scope of ['keys', 'users', 'teams']) {
        expect(spec.paths[`/admin/${scope}/{id}/quota`]?.get?.tags).toEqual(['Admin: quota'])
        expect(spec.paths[`/admin/${scope}/{id}/quota/reset`]?.post?.tags).toEqual(['Admin: quota'])
      }
    })
  })
}
