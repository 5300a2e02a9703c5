import { CompiledQuery, sql, type Kysely } from 'kysely'
import { maskDatabaseUrl, parseDatabaseUrl, type Database, type DatabaseHandle } from '../../src/db/index.ts'
import { SQLITE_MEMORY } from '../../src/db/sqlite-dialect.ts'
import { chunkSizes, compileOnce, withParameters } from '../../src/db/statements.ts'
import type { RequestLogInsert } from '../../src/db/schema.ts'
import type { WorkerMessage, WorkerReply, WorkerStatement, WorkerTarget } from './sink-worker.ts'
import { ANSWER_GRACE_MS, LIMIT_STATEMENT, timeLeft } from './write-limit.ts'
import type { BatchSink } from './writer.ts'

/** Every column of `request_logs`, in the order of the compiled INSERT's parameters. */
const COLUMNS = [
  'id', 'at', 'key_id', 'user_id', 'team_id', 'environment', 'endpoint', 'model', 'provider', 'upstream_model',
  'provider_key_id', 'status', 'error_code', 'prompt_tokens', 'completion_tokens', 'cached_tokens', 'total_tokens',
  'cost_usd', 'usage_source', 'latency_ms', 'ttft_ms', 'streamed', 'client_ip', 'user_agent',
] as const satisfies readonly (keyof RequestLogInsert)[]

/**
 * `INSERT INTO request_logs (…) VALUES (…), … ON CONFLICT (id) DO NOTHING` for `size` rows,
 * built by Kysely's query builder once per size and then only re-bound: building the query
 * tree of 500 rows × 24 columns costs milliseconds, binding a flat array costs microseconds.
 * Skipping ids already stored makes writing a batch twice (a retry after a timeout) harmless.
 */
class InsertStatements {
  constructor(private readonly db: Kysely<Database>) {}

  query(rows: readonly RequestLogInsert[], offset: number, size: number): CompiledQuery {
    const compiled = compileOnce(this.db, `logging.insert_${size}`, () => {
      const template = Object.fromEntries(COLUMNS.map((c) => [c, null])) as unknown as RequestLogInsert
      return this.db
        .insertInto('request_logs')
        .values(Array.from({ length: size }, () => template))
        .onConflict((oc) => oc.column('id').doNothing())
        .compile()
    })
    const params: unknown[] = []
    for (let i = offset; i < offset + size; i++) {
      const row = rows[i]!
      for (const c of COLUMNS) params.push(row[c] ?? null)
    }
    return withParameters(compiled, params)
  }
}

/** The INSERTs of a batch as SQL and parameters, for a connection outside Kysely (the writer thread). */
function statementsOf(statements: InsertStatements, rows: RequestLogInsert[], max: number): WorkerStatement[] {
  const out: WorkerStatement[] = []
  let offset = 0
  for (const size of chunkSizes(rows.length, max)) {
    const q = statements.query(rows, offset, size)
    out.push({ sql: q.sql, params: q.parameters as unknown[] })
    offset += size
  }
  return out
}

async function insertRows(db: Kysely<Database>, statements: InsertStatements, rows: RequestLogInsert[], max: number, signal: AbortSignal): Promise<void> {
  let offset = 0
  for (const size of chunkSizes(rows.length, max)) {
    await db.executeQuery(statements.query(rows, offset, size), { signal })
    offset += size
  }
}

/**
 * The INSERTs of a batch on Postgres, in one transaction the server stops at `deadline` (epoch ms)
 * (plugins/logging/write-limit.ts). No abort signal: Kysely would give up on a statement at
 * once and leave it running, to commit whenever it could; this settles when the database says
 * how the write ended.
 */
async function insertRowsWithin(db: Kysely<Database>, statements: InsertStatements, rows: RequestLogInsert[], max: number, deadline: number): Promise<void> {
  await db.transaction().execute(async (tx) => {
    let offset = 0
    for (const size of chunkSizes(rows.length, max)) {
      await tx.executeQuery(CompiledQuery.raw(LIMIT_STATEMENT, [timeLeft(deadline)]))
      await tx.executeQuery(statements.query(rows, offset, size))
      offset += size
    }
  })
}

/**
 * `write`, still settled by the database's answer after `signal` aborts, as long as one comes
 * within `graceMs` more; past that the connection is taken for dead and the write fails
 * (`onGiveUp` may end the connection: a transaction whose client is gone does not commit).
 */
function answeredWithin(write: Promise<void>, signal: AbortSignal, graceMs: number, onGiveUp?: () => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let timer: ReturnType<typeof setTimeout> | undefined
    const giveUp = () => {
      timer = setTimeout(() => {
        onGiveUp?.()
        reject(new Error(`the database did not answer a request-log write within ${graceMs} ms after write_timeout_ms; the connection is taken for dead`))
      }, graceMs)
    }
    if (signal.aborted) giveUp()
    else signal.addEventListener('abort', giveUp, { once: true })
    write.then(resolve, reject).finally(() => {
      signal.removeEventListener('abort', giveUp)
      if (timer !== undefined) clearTimeout(timer)
    })
  })
}

/** Bun's Worker can be left out of what keeps the process alive (missing from the DOM typings). */
type RefCounted = Worker & { ref(): void; unref(): void }

/** A place request-log batches are written to, and how to let go of it. */
export interface RequestLogSink {
  write: BatchSink<RequestLogInsert>
  /** `thread`: a writer thread with its own connection; `inline`: the gateway's own connection. */
  readonly mode: 'thread' | 'inline'
  close(): Promise<void>
}

export interface SinkOptions {
  /** Rows per INSERT statement. */
  maxRowsPerStatement: number
  /** The configured DATABASE_URL: the writer thread opens its own connection to it. Null: never use a thread. */
  databaseUrl: string | null
  /** Use a writer thread when the database allows one. @default true */
  thread?: boolean
  /** How long a SQLite write waits for another writer's lock before it fails (and is retried). @default 50 (100 in the thread) */
  busyMs?: number
  /** Postgres stops a write (and rolls it back) after this long: the writer's write_timeout_ms. @default 10000 */
  writeTimeoutMs?: number
  /** After a write's signal aborts, how long its answer may still take before the connection is given up. @default ANSWER_GRACE_MS */
  answerGraceMs?: number
}

/**
 * Where request-log batches go, chosen once, here, from the database in use:
 *
 * - a SQLite file or Postgres, reached through the configured URL: a writer thread with its own
 *   connection (plugins/logging/sink-worker.ts). bun:sqlite runs on the thread that calls it and
 *   Postgres' driver encodes parameters there: measured at 15-35 µs (SQLite) and 9 µs (Postgres)
 *   a row. The gateway's thread keeps only compiling (once per statement shape) and handing over
 *   the parameters, about 1.5 µs a row;
 * - otherwise (in-memory SQLite, which no other connection can see, or a handle the gateway was
 *   given rather than opened from the URL): the gateway's own connection, through Kysely.
 */
export function requestLogSink(handle: DatabaseHandle, options: SinkOptions): RequestLogSink {
  const target = options.thread === false ? null : threadTarget(handle, options.databaseUrl, options.busyMs ?? 100)
  const limits = { timeoutMs: options.writeTimeoutMs ?? 10_000, graceMs: options.answerGraceMs ?? ANSWER_GRACE_MS }
  return target === null ? inlineSink(handle, options.maxRowsPerStatement, options.busyMs ?? 50, limits) : threadSink(handle, target, options.maxRowsPerStatement, limits)
}

/** A write's time on Postgres, and how much longer its answer is waited for once that has passed. */
interface WriteLimits {
  timeoutMs: number
  graceMs: number
}

function threadTarget(handle: DatabaseHandle, databaseUrl: string | null, busyMs: number): WorkerTarget | null {
  // Only a handle opened from this very URL: a test (or an embedding program) may hand the gateway another.
  if (databaseUrl === null || handle.url !== maskDatabaseUrl(databaseUrl.trim())) return null
  const parsed = parseDatabaseUrl(databaseUrl)
  if (parsed.dialect === 'postgres') return { dialect: 'postgres', url: parsed.connectionUrl, searchPath: parsed.searchPath, connectTimeoutS: parsed.connectTimeoutS }
  return parsed.filename === SQLITE_MEMORY ? null : { dialect: 'sqlite', filename: parsed.filename, busyMs }
}

/** The SQLite file the gateway's database was opened from, which another connection (a thread's) can open too; null otherwise. */
export function sqliteFileOf(handle: DatabaseHandle, databaseUrl: string | null): string | null {
  const target = threadTarget(handle, databaseUrl, 0)
  return target?.dialect === 'sqlite' ? target.filename : null
}

/**
 * Batches written by a worker thread. A thread that dies (or never starts) fails the writes in
 * flight, which the writer retries; the next write starts a new thread. A write is answered by
 * the thread with its real outcome, also after its signal aborted: the thread's database stops
 * it at the same time (Postgres) or it ends within the busy timeout (SQLite); a thread that
 * still does not answer within the grace is ended, and its connection with it.
 */
function threadSink(handle: DatabaseHandle, target: WorkerTarget, max: number, limits: WriteLimits): RequestLogSink {
  const statements = new InsertStatements(handle.db)
  let worker: Worker | undefined
  let ready: Promise<void> | undefined
  let nextId = 1
  const pending = new Map<number, { resolve: () => void; reject: (error: Error) => void }>()

  const failAll = (error: Error) => {
    for (const p of pending.values()) p.reject(error)
    pending.clear()
  }
  // Referenced only while a write is in flight: an idle thread must not keep a process alive. (Not
  // unref'd for good: Bun runs an unref'd worker's messages measurably slower, 2-3x here.)
  const busy = () => {
    if (pending.size === 1) (worker as RefCounted | undefined)?.ref()
  }
  const idle = () => {
    if (pending.size === 0) (worker as RefCounted | undefined)?.unref()
  }
  const drop = (reason: string) => {
    worker?.terminate()
    worker = undefined
    ready = undefined
    failAll(new Error(`the request-log writer thread stopped: ${reason}`))
  }
  const start = (): Promise<void> => {
    if (ready) return ready
    // smol: the thread's own VM collects its small heap more often. keys100k peaks 3-5 MB lower under
    // either memory profile; the thread's CPU a request was the same (5.7-6.6 µs, benchmarks/README.md).
    const w = new Worker(new URL('./sink-worker.ts', import.meta.url), { smol: true })
    worker = w
    ready = new Promise<void>((resolve, reject) => {
      pending.set(0, { resolve, reject })
      busy()
      w.postMessage({ type: 'init', target } satisfies WorkerMessage)
    })
    w.onmessage = (event: MessageEvent<WorkerReply>) => {
      const { id, ok, error } = event.data
      const p = pending.get(id)
      if (!p) return
      pending.delete(id)
      idle()
      if (ok) p.resolve()
      else p.reject(new Error(error ?? 'the request-log writer thread failed'))
    }
    w.onerror = (event) => drop(event.message)
    w.addEventListener('close', () => {
      if (worker === w) drop('it exited')
    })
    // A thread whose database could not be opened is replaced on the next write.
    ready.catch(() => {
      if (worker === w) drop('its database could not be opened')
    })
    return ready
  }
  const call = (message: WorkerMessage & { id: number }): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      pending.set(message.id, { resolve, reject })
      busy()
      worker!.postMessage(message)
    })

  return {
    mode: 'thread',
    async write(rows, signal) {
      // As one JSON string: structured-cloning 24 values a row costs the serving thread more
      // than JSON.stringify of the same values (and the thread parses it, off the request path).
      const deadline = Date.now() + limits.timeoutMs
      const json = JSON.stringify(statementsOf(statements, rows, max))
      if (signal.aborted) throw signal.reason
      await start()
      const w = worker
      await answeredWithin(call({ type: 'write', id: nextId++, statements: json, deadline }), signal, limits.graceMs, () => {
        if (worker === w) drop('a write went unanswered past write_timeout_ms')
      })
    },
    async close() {
      if (!worker) return
      const w = worker
      await Promise.race([call({ type: 'close', id: nextId++ }).catch(() => {}), Bun.sleep(2000)])
      w.terminate()
      if (worker === w) worker = undefined
      ready = undefined
      // A write still waiting on the thread will never be answered now: it failed (its rows are counted as lost).
      failAll(new Error('the request-log writer thread was closed'))
    },
  }
}

/**
 * Batches written through the gateway's own connection.
 *
 * SQLite: the inserts in one transaction, with the connection's busy timeout lowered to
 * `busyMs` for the write. bun:sqlite runs on the event loop, so waiting out another
 * process's write lock with the default 5 s timeout would freeze every request for that
 * long; failing fast instead leaves the rows queued for the writer's next retry.
 */
function inlineSink(handle: DatabaseHandle, max: number, busyMs: number, limits: WriteLimits): RequestLogSink {
  const db = handle.db
  const statements = new InsertStatements(db)
  const write: BatchSink<RequestLogInsert> =
    handle.dialect === 'postgres'
      ? (rows, signal) => {
          if (signal.aborted) return Promise.reject(signal.reason)
          return answeredWithin(insertRowsWithin(db, statements, rows, max, Date.now() + limits.timeoutMs), signal, limits.graceMs)
        }
      : (rows, signal) =>
          db.connection().execute(async (conn) => {
            const before = await sql<{ timeout: number }>`PRAGMA busy_timeout`.execute(conn)
            const restore = Number(before.rows[0]?.timeout ?? 5000)
            await sql.raw(`PRAGMA busy_timeout = ${busyMs}`).execute(conn)
            try {
              await conn.transaction().execute((tx) => insertRows(tx, statements, rows, max, signal))
            } finally {
              await sql.raw(`PRAGMA busy_timeout = ${restore}`).execute(conn)
            }
          })
  return { mode: 'inline', write, close: async () => {} }
}
