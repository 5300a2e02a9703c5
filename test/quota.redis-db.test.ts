/**
 * The quota on a Redis database other than 0, chosen as `redis://HOST:PORT?db=N` (a form the config
 * accepts, and the gateway's other Redis clients follow): deployments sharing one server on
 * different indexes keep their own counts.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from 'bun:test'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { deleteTaggedKeys } from './support/redis-procs.ts'
import { redisUrlForTests, uniqueTestName } from './support/services.ts'
import { createKey, expectQuotaError, quotaConfig, startQuotaGateway, type QuotaGateway } from './support/quota.ts'

setDefaultTimeout(15_000)

const redisUrl = await redisUrlForTests('test/quota.redis-db.test.ts')

/** `url` selecting database `db` by its query, the path left empty. */
function withDbParameter(url: string, db: number): string {
  const u = new URL(url)
  u.pathname = ''
  u.searchParams.set('db', String(db))
  return u.toString()
}

describe.skipIf(redisUrl === null)('quota on redis://HOST:PORT?db=N', () => {
  const tag = uniqueTestName('quota_db')
  const urls = [withDbParameter(redisUrl!, 11), withDbParameter(redisUrl!, 12)]
  let upstream: MockUpstream
  const gateways: QuotaGateway[] = []

  beforeAll(async () => {
    upstream = await startMockUpstream()
    for (const url of urls) gateways.push(await startQuotaGateway(quotaConfig(upstream.url, { quota: { hash_tag: tag } }), { redisUrl: url }))
  })
  afterAll(async () => {
    for (const gw of gateways) await gw.close()
    await upstream?.stop()
    for (const url of [...urls, withDbParameter(redisUrl!, 0)]) await deleteTaggedKeys(url, tag)
  })

  test('two deployments on databases 11 and 12 of one server count apart: a user of the same id in each has its own rpm', async () => {
    const [a, b] = gateways as [QuotaGateway, QuotaGateway]
    // The same user id in both deployments (operators choose ids), with one request a minute.
    const user = `usr_${tag.slice(-12)}`
    for (const gw of [a, b]) await gw.adminOk('POST', '/admin/users', { id: user, limits: { rpm: 1 } })
    const keyA = (await createKey(a, user)).key
    const keyB = (await createKey(b, user)).key

    const first = await a.chat(keyA)
    expect(first.status).toBe(200)
    await first.arrayBuffer()
    // Deployment B's user has used nothing: its own count, where both shared database 0's.
    const other = await b.chat(keyB)
    expect(other.status).toBe(200)
    await other.arrayBuffer()
    // Each still holds its own limit.
    await expectQuotaError(await a.chat(keyA), 'rate_limit_exceeded')
    await expectQuotaError(await b.chat(keyB), 'rate_limit_exceeded')
  })
})
