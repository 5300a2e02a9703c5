/**
 * One instance loses Redis while the others keep it: its admin changes cannot be announced, and
 * the others, whose connections never dropped, have no gap of their own to catch up after. Two
 * gateways in this process on one SQLite file and one redis-server of this file's own; A reaches
 * Redis through a relay the test cuts, B straight. Before, B served a key revoked through A until
 * its cache's 30 s ran out, and a model deleted through A until B restarted.
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
import { startTcpProxy, type TcpProxy } from './support/tcp-proxy.ts'

const haveRedis = redisBinariesForTests('test/bus.cut-off.test.ts')

/** How soon after A reaches Redis again B must have caught up: A's reconnect backoff (up to 2 s) and the notice. */
const CATCH_UP_MS = 5000

describe.skipIf(!haveRedis)('an admin change made on an instance cut off from Redis alone reaches the others once it is back', () => {
  let redis: RedisProcess
  let relay: TcpProxy
  let upstream: MockUpstream
  let dir: string
  let a: TestGateway
  let b: TestGateway

  beforeAll(async () => {
    redis = await startRedisServer({ port: freePort() })
    relay = startTcpProxy(redis.port)
    upstream = await startMockUpstream({ apiKeys: [UPSTREAM_SECRET] })
    dir = mkdtempSync(join(tmpdir(), 'sluice-bus-cut-off-'))
    const config = authConfig(upstream.url, { plugins: [{ use: 'auth', options: { demo_key: false } }, 'balance'] })
    const env = { DATABASE_URL: `sqlite://${join(dir, 'sluice.db')}`, SLUICE_ADMIN_KEY: ADMIN_KEY }
    // One after the other: the first runs the migrations.
    a = await startGateway(config, { env: { ...env, REDIS_URL: `redis://127.0.0.1:${relay.port}` } })
    b = await startGateway(config, { env: { ...env, REDIS_URL: redis.url } })
  })
  afterAll(async () => {
    await a?.close()
    await b?.close()
    relay?.stop()
    await upstream?.stop()
    await redis?.kill()
    if (redis) cleanupDir(redis.dir)
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  // Well past the publish's bound: an answer that waits for Redis fails here, not at the test's timeout.
  const admin = <T>(gw: TestGateway, method: string, path: string, body?: unknown): Promise<T> => adminCall<T>(gw, method, path, body, PUBLISH_TIMEOUT_MS + 3000)
  const chat = chatOutcome
  const newKey = async (): Promise<CreatedKey> => {
    const user = await admin<{ id: string }>(b, 'POST', '/admin/users', {})
    return admin<CreatedKey>(b, 'POST', '/admin/keys', { user_id: user.id })
  }
  /** Polls until `check` holds; throws after `ms` with what it saw last. */
  const within = async <T>(ms: number, what: string, read: () => Promise<T>, check: (value: T) => boolean): Promise<void> => {
    const started = Date.now()
    for (;;) {
      const value = await read()
      if (check(value)) return
      if (Date.now() - started > ms) throw new Error(`${what}: not within ${ms} ms (last: ${JSON.stringify(value)})`)
      await Bun.sleep(25)
    }
  }

  test('a key revoked through A while A is cut off is refused by B once A reaches Redis again', async () => {
    const key = await newKey()
    expect(await chat(a, key.key)).toBe('ok')
    expect(await chat(b, key.key)).toBe('ok')

    relay.cut()
    await admin(a, 'POST', `/admin/keys/${key.id}/revoke`, { reason: 'leaked' })
    expect(await chat(a, key.key)).toBe('key_revoked')
    // B's connection never dropped and it was not told: the gap.
    expect(await chat(b, key.key)).toBe('ok')

    relay.restore()
    await within(CATCH_UP_MS, 'B refusing the revoked key', () => chat(b, key.key), (code) => code === 'key_revoked')
  })

  test('a model deleted through A while A is cut off is gone from B once A reaches Redis again', async () => {
    const key = await newKey()
    await admin(b, 'POST', '/admin/models', { name: 'cut-gpt', targets: [{ provider: 'up', model: 'mock-gpt' }] })
    await within(CATCH_UP_MS, 'A serving the new model', () => chat(a, key.key, 'cut-gpt'), (code) => code === 'ok')

    relay.cut()
    await admin(a, 'DELETE', '/admin/models/cut-gpt')
    expect(await chat(a, key.key, 'cut-gpt')).toBe('model_not_found')
    expect(await chat(b, key.key, 'cut-gpt')).toBe('ok')

    relay.restore()
    // Before, B served it until it restarted: the catalog has no expiry of its own.
    await within(CATCH_UP_MS, 'B refusing the deleted model', () => chat(b, key.key, 'cut-gpt'), (code) => code === 'model_not_found')
  })
})
