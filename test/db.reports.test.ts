/**
 * Admin reports (/admin/usage, /admin/logs) scan a time range: on Postgres they run under a longer
 * statement timeout (REPORT_STATEMENT_TIMEOUT_MS, SET LOCAL in their own read-only transaction)
 * than the requests' (DATABASE_URL `?statement_timeout=`, 5 s by default), so a month's report on a
 * big table is not cut off as "the database did not answer in time, retry shortly". One that still
 * runs too long is a 503 that says to narrow it, without Retry-After. SQLite has no such bound.
 *
 * Needs Postgres: skipped with a printed line without it, a failure with CI set.
 */
import { SQL } from 'bun'
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { sql } from 'kysely'
import { createDatabase, REPORT_STATEMENT_TIMEOUT_MS, type DatabaseHandle } from '../src/db/index.ts'
import { migrateToLatest } from '../src/db/migrate.ts'
import { GatewayError } from '../src/errors.ts'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { startAuthGateway, type AuthGateway } from './support/auth.ts'
import { createTestPostgresDatabase, postgresUrlForTests, type TestPostgresDatabase } from './support/services.ts'

const postgresUrl = await postgresUrlForTests('test/db.reports.test.ts')

describe.skipIf(postgresUrl === null)('a report on Postgres', () => {
  let database: TestPostgresDatabase
  let handle: DatabaseHandle

  beforeAll(async () => {
    database = await createTestPostgresDatabase(postgresUrl!, 'db_reports')
    // Requests get 50 ms: far less than any report needs.
    handle = await createDatabase(`${database.url}?statement_timeout=50`)
    await migrateToLatest(handle.db)
  })
  afterAll(async () => {
    await handle?.close()
    await database?.drop()
  })

  test('runs under the report timeout, set for its transaction only', async () => {
    const show = sql<{ statement_timeout: string }>`show statement_timeout`
    expect((await handle.report((db) => show.execute(db))).rows[0]?.statement_timeout).toBe(`${REPORT_STATEMENT_TIMEOUT_MS / 60_000}min`)
    expect((await show.execute(handle.db)).rows[0]?.statement_timeout).toBe('50ms')
    // A statement longer than the requests' bound: a report finishes it, a request does not.
    const slow = sql`select pg_sleep(0.2)`
    await handle.report((db) => slow.execute(db))
    await expect(slow.execute(handle.db)).rejects.toMatchObject({ errno: '57014' })
    // A report is read-only.
    await expect(handle.report((db) => db.deleteFrom('request_logs').execute())).rejects.toThrow(/read-only transaction/)
  })

  test('one that runs past its timeout is a 503 saying to narrow it, without Retry-After', async () => {
    const failure = await handle
      .report(async (db) => {
        // Stands in for a report longer than the bound.
        await sql`set local statement_timeout = 100`.execute(db)
        await sql`select pg_sleep(2)`.execute(db)
      })
      .then(
        () => null,
        (error: unknown) => error,
      )
    expect(failure).toBeInstanceOf(GatewayError)
    const error = failure as GatewayError
    expect({ code: error.code, status: error.status, headers: error.headers }).toEqual({ code: 'not_ready', status: 503, headers: undefined })
    expect(error.message).toStartWith(`The report took longer than ${REPORT_STATEMENT_TIMEOUT_MS / 1000} s`)
    expect(error.message).toContain('Narrow it (a shorter time range with from and to')
  })
})

describe.skipIf(postgresUrl === null)('GET /admin/usage and /admin/logs on Postgres', () => {
  let upstream: MockUpstream
  let database: TestPostgresDatabase
  let gw: AuthGateway
  let locker: SQL

  beforeAll(async () => {
    upstream = await startMockUpstream()
    database = await createTestPostgresDatabase(postgresUrl!, 'db_reports_http')
    gw = await startAuthGateway(upstream.url, {
      env: { DATABASE_URL: `${database.url}?statement_timeout=200`, SLUICE_ENCRYPTION_KEY: Buffer.alloc(32, 5).toString('base64') },
      config: { plugins: [{ use: 'auth', options: { demo_key: false } }, 'logging'] },
    })
    locker = new SQL(database.url, { max: 1 })
  })
  afterAll(async () => {
    await locker?.close()
    await gw?.close()
    await upstream?.stop()
    await database?.drop()
  })

  test('a report slower than the requests\' statement timeout is answered', async () => {
    const reserved = await locker.reserve()
    try {
      // The table held for 0.6 s: longer than a request may wait (200 ms), far shorter than a report.
      await reserved`begin`
      await reserved`lock table request_logs in access exclusive mode`
      const release = Bun.sleep(600).then(() => reserved`rollback`)
      const [usage, logs] = await Promise.all([gw.admin('GET', '/admin/usage?group_by=day'), gw.admin('GET', '/admin/logs')])
      await release
      expect([usage.status, logs.status]).toEqual([200, 200])
      expect(await usage.json()).toMatchObject({ object: 'list', group_by: 'day', data: [] })
    } finally {
      reserved.release()
    }
  })
})
