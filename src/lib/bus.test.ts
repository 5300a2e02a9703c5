/**
 * The message bus. After a gap: Redis pub/sub keeps nothing for a subscriber that is not
 * connected, so the Redis bus tells its users when messages may have been lost (onResync), once
 * its subscriptions are back. Its channels: pub/sub ignores the database index, so the index is
 * in the prefix. A redis-server of this file's own, killed and restarted.
 *
 * Needs redis-server: skipped with a printed line without it, a failure with CI set.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'bun:test'
import { Cluster, Redis } from 'ioredis'
import { PING_EVERY_MS, PING_TIMEOUT_MS, createRedis } from '../redis.ts'
import { cleanupDir, freePort, redisBinariesForTests, startRedisServer, type RedisProcess } from '../../test/support/redis-procs.ts'
import { startTcpProxy } from '../../test/support/tcp-proxy.ts'
import { NOTICE_COALESCE_MS, PUBLISH_TIMEOUT_MS, busPrefix, createLocalBus, createRedisBus, type MessageBus } from './bus.ts'

const haveRedis = redisBinariesForTests('src/lib/bus.test.ts')

/** Resolves once `check` holds; throws after `ms` naming `what`. */
async function until(check: () => boolean, what: string, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`)
    await Bun.sleep(10)
  }
}

describe('the in-process bus', () => {
  test('delivers at once and never asks for a resync', async () => {
    const bus = createLocalBus()
    const got: string[] = []
    let resyncs = 0
    await bus.subscribe('t', (m) => got.push(m))
    bus.onResync(() => resyncs++)
    await bus.publish('t', 'a')
    expect(got).toEqual(['a'])
    expect(resyncs).toBe(0)
    await bus.close()
  })
})

describe.skipIf(!haveRedis)('the Redis bus', () => {
  let redis: RedisProcess
  /** A plain connection for what the test does to Redis behind the bus's back. */
  let raw: Redis
  const opened: (() => Promise<void>)[] = []

  beforeAll(async () => {
    redis = await startRedisServer({ port: freePort() })
    raw = new Redis(redis.url, { maxRetriesPerRequest: 1 })
    raw.on('error', () => {})
  })
  afterEach(async () => {
    for (const close of opened.splice(0)) await close()
  })
  afterAll(async () => {
    raw?.disconnect()
    await redis?.kill()
    if (redis) cleanupDir(redis.dir)
  })

  /** A bus on the gateway's own kind of client, subscribed to `t`, recording what it hears and each resync's `since`. */
  async function open(url = redis.url): Promise<{ bus: MessageBus; got: string[]; resyncs: number[] }> {
    const client = createRedis(url)
    const bus = createRedisBus(client)
    opened.push(async () => {
      await bus.close()
      client.disconnect()
    })
    const got: string[] = []
    const resyncs: number[] = []
    await bus.subscribe('t', (m) => got.push(m))
    bus.onResync((since) => resyncs.push(since))
    return { bus, got, resyncs }
  }

  test('a healthy boot asks for none; a killed subscriber connection asks once its subscription is back', async () => {
    const { bus, got, resyncs } = await open()
    await bus.publish('t', 'before')
    await until(() => got.includes('before'), 'the first message')
    expect(resyncs).toEqual([])

    const killedAt = Date.now()
    // The kill and a message in one transaction: the message is published while the subscriber is gone.
    await raw.multi().call('CLIENT', 'KILL', 'TYPE', 'pubsub').publish('sluice:t', 'lost').exec()
    await until(() => resyncs.length === 1, 'the resync')
    expect(got).not.toContain('lost')
    expect(resyncs[0]).toBeGreaterThanOrEqual(killedAt)
    expect(resyncs[0]).toBeLessThanOrEqual(Date.now())

    // The subscription is in place when the resync runs: what a reload would miss is heard.
    await raw.publish('sluice:t', 'after')
    await until(() => got.includes('after'), 'a message after the resync')
    await Bun.sleep(200)
    expect(resyncs.length).toBe(1)
  })

  test('a Redis restart asks for one once Redis is back, and not before', async () => {
    const { bus, got, resyncs } = await open()
    await bus.publish('t', 'before')
    await until(() => got.includes('before'), 'the first message')
    await redis.kill()
    await expect(bus.publish('t', 'lost')).rejects.toThrow()
    await Bun.sleep(500)
    expect(resyncs).toEqual([])
    const restartedAt = Date.now()
    await redis.restart()
    await until(() => resyncs.length === 1, 'the resync after the restart', 5000)
    expect(resyncs[0]).toBeLessThan(restartedAt)
    await raw.publish('sluice:t', 'after')
    await until(() => got.includes('after'), 'a message after the restart')
  })

  test('a boot with Redis away asks for one once the subscription is made', async () => {
    await redis.kill()
    const { got, resyncs } = await open()
    await Bun.sleep(300)
    expect(resyncs).toEqual([])
    await redis.restart()
    await until(() => resyncs.length === 1, 'the resync after Redis came up', 5000)
    await raw.publish('sluice:t', 'after')
    await until(() => got.includes('after'), 'a message once Redis is up')
  })

  test('a publish Redis does not answer (a hung server, a silent network) fails after PUBLISH_TIMEOUT_MS instead of waiting for good', async () => {
    const { bus } = await open()
    redis.pause()
    try {
      const outcome = await Promise.race([
        bus.publish('t', 'unanswered').then(
          () => 'published',
          (error: unknown) => String(error),
        ),
        Bun.sleep(PUBLISH_TIMEOUT_MS + 3000).then(() => 'still waiting'),
      ])
      expect(outcome).toContain(`did not answer within ${PUBLISH_TIMEOUT_MS} ms`)
    } finally {
      redis.resume()
    }
  })

  test('a message an instance could not publish (cut off from Redis alone) makes the others catch up once it reaches Redis again', async () => {
    const proxy = startTcpProxy(redis.port)
    opened.push(async () => proxy.stop())
    const cutOff = await open(`redis://127.0.0.1:${proxy.port}`)
    const other = await open()
    await cutOff.bus.publish('t', 'heard')
    await until(() => other.got.includes('heard'), 'a message before the cut')

    proxy.cut()
    const lostAt = Date.now()
    await expect(cutOff.bus.publish('t', 'lost')).rejects.toThrow()
    // The other instance's connection never dropped: nothing of its own tells it to catch up.
    await Bun.sleep(300)
    expect(other.got).not.toContain('lost')
    expect(other.resyncs).toEqual([])

    proxy.restore()
    await until(() => other.resyncs.length === 1, 'the other instance told to catch up', 5000)
    expect(other.resyncs[0]).toBeGreaterThanOrEqual(lostAt)
    expect(other.resyncs[0]).toBeLessThanOrEqual(Date.now())
    // The instance cut off catches up through its own subscription, once; its notice is not for itself.
    await until(() => cutOff.resyncs.length === 1, 'the cut-off instance catching up itself', 5000)
    await Bun.sleep(300)
    expect(cutOff.resyncs.length).toBe(1)
    expect(other.resyncs.length).toBe(1)
  })

  test('notices from many instances at once make one resync, from the earliest time they name', async () => {
    const { resyncs } = await open()
    // After a Redis outage every instance whose messages did not go out sends one, within a second or two:
    // each cleared the key caches of all the others again, a burst of database reads per notice.
    for (const [instance, since] of [['other-1', 3000], ['other-2', 1000], ['other-3', 2000]] as const) await raw.publish('sluice:bus.missed', `${instance} ${since}`)
    await until(() => resyncs.length === 1, 'the resync')
    await Bun.sleep(NOTICE_COALESCE_MS + 300)
    expect(resyncs).toEqual([1000])
  })

  test('a subscriber connection that went silent (no reset: a peer gone, a firewall that dropped it) is found out and replaced, and asks for a resync', async () => {
    const proxy = startTcpProxy(redis.port)
    opened.push(async () => proxy.stop())
    const { got, resyncs } = await open(`redis://127.0.0.1:${proxy.port}`)
    await raw.publish('sluice:t', 'heard')
    await until(() => got.includes('heard'), 'a message before the stall')

    const stalledAt = Date.now()
    proxy.stall()
    await raw.publish('sluice:t', 'lost')
    // TCP keepalive alone finds nothing (the relay's end answers its probes), and a dead peer only after minutes.
    await until(() => resyncs.length === 1, 'the resync after the stall', PING_EVERY_MS + PING_TIMEOUT_MS + 5000)
    expect(got).not.toContain('lost')
    expect(resyncs[0]).toBeGreaterThanOrEqual(stalledAt - PING_EVERY_MS)
    await raw.publish('sluice:t', 'after')
    await until(() => got.includes('after'), 'a message on the new connection')
  }, 30_000)

  test('deployments on different database indexes of one server do not hear each other; database 0 keeps the prefix sluice:', async () => {
    const zero = await open(`${redis.url}/0`)
    const one = await open(`${redis.url}/1`)
    const oneToo = await open(`${redis.url}/1`)
    const two = await open(`${redis.url}/2`)
    await one.bus.publish('t', 'from-1')
    await zero.bus.publish('t', 'from-0')
    await two.bus.publish('t', 'from-2')
    await until(() => oneToo.got.length === 1 && zero.got.length === 1 && two.got.length === 1, 'each message on its own deployment')
    await Bun.sleep(100)
    expect(one.got).toEqual(['from-1'])
    expect(oneToo.got).toEqual(['from-1'])
    expect(zero.got).toEqual(['from-0'])
    expect(two.got).toEqual(['from-2'])
    // What instances of earlier versions on database 0 publish still arrives.
    await raw.publish('sluice:t', 'older-0')
    await until(() => zero.got.includes('older-0'), 'a message on the old channel')
    expect(one.got).toEqual(['from-1'])
  })
})

describe('busPrefix', () => {
  test('sluice: for database 0 and a Cluster, the index otherwise', () => {
    const clients = [new Redis({ lazyConnect: true }), new Redis('redis://127.0.0.1:6379/0', { lazyConnect: true }), new Redis('redis://127.0.0.1:6379/7', { lazyConnect: true })]
    const cluster = new Cluster([{ host: '127.0.0.1', port: 6379 }], { lazyConnect: true })
    expect(clients.map(busPrefix)).toEqual(['sluice:', 'sluice:', 'sluice:db7:'])
    expect(busPrefix(cluster)).toBe('sluice:')
    for (const c of clients) c.disconnect()
    cluster.disconnect()
  })
})
