import type { AbortableOperationOptions, CompiledQuery, DatabaseConnection, Dialect, Driver, TransactionSettings } from 'kysely';
import { GatewayError } from '../errors.ts';

/**
 * Database errors, the same way on both dialects.
 *
 * Portable checks for the constraint errors repositories turn into answers (409 on a
 * duplicate email, 404 on an unknown user id, ...). bun:sqlite and Bun's Postgres client
 * report them differently: SQLite by an extended result code name in `code`, Postgres by
 * the SQLSTATE in `errno` (Bun keeps its own `ERR_POSTGRES_SERVER_ERROR` in `code`).
 */

const SQLITE_UNIQUE_CODES: ReadonlySet<string> = new Set(['SQLITE_CONSTRAINT_UNIQUE', 'SQLITE_CONSTRAINT_PRIMARYKEY']);
const SQLITE_FOREIGN_KEY_CODE = 'SQLITE_CONSTRAINT_FOREIGNKEY';
const POSTGRES_UNIQUE_VIOLATION = '23505';
const POSTGRES_FOREIGN_KEY_VIOLATION = '23503';
const POSTGRES_UNSTORABLE_TEXT = '22021';

function field(error: unknown, name: 'code' | 'errno'): unknown {
  return typeof error === 'object' && error !== null && name in error
    ? (error as Record<typeof name, unknown>)[name]
    : undefined;
}

/** True when the error is a unique or primary key violation, on SQLite or Postgres. */
export function isUniqueViolation(error: unknown): boolean {
  const code = field(error, 'code');
  return (
    (typeof code === 'string' && SQLITE_UNIQUE_CODES.has(code)) || field(error, 'errno') === POSTGRES_UNIQUE_VIOLATION
  );
}

/**
 * True when Postgres refused a text value it cannot store (SQLSTATE 22021: a NUL character,
 * which a JSON string may hold and a Postgres `text` may not). SQLite stores such text.
 */
export function isUnstorableText(error: unknown): boolean {
  return field(error, 'errno') === POSTGRES_UNSTORABLE_TEXT;
}

/** True when the error is a foreign key violation (a row that points at nothing, or is still pointed at). */
export function isForeignKeyViolation(error: unknown): boolean {
  return field(error, 'code') === SQLITE_FOREIGN_KEY_CODE || field(error, 'errno') === POSTGRES_FOREIGN_KEY_VIOLATION;
}

/**
 * An error's message, plus Bun's `code` when the message does not already say it:
 * "Failed to connect" alone does not tell refused from timed out from a TLS failure.
 */
export function describeError(error: unknown): string {
  if (!(error instanceof Error)) {
    return String(error);
  }
  const code = field(error, 'code');
  return typeof code === 'string' && code !== '' && !error.message.includes(code)
    ? `${error.message} (${code})`
    : error.message;
}

/** Bun's Postgres client codes for a connection that could not be made or was lost. */
const POSTGRES_CONNECTION_CODES: ReadonlySet<string> = new Set([
  'ERR_POSTGRES_CONNECTION_REFUSED',
  'ERR_POSTGRES_CONNECTION_CLOSED',
  'ERR_POSTGRES_CONNECTION_TIMEOUT',
  'ERR_POSTGRES_IDLE_TIMEOUT',
  'ERR_POSTGRES_LIFETIME_TIMEOUT',
]);

/**
 * SQLSTATEs of a server that takes no writes now: out of disk (53100) or other resources (53000,
 * 53200), or read-only (25006: a standby, as the old primary is after a failover, or a database
 * set `default_transaction_read_only`).
 */
const POSTGRES_UNWRITABLE_STATES: ReadonlySet<string> = new Set(['53000', '53100', '53200', '25006']);

/**
 * SQLite result codes of a file that takes no writes now: its disk full (SQLITE_FULL), the file
 * or its folder read-only, or the file moved away (SQLITE_READONLY and its extended codes).
 */
const SQLITE_UNWRITABLE = /^SQLITE_(FULL|READONLY)/;

/**
 * SQLite result codes of a database that cannot answer now, besides {@link SQLITE_UNWRITABLE}: a
 * lock still held when `busy_timeout` ran out (SQLITE_BUSY, SQLITE_LOCKED), an I/O error of the disk
 * under it (SQLITE_IOERR and its extended codes).
 */
const SQLITE_UNAVAILABLE = /^SQLITE_(BUSY|LOCKED|IOERR)/;

/**
 * SQLSTATEs of a server that cannot serve now, rather than of a query that is wrong: connection
 * exceptions (class 08), too many connections (53300), a statement stopped by `statement_timeout`
 * (57014), a lock not to be had within `lock_timeout` (55P03), a server shutting down or starting
 * up (57P01, 57P02, 57P03), and those of {@link POSTGRES_UNWRITABLE_STATES}.
 */
const POSTGRES_UNAVAILABLE_STATES: ReadonlySet<string> = new Set(['53300', '57014', '55P03', '57P01', '57P02', '57P03', ...POSTGRES_UNWRITABLE_STATES]);

/** The SQLSTATE that `statement_timeout` cancels a statement with (also a cancel request's). */
const POSTGRES_QUERY_CANCELED = '57014';

/**
 * True when a driver's error says the database cannot answer now (unreachable, connection lost,
 * overloaded, locked past the wait allowed, a statement stopped by `statement_timeout`, or no
 * writes taken now: full or read-only), as opposed to a query it refused: on Postgres the
 * connection codes and SQLSTATEs above; on SQLite a lock still held when `busy_timeout` ran out
 * and I/O errors ({@link SQLITE_UNAVAILABLE}) and {@link SQLITE_UNWRITABLE}.
 */
function isUnavailableDriverError(error: unknown): error is Error {
  if (!(error instanceof Error)) {
    return false;
  }
  const code = field(error, 'code');
  if (typeof code === 'string' && (POSTGRES_CONNECTION_CODES.has(code) || SQLITE_UNAVAILABLE.test(code) || SQLITE_UNWRITABLE.test(code))) {
    return true;
  }
  const state = field(error, 'errno');
  return typeof state === 'string' && (state.startsWith('08') || POSTGRES_UNAVAILABLE_STATES.has(state));
}

/**
 * The gateway's own database could not answer a call within the deadline the caller gave it (an
 * AbortSignal of its own that ran out): thrown by that caller, with the abort as its cause. Only a
 * signal that belongs to the database call says so; any other TimeoutError is not the database's.
 */
export class DatabaseUnavailableError extends Error {
  constructor(override readonly cause: unknown) {
    super(`The database did not answer in time: ${describeError(cause)}`);
    this.name = 'DatabaseUnavailableError';
  }
}

/**
 * Errors of the gateway's own database marked as "cannot answer now" where they were thrown (by
 * {@link markingUnavailable}), kept as they are (same object, code and message), so a failure of
 * anything else that happens to look alike (a plugin's own SQLite file, its own Postgres) is not
 * taken for the gateway's database being down.
 */
const unavailable = new WeakSet<Error>();

function mark(error: unknown): never {
  if (isUnavailableDriverError(error)) {
    unavailable.add(error);
  }
  throw error;
}

/**
 * The dialect with its driver's failures marked (see {@link isDatabaseUnavailable}): connecting,
 * each query and each transaction step.
 */
export function markingUnavailable(dialect: Dialect): Dialect {
  return {
    createAdapter: () => dialect.createAdapter(),
    createQueryCompiler: () => dialect.createQueryCompiler(),
    createIntrospector: (db) => dialect.createIntrospector(db),
    createDriver: () => new MarkingDriver(dialect.createDriver()),
  };
}

class MarkingDriver implements Driver {
  /** Connections whose queries are marked already: a pool hands the same one out many times. */
  private readonly patched = new WeakSet<DatabaseConnection>();

  constructor(private readonly driver: Driver) {
    const { savepoint, rollbackToSavepoint, releaseSavepoint } = driver;
    // Optional in a driver, and Kysely asks whether they are there: defined only when they are.
    if (savepoint) this.savepoint = (c, name, compile) => savepoint.call(driver, c, name, compile).catch(mark);
    if (rollbackToSavepoint) this.rollbackToSavepoint = (c, name, compile) => rollbackToSavepoint.call(driver, c, name, compile).catch(mark);
    if (releaseSavepoint) this.releaseSavepoint = (c, name, compile) => releaseSavepoint.call(driver, c, name, compile).catch(mark);
  }

  savepoint?: Driver['savepoint'];
  rollbackToSavepoint?: Driver['rollbackToSavepoint'];
  releaseSavepoint?: Driver['releaseSavepoint'];

  init(options?: AbortableOperationOptions): Promise<void> {
    return this.driver.init(options).catch(mark);
  }

  async acquireConnection(options?: AbortableOperationOptions): Promise<DatabaseConnection> {
    const connection = await this.driver.acquireConnection(options).catch(mark);
    if (!this.patched.has(connection)) {
      // Patched in place, as Kysely does for its query log: the driver's own methods get the
      // connection back unchanged (its private fields, its identity).
      const executeQuery = connection.executeQuery.bind(connection);
      const streamQuery = connection.streamQuery.bind(connection);
      connection.executeQuery = <R>(query: CompiledQuery, queryOptions?: AbortableOperationOptions) => executeQuery<R>(query, queryOptions).catch(mark);
      connection.streamQuery = async function* <R>(query: CompiledQuery, chunkSize: number, queryOptions?: AbortableOperationOptions) {
        try {
          yield* streamQuery<R>(query, chunkSize, queryOptions);
        } catch (error) {
          mark(error);
        }
      };
      this.patched.add(connection);
    }
    return connection;
  }

  beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    return this.driver.beginTransaction(connection, settings).catch(mark);
  }

  commitTransaction(connection: DatabaseConnection): Promise<void> {
    return this.driver.commitTransaction(connection).catch(mark);
  }

  rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    return this.driver.rollbackTransaction(connection).catch(mark);
  }

  releaseConnection(connection: DatabaseConnection, options?: AbortableOperationOptions): Promise<void> {
    return this.driver.releaseConnection(connection, options);
  }

  destroy(options?: AbortableOperationOptions): Promise<void> {
    return this.driver.destroy(options);
  }
}

/** How deep {@link databaseOutage} looks through causes (a hook's failure wraps the error it threw). */
const MAX_CAUSE_DEPTH = 4;

/**
 * The error that says the gateway's database cannot answer now, when `error` is one or was caused
 * by one (a plugin hook's failure, an error a plugin wrapped): a failure of the gateway's database
 * marked where it happened, or a {@link DatabaseUnavailableError} of a call's own deadline. Null
 * otherwise, whatever the error is called (a plugin's fetch that timed out is not the database's).
 */
export function databaseOutage(error: unknown): Error | null {
  let current = error;
  for (let depth = 0; depth <= MAX_CAUSE_DEPTH && current instanceof Error; depth++) {
    if (current instanceof DatabaseUnavailableError || unavailable.has(current)) {
      return current;
    }
    current = current.cause;
  }
  return null;
}

/**
 * True when the gateway's database could not answer now (see {@link databaseOutage}): not a bug
 * but worth a retry shortly, so the gateway answers 503, not 500.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  return databaseOutage(error) !== null;
}

/** True when Postgres stopped a statement (57014: its `statement_timeout` ran out, or it was cancelled). */
export function isStatementTimeout(error: unknown): boolean {
  return field(error, 'errno') === POSTGRES_QUERY_CANCELED;
}

/**
 * The answer to an admin report that ran past its statement timeout: 503 `not_ready` like a
 * database that cannot answer, but without Retry-After and saying to narrow it, since the same
 * report would time out again.
 */
export function reportTooSlow(timeoutMs: number, error: unknown): GatewayError {
  return new GatewayError(
    'not_ready',
    `The report took longer than ${timeoutMs / 1000} s, the longest the database may spend on one, and was stopped. ` +
      'Narrow it (a shorter time range with from and to, or a filter such as key_id or model) and ask again.',
    { cause: error },
  );
}

/** Whether a driver's error is one of a database full or read-only (see {@link SQLITE_UNWRITABLE}). */
function isUnwritable(error: unknown): boolean {
  const code = field(error, 'code');
  const state = field(error, 'errno');
  return (
    (typeof code === 'string' && SQLITE_UNWRITABLE.test(code)) ||
    (typeof state === 'string' && POSTGRES_UNWRITABLE_STATES.has(state))
  );
}

/** Seconds a client is told to wait (`Retry-After`) when the database cannot answer. */
export const DATABASE_RETRY_AFTER_S = 5;

/**
 * The answer to a request the database could not serve ({@link isDatabaseUnavailable}): 503
 * `not_ready` (the gateway cannot serve it now, as /ready says while the database is down) with
 * `Retry-After`. The message tells a slow database from an unreachable one and keeps the driver's
 * words (no secret is in them) out of it: those go to the log.
 */
export function databaseUnavailable(error: unknown): GatewayError {
  const outage = databaseOutage(error) ?? error;
  const slow = outage instanceof DatabaseUnavailableError || field(outage, 'errno') === POSTGRES_QUERY_CANCELED;
  const what = slow ? 'did not answer in time' : isUnwritable(outage) ? 'takes no writes now (full or read-only)' : 'is unreachable';
  return new GatewayError('not_ready', `The gateway's database ${what}, so this request could not be served. Retry shortly.`, {
    headers: { 'retry-after': String(DATABASE_RETRY_AFTER_S) },
    cause: outage,
  });
}
