/**
 * A request-log write that runs past write_timeout_ms on Postgres (its table locked by another
 * connection) is stopped by the database itself and rolled back: it does not land later, when
 * the lock goes. The sink answers such a write with its real outcome; and at shutdown every row
 * is counted once, as written or as dropped, and the rows in the table are exactly the written
 * ones, even after the lock is released. The sink alone, and a listening gateway with only the
 * logging plugin; each through the writer thread and through the gateway's own connection; on
 * a real Postgres database.
 */
import { SQL, type ReservedSQL } from 'bun'
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { createDatabase } from '../src/db/index.ts'
import { migrateToLatest } from '../src/db/migrate.ts'
import { requestLogSink } from '../plugins/logging/sink.ts'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { startGateway, upstreamConfig } from './support/gateway.ts'
import { logRow, loggingHooks } from './support/logging.ts'
import { createTestPostgresDatabase, postgresUrlForTests, type TestPostgresDatabase } from './support/services.ts'

const postgresUrl = await postgresUrlForTests('test/logging.write-timeout.test.ts')
const ROWS = 25

let upstream: MockUpstream
beforeAll(async () => {
  upstream = await startMockUpstream()
})
afterAll(() => upstream.stop())

/** Another session holding `LOCK TABLE request_logs IN ACCESS EXCLUSIVE MODE` until `release`. */
async function lockTable(url: string): Promise<{ release(): Promise<void>; close(): Promise<void> }> {
  const client = new SQL(url, { max: 1 })
  const session: ReservedSQL = await client.reserve()
  await session.unsafe('begin')
  await session.unsafe('lock table request_logs in access exclusive mode')
  let released = false
  const release = async () => {
    if (released) return
    released = true
    await session.unsafe('commit')
    session.release()
  }
  return {
    release,
    async close() {
      await release()
      await client.close()
    },
  }
}

async function storedIds(url: string): Promise<Set<string>> {
  const client = new SQL(url, { max: 1 })
  try {
    const rows: Array<{ id: string }> = await client`select id from request_logs`
    return new Set(rows.map((r) => r.id))
  } finally {
    await client.close()
  }
}

describe.skipIf(postgresUrl === null)('on Postgres', () => {
  let pg: TestPostgresDatabase
  beforeAll(async () => {
    pg = await createTestPostgresDatabase(postgresUrl!, 'logging_write_timeout')
    const handle = await createDatabase(pg.url)
    await migrateToLatest(handle.db)
    await handle.close()
  })
  afterAll(() => pg.drop())

  for (const thread of [true, false]) {
    test(`the sink ${thread ? 'through the writer thread' : "through the gateway's connection"}: a write that times out waiting for a lock answers only once the database stopped it, and it never lands; one the lock lets through in time is written`, async () => {
      const handle = await createDatabase(pg.url)
      const sink = requestLogSink(handle, { maxRowsPerStatement: 500, databaseUrl: pg.url, thread, writeTimeoutMs: 300 })
      expect(sink.mode).toBe(thread ? 'thread' : 'inline')
      const suffix = thread ? 'thread' : 'inline'
      try {
        // The thread has started and connected before the lock is taken.
        await sink.write([logRow(`req_warm_${suffix}`, new Date().toISOString())], AbortSignal.timeout(5000))

        const lock = await lockTable(pg.url)
        const outcome = await sink.write([logRow(`req_timed_out_${suffix}`, new Date().toISOString())], AbortSignal.timeout(300)).then(
          () => 'written',
          (error: unknown) => String(error),
        )
        expect(outcome).toContain('statement timeout')
        await lock.close()
        await Bun.sleep(500)
        expect((await storedIds(pg.url)).has(`req_timed_out_${suffix}`)).toBe(false)

        const brief = await lockTable(pg.url)
        const write = sink.write([logRow(`req_in_time_${suffix}`, new Date().toISOString())], AbortSignal.timeout(300))
        await Bun.sleep(100)
        await brief.close()
        await write
        expect((await storedIds(pg.url)).has(`req_in_time_${suffix}`)).toBe(true)
      } finally {
        await sink.close()
        await handle.close()
      }
    }, 20_000)

    test(`the gateway ${thread ? 'through the writer thread' : "through the gateway's connection"}: writes that time out under a table lock are rolled back, and at shutdown written + dropped = sent, with exactly the written rows stored after the lock is gone`, async () => {
      const before = await storedIds(pg.url)
      const tg = await startGateway(
        upstreamConfig(upstream.url, {
          plugins: [{ use: 'logging', options: { flush_ms: 10, batch_size: 10, write_timeout_ms: 300, retry_base_ms: 50, retry_max_ms: 200, close_timeout_ms: 1500, writer_thread: thread, log_requests: false } }],
        }),
        { env: { DATABASE_URL: pg.url } },
      )
      const lock = await lockTable(pg.url)
      const ids: string[] = []
      let closed = false
      try {
        for (let i = 0; i < ROWS; i++) {
          const res = await fetch(`${tg.url}/v1/chat/completions`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ model: 'mock-gpt', messages: [{ role: 'user', content: `row ${i}` }] }),
          })
          expect(res.status).toBe(200)
          ids.push(res.headers.get('x-request-id')!)
          await res.arrayBuffer()
        }
        // Several writes time out against the lock (300 ms each) before the shutdown starts.
        await Bun.sleep(900)
        const hooks = loggingHooks(tg.gateway)
        expect(hooks.stats().write_errors).toBeGreaterThan(0)
        await tg.close()
        closed = true
        const stats = hooks.stats()
        expect(stats.written + stats.dropped).toBe(ROWS)
        expect(stats.dropped).toBeGreaterThan(0)
        // Nothing the writer gave up on is still waiting for the lock: once it goes, no row lands.
        await lock.release()
        await Bun.sleep(700)
        const stored = [...(await storedIds(pg.url))].filter((id) => !before.has(id))
        expect(stored.length).toBe(stats.written)
        expect(stored.every((id) => ids.includes(id))).toBe(true)
      } finally {
        if (!closed) await tg.close()
        await lock.close()
      }
    }, 20_000)
  }
})
