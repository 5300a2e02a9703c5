/**
 * watchConnection tells a dead connection from a Redis that is slow. A connection that went
 * silent (a relay that stops relaying without closing: a peer gone, a NAT that dropped it) is
 * dropped within a few seconds; a Redis that answers nobody for longer than PING_TIMEOUT_MS (a
 * fork, a slow script; here SIGSTOP) keeps its connections, as a new one gets no answer either.
 * Before, a single PING missed for PING_TIMEOUT_MS dropped the connection, so such a stall made
 * every instance drop its connections and resync its key cache at once.
 *
 * Needs redis-server: skipped with a printed line without it, a failure with CI set.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'bun:test'
import type { Redis } from 'ioredis'
import { cleanupDir, redisBinariesForTests, startRedisServer, type RedisProcess } from '../test/support/redis-procs.ts'
import { startTcpProxy, type TcpProxy } from '../test/support/tcp-proxy.ts'
import { PING_EVERY_MS, PING_TIMEOUT_MS, createRedis } from './redis.ts'

const haveRedis = redisBinariesForTests('src/redis.watch.test.ts')

describe.skipIf(!haveRedis)('watchConnection', () => {
  let redis: RedisProcess
  let relay: TcpProxy
  let client: Redis | null = null
  beforeAll(async () => {
    redis = await startRedisServer()
    relay = startTcpProxy(redis.port)
  })
  afterEach(() => {
    redis.resume()
    client?.disconnect()
    client = null
  })
  afterAll(async () => {
    relay?.stop()
    await redis?.kill()
    if (redis) cleanupDir(redis.dir)
  })

  /** A watched client through the relay, ready, and how many times its connection closed. */
  const connect = async (): Promise<{ closes: () => number }> => {
    const watched = createRedis(`redis://127.0.0.1:${relay.port}`) as Redis
    client = watched
    let closes = 0
    watched.on('close', () => closes++)
    await watched.ping()
    return { closes: () => closes }
  }

  test('a Redis that answers nobody for longer than a PING may wait keeps the connection, and its commands are answered after', async () => {
    const { closes } = await connect()
    redis.pause()
    // Long enough for a PING to be asked and missed, and the new connection's too.
    const reply = client!.incr('watch-stall')
    await Bun.sleep(PING_EVERY_MS + 2 * PING_TIMEOUT_MS + 1000)
    redis.resume()
    expect(await reply).toBe(1)
    expect(closes()).toBe(0)
    expect(client!.status).toBe('ready')
  }, 30_000)

  test('a connection that went silent while Redis answers new ones is dropped and made again within a few seconds', async () => {
    const { closes } = await connect()
    relay.stall()
    const bound = PING_EVERY_MS + 2 * PING_TIMEOUT_MS + 2000
    const deadline = Date.now() + bound
    while (closes() === 0) {
      if (Date.now() > deadline) throw new Error(`the silent connection was not dropped within ${bound} ms`)
      await Bun.sleep(50)
    }
    expect(await client!.set('watch-after', 'x')).toBe('OK')
  }, 30_000)
})
