/**
 * What the migration tests (migrations/*.test.ts) share: the migrations up to the one a file tests,
 * the columns of an index on either dialect, and the Postgres half of a suite run on SQLite and on
 * a Postgres database of its own.
 */
import { afterAll, beforeAll, describe } from 'bun:test'
import { sql } from 'kysely'
import type { Migration } from 'kysely/migration'
import type { DatabaseHandle } from '../../src/db/index.ts'
import { migrations } from '../../migrations/index.ts'
import { createTestPostgresDatabase, postgresUrlForTests, type TestPostgresDatabase } from './services.ts'

type MigrationName = keyof typeof migrations

/** The migrations before `name` (a later one, applied first, would be out of order) and those with it. */
export function migrationsUpTo(name: MigrationName): { before: Record<string, Migration>; upTo: Record<string, Migration> } {
  const before: Record<string, Migration> = Object.fromEntries(Object.entries(migrations).filter(([n]) => n < name))
  return { before, upTo: { ...before, [name]: migrations[name] } }
}

/** The columns of the index `name`, in order; empty when there is none. */
export async function indexColumns(handle: DatabaseHandle, name: string): Promise<string[]> {
  if (handle.dialect === 'sqlite') {
    const { rows } = await sql<{ name: string }>`select name from pragma_index_info(${name}) order by seqno`.execute(handle.db)
    return rows.map((r) => r.name)
  }
  const { rows } = await sql<{ column: string }>`
    select a.attname as column
    from pg_index i join pg_class c on c.oid = i.indexrelid join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
    where c.relname = ${name}
    order by array_position(i.indkey, a.attnum)`.execute(handle.db)
  return rows.map((r) => r.column)
}

/**
 * `suite` under `title` on a Postgres database of its own (`databaseName`), dropped afterwards;
 * skipped with a printed line without Postgres, a failure with CI set (postgresUrlForTests).
 */
export async function describeOnPostgres(title: string, file: string, databaseName: string, suite: (url: () => string) => void): Promise<void> {
  const url = await postgresUrlForTests(file)
  describe.skipIf(url === null)(title, () => {
    let database: TestPostgresDatabase | undefined
    beforeAll(async () => {
      database = await createTestPostgresDatabase(url ?? '', databaseName)
    })
    afterAll(async () => {
      await database?.drop()
    })
    suite(() => database!.url)
  })
}
