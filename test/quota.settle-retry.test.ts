/**
 * A settlement made while the store's Redis connection is down for a moment: it never left the
 * process, so it is sent again once the connection is back, and the request's max_parallel slot
 * comes free at once instead of when its lease expires. Against a redis-server of the test's own
 * (its clients are killed with CLIENT KILL, which would hit other tests' clients on a shared one).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { Redis } from 'ioredis'
import { NativeConnection, NotSentError } from '../plugins/quota/connection.ts'
import type { Item } from '../plugins/quota/plan.ts'
import { RedisStore } from '../plugins/quota/redis-store.ts'
import { settleSurely } from '../plugins/quota/settle.ts'
import { cleanupDir, redisBinariesForTests, startRedisServer, type RedisProcess } from './support/redis-procs.ts'

const haveRedis = redisBinariesForTests('test/quota.settle-retry.test.ts')

describe.skipIf(!haveRedis)('settling while the Redis connection is down', () => {
  let server: RedisProcess
  let admin: Redis
  let connection: NativeConnection
  let store: RedisStore

  beforeAll(async () => {
    server = await startRedisServer()
    admin = new Redis(server.url)
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
    await settleSurely(store, items, [0], 'req_a', { retries: 5, baseMs: 100, now: Date.now, lost: (error) => lost.push(error) })
    expect(lost).toEqual([])
    expect((await store.admit(items, 'req_b', Date.now())).ok).toBe(true)
  })
})
