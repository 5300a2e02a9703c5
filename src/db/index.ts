/**
 * The one place a `DATABASE_URL` becomes a Kysely instance. Everything else takes the
 * `db` from the returned handle and never asks which database it is talking to.
 */
import { SQL } from 'bun';
import { statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { Kysely, sql, type RawBuilder } from 'kysely';
import { PostgresJSDialect } from 'kysely-postgres-js';
import type { Database } from './schema.ts';
import { isStatementTimeout, markingUnavailable, reportTooSlow } from './errors.ts';
import { BunSqliteDialect, SQLITE_MEMORY, openSqliteDatabase } from './sqlite-dialect.ts';

export type { Database } from './schema.ts';
export {
  DatabaseUnavailableError,
  databaseOutage,
  databaseUnavailable,
  describeError,
  isDatabaseUnavailable,
  isForeignKeyViolation,
  isUniqueViolation,
} from './errors.ts';

/** The URL used when `DATABASE_URL` is not set. */
export const DEFAULT_DATABASE_URL = 'sqlite://./data/sluice.db';

/** Postgres pool size when the URL has no `?max=`. */
export const DEFAULT_POSTGRES_POOL_SIZE = 10;

/**
 * How long the Postgres server lets one statement run (or wait for a lock) when the URL has no
 * `?statement_timeout=`: a locked table or a stuck server then fails a request within seconds
 * (answered 503) instead of holding it, and its connection, for as long as the lock lasts.
 * Migrations run without it.
 */
export const DEFAULT_STATEMENT_TIMEOUT_MS = 5000;

/**
 * How long making a Postgres connection may take, in seconds, when the URL has no
 * `?connect_timeout=` (libpq's name and unit; 0 for none): a server that takes the TCP connection
 * but never answers (hung, or a proxy in front of a dead one) fails a query in seconds, not in the
 * client's own 30.
 */
export const DEFAULT_CONNECT_TIMEOUT_S = 10;

/**
 * How long one statement of an admin report ({@link DatabaseHandle.report}: `/admin/usage`,
 * `/admin/logs`) may run on Postgres, unless the URL's `statement_timeout` is longer (or 0, none):
 * they aggregate over a whole time range, which the requests' bound would cut off on a big table.
 */
export const REPORT_STATEMENT_TIMEOUT_MS = 60_000;

/** How long `ping()` waits for an answer by default, so a readiness probe never hangs on a dead server. */
export const DEFAULT_PING_TIMEOUT_MS = 2000;

export type DatabaseDialect = 'sqlite' | 'postgres';

/**
 * `column` compared in byte order on both databases, as SQLite compares text: `collate "C"` on
 * Postgres, whose default collation may be linguistic (en_US, ICU: case and punctuation sorted
 * otherwise), so rows order, and cursors compare, the same wherever they are kept.
 */
export const byteOrder = (column: string, dialect: DatabaseDialect): RawBuilder<string> =>
  dialect === 'postgres' ? sql<string>`${sql.ref(column)} collate "C"` : sql<string>`${sql.ref(column)}`;

export interface DatabaseHandle {
  readonly db: Kysely<Database>;
  readonly dialect: DatabaseDialect;
  /** The URL it was opened with, password masked: safe to log. */
  readonly url: string;
  /** Closes the database (SQLite) or the pool (Postgres). Safe to call twice. */
  close(): Promise<void>;
  /**
   * `true` when a trivial query answers within the timeout; never throws. On a SQLite file, `false`
   * too once the file was deleted or replaced at its path since it was opened.
   */
  ping(timeoutMs?: number): Promise<boolean>;
  /**
   * Runs the reads of an admin report (aggregations over a time range). On Postgres they run in a
   * read-only transaction whose statements may take {@link REPORT_STATEMENT_TIMEOUT_MS} (SET LOCAL:
   * the pool's connections keep theirs), and a report that still runs past it is refused with a
   * 503 `not_ready` that says to narrow it, without Retry-After (the same report would time out
   * again). On SQLite `run` gets the database as it is.
   */
  report<T>(run: (db: Kysely<Database>) => Promise<T>): Promise<T>;
}

/** What a `DATABASE_URL` says, once understood. */
export type DatabaseTarget =
  | { readonly dialect: 'sqlite'; /** absolute path, or `:memory:` */ readonly filename: string }
  | {
      readonly dialect: 'postgres';
      /** The URL handed to Bun's client: our own parameters (`max`, `search_path`) taken out. */
      readonly connectionUrl: string;
      readonly max: number;
      /** Sent as the `search_path` of every connection, when set. */
      readonly searchPath: string | null;
      /** Sent as the `statement_timeout` of every connection, in ms; 0 for none. */
      readonly statementTimeoutMs: number;
      /** How long making a connection may take, in seconds; 0 for no bound. */
      readonly connectTimeoutS: number;
    };

const SUPPORTED_FORMS =
  'sqlite://RELATIVE/PATH (e.g. sqlite://./data/sluice.db), sqlite:///ABSOLUTE/PATH, sqlite::memory:, ' +
  'or postgres://USER:PASSWORD@HOST:PORT/DATABASE (postgresql:// also works; ?max=N sets the pool size, ' +
  `default ${DEFAULT_POSTGRES_POOL_SIZE}; ?search_path=SCHEMA picks the schema; ?statement_timeout=MS bounds each ` +
  `statement, default ${DEFAULT_STATEMENT_TIMEOUT_MS}, 0 for none)`;

const SQLITE_PREFIX = 'sqlite://';
const SQLITE_MEMORY_URLS: ReadonlySet<string> = new Set(['sqlite::memory:', 'sqlite://:memory:']);

/**
 * `scheme://user:…@` where what follows the colon holds a `/`, `?` or `#` before an `@`: a
 * password written without percent-encoding (or, rarely, an `@` in the path or query of a URL with
 * a port, which is then masked too: better too much than a password in a log).
 */
const AMBIGUOUS_USER_INFO = /^[a-z][a-z0-9+.-]*:\/\/[^:/?#@]*:[^@]*[/?#][^@]*@/i;

/** Query parameters a Postgres URL may carry a password in (libpq reads both). */
const PASSWORD_PARAMS = ['password', 'sslpassword'] as const;

/**
 * Replaces the password of a URL (the one after `user:` and the `password` / `sslpassword`
 * query parameters) with `***`, so it can be logged or put in an error message.
 */
export function maskDatabaseUrl(url: string): string {
  const parsed = URL.parse(url);
  if (parsed === null || AMBIGUOUS_USER_INFO.test(url)) {
    // A password holding an unencoded `/`, `?` or `#` ends the authority there for the URL parser,
    // which may still read the rest as a host and a port (`u:1234#secret@host` is host u, port 1234):
    // taken to the last `@` as written, as the one who wrote it meant.
    return maskUnparsedUrl(url);
  }
  const params = PASSWORD_PARAMS.filter((name) => parsed.searchParams.has(name));
  if (parsed.password === '' && params.length === 0) {
    // Nothing secret: hand it back exactly as written rather than as the URL parser re-spells it.
    return url;
  }
  if (parsed.password !== '') {
    parsed.password = '***';
  }
  for (const name of params) {
    parsed.searchParams.set(name, '***');
  }
  return parsed.href;
}

/**
 * The same for a URL too broken to parse (these end up in error messages). The user info ends
 * at the LAST `@` before the path, as the URL parser reads it, so `u:p@ss@host` hides `p@ss`.
 */
function maskUnparsedUrl(url: string): string {
  return url
    .replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/?#@]*:).*@/i, '$1***@')
    .replace(/([?&](?:ssl)?password=)[^&#]*/gi, '$1***');
}

/**
 * Reads a database URL; throws an Error naming the supported forms when it is not one.
 * A relative SQLite path is resolved against the current directory; `~/` is the home directory.
 */
export function parseDatabaseUrl(url: string): DatabaseTarget {
  const trimmed = url.trim();
  if (SQLITE_MEMORY_URLS.has(trimmed)) {
    return { dialect: 'sqlite', filename: SQLITE_MEMORY };
  }
  if (trimmed.startsWith(SQLITE_PREFIX)) {
    const path = trimmed.slice(SQLITE_PREFIX.length);
    if (path === '') {
      throw new Error(`DATABASE_URL "${trimmed}" names no file. Expected ${SUPPORTED_FORMS}`);
    }
    if (path.includes('?')) {
      throw new Error(`DATABASE_URL "${trimmed}": SQLite URLs take no parameters. Expected ${SUPPORTED_FORMS}`);
    }
    return { dialect: 'sqlite', filename: sqlitePath(trimmed, path) };
  }
  if (/^postgres(ql)?:\/\//i.test(trimmed)) {
    return parsePostgresUrl(trimmed);
  }
  throw new Error(`Unsupported DATABASE_URL "${maskDatabaseUrl(trimmed)}". Expected ${SUPPORTED_FORMS}`);
}

/**
 * A SQLite URL's path as a file name: `~/…` in the home directory, as a shell reads it (no shell
 * reads DATABASE_URL from a file or a service manager's environment, and a folder named `~` was
 * made), a relative path against the current directory. `~name/…`, another user's home, is refused
 * rather than taken for a folder named so.
 */
function sqlitePath(url: string, path: string): string {
  if (path === '~' || path.startsWith('~/')) {
    return join(homedir(), path.slice(1));
  }
  const user = /^~[^/]+\//.exec(path);
  if (user !== null) {
    throw new Error(
      `DATABASE_URL "${url}": ${user[0]} (another user's home) is not expanded; write the path out (sqlite:///home/NAME/…), or ./${user[0]}… for a folder named so`,
    );
  }
  return resolve(path);
}

/**
 * The URL with `localhost` where it names no host (`postgres://u:p@/db?host=/socket/folder`, libpq's
 * form for a Unix socket, which the URL parser refuses with user info in it), else as it is: the
 * client connects where `?host=` says, whatever host the URL names.
 */
function withPlaceholderHost(url: string): { url: string; hostless: boolean } {
  const start = url.indexOf('//') + 2;
  const end = url.slice(start).search(/[/?#]/);
  const authority = end === -1 ? url.slice(start) : url.slice(start, start + end);
  if (authority.slice(authority.lastIndexOf('@') + 1) !== '') return { url, hostless: false };
  const at = start + authority.length;
  return { url: `${url.slice(0, at)}localhost${url.slice(at)}`, hostless: true };
}

function parsePostgresUrl(url: string): DatabaseTarget {
  const { url: hosted, hostless } = withPlaceholderHost(url);
  let parsed: URL;
  try {
    parsed = new URL(hosted);
  } catch {
    throw new Error(
      `DATABASE_URL "${maskDatabaseUrl(url)}" is not a valid URL (a user name or password holding / ? # @ or % is written percent-encoded: %2F %3F %23 %40 %25). Expected ${SUPPORTED_FORMS}`,
    );
  }
  if (parsed.hostname === '' || (hostless && !parsed.searchParams.get('host'))) {
    throw new Error(
      `DATABASE_URL "${maskDatabaseUrl(url)}" names no host (for a Unix socket, put its folder in ?host=: postgres://USER:PASSWORD@/DATABASE?host=/run/postgresql). Expected ${SUPPORTED_FORMS}`,
    );
  }
  const maxParam = parsed.searchParams.get('max');
  let max = DEFAULT_POSTGRES_POOL_SIZE;
  if (maxParam !== null) {
    max = Number(maxParam);
    if (!Number.isInteger(max) || max < 1) {
      throw new Error(`DATABASE_URL "${maskDatabaseUrl(url)}": max must be a positive integer, got "${maxParam}"`);
    }
  }
  const searchPath = parsed.searchParams.get('search_path');
  if (searchPath === '') {
    throw new Error(`DATABASE_URL "${maskDatabaseUrl(url)}": search_path is empty`);
  }
  const timeoutParam = parsed.searchParams.get('statement_timeout');
  let statementTimeoutMs = DEFAULT_STATEMENT_TIMEOUT_MS;
  if (timeoutParam !== null) {
    statementTimeoutMs = Number(timeoutParam);
    if (timeoutParam === '' || !Number.isInteger(statementTimeoutMs) || statementTimeoutMs < 0 || statementTimeoutMs > 2_147_483_647) {
      throw new Error(
        `DATABASE_URL "${maskDatabaseUrl(url)}": statement_timeout must be a whole number of milliseconds (0 for none), got "${timeoutParam}"`,
      );
    }
  }
  const connectParam = parsed.searchParams.get('connect_timeout');
  let connectTimeoutS = DEFAULT_CONNECT_TIMEOUT_S;
  if (connectParam !== null) {
    connectTimeoutS = Number(connectParam);
    if (connectParam === '' || !Number.isInteger(connectTimeoutS) || connectTimeoutS < 0 || connectTimeoutS > 2_147_483) {
      throw new Error(`DATABASE_URL "${maskDatabaseUrl(url)}": connect_timeout must be a whole number of seconds (0 for none), got "${connectParam}"`);
    }
  }
  parsed.searchParams.delete('max');
  parsed.searchParams.delete('search_path');
  parsed.searchParams.delete('statement_timeout');
  parsed.searchParams.delete('connect_timeout');
  return { dialect: 'postgres', connectionUrl: parsed.toString(), max, searchPath, statementTimeoutMs, connectTimeoutS };
}

/**
 * Opens the database a URL names (see {@link parseDatabaseUrl} for the forms).
 *
 * SQLite is opened at once, so a path that cannot be created or written fails here, at boot.
 * Postgres connects lazily, on the first query: run the migrations (or `ping()`) to find
 * out whether the server answers.
 */
export async function createDatabase(url: string): Promise<DatabaseHandle> {
  const target = parseDatabaseUrl(url);
  const maskedUrl = maskDatabaseUrl(url.trim());
  if (target.dialect === 'sqlite') {
    let database: ReturnType<typeof openSqliteDatabase>;
    try {
      database = openSqliteDatabase(target.filename);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new Error(`Cannot open the SQLite database at ${target.filename}: ${reason}`, { cause: error });
    }
    const sameFile = target.filename === SQLITE_MEMORY ? () => true : fileIdentity(target.filename);
    return createHandle(new Kysely<Database>({ dialect: markingUnavailable(new BunSqliteDialect({ database })) }), 'sqlite', maskedUrl, null, sameFile);
  }
  const client = new SQL(target.connectionUrl, {
    max: target.max,
    connectionTimeout: target.connectTimeoutS,
    connection: {
      statement_timeout: String(target.statementTimeoutMs),
      ...(target.searchPath === null ? {} : { search_path: target.searchPath }),
    },
  });
  // controlPostgres: the dialect opens a separate one-connection client (lazily) to cancel a
  // query that was aborted, instead of waiting for a free connection in a busy pool.
  const dialect = new PostgresJSDialect({ postgres: client, controlPostgres: SQL });
  const reportTimeoutMs = target.statementTimeoutMs === 0 ? 0 : Math.max(target.statementTimeoutMs, REPORT_STATEMENT_TIMEOUT_MS);
  return createHandle(new Kysely<Database>({ dialect: markingUnavailable(dialect) }), 'postgres', maskedUrl, reportTimeoutMs, () => true);
}

/**
 * Whether the file at `path` is still the one there now (same device and inode). SQLite keeps
 * using the file it opened when it is deleted, or moved and another put in its place: its writes
 * then go where no restart will find them, and `ping()` must say so.
 */
function fileIdentity(path: string): () => boolean {
  const opened = statSync(path);
  return () => {
    const now = statSync(path, { throwIfNoEntry: false });
    return now !== undefined && now.ino === opened.ino && now.dev === opened.dev;
  };
}

/**
 * `reportTimeoutMs`: the statement timeout of a report on Postgres (0 for none); null on SQLite.
 * `inPlace`: false once a SQLite file is no longer at its path (see {@link fileIdentity}).
 */
function createHandle(db: Kysely<Database>, dialect: DatabaseDialect, url: string, reportTimeoutMs: number | null, inPlace: () => boolean): DatabaseHandle {
  let closing: Promise<void> | undefined;
  return {
    db,
    dialect,
    url,
    close() {
      closing ??= db.destroy();
      return closing;
    },
    async ping(timeoutMs = DEFAULT_PING_TIMEOUT_MS) {
      if (closing !== undefined || !inPlace()) {
        return false;
      }
      try {
        await sql`select 1`.execute(db, { signal: AbortSignal.timeout(timeoutMs) });
        return true;
      } catch {
        return false;
      }
    },
    async report(run) {
      if (reportTimeoutMs === null) {
        return run(db);
      }
      try {
        return await db
          .transaction()
          .setAccessMode('read only')
          .execute(async (tx) => {
            // set_config(…, true) is SET LOCAL with a bound value: it ends with the transaction.
            await sql`select set_config('statement_timeout', ${String(reportTimeoutMs)}, true)`.execute(tx);
            return run(tx);
          });
      } catch (error) {
        throw isStatementTimeout(error) ? reportTooSlow(reportTimeoutMs, error) : error;
      }
    },
  };
}
