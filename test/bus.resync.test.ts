/**
 * Changes made while Redis was away reach every instance once it is back. Two gateways in this
 * process on one SQLite file and one redis-server of this file's own; an admin change goes
 * through A while Redis is down, so A cannot announce it (its PUBLISH fails) and B's subscriber
 * is disconnected too. Once Redis answers again B must catch up by itself: a revoked key refused,
 * a deleted model gone, a provider key the operator reset back in service. Without that B kept
 * the key for the auth cache's 30 s, and the model and the dead key until a restart.
 *
 * Needs redis-server: skipped with a printed line without it, a failure with CI set.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { ADMIN_KEY, UPSTREAM_SECRET, authConfig, type CreatedKey } from './support/auth.ts'
import type { HealthRow } from './support/balance.ts'
import { startGateway, type TestGateway } from './support/gateway.ts'
import { adminCall, chatOutcome } from './support/instances.ts'
import { cleanupDir, freePort, redisBinariesForTests, startRedisServer, type RedisProcess } from './support/redis-procs.ts'

const haveRedis = redisBinariesForTests('test/bus.resync.test.ts')

/** How soon after Redis answers again an instance must have caught up. */
const CATCH_UP_MS = 2000

describe.skipIf(!haveRedis)('an admin change made while Redis is down reaches the other instance once it is back', () => {
  let redis: RedisProcess
  let upstream: MockUpstream
  let dir: string
  let a: TestGateway
  let b: TestGateway

  beforeAll(async () => {
    redis = await startRedisServer({ port: freePort() })
    upstream = await startMockUpstream({ apiKeys: [UPSTREAM_SECRET] })
    dir = mkdtempSync(join(tmpdir(), 'sluice-bus-resync-'))
    const config = authConfig(upstream.url, { plugins: [{ use: 'auth', options: { demo_key: false } }, 'balance'] })
    const env = { DATABASE_URL: `sqlite://${join(dir, 'sluice.db')}`, REDIS_URL: redis.url, SLUICE_ADMIN_KEY: ADMIN_KEY }
    // One after the other: the first runs the migrations.
    a = await startGateway(config, { env })
    b = await startGateway(config, { env })
  })
  afterAll(async () => {
    await a?.close()
    await b?.close()
    await upstream?.stop()
    await redis?.kill()
    if (redis) cleanupDir(redis.dir)
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  const admin = <T>(gw: TestGateway, method: string, path: string, body?: unknown): Promise<T> => adminCall<T>(gw, method, path, body)
  const chat = chatOutcome
  const newKey = async (): Promise<CreatedKey> => {
    const user = await admin<{ id: string }>(a, 'POST', '/admin/users', {})
    return admin<CreatedKey>(a, 'POST', '/admin/keys', { user_id: user.id })
  }
  const keyHealth = async (gw: TestGateway): Promise<HealthRow> => {
    const rows = (await admin<{ data: HealthRow[] }>(gw, 'GET', '/admin/providers/health')).data
    const row = rows.find((r) => r.provider === 'up' && r.key === 'k1')
    if (!row) throw new Error('no health row for up/k1')
    return row
  }
  /** Polls until `check` holds; returns the ms it took, or throws after `ms` with what it saw last. */
  const within = async <T>(ms: number, what: string, read: () => Promise<T>, check: (value: T) => boolean): Promise<number> => {
    const started = Date.now()
    for (;;) {
      const value = await read()
      if (check(value)) return Date.now() - started
      if (Date.now() - started > ms) throw new Error(`${what}: not within ${ms} ms (last: ${JSON.stringify(value)})`)
      await Bun.sleep(25)
    }
  }

  test('a key revoked through A is refused by B', async () => {
    const key = await newKey()
    // Warm in both caches.
    expect(await chat(a, key.key)).toBe('ok')
    expect(await chat(b, key.key)).toBe('ok')

    await redis.kill()
    await admin(a, 'POST', `/admin/keys/${key.id}/revoke`, { reason: 'leaked' })
    expect(await chat(a, key.key)).toBe('key_revoked')
    // The gap: B was not told and serves the key from its cache.
    expect(await chat(b, key.key)).toBe('ok')

    await redis.restart()
    await within(CATCH_UP_MS, 'B refusing the revoked key', () => chat(b, key.key), (code) => code === 'key_revoked')
  })

  test('a model deleted through A is gone from B', async () => {
    const key = await newKey()
    await admin(a, 'POST', '/admin/models', { name: 'resync-gpt', targets: [{ provider: 'up', model: 'mock-gpt' }] })
    await within(CATCH_UP_MS, 'B serving the new model', () => chat(b, key.key, 'resync-gpt'), (code) => code === 'ok')

    await redis.kill()
    await admin(a, 'DELETE', '/admin/models/resync-gpt')
    expect(await chat(a, key.key, 'resync-gpt')).toBe('model_not_found')
    expect(await chat(b, key.key, 'resync-gpt')).toBe('ok')

    await redis.restart()
    await within(CATCH_UP_MS, 'B refusing the deleted model', () => chat(b, key.key, 'resync-gpt'), (code) => code === 'model_not_found')
  })

  test('a provider key reset through A is back in service on B', async () => {
    // Dead on both, as a 401 from the upstream on either would make it.
    const verdict = { provider: 'up', key: 'k1', coolingUntil: 0, dead: 'the upstream refused this key (HTTP 401)', openUntil: 0 }
    // Sent until both have it: after the test before, either subscription may still be on its way back.
    const bothDead = async () => {
      await a.gateway.services.bus.publish('balance.health', JSON.stringify(verdict))
      await Bun.sleep(50)
      return [await keyHealth(a), await keyHealth(b)]
    }
    await within(CATCH_UP_MS * 2, 'the key dead on both', bothDead, (rows) => rows.every((row) => row.state === 'dead'))

    await redis.kill()
    await admin(a, 'POST', '/admin/providers/up/keys/k1/reset')
    expect((await keyHealth(a)).state).toBe('healthy')
    expect((await keyHealth(b)).state).toBe('dead')

    await redis.restart()
    await within(CATCH_UP_MS, 'the key back in service on B', () => keyHealth(b), (row) => row.state === 'healthy')
    const key = await newKey()
    expect(await chat(b, key.key)).toBe('ok')
  })

  // Last: it ends as soon as B has caught up, before A's own subscription may be back.
  test('a console session signed out on A is refused by B', async () => {
    const login = await fetch(`${a.url}/console/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ admin_key: ADMIN_KEY }) })
    expect(login.status).toBe(200)
    const cookie = login.headers.get('set-cookie')!.split(';')[0]!
    const { csrf_token: csrf } = (await login.json()) as { csrf_token: string }
    const usersWith = async (gw: TestGateway): Promise<number> => (await fetch(`${gw.url}/admin/users?limit=1`, { headers: { cookie } })).status
    expect(await usersWith(b)).toBe(200)

    await redis.kill()
    const logout = await fetch(`${a.url}/console/logout`, { method: 'POST', headers: { cookie, 'x-sluice-csrf': csrf } })
    expect(logout.status).toBe(200)
    expect(await usersWith(a)).toBe(401)
    // The gap: B was not told.
    expect(await usersWith(b)).toBe(200)

    await redis.restart()
    // Before, B took the session for the rest of its life (8 hours): the sign-outs were read at boot only.
    await within(CATCH_UP_MS, 'B refusing the signed-out session', () => usersWith(b), (status) => status === 401)
  })
})
