/**
 * The message bus on a Redis Cluster: three `redis-server --cluster-enabled yes` masters of this
 * file's own. A PUBLISH reaches every node, so the bus listens on one node; when that connection
 * drops (the node restarted or failed, the connection was cut) it listens on a node again, and
 * what was published in between is lost: the bus must then say so (onResync), as on a single
 * node. ioredis' cluster subscriber moved on without a word, so a key revoked in that moment
 * stayed in every instance's cache for cache_ttl_ms, and a model deleted stayed until a restart.
 *
 * Needs redis-server: skipped with a printed line without it, a failure with CI set.
 */
import { afterAll, afterEach, beforeAll, describe, expect, setDefaultTimeout, test } from 'bun:test'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { createRedis } from '../redis.ts'
import { cleanupDir, freePort, redisBinariesForTests, waitForPing } from '../../test/support/redis-procs.ts'
import { createRedisBus, type MessageBus } from './bus.ts'

setDefaultTimeout(30_000)

const haveRedis = redisBinariesForTests('src/lib/bus.cluster.test.ts')

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

/** Resolves once `check` holds; throws after `ms` naming `what`. */
async function until(check: () => boolean | Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`)
    await Bun.sleep(20)
  }
}

describe.skipIf(!haveRedis)('the Redis bus on a Cluster', () => {
  let dir: string
  const nodes: { port: number; proc: ReturnType<typeof Bun.spawn> }[] = []
  const opened: (() => Promise<void>)[] = []

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-bus-cluster-'))
    const taken = new Set<number>()
    for (let i = 0; i < 3; i++) {
      const port = clusterPort(taken)
      const proc = Bun.spawn(
        ['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--cluster-node-timeout', '2000', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', dir],
        { cwd: dir, stdout: 'ignore', stderr: 'pipe' },
      )
      nodes.push({ port, proc })
    }
    await Promise.all(nodes.map((n) => waitForPing(n.port, 10_000, n.proc)))
    const create = await Bun.$`redis-cli --cluster create ${nodes.map((n) => `127.0.0.1:${n.port}`)} --cluster-replicas 0 --cluster-yes`.nothrow().quiet()
    if (create.exitCode !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`)
    const state = async (port: number) => (await Bun.$`redis-cli -h 127.0.0.1 -p ${port} cluster info`.nothrow().quiet()).stdout.toString()
    await until(async () => (await Promise.all(nodes.map((n) => state(n.port)))).every((info) => info.includes('cluster_state:ok')), 'cluster_state:ok on every node', 20_000)
  })
  afterEach(async () => {
    for (const close of opened.splice(0)) await close()
  })
  afterAll(async () => {
    for (const n of nodes) {
      n.proc.kill('SIGKILL')
      await n.proc.exited
    }
    if (dir) cleanupDir(dir)
  })

  async function open(): Promise<{ bus: MessageBus; got: string[]; resyncs: number[] }> {
    const client = createRedis(`redis+cluster://${nodes.map((n) => `127.0.0.1:${n.port}`).join(',')}`)
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

  /** The port of the node the bus listens on: the one node with a client in subscriber mode. */
  async function listeningNode(): Promise<number> {
    const found: number[] = []
    for (const n of nodes) {
      const list = (await Bun.$`redis-cli -h 127.0.0.1 -p ${n.port} client list type pubsub`.nothrow().quiet()).stdout.toString()
      if (list.trim()) found.push(n.port)
    }
    if (found.length !== 1) throw new Error(`expected one node with a subscriber, found ${found.length}`)
    return found[0]!
  }

  test('a healthy start asks for no resync, and a message from any node is heard', async () => {
    const { bus, got, resyncs } = await open()
    await bus.publish('t', 'through the cluster')
    await until(() => got.includes('through the cluster'), 'a message the bus published')
    for (const n of nodes) {
      const raw = new Redis({ host: '127.0.0.1', port: n.port })
      await raw.publish('sluice:t', `from ${n.port}`)
      raw.disconnect()
    }
    await until(() => nodes.every((n) => got.includes(`from ${n.port}`)), 'a message published on each node')
    expect(resyncs).toEqual([])
  })

  test('a dropped subscriber connection asks for a resync once the bus listens again, on whichever node', async () => {
    const { got, resyncs } = await open()
    await until(async () => (await listeningNode().catch(() => 0)) !== 0, 'the bus listening on a node')
    const port = await listeningNode()
    const raw = new Redis({ host: '127.0.0.1', port })
    const killedAt = Date.now()
    try {
      // The kill and a message in one transaction: the message is published while the bus is not listening.
      await raw.multi().call('CLIENT', 'KILL', 'TYPE', 'pubsub').publish('sluice:t', 'lost').exec()
    } finally {
      raw.disconnect()
    }
    await until(() => resyncs.length === 1, 'the resync')
    expect(got).not.toContain('lost')
    expect(resyncs[0]).toBeGreaterThanOrEqual(killedAt)
    expect(resyncs[0]).toBeLessThanOrEqual(Date.now())

    // Listening again: a later message is heard, and no second resync comes.
    const again = new Redis({ host: '127.0.0.1', port: nodes[0]!.port })
    await again.publish('sluice:t', 'after')
    again.disconnect()
    await until(() => got.includes('after'), 'a message after the resync')
    await Bun.sleep(200)
    expect(resyncs.length).toBe(1)
  })
})
