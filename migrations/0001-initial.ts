/**
 * The initial schema.
 *
 * Frozen in time: this file imports no app code and takes `Kysely<any>`, so it keeps
 * describing the schema as it was even after src/db/schema.ts moves on.
 *
 * Portable on purpose, it must run unchanged on SQLite and Postgres:
 * - types are only text, integer and double precision (SQLite gives the last REAL affinity);
 * - times are ISO-8601 UTC text (`toISOString()`), fixed width, so text order is time order;
 * - JSON is text, booleans are 0/1 integers;
 * - ids are app-made text (`usr_…`, `team_…`, `key_…`, `req_…`), never autoincrement;
 * - every primary key column is NOT NULL explicitly, since SQLite otherwise allows NULL in a
 *   non-integer primary key.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('users')
    .addColumn('id', 'text', (col) => col.notNull().primaryKey())
    .addColumn('email', 'text')
    .addColumn('name', 'text')
    .addColumn('disabled_at', 'text')
    .addColumn('deleted_at', 'text')
    .addColumn('limits', 'text')
    .addColumn('budget', 'text')
    .addColumn('metadata', 'text')
    .addColumn('created_at', 'text', (col) => col.notNull())
    .addColumn('updated_at', 'text', (col) => col.notNull())
    // NULLs never collide in a unique constraint on either dialect, so email stays optional.
    .addUniqueConstraint('users_email_unique', ['email'])
    .execute();

  await db.schema
    .createTable('teams')
    .addColumn('id', 'text', (col) => col.notNull().primaryKey())
    .addColumn('name', 'text', (col) => col.notNull())
    .addColumn('limits', 'text')
    .addColumn('budget', 'text')
    .addColumn('metadata', 'text')
    .addColumn('deleted_at', 'text')
    .addColumn('created_at', 'text', (col) => col.notNull())
    .addColumn('updated_at', 'text', (col) => col.notNull())
    .execute();

  await db.schema
    .createTable('team_members')
    // Memberships are links, not history: they go with a hard-deleted team or user.
    .addColumn('team_id', 'text', (col) => col.notNull().references('teams.id').onDelete('cascade'))
    .addColumn('user_id', 'text', (col) => col.notNull().references('users.id').onDelete('cascade'))
    .addColumn('role', 'text', (col) => col.notNull().defaultTo('member'))
    .addColumn('created_at', 'text', (col) => col.notNull())
    .addPrimaryKeyConstraint('team_members_pkey', ['team_id', 'user_id'])
    .execute();
  // The primary key serves lookups by team; "which teams is this user in" needs its own index.
  await db.schema.createIndex('team_members_user_id_idx').on('team_members').column('user_id').execute();

  await db.schema
    .createTable('api_keys')
    .addColumn('id', 'text', (col) => col.notNull().primaryKey())
    .addColumn('hash', 'text', (col) => col.notNull())
    .addColumn('start', 'text', (col) => col.notNull())
    .addColumn('end', 'text', (col) => col.notNull())
    .addColumn('environment', 'text', (col) => col.notNull())
    // No cascade: users are soft-deleted, and a hard delete must not silently take keys (and their audit trail) with it.
    .addColumn('user_id', 'text', (col) => col.notNull().references('users.id'))
    .addColumn('team_id', 'text', (col) => col.references('teams.id'))
    .addColumn('name', 'text')
    .addColumn('models', 'text')
    .addColumn('scopes', 'text')
    .addColumn('limits', 'text')
    .addColumn('budget', 'text')
    .addColumn('status', 'text', (col) => col.notNull().defaultTo('active'))
    .addColumn('expires_at', 'text')
    .addColumn('created_at', 'text', (col) => col.notNull())
    .addColumn('updated_at', 'text', (col) => col.notNull())
    .addColumn('last_used_at', 'text')
    .addColumn('revoked_at', 'text')
    .addColumn('revoked_reason', 'text')
    // Plain ids, not foreign keys: rotation writes both rows in either order.
    .addColumn('rotated_from', 'text')
    .addColumn('rotated_to', 'text')
    .addColumn('grace_until', 'text')
    .addColumn('metadata', 'text')
    .addUniqueConstraint('api_keys_hash_unique', ['hash'])
    .addCheckConstraint('api_keys_status_check', sql`status in ('active', 'revoked')`)
    .execute();
  await db.schema.createIndex('api_keys_user_id_idx').on('api_keys').column('user_id').execute();
  await db.schema.createIndex('api_keys_team_id_idx').on('api_keys').column('team_id').execute();
  await db.schema.createIndex('api_keys_expires_at_idx').on('api_keys').column('expires_at').execute();
  await db.schema.createIndex('api_keys_status_idx').on('api_keys').column('status').execute();

  await db.schema
    .createTable('audit_log')
    .addColumn('id', 'text', (col) => col.notNull().primaryKey())
    .addColumn('at', 'text', (col) => col.notNull())
    .addColumn('actor', 'text', (col) => col.notNull())
    .addColumn('action', 'text', (col) => col.notNull())
    .addColumn('target_type', 'text')
    .addColumn('target_id', 'text')
    .addColumn('details', 'text')
    .execute();
  await db.schema
    .createIndex('audit_log_target_idx')
    .on('audit_log')
    .columns(['target_type', 'target_id'])
    .execute();
  await db.schema.createIndex('audit_log_at_idx').on('audit_log').column('at').execute();

  await db.schema
    .createTable('settings')
    .addColumn('key', 'text', (col) => col.notNull().primaryKey())
    .addColumn('value', 'text', (col) => col.notNull())
    .addColumn('updated_at', 'text', (col) => col.notNull())
    .execute();

  await db.schema
    .createTable('providers')
    .addColumn('id', 'text', (col) => col.notNull().primaryKey())
    .addColumn('type', 'text', (col) => col.notNull())
    .addColumn('base_url', 'text')
    .addColumn('config', 'text', (col) => col.notNull().defaultTo('{}'))
    .addColumn('created_at', 'text', (col) => col.notNull())
    .addColumn('updated_at', 'text', (col) => col.notNull())
    .addColumn('deleted_at', 'text')
    .execute();

  await db.schema
    .createTable('provider_keys')
    .addColumn('id', 'text', (col) => col.notNull().primaryKey())
    .addColumn('provider_id', 'text', (col) =>
      col.notNull().references('providers.id').onDelete('cascade'),
    )
    .addColumn('secret_enc', 'text', (col) => col.notNull())
    .addColumn('key_version', 'text', (col) => col.notNull())
    .addColumn('weight', 'integer', (col) => col.notNull().defaultTo(1))
    .addColumn('rpm', 'integer')
    .addColumn('tpm', 'integer')
    .addColumn('disabled_at', 'text')
    .addColumn('created_at', 'text', (col) => col.notNull())
    .addColumn('updated_at', 'text', (col) => col.notNull())
    .execute();
  await db.schema
    .createIndex('provider_keys_provider_id_idx')
    .on('provider_keys')
    .column('provider_id')
    .execute();

  await db.schema
    .createTable('models')
    .addColumn('name', 'text', (col) => col.notNull().primaryKey())
    .addColumn('config', 'text', (col) => col.notNull())
    .addColumn('created_at', 'text', (col) => col.notNull())
    .addColumn('updated_at', 'text', (col) => col.notNull())
    .execute();

  // No foreign keys here: logs are written in batches off the response path and must
  // outlive (and never be refused because of) the keys, users and providers they mention.
  await db.schema
    .createTable('request_logs')
    .addColumn('id', 'text', (col) => col.notNull().primaryKey())
    .addColumn('at', 'text', (col) => col.notNull())
    .addColumn('key_id', 'text')
    .addColumn('user_id', 'text')
    .addColumn('team_id', 'text')
    .addColumn('environment', 'text', (col) => col.notNull())
    .addColumn('endpoint', 'text', (col) => col.notNull())
    .addColumn('model', 'text')
    .addColumn('provider', 'text')
    .addColumn('upstream_model', 'text')
    .addColumn('provider_key_id', 'text')
    .addColumn('status', 'integer', (col) => col.notNull())
    .addColumn('error_code', 'text')
    .addColumn('prompt_tokens', 'integer', (col) => col.notNull().defaultTo(0))
    .addColumn('completion_tokens', 'integer', (col) => col.notNull().defaultTo(0))
    .addColumn('cached_tokens', 'integer', (col) => col.notNull().defaultTo(0))
    .addColumn('total_tokens', 'integer', (col) => col.notNull().defaultTo(0))
    .addColumn('cost_usd', 'double precision', (col) => col.notNull().defaultTo(0))
    .addColumn('usage_source', 'text')
    .addColumn('latency_ms', 'integer', (col) => col.notNull())
    .addColumn('ttft_ms', 'integer')
    .addColumn('streamed', 'integer', (col) => col.notNull().defaultTo(0))
    .addColumn('client_ip', 'text')
    .addColumn('user_agent', 'text')
    .addCheckConstraint('request_logs_streamed_check', sql`streamed in (0, 1)`)
    .execute();
  await db.schema.createIndex('request_logs_at_idx').on('request_logs').column('at').execute();
  await db.schema
    .createIndex('request_logs_key_id_at_idx')
    .on('request_logs')
    .columns(['key_id', 'at'])
    .execute();
  await db.schema
    .createIndex('request_logs_user_id_at_idx')
    .on('request_logs')
    .columns(['user_id', 'at'])
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  // Children before parents, so foreign keys never block a drop; indexes go with their tables.
  for (const table of [
    'request_logs',
    'models',
    'provider_keys',
    'providers',
    'settings',
    'audit_log',
    'api_keys',
    'team_members',
    'teams',
    'users',
  ]) {
    await db.schema.dropTable(table).execute();
  }
}
