/**
 * A settlement made while the store's Redis connection is down for a moment: it never left the
 * process, so it is sent again once the connection is back, and the request's max_parallel slot
 * comes free at once instead of when its lease expires. Against a redis-server of the test's own
 * (its clients are killed with CLIENT KILL, which would hit other tests' clients on a shared one).
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from 'bun:test'
import { Redis } from 'ioredis'
import { NativeConnection, NotSentError } from '../plugins/quota/connection.ts'
import type { Item } from '../plugins/quota/plan.ts'
import { MemoryStore } from '../plugins/quota/store.ts'
import { RedisStore } from '../plugins/quota/redis-store.ts'
import { PendingReleases, settleSurely } from '../plugins/quota/settle.ts'
import { cleanupDir, redisBinariesForTests, startRedisServer, type RedisProcess } from './support/redis-procs.ts'
import { eventually } from './support/quota.ts'

// bun test's default is 5 s per test; one test here keeps Redis away for a while.
setDefaultTimeout(15_000)

const haveRedis = redisBinariesForTests('test/quota.settle-retry.test.ts')

describe.skipIf(!haveRedis)('settling while the Redis connection is down', () => {
  let server: RedisProcess
  let admin: Redis
  let connection: NativeConnection
  let store: RedisStore

  beforeAll(async () => {
    server = await startRedisServer()
    admin = new Redis(server.url)
    // It reconnects on its own after the outage below.
    admin.on('error', () => {})
    connection = new NativeConnection(server.url, 1000)
    await connection.whenConnected(2000)
    store = new RedisStore([connection], { settleWaitMs: 0 })
  })
  afterAll(async () => {
    await store?.close()
    admin?.disconnect()
    await server?.kill()
    if (server) cleanupDir(server.dir)
  })

  const slot = (key: string): Item => ({ kind: 'lease', scope: 'key', id: 'k', measure: 'parallel', key: `{t}:${key}:par`, limit: 1, rate: 0, cost: 1, until: 60_000 })

  /** Kill the store's connection and wait until it has noticed (it reconnects on its own after 100 ms). */
  async function dropConnection(): Promise<void> {
    await admin.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes')
    const until = Date.now() + 2000
    while (connection.connected && Date.now() < until) await Bun.sleep(2)
    expect(connection.connected).toBe(false)
  }

  test('a plain settle() in that window is refused as never sent (what the retry is for)', async () => {
    const items = [slot('plain')]
    expect((await store.admit(items, 'req_plain', Date.now())).ok).toBe(true)
    await dropConnection()
    const failed = await store.settle(items, [0], 'req_plain', Date.now()).catch((error: unknown) => error)
    expect(failed).toBeInstanceOf(NotSentError)
    await connection.whenConnected(3000)
    // The lease is still held: the slot stays taken until it expires.
    expect((await store.admit(items, 'req_plain_2', Date.now())).ok).toBe(false)
  })

  test('settleSurely sends it again once connected: the slot is free within a second, nothing reported lost', async () => {
    const items = [slot('surely')]
    expect((await store.admit(items, 'req_a', Date.now())).ok).toBe(true)
    await dropConnection()
    const lost: unknown[] = []
    const releases = new PendingReleases({ keepMs: 60_000, now: Date.now, dropped: () => {} })
    await settleSurely(store, items, [0], 'req_a', 0, { retries: 5, baseMs: 100, now: Date.now, lost: (error) => lost.push(error), releases })
    expect(lost).toEqual([])
    expect((await store.admit(items, 'req_b', Date.now())).ok).toBe(true)
  })

  test('Redis away for longer than the retries: the lease release is kept, and sent once Redis answers again, long before the lease would expire', async () => {
    const items = [slot('outage')]
    expect((await store.admit(items, 'req_out', Date.now())).ok).toBe(true)
    // Saved on the way down, so the restarted Redis still holds the lease (as a Redis with AOF or RDB would).
    await Bun.$`redis-cli -p ${server.port} shutdown save`.nothrow().quiet()
    await server.kill()
    const lost: unknown[] = []
    const releases = new PendingReleases({ keepMs: 60_000, retryMs: 50, maxRetryMs: 200, now: Date.now, dropped: () => {} })
    // Retries much shorter than the outage: given up on after 20 + 40 ms.
    await settleSurely(store, items, [0], 'req_out', 0, { retries: 2, baseMs: 20, now: Date.now, lost: (error) => lost.push(error), releases })
    expect(lost).toHaveLength(1)
    expect(releases.size).toBe(1)
    await Bun.sleep(1500)
    await server.restart()
    await connection.whenConnected(5000)
    await eventually(async () => (releases.size === 0 ? true : undefined), 5000, 'the release to go through')
    // The lease (60 s) is gone: its slot is free for the next request.
    expect((await store.admit(items, 'req_after', Date.now())).ok).toBe(true)
  })

  test('a kick (an admission the store answered) sends kept releases at once, not at the next round; at most one round a 100 ms', async () => {
    class Flaky extends MemoryStore {
      down = true
      override async release(items: Item[], leaseId: string): Promise<void> {
        if (this.down) throw new NotSentError('Redis is not connected (ZREM)')
        return super.release(items, leaseId)
      }
    }
    const flaky = new Flaky()
    let now = 0
    const releases = new PendingReleases({ retryMs: 60_000, keepMs: 600_000, now: () => now, dropped: () => {} })
    const items = [slot('kicked')]
    expect((await flaky.admit(items, 'req_k', now)).ok).toBe(true)
    await releases.release(flaky, items, 'req_k')
    expect(releases.size).toBe(1)
    flaky.down = false
    // The last round (none yet) is long past: this kick sends it.
    releases.kick()
    await eventually(async () => (releases.size === 0 ? true : undefined), 1000, 'the kicked release')
    expect((await flaky.admit(items, 'req_k2', now)).ok).toBe(true)
    // Kept again while down: a kick within 100 ms of the last round waits for the timer.
    flaky.down = true
    await releases.release(flaky, items, 'req_k2')
    flaky.down = false
    now += 50
    releases.kick()
    await Bun.sleep(20)
    expect(releases.size).toBe(1)
    now += 60
    releases.kick()
    await eventually(async () => (releases.size === 0 ? true : undefined), 1000, 'the second kick')
    releases.close()
  })

  test('kept releases are bounded: past the bound the oldest is dropped and told; one kept past the lease lifetime is given up as expired', async () => {
    const refusing = new RedisStore([new NativeConnection('redis://127.0.0.1:1', 100)])
    const dropped: [number, string][] = []
    let now = 0
    const releases = new PendingReleases({ max: 3, keepMs: 1000, retryMs: 10_000, now: () => now, dropped: (count, reason) => void dropped.push([count, reason]) })
    for (let i = 0; i < 5; i++) await releases.release(refusing, [slot('bounded')], `req_bounded_${i}`)
    expect(releases.size).toBe(3)
    expect(await releases.flush()).toBe(false)
    expect(dropped).toEqual([[2, 'full']])
    now = 1000
    expect(await releases.flush()).toBe(true)
    expect(dropped).toEqual([[2, 'full'], [3, 'expired']])
    releases.close()
    await refusing.close()
  })
})
