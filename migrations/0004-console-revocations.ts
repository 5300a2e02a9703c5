/**
 * Console sign-outs that outlive a restart: a console session is a signed token no server
 * stores, so ending one before it expires means remembering its id until then. Kept in memory
 * only, a restarted instance (or one started after the sign-out) would take the token again.
 *
 * Frozen in time like every migration: imports no app code, takes `Kysely<any>`, runs
 * unchanged on SQLite and Postgres (text only).
 */
import type { Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('console_revocations')
    .addColumn('session_id', 'text', (col) => col.notNull().primaryKey())
    // ISO-8601: the session's own expiry, after which its row is of no use and is deleted.
    .addColumn('expires_at', 'text', (col) => col.notNull())
    .execute();
  await db.schema.createIndex('console_revocations_expires_at_idx').on('console_revocations').column('expires_at').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('console_revocations').execute();
}
