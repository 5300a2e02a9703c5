/**
 * An index on `api_keys (status, expires_at, id)`: the expiring-keys check of alerts reads the
 * active keys expiring within its window a page at a time in (expires_at, id) order. With only
 * `api_keys_status_idx` and `api_keys_expires_at_idx`, SQLite took the status index (every live key
 * is `active`): each page read every active key and sorted them. On this one, each page is one
 * range of the index, already in order.
 *
 * Frozen in time like every migration: imports no app code, takes `Kysely<any>`, runs unchanged
 * on SQLite and Postgres.
 */
import type { Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.createIndex('api_keys_expiring_idx').on('api_keys').columns(['status', 'expires_at', 'id']).execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('api_keys_expiring_idx').execute();
}
