/**
 * A Cluster client's node connections are watched as a single node's client is: one that died
 * without a reset (its peer gone, a firewall or NAT that dropped it) while the node answers any
 * new connection is dropped, and the client connects to the node again. Before, every command for
 * that node's slots timed out (the quota's calls on a Cluster: every request of a limited key
 * refused 503) until TCP gave up on the connection, after many minutes if ever. Three masters of
 * this file's own, each reached through a relay (the client's natMap) the test can silence.
 *
 * Needs redis-server: skipped with a printed line without it, a failure with CI set.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from 'bun:test'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cluster } from 'ioredis'
import { cleanupDir, freePort, redisBinariesForTests, waitForPing } from '../test/support/redis-procs.ts'
import { startTcpProxy, type TcpProxy } from '../test/support/tcp-proxy.ts'
import { PING_EVERY_MS, PING_TIMEOUT_MS, watchClusterNodes } from './redis.ts'

setDefaultTimeout(40_000)

const haveRedis = redisBinariesForTests('src/redis.cluster-watch.test.ts')

/** A free port whose cluster bus port (10000 higher) is free too. */
function clusterPort(taken: Set<number>): number {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = freePort()
    if (port + 10_000 > 65_535 || taken.has(port)) continue
    try {
      Bun.listen({ hostname: '127.0.0.1', port: port + 10_000, socket: { data() {} } }).stop(true)
      taken.add(port)
      return port
    } catch {
      // the bus port is in use; try another
    }
  }
  throw new Error('no free port pair for a cluster node')
}

describe.skipIf(!haveRedis)('a Cluster client whose node connections went silent', () => {
  let dir: string
  const nodes: { port: number; proc: ReturnType<typeof Bun.spawn>; relay: TcpProxy }[] = []

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-cluster-watch-'))
    const taken = new Set<number>()
    for (let i = 0; i < 3; i++) {
      const port = clusterPort(taken)
      const proc = Bun.spawn(
        ['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--cluster-node-timeout', '5000', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', dir],
        { cwd: dir, stdout: 'ignore', stderr: 'pipe' },
      )
      nodes.push({ port, proc, relay: startTcpProxy(port) })
    }
    await Promise.all(nodes.map((n) => waitForPing(n.port, 10_000, n.proc)))
    const create = await Bun.$`redis-cli --cluster create ${nodes.map((n) => `127.0.0.1:${n.port}`)} --cluster-replicas 0 --cluster-yes`.nothrow().quiet()
    if (create.exitCode !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`)
    const state = async (port: number) => (await Bun.$`redis-cli -h 127.0.0.1 -p ${port} cluster info`.nothrow().quiet()).stdout.toString()
    const deadline = Date.now() + 20_000
    while (!(await Promise.all(nodes.map((n) => state(n.port)))).every((info) => info.includes('cluster_state:ok'))) {
      if (Date.now() > deadline) throw new Error('cluster_state:ok on every node: not within 20 s')
      await Bun.sleep(100)
    }
  })
  afterAll(async () => {
    for (const n of nodes) {
      n.relay.stop()
      n.proc.kill('SIGKILL')
      await n.proc.exited
    }
    if (dir) cleanupDir(dir)
  })

  test('commands on every slot answer again while the old connections stay silent', async () => {
    const natMap = Object.fromEntries(nodes.map((n) => [`127.0.0.1:${n.port}`, { host: '127.0.0.1', port: n.relay.port }]))
    // As the quota's client: commands give up after a timeout, and are not queued while a node is away.
    const cluster = new Cluster([{ host: '127.0.0.1', port: nodes[0]!.port }], { natMap, enableOfflineQueue: false, redisOptions: { maxRetriesPerRequest: 0, commandTimeout: 500 } })
    cluster.on('error', () => {})
    watchClusterNodes(cluster)
    await new Promise((resolve) => cluster.once('ready', resolve))
    // A key in each master's slots (found by asking), so every node connection is in use.
    const keys: string[] = []
    for (let i = 0; keys.length < 3 && i < 1000; i++) {
      const key = `k${i}`
      const slot = Number(await cluster.call('CLUSTER', 'KEYSLOT', key))
      const owner = (await cluster.cluster('SLOTS')).find(([from, to]) => slot >= from && slot <= to)?.[2]?.[1]
      if (!keys.some((k) => k.startsWith(`${owner}:`))) keys.push(`${owner}:${key}`)
    }
    const setAll = async () => {
      const results = await Promise.all(keys.map((k) => cluster.set(k.slice(k.indexOf(':') + 1), 'v').then(() => 'ok', (error: unknown) => String(error))))
      return results.every((r) => r === 'ok') ? 'ok' : results.join('; ')
    }
    try {
      expect(keys.length).toBe(3)
      expect(await setAll()).toBe('ok')
      for (const n of nodes) n.relay.stall()
      expect(await setAll()).not.toBe('ok')
      const bound = PING_EVERY_MS + PING_TIMEOUT_MS + 10_000
      const deadline = Date.now() + bound
      let last = ''
      while ((last = await setAll()) !== 'ok') {
        if (Date.now() > deadline) throw new Error(`commands still fail ${bound} ms after the connections went silent: ${last}`)
        await Bun.sleep(200)
      }
    } finally {
      cluster.disconnect()
    }
  })
})
