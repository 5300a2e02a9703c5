/**
 * Models allowed to a user and to a team, as a key has: a JSON array of model names, NULL for
 * every model. A request may use a model only if its key, the key's owner and the team it is
 * billed to all allow it.
 *
 * Frozen in time like every migration: imports no app code, takes `Kysely<any>`, runs unchanged
 * on SQLite and Postgres (a nullable text column; existing rows read NULL, every model, as before).
 */
import type { Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('users').addColumn('models', 'text').execute();
  await db.schema.alterTable('teams').addColumn('models', 'text').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('teams').dropColumn('models').execute();
  await db.schema.alterTable('users').dropColumn('models').execute();
}
