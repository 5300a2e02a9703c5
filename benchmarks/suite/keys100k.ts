/**
 * Memory with a big key table: 100,000 keys inserted straight into a bench Postgres database
 * (Kysely, hashes from plugins/auth/key-format.ts mintKey, generous limits), then the full-stack
 * gateway under load from 10,000 distinct keys in turn, so its key cache fills and is used.
 * Reports RSS after boot, the peak while the cache fills (the first pass reads every key from
 * the database) and the peak under measured load, against the target of 150 MB: once per memory
 * profile (src/lib/memory.ts), each a fresh gateway process on the same database.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { mintKey } from '../../plugins/auth/key-format.ts'
import { createDatabase } from '../../src/db/index.ts'
import { migrateToLatest } from '../../src/db/migrate.ts'
import { CHAT_BODY } from '../fixtures/bodies.ts'
import { spread, type Spread } from '../http/stats.ts'
import { checkUnauth } from './checks.ts'
import { FULL_STACK, unknownKey } from './http.ts'
import { measure, sampleRssAll, type LoadTarget, type Sample, type Scenario } from './load.ts'
import type { SuiteOptions } from './options.ts'
import { GENEROUS, createBenchDatabase, startGateway, type Stack } from './services.ts'
import { rssKib } from '../http/proc.ts'
import type { MemoryProfile } from '../../src/lib/memory.ts'

const BATCH = 1000

/** Sends one chat request per key, `concurrency` in flight; counts the completions. */
async function everyKeyOnce(url: string, keys: readonly string[], concurrency: number): Promise<{ ok: number; other: number; perSecond: number }> {
  let next = 0
  let ok = 0
  let other = 0
  const started = performance.now()
  const worker = async (): Promise<void> => {
    while (next < keys.length) {
      const key = keys[next++]!
      try {
        const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: CHAT_BODY })
        const text = await res.text()
        if (res.status === 200 && text.includes('"chat.completion"')) ok++
        else other++
      } catch {
        other++
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return { ok, other, perSecond: keys.length / ((performance.now() - started) / 1000) }
}

export interface Keys100kResult {
  keys: number
  spread: number
  insertS: number
  /** One gateway per memory profile, in the order run. */
  runs: Keys100kRun[]
  verified: string[]
}

/** One gateway process under one memory profile. */
export interface Keys100kRun {
  memory: MemoryProfile
  rssAfterBootMb: number
  /** Peak during the first pass over the spread (every key read from the database once). */
  rssFillPeakMb: number
  /** Requests per second of that first pass (32 in flight): the uncached key path. */
  fillPerSecond: number
  /** Peak during the measured rounds (fixed concurrency) and the fixed-rate run. */
  rssLoadPeakMb: number
  rssAfterMb: number
  samples: Sample[]
  rps: Spread
  p50Ms: Spread
  rate: Sample | null
}

interface Keys100kContext {
  mockOrigin: string
  redisUrl: string
  redisPid: number | null
  adminKey: string
  dbName: string
}

export async function runKeys100k(o: SuiteOptions, stack: Stack, ctx: Keys100kContext): Promise<Keys100kResult> {
  const log = stack.log
  const verified: string[] = []
  const databaseUrl = await createBenchDatabase(stack, o.postgresUrl, ctx.dbName)

  // Insert the keys directly: the admin API would take minutes for 100,000 and is not what is measured.
  const started = performance.now()
  const handle = await createDatabase(databaseUrl)
  const plaintexts: string[] = []
  const every = Math.max(1, Math.floor(o.keyCount / o.keySpread))
  try {
    await migrateToLatest(handle.db)
    const at = new Date().toISOString()
    await handle.db
      .insertInto('users')
      .values({ id: 'usr_bench100k', email: null, name: 'bench 100k', disabled_at: null, deleted_at: null, limits: null, budget: null, metadata: null, created_at: at, updated_at: at })
      .execute()
    const limits = JSON.stringify(GENEROUS.limits)
    const budget = JSON.stringify(GENEROUS.budget)
    for (let base = 0; base < o.keyCount; base += BATCH) {
      const rows = []
      for (let i = base; i < Math.min(o.keyCount, base + BATCH); i++) {
        const minted = mintKey('dev')
        // Spread the keys the load uses over the whole table.
        if (i % every === 0 && plaintexts.length < o.keySpread) plaintexts.push(minted.plaintext)
        rows.push({
          id: `key_bench${i.toString(36).padStart(5, '0')}`,
          hash: minted.hash,
          start: minted.start,
          end: minted.end,
          environment: 'dev',
          user_id: 'usr_bench100k',
          team_id: null,
          name: null,
          models: null,
          scopes: null,
          limits,
          budget,
          status: 'active' as const,
          expires_at: null,
          created_at: at,
          updated_at: at,
          last_used_at: null,
          revoked_at: null,
          revoked_reason: null,
          rotated_from: null,
          rotated_to: null,
          grace_until: null,
          metadata: null,
        })
      }
      await handle.db.insertInto('api_keys').values(rows).execute()
    }
    const counted = await handle.db.selectFrom('api_keys').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()
    if (Number(counted.n) !== o.keyCount) throw new Error(`inserted ${counted.n} keys, expected ${o.keyCount}`)
  } finally {
    await handle.close()
  }
  const insertS = (performance.now() - started) / 1000
  verified.push(`${o.keyCount.toLocaleString('en-US')} keys in the database (counted after insert, ${insertS.toFixed(1)} s)`)
  log(`keys100k: ${o.keyCount.toLocaleString('en-US')} keys inserted in ${insertS.toFixed(1)} s; the load uses ${plaintexts.length.toLocaleString('en-US')} of them`)

  const keysFile = join(stack.tmp, 'keys100k.txt')
  writeFileSync(keysFile, `${plaintexts.join('\n')}\n`)
  const bodyFile = join(stack.tmp, 'keys100k-chat.json')
  writeFileSync(bodyFile, CHAT_BODY)

  const runs: Keys100kRun[] = []
  for (const memory of o.keysMemory) {
    runs.push(await measureProfile(o, stack, ctx, { memory, databaseUrl, plaintexts, keysFile, bodyFile, verified }))
  }
  return { keys: o.keyCount, spread: plaintexts.length, insertS, runs, verified }
}

/** One gateway under `memory` on the filled database: boot, the first (uncached) pass, the rounds, the fixed rate; stopped after. */
async function measureProfile(
  o: SuiteOptions,
  stack: Stack,
  ctx: Keys100kContext,
  run: { memory: MemoryProfile; databaseUrl: string; plaintexts: string[]; keysFile: string; bodyFile: string; verified: string[] },
): Promise<Keys100kRun> {
  const { memory, databaseUrl, plaintexts, keysFile, bodyFile } = run
  const log = (line: string) => stack.log(line.replace('keys100k', `keys100k (${memory})`))
  const verified: string[] = []
  const server = await startGateway(stack, { name: `keys100k-${memory}`, plugins: [...FULL_STACK], redisUrl: ctx.redisUrl, databaseUrl, memory }, ctx.mockOrigin, ctx.adminKey)
  await Bun.sleep(500)
  const rssAfterBootMb = rssKib(server.pid) / 1024
  const url = `${server.origin}/v1/chat/completions`

  // Correctness first: keys from the start, middle and end of the spread are admitted; an unknown one is not.
  for (const key of [plaintexts[0]!, plaintexts[Math.floor(plaintexts.length / 2)]!, plaintexts.at(-1)!]) {
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: CHAT_BODY })
    const text = await res.text()
    if (res.status !== 200 || !text.includes('"chat.completion"')) throw new Error(`keys100k: a stored key got ${res.status}: ${text.slice(0, 300)}`)
  }
  verified.push('three stored keys (start, middle, end of the spread) get completions')
  verified.push(await checkUnauth('keys100k gateway', url, CHAT_BODY, unknownKey()))

  const target: LoadTarget = { id: `keys100k-${memory}`, label: `sluice full stack, 100k keys, SLUICE_MEMORY=${memory}`, url, pids: [server.pid] }
  const scenario: Scenario = { id: 'chat', label: 'chat', bodyFile, stream: false, expectStatus: 200 }
  const credentials = { keysFile }
  const settings = { durationS: o.durationS, connections: o.connections, threads: o.threads, rate: o.rate }

  // The first pass: every key of the spread once, so each is read from the database and cached.
  const fill = sampleRssAll([server.pid])
  const pass = await everyKeyOnce(url, plaintexts, 32)
  const rssFillPeakMb = fill.stop().totalKib / 1024
  if (pass.ok !== plaintexts.length) throw new Error(`keys100k: the first pass over ${plaintexts.length} keys got ${pass.ok} completions (${pass.other} other answers)`)
  verified.push(`every one of the ${plaintexts.length.toLocaleString('en-US')} keys of the spread got a completion on its first (uncached) use`)
  log(`keys100k: first pass, each key once (uncached): ${pass.perSecond.toFixed(0)} req/s, peak RSS ${rssFillPeakMb.toFixed(0)} MB`)

  const load = sampleRssAll([server.pid])
  const samples: Sample[] = []
  for (let round = 1; round <= o.rounds; round++) {
    const s = await measure(target, scenario, 'concurrency', round, credentials, settings)
    samples.push(s)
    log(`keys100k r${round}: ${Math.round(s.rps).toLocaleString('en-US')} req/s over ${plaintexts.length.toLocaleString('en-US')} keys, p50 ${s.p50Ms.toFixed(2)} ms, peak ${Math.round(s.peakRssMb)} MB` + (s.wrong + s.errors > 0 ? `, ${s.wrong} wrong, ${s.errors} errors` : ''))
    await Bun.sleep(300)
  }
  const rate = await measure(target, scenario, 'rate', 1, credentials, settings)
  log(`keys100k at ${o.rate} req/s: p50 ${rate.p50Ms.toFixed(2)} ms, p99 ${rate.p99Ms.toFixed(2)} ms, peak ${Math.round(rate.peakRssMb)} MB`)
  const rssLoadPeakMb = load.stop().totalKib / 1024
  const rssAfterMb = rssKib(server.pid) / 1024
  await server.stop()
  for (const v of verified) run.verified.push(`${memory}: ${v}`)
  return {
    memory,
    rssAfterBootMb,
    rssFillPeakMb,
    fillPerSecond: pass.perSecond,
    rssLoadPeakMb,
    rssAfterMb,
    samples,
    rps: spread(samples.map((s) => s.rps)),
    p50Ms: spread(samples.map((s) => s.p50Ms)),
    rate,
  }
}
