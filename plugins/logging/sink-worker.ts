/**
 * The request-log writer thread: its own connection to the database (a SQLite file, or a
 * one-connection Postgres pool), running the INSERTs the main thread compiled. SQLite in Bun
 * runs where it is called, and Postgres' driver encodes every parameter where it is called:
 * here, that work (tens of µs a row) is off the thread that serves requests.
 *
 * Protocol (structured-clone messages):
 *   main → worker  { type: 'init', target }                 → { id: 0, ok, error? }
 *   main → worker  { type: 'write', id, statements, deadline } → { id, ok, error? }
 *                  (statements: WorkerStatement[] as JSON text; on Postgres, one transaction
 *                  the server stops at deadline, epoch ms: the reply is the write's real outcome)
 *   main → worker  { type: 'close', id }                     → { id, ok }
 */
import { SQL } from 'bun'
import type { Statement } from 'bun:sqlite'
import { openSqliteDatabase } from '../../src/db/sqlite-dialect.ts'
import { LIMIT_STATEMENT, timeLeft } from './write-limit.ts'

declare const self: Worker

/** Where the worker writes. */
export type WorkerTarget =
  | { dialect: 'sqlite'; filename: string; busyMs: number }
  | { dialect: 'postgres'; url: string; searchPath: string | null; /** The URL's `connect_timeout`, in seconds (0: none), which its parsing took out of `url`. */ connectTimeoutS: number }

export interface WorkerStatement {
  sql: string
  params: unknown[]
}

export type WorkerMessage =
  | { type: 'init'; target: WorkerTarget }
  | { type: 'write'; id: number; statements: string; deadline: number }
  | { type: 'close'; id: number }

export interface WorkerReply {
  id: number
  ok: boolean
  error?: string
}

interface Writer {
  write(statements: WorkerStatement[], deadline: number): Promise<void> | void
  close(): Promise<void> | void
}

function sqliteWriter(target: Extract<WorkerTarget, { dialect: 'sqlite' }>): Writer {
  const db = openSqliteDatabase(target.filename)
  // Waiting for another writer's lock here blocks no request; still short, so an outage is noticed.
  db.run(`PRAGMA busy_timeout = ${Math.max(0, Math.floor(target.busyMs))}`)
  // A handful of statement shapes (see chunkSizes): the cache stays that small.
  const statements = new Map<string, Statement>()
  const run = db.transaction((list: WorkerStatement[]) => {
    for (const s of list) {
      let statement = statements.get(s.sql)
      if (!statement) statements.set(s.sql, (statement = db.prepare(s.sql)))
      statement.run(s.params as never)
    }
  })
  return {
    write: (list) => {
      run.immediate(list)
    },
    close: () => {
      for (const s of statements.values()) s.finalize()
      db.close()
    },
  }
}

function postgresWriter(target: Extract<WorkerTarget, { dialect: 'postgres' }>): Writer {
  const sql = new SQL(target.url, { max: 1, connectionTimeout: target.connectTimeoutS, ...(target.searchPath === null ? {} : { connection: { search_path: target.searchPath } }) })
  return {
    // One transaction, each statement limited to the write's time left (plugins/logging/write-limit.ts):
    // a write the main thread stopped waiting for is stopped by the server too, and rolled back.
    async write(list, deadline) {
      await sql.begin(async (tx) => {
        for (const s of list) {
          await tx.unsafe(LIMIT_STATEMENT, [timeLeft(deadline)])
          await tx.unsafe(s.sql, s.params)
        }
      })
    },
    close: () => sql.close({ timeout: 1 }),
  }
}

let writer: Writer | undefined
const reply = (message: WorkerReply) => self.postMessage(message)
const describe = (error: unknown) => {
  if (!(error instanceof Error)) return String(error)
  const code = (error as { code?: unknown }).code
  return typeof code === 'string' && !error.message.includes(code) ? `${error.message} (${code})` : error.message
}

self.onmessage = async (event: MessageEvent<WorkerMessage>) => {
  const message = event.data
  switch (message.type) {
    case 'init':
      try {
        writer = message.target.dialect === 'sqlite' ? sqliteWriter(message.target) : postgresWriter(message.target)
        reply({ id: 0, ok: true })
      } catch (error) {
        reply({ id: 0, ok: false, error: describe(error) })
      }
      return
    case 'write':
      try {
        if (!writer) throw new Error('the request-log writer thread has no database')
        await writer.write(JSON.parse(message.statements) as WorkerStatement[], message.deadline)
        reply({ id: message.id, ok: true })
      } catch (error) {
        reply({ id: message.id, ok: false, error: describe(error) })
      }
      return
    case 'close':
      try {
        await writer?.close()
      } finally {
        writer = undefined
        reply({ id: message.id, ok: true })
      }
  }
}
