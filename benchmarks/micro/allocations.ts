/**
 * What one request leaves for the garbage collector: the JavaScript objects of each type a
 * full-stack request allocates in the gateway (auth, tokens, quota, balance, logging), counted
 * with JSC's live-object counts between two collections while another process sends the
 * requests. Unlike a timing, a count does not move with other load on the machine, so a change
 * to the hot path shows here even where requests/s cannot tell it from noise.
 *
 *   bun run benchmarks/micro/allocations.ts [--requests 200] [--redis redis://127.0.0.1:6379]
 *
 * Quota uses Redis when it answers (as a deployment would), else counts in process (said so).
 * Each round collects garbage, counts, sends the requests, counts again; a round in which a
 * collection ran anyway (the total fell) is measured again.
 */
import { heapStats } from 'bun:jsc'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { loadConfig } from '../../src/config/load.ts'
import { createGateway } from '../../src/server.ts'
import { CHAT_BODY } from '../fixtures/bodies.ts'
import { MOCK_UPSTREAM_CLI } from '../fixtures/mock-upstream.ts'
import { freePort, spawnServer } from '../fixtures/processes.ts'
import { emitBenchJson, type MicroResult } from './lib/bench-json.ts'

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    requests: { type: 'string', default: '200' },
    redis: { type: 'string', default: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' },
  },
})
const REQUESTS = Number(values.requests)
const WARMUP = process.env.BENCH_QUICK === '1' ? 1000 : 3000
const ROUNDS = 3
/** Types shown, in this order; the rest are summed into "other". */
const SHOWN = ['Function', 'JSLexicalEnvironment', 'Promise', 'AsyncFunctionGenerator', 'Object', 'Array', 'string'] as const

async function redisAnswers(url: string): Promise<boolean> {
  const { RedisClient } = await import('bun')
  const client = new RedisClient(url, { connectionTimeout: 1000, autoReconnect: false })
  try {
    return (await client.send('PING', [])) === 'PONG'
  } catch {
    return false
  } finally {
    client.close()
  }
}

const dir = mkdtempSync(join(tmpdir(), 'sluice-alloc-'))
const mockPort = freePort()
let stopMock: (() => Promise<void>) | undefined
const notes: string[] = []
try {
  await spawnServer({ name: 'mock upstream', cmd: ['bun', 'run', MOCK_UPSTREAM_CLI, '--port', String(mockPort)], port: mockPort, logFile: join(dir, 'mock.log'), onSpawn: (stop) => (stopMock = stop) })
  const useRedis = await redisAnswers(values.redis)
  if (!useRedis) notes.push(`Redis at ${values.redis} did not answer: quota counted in process`)
  const configFile = join(dir, 'sluice.config.json')
  writeFileSync(
    configFile,
    JSON.stringify({
      environment: 'dev',
      providers: [{ id: 'up', type: 'openai-compatible', baseUrl: `http://127.0.0.1:${mockPort}/v1`, keys: [1, 2, 3, 4].map((n) => ({ id: `k${n}`, secret: `sk-upstream-${n}` })) }],
      models: [{ name: 'mock-gpt', targets: [{ provider: 'up', model: 'mock-gpt' }], pricing: { input: 2.5, output: 10 } }],
      // Its own hash tag: nothing of a shared Redis is touched.
      plugins: [{ use: 'auth', options: { demo_key: false } }, 'tokens', { use: 'quota', options: { hash_tag: `sluice-alloc-${process.pid}` } }, 'balance', 'logging'],
    }),
  )
  const port = freePort()
  const adminKey = 'sk-admin-allocations-benchmark'
  const env: Record<string, string | undefined> = {
    ...process.env,
    SLUICE_CONFIG: configFile,
    DATABASE_URL: `sqlite://${join(dir, 'gateway.db')}`,
    LOG_LEVEL: 'error',
    SLUICE_ADMIN_KEY: adminKey,
    SLUICE_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64'),
    REDIS_URL: useRedis ? values.redis : undefined,
  }
  const gateway = await createGateway(await loadConfig({ env }))
  const server = gateway.listen({ port, hostname: '127.0.0.1' })
  try {
    const admin = async (path: string, body: unknown) => {
      const res = await fetch(`http://127.0.0.1:${port}${path}`, { method: 'POST', headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
      if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`)
      return (await res.json()) as Record<string, string>
    }
    const user = await admin('/admin/users', { name: 'allocations' })
    const key = (await admin('/admin/keys', { user_id: user.id, limits: { rpm: 100_000_000, tpm: 10_000_000_000 }, budget: { tokens: 1e15, usd: 1e9, period: 'month' } })).key!

    // The load comes from another process, so only the gateway's objects are counted here.
    const loader = `
      const [url, key, n] = process.argv.slice(-3); const body = ${JSON.stringify(CHAT_BODY)}
      let ok = 0
      const one = () => fetch(url, { method: 'POST', headers: { authorization: 'Bearer ' + key, 'content-type': 'application/json' }, body })
        .then(async (r) => { const t = await r.text(); if (r.status === 200 && t.includes('"usage"')) ok++ })
      for (let i = 0; i < Number(n); i += 20) await Promise.all(Array.from({ length: Math.min(20, Number(n) - i) }, one))
      console.log(ok)`
    const send = async (n: number): Promise<number> => {
      const proc = Bun.spawn(['bun', '-e', loader, `http://127.0.0.1:${port}/v1/chat/completions`, key, String(n)], { stdout: 'pipe', stderr: 'inherit' })
      const [out] = await Promise.all([new Response(proc.stdout).text(), proc.exited])
      return Number(out.trim())
    }
    const warm = await send(WARMUP)
    if (warm !== WARMUP) throw new Error(`warm-up: ${warm} of ${WARMUP} requests got a completion with usage`)
    await Bun.sleep(300)

    const rounds: Record<string, number>[] = []
    for (let attempt = 0; rounds.length < ROUNDS && attempt < ROUNDS * 4; attempt++) {
      Bun.gc(true)
      await Bun.sleep(20)
      Bun.gc(true)
      const before = heapStats()
      const ok = await send(REQUESTS)
      // Completion hooks and batches of the last requests run just after their answers.
      await Bun.sleep(100)
      const after = heapStats()
      if (ok !== REQUESTS) throw new Error(`${ok} of ${REQUESTS} requests got a completion with usage`)
      const per: Record<string, number> = {}
      let total = 0
      for (const [type, count] of Object.entries(after.objectTypeCounts)) {
        const added = count - (before.objectTypeCounts[type] ?? 0)
        per[type] = added / REQUESTS
        total += added
      }
      // Fewer objects than before: a collection ran during the round, which is measured again.
      if (total < 0) continue
      per.total = total / REQUESTS
      rounds.push(per)
    }
    if (rounds.length === 0) throw new Error('a collection ran in every round: raise the heap or lower --requests')
    const median = (type: string) => {
      const xs = rounds.map((r) => r[type] ?? 0).sort((a, b) => a - b)
      return xs[Math.floor(xs.length / 2)]!
    }
    const results: MicroResult[] = [{ name: 'objects per request, all types', unit: 'objects/request', value: median('total') }]
    for (const type of SHOWN) results.push({ name: `objects per request: ${type}`, unit: 'objects/request', value: median(type) })
    console.log(`full stack (${useRedis ? 'quota on Redis' : 'quota in process'}), ${REQUESTS} requests per round, median of ${rounds.length} rounds:`)
    for (const r of results) console.log(`  ${r.name.padEnd(52)} ${r.value.toFixed(1).padStart(8)}`)
    emitBenchJson({
      bench: 'allocations',
      verified: [`every request of the warm-up and the rounds (${WARMUP} + ${rounds.length} × ${REQUESTS}) got a completion with usage`],
      results,
      targets: [],
      notes,
    })
  } finally {
    server.stop(true)
    await gateway.close()
  }
} finally {
  await stopMock?.()
  rmSync(dir, { recursive: true, force: true })
}
