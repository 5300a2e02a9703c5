/**
 * `bun run migrate`: brings the gateway's database up to date (the one it would open:
 * `DATABASE_URL`, else `database.url` in the config file, else the default).
 * `bun run migrate --status` lists every migration and whether it was applied.
 *
 * `--status` changes nothing: a SQLite file is opened as it is (no folder or file made, no journal
 * mode set), and one that is not there is reported (exit 1), not created.
 *
 * Exit codes: 0 done, 1 the database or a migration failed (or, with --status, the SQLite file
 * is not there, or the database holds a migration this version does not know), 2 bad arguments
 * or a bad config file.
 */
import { Database as SqliteDatabase } from 'bun:sqlite';
import { existsSync, statSync } from 'node:fs';
import { Kysely } from 'kysely';
import { ConfigError, loadDatabaseUrl } from '../config/load.ts';
import { describeError } from '../db/errors.ts';
import { DEFAULT_DATABASE_URL, createDatabase, maskDatabaseUrl, parseDatabaseUrl, type Database, type DatabaseHandle } from '../db/index.ts';
import { migrateToLatest, migrationStatus } from '../db/migrate.ts';
import { BunSqliteDialect, SQLITE_MEMORY } from '../db/sqlite-dialect.ts';

const USAGE = `Usage: bun run migrate [--status]

Applies every pending migration to the database the gateway uses: DATABASE_URL,
else database.url in the config file (SLUICE_CONFIG, else ./sluice.config.ts or
./sluice.config.json), else ${DEFAULT_DATABASE_URL}.

  --status   list the migrations and when each was applied; change nothing
             (a SQLite file that is not there is reported, not created; exits 1
             when the database holds migrations this version does not know)
  --help     show this text`;

async function main(args: readonly string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    console.log(USAGE);
    return 0;
  }
  const unknown = args.filter((arg) => arg !== '--status');
  if (unknown.length > 0) {
    console.error(`migrate: unknown argument ${unknown.join(' ')}\n\n${USAGE}`);
    return 2;
  }
  const statusOnly = args.includes('--status');

  let handle: OpenDatabase;
  try {
    const url = await loadDatabaseUrl();
    const opened = statusOnly ? await openForStatus(url) : await createDatabase(url);
    if (typeof opened === 'string') {
      console.error(`migrate: ${opened}`);
      return 1;
    }
    handle = opened;
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`migrate: ${error.message}`);
      return 2;
    }
    console.error(`migrate: ${describeError(error)}`);
    return 1;
  }

  try {
    if (statusOnly) {
      return await printStatus(handle);
    }
    await migrate(handle);
    return 0;
  } catch (error) {
    console.error(`migrate: failed on ${handle.url}: ${describeError(error)}`);
    return 1;
  } finally {
    await handle.close();
  }
}

/** What a run needs of the database: `--status` makes do with a SQLite file opened as it is. */
type OpenDatabase = Pick<DatabaseHandle, 'db' | 'url' | 'close'>;

/**
 * The database for `--status`, opened so that reading it changes nothing: a SQLite file as it
 * is (createDatabase would make it and its folders, and set its journal mode). A SQLite file
 * that is not there is the answer itself, as a message.
 */
async function openForStatus(url: string): Promise<OpenDatabase | string> {
  const target = parseDatabaseUrl(url);
  if (target.dialect !== 'sqlite' || target.filename === SQLITE_MEMORY) {
    return createDatabase(url);
  }
  if (!existsSync(target.filename)) {
    return `no SQLite database at ${target.filename}; nothing was created (check DATABASE_URL or database.url in the config file; bun run migrate creates it)`;
  }
  if (statSync(target.filename).isDirectory()) {
    return `${target.filename} is a folder, not a SQLite database`;
  }
  // Not read-only: a read-only connection cannot remove the -wal and -shm files it makes beside a WAL database on closing.
  const database = new SqliteDatabase(target.filename, { create: false, readwrite: true, strict: true });
  const db = new Kysely<Database>({ dialect: new BunSqliteDialect({ database }) });
  return { db, url: maskDatabaseUrl(url.trim()), close: () => db.destroy() };
}

async function migrate(handle: OpenDatabase): Promise<void> {
  const { applied } = await migrateToLatest(handle.db);
  for (const name of applied) {
    console.log(`applied ${name}`);
  }
  const summary =
    applied.length === 0
      ? `${handle.url} is already up to date`
      : `applied ${applied.length} migration${applied.length === 1 ? '' : 's'} to ${handle.url}, now up to date`;
  console.log(`done: ${summary}`);
}

/**
 * Prints the status; the exit code is 1 when the database holds migrations this version does not
 * know (a newer sluice migrated it), which `migrate` and the gateway refuse.
 */
async function printStatus(handle: OpenDatabase): Promise<number> {
  const entries = await migrationStatus(handle.db);
  const width = Math.max(0, ...entries.map((entry) => entry.name.length));
  for (const entry of entries) {
    const state =
      entry.executedAt === null
        ? 'pending'
        : `applied ${entry.executedAt}${entry.known ? '' : ', unknown to this version (migrated by a newer sluice?)'}`;
    console.log(`${entry.name.padEnd(width)}  ${state}`);
  }
  const pending = entries.filter((entry) => entry.executedAt === null).length;
  const unknown = entries.filter((entry) => !entry.known).length;
  console.log(
    `${entries.length - pending} applied, ${pending} pending` +
      `${unknown === 0 ? '' : `, ${unknown} unknown to this version`} on ${handle.url}`,
  );
  if (unknown === 0) {
    return 0;
  }
  console.error(
    `migrate: ${handle.url} holds ${unknown} migration${unknown === 1 ? '' : 's'} this version of sluice does not know; ` +
      'neither migrate nor the gateway will run on it: upgrade sluice to the version that migrated it',
  );
  return 1;
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
