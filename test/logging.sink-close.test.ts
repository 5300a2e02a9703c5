/**
 * The request-log writer thread closed while a write still waits on it (its database locked by
 * another connection): the write fails at close instead of staying unanswered, so the batch it
 * carried is counted as lost and reported before the gateway's close returns. A real SQLite file
 * and the real writer thread.
 */
import { afterAll, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createDatabase } from '../src/db/index.ts'
import { migrateToLatest } from '../src/db/migrate.ts'
import { requestLogSink } from '../plugins/logging/sink.ts'
import { lockSqlite, logRow } from './support/logging.ts'

const scratch = mkdtempSync(join(tmpdir(), 'sluice-sink-close-'))
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

test('a write still waiting on the writer thread fails when the sink closes', async () => {
  const file = join(scratch, 'locked.db')
  const handle = await createDatabase(`sqlite://${file}`)
  await migrateToLatest(handle.db)
  // The thread waits up to 5 s for the lock: longer than close waits for it.
  const sink = requestLogSink(handle, { maxRowsPerStatement: 500, databaseUrl: `sqlite://${file}`, thread: true, busyMs: 5000 })
  // The thread is started (and has opened the file) before the lock is taken.
  await sink.write([logRow('req_before_lock', new Date().toISOString())], AbortSignal.timeout(10_000))
  const lock = lockSqlite(file)
  try {
    const write = sink.write([logRow('req_locked', new Date().toISOString())], AbortSignal.timeout(10_000))
    const outcome = write.then(
      () => 'written',
      () => 'failed',
    )
    await Bun.sleep(50)
    await sink.close()
    expect(await Promise.race([outcome, Bun.sleep(1000).then(() => 'still waiting')])).toBe('failed')
  } finally {
    lock.release()
    await handle.close()
  }
}, 15_000)
