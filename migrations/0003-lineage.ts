/**
 * Key lineage: the id of the first key of a rotation chain, so that rotation replaces a key's
 * secret and nothing else. The quota counts a key's limits and budgets under its lineage, so
 * the successor carries on its predecessor's spend, and both share one set of buckets while
 * the old key is in its grace period.
 *
 * Frozen in time like every migration: imports no app code, takes `Kysely<any>`, runs
 * unchanged on SQLite and Postgres (text only; the backfill is plain recursive SQL both know).
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  // NULL means the key is its own lineage (every key not made by rotation), so creating a key
  // writes nothing new and the column needs no default.
  await db.schema.alterTable('api_keys').addColumn('lineage_id', 'text').execute();
  // "Every key of this lineage": what spend per lineage (budget alerts, usage) has to read.
  await db.schema.createIndex('api_keys_lineage_id_idx').on('api_keys').column('lineage_id').execute();
  // Keys rotated before this migration: each successor takes the first key of its chain, found
  // by walking rotated_from back (each step a primary-key lookup, so the walk costs the rotated
  // keys times the chains' depth, not the square of the table). A chain whose first key is gone
  // starts at the oldest key left; UNION, not UNION ALL, so even a corrupt cycle ends.
  await sql`
    with recursive up (id, ancestor) as (
      select id, rotated_from from api_keys
      where rotated_from in (select id from api_keys)
      union
      select up.id, p.rotated_from from up join api_keys p on p.id = up.ancestor
      where p.rotated_from in (select id from api_keys)
    ),
    roots (id, root) as (
      select id, ancestor from up
      where not exists (select 1 from api_keys p where p.id = up.ancestor and p.rotated_from in (select id from api_keys))
    )
    update api_keys set lineage_id = roots.root
    from roots
    where roots.id = api_keys.id
  `.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  // SQLite refuses to drop a column an index still covers.
  await db.schema.dropIndex('api_keys_lineage_id_idx').execute();
  await db.schema.alterTable('api_keys').dropColumn('lineage_id').execute();
}
