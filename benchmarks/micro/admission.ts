/**
 * Quota admission: how many admissions per second one process gets from the RedisStore (one
 * Lua script per admission, auto-pipelined, over 2 connections as the plugin opens them, and
 * over 1 for comparison) with 50 callers in flight, against the MemoryStore
 * and against a baseline of bare Redis round trips (PING, and EVALSHA of a script that does
 * nothing) at the same concurrency. Correctness is checked first: a known limit admits
 * exactly that many. Target: ≥ 50 000 admissions/s from one process. Then the latency side:
 * the median round trip of one admission at a time, back to back and 2 ms apart (as at a fixed
 * 500 req/s), next to a PING's.
 *
 *   bun run benchmarks/micro/admission.ts [--seconds 3] [--concurrency 50] [--redis redis://127.0.0.1:6379]
 */
import { parseArgs } from 'node:util'
import { bench, do_not_optimize, run, summary } from 'mitata'
import { Redis } from 'ioredis'
import { PlanCache, planItems, withCosts, type Item, type Subjects } from '../../plugins/quota/plan.ts'
import { RedisStore } from '../../plugins/quota/redis-store.ts'
import { IoredisConnection, NativeConnection } from '../../plugins/quota/connection.ts'
import { MemoryStore, type QuotaStore } from '../../plugins/quota/store.ts'
import { emitBenchJson, fromMitata, target, type MicroResult, type MicroTarget } from './lib/bench-json.ts'

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    seconds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '50' },
    redis: { type: 'string', default: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' },
  },
})
const SECONDS = Number(values.seconds)
const CONCURRENCY = Number(values.concurrency)
const TAG = `sluice-bench-${Date.now().toString(36)}`
const SUBJECTS = 1000

/** A request's subjects: key rpm + tpm, user rpm, team token budget. */
function subjectsFor(i: number, limits = { rpm: 1_000_000_000, tpm: 10_000_000_000 }): Subjects {
  const n = i % SUBJECTS
  return {
    key: { id: `key_${n}`, limits: { rpm: limits.rpm, tpm: limits.tpm }, budget: null },
    user: { id: `usr_${n}`, limits: { rpm: limits.rpm }, budget: null },
    team: { id: `team_${n % 10}`, limits: null, budget: { tokens: 1_000_000_000_000, period: 'day' } },
  }
}
const PLAN_OPTIONS = { tag: TAG, leaseMs: 600_000 }
const plans = new PlanCache(PLAN_OPTIONS)
/** A request's items as the plugin makes them: planned once per identity, costs put in per request. */
const requestItems = (i: number): Item[] => withCosts(plans.template({}, () => subjectsFor(i), Date.now())!, { tokens: 300, microUsd: 0 })
// Plans are made once: the benchmark measures the store, not planItems.
const PLANS = Array.from({ length: SUBJECTS }, (_, i) => requestItems(i))

/** Closed loop: `concurrency` callers, each starting its next call when the last returns, for `seconds`. */
async function closedLoop(call: (i: number) => Promise<unknown>, seconds: number, concurrency: number): Promise<{ perSecond: number; done: number }> {
  let done = 0
  let next = 0
  const deadline = performance.now() + seconds * 1000
  const started = performance.now()
  const worker = async () => {
    while (performance.now() < deadline) {
      await call(next++)
      done++
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  const elapsed = (performance.now() - started) / 1000
  return { perSecond: done / elapsed, done }
}

/** A known limit admits exactly that many, even with all attempts in flight at once. */
async function verify(store: QuotaStore, label: string): Promise<void> {
  const LIMIT = 500
  // 500 per hour, expressed per minute as the plugin does: refill during the check is < 1.
  const items: Item[] = [
    { kind: 'bucket', scope: 'key', id: 'v', measure: 'requests', key: `{${TAG}}:verify:${label}:rpm`, limit: LIMIT, rate: LIMIT / 3_600_000, cost: 1, until: null },
    { kind: 'counter', scope: 'team', id: 'v', measure: 'budget_tokens', key: `{${TAG}}:verify:${label}:bt`, limit: 1_000_000, rate: 0, cost: 10, until: Date.now() + 3_600_000 },
  ]
  const outcomes = await Promise.all(Array.from({ length: LIMIT * 3 }, (_, i) => store.admit(items, `req_v${i}`, Date.now())))
  const admitted = outcomes.filter((o) => o.ok).length
  const [left, budget] = await store.peek(items, Date.now())
  if (admitted !== LIMIT) throw new Error(`${label}: a limit of ${LIMIT} admitted ${admitted}`)
  if (Math.floor(left!) !== 0 || budget !== 1_000_000 - LIMIT * 10) throw new Error(`${label}: after the check, left ${left} and budget ${budget}`)
  if (outcomes.some((o) => !o.ok && o.failed !== 0)) throw new Error(`${label}: a refusal blamed the wrong item`)
  console.log(`verified ${label}: limit ${LIMIT}, ${LIMIT * 3} concurrent attempts, ${admitted} admitted, the budget charged exactly ${LIMIT} × 10`)
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US')

const memory = new MemoryStore()
await verify(memory, 'memory')

// Connections as the plugin opens them (fail fast, auto-pipelined); the store uses `redis_connections` of them.
const connect = () => new Redis(values.redis, { enableAutoPipelining: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, lazyConnect: true })
const client = connect()
const second = connect()
let redisStore: RedisStore | null = null
let oneConnection: RedisStore | null = null
let ioredisStore: RedisStore | null = null
try {
  await client.connect()
  await second.connect()
  // As the plugin opens them on a single node: two native connections. The ioredis store is what a Cluster gets.
  const natives = [new NativeConnection(values.redis, 1000), new NativeConnection(values.redis, 1000)]
  await Promise.all(natives.map((c) => c.whenConnected(2000)))
  redisStore = new RedisStore(natives)
  oneConnection = new RedisStore(new NativeConnection(values.redis, 1000))
  ioredisStore = new RedisStore([new IoredisConnection(client), new IoredisConnection(second)])
  await verify(redisStore, 'redis')
} catch (error) {
  console.warn(`Redis at ${values.redis} is not usable (${error instanceof Error ? error.message : String(error)}): measuring the MemoryStore only`)
  client.disconnect()
  second.disconnect()
}

console.log(`\nclosed loop, ${CONCURRENCY} callers in flight, ${SECONDS} s each; a request = ${PLANS[0]!.length} items (key rpm + tpm, user rpm, team day budget), ${SUBJECTS} keys`)
const rows: [string, number, number][] = []
/** CPU per call of the rows that ask for it: this process's, and Redis' own (INFO cpu, so a remote Redis counts too). */
const cpuRows: { name: string; clientUs: number; redisUs: number }[] = []
/** Median round trips of single calls (see `paced`). */
const latencyRows: { name: string; us: number }[] = []
const PACED_CALLS = 500
const redisCpuSeconds = async (): Promise<number> => {
  const info = await client.info('cpu')
  const field = (name: string) => Number(new RegExp(`${name}:([0-9.]+)`).exec(info)?.[1] ?? 0)
  return field('used_cpu_sys') + field('used_cpu_user')
}
const measure = async (name: string, call: (i: number) => Promise<unknown>, cpu = false) => {
  // A short warm-up: JIT, script cache, connection.
  await closedLoop(call, 0.3, CONCURRENCY)
  const redisBefore = cpu ? await redisCpuSeconds() : 0
  const clientBefore = process.cpuUsage()
  const r = await closedLoop(call, SECONDS, CONCURRENCY)
  rows.push([name, r.perSecond, r.done])
  let extra = ''
  if (cpu) {
    const used = process.cpuUsage(clientBefore)
    const clientUs = (used.user + used.system) / r.done
    const redisUs = ((await redisCpuSeconds()) - redisBefore) * 1e6 / r.done
    cpuRows.push({ name, clientUs, redisUs })
    extra = `   CPU per call: this process ${clientUs.toFixed(1)} µs, Redis ${redisUs.toFixed(1)} µs`
  }
  console.log(`  ${name.padEnd(44)} ${fmt(r.perSecond).padStart(12)} /s${extra}`)
}

await measure('MemoryStore.admit', (i) => memory.admit(PLANS[i % SUBJECTS]!, 'req', Date.now()))
if (redisStore) {
  const store = redisStore
  const NOOP = 'return 1'
  const noopSha = String(await client.script('LOAD', NOOP))
  await measure('baseline: PING', () => client.ping())
  await measure('baseline: EVALSHA of `return 1`', () => client.evalsha(noopSha, 0))
  const single = oneConnection!
  await measure('RedisStore.admit, 1 connection', (i) => single.admit(PLANS[i % SUBJECTS]!, `req_${i}`, Date.now()))
  await measure('RedisStore.admit', (i) => store.admit(PLANS[i % SUBJECTS]!, `req_${i}`, Date.now()), true)
  const overIoredis = ioredisStore!
  await measure('RedisStore.admit over ioredis (Cluster path)', (i) => overIoredis.admit(PLANS[i % SUBJECTS]!, `req_${i}`, Date.now()), true)
  // As the plugin does it: the request waits for its admission, never for its settlement (which
  // waits up to 5 ms for the next admission's script call to ride in; awaiting it here would
  // measure that wait).
  const refund = PLANS[0]!.map(() => -100)
  await measure('RedisStore.admit + settle (a whole request)', async (i) => {
    const items = PLANS[i % SUBJECTS]!
    await store.admit(items, `req_${i}`, Date.now())
    store.settle(items, refund, `req_${i}`, Date.now()).catch((error: unknown) => console.error('settle failed', error))
  }, true)

  // What one admission adds to a request's latency when nothing else is in flight, as at the
  // suite's fixed 500 req/s: calls one at a time, back to back and then 2 ms apart. Apart, each
  // call wakes a sleeping Redis and finds caches cold (a PING slows down too): the floor under
  // the "added p50" target.
  console.log(`\none call at a time (${PACED_CALLS} calls): median round trip`)
  const paced = async (name: string, gapMs: number, call: (i: number) => Promise<unknown>) => {
    for (let i = 0; i < 50; i++) await call(i)
    const took = new Float64Array(PACED_CALLS)
    for (let i = 0; i < PACED_CALLS; i++) {
      const t = performance.now()
      await call(i)
      took[i] = (performance.now() - t) * 1000
      if (gapMs > 0) await Bun.sleep(gapMs)
    }
    took.sort()
    const p50 = took[PACED_CALLS >> 1]!
    const label = `${name}, ${gapMs === 0 ? 'back to back' : `${gapMs} ms apart`}`
    latencyRows.push({ name: `${label}: median round trip`, us: p50 })
    console.log(`  ${label.padEnd(44)} ${p50.toFixed(0).padStart(9)} µs`)
  }
  for (const gap of [0, 2]) {
    await paced('baseline: PING', gap, () => client.ping())
    await paced('RedisStore.admit', gap, (i) => store.admit(PLANS[i % SUBJECTS]!, `req_p${i}`, Date.now()))
  }
}

// Per-call cost in process, with mitata (the sync core the MemoryStore's promise wraps).
let k = 0
summary(() => {
  bench('MemoryStore.admitSync (4 items)', () => {
    do_not_optimize(memory.admitSync(PLANS[k++ % SUBJECTS]!, 'req', Date.now()))
  })
  bench('planItems (key + user + team)', () => {
    do_not_optimize(planItems(subjectsFor(k++), { tokens: 300, microUsd: 0 }, Date.now(), PLAN_OPTIONS))
  })
})
const mitataResult = await run()

const admit = rows.find(([n]) => n === 'RedisStore.admit')
if (admit) {
  const verdict = admit[1] >= 50_000 ? 'meets' : 'is below'
  console.log(`\nRedisStore.admit (2 connections, as the plugin): ${fmt(admit[1])} admissions/s with ${CONCURRENCY} in flight: ${verdict} the 50,000/s target`)
}

if (redisStore) {
  // Leave nothing behind in a shared Redis.
  let cursor = '0'
  do {
    const [nextCursor, keys] = await client.scan(cursor, 'MATCH', `{${TAG}}*`, 'COUNT', 5000)
    cursor = nextCursor
    if (keys.length) await client.del(...keys)
  } while (cursor !== '0')
  client.disconnect()
  second.disconnect()
  await redisStore.close()
  await oneConnection?.close()
}

// The machine-readable summary for `bun run bench` (benchmarks/suite/micro.ts): the closed-loop rates and mitata's per-call times.
const rates: MicroResult[] = rows.map(([name, perSecond]) => ({ name, unit: 'ops/s', value: perSecond }))
for (const row of latencyRows) rates.push({ name: row.name, unit: 'µs/op', value: row.us })
for (const row of cpuRows) {
  rates.push({ name: `${row.name}: CPU of this process per call`, unit: 'µs/op', value: row.clientUs })
  rates.push({ name: `${row.name}: CPU of Redis per call`, unit: 'µs/op', value: row.redisUs })
}
const targets: MicroTarget[] = admit ? [target('RedisStore.admit, 2 connections, 50 in flight', admit[1], 'ops/s', '>=', 50_000)] : []
emitBenchJson({
  bench: 'admission',
  verified: [
    'MemoryStore: a limit of 500 admits exactly 500 of 1,500 concurrent attempts, budget charged exactly',
    ...(redisStore ? ['RedisStore: a limit of 500 admits exactly 500 of 1,500 concurrent attempts, budget charged exactly'] : ['RedisStore not measured: Redis unreachable']),
  ],
  results: [...rates, ...fromMitata(mitataResult)],
  targets,
})
