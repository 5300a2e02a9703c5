/**
 * The quota backend goes away and comes back. A redis-server of this file's own, on a spare
 * port, is killed (SIGKILL) and restarted on the same port while two gateways use it:
 * one with the default fail_mode "closed" (refuse with 503 quota_backend_unavailable), one
 * with fail_mode "open" (admit, counting in process, limits still enforced). Both must go
 * back to Redis on their own once it answers again.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from 'bun:test'
import { Redis } from 'ioredis'
import { createLocalBus } from '../src/lib/bus.ts'
import { IoredisConnection } from '../plugins/quota/connection.ts'
import type { Item } from '../plugins/quota/plan.ts'
import { RedisStore } from '../plugins/quota/redis-store.ts'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { cleanupDir, freePort, redisBinariesForTests, startRedisServer, type RedisProcess } from './support/redis-procs.ts'
import { createKey, createUser, eventually, expectQuotaError, quotaConfig, startQuotaGateway, type QuotaGateway } from './support/quota.ts'

// bun test's default is 5 s per test (bunfig cannot change it); these start servers and wait on real time.
setDefaultTimeout(20_000)

const haveRedis = redisBinariesForTests('test/quota.redis-down.test.ts')

describe.skipIf(!haveRedis)('quota with Redis down', () => {
  const TAG = 'redis-down'
  let redis: RedisProcess
  let upstream: MockUpstream
  let closed: QuotaGateway
  let open: QuotaGateway
  let closedKey: { id: string; key: string }
  let openKey: { id: string; key: string }

  /** Keys of the quota in our Redis right now. */
  const redisKeys = async (): Promise<string[]> => {
    const client = new Redis(redis.url, { maxRetriesPerRequest: 1 })
    try {
      return await client.keys(`{${TAG}}*`)
    } finally {
      client.disconnect()
    }
  }

  beforeAll(async () => {
    redis = await startRedisServer()
    upstream = await startMockUpstream()
    closed = await startQuotaGateway(quotaConfig(upstream.url, { quota: { hash_tag: TAG, redis_timeout_ms: 300 } }), { redisUrl: redis.url })
    open = await startQuotaGateway(quotaConfig(upstream.url, { quota: { hash_tag: TAG, fail_mode: 'open', redis_timeout_ms: 300 } }), { redisUrl: redis.url })
    // Each gateway has its own in-memory SQLite: make the keys on each.
    closedKey = await createKey(closed, await createUser(closed), { limits: { rpm: 50 } })
    openKey = await createKey(open, await createUser(open), { limits: { rpm: 2 } })
  })
  afterAll(async () => {
    await closed?.close()
    await open?.close()
    await upstream?.stop()
    if (redis) {
      await redis.kill()
      cleanupDir(redis.dir)
    }
  })

  test('while Redis answers, admission runs in Redis and /ready says so', async () => {
    const res = await closed.chat(closedKey.key)
    expect(res.status).toBe(200)
    await res.arrayBuffer()
    expect(await redisKeys()).toContain(`{${TAG}}:key:${closedKey.id}:rpm`)
    const ready = await fetch(`${closed.url}/ready`)
    expect(ready.status).toBe(200)
    expect(await ready.json()).toMatchObject({ status: 'ready', checks: { redis: 'ok' } })
  })

  test('Redis hung (SIGSTOP): refused after redis_timeout_ms instead of hanging; fail-open admits in process; both recover on SIGCONT', async () => {
    // A fresh key on the open gateway, so its in-process bucket is untouched.
    const spare = await createKey(open, await createUser(open), { limits: { rpm: 1 } })
    redis.pause()
    try {
      const started = Date.now()
      const [refused, admitted] = await Promise.all([closed.chat(closedKey.key), open.chat(spare.key)])
      const took = Date.now() - started
      await expectQuotaError(refused, 'quota_backend_unavailable')
      expect(admitted.status).toBe(200)
      await admitted.arrayBuffer()
      // redis_timeout_ms is 300 here.
      expect(took).toBeGreaterThanOrEqual(250)
      expect(took).toBeLessThan(2000)
    } finally {
      redis.resume()
    }
    await eventually(
      async () => {
        const res = await closed.chat(closedKey.key)
        await res.arrayBuffer()
        return res.status === 200 ? true : undefined
      },
      10_000,
      'admission through Redis after SIGCONT',
    )
  })

  test('admissions that timed out on a hung Redis take nothing once it wakes: failing closed neither the request nor a total budget is charged, failing open nothing is counted twice', async () => {
    type View = { store: string; requests: { remaining: number }; budget: { tokens: { spent: number } } }
    const limits = { limits: { rpm: 10 }, budget: { tokens: 100_000, period: 'total' } }
    const refusedKey = await createKey(closed, await createUser(closed), limits)
    const admittedKey = await createKey(open, await createUser(open), limits)
    // Redis knows the admission script (else the stalled calls would only find NOSCRIPT when it wakes).
    const warm = await closed.chat(closedKey.key)
    expect(warm.status).toBe(200)
    await warm.arrayBuffer()
    redis.pause()
    try {
      const answers = await Promise.all([
        ...Array.from({ length: 3 }, () => closed.chat(refusedKey.key, { max_tokens: 200 })),
        ...Array.from({ length: 3 }, () => open.chat(admittedKey.key, { max_tokens: 200 })),
      ])
      for (const res of answers.slice(0, 3)) await expectQuotaError(res, 'quota_backend_unavailable')
      for (const res of answers.slice(3)) {
        expect(res.status).toBe(200)
        await res.arrayBuffer()
      }
      // Stalled well past redis_timeout_ms (300 ms): the gateways gave up on these calls long ago.
      await Bun.sleep(400)
    } finally {
      redis.resume()
    }
    // Redis now runs the scripts queued while it was stopped; they must take nothing.
    await Bun.sleep(300)
    for (const [gw, key] of [[closed, refusedKey], [open, admittedKey]] as const) {
      const view = await eventually(async () => {
        const v = await gw.adminOk<View>('GET', `/admin/keys/${key.id}/quota`)
        return v.store === 'redis' ? v : undefined
      }, 5000, 'the quota view from Redis')
      expect({ requests: view.requests.remaining, spent: view.budget.tokens.spent }).toEqual({ requests: 10, spent: 0 })
    }
  })

  test('over ioredis (the Cluster path, whose late replies are dropped), an admission Redis reaches past its deadline takes nothing', async () => {
    const client = new Redis(redis.url, { maxRetriesPerRequest: 0, commandTimeout: 300, enableOfflineQueue: false })
    client.on('error', () => {})
    await new Promise((resolve) => client.once('ready', resolve))
    const store = new RedisStore(new IoredisConnection(client))
    try {
      await store.syncClock()
      const item: Item = { kind: 'bucket', scope: 'key', id: 'k', measure: 'requests', key: `{${TAG}}:ioredis-late:rpm`, limit: 10, rate: 10 / 60_000, cost: 1, until: null }
      const budget: Item = { kind: 'counter', scope: 'key', id: 'k', measure: 'budget_tokens', key: `{${TAG}}:ioredis-late:bt`, limit: 1000, rate: 0, cost: 300, until: null }
      redis.pause()
      try {
        const outcomes = await Promise.allSettled([store.admit([item, budget], 'req_l1', Date.now()), store.admit([item, budget], 'req_l2', Date.now())])
        expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'rejected'])
        await Bun.sleep(300)
      } finally {
        redis.resume()
      }
      await Bun.sleep(200)
      expect(await store.peek([item, budget], Date.now())).toEqual([10, 1000])
    } finally {
      await store.close()
    }
  })

  test('an admission that timed out on a hung Redis does not leave its max_parallel lease behind once Redis runs again', async () => {
    const single = await createKey(closed, await createUser(closed), { limits: { max_parallel: 1 } })
    redis.pause()
    try {
      await expectQuotaError(await closed.chat(single.key), 'quota_backend_unavailable')
    } finally {
      redis.resume()
    }
    // Redis now runs the admission it had queued; the request was refused, so its lease must not stay.
    const res = await eventually(
      async () => {
        const r = await closed.chat(single.key)
        if (r.status === 503) return undefined
        return r
      },
      5000,
      'Redis to answer again',
    )
    expect(res.status).toBe(200)
    await res.arrayBuffer()
  })

  test('Redis killed, fail_mode closed (default): 503 quota_backend_unavailable, and /ready answers 503 with redis unreachable', async () => {
    await redis.kill()
    const started = Date.now()
    const res = await closed.chat(closedKey.key)
    const message = await expectQuotaError(res, 'quota_backend_unavailable')
    expect(message).toContain('quota backend is unreachable')
    // Refused quickly: no waiting for a reconnect or a long timeout.
    expect(Date.now() - started).toBeLessThan(2000)
    
    const ready = await fetch(`${closed.url}/ready`)
    expect(ready.status).toBe(503)
    expect(await ready.json()).toMatchObject({ status: 'not_ready', checks: { database: 'ok', redis: 'unreachable' } })
  })

  test('Redis down, fail_mode open: requests are admitted and counted in process, the limit still holds', async () => {
    const statuses: number[] = []
    for (let i = 0; i < 3; i++) {
      const res = await open.chat(openKey.key)
      statuses.push(res.status)
      if (res.status === 429) expect(await expectQuotaError(res, 'rate_limit_exceeded')).toContain(`key ${openKey.id}`)
      else await res.arrayBuffer()
    }
    expect(statuses).toEqual([200, 200, 429])
  })

  test('GET /v1/key still answers while Redis is down failing open, with the in-process counts admission enforces', async () => {
    const info = await open.keyInfo(openKey.key)
    expect(info.id).toBe(openKey.id)
    // Both requests of its 2 a minute were admitted in process by the test before.
    expect(info.remaining.requests).toBe(0)
  })

  test('GET /v1/key while Redis is down, failing closed: 503 quota_backend_unavailable, as its requests get, never the untouched in-process counts; a key without limits still gets its answer', async () => {
    const res = await fetch(`${closed.url}/v1/key`, { headers: { authorization: `Bearer ${closedKey.key}` } })
    const message = await expectQuotaError(res, 'quota_backend_unavailable')
    expect(message).toContain('cannot be read now')
    expect(message).toContain('The key itself is valid')
    const unlimited = await createKey(closed, await createUser(closed))
    const info = await closed.keyInfo(unlimited.key)
    expect(info.remaining).toEqual({ requests: null, tokens: null, budget_tokens: null, budget_usd: null })
  })

  test("Redis down: the admin quota view and reset answer 503 quota_backend_unavailable failing closed; failing open they show and reset the in-process counts", async () => {
    for (const path of [`/admin/keys/${closedKey.id}/quota`, `/admin/keys/${closedKey.id}/quota/reset`]) {
      const res = await closed.admin(path.endsWith('reset') ? 'POST' : 'GET', path)
      expect(await expectQuotaError(res, 'quota_backend_unavailable')).toContain('Redis')
    }
    // The open gateway counted its two admissions in process (previous test): that is what it shows.
    const view = await open.adminOk<{ store: string; requests: { remaining: number } }>('GET', `/admin/keys/${openKey.id}/quota`)
    expect(view).toMatchObject({ store: 'memory', requests: { remaining: 0 } })
    // A reset cannot reach Redis: refused, but the in-process counts it could reach are reset.
    await expectQuotaError(await open.admin('POST', `/admin/keys/${openKey.id}/quota/reset`), 'quota_backend_unavailable')
    expect((await open.adminOk<{ requests: { remaining: number } }>('GET', `/admin/keys/${openKey.id}/quota`)).requests.remaining).toBe(2)
    // Two more admitted in process, which leaves the bucket spent again for the next test.
    for (let i = 0; i < 2; i++) {
      const res = await open.chat(openKey.key)
      expect(res.status).toBe(200)
      await res.arrayBuffer()
    }
    await expectQuotaError(await open.chat(openKey.key), 'rate_limit_exceeded')
  })

  test('Redis restarted on the same port: both gateways use it again on their own', async () => {
    await redis.restart()
    // Closed: admitted again, through Redis.
    await eventually(
      async () => {
        const res = await closed.chat(closedKey.key)
        await res.arrayBuffer()
        return res.status === 200 ? true : undefined
      },
      10_000,
      'the fail-closed gateway to admit again',
    )
    // The restarted Redis is empty (no persistence): the open gateway's in-process bucket is spent,
    // so being admitted again proves the admission is in Redis, and Redis now holds its bucket.
    await eventually(
      async () => {
        const res = await open.chat(openKey.key)
        await res.arrayBuffer()
        return res.status === 200 ? true : undefined
      },
      10_000,
      'the fail-open gateway to admit through Redis again',
    )
    const keys = await redisKeys()
    expect(keys).toContain(`{${TAG}}:key:${closedKey.id}:rpm`)
    expect(keys).toContain(`{${TAG}}:key:${openKey.id}:rpm`)
    // And the limit is Redis' again: 2 per minute in the fresh bucket, the first was taken above.
    const second = await open.chat(openKey.key)
    expect(second.status).toBe(200)
    await second.arrayBuffer()
    await expectQuotaError(await open.chat(openKey.key), 'rate_limit_exceeded')

    const ready = await eventually(async () => {
      const r = await fetch(`${closed.url}/ready`)
      return r.status === 200 ? r : undefined
    }, 10_000, '/ready to be ready again')
    expect(await ready.json()).toMatchObject({ checks: { redis: 'ok' } })
  })
})

describe.skipIf(!haveRedis)('quota with Redis never reachable', () => {
  // The gateway's message bus (auth's cache invalidation) cannot boot without Redis today
  // (see the report); an in-process bus isolates what this file is about: the quota plugin.
  test('a gateway whose REDIS_URL points at a port with nothing listening boots, and refuses admission with 503 quota_backend_unavailable', async () => {
    const upstream = await startMockUpstream()
    // Reserve a port and keep it free: start nothing on it.
    const port = freePort()
    let gw: QuotaGateway | undefined
    try {
      gw = await startQuotaGateway(quotaConfig(upstream.url, { quota: { hash_tag: 'never-up' } }), {
        redisUrl: `redis://127.0.0.1:${port}`,
        gateway: { services: { bus: createLocalBus() } },
      })
      const key = await createKey(gw, await createUser(gw), { limits: { rpm: 5 } })
      await expectQuotaError(await gw.chat(key.key), 'quota_backend_unavailable')
      const ready = await fetch(`${gw.url}/ready`)
      expect(ready.status).toBe(503)
    } finally {
      await gw?.close()
      await upstream.stop()
    }
  })
})
