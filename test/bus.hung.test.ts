/**
 * A Redis that hangs (it takes the connection and never answers: a stopped process, a network that
 * drops packets without a reset) must not hold the admin's changes. Two gateways in this process
 * on one SQLite file and one redis-server of this file's own, stopped with SIGSTOP. Before, a
 * revoke waited for its announcement to the other instances, and so its answer waited for Redis,
 * for as long as Redis hung.
 *
 * Needs redis-server: skipped with a printed line without it, a failure with CI set.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PUBLISH_TIMEOUT_MS } from '../src/lib/bus.ts'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { ADMIN_KEY, UPSTREAM_SECRET, authConfig, type CreatedKey } from './support/auth.ts'
import { startGateway, type TestGateway } from './support/gateway.ts'
import { adminCall, chatOutcome } from './support/instances.ts'
import { cleanupDir, freePort, redisBinariesForTests, startRedisServer, type RedisProcess } from './support/redis-procs.ts'

const haveRedis = redisBinariesForTests('test/bus.hung.test.ts')

/** How soon after Redis answers again the other instance must refuse the key. */
const CATCH_UP_MS = 5000

describe.skipIf(!haveRedis)('admin changes while Redis hangs', () => {
  let redis: RedisProcess
  let upstream: MockUpstream
  let dir: string
  let a: TestGateway
  let b: TestGateway

  beforeAll(async () => {
    redis = await startRedisServer({ port: freePort() })
    upstream = await startMockUpstream({ apiKeys: [UPSTREAM_SECRET] })
    dir = mkdtempSync(join(tmpdir(), 'sluice-bus-hung-'))
    const config = authConfig(upstream.url, { plugins: [{ use: 'auth', options: { demo_key: false } }, 'balance'] })
    const env = { DATABASE_URL: `sqlite://${join(dir, 'sluice.db')}`, REDIS_URL: redis.url, SLUICE_ADMIN_KEY: ADMIN_KEY }
    // One after the other: the first runs the migrations.
    a = await startGateway(config, { env })
    b = await startGateway(config, { env })
  })
  afterAll(async () => {
    redis?.resume()
    await a?.close()
    await b?.close()
    await upstream?.stop()
    await redis?.kill()
    if (redis) cleanupDir(redis.dir)
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  // Well past the publish's bound: an answer that waits for Redis fails here, not at the test's timeout.
  const admin = <T>(gw: TestGateway, method: string, path: string, body?: unknown): Promise<T> => adminCall<T>(gw, method, path, body, PUBLISH_TIMEOUT_MS + 3000)
  const chat = chatOutcome

  test('a revoke is answered while Redis hangs, and the key is refused on both once Redis answers again', async () => {
    const user = await admin<{ id: string }>(a, 'POST', '/admin/users', {})
    const key = await admin<CreatedKey>(a, 'POST', '/admin/keys', { user_id: user.id })
    expect(await chat(a, key.key)).toBe('ok')
    expect(await chat(b, key.key)).toBe('ok')

    redis.pause()
    try {
      const revoked = await admin<{ status: string }>(a, 'POST', `/admin/keys/${key.id}/revoke`, { reason: 'leaked' })
      expect(revoked.status).toBe('revoked')
      expect(await chat(a, key.key)).toBe('key_revoked')
    } finally {
      redis.resume()
    }
    const started = Date.now()
    for (;;) {
      const code = await chat(b, key.key)
      if (code === 'key_revoked') break
      if (Date.now() - started > CATCH_UP_MS) throw new Error(`B still answers ${code} ${CATCH_UP_MS} ms after Redis answers again`)
      await Bun.sleep(25)
    }
  })
})
