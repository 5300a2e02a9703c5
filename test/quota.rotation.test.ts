/**
 * Rotation replaces a key's secret, not its quota: through a real gateway (auth + quota in front
 * of the mock upstream, real SQLite), once with the quota in process and once in Redis, the
 * successor carries on its predecessor's budget, buckets and leases; during the grace period
 * old and new key take from the same ones, and so does every key of a chain of rotations.
 * Refusals still name the key the client sent.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from 'bun:test'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { deleteTaggedKeys } from './support/redis-procs.ts'
import { redisUrlForTests, uniqueTestName } from './support/services.ts'
import { createKey, createUser, eventually, expectQuotaError, quotaConfig, startQuotaGateway, type QuotaGateway, quotaBackends } from './support/quota.ts'

setDefaultTimeout(15_000)

const redisUrl = await redisUrlForTests('test/quota.rotation.test.ts')

let upstream: MockUpstream
beforeAll(async () => {
  upstream = await startMockUpstream()
})
afterAll(async () => {
  await upstream?.stop()
})

const SLOW_MS = 800
const SLOW_MODEL = `mock-slow-${SLOW_MS}`

const backends = quotaBackends(redisUrl)

interface Rotated {
  id: string
  key: string
  lineage_id: string
}

for (const backend of backends) {
  describe.skipIf(!backend.available)(`rotation keeps the quota (${backend.name})`, () => {
    const tag = uniqueTestName('quota_rotation')
    let gw: QuotaGateway

    beforeAll(async () => {
      gw = await startQuotaGateway(quotaConfig(upstream.url, { quota: { hash_tag: tag }, slowMs: SLOW_MS }), { redisUrl: backend.redis })
    })
    afterAll(async () => {
      await gw?.close()
      if (backend.redis) await deleteTaggedKeys(backend.redis, tag)
    })

    const rotate = (id: string, graceSeconds: number) => gw.adminOk<Rotated>('POST', `/admin/keys/${id}/rotate`, { grace_seconds: graceSeconds })
    /** A chat whose body is read, so the request settles. */
    const chatStatus = async (key: string, body: Record<string, unknown> = {}) => {
      const res = await gw.chat(key, body)
      await res.arrayBuffer()
      return res.status
    }

    test('a spent total budget stays spent: the successor of a rotation without grace is refused with insufficient_quota', async () => {
      const user = await createUser(gw)
      const old = await createKey(gw, user, { budget: { tokens: 50, period: 'total' } })
      let refused: Response | undefined
      for (let i = 0; i < 10 && !refused; i++) {
        const res = await gw.chat(old.key, { max_tokens: 20 })
        if (res.status === 200) await res.arrayBuffer()
        else refused = res
      }
      expect(refused).toBeDefined()
      await expectQuotaError(refused!, 'insufficient_quota')
      // What the old key has left once its last request settled (two reads alike); far too little for another.
      const left = await eventually(async () => {
        const first = (await gw.keyInfo(old.key)).remaining.budget_tokens!
        await Bun.sleep(50)
        return (await gw.keyInfo(old.key)).remaining.budget_tokens === first ? first : undefined
      }, 5000, 'a settled budget')
      expect(left).toBeLessThan(30)

      const next = await rotate(old.id, 0)
      const res = await gw.chat(next.key, { max_tokens: 20 })
      expect(res.headers.get('retry-after')).toBeNull()
      const message = await expectQuotaError(res, 'insufficient_quota')
      // Named as the client knows it: the key it sent, not the first key of the chain.
      expect(message).toContain(`key ${next.id}`)
      expect(message).not.toContain(old.id)
      expect(message).toContain('does not renew')
      const info = await gw.keyInfo(next.key)
      expect(info.id).toBe(next.id)
      expect(info.remaining.budget_tokens).toBe(left)
    })

    test('during the grace period old and new key share one rpm bucket: rpm 1, one request on each in the same minute → 429', async () => {
      const user = await createUser(gw)
      const old = await createKey(gw, user, { limits: { rpm: 1 } })
      expect(await chatStatus(old.key)).toBe(200)
      const next = await rotate(old.id, 3600)

      const message = await expectQuotaError(await gw.chat(next.key), 'rate_limit_exceeded')
      expect(message).toContain(`key ${next.id}`)
      expect(message).toContain('requests per minute')
      // The old key, still in its grace period, takes from the same bucket.
      expect(await expectQuotaError(await gw.chat(old.key), 'rate_limit_exceeded')).toContain(`key ${old.id}`)
      expect((await gw.keyInfo(next.key)).remaining.requests).toBe(0)
      expect((await gw.keyInfo(old.key)).remaining.requests).toBe(0)
    })

    test('a chain of rotations keeps sharing: three keys of one lineage take from one bucket and one budget', async () => {
      const user = await createUser(gw)
      const a = await createKey(gw, user, { limits: { rpm: 3 }, budget: { tokens: 100_000, period: 'month' } })
      expect(await chatStatus(a.key)).toBe(200)
      const b = await rotate(a.id, 3600)
      expect(await chatStatus(b.key)).toBe(200)
      const c = await rotate(b.id, 3600)
      expect([b.lineage_id, c.lineage_id]).toEqual([a.id, a.id])
      expect(await chatStatus(c.key)).toBe(200)

      // Three requests in all: the fourth is refused whichever key of the chain sends it.
      for (const k of [c, b, a]) expect(await expectQuotaError(await gw.chat(k.key), 'rate_limit_exceeded')).toContain(`key ${k.id}`)
      // One budget counter, spent by all three and seen alike from each.
      const spent = await eventually(async () => {
        const left = await Promise.all([a, b, c].map(async (k) => (await gw.keyInfo(k.key)).remaining.budget_tokens))
        return left.every((v) => v === left[0]) && left[0]! < 100_000 ? left[0]! : undefined
      }, 5000, 'one settled budget')
      // The mock answers at least a few tokens each time: the counter holds all three requests.
      expect(100_000 - spent).toBeGreaterThanOrEqual(3 * 10)
    })

    test('a request in flight on the old key holds the shared max_parallel slot: the successor is refused until it ends', async () => {
      const user = await createUser(gw)
      const old = await createKey(gw, user, { limits: { max_parallel: 1 } })
      const before = upstream.stats.requests
      const slow = gw.chat(old.key, { model: SLOW_MODEL })
      await eventually(async () => (upstream.stats.requests > before ? true : undefined), 5000, 'the slow request upstream')
      const next = await rotate(old.id, 3600)

      const message = await expectQuotaError(await gw.chat(next.key, { model: SLOW_MODEL }), 'rate_limit_exceeded')
      expect(message).toContain(`key ${next.id}`)
      expect(message).toContain('in flight')
      const done = await slow
      expect(done.status).toBe(200)
      await done.arrayBuffer()
      await eventually(async () => ((await chatStatus(next.key)) === 200 ? true : undefined), 8000, 'the slot free again')
    })
  })
}
