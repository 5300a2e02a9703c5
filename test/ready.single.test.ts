/**
 * `GET /ready` on a single Redis node of this file's own: 200 while it answers; killed, a 503
 * within the time limit whose details name the node; 200 again once it is back.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from 'bun:test'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { cleanupDir, freePort, redisBinariesForTests, startRedisServer, type RedisProcess } from './support/redis-procs.ts'
import { eventually, quotaConfig, startQuotaGateway, type QuotaGateway } from './support/quota.ts'

setDefaultTimeout(20_000)

const haveRedis = redisBinariesForTests('test/ready.single.test.ts')

describe.skipIf(!haveRedis)('/ready on a single Redis node', () => {
  let redis: RedisProcess
  let upstream: MockUpstream
  let gw: QuotaGateway

  beforeAll(async () => {
    redis = await startRedisServer({ port: freePort() })
    upstream = await startMockUpstream()
    gw = await startQuotaGateway(quotaConfig(upstream.url, { quota: { hash_tag: 'ready-single-test' } }), { redisUrl: redis.url })
  })
  afterAll(async () => {
    await gw?.close()
    await upstream?.stop()
    await redis?.kill()
    if (redis) cleanupDir(redis.dir)
  })

  test('killed: 503 naming the node and why, within the time limit; 200 once it is back', async () => {
    expect((await fetch(`${gw.url}/ready`)).status).toBe(200)
    await redis.kill()
    const started = Date.now()
    const res = await fetch(`${gw.url}/ready`)
    const body = (await res.json()) as { status: string; checks: Record<string, string>; details: { redis?: string }; error: { message: string } }
    expect(Date.now() - started).toBeLessThan(2500)
    expect(res.status).toBe(503)
    expect(body).toMatchObject({ status: 'not_ready', checks: { database: 'ok', redis: 'unreachable' } })
    expect(body.details.redis).toMatch(new RegExp(`^127\\.0\\.0\\.1:${redis.port} (does not answer \\(.+\\)|did not answer within 1000 ms)$`))
    expect(body.error.message).toBe(`Not ready: Redis: ${body.details.redis}.`)
    await redis.restart()
    await eventually(async () => ((await fetch(`${gw.url}/ready`)).status === 200 ? true : undefined), 10_000, '/ready to answer 200 again')
  })
})
