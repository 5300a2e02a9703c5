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
