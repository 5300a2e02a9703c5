/**
 * The quota on a real Redis Cluster: three `redis-server --cluster-enabled yes` masters of
 * this file's own (temp dir, spare ports), joined with `redis-cli --cluster create`. One
 * admission touches the key's, the user's and the team's buckets, leases and counters in one
 * Lua script; that works in a cluster only because all of them share one hash tag (one slot).
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from 'bun:test'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cluster } from 'ioredis'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { cleanupDir, redisBinariesForTests, waitForPing } from './support/redis-procs.ts'
import { createKey, createTeam, createUser, eventually, expectQuotaError, quotaConfig, startQuotaGateway, type QuotaGateway } from './support/quota.ts'

// bun test's default is 5 s per test (bunfig cannot change it); these start servers and wait on real time.
setDefaultTimeout(20_000)

const haveRedis = redisBinariesForTests('test/quota.cluster.test.ts')

/** A port p with p and p + 10000 (the cluster bus port) both free. */
function clusterPort(taken: Set<number>): number {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 30_000)
    if (taken.has(port) || taken.has(port + 10_000)) continue
    try {
      for (const p of [port, port + 10_000]) Bun.listen({ hostname: '127.0.0.1', port: p, socket: { data() {} } }).stop(true)
      taken.add(port).add(port + 10_000)
      return port
    } catch {
      // in use; try another
    }
  }
  throw new Error('no free port pair for a cluster node')
}

describe.skipIf(!haveRedis)('quota on Redis Cluster', () => {
  const TAG = 'cluster-test'
  let dir: string
  const nodes: { port: number; proc: ReturnType<typeof Bun.spawn> }[] = []
  let upstream: MockUpstream
  let gw: QuotaGateway
  let clusterUrl: string

  const startNode = (port: number) => {
    const proc = Bun.spawn(
      ['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--cluster-node-timeout', '2000', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', dir],
      { cwd: dir, stdout: 'ignore', stderr: 'pipe' },
    )
    return proc
  }

  const clusterInfo = async (port: number): Promise<string> => (await Bun.$`redis-cli -h 127.0.0.1 -p ${port} cluster info`.nothrow().quiet()).stdout.toString()

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-cluster-'))
    const taken = new Set<number>()
    for (let i = 0; i < 3; i++) {
      const port = clusterPort(taken)
      nodes.push({ port, proc: startNode(port) })
    }
    await Promise.all(nodes.map((n) => waitForPing(n.port, 10_000, n.proc)))
    const create = await Bun.$`redis-cli --cluster create ${nodes.map((n) => `127.0.0.1:${n.port}`)} --cluster-replicas 0 --cluster-yes`.nothrow().quiet()
    if (create.exitCode !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`)
    await eventually(async () => {
      const infos = await Promise.all(nodes.map((n) => clusterInfo(n.port)))
      return infos.every((i) => i.includes('cluster_state:ok')) ? true : undefined
    }, 20_000, 'cluster_state:ok on every node')

    clusterUrl = `redis+cluster://${nodes.map((n) => `127.0.0.1:${n.port}`).join(',')}`
    upstream = await startMockUpstream()
    gw = await startQuotaGateway(quotaConfig(upstream.url, { quota: { hash_tag: TAG, redis_timeout_ms: 500 } }), { redisUrl: clusterUrl })
  }, 45_000)

  afterAll(async () => {
    await gw?.close()
    await upstream?.stop()
    for (const n of nodes) {
      n.proc.kill('SIGKILL')
      await n.proc.exited
    }
    if (dir) cleanupDir(dir)
  })

  /** A client of our own, to look inside the cluster. */
  const withCluster = async <T>(work: (c: Cluster) => Promise<T>): Promise<T> => {
    const c = new Cluster(nodes.map((n) => ({ host: '127.0.0.1', port: n.port })), { redisOptions: { maxRetriesPerRequest: 1 } })
    c.on('error', () => {})
    try {
      return await work(c)
    } finally {
      c.disconnect()
    }
  }

  test('key, user and team limits and budgets in one admission: admitted without CROSSSLOT, every key in one slot', async () => {
    const user = await createUser(gw, { limits: { rpm: 100, tpm: 100_000, max_parallel: 10 }, budget: { tokens: 1_000_000, period: 'day' } })
    const team = await createTeam(gw, [user], { limits: { rpm: 100, tpm: 100_000, max_parallel: 10 }, budget: { usd: 100, period: 'month' } })
    const { id, key } = await createKey(gw, user, { team_id: team, limits: { rpm: 100, tpm: 100_000, max_parallel: 10 }, budget: { tokens: 1_000_000, period: 'week' } })
    const res = await gw.chat(key, { max_tokens: 10 })
    expect(res.status).toBe(200)
    expect(res.headers.get('x-ratelimit-remaining-requests')).toBe('99')
    await res.arrayBuffer()

    const found = await withCluster(async (c) => {
      const slot = Number(await c.call('CLUSTER', 'KEYSLOT', `{${TAG}}`))
      const keys: string[] = []
      for (const node of c.nodes('master')) {
        const [, batch] = await node.scan('0', 'MATCH', `{${TAG}}*`, 'COUNT', 10_000)
        keys.push(...batch)
      }
      const slots = new Set(await Promise.all(keys.map(async (k) => Number(await c.call('CLUSTER', 'KEYSLOT', k)))))
      return { keys, slot, slots: [...slots] }
    })
    expect(found.slots).toEqual([found.slot])
    for (const k of [`{${TAG}}:key:${id}:rpm`, `{${TAG}}:user:${user}:tpm`, `{${TAG}}:team:${team}:rpm`]) expect(found.keys).toContain(k)
  })

  test('limits are enforced: the key, then the user, then the team refuses once spent', async () => {
    const user = await createUser(gw, { limits: { rpm: 3 } })
    const team = await createTeam(gw, [user], { limits: { rpm: 4 } })
    const a = await createKey(gw, user, { team_id: team, limits: { rpm: 2 } })
    const b = await createKey(gw, user, { team_id: team })
    const other = await createUser(gw)
    await gw.adminOk('POST', `/admin/teams/${team}/members`, { user_id: other })
    const c = await createKey(gw, other, { team_id: team })

    for (let i = 0; i < 2; i++) expect((await gw.chat(a.key)).status).toBe(200)
    expect(await expectQuotaError(await gw.chat(a.key), 'rate_limit_exceeded')).toContain(`key ${a.id}`)
    expect((await gw.chat(b.key)).status).toBe(200)
    expect(await expectQuotaError(await gw.chat(b.key), 'rate_limit_exceeded')).toContain(`user ${user}`)
    expect((await gw.chat(c.key)).status).toBe(200)
    expect(await expectQuotaError(await gw.chat(c.key), 'rate_limit_exceeded')).toContain(`team ${team}`)
  })

  test('concurrent admissions stay exact in the cluster', async () => {
    const { key } = await createKey(gw, await createUser(gw), { limits: { rpm: 20 } })
    const responses = await Promise.all(Array.from({ length: 60 }, () => gw.chat(key)))
    expect(responses.filter((r) => r.status === 200)).toHaveLength(20)
    expect(responses.filter((r) => r.status === 429)).toHaveLength(40)
    await Promise.all(responses.map((r) => r.arrayBuffer()))
  })

  test('a budget and a lease settle in the cluster: /v1/key shows the real usage', async () => {
    const { key } = await createKey(gw, await createUser(gw), { limits: { max_parallel: 1 }, budget: { tokens: 5000, period: 'day' } })
    const res = await gw.chat(key, { max_tokens: 20 })
    expect(res.status).toBe(200)
    const used = ((await res.json()) as { usage: { total_tokens: number } }).usage.total_tokens
    await eventually(async () => ((await gw.keyInfo(key)).remaining.budget_tokens === 5000 - used ? true : undefined), 5000, 'settled')
    expect((await gw.chat(key)).status).toBe(200)
  })

  test("an operator's reset deletes a key's buckets and budget counter in the cluster at once (one DEL in the quota slot)", async () => {
    const { id, key } = await createKey(gw, await createUser(gw), { limits: { rpm: 1, tpm: 100_000 }, budget: { tokens: 100_000, period: 'month' } })
    expect((await gw.chat(key)).status).toBe(200)
    await expectQuotaError(await gw.chat(key), 'rate_limit_exceeded')
    const after = await gw.adminOk<{ store: string; requests: { remaining: number }; tokens: { remaining: number }; budget: { tokens: { spent: number } } }>(
      'POST',
      `/admin/keys/${id}/quota/reset`,
    )
    expect(after).toMatchObject({ store: 'redis', requests: { remaining: 1 }, tokens: { remaining: 100_000 }, budget: { tokens: { spent: 0 } } })
    expect((await gw.chat(key)).status).toBe(200)
  })

  /** The port of the master that holds the quota's slot. */
  const slotOwner = () =>
    withCluster(async (c) => {
      const slot = Number(await c.call('CLUSTER', 'KEYSLOT', `{${TAG}}`))
      const ranges = (await c.call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][]
      return ranges.find(([from, to]) => slot >= from && slot <= to)![2][1]
    })

  test('the node holding the quota slot hangs (SIGSTOP): refused after redis_timeout_ms, and admitted again once it runs', async () => {
    const { key } = await createKey(gw, await createUser(gw), { limits: { rpm: 100 } })
    expect((await gw.chat(key)).status).toBe(200)
    const owner = await slotOwner()
    const node = nodes.find((n) => n.port === owner)!
    node.proc.kill('SIGSTOP')
    let took: number
    try {
      const started = Date.now()
      const res = await Promise.race([gw.chat(key), Bun.sleep(5000).then(() => null)])
      took = Date.now() - started
      expect(res).not.toBeNull()
      await expectQuotaError(res!, 'quota_backend_unavailable')
    } finally {
      node.proc.kill('SIGCONT')
    }
    // redis_timeout_ms is 500 here.
    expect(took).toBeLessThan(2000)
    await eventually(async () => {
      const r = await gw.chat(key)
      await r.arrayBuffer()
      return r.status === 200 ? true : undefined
    }, 10_000, 'admission after SIGCONT')
  })

  test('the node holding the quota slot goes down: refused quickly with 503 quota_backend_unavailable (fail closed), not hung', async () => {
    const { key } = await createKey(gw, await createUser(gw), { limits: { rpm: 100 } })
    expect((await gw.chat(key)).status).toBe(200)
    const owner = await slotOwner()
    const node = nodes.find((n) => n.port === owner)!
    node.proc.kill('SIGKILL')
    await node.proc.exited
    const started = Date.now()
    const res = await gw.chat(key)
    const took = Date.now() - started
    await expectQuotaError(res, 'quota_backend_unavailable')
    expect(took).toBeLessThan(5000)
  })
})
