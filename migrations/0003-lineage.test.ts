/**
 * migrations/0003-lineage.ts on every dialect: keys rotated before it get the first key of
 * their chain as lineage, other keys none; down drops the column and up adds it again.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import type { Kysely } from 'kysely';
import { createDatabase, type DatabaseHandle } from '../src/db/index.ts';
import { migrateDown, migrateToLatest } from '../src/db/migrate.ts';
import type { Database } from '../src/db/schema.ts';
import { describeOnPostgres } from '../test/support/migrations.ts';
import { migrations } from './index.ts';

const AT = '2025-01-01T00:00:00.000Z';
const BEFORE = { '0001-initial': migrations['0001-initial'], '0002-logging': migrations['0002-logging'] };
/** Up to this migration: later ones are not what this file tests. */
const UP_TO = { ...BEFORE, '0003-lineage': migrations['0003-lineage'] };

/** Keys as 0002 knew them: `from` is rotated_from. */
async function insertKey(db: Kysely<any>, id: string, from: string | null): Promise<void> {
  await db
    .insertInto('api_keys')
    .values({ id, hash: `hash-${id}`, start: 'sk-dev-abcde', end: 'wxyz', environment: 'dev', user_id: 'usr_l', rotated_from: from, created_at: AT, updated_at: AT })
    .execute();
}

async function lineages(db: Kysely<Database>): Promise<Record<string, string | null>> {
  const rows = await db.selectFrom('api_keys').select(['id', 'lineage_id']).orderBy('id').execute();
  return Object.fromEntries(rows.map((r) => [r.id, r.lineage_id]));
}

function suite(url: () => string): void {
  let handle: DatabaseHandle;

  beforeAll(async () => {
    handle = await createDatabase(url());
  });
  afterAll(async () => {
    await handle?.close();
  });

  test('backfills each rotated key with the first key of its chain; keys never rotated stay null', async () => {
    const db = handle.db as unknown as Kysely<any>;
    await migrateToLatest(handle.db, { migrations: BEFORE });
    await db.insertInto('users').values({ id: 'usr_l', created_at: AT, updated_at: AT }).execute();
    // a → b → c, a chain; d alone; f → g, where f's own predecessor is gone (hard-deleted).
    await insertKey(db, 'key_a', null);
    await insertKey(db, 'key_b', 'key_a');
    await insertKey(db, 'key_c', 'key_b');
    await insertKey(db, 'key_d', null);
    await insertKey(db, 'key_f', 'key_gone');
    await insertKey(db, 'key_g', 'key_f');

    expect((await migrateToLatest(handle.db, { migrations: UP_TO })).applied).toEqual(['0003-lineage']);
    expect(await lineages(handle.db)).toEqual({
      key_a: null,
      key_b: 'key_a',
      key_c: 'key_a',
      key_d: null,
      key_f: null,
      key_g: 'key_f',
    });
  });

  test('down drops the column (and its index); up adds it back and backfills again', async () => {
    expect((await migrateDown(handle.db, 1, { migrations: UP_TO })).reverted).toEqual(['0003-lineage']);
    const columns = async () => (await handle.db.introspection.getTables()).find((t) => t.name === 'api_keys')!.columns.map((c) => c.name);
    expect(await columns()).not.toContain('lineage_id');
    expect((await migrateToLatest(handle.db, { migrations: UP_TO })).applied).toEqual(['0003-lineage']);
    expect(await columns()).toContain('lineage_id');
    expect((await lineages(handle.db)).key_c).toBe('key_a');
  });
}

describe('0003-lineage on SQLite', () => {
  suite(() => 'sqlite::memory:');
});

await describeOnPostgres('0003-lineage on Postgres', 'migrations/0003-lineage.test.ts', 'lineage', suite);
