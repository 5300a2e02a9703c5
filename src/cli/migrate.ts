/**
 * `bun run migrate`: brings the database named by `DATABASE_URL` up to date.
 * `bun run migrate --status` lists every migration and whether it was applied.
 *
 * Exit codes: 0 done, 1 the database or a migration failed, 2 bad arguments.
 */
import { describeError } from '../db/errors.ts';
import { DEFAULT_DATABASE_URL, createDatabase, type DatabaseHandle } from '../db/index.ts';
import { migrateToLatest, migrationStatus } from '../db/migrate.ts';

const USAGE = `Usage: bun run migrate [--status]

Applies every pending migration to the database named by DATABASE_URL
(default ${DEFAULT_DATABASE_URL}).

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

  // An empty DATABASE_URL (as `DATABASE_URL= bun run migrate` sets) means "not set".
  const url = process.env.DATABASE_URL || DEFAULT_DATABASE_URL;
  let handle: DatabaseHandle;
  try {
    handle = await createDatabase(url);
  } catch (error) {
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
