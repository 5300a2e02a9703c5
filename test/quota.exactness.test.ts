/**
 * "Limits stay exact across instances": three gateway processes (`bun run src/main.ts`)
 * share one Redis and one Postgres; bursts spread over all three must admit exactly what
 * the limit allows, no more, no fewer.
 *
 * A token bucket of rpm N starts full and refills N/60000 per ms, so a burst that lasts T ms
 * may admit from N (everything arrived at once) up to N + floor(N/60000 × T) (refill during the
 * burst). T is measured from before the first send to after the last reply, so the range holds
 * whatever the machine's speed; with a burst under 2 s it is exactly N.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from 'bun:test'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { Redis } from 'ioredis'
import { freePort, spawnServer, type ServerProcess } from '../benchmarks/fixtures/processes.ts'
import { periodOf } from '../plugins/quota/plan.ts'
import { roughPromptTokens } from '../src/lib/usage.ts'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { deleteTaggedKeys } from './support/redis-procs.ts'
import { createKey, createTeam, createUser, expectQuotaError, quotaConfig, QUOTA_ADMIN_KEY, withClients } from './support/quota.ts'
import {
  createTestPostgresDatabase,
  postgresUrlForTests,
  redisUrlForTests,
  uniqueTestName,
  type TestPostgresDatabase,
} from './support/services.ts'

// bun test's default is 5 s per test (bunfig cannot change it); these start servers and wait on real time.
setDefaultTimeout(20_000)

const postgresUrl = await postgresUrlForTests('test/quota.exactness.test.ts')
const redisUrl = await redisUrlForTests('test/quota.exactness.test.ts')
const ROOT = resolve(import.meta.dir, '..')
const INSTANCES = 3

describe.skipIf(postgresUrl === null || redisUrl === null)('exact limits across three gateway processes', () => {
  const tag = uniqueTestName('exact')
  let dir: string
  let database: TestPostgresDatabase
  let upstream: MockUpstream
  const servers: ServerProcess[] = []
  let gws: ReturnType<typeof withClients<{ url: string }>>[] = []

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-exact-'))
    database = await createTestPostgresDatabase(postgresUrl!, 'quota_exact')
    // A little latency keeps requests in flight together, as under real load.
    upstream = await startMockUpstream({ latencyMs: 20 })
    const configPath = join(dir, 'sluice.config.json')
    writeFileSync(configPath, JSON.stringify(quotaConfig(upstream.url, { quota: { hash_tag: tag } })))
    const env = {
      HOST: '127.0.0.1',
      DATABASE_URL: database.url,
      REDIS_URL: redisUrl!,
      SLUICE_ADMIN_KEY: QUOTA_ADMIN_KEY,
      SLUICE_CONFIG: configPath,
      LOG_LEVEL: 'warn',
    }
    const spawn = (i: number) => {
      const port = freePort()
      return spawnServer({ name: `gateway-${i}`, cmd: [process.execPath, 'run', 'src/main.ts'], cwd: ROOT, port, env: { ...env, PORT: String(port) }, logFile: join(dir, `gateway-${i}.log`), startTimeoutMs: 25_000 })
    }
    // The first one migrates the empty database; the others start together once it has.
    servers.push(await spawn(0))
    servers.push(...(await Promise.all(Array.from({ length: INSTANCES - 1 }, (_, i) => spawn(i + 1)))))
    gws = servers.map((s) => withClients({ url: s.origin }))
  }, 60_000)

  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()))
    await upstream?.stop()
    await database?.drop()
    if (redisUrl) await deleteTaggedKeys(redisUrl, tag)
    if (dir) rmSync(dir, { recursive: true, force: true })
  }, 30_000)

  /** Every instance has loaded the key (a first request each), so the burst measures admission, not cold caches. */
  const warm = async (key: string) => {
    for (const gw of gws) {
      const info = await gw.keyInfo(key)
      expect(info.id).toBeString()
    }
  }

  test('a key with rpm 30: 3 × 40 concurrent requests over three instances admit exactly what the bucket allows; the rest are 429 rate_limit_exceeded', async () => {
    const N = 30
    const PER_INSTANCE = 40
    const { id, key } = await createKey(gws[0]!, await createUser(gws[0]!), { limits: { rpm: N } })
    await warm(key)

    const t0 = performance.now()
    const responses = await Promise.all(gws.flatMap((gw) => Array.from({ length: PER_INSTANCE }, () => gw.chat(key, { max_tokens: 4 }))))
    const t1 = performance.now()
    const T = t1 - t0

    const statuses = responses.map((r) => r.status)
    const admitted = statuses.filter((s) => s === 200).length
    const refused = responses.filter((r) => r.status === 429)
    expect(admitted + refused.length).toBe(INSTANCES * PER_INSTANCE)
    for (const r of refused) expect(await expectQuotaError(r, 'rate_limit_exceeded')).toContain(`key ${id}`)
    await Promise.all(responses.filter((r) => r.status === 200).map((r) => r.arrayBuffer()))

    const lower = N
    const upper = N + Math.floor((N / 60_000) * T)
    console.log(`[exactness] rpm ${N}: ${admitted} admitted of ${INSTANCES * PER_INSTANCE} in ${T.toFixed(0)} ms (allowed ${lower}..${upper})`)
    expect(admitted).toBeGreaterThanOrEqual(lower)
    expect(admitted).toBeLessThanOrEqual(upper)
    // Every instance took part: refusals and admissions are not all from one process.
    expect(upstream.stats.requests).toBeGreaterThanOrEqual(admitted)
  })

  test("a team's token budget spent at once by several members' keys on different instances: reservations never exceed it, refusals are insufficient_quota", async () => {
    const B = 2000
    const MAX_TOKENS = 100
    const admin = gws[0]!
    const members = await Promise.all(Array.from({ length: 3 }, () => createUser(admin)))
    const team = await createTeam(admin, members, { budget: { tokens: B, period: 'day' } })
    const keys = await Promise.all(members.flatMap((m) => [createKey(admin, m, { team_id: team }), createKey(admin, m, { team_id: team })]))
    for (const k of keys) await warm(k.key)

    const body = { model: 'mock-gpt', messages: [{ role: 'user', content: 'hello' }], max_tokens: MAX_TOKENS }
    // What admission reserves per request (prompt estimate + max_tokens); the count is the gateway's own rough one.
    const reservation = roughPromptTokens(body) + MAX_TOKENS
    const periodLabel = periodOf('day', Date.now()).label
    // 6 keys × 3 instances × 5 requests = 90 requests, each asking for ~109 of 2000 tokens.
    const calls = keys.flatMap((k, i) => gws.flatMap((gw, j) => Array.from({ length: 5 }, () => gws[(i + j) % INSTANCES]!.chat(k.key, body))))
    const responses = await Promise.all(calls)
    const ok = responses.filter((r) => r.status === 200)
    const refused = responses.filter((r) => r.status !== 200)
    for (const r of refused) {
      const message = await expectQuotaError(r, 'insufficient_quota')
      expect(message).toContain(`team ${team}`)
    }
    const usages = await Promise.all(ok.map(async (r) => ((await r.json()) as { usage: { total_tokens: number } }).usage.total_tokens))
    const used = usages.reduce((a, b) => a + b, 0)
    const real = Math.max(...usages)
    console.log(`[exactness] team budget ${B}: ${ok.length} admitted of ${responses.length}, reservation ${reservation}, real ${real} each, ${used} used`)

    // Never more than the budget: what was admitted really used at most B.
    expect(used).toBeLessThanOrEqual(B)
    // And no request was refused while its reservation still fitted.
    expect(ok.length).toBeGreaterThanOrEqual(Math.floor(B / reservation))
    expect(ok.length).toBeLessThanOrEqual(Math.floor(B / Math.min(...usages)))

    // The counter in Redis ends at exactly the real usage (reservations settled), ≤ B.
    const client = new Redis(redisUrl!, { maxRetriesPerRequest: 1 })
    try {
      const counterKey = `{${tag}}:team:${team}:bt:${periodLabel}`
      let value = -1
      for (let i = 0; i < 100; i++) {
        value = Number(await client.get(counterKey))
        if (value === used) break
        await Bun.sleep(50)
      }
      expect(value).toBe(used)
      expect(value).toBeLessThanOrEqual(B)
    } finally {
      client.disconnect()
    }
  })
})
