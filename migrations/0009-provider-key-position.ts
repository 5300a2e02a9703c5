/**
 * `provider_keys.position`: a key's place in its provider's list as the admin API was given it.
 * Every key of one POST or PATCH shares its `created_at`, so their order was what the database
 * returned (on Postgres a row rewritten, as rotate-encryption-key does, moved to the end), and the
 * first key is the one a gateway without the balance plugin sends. Rows from before keep 0: their
 * order is as it was, the id deciding ties.
 *
 * Frozen in time like every migration: imports no app code, takes `Kysely<any>`, runs unchanged
 * on SQLite and Postgres.
 */
import type { Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('provider_keys').addColumn('position', 'integer', (c) => c.notNull().defaultTo(0)).execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('provider_keys').dropColumn('position').execute();
}
