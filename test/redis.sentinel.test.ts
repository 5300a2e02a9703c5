/**
 * Redis behind Sentinel (`REDIS_URL=redis+sentinel://host:port/<master name>`): the gateway asks
 * the sentinel where the master is, the quota counts there, and after a failover (the master
 * killed, its replica promoted by the sentinel) requests are admitted again on the new master.
 * A master, a replica and a sentinel of this file's own (`redis-server --sentinel`, temp dir,
 * free ports); auth + quota through a real listening gateway.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from 'bun:test'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createRedis, hostList, maskUrl } from '../src/redis.ts'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { cleanupDir, freePort, redisBinariesForTests, startRedisServer, waitForPing, type RedisProcess } from './support/redis-procs.ts'
import { createKey, createUser, eventually, expectQuotaError, quotaConfig, startQuotaGateway, type QuotaGateway } from './support/quota.ts'

setDefaultTimeout(30_000)

const haveRedis = redisBinariesForTests('test/redis.sentinel.test.ts')
const MASTER = 'sluicemaster'
const TAG = 'sentinel-test'

const cli = async (port: number, ...args: string[]): Promise<string> => (await Bun.$`redis-cli -h 127.0.0.1 -p ${port} ${args}`.nothrow().quiet()).stdout.toString().trim()

describe.skipIf(!haveRedis)('Redis behind Sentinel', () => {
  let dir: string
  let master: RedisProcess
  let replica: RedisProcess
  let sentinel: ReturnType<typeof Bun.spawn>
  let sentinelPort: number
  let upstream: MockUpstream
  let gw: QuotaGateway

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-sentinel-'))
    master = await startRedisServer()
    replica = await startRedisServer({ args: ['--replicaof', '127.0.0.1', String(master.port)] })
    await eventually(async () => ((await cli(replica.port, 'info', 'replication')).includes('master_link_status:up') ? true : undefined), 10_000, 'the replica to follow the master')
    sentinelPort = freePort()
    const conf = join(dir, 'sentinel.conf')
    writeFileSync(
      conf,
      [
        `port ${sentinelPort}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        `sentinel monitor ${MASTER} 127.0.0.1 ${master.port} 1`,
        `sentinel down-after-milliseconds ${MASTER} 500`,
        `sentinel failover-timeout ${MASTER} 5000`,
        '',
      ].join('\n'),
    )
    sentinel = Bun.spawn(['redis-server', conf, '--sentinel'], { cwd: dir, stdout: 'ignore', stderr: 'pipe' })
    await waitForPing(sentinelPort, 10_000, sentinel)
    upstream = await startMockUpstream()
    gw = await startQuotaGateway(quotaConfig(upstream.url, { quota: { hash_tag: TAG, redis_timeout_ms: 300 } }), {
      redisUrl: `redis+sentinel://127.0.0.1:${sentinelPort}/${MASTER}`,
    })
  })
  afterAll(async () => {
    await gw?.close()
    await upstream?.stop()
    sentinel?.kill('SIGKILL')
    await sentinel?.exited
    await master?.kill()
    await replica?.kill()
    if (master) cleanupDir(master.dir)
    if (replica) cleanupDir(replica.dir)
    if (dir) cleanupDir(dir)
  })

  test('the quota counts on the master the sentinel names, exactly', async () => {
    const { id, key } = await createKey(gw, await createUser(gw), { limits: { rpm: 2 } })
    for (let i = 0; i < 2; i++) {
      const res = await gw.chat(key)
      expect(res.status).toBe(200)
      await res.arrayBuffer()
    }
    const message = await expectQuotaError(await gw.chat(key), 'rate_limit_exceeded')
    expect(message).toContain(`key ${id}`)
    expect(Number(await cli(master.port, 'eval', `return #redis.call('keys', '{${TAG}}*')`, '0'))).toBeGreaterThan(0)
    expect((await fetch(`${gw.url}/ready`)).status).toBe(200)
  })

  test('after a failover the gateway finds the new master and admits again', async () => {
    const { key } = await createKey(gw, await createUser(gw), { limits: { rpm: 1000 } })
    await master.kill()
    await eventually(async () => ((await cli(sentinelPort, 'sentinel', 'get-master-addr-by-name', MASTER)).includes(String(replica.port)) ? true : undefined), 20_000, 'the sentinel to promote the replica')
    await eventually(
      async () => {
        const res = await gw.chat(key)
        await res.arrayBuffer()
        return res.status === 200 ? true : undefined
      },
      20_000,
      'a request admitted on the new master',
    )
    expect(Number(await cli(replica.port, 'eval', `return #redis.call('keys', '{${TAG}}*')`, '0'))).toBeGreaterThan(0)
  })
})

describe('redis+sentinel:// URLs', () => {
  test('without a master name the boot stops, saying what to write; passwords never show', () => {
    let message = ''
    try {
      createRedis('redis+sentinel://:secret-pw@127.0.0.1:26379')
    } catch (error) {
      message = String(error)
    }
    expect(message).toContain('must name the master after the hosts: redis+sentinel://h1:26379,h2:26379/<master name>')
    expect(message).not.toContain('secret-pw')
    expect(maskUrl('redis+sentinel://u:secret-pw@h1:26379,h2:26379/m?sentinel_password=other-pw&db=2')).toBe('redis+sentinel://u:***@h1:26379,h2:26379/m?sentinel_password=***&db=2')
  })

  test('hosts with and without ports, IPv6 in brackets, credentials and query fields are read', () => {
    const parsed = hostList('redis+sentinel://u%40x:p%3Aw@h1,h2:26380,[::1]:26381,[fd00::2]/my%2Dmaster?db=3&sentinel_password=s', 'redis+sentinel://', '26379')
    expect(parsed.nodes).toEqual([
      { host: 'h1', port: 26379 },
      { host: 'h2', port: 26380 },
      { host: '::1', port: 26381 },
      { host: 'fd00::2', port: 26379 },
    ])
    expect([parsed.username, parsed.password, parsed.path, parsed.query.get('db'), parsed.query.get('sentinel_password')]).toEqual(['u@x', 'p:w', 'my-master', '3', 's'])
    // A password with a bare "%" (written as is, not escaped) is taken as written.
    expect(hostList('redis+cluster://:50%off@h1:7000', 'redis+cluster://', '6379').password).toBe('50%off')
    expect(hostList('redis+cluster://10.0.0.1:7000,10.0.0.2:7001', 'redis+cluster://', '6379').nodes).toEqual([
      { host: '10.0.0.1', port: 7000 },
      { host: '10.0.0.2', port: 7001 },
    ])
  })

  test('another scheme is refused, naming every accepted one', () => {
    expect(() => createRedis('memcached://127.0.0.1:11211')).toThrow('redis://, rediss://, redis+cluster:// or redis+sentinel://')
  })
})
