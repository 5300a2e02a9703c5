import {
  Kysely,
  SqliteAdapter,
  SqliteIntrospector,
  SqliteQueryCompiler,
  type CompiledQuery,
  type DatabaseConnection,
  type Dialect,
  type Driver,
  type QueryResult,
} from 'kysely'
import type { Database } from '../../src/db/schema.ts'
import { markingUnavailable } from '../../src/db/errors.ts'
import type { ReportMessage, ReportReply } from './report-worker.ts'

/** Bun's Worker can be left out of what keeps the process alive (missing from the DOM typings). */
type RefCounted = Worker & { ref(): void; unref(): void }

/** A query's reply, or the thread's failure. */
interface Pending {
  resolve: (rows: unknown[]) => void
  reject: (error: Error) => void
}

/**
 * One worker thread with a read-only connection to a SQLite file (plugins/logging/report-worker.ts),
 * started on the first query and again after it died. Queries are answered in order; a thread
 * that dies fails the queries it held.
 */
class ReportThread {
  private worker: Worker | undefined
  private ready: Promise<void> | undefined
  private nextId = 1
  private readonly pending = new Map<number, Pending>()

  constructor(private readonly filename: string) {}

  async query(sql: string, params: readonly unknown[]): Promise<unknown[]> {
    await this.start()
    const worker = this.worker!
    return new Promise<unknown[]>((resolve, reject) => {
      const id = this.nextId++
      this.pending.set(id, { resolve, reject })
      if (this.pending.size === 1) (worker as RefCounted).ref()
      worker.postMessage({ type: 'query', id, sql, params: [...params] } satisfies ReportMessage)
    })
  }

  close(): void {
    this.stop('the report thread was closed')
  }

  private start(): Promise<void> {
    if (this.ready) return this.ready
    const worker = new Worker(new URL('./report-worker.ts', import.meta.url), { smol: true })
    this.worker = worker
    this.ready = new Promise<void>((resolve, reject) => {
      this.pending.set(0, { resolve: () => resolve(), reject })
      worker.postMessage({ type: 'open', filename: this.filename } satisfies ReportMessage)
    })
    worker.onmessage = (event: MessageEvent<ReportReply>) => {
      const { id, ok, rows, error, code } = event.data
      const p = this.pending.get(id)
      if (!p) return
      this.pending.delete(id)
      // Idle, the thread must not keep the process alive.
      if (this.pending.size === 0) (worker as RefCounted).unref()
      if (ok) p.resolve(rows ?? [])
      else p.reject(Object.assign(new Error(error ?? 'the report thread failed'), code === undefined ? {} : { code }))
    }
    worker.onerror = (event) => this.stop(`the report thread stopped: ${event.message}`, worker)
    worker.addEventListener('close', () => this.stop('the report thread exited', worker))
    // A thread whose database could not be opened is replaced at the next report.
    this.ready.catch(() => this.stop('its database could not be opened', worker))
    return this.ready
  }

  /** Ends the thread (only `which`, when given: a later one is left alone) and fails what it held. */
  private stop(reason: string, which?: Worker): void {
    if (which !== undefined && which !== this.worker) return
    this.worker?.terminate()
    this.worker = undefined
    this.ready = undefined
    const error = new Error(reason)
    for (const p of this.pending.values()) p.reject(error)
    this.pending.clear()
  }
}

/** The thread's one connection: queries only (reports run no transaction). */
class ReportConnection implements DatabaseConnection {
  constructor(private readonly thread: ReportThread) {}

  async executeQuery<R>(compiledQuery: CompiledQuery): Promise<QueryResult<R>> {
    return { rows: (await this.thread.query(compiledQuery.sql, compiledQuery.parameters)) as R[] }
  }

  // eslint-disable-next-line require-yield
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error('reports do not stream')
  }
}

class ReportDriver implements Driver {
  private readonly connection: ReportConnection

  constructor(private readonly thread: ReportThread) {
    this.connection = new ReportConnection(thread)
  }

  async init(): Promise<void> {}
  async acquireConnection(): Promise<DatabaseConnection> {
    return this.connection
  }
  async beginTransaction(): Promise<void> {
    throw new Error('reports run no transaction')
  }
  async commitTransaction(): Promise<void> {}
  async rollbackTransaction(): Promise<void> {}
  async releaseConnection(): Promise<void> {}
  async destroy(): Promise<void> {
    this.thread.close()
  }
}

/**
 * A Kysely over a SQLite file whose queries run on a thread of their own: the admin reports,
 * so that one over a big table does not stop the gateway while it runs (bun:sqlite holds the
 * calling thread for a statement's whole run). Read-only; `destroy()` ends the thread. Failures
 * are marked as the gateway's own connection's are (a locked database is a 503 `not_ready`).
 */
export function reportDatabase(filename: string): Kysely<Database> {
  const thread = new ReportThread(filename)
  const dialect: Dialect = {
    createAdapter: () => new SqliteAdapter(),
    createQueryCompiler: () => new SqliteQueryCompiler(),
    createIntrospector: (db) => new SqliteIntrospector(db),
    createDriver: () => new ReportDriver(thread),
  }
  return new Kysely<Database>({ dialect: markingUnavailable(dialect) })
}
