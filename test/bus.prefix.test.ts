/**
 * Two deployments on one Redis server, kept apart by the database index (`redis://host/1` and
 * `redis://host/2`): pub/sub channels are server-wide, so the one's balance verdicts (an upstream
 * 401 marks a key dead) reached the other's provider key of the same name, and its key
 * invalidations and catalog reloads too. Gateways in this process, each on its own database
 * file, and a redis-server of this file's own.
 *
 * Needs redis-server: skipped with a printed line without it, a failure with CI set.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startKeyedUpstream, type KeyedUpstream } from './fixtures/keyed-upstream.ts'
import { startBalanceGateway, type BalanceGateway } from './support/balance.ts'
import { cleanupDir, freePort, redisBinariesForTests, startRedisServer, type RedisProcess } from './support/redis-procs.ts'

const haveRedis = redisBinariesForTests('test/bus.prefix.test.ts')

describe.skipIf(!haveRedis)('deployments on different database indexes of one Redis server', () => {
  let redis: RedisProcess
  let up: KeyedUpstream
  /** Two instances of the deployment on database 1. */
  let first: BalanceGateway
  let firstToo: BalanceGateway
  /** The deployment on database 2, with a provider and key of the same names. */
  let second: BalanceGateway

  beforeAll(async () => {
    redis = await startRedisServer({ port: freePort() })
    up = await startKeyedUpstream()
    const setup = (db: number) => ({ providers: { up: ['k1', 'k2'] }, env: { REDIS_URL: `${redis.url}/${db}` } })
    first = await startBalanceGateway(up.url, setup(1))
    firstToo = await startBalanceGateway(up.url, setup(1))
    second = await startBalanceGateway(up.url, setup(2))
  })
  afterAll(async () => {
    for (const gw of [first, firstToo, second]) await gw?.close()
    await up?.stop()
    await redis?.kill()
    if (redis) cleanupDir(redis.dir)
  })

  test("a key one deployment learns is dead stays in service in the other", async () => {
    // What an upstream 401 on the first deployment's instance makes it announce.
    const verdict = { provider: 'up', key: 'k1', coolingUntil: 0, dead: 'the upstream refused this key (HTTP 401)', openUntil: 0 }
    await first.gateway.services.bus.publish('balance.health', JSON.stringify(verdict))
    const started = Date.now()
    while ((await firstToo.key('k1')).state !== 'dead') {
      if (Date.now() - started > 1000) throw new Error('the other instance of the same deployment did not hear it within a second')
      await Bun.sleep(10)
    }
    await Bun.sleep(200)
    expect((await second.key('k1')).state).toBe('healthy')
  })
})
