/**
 * Runs the migrations listed in migrations/index.ts with Kysely's Migrator.
 *
 * On both dialects a run is one transaction (Postgres has transactional DDL, and the
 * SQLite dialect turns it on), so a failed run leaves the schema as it was before it.
 */
import { PostgresAdapter, sql, type Kysely } from 'kysely';
import { Migrator, NO_MIGRATIONS, type Migration, type MigrationResultSet } from 'kysely/migration';
import { migrations as allMigrations } from '../../migrations/index.ts';
import { describeError } from './errors.ts';

/** Migrations by name; Kysely runs them in name order. */
export type MigrationSet = Readonly<Record<string, Migration>>;

export interface MigrateOptions {
  /**
   * The migrations to run.
   * @default the list in migrations/index.ts
   */
  readonly migrations?: MigrationSet;
}

export interface MigrationStatusEntry {
  readonly name: string;
  /** When it was applied (ISO-8601), or `null` while pending. */
  readonly executedAt: string | null;
  /**
   * `false` for a migration the database says was applied that this code does not list: the
   * database was migrated by a newer version, which `migrateToLatest` (and the gateway) refuse.
   */
  readonly known: boolean;
}

/** A migration run that failed, or could not start. */
export class MigrationError extends Error {
  /** The migration that threw, or `null` when the run failed before any migration started. */
  readonly migrationName: string | null;

  constructor(message: string, migrationName: string | null, cause: unknown) {
    super(message, { cause });
    this.name = 'MigrationError';
    this.migrationName = migrationName;
  }
}

/**
 * Applies every pending migration, in name order. Returns the names it applied (empty
 * when the schema was already up to date); throws a {@link MigrationError} otherwise.
 */
export async function migrateToLatest<DB>(db: Kysely<DB>, options: MigrateOptions = {}): Promise<{ applied: string[] }> {
  return withoutStatementTimeout(db, async (conn) => {
    const migrator = await createMigrator(conn, options);
    const names = succeeded(await migrator.migrateToLatest(), 'apply');
    return { applied: names };
  });
}

/**
 * Runs `run` with no `statement_timeout` on Postgres: the pool's connections carry one (see
 * DEFAULT_STATEMENT_TIMEOUT_MS) that a migration over a big table, or an instance waiting for
 * another's migration lock, may well need more than. One connection, lifted for the run and set
 * back after (RESET returns to the value the connection started with). SQLite has none to lift.
 */
async function withoutStatementTimeout<DB, T>(db: Kysely<DB>, run: (db: Kysely<DB>) => Promise<T>): Promise<T> {
  if (!(db.getExecutor().adapter instanceof PostgresAdapter) || db.isTransaction) {
    return run(db);
  }
  let lifted = false;
  try {
    return await db.connection().execute(async (conn) => {
      await sql`set statement_timeout = 0`.execute(conn);
      lifted = true;
      try {
        return await run(conn);
      } finally {
        await sql`reset statement_timeout`.execute(conn);
      }
    });
  } catch (error) {
    // The first query of a run: this is where an unreachable server shows up.
    if (lifted) throw error;
    throw new MigrationError(`Could not query the database: ${describeError(error)}`, null, error);
  }
}

/**
 * Reverts the last `steps` applied migrations (`'all'`: every one), newest first.
 * Returns the names it reverted; throws a {@link MigrationError} otherwise.
 */
export async function migrateDown<DB>(
  db: Kysely<DB>,
  steps: number | 'all' = 1,
  options: MigrateOptions = {},
): Promise<{ reverted: string[] }> {
  if (steps !== 'all' && (!Number.isInteger(steps) || steps < 0)) {
    throw new Error(`steps must be a non-negative integer or 'all', got ${steps}`);
  }
  return withoutStatementTimeout(db, async (conn) => {
    const migrator = await createMigrator(conn, options);
    if (steps === 'all') {
      return { reverted: succeeded(await migrator.migrateTo(NO_MIGRATIONS), 'revert') };
    }
    const reverted: string[] = [];
    // Kysely's migrateDown goes one step at a time; each step is its own transaction.
    for (let step = 0; step < steps; step++) {
      const names = succeeded(await migrator.migrateDown(), 'revert');
      if (names.length === 0) {
        break;
      }
      reverted.push(...names);
    }
    return { reverted };
  });
}

/**
 * Every migration in name order, with when it was applied (`null`: pending): the known ones, and
 * any the database has applied that this code does not list (`known: false`).
 */
export async function migrationStatus<DB>(
  db: Kysely<DB>,
  options: MigrateOptions = {},
): Promise<MigrationStatusEntry[]> {
  const set = options.migrations ?? allMigrations;
  const schema = await ownSchema(db);
  const migrator = newMigrator(db, set, schema);
  try {
    const infos = await migrator.getMigrations();
    const entries: MigrationStatusEntry[] = infos.map((info) => ({
      name: info.name,
      executedAt: info.executedAt?.toISOString() ?? null,
      known: true,
    }));
    // Kysely's own list holds only the migrations it was given: read the bookkeeping for the rest.
    for (const row of await appliedMigrations(db, schema)) {
      if (!Object.hasOwn(set, row.name)) {
        const at = new Date(row.timestamp);
        // Written by another program: shown as it is when it is not a time this can read.
        entries.push({ name: row.name, executedAt: Number.isNaN(at.getTime()) ? row.timestamp : at.toISOString(), known: false });
      }
    }
    return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  } catch (error) {
    throw new MigrationError(`Could not read the migration status: ${describeError(error)}`, null, error);
  }
}

/** Kysely's bookkeeping table (its default name, which the Migrator here keeps). */
const MIGRATION_TABLE = 'kysely_migration';

/** The rows of the bookkeeping table; none when it is not there yet. */
async function appliedMigrations<DB>(
  db: Kysely<DB>,
  schema: string | undefined,
): Promise<Array<{ name: string; timestamp: string }>> {
  const tables = await db.introspection.getTables({ withInternalKyselyTables: true });
  if (!tables.some((table) => table.name === MIGRATION_TABLE && table.schema === schema)) {
    return [];
  }
  const qualified = schema === undefined ? MIGRATION_TABLE : `${schema}.${MIGRATION_TABLE}`;
  const result = await sql<{ name: string; timestamp: string }>`select name, timestamp from ${sql.table(qualified)}`.execute(db);
  return result.rows;
}

async function createMigrator<DB>(db: Kysely<DB>, options: MigrateOptions): Promise<Migrator> {
  return newMigrator(db, options.migrations ?? allMigrations, await ownSchema(db));
}

/**
 * {@link migrationTableSchema}, refused on Postgres when no schema of the search_path exists: then
 * there is nowhere to migrate, and no status of ours to read (Kysely would read the bookkeeping of
 * whichever schema it finds one in).
 */
async function ownSchema<DB>(db: Kysely<DB>): Promise<string | undefined> {
  const schema = await migrationTableSchema(db);
  if (schema === undefined && db.getExecutor().adapter instanceof PostgresAdapter) {
    // current_schema() is null: no schema of the search_path exists, and Postgres would only say
    // "no schema has been selected to create in".
    const result = await sql<{ path: string }>`select current_setting('search_path') as path`.execute(db);
    throw new MigrationError(
      `No schema to create the tables in: the search_path (${result.rows[0]?.path ?? ''}) names none that exists. Create it (create schema …), or name one that exists in ?search_path= of DATABASE_URL.`,
      null,
      undefined,
    );
  }
  return schema;
}

function newMigrator<DB>(db: Kysely<DB>, set: MigrationSet, schema: string | undefined): Migrator {
  return new Migrator({ db, provider: { getMigrations: async () => ({ ...set }) }, migrationTableSchema: schema });
}

/** {@link currentPostgresSchema}, as a MigrationError when the database does not answer. */
async function migrationTableSchema<DB>(db: Kysely<DB>): Promise<string | undefined> {
  try {
    return await currentPostgresSchema(db);
  } catch (error) {
    // The first query of a run: this is where an unreachable server shows up.
    throw new MigrationError(`Could not query the database: ${describeError(error)}`, null, error);
  }
}

/**
 * On Postgres, the schema our tables go to (the first of `search_path`); `undefined` on SQLite.
 *
 * Kysely looks for its bookkeeping table across every schema it can see, so without this
 * a `kysely_migration` table left in another schema of the same database (another app, or
 * another sluice on its own `search_path`) would be taken for ours.
 */
async function currentPostgresSchema<DB>(db: Kysely<DB>): Promise<string | undefined> {
  // SQLite has no schemas: its introspector returns none, and no Postgres database has zero.
  const schemas = await db.introspection.getSchemas();
  if (schemas.length === 0) {
    return undefined;
  }
  const result = await sql<{ schema: string | null }>`select current_schema() as schema`.execute(db);
  return result.rows[0]?.schema ?? undefined;
}

function succeeded(resultSet: MigrationResultSet, verb: 'apply' | 'revert'): string[] {
  const { error, results = [] } = resultSet;
  if (error === undefined) {
    return results.filter((result) => result.status === 'Success').map((result) => result.migrationName);
  }
  const failed = results.find((result) => result.status === 'Error')?.migrationName ?? null;
  // Kysely refuses a database that has run a migration this code does not list.
  const hint = /previously executed migration .* is missing/.test(describeError(error))
    ? ' (was this database migrated by a newer version of sluice?)'
    : '';
  const message =
    failed === null
      ? `Could not ${verb} migrations: ${describeError(error)}${hint}`
      : `Migration "${failed}" failed to ${verb}: ${describeError(error)}. ${
          verb === 'apply'
            ? 'The whole run was rolled back: none of its migrations was applied.'
            : 'Its transaction was rolled back.'
        }`;
  throw new MigrationError(message, failed, error);
}
