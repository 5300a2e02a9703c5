/**
 * A `max_parallel` lease outlives `lease_ms` while its request runs: the quota plugin renews the
 * leases of the requests still in flight, so a call longer than the lease (a long completion, a
 * fallback after a timeout) keeps its slot, and the slot frees when the call ends. Through a real
 * gateway (auth + quota with `lease_ms` 1 s) in front of the mock upstream, whose `mock-slow-N`
 * model answers after N ms; in process and in Redis.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from 'bun:test'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { deleteTaggedKeys } from './support/redis-procs.ts'
import { redisUrlForTests, uniqueTestName } from './support/services.ts'
import { createKey, createUser, eventually, expectQuotaError, quotaConfig, startQuotaGateway, type QuotaGateway, quotaBackends } from './support/quota.ts'

setDefaultTimeout(15_000)

const redisUrl = await redisUrlForTests('test/quota.lease-renew.test.ts')

const LEASE_MS = 1000
// Three times the lease: renewed at least twice before it ends.
const SLOW_MS = 3000
const SLOW_MODEL = `mock-slow-${SLOW_MS}`

let upstream: MockUpstream
beforeAll(async () => {
  upstream = await startMockUpstream()
})
afterAll(async () => {
  await upstream?.stop()
})

const backends = quotaBackends(redisUrl)

for (const backend of backends) {
  describe.skipIf(!backend.available)(`max_parallel leases of long requests (${backend.name})`, () => {
    const tag = uniqueTestName('lease')
    let gw: QuotaGateway

    beforeAll(async () => {
      gw = await startQuotaGateway(quotaConfig(upstream.url, { quota: { hash_tag: tag, lease_ms: LEASE_MS }, slowMs: SLOW_MS }), { redisUrl: backend.redis })
    })
    afterAll(async () => {
      await gw?.close()
      if (backend.redis) await deleteTaggedKeys(backend.redis, tag)
    })

    test('a request running three times lease_ms keeps its slot the whole time; it frees when the request ends', async () => {
      const user = await createUser(gw)
      const { id, key } = await createKey(gw, user, { limits: { max_parallel: 1 } })
      const before = upstream.stats.requests
      const started = Date.now()
      const first = gw.chat(key, { model: SLOW_MODEL })
      await eventually(async () => (upstream.stats.requests > before ? true : undefined), 5000, 'the long request upstream')
      // Well past the lease's own lifetime, twice over, and still in flight: refused.
      for (const at of [LEASE_MS + 300, 2 * LEASE_MS + 300]) {
        await Bun.sleep(Math.max(0, started + at - Date.now()))
        const refused = await gw.chat(key)
        const message = await expectQuotaError(refused, 'rate_limit_exceeded')
        expect(message).toContain(`key ${id}`)
        expect(message).toContain('in flight')
      }
      const done = await first
      expect(done.status).toBe(200)
      await done.arrayBuffer()
      expect(Date.now() - started).toBeGreaterThanOrEqual(SLOW_MS)
      // Its lease goes with its end (the settlement follows the last byte).
      await eventually(async () => {
        const res = await gw.chat(key)
        await res.arrayBuffer()
        return res.status === 200 ? true : undefined
      }, 5000, 'the slot free again')
    })
  })
}
