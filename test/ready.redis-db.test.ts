/**
 * The Redis database a REDIS_URL selects: a path or `?db=` that is not a whole number stops the
 * boot (a config problem); a number the server does not have (redis://host/99 on a server of 16)
 * is known only to the server, whose SELECT at connect fails, and every quota command with it:
 * /ready says so with a 503 rather than 200.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from 'bun:test'
import { ConfigError, loadConfig } from '../src/config/load.ts'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { cleanupDir, freePort, redisBinariesForTests, startRedisServer, type RedisProcess } from './support/redis-procs.ts'
import { quotaConfig, startQuotaGateway } from './support/quota.ts'

setDefaultTimeout(20_000)

describe('a database that is not a number is a config problem', () => {
  test.each([
    ['redis://127.0.0.1:6379/abc', 'the path "abc"'],
    ['redis://127.0.0.1:6379/-1', 'the path "-1"'],
    ['rediss://user:pw@127.0.0.1:6379/1e3', 'the path "1e3"'],
    ['redis://127.0.0.1:6379?db=two', 'the db parameter "two"'],
    ['redis+sentinel://127.0.0.1:26379,127.0.0.2:26379/main?db=x', 'the db parameter "x"'],
  ])('%s', async (url, what) => {
    const error = await loadConfig({ env: { REDIS_URL: url }, config: {} }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).problems).toEqual([`REDIS_URL: ${what} is not a database number (a whole number, 0 or more, as in redis://HOST:PORT/1)`])
  })

  test('a number is taken, whatever the server has', async () => {
    for (const url of ['redis://127.0.0.1:6379', 'redis://127.0.0.1:6379/', 'redis://127.0.0.1:6379/99', 'redis://127.0.0.1:6379?db=3']) {
      expect((await loadConfig({ env: { REDIS_URL: url }, config: {} })).redisUrl).toBe(url)
    }
  })
})

const haveRedis = redisBinariesForTests('test/ready.redis-db.test.ts')

describe.skipIf(!haveRedis)('/ready and the database the server has', () => {
  let redis: RedisProcess
  let upstream: MockUpstream
  beforeAll(async () => {
    redis = await startRedisServer({ port: freePort(), args: ['--databases', '16'] })
    upstream = await startMockUpstream()
  })
  afterAll(async () => {
    await upstream?.stop()
    await redis?.kill()
    if (redis) cleanupDir(redis.dir)
  })

  test('database 99 of 16: 503 naming the database and the server’s refusal; database 7: 200', async () => {
    const config = quotaConfig(upstream.url, { quota: { hash_tag: 'ready-redis-db-test' } })
    const out = await startQuotaGateway(config, { redisUrl: `${redis.url}/99` })
    try {
      const res = await fetch(`${out.url}/ready`)
      const body = (await res.json()) as { checks: Record<string, string>; details: { redis?: string } }
      expect(res.status).toBe(503)
      expect(body.checks).toEqual({ database: 'ok', redis: 'unreachable' })
      expect(body.details.redis).toBe(`127.0.0.1:${redis.port} cannot use database 99 (ERR DB index is out of range)`)
    } finally {
      await out.close()
    }
    const fine = await startQuotaGateway(config, { redisUrl: `${redis.url}/7` })
    try {
      expect((await fetch(`${fine.url}/ready`)).status).toBe(200)
    } finally {
      await fine.close()
    }
  })
})
