/**
 * A Redis connection that died without a reset (its peer gone, a firewall or NAT that dropped it)
 * while Redis itself answers: a gateway's own client must find out and connect again. Before,
 * nothing did: every command on it waited, /ready answered 503 (a readiness probe took the
 * instance out of service) and pub/sub messages went nowhere, until TCP gave up on the connection
 * many minutes later (never, here: the relay keeps acknowledging). A redis-server of this file's
 * own, behind a relay that stops relaying on the connections it has without closing them.
 *
 * Needs redis-server: skipped with a printed line without it, a failure with CI set.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { PING_EVERY_MS, PING_TIMEOUT_MS } from '../src/redis.ts'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { quotaConfig, startQuotaGateway, type QuotaGateway } from './support/quota.ts'
import { cleanupDir, freePort, redisBinariesForTests, startRedisServer, type RedisProcess } from './support/redis-procs.ts'
import { startTcpProxy, type TcpProxy } from './support/tcp-proxy.ts'

const haveRedis = redisBinariesForTests('test/ready.silent-redis.test.ts')

describe.skipIf(!haveRedis)('a Redis connection that went silent', () => {
  let redis: RedisProcess
  let relay: TcpProxy
  let upstream: MockUpstream
  let gw: QuotaGateway
  beforeAll(async () => {
    redis = await startRedisServer({ port: freePort() })
    relay = startTcpProxy(redis.port)
    upstream = await startMockUpstream()
    gw = await startQuotaGateway(quotaConfig(upstream.url), { redisUrl: `redis://127.0.0.1:${relay.port}` })
  })
  afterAll(async () => {
    await gw?.close()
    relay?.stop()
    await upstream?.stop()
    await redis?.kill()
    if (redis) cleanupDir(redis.dir)
  })

  const ready = async (): Promise<number> => (await fetch(`${gw.url}/ready`)).status

  test('is dropped and made again: /ready answers 200 again while the old connection stays silent', async () => {
    expect(await ready()).toBe(200)
    relay.stall()
    expect(await ready()).toBe(503)
    const bound = PING_EVERY_MS + PING_TIMEOUT_MS + 5000
    const deadline = Date.now() + bound
    while ((await ready()) !== 200) {
      if (Date.now() > deadline) throw new Error(`/ready still 503 ${bound} ms after the connection went silent`)
      await Bun.sleep(100)
    }
  }, 30_000)
})
