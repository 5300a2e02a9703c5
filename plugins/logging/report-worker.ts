/**
 * The admin-report thread on SQLite: its own read-only connection to the database file, running
 * the SELECTs of `/admin/usage` and `/admin/logs` that the main thread compiled. bun:sqlite runs
 * a statement on the thread that calls it, to its end: an aggregate over a million rows held the
 * gateway's event loop, and every request, for seconds. Here it holds only this thread.
 *
 * Protocol (structured-clone messages):
 *   main → worker  { type: 'open', filename }      → { id: 0, ok, error? }
 *   main → worker  { type: 'query', id, sql, params } → { id, ok, rows?, error?, code? }
 */
import { Database } from 'bun:sqlite'

declare const self: Worker

export type ReportMessage = { type: 'open'; filename: string } | { type: 'query'; id: number; sql: string; params: unknown[] }

export interface ReportReply {
  id: number
  ok: boolean
  rows?: unknown[]
  error?: string
  /** SQLite's code of a failure (SQLITE_BUSY…), so the main thread classifies it as its own connection's would be. */
  code?: string
}

/** How long a read waits for a lock (a checkpoint) before it fails, as the gateway's own connection waits. */
const BUSY_TIMEOUT_MS = 5000

let db: Database | undefined

const reply = (message: ReportReply) => self.postMessage(message)

function failure(id: number, error: unknown): ReportReply {
  const code = typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string' ? error.code : undefined
  return { id, ok: false, error: error instanceof Error ? error.message : String(error), ...(code === undefined ? {} : { code }) }
}

self.onmessage = (event: MessageEvent<ReportMessage>) => {
  const message = event.data
  if (message.type === 'open') {
    try {
      db = new Database(message.filename, { readwrite: true, create: false, strict: true })
      db.run(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`)
      // Reports only read: a statement that would write is refused by SQLite itself.
      db.run('PRAGMA query_only = ON')
      reply({ id: 0, ok: true })
    } catch (error) {
      reply(failure(0, error))
    }
    return
  }
  try {
    if (!db) throw new Error('the report thread has no database')
    // Prepared and finalized per query: reports are few and slow, and nothing is kept between them.
    const statement = db.prepare(message.sql)
    try {
      reply({ id: message.id, ok: true, rows: statement.all(...(message.params as never[])) })
    } finally {
      statement.finalize()
    }
  } catch (error) {
    reply(failure(message.id, error))
  }
}
