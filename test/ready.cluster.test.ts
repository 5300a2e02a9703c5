/**
 * `GET /ready` on a Redis Cluster: three `redis-server --cluster-enabled yes` masters of this
 * file's own (temp dir, ports from 19160-19169, bus ports 10000 higher). A PING through the
 * cluster client reaches one node, any node; the gateway needs every master, since the quota's
 * hash tag and the bus may put its keys anywhere. So /ready must answer 503 while the master of
 * the quota's slot is down or hangs, name that node, and answer 200 again once it is back.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from 'bun:test'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cluster } from 'ioredis'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { cleanupDir, redisBinariesForTests, waitForPing } from './support/redis-procs.ts'
import { createKey, createUser, eventually, expectQuotaError, quotaConfig, startQuotaGateway, type QuotaGateway } from './support/quota.ts'

setDefaultTimeout(30_000)

const haveRedis = redisBinariesForTests('test/ready.cluster.test.ts')
const TAG = 'ready-cluster-test'

/** Free ports p of 19160-19169 with p + 10000 (the cluster bus port) free too. */
function clusterPorts(count: number): number[] {
  const ports: number[] = []
  for (let port = 19160; port <= 19169 && ports.length < count; port++) {
    try {
      for (const p of [port, port + 10_000]) Bun.listen({ hostname: '127.0.0.1', port: p, socket: { data() {} } }).stop(true)
      ports.push(port)
    } catch {
      // in use; try the next one
    }
  }
  if (ports.length < count) throw new Error(`only ${ports.length} of ${count} free port pairs in 19160-19169`)
  return ports
}

interface ReadyBody {
  status: string
  checks: { database: string; redis: string }
  details?: { redis?: string }
  error?: { code: string; message: string }
}

describe.skipIf(!haveRedis)('/ready on Redis Cluster', () => {
  let dir: string
  const nodes: { port: number; proc: ReturnType<typeof Bun.spawn> }[] = []
  let upstream: MockUpstream
  let gw: QuotaGateway

  const startNode = (port: number) =>
    Bun.spawn(
      ['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--cluster-node-timeout', '2000', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', dir],
      { cwd: dir, stdout: 'ignore', stderr: 'pipe' },
    )
  const clusterInfo = async (port: number): Promise<string> => (await Bun.$`redis-cli -h 127.0.0.1 -p ${port} cluster info`.nothrow().quiet()).stdout.toString()
  const clusterOk = () =>
    eventually(async () => ((await Promise.all(nodes.map((n) => clusterInfo(n.port)))).every((i) => i.includes('cluster_state:ok')) ? true : undefined), 20_000, 'cluster_state:ok on every node')

  const ready = async (): Promise<{ status: number; body: ReadyBody; ms: number }> => {
    const started = Date.now()
    const res = await fetch(`${gw.url}/ready`)
    return { status: res.status, body: (await res.json()) as ReadyBody, ms: Date.now() - started }
  }

  /** The port of the master that holds the quota's slot (asked of a client of our own). */
  const slotOwner = async (): Promise<number> => {
    const c = new Cluster(nodes.map((n) => ({ host: '127.0.0.1', port: n.port })), { redisOptions: { maxRetriesPerRequest: 1 } })
    c.on('error', () => {})
    try {
      const slot = Number(await c.call('CLUSTER', 'KEYSLOT', `{${TAG}}`))
      const ranges = await c.cluster('SLOTS')
      const owner = ranges.find(([from, to]) => slot >= from && slot <= to)?.[2]?.[1]
      if (owner === undefined) throw new Error(`no master holds slot ${slot}`)
      return owner
    } finally {
      c.disconnect()
    }
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-ready-cluster-'))
    for (const port of clusterPorts(3)) nodes.push({ port, proc: startNode(port) })
    await Promise.all(nodes.map((n) => waitForPing(n.port, 10_000, n.proc)))
    const create = await Bun.$`redis-cli --cluster create ${nodes.map((n) => `127.0.0.1:${n.port}`)} --cluster-replicas 0 --cluster-yes`.nothrow().quiet()
    if (create.exitCode !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`)
    await clusterOk()
    upstream = await startMockUpstream()
    gw = await startQuotaGateway(quotaConfig(upstream.url, { quota: { hash_tag: TAG, redis_timeout_ms: 500 } }), {
      redisUrl: `redis+cluster://${nodes.map((n) => `127.0.0.1:${n.port}`).join(',')}`,
    })
  }, 60_000)

  afterAll(async () => {
    await gw?.close()
    await upstream?.stop()
    for (const n of nodes) {
      n.proc.kill('SIGKILL')
      await n.proc.exited
    }
    if (dir) cleanupDir(dir)
  })

  test('every master answers: 200 ready, redis ok', async () => {
    const { status, body } = await ready()
    expect(status).toBe(200)
    expect(body).toEqual({ status: 'ready', checks: { database: 'ok', redis: 'ok' } })
  })

  test('the master of the quota slot hangs (SIGSTOP): 503 within the time limit, naming it; 200 once it runs again', async () => {
    const owner = await slotOwner()
    const node = nodes.find((n) => n.port === owner)!
    node.proc.kill('SIGSTOP')
    try {
      // Asked several times: a single PING through the cluster client would reach a node that answers.
      for (let i = 0; i < 3; i++) {
        const { status, body, ms } = await ready()
        expect(status).toBe(503)
        expect(body).toMatchObject({ status: 'not_ready', checks: { database: 'ok', redis: 'unreachable' }, error: { code: 'not_ready' } })
        expect(body.details?.redis).toContain(`cluster master 127.0.0.1:${owner} (slots `)
        expect(body.details?.redis).toContain('did not answer within')
        expect(body.error?.message).toContain(`127.0.0.1:${owner}`)
        // The others answered: only the hung one is named.
        for (const other of nodes.filter((n) => n.port !== owner)) expect(body.details?.redis).not.toContain(`:${other.port}`)
        expect(ms).toBeLessThan(2500)
      }
    } finally {
      node.proc.kill('SIGCONT')
    }
    await eventually(async () => ((await ready()).status === 200 ? true : undefined), 10_000, '/ready to answer 200 after SIGCONT')
  })

  test('the master of the quota slot is down: chat gets 503 quota_backend_unavailable and /ready says so, naming it; ready again once it is back', async () => {
    const { key } = await createKey(gw, await createUser(gw), { limits: { rpm: 1000 } })
    expect((await gw.chat(key)).status).toBe(200)
    const owner = await slotOwner()
    const index = nodes.findIndex((n) => n.port === owner)
    nodes[index]!.proc.kill('SIGKILL')
    await nodes[index]!.proc.exited

    await expectQuotaError(await gw.chat(key), 'quota_backend_unavailable')
    for (let i = 0; i < 3; i++) {
      const { status, body, ms } = await ready()
      expect(status).toBe(503)
      expect(body).toMatchObject({ status: 'not_ready', checks: { database: 'ok', redis: 'unreachable' }, error: { code: 'not_ready' } })
      expect(body.details?.redis).toContain(`cluster master 127.0.0.1:${owner} (slots `)
      expect(body.details?.redis).toContain('does not answer')
      expect(ms).toBeLessThan(2500)
    }

    // Restarted with its nodes file, it takes its slots back.
    nodes[index] = { port: owner, proc: startNode(owner) }
    await waitForPing(owner, 10_000, nodes[index]!.proc)
    await clusterOk()
    await eventually(async () => ((await ready()).status === 200 ? true : undefined), 15_000, '/ready to answer 200 after the restart')
    await eventually(
      async () => {
        const res = await gw.chat(key)
        await res.arrayBuffer()
        return res.status === 200 ? true : undefined
      },
      15_000,
      'admission after the restart',
    )
  })
})
