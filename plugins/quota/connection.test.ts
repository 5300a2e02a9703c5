/**
 * The quota's connection over Bun's Redis client, to a redis-server of this file's own through a
 * relay the test can silence. A connection that died without a reset (its peer gone, a firewall or
 * NAT that dropped it) is not closed by anyone: before, every call on it timed out, and with
 * fail_mode closed every request of a limited key was refused 503 while Redis itself answered,
 * until TCP gave up on the connection many minutes later (never, behind a relay that acknowledges).
 * A Redis that is only slow must keep its connection: the late replies say what a call did.
 *
 * Needs redis-server: skipped with a printed line without it, a failure with CI set.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { cleanupDir, freePort, redisBinariesForTests, startRedisServer, type RedisProcess } from '../../test/support/redis-procs.ts'
import { startTcpProxy, type TcpProxy } from '../../test/support/tcp-proxy.ts'
import { NativeConnection, TimedOutError } from './connection.ts'

const haveRedis = redisBinariesForTests('plugins/quota/connection.test.ts')
const TIMEOUT_MS = 300
const PING_SCRIPT = "return redis.call('PING')"

describe.skipIf(!haveRedis)('NativeConnection', () => {
  let redis: RedisProcess
  let relay: TcpProxy
  beforeAll(async () => {
    redis = await startRedisServer({ port: freePort() })
    relay = startTcpProxy(redis.port)
  })
  afterAll(async () => {
    redis?.resume()
    relay?.stop()
    await redis?.kill()
    if (redis) cleanupDir(redis.dir)
  })

  /** The outcome of one call: its reply, or the name of its error. */
  const call = (c: NativeConnection): Promise<unknown> => c.eval(PING_SCRIPT, [0]).catch((error: unknown) => (error instanceof Error ? error.name : String(error)))

  test('a connection that went silent is replaced once a call on it times out while Redis answers a new one', async () => {
    const connection = new NativeConnection(`redis://127.0.0.1:${relay.port}`, TIMEOUT_MS)
    try {
      await connection.whenConnected(2000)
      expect(await call(connection)).toBe('PONG')
      relay.stall()
      expect(await call(connection)).toBe('TimedOutError')
      const deadline = Date.now() + 10_000
      let last: unknown
      while ((last = await call(connection)) !== 'PONG') {
        if (Date.now() > deadline) throw new Error(`calls still fail 10 s after the connection went silent (last: ${String(last)})`)
        await Bun.sleep(50)
      }
    } finally {
      connection.close()
    }
  })

  test("a probe that ends before its timeout (both PINGs answered), and a wait for the connection that ends before its bound, leave no timer: a process whose connection is closed ends then, not a timeout later", async () => {
    // A child process: whether something still holds it is what the test looks at. Its timeout is
    // 60 s; probe() is what a call that timed out runs, asked here at once.
    const script = [
      `import { NativeConnection } from ${JSON.stringify(new URL('./connection.ts', import.meta.url).pathname)}`,
      `const connection = new NativeConnection(${JSON.stringify(redis.url)}, 60_000)`,
      'await connection.whenConnected(30_000)',
      'if (!connection.connected) process.exit(3)',
      'connection.probe()',
      'await new Promise((resolve) => setTimeout(resolve, 500))',
      'connection.close()',
      "console.log('closed')",
    ].join('\n')
    const child = Bun.spawn([process.execPath, '-e', script], { stdout: 'pipe', stderr: 'pipe' })
    const ended = await Promise.race([child.exited.then(() => true), Bun.sleep(15_000).then(() => false)])
    if (!ended) child.kill('SIGKILL')
    expect({ ended, exitCode: child.exitCode, out: (await new Response(child.stdout).text()).trim() }).toEqual({ ended: true, exitCode: 0, out: 'closed' })
  }, 30_000)

  test('a Redis that is slow keeps its connection, and the late reply of a call that timed out still comes', async () => {
    const connection = new NativeConnection(redis.url, TIMEOUT_MS)
    try {
      await connection.whenConnected(2000)
      expect(await call(connection)).toBe('PONG')
      redis.pause()
      let late: Promise<unknown> | undefined
      try {
        await connection.eval(PING_SCRIPT, [0])
      } catch (error) {
        expect(error).toBeInstanceOf(TimedOutError)
        late = (error as TimedOutError).late
      }
      // Longer than the call's timeout and the probe's: a new connection gets no answer either.
      await Bun.sleep(TIMEOUT_MS * 4)
      redis.resume()
      expect(await late).toBe('PONG')
      expect(connection.connected).toBe(true)
    } finally {
      redis.resume()
      connection.close()
    }
  })
})
