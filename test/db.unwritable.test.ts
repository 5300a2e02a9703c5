/**
 * The gateway's database taking no writes for now: a SQLite file whose disk is full or that turned
 * read-only, a Postgres whose disk is full or that is read-only (a standby after a failover, a
 * database set read-only). A write it cannot take is answered 503 `not_ready` with Retry-After, as
 * for a database that does not answer (DESIGN.md: a 500 is a bug), where it was a 500
 * `internal_error`.
 *
 * SQLite's full disk is its own page limit (`max_page_count`, the error a full disk gives), its
 * read-only file `query_only`, both set on the gateway's connection. The Postgres half needs
 * Postgres: skipped with a printed line without it, a failure with CI set.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { sql } from 'kysely'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createDatabase, isDatabaseUnavailable } from '../src/db/index.ts'
import { migrateToLatest } from '../src/db/migrate.ts'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { startAuthGateway, type AuthGateway } from './support/auth.ts'
import { createTestPostgresDatabase, postgresUrlForTests } from './support/services.ts'

const postgresUrl = await postgresUrlForTests('test/db.unwritable.test.ts')

let dir: string
let upstream: MockUpstream
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-unwritable-'))
  upstream = await startMockUpstream()
})
afterAll(async () => {
  await upstream?.stop()
  rmSync(dir, { recursive: true, force: true })
})

async function expectNotReady(res: Response): Promise<void> {
  const body = (await res.json()) as { error: { code: string; type: string; message: string } }
  expect({ status: res.status, code: body.error.code }).toEqual({ status: 503, code: 'not_ready' })
  expect(res.headers.get('retry-after')).toBe('5')
  expect(body.error.message).toStartWith("The gateway's database takes no writes now (full or read-only)")
}

describe('a SQLite file that takes no writes', () => {
  let gw: AuthGateway
  beforeAll(async () => {
    gw = await startAuthGateway(upstream.url, { env: { DATABASE_URL: `sqlite://${join(dir, 'gateway.db')}` } })
  })
  afterAll(() => gw?.close())

  test('full: an admin write is 503 not_ready with Retry-After, and goes through once there is room', async () => {
    const { rows } = await sql<{ page_count: number }>`pragma page_count`.execute(gw.db)
    await sql.raw(`pragma max_page_count = ${rows[0]?.page_count ?? 1}`).execute(gw.db)
    let refused: Response | undefined
    try {
      // Enough for a new page whatever room the last one had.
      for (let i = 0; i < 40 && refused === undefined; i++) {
        const res = await gw.admin('POST', '/admin/users', { id: `full-${i}`, name: 'n'.repeat(200) })
        if (res.status !== 201) refused = res
      }
      expect(refused).toBeDefined()
      if (refused) await expectNotReady(refused)
    } finally {
      await sql`pragma max_page_count = 1073741823`.execute(gw.db)
    }
    expect((await gw.admin('POST', '/admin/users', { id: 'after-full' })).status).toBe(201)
  })

  test('read-only: an admin write is 503 not_ready with Retry-After; reads are served', async () => {
    await sql`pragma query_only = 1`.execute(gw.db)
    try {
      await expectNotReady(await gw.admin('POST', '/admin/users', { id: 'read-only' }))
      expect((await gw.admin('GET', '/admin/users')).status).toBe(200)
    } finally {
      await sql`pragma query_only = 0`.execute(gw.db)
    }
  })
})

describe.skipIf(postgresUrl === null)('a Postgres that takes no writes', () => {
  test('a write refused as read-only (25006, a standby or a read-only database) is the database being unavailable', async () => {
    const database = await createTestPostgresDatabase(postgresUrl ?? '', 'unwritable')
    const handle = await createDatabase(database.url)
    try {
      await migrateToLatest(handle.db)
      const error = await handle.db
        .transaction()
        .setAccessMode('read only')
        .execute((tx) => tx.insertInto('settings').values({ key: 'k', value: '1', updated_at: new Date().toISOString() }).execute())
        .then(
          () => null,
          (e: unknown) => e,
        )
      expect(error).not.toBeNull()
      expect(isDatabaseUnavailable(error)).toBe(true)
      // A query that is wrong is still not an outage.
      const wrong = await sql`select * from no_such_table`.execute(handle.db).then(
        () => null,
        (e: unknown) => e,
      )
      expect(isDatabaseUnavailable(wrong)).toBe(false)
    } finally {
      await handle.close()
      await database.drop()
    }
  })
})
