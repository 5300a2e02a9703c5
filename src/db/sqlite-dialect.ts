/**
 * A Kysely dialect over `bun:sqlite`.
 *
 * Kysely ships a SQLite dialect for better-sqlite3 only; this one drives Bun's built-in
 * driver and adds what a gateway needs from its embedded database: prepared statements
 * kept in a bounded cache, a connection lock so the one connection is never shared by
 * two transactions, and WAL mode so readers in other processes (`bun run migrate`, a
 * second gateway on the same file) do not block writers.
 */
import { Database, type Statement } from 'bun:sqlite';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  CompiledQuery,
  IdentifierNode,
  RawNode,
  SqliteAdapter,
  SqliteIntrospector,
  SqliteQueryCompiler,
  createQueryId,
  type DatabaseConnection,
  type DatabaseIntrospector,
  type Dialect,
  type DialectAdapter,
  type Driver,
  type Kysely,
  type QueryCompiler,
  type QueryResult,
  type TransactionSettings,
} from 'kysely';

/** The value Bun and SQLite use for a database that lives only in memory. */
export const SQLITE_MEMORY = ':memory:';

/** How many prepared statements one connection keeps by default. */
export const DEFAULT_STATEMENT_CACHE_SIZE = 256;

export interface BunSqliteDialectConfig {
  /**
   * A file path (its parent directory is created when missing), {@link SQLITE_MEMORY},
   * or an already open `Database`. A path is opened with {@link openSqliteDatabase}; a
   * `Database` is used as given. Either way `Kysely.destroy()` closes it.
   */
  readonly database: string | Database;
  /**
   * Most prepared statements kept per connection; the least recently used is finalized
   * when a new one would exceed it. Kysely emits a small, fixed set of SQL strings per
   * call site, so a few hundred cover an application; the bound keeps ad-hoc SQL from
   * growing memory without limit.
   * @default 256
   */
  readonly statementCacheSize?: number;
}

/**
 * Opens a SQLite file (or `:memory:`) set up for a server: WAL journal, `synchronous=NORMAL`
 * (durable across application crashes, and in WAL only the last commits can be lost on
 * power loss), foreign keys enforced, and a 5 s wait on a lock held by another process
 * instead of failing at once with SQLITE_BUSY.
 */
export function openSqliteDatabase(filename: string): Database {
  if (filename !== SQLITE_MEMORY) {
    mkdirSync(dirname(filename), { recursive: true });
    createPrivately(filename);
  }
  // strict: a missing bound parameter is an error instead of a silent NULL.
  const database = new Database(filename, { create: true, readwrite: true, strict: true });
  try {
    database.run(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
    switchToWal(database);
    database.run('PRAGMA synchronous = NORMAL');
    database.run('PRAGMA foreign_keys = ON');
  } catch (error) {
    database.close();
    throw error;
  }
  return database;
}

/**
 * Create `filename` empty (SQLite takes an empty file for a new database) readable and writable by
 * its owner alone, unless it is there already: it holds key hashes and sealed secrets, and SQLite
 * would create it 0644 (less the umask). Its -wal and -shm files take the mode of the database
 * file. One that exists keeps the mode its owner gave it.
 */
function createPrivately(filename: string): void {
  try {
    closeSync(openSync(filename, 'wx', 0o600));
  } catch (error) {
    const code = typeof error === 'object' && error !== null && 'code' in error ? error.code : undefined;
    if (code !== 'EEXIST') {
      throw error;
    }
  }
}

/** How long a statement waits for a lock another process holds before failing with SQLITE_BUSY. */
const BUSY_TIMEOUT_MS = 5000;
const WAL_RETRY_PAUSE_MS = 20;

/**
 * `PRAGMA journal_mode = WAL`, waiting up to {@link BUSY_TIMEOUT_MS} for a write lock another
 * process holds (a second instance creating the same new file, still in rollback mode). SQLite
 * does not call its busy handler here: the switch reads the file first and then needs the
 * exclusive lock, and a reader waiting on a writer could deadlock, so it answers SQLITE_BUSY at
 * once; we wait and try again instead. Synchronous, as opening is: it runs at boot.
 */
function switchToWal(database: Database): void {
  const deadline = performance.now() + BUSY_TIMEOUT_MS;
  for (;;) {
    try {
      database.run('PRAGMA journal_mode = WAL');
      return;
    } catch (error) {
      const code = typeof error === 'object' && error !== null && 'code' in error ? error.code : undefined;
      if (code !== 'SQLITE_BUSY' || performance.now() >= deadline) {
        throw error;
      }
      Bun.sleepSync(WAL_RETRY_PAUSE_MS);
    }
  }
}

/** Kysely dialect for `bun:sqlite`: `new Kysely<DB>({ dialect: new BunSqliteDialect({ database: './data/app.db' }) })`. */
export class BunSqliteDialect implements Dialect {
  readonly #config: BunSqliteDialectConfig;

  constructor(config: BunSqliteDialectConfig) {
    const size = config.statementCacheSize ?? DEFAULT_STATEMENT_CACHE_SIZE;
    if (!Number.isInteger(size) || size < 1) {
      throw new Error(`statementCacheSize must be a positive integer, got ${size}`);
    }
    this.#config = { ...config, statementCacheSize: size };
  }

  createDriver(): Driver {
    return new BunSqliteDriver(this.#config.database, this.#config.statementCacheSize ?? DEFAULT_STATEMENT_CACHE_SIZE);
  }

  createQueryCompiler(): QueryCompiler {
    return new SqliteQueryCompiler();
  }

  createAdapter(): DialectAdapter {
    return new BunSqliteAdapter();
  }

  createIntrospector(db: Kysely<unknown>): DatabaseIntrospector {
    return new SqliteIntrospector(db);
  }
}

/**
 * Kysely's SQLite adapter, with transactional DDL switched on.
 *
 * Kysely leaves it off for SQLite in general, but SQLite does roll back CREATE/DROP/ALTER,
 * and with it on the Migrator runs a whole batch in one `BEGIN IMMEDIATE` transaction:
 * a failing migration leaves nothing half-built behind, and two processes migrating the
 * same file at once take turns on SQLite's write lock instead of both creating tables.
 * (A future migration that must toggle `PRAGMA foreign_keys`, which is a no-op inside a
 * transaction, can run with the Migrator's `disableTransactions`.)
 */
class BunSqliteAdapter extends SqliteAdapter {
  override get supportsTransactionalDdl(): boolean {
    return true;
  }
}

/**
 * A FIFO lock: `release` hands the lock straight to the next waiter, so a burst of
 * callers is served in arrival order and nobody can barge in between.
 */
class ConnectionLock {
  #held = false;
  readonly #waiters: Array<() => void> = [];

  acquire(): Promise<void> {
    if (!this.#held) {
      this.#held = true;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      this.#waiters.push(resolve);
    });
  }

  release(): void {
    const next = this.#waiters.shift();
    if (next === undefined) {
      this.#held = false;
    } else {
      next();
    }
  }
}

class BunSqliteDriver implements Driver {
  readonly #source: string | Database;
  readonly #statementCacheSize: number;
  // Kysely already serializes connections for adapters that report a single connection,
  // but the driver must be safe on its own: a transaction is BEGIN ... COMMIT on the one
  // shared connection, and any statement from elsewhere that ran in between would
  // silently join (and roll back with) it.
  readonly #lock = new ConnectionLock();
  #database: Database | undefined;
  #connection: BunSqliteConnection | undefined;

  constructor(source: string | Database, statementCacheSize: number) {
    this.#source = source;
    this.#statementCacheSize = statementCacheSize;
  }

  async init(): Promise<void> {
    const database = typeof this.#source === 'string' ? openSqliteDatabase(this.#source) : this.#source;
    this.#database = database;
    this.#connection = new BunSqliteConnection(database, this.#statementCacheSize);
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    const connection = this.#connection;
    if (connection === undefined) {
      throw new Error('The SQLite driver is not initialized, or was destroyed');
    }
    await this.#lock.acquire();
    return connection;
  }

  async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    // IMMEDIATE takes the write lock up front, where busy_timeout applies. A deferred
    // transaction that reads first and writes later can fail with SQLITE_BUSY at once when
    // another process writes in between, which no timeout can fix. Within this process the
    // lock above already serializes transactions, so IMMEDIATE costs nothing here.
    // SQLite is always serializable, so the isolation level needs no statement of its own.
    const begin = settings.accessMode === 'read only' ? 'begin deferred' : 'begin immediate';
    await connection.executeQuery(CompiledQuery.raw(begin));
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('commit'));
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    // SQLite rolls a transaction back by itself after some errors (SQLITE_FULL, SQLITE_IOERR,
    // ...); a ROLLBACK then would fail with "no transaction is active" and hide the real error.
    if (this.#database?.inTransaction !== true) {
      return;
    }
    await connection.executeQuery(CompiledQuery.raw('rollback'));
  }

  async savepoint(
    connection: DatabaseConnection,
    savepointName: string,
    compileQuery: QueryCompiler['compileQuery'],
  ): Promise<void> {
    await connection.executeQuery(compileQuery(savepointCommand('savepoint', savepointName), createQueryId()));
  }

  async rollbackToSavepoint(
    connection: DatabaseConnection,
    savepointName: string,
    compileQuery: QueryCompiler['compileQuery'],
  ): Promise<void> {
    await connection.executeQuery(compileQuery(savepointCommand('rollback to', savepointName), createQueryId()));
  }

  async releaseSavepoint(
    connection: DatabaseConnection,
    savepointName: string,
    compileQuery: QueryCompiler['compileQuery'],
  ): Promise<void> {
    await connection.executeQuery(compileQuery(savepointCommand('release', savepointName), createQueryId()));
  }

  async releaseConnection(): Promise<void> {
    this.#lock.release();
  }

  async destroy(): Promise<void> {
    this.#connection?.finalizeStatements();
    this.#connection = undefined;
    this.#database?.close();
    this.#database = undefined;
  }
}

/** `SAVEPOINT "name"` and friends, with the name quoted by the compiler rather than pasted in. */
function savepointCommand(command: 'savepoint' | 'rollback to' | 'release', name: string): RawNode {
  return RawNode.createWithChildren([RawNode.createWithSql(`${command} `), IdentifierNode.create(name)]);
}

/** Query kinds that change rows; with RETURNING they come back as readers, one row per changed row. */
const WRITE_QUERY_KINDS: ReadonlySet<string> = new Set([
  'InsertQueryNode',
  'UpdateQueryNode',
  'DeleteQueryNode',
  'MergeQueryNode',
]);

class BunSqliteConnection implements DatabaseConnection {
  readonly #database: Database;
  readonly #statements: StatementCache;

  constructor(database: Database, statementCacheSize: number) {
    this.#database = database;
    this.#statements = new StatementCache(database, statementCacheSize);
  }

  async executeQuery<R>(compiledQuery: CompiledQuery): Promise<QueryResult<R>> {
    const statement = this.#statements.get(compiledQuery.sql);
    // One array argument binds positionally; spreading it would let Bun read a lone
    // object parameter as a map of named bindings.
    const parameters = compiledQuery.parameters;
    const kind = compiledQuery.query.kind;
    if (statement.reader) {
      const rows = statement.all(parameters) as R[];
      if (WRITE_QUERY_KINDS.has(kind)) {
        return { rows, numAffectedRows: BigInt(rows.length) };
      }
      return { rows };
    }
    const { changes, lastInsertRowid } = statement.run(parameters);
    // SQLite keeps the last insert rowid across later UPDATEs and DELETEs; reporting it for
    // those would hand back a stale id, so only inserts (and raw SQL, which may be one) get it.
    const reportsInsertId = kind === 'InsertQueryNode' || kind === 'RawNode';
    return {
      rows: [],
      numAffectedRows: BigInt(changes),
      insertId: reportsInsertId ? BigInt(lastInsertRowid) : undefined,
    };
  }

  async *streamQuery<R>(compiledQuery: CompiledQuery, chunkSize: number): AsyncIterableIterator<QueryResult<R>> {
    if (!Number.isInteger(chunkSize) || chunkSize < 1) {
      throw new Error(`chunkSize must be a positive integer, got ${chunkSize}`);
    }
    // A statement of its own, not a cached one: a statement has a single cursor, and a query
    // run with the same SQL while this stream is open (in the same transaction) would reset it.
    const statement: Statement = this.#database.prepare(compiledQuery.sql);
    try {
      if (!statement.reader) {
        throw new Error('Only statements that return rows can be streamed');
      }
      let chunk: R[] = [];
      for (const row of statement.iterate(compiledQuery.parameters)) {
        chunk.push(row as R);
        if (chunk.length >= chunkSize) {
          yield { rows: chunk };
          chunk = [];
        }
      }
      if (chunk.length > 0) {
        yield { rows: chunk };
      }
    } finally {
      statement.finalize();
    }
  }

  finalizeStatements(): void {
    this.#statements.clear();
  }
}

/**
 * Prepared statements by SQL text, least recently used first (a Map keeps insertion
 * order, and a hit is moved to the end), finalized on eviction so their native memory
 * is freed now rather than at some later garbage collection.
 */
class StatementCache {
  readonly #database: Database;
  readonly #capacity: number;
  readonly #statements = new Map<string, Statement>();

  constructor(database: Database, capacity: number) {
    this.#database = database;
    this.#capacity = capacity;
  }

  get(sqlText: string): Statement {
    const cached = this.#statements.get(sqlText);
    if (cached !== undefined) {
      this.#statements.delete(sqlText);
      this.#statements.set(sqlText, cached);
      return cached;
    }
    const statement = this.#database.prepare(sqlText);
    this.#statements.set(sqlText, statement);
    if (this.#statements.size > this.#capacity) {
      const oldest = this.#statements.keys().next();
      if (oldest.done !== true) {
        this.#statements.get(oldest.value)?.finalize();
        this.#statements.delete(oldest.value);
      }
    }
    return statement;
  }

  clear(): void {
    for (const statement of this.#statements.values()) {
      statement.finalize();
    }
    this.#statements.clear();
  }
}
