/**
 * `GET /ready` with a SQLite file that is deleted, or replaced by another file, while the gateway
 * runs: SQLite keeps writing into the file it opened, which no one will ever open again (a restart
 * opens what is at the path), so the instance is not ready, where it answered 200 and took every
 * admin change into the lost file.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, renameSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createDatabase } from '../src/db/index.ts'
import { migrateToLatest } from '../src/db/migrate.ts'
import { startGateway } from './support/gateway.ts'

const ADMIN = 'ready-sqlite-admin-key-0123456789abcdef'

let dir: string
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-ready-sqlite-'))
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** Removes the database file and its WAL and shared-memory files, as a cleanup job or a person would. */
function removeDatabase(file: string): void {
  for (const suffix of ['', '-wal', '-shm']) rmSync(file + suffix, { force: true })
}

describe('/ready and a SQLite file taken away under the gateway', () => {
  test('deleted: 503 with the database check failing, where it was 200', async () => {
    const file = join(mkdtempSync(join(dir, 'deleted-')), 'gateway.db')
    const gw = await startGateway({ plugins: [] }, { env: { SLUICE_ADMIN_KEY: ADMIN, DATABASE_URL: `sqlite://${file}` } })
    try {
      expect((await fetch(`${gw.url}/ready`)).status).toBe(200)
      removeDatabase(file)
      const res = await fetch(`${gw.url}/ready`)
      expect(res.status).toBe(503)
      const body = (await res.json()) as { status: string; checks: { database: string }; error: { code: string; message: string } }
      expect(body.status).toBe('not_ready')
      expect(body.checks.database).toBe('unreachable')
      expect(body.error.code).toBe('not_ready')
    } finally {
      await gw.close()
    }
  })

  test('ping: true while the file is the one opened; false once it is deleted, or moved and another put in its place', async () => {
    const deleted = join(mkdtempSync(join(dir, 'ping-')), 'a.db')
    const handle = await createDatabase(`sqlite://${deleted}`)
    try {
      await migrateToLatest(handle.db)
      expect(await handle.ping()).toBe(true)
      removeDatabase(deleted)
      expect(await handle.ping()).toBe(false)
    } finally {
      await handle.close()
    }

    const replaced = join(mkdtempSync(join(dir, 'ping-')), 'b.db')
    const first = await createDatabase(`sqlite://${replaced}`)
    try {
      expect(await first.ping()).toBe(true)
      renameSync(replaced, `${replaced}.old`)
      const second = await createDatabase(`sqlite://${replaced}`)
      try {
        expect(await second.ping()).toBe(true)
        expect(await first.ping()).toBe(false)
      } finally {
        await second.close()
      }
    } finally {
      await first.close()
    }
  })

  test('an in-memory database has no file to lose: ping stays true', async () => {
    const handle = await createDatabase('sqlite::memory:')
    try {
      expect(await handle.ping()).toBe(true)
    } finally {
      await handle.close()
    }
  })
})
