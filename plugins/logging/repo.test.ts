import { describe, expect, test } from 'bun:test'
import { Kysely, type CompiledQuery } from 'kysely'
import type { Database } from '../../src/db/schema.ts'
import { BunSqliteDialect, openSqliteDatabase, SQLITE_MEMORY } from '../../src/db/sqlite-dialect.ts'
import { migrateToLatest } from '../../src/db/migrate.ts'
import { GROUPINGS, usageBy } from './repo.ts'

describe('usageBy on SQLite', () => {
  test('groups by scanning the rows in range and sorting, never by walking an index of the grouped column (a table read per row: 16 s against 2.6 s over a million rows)', async () => {
    const database = openSqliteDatabase(SQLITE_MEMORY)
    const queries: CompiledQuery[] = []
    const db = new Kysely<Database>({ dialect: new BunSqliteDialect({ database }), log: (event) => void queries.push(event.query) })
    try {
      await migrateToLatest(db)
      const plans: Record<string, string> = {}
      for (const by of GROUPINGS) {
        for (const [name, filter] of [['all', {}], ['since', { from: '2026-01-01T00:00:00.000Z' }]] as const) {
          queries.length = 0
          await usageBy(db, by, filter, 10)
          const q = queries.at(-1)!
          const plan = database.query(`explain query plan ${q.sql}`).all(...(q.parameters as never[])) as Array<{ detail: string }>
          plans[`${by} ${name}`] = plan.map((p) => p.detail).join(' | ')
        }
      }
      const walking = Object.entries(plans).filter(([, plan]) => /request_logs_(key|user|team)_id_at_idx/.test(plan))
      expect(walking).toEqual([])
    } finally {
      await db.destroy()
    }
  })
})
