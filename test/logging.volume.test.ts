/**
 * Every call recorded, nothing lost, nothing slowed: 20,000 requests (one in ten streamed)
 * from 50 concurrent clients through a listening gateway with only the logging plugin, and
 * exactly 20,000 request_logs rows afterwards, whose token totals equal what the mock
 * upstream itself counted as served. On SQLite and on Postgres, and again with the database
 * unavailable for ten seconds in the middle of the run:
 *
 * - Postgres: a private server (test/support/postgres-instance.ts) is stopped (fast shutdown:
 *   connections cut, new ones refused) and started again ten seconds later;
 * - SQLite, which has no server to stop: another connection holds the database's write lock
 *   (`BEGIN EXCLUSIVE`, as another process would) for ten seconds, so every write fails.
 *
 * During the outage requests keep coming (paced, so they span it) and must all succeed.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { startGateway, upstreamConfig } from './support/gateway.ts'
import { waitFor } from './support/http.ts'
import { lockSqlite, loggingHooks, waitForRows } from './support/logging.ts'
import { sampleValue, scrape } from './support/metrics.ts'
import { startPostgresInstance, type PostgresInstance } from './support/postgres-instance.ts'
import { createTestPostgresDatabase, postgresUrlForTests, type TestPostgresDatabase } from './support/services.ts'

const TOTAL = 20_000
const CONCURRENCY = 50
const OUTAGE_MS = 10_000
/** Requests before the outage, during it (paced to span it), and after it. */
const PHASES = [7_000, 6_000, 7_000] as const

const postgresUrl = await postgresUrlForTests('test/logging.volume.test.ts')
const ownPostgres = postgresUrl === null ? null : await startPostgresInstance('test/logging.volume.test.ts')

const chat = JSON.stringify({ model: 'mock-gpt', messages: [{ role: 'user', content: 'hello there, how are you today?' }], max_tokens: 12 })
const stream = JSON.stringify({ model: 'mock-gpt', messages: [{ role: 'user', content: 'hello there, how are you today?' }], max_tokens: 12, stream: true })

let upstream: MockUpstream
const dir = mkdtempSync(join(tmpdir(), 'sluice-volume-'))
beforeAll(async () => {
  upstream = await startMockUpstream()
})
afterAll(async () => {
  await upstream.stop()
  await ownPostgres?.destroy()
  rmSync(dir, { recursive: true, force: true })
})

let sent = 0
/** The first few failures, for the message when there are any. */
const problems: string[] = []
/**
 * `count` requests from CONCURRENCY clients; with `rate`, request i is not sent before
 * start + i/rate. Returns how many did not answer 200 and how long it took.
 */
async function load(url: string, count: number, rate?: number): Promise<{ failures: number; ms: number }> {
  const started = performance.now()
  let next = 0
  let failures = 0
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (;;) {
        const i = next++
        if (i >= count) return
        if (rate) {
          const due = started + (i / rate) * 1000
          const wait = due - performance.now()
          if (wait > 0) await Bun.sleep(wait)
        }
        const n = sent++
        try {
          const res = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: n % 10 === 0 ? stream : chat })
          const text = await res.text()
          if (res.status !== 200) {
            failures++
            if (problems.length < 5) problems.push(`HTTP ${res.status}: ${text.slice(0, 200)}`)
          }
        } catch (error) {
          failures++
          if (problems.length < 5) problems.push(String(error))
        }
      }
    }),
  )
  return { failures, ms: performance.now() - started }
}

interface Outage {
  begin(): void | Promise<void>
  end(): void | Promise<void>
}

/** Run the 20,000 requests (with the outage in the middle when given) and check every row arrived. */
async function run(label: string, databaseUrl: string, outage?: Outage): Promise<void> {
  upstream.reset()
  sent = 0
  const tg = await startGateway(upstreamConfig(upstream.url, { plugins: ['logging'] }), { env: { DATABASE_URL: databaseUrl } })
  const db = tg.gateway.services.db.db
  const started = performance.now()
  const times: string[] = []
  try {
    let failures = 0
    if (!outage) {
      const r = await load(tg.url, TOTAL)
      failures += r.failures
      times.push(`${TOTAL} requests ${Math.round(r.ms)} ms (${Math.round(TOTAL / (r.ms / 1000))} req/s)`)
    } else {
      const a = await load(tg.url, PHASES[0])
      await outage.begin()
      const down = performance.now()
      // Paced so the requests span the outage: the database is away while they are answered.
      const b = await load(tg.url, PHASES[1], PHASES[1] / ((OUTAGE_MS - 500) / 1000))
      const m = await scrape(tg.url)
      const queued = sampleValue(m, 'sluice_request_log_queue_depth')!
      const errors = sampleValue(m, 'sluice_request_log_write_errors_total')!
      await Bun.sleep(Math.max(0, OUTAGE_MS - (performance.now() - down)))
      await outage.end()
      const c = await load(tg.url, PHASES[2])
      failures += a.failures + b.failures + c.failures
      times.push(`before ${Math.round(a.ms)} ms (${Math.round(PHASES[0] / (a.ms / 1000))} req/s)`, `during the ${OUTAGE_MS / 1000} s outage ${Math.round(b.ms)} ms paced, ${queued} rows queued at its end, ${errors} failed writes`, `after ${Math.round(c.ms)} ms`)
      // The outage was real: writes failed and rows waited.
      expect(errors).toBeGreaterThan(0)
      expect(queued).toBeGreaterThan(PHASES[1] / 2)
    }
    expect({ failures, problems }).toEqual({ failures: 0, problems: [] })
    expect(sent).toBe(TOTAL)
    const drainStart = performance.now()
    await waitForRows(db, TOTAL, 30_000)
    times.push(`rows complete ${Math.round(performance.now() - drainStart)} ms after the last answer`)
    const totals = await db
      .selectFrom('request_logs')
      .select([(eb) => eb.fn.countAll<number>().as('rows'), (eb) => eb.fn.sum<number>('prompt_tokens').as('prompt'), (eb) => eb.fn.sum<number>('completion_tokens').as('completion'), (eb) => eb.fn.sum<number>('streamed').as('streamed')])
      .where('status', '=', 200)
      .executeTakeFirstOrThrow()
    expect({ rows: Number(totals.rows), prompt: Number(totals.prompt), completion: Number(totals.completion), streamed: Number(totals.streamed) }).toEqual({
      rows: TOTAL,
      prompt: upstream.stats.promptTokens,
      completion: upstream.stats.completionTokens,
      streamed: TOTAL / 10,
    })
    expect(upstream.stats.requests).toBe(TOTAL)
    // The rows are in the database before the writer thread's word of them reaches the queue.
    await waitFor(() => loggingHooks(tg.gateway).stats().queued === 0, 'the queue to empty')
    const m = await scrape(tg.url)
    expect(sampleValue(m, 'sluice_request_log_dropped_total', { reason: 'queue_full' })).toBe(0)
    expect(sampleValue(m, 'sluice_request_log_queue_depth')).toBe(0)
    expect(loggingHooks(tg.gateway).stats()).toMatchObject({ queued: 0, written: TOTAL, dropped: 0 })
  } finally {
    await tg.close()
    console.log(`[volume] ${label}: ${times.join('; ')}; total ${Math.round((performance.now() - started) / 1000)} s`)
  }
}

describe('20,000 requests, 20,000 rows', () => {
  test('SQLite', () => run('SQLite', `sqlite://${join(dir, 'plain.db')}`), 60_000)

  test('SQLite, with its write lock held elsewhere for 10 s mid-run', async () => {
    const file = join(dir, 'outage.db')
    let lock: { release(): void } | undefined
    await run('SQLite with outage', `sqlite://${file}`, {
      begin: () => {
        lock = lockSqlite(file)
      },
      end: () => lock?.release(),
    })
  }, 60_000)

  describe.skipIf(postgresUrl === null)('Postgres', () => {
    let pg: TestPostgresDatabase
    beforeAll(async () => {
      pg = await createTestPostgresDatabase(postgresUrl!, 'logging_volume')
    })
    afterAll(() => pg.drop())
    test('Postgres', () => run('Postgres', pg.url), 60_000)
  })

  describe.skipIf(ownPostgres === null)('Postgres outage', () => {
    test('Postgres, with the server stopped for 10 s mid-run', async () => {
      const instance = ownPostgres as PostgresInstance
      await run('Postgres with outage', instance.url, { begin: () => instance.stop(), end: () => instance.start() })
    }, 60_000)
  })
})
