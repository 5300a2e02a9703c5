/**
 * migrations/0008-api-keys-expiring.ts on every dialect: the index the expiring-keys check reads
 * api_keys by (status, expires_at, id) exists after it and is gone after its down; on SQLite each
 * page that check reads is one range of it, the pages after the first starting at the row value
 * of the last row before, and nothing is sorted.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import type { CompiledQuery, Kysely, KyselyPlugin } from 'kysely';
import { createDatabase, type DatabaseHandle } from '../src/db/index.ts';
import { migrateDown, migrateToLatest } from '../src/db/migrate.ts';
import type { Database } from '../src/db/schema.ts';
import { createLogger } from '../src/lib/logger.ts';
import { MetricsRegistry } from '../src/metrics.ts';
import { UpstreamHealth } from '../src/upstream-health.ts';
import { AlertMonitor } from '../plugins/logging/alerts.ts';
import { describeOnPostgres, indexColumns, migrationsUpTo } from '../test/support/migrations.ts';

const { before, upTo: UP_TO } = migrationsUpTo('0008-api-keys-expiring');
const DAY = 86_400_000;

function suite(url: () => string): void {
  let handle: DatabaseHandle;
  beforeAll(async () => {
    handle = await createDatabase(url());
  });
  afterAll(async () => {
    await handle?.close();
  });

  test('up adds api_keys_expiring_idx on (status, expires_at, id); down drops it', async () => {
    await migrateToLatest(handle.db, { migrations: before });
    expect(await indexColumns(handle, 'api_keys_expiring_idx')).toEqual([]);
    expect((await migrateToLatest(handle.db, { migrations: UP_TO })).applied).toEqual(['0008-api-keys-expiring']);
    expect(await indexColumns(handle, 'api_keys_expiring_idx')).toEqual(['status', 'expires_at', 'id']);
    expect((await migrateDown(handle.db, 1, { migrations: UP_TO })).reverted).toEqual(['0008-api-keys-expiring']);
    expect(await indexColumns(handle, 'api_keys_expiring_idx')).toEqual([]);
    await migrateToLatest(handle.db, { migrations: UP_TO });
  });
}

describe('0008-api-keys-expiring on SQLite', () => {
  suite(() => 'sqlite::memory:');

  test("the expiring-keys check's pages each search one range of the index: no sort, and a page after the first starts at the last row before", async () => {
    const handle = await createDatabase('sqlite::memory:');
    const receiver = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: () => new Response('ok') });
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
      const now = Date.now();
      const at = (ms: number) => new Date(ms).toISOString();
      await db.insertInto('users').values({ id: 'usr_plan', email: null, name: null, disabled_at: null, deleted_at: null, limits: null, budget: null, metadata: null, created_at: at(now), updated_at: at(now) }).execute();
      // Three keys in the window, two a page: a first page and one after it.
      await db
        .insertInto('api_keys')
        .values(
          Array.from({ length: 3 }, (_, i) => ({
            id: `key_plan_${i}`, hash: `hash_${i}`, start: 'sk-dev-abcde', end: `000${i}`, environment: 'dev', user_id: 'usr_plan', expires_at: at(now + DAY + i), created_at: at(now), updated_at: at(now),
          })),
        )
        .execute();
      const metrics = new MetricsRegistry();
      const monitor = new AlertMonitor(
        db,
        { webhookUrl: `http://127.0.0.1:${receiver.port}/`, expiringWithinDays: 7, budgetThresholds: [1], checkMs: 60_000, deadKeyFailures: 1, retryBaseMs: 50, retryMaxMs: 1000, timeoutMs: 1000, expiringPageSize: 2 },
        { now: () => now, logger: createLogger('silent'), upstreams: new UpstreamHealth(metrics), environment: 'dev', metrics },
      );
      queries.length = 0;
      try {
        await monitor.tick();
      } finally {
        await monitor.close(2000);
      }
      const pages = queries.filter((q) => /^select/i.test(q.sql) && q.sql.includes('from "api_keys"') && q.sql.includes('order by "expires_at"'));
      expect(pages.length).toBe(2);
      const plans: string[] = [];
      for (const q of pages) {
        const plan = (await handle.db.executeQuery<{ detail: string }>({ sql: `explain query plan ${q.sql}`, parameters: q.parameters, query: q.query, queryId: q.queryId })).rows.map((r) => r.detail);
        plans.push(plan.join(' | '));
      }
      for (const plan of plans) {
        expect(plan).toContain('USING INDEX api_keys_expiring_idx');
        expect(plan).not.toContain('TEMP B-TREE');
      }
      expect(plans[1]).toContain('(expires_at,id)>(?,?)');
    } finally {
      await receiver.stop(true);
      await handle.close();
    }
  });
});

await describeOnPostgres('0008-api-keys-expiring on Postgres', 'migrations/0008-api-keys-expiring.test.ts', 'api_keys_expiring', suite);
