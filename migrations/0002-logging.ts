/**
 * The logging plugin's additions: alerts remembered once sent, and an index for usage by team.
 *
 * Frozen in time like every migration: imports no app code, takes `Kysely<any>`, runs
 * unchanged on SQLite and Postgres (text, integer and double precision only).
 */
import type { Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  // One row per alert ever raised, keyed by (kind, subject, threshold, period) so each is sent
  // once however many instances and restarts see it; the row is claimed before the webhook is called.
  await db.schema
    .createTable('alerts_sent')
    .addColumn('id', 'text', (col) => col.notNull().primaryKey())
    .addColumn('kind', 'text', (col) => col.notNull())
    .addColumn('subject', 'text', (col) => col.notNull())
    .addColumn('threshold', 'double precision', (col) => col.notNull())
    .addColumn('period', 'text', (col) => col.notNull())
    // 'pending' until the receiver answered 2xx, then 'sent'.
    .addColumn('status', 'text', (col) => col.notNull().defaultTo('pending'))
    .addColumn('attempts', 'integer', (col) => col.notNull().defaultTo(0))
    .addColumn('payload', 'text', (col) => col.notNull())
    .addColumn('next_attempt_at', 'text', (col) => col.notNull())
    .addColumn('last_error', 'text')
    .addColumn('created_at', 'text', (col) => col.notNull())
    .addColumn('sent_at', 'text')
    .execute();
  await db.schema
    .createIndex('alerts_sent_status_next_idx')
    .on('alerts_sent')
    .columns(['status', 'next_attempt_at'])
    .execute();
  // Team budgets and usage by team read request_logs by team and time, like keys and users already can.
  await db.schema
    .createIndex('request_logs_team_id_at_idx')
    .on('request_logs')
    .columns(['team_id', 'at'])
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('request_logs_team_id_at_idx').execute();
  await db.schema.dropTable('alerts_sent').execute();
}
