/**
 * `bun run migrate`: brings the gateway's database up to date (the one it would open:
 * `DATABASE_URL`, else `database.url` in the config file, else the default).
 * `bun run migrate --status` lists every migration and whether it was applied.
 *
 * Exit codes: 0 done, 1 the database or a migration failed, 2 bad arguments or a bad config file.
 */
import { ConfigError, loadDatabaseUrl } from '../config/load.ts';
import { describeError } from '../db/errors.ts';
import { DEFAULT_DATABASE_URL, createDatabase, type DatabaseHandle } from '../db/index.ts';
import { migrateToLatest, migrationStatus } from '../db/migrate.ts';

const USAGE = `Usage: bun run migrate [--status]

Applies every pending migration to the database the gateway uses: DATABASE_URL,
else database.url in the config file (SLUICE_CONFIG, else ./sluice.config.ts or
./sluice.config.json), else ${DEFAULT_DATABASE_URL}.

  --status   list the migrations and when each was applied; change nothing
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

  let handle: DatabaseHandle;
  try {
    handle = await createDatabase(await loadDatabaseUrl());
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
      await printStatus(handle);
    } else {
      await migrate(handle);
    }
    return 0;
  } catch (error) {
    console.error(`migrate: failed on ${handle.url}: ${describeError(error)}`);
    return 1;
  } finally {
    await handle.close();
  }
}

async function migrate(handle: DatabaseHandle): Promise<void> {
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

async function printStatus(handle: DatabaseHandle): Promise<void> {
  const entries = await migrationStatus(handle.db);
  const width = Math.max(0, ...entries.map((entry) => entry.name.length));
  for (const entry of entries) {
    console.log(`${entry.name.padEnd(width)}  ${entry.executedAt === null ? 'pending' : `applied ${entry.executedAt}`}`);
  }
  const pending = entries.filter((entry) => entry.executedAt === null).length;
  console.log(`${entries.length - pending} applied, ${pending} pending on ${handle.url}`);
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
