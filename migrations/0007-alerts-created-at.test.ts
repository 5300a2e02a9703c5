/**
 * migrations/0007-alerts-created-at.ts on every dialect: the index pruning reads alerts_sent by
 * (created_at, id) exists after it and is gone after its down; on SQLite the query pruneAlerts
 * makes searches it rather than scanning the table.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import type { CompiledQuery, Kysely, KyselyPlugin } from 'kysely';
import { createDatabase, type DatabaseHandle } from '../src/db/index.ts';
import { migrateDown, migrateToLatest } from '../src/db/migrate.ts';
import type { Database } from '../src/db/schema.ts';
import { pruneAlerts } from '../plugins/logging/alerts.ts';
import { describeOnPostgres, indexColumns, migrationsUpTo } from '../test/support/migrations.ts';

const { before, upTo: UP_TO } = migrationsUpTo('0007-alerts-created-at');

function suite(url: () => string): void {
  let handle: DatabaseHandle;
  beforeAll(async () => {
    handle = await createDatabase(url());
  });
  afterAll(async () => {
    await handle?.close();
  });

  test('up adds alerts_sent_created_at_idx on (created_at, id); down drops it', async () => {
    await migrateToLatest(handle.db, { migrations: before });
    expect(await indexColumns(handle, 'alerts_sent_created_at_idx')).toEqual([]);
    expect((await migrateToLatest(handle.db, { migrations: UP_TO })).applied).toEqual(['0007-alerts-created-at']);
    expect(await indexColumns(handle, 'alerts_sent_created_at_idx')).toEqual(['created_at', 'id']);
    expect((await migrateDown(handle.db, 1, { migrations: UP_TO })).reverted).toEqual(['0007-alerts-created-at']);
    expect(await indexColumns(handle, 'alerts_sent_created_at_idx')).toEqual([]);
    await migrateToLatest(handle.db, { migrations: UP_TO });
  });
}

describe('0007-alerts-created-at on SQLite', () => {
  suite(() => 'sqlite::memory:');

  test("pruneAlerts' reads search the index: no scan of alerts_sent, no sort", async () => {
    const handle = await createDatabase('sqlite::memory:');
    try {
      await migrateToLatest(handle.db);
      const queries: CompiledQuery[] = [];
      const capture: KyselyPlugin = {
        transformQuery: (args) => {
          queries.push(handle.db.getExecutor().compileQuery(args.node, args.queryId));
          return args.node;
        },
        transformResult: async (args) => args.result,
      };
      const db = handle.db.withPlugin(capture) as Kysely<Database>;
      const at = (ms: number) => new Date(ms).toISOString();
      const now = Date.UTC(2026, 5, 1);
      // Two batches' worth, so the read after a batch (past its last row) is planned too.
      await db
        .insertInto('alerts_sent')
        .values(
          Array.from({ length: 3 }, (_, i) => ({
            id: `alr_${i}`, kind: 'budget', subject: `user:${i}`, threshold: 1, period: 'total', status: 'sent' as const, attempts: 1,
            payload: '{}', next_attempt_at: at(now), last_error: null, created_at: at(now - 90 * 86_400_000 + i), sent_at: at(now),
          })),
        )
        .execute();
      queries.length = 0;
      await pruneAlerts(db, at(now - 30 * 86_400_000), now, 2);
      const reads = queries.filter((q) => /^select/i.test(q.sql));
      expect(reads.length).toBe(2);
      for (const q of reads) {
        const plan = (await handle.db.executeQuery<{ detail: string }>({ sql: `explain query plan ${q.sql}`, parameters: q.parameters, query: q.query, queryId: q.queryId })).rows.map((r) => r.detail);
        expect(plan.join(' | ')).toContain('USING INDEX alerts_sent_created_at_idx');
        expect(plan.join(' | ')).not.toContain('TEMP B-TREE');
      }
    } finally {
      await handle.close();
    }
  });
});

await describeOnPostgres('0007-alerts-created-at on Postgres', 'migrations/0007-alerts-created-at.test.ts', 'alerts_created_at', suite);
