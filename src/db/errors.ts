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
 * SQLSTATEs of a server that cannot serve now, rather than of a query that is wrong: connection
 * exceptions (class 08), too many connections (53300), a statement stopped by `statement_timeout`
 * (57014), a lock not to be had within `lock_timeout` (55P03), a server shutting down or starting
 * up (57P01, 57P02, 57P03).
 */
const POSTGRES_UNAVAILABLE_STATES: ReadonlySet<string> = new Set(['53300', '57014', '55P03', '57P01', '57P02', '57P03']);

/** The SQLSTATE that `statement_timeout` cancels a statement with (also a cancel request's). */
const POSTGRES_QUERY_CANCELED = '57014';

/**
 * True when the error says the database cannot answer now (unreachable, connection lost, overloaded,
 * locked past the wait allowed, or too slow for a deadline), as opposed to a query it refused:
 * on Postgres the connection codes and SQLSTATEs above; on SQLite a lock still held when
 * `busy_timeout` ran out (SQLITE_BUSY, SQLITE_LOCKED); on either an aborted wait (an AbortSignal's
 * `TimeoutError` or `AbortError`). Worth a retry shortly, so the gateway answers 503, not 500.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) {
    return false;
  }
  if (error.name === 'TimeoutError' || error.name === 'AbortError') {
    return true;
  }
  const code = field(error, 'code');
  if (typeof code === 'string' && (POSTGRES_CONNECTION_CODES.has(code) || /^SQLITE_(BUSY|LOCKED)/.test(code))) {
    return true;
  }
  const state = field(error, 'errno');
  return typeof state === 'string' && (state.startsWith('08') || POSTGRES_UNAVAILABLE_STATES.has(state));
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
  const slow = error instanceof Error && (error.name === 'TimeoutError' || field(error, 'errno') === POSTGRES_QUERY_CANCELED);
  const what = slow ? 'did not answer in time' : 'is unreachable';
  return new GatewayError('not_ready', `The gateway's database ${what}, so this request could not be served. Retry shortly.`, {
    headers: { 'retry-after': String(DATABASE_RETRY_AFTER_S) },
    cause: error,
  });
}
