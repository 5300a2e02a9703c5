/**
 * An index on `alerts_sent (created_at, id)`: pruning reads the rows created before the request
 * log's retention in that order, a batch at a time, and without it every batch scanned (and
 * sorted) the whole table, whose rows of `total` budgets and current periods stay for good.
 *
 * Frozen in time like every migration: imports no app code, takes `Kysely<any>`, runs unchanged
 * on SQLite and Postgres.
 */
import type { Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.createIndex('alerts_sent_created_at_idx').on('alerts_sent').columns(['created_at', 'id']).execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('alerts_sent_created_at_idx').execute();
}
