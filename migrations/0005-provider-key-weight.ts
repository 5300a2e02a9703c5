/**
 * A provider key's weight is a relative share, and fractions are allowed (0.5, 2.75): on Postgres
 * the `integer` column of 0001 rounded them (0.5 became 0, a key that then got no traffic), so it
 * becomes `double precision`. SQLite stores a fraction in that column as it is (a REAL value in an
 * INTEGER-affinity column stays REAL when it is not a whole number), so there it changes nothing.
 *
 * Frozen in time like every migration: imports no app code, takes `Kysely<any>`; the change is
 * Postgres's own statement, so it asks which database it runs on.
 */
import { PostgresAdapter, sql, type Kysely } from 'kysely';

const onPostgres = (db: Kysely<any>): boolean => db.getExecutor().adapter instanceof PostgresAdapter;

export async function up(db: Kysely<any>): Promise<void> {
  if (!onPostgres(db)) return;
  await sql`alter table provider_keys alter column weight type double precision`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  if (!onPostgres(db)) return;
  await sql`alter table provider_keys alter column weight type integer using round(weight)`.execute(db);
}
