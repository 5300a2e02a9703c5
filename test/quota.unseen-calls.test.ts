/**
 * What a request that got no usage settles to, with auth, quota and balance in front of the keyed
 * upstream, on both quota stores: a call the gateway gave up on while the upstream had it (its
 * headers too late: 504) keeps its reservation spent, as the upstream may still answer and bill
 * it; a client that leaves after a failed attempt, before the next one, gets it back, as no
 * attempt can bill.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, spyOn, test } from 'bun:test'
import { startKeyedUpstream, type KeyedUpstream } from './fixtures/keyed-upstream.ts'
import { secretOf } from './support/balance.ts'
import { deleteTaggedKeys } from './support/redis-procs.ts'
import { redisUrlForTests, uniqueTestName } from './support/services.ts'
import { createKey, createUser, eventually, quotaBackends, startQuotaGateway, type QuotaGateway } from './support/quota.ts'

setDefaultTimeout(15_000)

const redisUrl = await redisUrlForTests('test/quota.unseen-calls.test.ts')

/** The first byte's wait of the provider `late`: shorter than the key's latency set below. */
const FIRST_BYTE_MS = 150
/**
 * Balance's first backoff after a 5xx: the window in which the client leaves. A minute, its draw
 * pinned near the top: a request that slept it out would hold its slot past every wait below.
 */
const BACKOFF_MS = 60_000

let up: KeyedUpstream
beforeAll(async () => {
  up = await startKeyedUpstream()
})
afterAll(async () => {
  await up?.stop()
})

for (const backend of quotaBackends(redisUrl)) {
  describe.skipIf(!backend.available)(`quota (${backend.name})`, () => {
    const tag = uniqueTestName('quota-unseen')
    let gw: QuotaGateway

    beforeAll(async () => {
      const provider = (id: string, key: string, timeouts?: { first_byte_ms: number }) => ({ id, type: 'openai-compatible' as const, baseUrl: up.url, keys: [{ id: key, secret: secretOf(`${tag}-${key}`) }], timeouts })
      gw = await startQuotaGateway(
        {
          environment: 'dev',
          providers: [provider('late', 'late1', { first_byte_ms: FIRST_BYTE_MS }), provider('flaky', 'flaky1'), provider('spare', 'spare1')],
          models: [
            { name: 'late-gpt', targets: [{ provider: 'late', model: 'mock-gpt' }] },
            // Its priority tier at ten times the standard prices.
            { name: 'late-tiered', targets: [{ provider: 'late', model: 'mock-gpt' }], pricing: { input: 1, output: 1, service_tiers: { priority: { input: 10, output: 10 } } } },
            // flaky first, spare after it: a 5xx from flaky is retried on spare after the backoff.
            { name: 'retried-gpt', strategy: 'round-robin', targets: [{ provider: 'flaky', model: 'mock-gpt' }, { provider: 'spare', model: 'mock-gpt' }] },
          ],
          plugins: [
            { use: 'auth', options: { demo_key: false } },
            { use: 'quota', options: { hash_tag: tag } },
            { use: 'balance', options: { backoff_ms: BACKOFF_MS, backoff_max_ms: BACKOFF_MS, max_attempts: 2 } },
          ],
        },
        { redisUrl: backend.redis },
      )
    })
    afterAll(async () => {
      await gw?.close()
      if (backend.redis) await deleteTaggedKeys(backend.redis, tag)
    })

    /** Until the request's max_parallel slot is free: its settlement has been sent. */
    const settled = (id: string) =>
      eventually(async () => {
        const view = await gw.adminOk<{ parallel: { in_flight: number } }>('GET', `/admin/keys/${id}/quota`)
        return view.parallel.in_flight === 0 ? true : undefined
      }, 5000, 'the request to settle')

    test('an upstream that does not answer in time (504 upstream_timeout) keeps the reservation spent: it had the prompt, and may answer and bill it unseen', async () => {
      up.set(secretOf(`${tag}-late1`), { latencyMs: FIRST_BYTE_MS * 4 })
      const user = await createUser(gw)
      const { id, key } = await createKey(gw, user, { limits: { max_parallel: 1 }, budget: { tokens: 100_000, period: 'day' } })
      const res = await gw.chat(key, { model: 'late-gpt', max_tokens: 500 })
      expect(res.status).toBe(504)
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('upstream_timeout')
      expect(up.stats(secretOf(`${tag}-late1`)).requests).toBe(1)
      await settled(id)
      // Prompt + max_tokens stay spent, where they were all given back as for an upstream that failed.
      const left = (await gw.keyInfo(key)).remaining.budget_tokens!
      expect(left).toBeLessThanOrEqual(100_000 - 500)
      expect(left).toBeGreaterThan(100_000 - 600)
    })

    test("a request that asks for a service tier reserves its money at that tier's prices, and a call given up keeps that spent", async () => {
      up.set(secretOf(`${tag}-late1`), { latencyMs: FIRST_BYTE_MS * 4 })
      const user = await createUser(gw)
      const { id, key } = await createKey(gw, user, { limits: { max_parallel: 1 }, budget: { usd: 1, period: 'day' } })
      const res = await gw.chat(key, { model: 'late-tiered', max_tokens: 500, service_tier: 'priority' })
      expect(res.status).toBe(504)
      await settled(id)
      // (prompt + 500) tokens at 10 USD per million: at least 0.005 spent, where standard prices held a tenth of it.
      const left = (await gw.keyInfo(key)).remaining.budget_usd!
      expect(left).toBeLessThanOrEqual(1 - 0.005)
      expect(left).toBeGreaterThan(1 - 0.006)
    })

    test('a client that leaves after a failed attempt, before its retry, gets the reservation back: no upstream answered or can bill it', async () => {
      const flaky = secretOf(`${tag}-flaky1`)
      const spare = secretOf(`${tag}-spare1`)
      up.set(flaky, { failure: { status: 500 } })
      const user = await createUser(gw)
      const { id, key } = await createKey(gw, user, { limits: { max_parallel: 1 }, budget: { tokens: 100_000, period: 'day' } })
      const controller = new AbortController()
      const before = up.stats(flaky).requests
      // Full jitter draws the backoff in [0, BACKOFF_MS): pinned near the top, 54 s.
      const random = spyOn(Math, 'random').mockReturnValue(0.9)
      let pending: Promise<Response | null>
      try {
        pending = gw.chat(key, { model: 'retried-gpt', max_tokens: 500 }, { signal: controller.signal }).catch(() => null)
        // flaky answered 500; balance now waits its backoff before trying spare.
        await eventually(async () => (up.stats(flaky).requests > before ? true : undefined), 5000, 'the failed attempt')
      } finally {
        random.mockRestore()
      }
      expect((await gw.keyInfo(key)).remaining.budget_tokens!).toBeLessThanOrEqual(100_000 - 500)
      controller.abort()
      expect(await pending).toBeNull()
      // The backoff ends with the client's request: its max_parallel slot is free well before the 54 s
      // the sleep had left, where it stayed taken until then.
      await settled(id)
      expect(up.stats(spare).requests).toBe(0)
      expect((await gw.keyInfo(key)).remaining.budget_tokens).toBe(100_000)
    })
  })
}
