/**
 * One suite, run on every dialect: SQLite in memory, SQLite on a file, and Postgres
 * (in a database of its own, see test/support/services.ts), plus what is particular
 * to each.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Kysely, sql } from 'kysely';
import type { Migration } from 'kysely/migration';
import { migrations } from '../../migrations/index.ts';
import {
  createTestPostgresDatabase,
  postgresUrlForTests,
  type TestPostgresDatabase,
} from '../../test/support/services.ts';
import {
  DEFAULT_CONNECT_TIMEOUT_S,
  DEFAULT_POSTGRES_POOL_SIZE,
  DEFAULT_STATEMENT_TIMEOUT_MS,
  createDatabase,
  isForeignKeyViolation,
  isUniqueViolation,
  maskDatabaseUrl,
  parseDatabaseUrl,
  type DatabaseHandle,
} from './index.ts';
import { MigrationError, migrateDown, migrateToLatest, migrationStatus } from './migrate.ts';
import type { ApiKeyInsert, Database, RequestLogInsert, UserInsert } from './schema.ts';
import { BunSqliteDialect } from './sqlite-dialect.ts';

const TABLES = [
  'users',
  'teams',
  'team_members',
  'api_keys',
  'audit_log',
  'settings',
  'providers',
  'provider_keys',
  'models',
  'request_logs',
] as const;

const MIGRATION_NAMES = Object.keys(migrations);

const T0 = Date.parse('2025-01-01T00:00:00.000Z');
/** An ISO time `ms` after T0. */
const at = (ms: number): string => new Date(T0 + ms).toISOString();

const scratchDir = mkdtempSync(join(tmpdir(), 'sluice-db-test-'));
afterAll(() => rmSync(scratchDir, { recursive: true, force: true }));

/** What a promise rejected with, or `undefined` when it fulfilled. */
function errorOf(work: Promise<unknown>): Promise<unknown> {
  return work.then(
    () => undefined,
    (error: unknown) => error,
  );
}

async function tableNames(db: Kysely<Database>): Promise<string[]> {
  const tables = await db.introspection.getTables();
  return tables.map((table) => table.name);
}

function user(id: string, overrides: Partial<UserInsert> = {}): UserInsert {
  return { id, email: `${id}@example.com`, created_at: at(0), updated_at: at(0), ...overrides };
}

function apiKey(id: string, userId: string, overrides: Partial<ApiKeyInsert> = {}): ApiKeyInsert {
  return {
    id,
    hash: `hash-of-${id}`,
    start: 'sk-dev-abcde',
    end: 'wxyz',
    environment: 'dev',
    user_id: userId,
    created_at: at(0),
    updated_at: at(0),
    ...overrides,
  };
}

function requestLog(id: string, time: string, overrides: Partial<RequestLogInsert> = {}): RequestLogInsert {
  return { id, at: time, environment: 'dev', endpoint: '/v1/chat/completions', status: 200, latency_ms: 12, ...overrides };
}

/** The tests every dialect must pass. `url` is read in beforeAll, once the database exists. */
function sharedSuite(url: () => string): void {
  let handle: DatabaseHandle;
  let db: Kysely<Database>;

  beforeAll(async () => {
    handle = await createDatabase(url());
    db = handle.db;
  });
  afterAll(async () => {
    await handle.close();
  });

  describe('migrations', () => {
    test('an empty database lists every migration as pending', async () => {
      const status = await migrationStatus(db);
      expect(status).toEqual(MIGRATION_NAMES.map((name) => ({ name, executedAt: null, known: true })));
    });

    test('migrateToLatest applies every migration and creates every table', async () => {
      const { applied } = await migrateToLatest(db);
      expect(applied).toEqual(MIGRATION_NAMES);
      expect(await tableNames(db)).toEqual(expect.arrayContaining([...TABLES]));
    });

    test('a second run applies nothing', async () => {
      expect(await migrateToLatest(db)).toEqual({ applied: [] });
    });

    test('status shows when each migration was applied', async () => {
      const status = await migrationStatus(db);
      expect(status.map((entry) => entry.name)).toEqual(MIGRATION_NAMES);
      for (const entry of status) {
        expect(entry.executedAt).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
      }
    });

    test('down reverts every migration and drops every table; up restores them', async () => {
      const { reverted } = await migrateDown(db, 'all');
      expect(reverted).toEqual([...MIGRATION_NAMES].reverse());
      const left = await tableNames(db);
      for (const table of TABLES) {
        expect(left).not.toContain(table);
      }
      expect((await migrationStatus(db)).every((entry) => entry.executedAt === null)).toBe(true);

      expect((await migrateToLatest(db)).applied).toEqual(MIGRATION_NAMES);
      expect(await tableNames(db)).toEqual(expect.arrayContaining([...TABLES]));
    });

    test('migrateDown with a step count reverts that many, and nothing once none are left', async () => {
      const last = MIGRATION_NAMES.at(-1);
      expect(await migrateDown(db, 1)).toEqual({ reverted: last === undefined ? [] : [last] });
      await migrateToLatest(db);
      expect(await migrateDown(db, 0)).toEqual({ reverted: [] });
    });

    test('a failing migration throws a MigrationError naming it, and the whole run is rolled back', async () => {
      const scratch: Migration = {
        async up(kysely) {
          await kysely.schema.createTable('scratch_one').addColumn('id', 'text').execute();
        },
      };
      const broken: Migration = {
        async up(kysely) {
          await kysely.schema.createTable('scratch_two').addColumn('id', 'text').execute();
          throw new Error('boom');
        },
      };
      const withBroken = { ...migrations, '9998-scratch': scratch, '9999-broken': broken };

      const failure = await errorOf(migrateToLatest(db, { migrations: withBroken }));
      expect(failure).toBeInstanceOf(MigrationError);
      expect(failure).toMatchObject({ migrationName: '9999-broken' });
      expect((failure as MigrationError).message).toContain('boom');

      const tables = await tableNames(db);
      expect(tables).not.toContain('scratch_one');
      expect(tables).not.toContain('scratch_two');
      const status = await migrationStatus(db, { migrations: withBroken });
      expect(status.filter((entry) => entry.executedAt === null).map((entry) => entry.name)).toEqual([
        '9998-scratch',
        '9999-broken',
      ]);
    });

    test('a database migrated further than this code knows is refused with a clear error', async () => {
      const extra: Migration = { async up() {}, async down() {} };
      await migrateToLatest(db, { migrations: { ...migrations, '9999-extra': extra } });
      await expect(migrateToLatest(db)).rejects.toThrow(/9999-extra/);
      // The status lists it too, as applied and unknown, instead of leaving it out.
      const status = await migrationStatus(db);
      expect(status.map((entry) => entry.name)).toEqual([...MIGRATION_NAMES, '9999-extra']);
      expect(status.filter((entry) => !entry.known)).toEqual([
        { name: '9999-extra', executedAt: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T/), known: false },
      ]);
      await migrateDown(db, 1, { migrations: { ...migrations, '9999-extra': extra } });
      expect((await migrationStatus(db)).every((entry) => entry.known)).toBe(true);
      expect(await migrateToLatest(db)).toEqual({ applied: [] });
    });
  });

  describe('CRUD round trip', () => {
    test('users', async () => {
      await db
        .insertInto('users')
        .values(user('usr_crud', { name: 'Ada', limits: JSON.stringify({ rpm: 10 }) }))
        .execute();
      expect(await db.selectFrom('users').selectAll().where('id', '=', 'usr_crud').executeTakeFirst()).toEqual({
        id: 'usr_crud',
        email: 'usr_crud@example.com',
        name: 'Ada',
        disabled_at: null,
        deleted_at: null,
        limits: '{"rpm":10}',
        budget: null,
        models: null,
        metadata: null,
        created_at: at(0),
        updated_at: at(0),
      });
      const updated = await db
        .updateTable('users')
        .set({ disabled_at: at(5), updated_at: at(5) })
        .where('id', '=', 'usr_crud')
        .executeTakeFirst();
      expect(updated.numUpdatedRows).toBe(1n);
      const row = await db.selectFrom('users').select(['disabled_at', 'updated_at']).where('id', '=', 'usr_crud').executeTakeFirst();
      expect(row).toEqual({ disabled_at: at(5), updated_at: at(5) });
      const deleted = await db.deleteFrom('users').where('id', '=', 'usr_crud').executeTakeFirst();
      expect(deleted.numDeletedRows).toBe(1n);
      expect(await db.selectFrom('users').selectAll().where('id', '=', 'usr_crud').executeTakeFirst()).toBeUndefined();
    });

    test('teams and team_members (role defaults to member; memberships go with their team)', async () => {
      await db.insertInto('users').values(user('usr_member')).execute();
      await db.insertInto('teams').values({ id: 'team_crud', name: 'Crew', created_at: at(0), updated_at: at(0) }).execute();
      await db.insertInto('team_members').values({ team_id: 'team_crud', user_id: 'usr_member', created_at: at(1) }).execute();

      expect(await db.selectFrom('teams').selectAll().where('id', '=', 'team_crud').executeTakeFirst()).toEqual({
        id: 'team_crud',
        name: 'Crew',
        limits: null,
        budget: null,
        models: null,
        metadata: null,
        deleted_at: null,
        created_at: at(0),
        updated_at: at(0),
      });
      expect(await db.selectFrom('team_members').selectAll().where('user_id', '=', 'usr_member').execute()).toEqual([
        { team_id: 'team_crud', user_id: 'usr_member', role: 'member', created_at: at(1) },
      ]);

      await db.updateTable('team_members').set({ role: 'owner' }).where('team_id', '=', 'team_crud').execute();
      expect(
        await db.selectFrom('team_members').select('role').where('team_id', '=', 'team_crud').executeTakeFirst(),
      ).toEqual({ role: 'owner' });
      await db.updateTable('teams').set({ name: 'Crew 2', updated_at: at(2) }).where('id', '=', 'team_crud').execute();
      expect(await db.selectFrom('teams').select('name').where('id', '=', 'team_crud').executeTakeFirst()).toEqual({
        name: 'Crew 2',
      });

      await db.deleteFrom('teams').where('id', '=', 'team_crud').execute();
      expect(await db.selectFrom('team_members').selectAll().where('team_id', '=', 'team_crud').execute()).toEqual([]);
      await db.deleteFrom('users').where('id', '=', 'usr_member').execute();
    });

    test('api_keys (status defaults to active; RETURNING works)', async () => {
      await db.insertInto('users').values(user('usr_keys')).execute();
      await db.insertInto('teams').values({ id: 'team_keys', name: 'K', created_at: at(0), updated_at: at(0) }).execute();
      const inserted = await db
        .insertInto('api_keys')
        .values(
          apiKey('key_crud', 'usr_keys', {
            team_id: 'team_keys',
            name: 'ci',
            models: '["gpt-4o"]',
            expires_at: at(86_400_000),
          }),
        )
        .returning(['id', 'status'])
        .executeTakeFirst();
      expect(inserted).toEqual({ id: 'key_crud', status: 'active' });

      const row = await db.selectFrom('api_keys').selectAll().where('hash', '=', 'hash-of-key_crud').executeTakeFirst();
      expect(row).toEqual({
        id: 'key_crud',
        hash: 'hash-of-key_crud',
        start: 'sk-dev-abcde',
        end: 'wxyz',
        environment: 'dev',
        user_id: 'usr_keys',
        team_id: 'team_keys',
        name: 'ci',
        models: '["gpt-4o"]',
        scopes: null,
        limits: null,
        budget: null,
        status: 'active',
        expires_at: at(86_400_000),
        created_at: at(0),
        updated_at: at(0),
        last_used_at: null,
        revoked_at: null,
        revoked_reason: null,
        rotated_from: null,
        rotated_to: null,
        grace_until: null,
        metadata: null,
        lineage_id: null,
      });

      const revoked = await db
        .updateTable('api_keys')
        .set({ status: 'revoked', revoked_at: at(9), revoked_reason: 'leaked', updated_at: at(9) })
        .where('id', '=', 'key_crud')
        .returning(['status', 'revoked_reason'])
        .execute();
      expect(revoked).toEqual([{ status: 'revoked', revoked_reason: 'leaked' }]);

      const deleted = await db.deleteFrom('api_keys').where('id', '=', 'key_crud').returning('id').execute();
      expect(deleted).toEqual([{ id: 'key_crud' }]);
      await db.deleteFrom('teams').where('id', '=', 'team_keys').execute();
      await db.deleteFrom('users').where('id', '=', 'usr_keys').execute();
    });

    test('audit_log', async () => {
      const entry = {
        id: 'aud_1',
        at: at(0),
        actor: 'admin',
        action: 'key.revoke',
        target_type: 'api_key',
        target_id: 'key_x',
        details: '{"reason":"leaked"}',
      };
      await db.insertInto('audit_log').values(entry).execute();
      expect(
        await db
          .selectFrom('audit_log')
          .selectAll()
          .where('target_type', '=', 'api_key')
          .where('target_id', '=', 'key_x')
          .execute(),
      ).toEqual([entry]);
      await db.updateTable('audit_log').set({ details: null }).where('id', '=', 'aud_1').execute();
      expect(await db.selectFrom('audit_log').select('details').where('id', '=', 'aud_1').executeTakeFirst()).toEqual({
        details: null,
      });
      await db.deleteFrom('audit_log').where('id', '=', 'aud_1').execute();
      expect(await db.selectFrom('audit_log').selectAll().execute()).toEqual([]);
    });

    test('settings (upsert on the key)', async () => {
      const upsert = (value: string, time: string) =>
        db
          .insertInto('settings')
          .values({ key: 'admin_key_hash', value, updated_at: time })
          .onConflict((conflict) => conflict.column('key').doUpdateSet({ value, updated_at: time }))
          .execute();
      await upsert('first', at(0));
      await upsert('second', at(1));
      expect(await db.selectFrom('settings').selectAll().where('key', '=', 'admin_key_hash').execute()).toEqual([
        { key: 'admin_key_hash', value: 'second', updated_at: at(1) },
      ]);
      await db.deleteFrom('settings').where('key', '=', 'admin_key_hash').execute();
      expect(await db.selectFrom('settings').selectAll().where('key', '=', 'admin_key_hash').execute()).toEqual([]);
    });

    test('providers and provider_keys (defaults; keys go with their provider)', async () => {
      await db
        .insertInto('providers')
        .values({ id: 'openai', type: 'openai', created_at: at(0), updated_at: at(0) })
        .execute();
      await db
        .insertInto('provider_keys')
        .values({
          id: 'oa-1',
          provider_id: 'openai',
          secret_enc: 'v1:nonce:ciphertext',
          key_version: 'mk1',
          rpm: 500,
          tpm: 200_000,
          created_at: at(0),
          updated_at: at(0),
        })
        .execute();
      expect(await db.selectFrom('providers').selectAll().execute()).toEqual([
        {
          id: 'openai',
          type: 'openai',
          base_url: null,
          config: '{}',
          created_at: at(0),
          updated_at: at(0),
          deleted_at: null,
        },
      ]);
      expect(await db.selectFrom('provider_keys').selectAll().execute()).toEqual([
        {
          id: 'oa-1',
          provider_id: 'openai',
          secret_enc: 'v1:nonce:ciphertext',
          key_version: 'mk1',
          weight: 1,
          position: 0,
          rpm: 500,
          tpm: 200_000,
          disabled_at: null,
          created_at: at(0),
          updated_at: at(0),
        },
      ]);
      await db.updateTable('provider_keys').set({ weight: 3, disabled_at: at(4) }).where('id', '=', 'oa-1').execute();
      expect(await db.selectFrom('provider_keys').select(['weight', 'disabled_at']).executeTakeFirst()).toEqual({
        weight: 3,
        disabled_at: at(4),
      });
      await db.updateTable('providers').set({ base_url: 'https://api.openai.com/v1' }).where('id', '=', 'openai').execute();
      expect(await db.selectFrom('providers').select('base_url').executeTakeFirst()).toEqual({
        base_url: 'https://api.openai.com/v1',
      });
      await db.deleteFrom('providers').where('id', '=', 'openai').execute();
      expect(await db.selectFrom('provider_keys').selectAll().execute()).toEqual([]);
    });

    test('models', async () => {
      const config = JSON.stringify({ targets: [{ provider: 'openai', model: 'gpt-4o' }] });
      await db.insertInto('models').values({ name: 'gpt-4o', config, created_at: at(0), updated_at: at(0) }).execute();
      expect(await db.selectFrom('models').selectAll().execute()).toEqual([
        { name: 'gpt-4o', config, created_at: at(0), updated_at: at(0) },
      ]);
      await db.updateTable('models').set({ config: '{}', updated_at: at(1) }).where('name', '=', 'gpt-4o').execute();
      expect(await db.selectFrom('models').select('config').executeTakeFirst()).toEqual({ config: '{}' });
      await db.deleteFrom('models').where('name', '=', 'gpt-4o').execute();
      expect(await db.selectFrom('models').selectAll().execute()).toEqual([]);
    });

    test('request_logs (numbers come back as numbers, defaults apply)', async () => {
      await db
        .insertInto('request_logs')
        .values(
          requestLog('req_crud', at(0), {
            key_id: 'key_a',
            user_id: 'usr_a',
            model: 'gpt-4o',
            provider: 'openai',
            upstream_model: 'gpt-4o-2024-08-06',
            provider_key_id: 'oa-1',
            prompt_tokens: 100,
            completion_tokens: 50,
            total_tokens: 150,
            cost_usd: 0.00075,
            usage_source: 'provider',
            ttft_ms: 80,
            streamed: 1,
            client_ip: '127.0.0.1',
            user_agent: 'test',
          }),
        )
        .execute();
      await db.insertInto('request_logs').values(requestLog('req_defaults', at(1), { status: 401 })).execute();

      expect(await db.selectFrom('request_logs').selectAll().where('id', '=', 'req_crud').executeTakeFirst()).toEqual({
        id: 'req_crud',
        at: at(0),
        key_id: 'key_a',
        user_id: 'usr_a',
        team_id: null,
        environment: 'dev',
        endpoint: '/v1/chat/completions',
        model: 'gpt-4o',
        provider: 'openai',
        upstream_model: 'gpt-4o-2024-08-06',
        provider_key_id: 'oa-1',
        status: 200,
        error_code: null,
        prompt_tokens: 100,
        completion_tokens: 50,
        cached_tokens: 0,
        total_tokens: 150,
        cost_usd: 0.00075,
        usage_source: 'provider',
        latency_ms: 12,
        ttft_ms: 80,
        streamed: 1,
        client_ip: '127.0.0.1',
        user_agent: 'test',
      });
      expect(
        await db
          .selectFrom('request_logs')
          .select(['prompt_tokens', 'cost_usd', 'streamed', 'status'])
          .where('id', '=', 'req_defaults')
          .executeTakeFirst(),
      ).toEqual({ prompt_tokens: 0, cost_usd: 0, streamed: 0, status: 401 });

      await db.updateTable('request_logs').set({ error_code: 'invalid_api_key' }).where('status', '=', 401).execute();
      expect(
        await db.selectFrom('request_logs').select('error_code').where('id', '=', 'req_defaults').executeTakeFirst(),
      ).toEqual({ error_code: 'invalid_api_key' });
      const deleted = await db.deleteFrom('request_logs').where('id', 'in', ['req_crud', 'req_defaults']).executeTakeFirst();
      expect(deleted.numDeletedRows).toBe(2n);
    });
  });

  describe('constraints', () => {
    test('unique constraints raise, and isUniqueViolation recognises them', async () => {
      await db.insertInto('users').values(user('usr_u1', { email: 'same@example.com' })).execute();
      const attempts = [
        db.insertInto('users').values(user('usr_u2', { email: 'same@example.com' })).execute(),
        db.insertInto('users').values(user('usr_u1', { email: 'other@example.com' })).execute(),
        db.insertInto('api_keys').values(apiKey('key_u1', 'usr_u1')).execute(),
      ];
      const results = await Promise.allSettled(attempts);
      expect(results.map((result) => result.status)).toEqual(['rejected', 'rejected', 'fulfilled']);
      for (const result of results.slice(0, 2)) {
        expect(result.status === 'rejected' && isUniqueViolation(result.reason)).toBe(true);
      }

      const duplicateHash = await errorOf(
        db.insertInto('api_keys').values(apiKey('key_u2', 'usr_u1', { hash: 'hash-of-key_u1' })).execute(),
      );
      expect(isUniqueViolation(duplicateHash)).toBe(true);

      await db.insertInto('teams').values({ id: 'team_u', name: 'U', created_at: at(0), updated_at: at(0) }).execute();
      const member = { team_id: 'team_u', user_id: 'usr_u1', created_at: at(0) };
      await db.insertInto('team_members').values(member).execute();
      const duplicateMember = await errorOf(db.insertInto('team_members').values(member).execute());
      expect(isUniqueViolation(duplicateMember)).toBe(true);

      await db.insertInto('settings').values({ key: 'k', value: 'v', updated_at: at(0) }).execute();
      const duplicateSetting = await errorOf(
        db.insertInto('settings').values({ key: 'k', value: 'w', updated_at: at(0) }).execute(),
      );
      expect(isUniqueViolation(duplicateSetting)).toBe(true);
      expect(isForeignKeyViolation(duplicateSetting)).toBe(false);
    });

    test('users without an email do not collide', async () => {
      await db.insertInto('users').values([user('usr_n1', { email: null }), user('usr_n2', { email: null })]).execute();
      expect(await db.selectFrom('users').select('id').where('email', 'is', null).orderBy('id').execute()).toEqual([
        { id: 'usr_n1' },
        { id: 'usr_n2' },
      ]);
    });

    test('foreign keys and checks are enforced', async () => {
      const orphan = await errorOf(db.insertInto('api_keys').values(apiKey('key_orphan', 'usr_nobody')).execute());
      expect(isForeignKeyViolation(orphan)).toBe(true);
      expect(isUniqueViolation(orphan)).toBe(false);

      await db.insertInto('users').values(user('usr_fk')).execute();
      await expect(
        db.insertInto('api_keys').values(apiKey('key_bad_status', 'usr_fk', { status: 'bogus' as 'active' })).execute(),
      ).rejects.toThrow();
      await expect(
        db.insertInto('request_logs').values(requestLog('req_bad', at(0), { streamed: 2 as 1 })).execute(),
      ).rejects.toThrow();

      // A user who still has keys cannot be hard-deleted out from under them.
      await db.insertInto('api_keys').values(apiKey('key_fk', 'usr_fk')).execute();
      const blocked = await errorOf(db.deleteFrom('users').where('id', '=', 'usr_fk').execute());
      expect(isForeignKeyViolation(blocked)).toBe(true);
    });
  });

  test('ISO times sort and range-filter as times', async () => {
    // Offsets chosen so that naive number-of-digits ordering would differ from time order.
    const offsets = [9, 10, 999, 1000, 59_999, 60_000, 3_599_999, 86_400_000, 31_536_000_000, -1, -86_400_001];
    await db
      .insertInto('request_logs')
      .values(offsets.map((offset, i) => requestLog(`req_sort_${i}`, at(offset))))
      .execute();
    const rows = await db.selectFrom('request_logs').select('at').where('id', 'like', 'req_sort_%').orderBy('at').execute();
    const expected = [...offsets].sort((a, b) => a - b).map(at);
    expect(rows.map((row) => row.at)).toEqual(expected);

    const inRange = await db
      .selectFrom('request_logs')
      .select('id')
      .where('id', 'like', 'req_sort_%')
      .where('at', '>=', at(10))
      .where('at', '<', at(60_000))
      .execute();
    expect(inRange).toHaveLength(offsets.filter((offset) => offset >= 10 && offset < 60_000).length);
  });

  describe('transactions', () => {
    test('a throwing transaction rolls back', async () => {
      const failure = db.transaction().execute(async (trx) => {
        await trx.insertInto('users').values(user('usr_rollback')).execute();
        expect(await trx.selectFrom('users').select('id').where('id', '=', 'usr_rollback').executeTakeFirst()).toEqual({
          id: 'usr_rollback',
        });
        throw new Error('abort the transaction');
      });
      await expect(failure).rejects.toThrow('abort the transaction');
      expect(await db.selectFrom('users').select('id').where('id', '=', 'usr_rollback').executeTakeFirst()).toBeUndefined();
    });

    test('a committed transaction keeps its writes', async () => {
      await db.transaction().execute(async (trx) => {
        await trx.insertInto('users').values(user('usr_commit')).execute();
        await trx.insertInto('api_keys').values(apiKey('key_commit', 'usr_commit')).execute();
      });
      expect(await db.selectFrom('api_keys').select('user_id').where('id', '=', 'key_commit').executeTakeFirst()).toEqual({
        user_id: 'usr_commit',
      });
    });

    test('savepoints roll back part of a transaction', async () => {
      const trx = await db.startTransaction().execute();
      await trx.insertInto('settings').values({ key: 'sp_kept', value: '1', updated_at: at(0) }).execute();
      const inner = await trx.savepoint('before_second').execute();
      await inner.insertInto('settings').values({ key: 'sp_dropped', value: '2', updated_at: at(0) }).execute();
      const back = await inner.rollbackToSavepoint('before_second').execute();
      const released = await back.releaseSavepoint('before_second').execute();
      await released.commit().execute();
      const keys = await db.selectFrom('settings').select('key').where('key', 'like', 'sp_%').execute();
      expect(keys).toEqual([{ key: 'sp_kept' }]);
    });
  });

  test('ping answers true while open', async () => {
    expect(await handle.ping()).toBe(true);
  });

  test('close makes ping false, and closing twice is fine', async () => {
    const second = await createDatabase(url());
    expect(await second.ping()).toBe(true);
    await second.close();
    await second.close();
    expect(await second.ping()).toBe(false);
  });
}

describe('parseDatabaseUrl', () => {
  test('SQLite forms', () => {
    expect(parseDatabaseUrl('sqlite://./data/sluice.db')).toEqual({ dialect: 'sqlite', filename: resolve('data/sluice.db') });
    expect(parseDatabaseUrl('sqlite://data/x.db')).toEqual({ dialect: 'sqlite', filename: resolve('data/x.db') });
    expect(parseDatabaseUrl('sqlite:///var/lib/sluice.db')).toEqual({ dialect: 'sqlite', filename: '/var/lib/sluice.db' });
    expect(parseDatabaseUrl('sqlite::memory:')).toEqual({ dialect: 'sqlite', filename: ':memory:' });
    expect(parseDatabaseUrl(' sqlite://:memory: ')).toEqual({ dialect: 'sqlite', filename: ':memory:' });
  });

  test('a SQLite path starting with ~/ is in the home directory, as a shell reads it, not a folder named ~', () => {
    expect(parseDatabaseUrl('sqlite://~/data/sluice.db')).toEqual({ dialect: 'sqlite', filename: join(homedir(), 'data/sluice.db') });
    // Only a leading ~ followed by a slash: elsewhere it is part of a name.
    expect(parseDatabaseUrl('sqlite://./a~/x.db')).toEqual({ dialect: 'sqlite', filename: resolve('a~/x.db') });
    expect(() => parseDatabaseUrl('sqlite://~other/x.db')).toThrow('DATABASE_URL "sqlite://~other/x.db": ~other/ (another user\'s home) is not expanded');
  });

  test('Postgres forms: pool size, search_path and statement_timeout are ours, the rest goes to the client', () => {
    expect(parseDatabaseUrl('postgres://u:p@db.internal:5433/app')).toEqual({
      dialect: 'postgres',
      connectionUrl: 'postgres://u:p@db.internal:5433/app',
      max: DEFAULT_POSTGRES_POOL_SIZE,
      searchPath: null,
      statementTimeoutMs: DEFAULT_STATEMENT_TIMEOUT_MS,
      connectTimeoutS: DEFAULT_CONNECT_TIMEOUT_S,
    });
    expect(parseDatabaseUrl('postgresql://u@h/app?max=25&sslmode=require&search_path=tenant&statement_timeout=0&connect_timeout=3')).toEqual({
      dialect: 'postgres',
      connectionUrl: 'postgresql://u@h/app?sslmode=require',
      max: 25,
      searchPath: 'tenant',
      statementTimeoutMs: 0,
      connectTimeoutS: 3,
    });
    for (const bad of ['-1', '2.5', 'soon', '']) {
      expect(() => parseDatabaseUrl(`postgres://u:hunter2@h/app?connect_timeout=${bad}`)).toThrow(
        `DATABASE_URL "postgres://u:***@h/app?connect_timeout=${bad}": connect_timeout must be a whole number of seconds (0 for none), got "${bad}"`,
      );
    }
    for (const bad of ['-1', '1.5', 'soon', '']) {
      expect(() => parseDatabaseUrl(`postgres://u:hunter2@h/app?statement_timeout=${bad}`)).toThrow(
        `DATABASE_URL "postgres://u:***@h/app?statement_timeout=${bad}": statement_timeout must be a whole number of milliseconds (0 for none), got "${bad}"`,
      );
    }
  });

  // A server that takes the TCP connection and says nothing (hung, or a proxy before a dead one):
  // the client's own bound is 30 s, which a query (a cold key's lookup) waited out.
  test('Postgres: a connection the server never answers fails at ?connect_timeout=, not at the client\'s 30 s', async () => {
    const silent = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } });
    const handle = await createDatabase(`postgres://u@127.0.0.1:${silent.port}/app?connect_timeout=1`);
    try {
      const failed = await sql`select 1`.execute(handle.db).then(() => null, (error: unknown) => String(error));
      expect(failed).toContain('timeout');
    } finally {
      await handle.close();
      silent.stop(true);
    }
  }, 15_000);

  test('Postgres over a Unix socket: the folder in ?host=, the host left out (libpq and the client take it)', () => {
    expect(parseDatabaseUrl('postgres://u:p%40ss@/app?host=/cloudsql/proj:region:db&max=3')).toEqual({
      dialect: 'postgres',
      connectionUrl: 'postgres://u:p%40ss@localhost/app?host=%2Fcloudsql%2Fproj%3Aregion%3Adb',
      max: 3,
      searchPath: null,
      statementTimeoutMs: DEFAULT_STATEMENT_TIMEOUT_MS,
      connectTimeoutS: DEFAULT_CONNECT_TIMEOUT_S,
    });
    expect(parseDatabaseUrl('postgresql:///app?host=/var/run/postgresql&port=5433&user=u')).toMatchObject({
      dialect: 'postgres',
      connectionUrl: 'postgresql://localhost/app?host=%2Fvar%2Frun%2Fpostgresql&port=5433&user=u',
    });
    // A host named in the URL is kept as written, ?host= or not.
    expect(parseDatabaseUrl('postgres://u@h/app?host=/tmp')).toMatchObject({ connectionUrl: 'postgres://u@h/app?host=%2Ftmp' });
    // No host anywhere: refused, saying where a socket's folder goes.
    expect(() => parseDatabaseUrl('postgres://u:hunter2@/app')).toThrow(/names no host \(for a Unix socket, put its folder in \?host=/);
    expect(() => parseDatabaseUrl('postgres:///app')).toThrow(/names no host/);
  });

  test('bad URLs throw clear errors that never show the password', () => {
    const message = (url: string): string => {
      try {
        parseDatabaseUrl(url);
      } catch (error) {
        return (error as Error).message;
      }
      throw new Error(`${url} was accepted`);
    };
    const unknown = message('mysql://root:hunter2@localhost/db');
    expect(unknown).toContain('Unsupported DATABASE_URL "mysql://root:***@localhost/db"');
    expect(unknown).toContain('sqlite::memory:');
    expect(unknown).toContain('sqlite:///ABSOLUTE/PATH');
    expect(unknown).toContain('postgres://');
    expect(unknown).not.toContain('hunter2');
    expect(message('')).toContain('Unsupported DATABASE_URL');
    expect(message('./data/sluice.db')).toContain('Unsupported DATABASE_URL');
    expect(message('sqlite://')).toContain('names no file');
    expect(message('sqlite://./x.db?mode=ro')).toContain('take no parameters');
    expect(message('postgres://u:hunter2@h/db?max=0')).toContain('max must be a positive integer');
    expect(message('postgres://u:hunter2@h/db?max=lots')).not.toContain('hunter2');
  });

  test('maskDatabaseUrl hides only the password', () => {
    expect(maskDatabaseUrl('postgres://user:s3cret@host:5432/db?max=2')).toBe('postgres://user:***@host:5432/db?max=2');
    expect(maskDatabaseUrl('postgres://user@host/db')).toBe('postgres://user@host/db');
    expect(maskDatabaseUrl('sqlite://./data/sluice.db')).toBe('sqlite://./data/sluice.db');
  });

  test('maskDatabaseUrl splits the user info at the last @, as the URL parser does', () => {
    // The driver connects as u with password "p@ss" to host: all of "p@ss" is the secret.
    const url = 'postgres://u:p@ss@host/db';
    expect(new URL(url).hostname).toBe('host');
    expect(maskDatabaseUrl(url)).toBe('postgres://u:***@host/db');
    expect(maskDatabaseUrl('postgres://u:p@ss@host:5432/db?max=2')).toBe('postgres://u:***@host:5432/db?max=2');
    // Too broken to parse (a port that is not a number): the same split, by hand.
    expect(maskDatabaseUrl('postgres://u:p@ss@host:port/db')).toBe('postgres://u:***@host:port/db');
    expect(maskDatabaseUrl('postgres://u@host:port/db')).toBe('postgres://u@host:port/db');
  });

  test('maskDatabaseUrl hides a password with an unencoded / ? or #, up to the last @, however the URL parser reads it', () => {
    for (const secret of ['pa#ss', 'pa?ss', 'pa/ss', '1234#ss', '5678/ss', 'a/b?c#d@e']) {
      const url = `postgres://u:${secret}@db.internal:5432/app`;
      expect(maskDatabaseUrl(url)).toBe('postgres://u:***@db.internal:5432/app');
      const message = ((): string => {
        try {
          parseDatabaseUrl(url);
        } catch (error) {
          return (error as Error).message;
        }
        return 'accepted';
      })();
      expect(message).not.toContain(secret);
    }
    // Nothing that reads as a password: as written.
    expect(maskDatabaseUrl('postgres://u@db.internal:5432/app?max=2')).toBe('postgres://u@db.internal:5432/app?max=2');
  });

  test('maskDatabaseUrl hides a password given as a query parameter', () => {
    expect(maskDatabaseUrl('postgres://u@host/db?password=hunter2&max=2')).toBe('postgres://u@host/db?password=***&max=2');
    expect(maskDatabaseUrl('postgres://u:pw@host/db?sslpassword=hunter2')).toBe('postgres://u:***@host/db?sslpassword=***');
    expect(maskDatabaseUrl('postgres://u@host:port/db?max=2&password=hunter2')).toBe('postgres://u@host:port/db?max=2&password=***');
    const message = ((): string => {
      try {
        parseDatabaseUrl('postgres://u@h/db?password=hunter2&max=0');
      } catch (error) {
        return (error as Error).message;
      }
      return 'accepted';
    })();
    expect(message).toContain('max must be a positive integer');
    expect(message).not.toContain('hunter2');
  });

  test('createDatabase rejects an unknown scheme', async () => {
    await expect(createDatabase('redis://localhost:6379')).rejects.toThrow(/Unsupported DATABASE_URL/);
  });
});

describe('sqlite :memory:', () => {
  sharedSuite(() => 'sqlite::memory:');

  test('each :memory: handle is its own database', async () => {
    const first = await createDatabase('sqlite::memory:');
    const second = await createDatabase('sqlite::memory:');
    await migrateToLatest(first.db);
    expect(await tableNames(second.db)).toEqual([]);
    await Promise.all([first.close(), second.close()]);
  });
});

describe('sqlite file', () => {
  // A directory that does not exist yet: opening must create it.
  const file = join(scratchDir, 'nested', 'dir', 'sluice.db');
  sharedSuite(() => `sqlite://${file}`);

  describe('particular to SQLite', () => {
    let handle: DatabaseHandle;
    beforeAll(async () => {
      handle = await createDatabase(`sqlite://${file}`);
      await migrateToLatest(handle.db);
    });
    afterAll(async () => {
      await handle.close();
    });

    test('the file and its parent directory were created, with WAL and the other pragmas', async () => {
      expect(existsSync(file)).toBe(true);
      const pragma = async (name: string): Promise<unknown> => {
        const result = await sql.raw<Record<string, unknown>>(`pragma ${name}`).execute(handle.db);
        return Object.values(result.rows[0] ?? {})[0];
      };
      expect(await pragma('journal_mode')).toBe('wal');
      expect(await pragma('foreign_keys')).toBe(1);
      expect(await pragma('synchronous')).toBe(1); // NORMAL
      expect(await pragma('busy_timeout')).toBe(5000);
    });

    test('data written by one handle is there for the next one', async () => {
      await handle.db.insertInto('settings').values({ key: 'persisted', value: 'yes', updated_at: at(0) }).execute();
      const reopened = await createDatabase(`sqlite://${file}`);
      expect(await reopened.db.selectFrom('settings').select('value').where('key', '=', 'persisted').executeTakeFirst()).toEqual({
        value: 'yes',
      });
      await reopened.close();
    });

    test('concurrent transactions on the one connection serialize: no lost update, no interleaving', async () => {
      const { db } = handle;
      await db.insertInto('settings').values({ key: 'counter', value: '0', updated_at: at(0) }).execute();
      const events: string[] = [];
      const workers = 12;
      await Promise.all(
        Array.from({ length: workers }, (_, worker) =>
          db.transaction().execute(async (trx) => {
            events.push(`begin ${worker}`);
            const row = await trx.selectFrom('settings').select('value').where('key', '=', 'counter').executeTakeFirstOrThrow();
            // Yield to the event loop between the read and the write, where another transaction would sneak in.
            await Bun.sleep(1);
            await trx
              .updateTable('settings')
              .set({ value: String(Number(row.value) + 1) })
              .where('key', '=', 'counter')
              .execute();
            events.push(`end ${worker}`);
          }),
        ),
      );
      expect(await db.selectFrom('settings').select('value').where('key', '=', 'counter').executeTakeFirst()).toEqual({
        value: String(workers),
      });
      for (let i = 0; i < events.length; i += 2) {
        const worker = events[i]?.split(' ')[1];
        expect([events[i], events[i + 1]]).toEqual([`begin ${worker}`, `end ${worker}`]);
      }
    });

    test('a statement issued while a transaction is open waits for it, and does not roll back with it', async () => {
      const { db } = handle;
      let outsideDone = false;
      const transaction = db.transaction().execute(async (trx) => {
        await trx.insertInto('settings').values({ key: 'inside', value: '1', updated_at: at(0) }).execute();
        await Bun.sleep(20);
        expect(outsideDone).toBe(false);
        throw new Error('roll back');
      });
      await Bun.sleep(1);
      const outside = db
        .insertInto('settings')
        .values({ key: 'outside', value: '1', updated_at: at(0) })
        .execute()
        .then(() => {
          outsideDone = true;
        });
      await expect(transaction).rejects.toThrow('roll back');
      await outside;
      const keys = await db.selectFrom('settings').select('key').where('key', 'in', ['inside', 'outside']).execute();
      expect(keys).toEqual([{ key: 'outside' }]);
    });

    test('streams rows in chunks', async () => {
      const { db } = handle;
      await db
        .insertInto('audit_log')
        .values(Array.from({ length: 7 }, (_, i) => ({ id: `aud_s${i}`, at: at(i), actor: 'a', action: 'x' })))
        .execute();
      const ids: string[] = [];
      for await (const row of db.selectFrom('audit_log').select('id').where('id', 'like', 'aud_s%').orderBy('at').stream(3)) {
        ids.push(row.id);
      }
      expect(ids).toEqual(Array.from({ length: 7 }, (_, i) => `aud_s${i}`));
    });

    test('a new file whose write lock another process holds for a moment opens once the lock is let go', async () => {
      // A second instance creating the same file holds the write lock (rollback journal, not WAL
      // yet); switching to WAL must wait for it within busy_timeout, not fail with "database is locked".
      const lockedFile = join(scratchDir, 'locked', 'sluice.db');
      mkdirSync(dirname(lockedFile), { recursive: true });
      const holder = Bun.spawn(
        [
          process.execPath,
          '-e',
          `const { Database } = require('bun:sqlite'); const d = new Database(process.argv[1], { create: true });
           d.run('begin immediate'); d.run('create table other_instance (x)'); console.log('locked');
           await Bun.sleep(400); d.run('commit'); d.close();`,
          lockedFile,
        ],
        { stdout: 'pipe', stderr: 'inherit' },
      );
      const reader = holder.stdout.getReader();
      const first = await reader.read();
      expect(new TextDecoder().decode(first.value)).toContain('locked');
      const started = performance.now();
      const opened = await createDatabase(`sqlite://${lockedFile}`);
      try {
        expect(performance.now() - started).toBeGreaterThan(200);
        const mode = await sql<{ journal_mode: string }>`pragma journal_mode`.execute(opened.db);
        expect(mode.rows[0]?.journal_mode).toBe('wal');
      } finally {
        await opened.close();
        await holder.exited;
      }
    });

    test('insertId is reported for inserts', async () => {
      const result = await sql`insert into settings (key, value, updated_at) values ('rowid', 'x', ${at(0)})`.execute(
        handle.db,
      );
      expect(typeof result.insertId).toBe('bigint');
      expect(result.numAffectedRows).toBe(1n);
    });
  });
});

describe('sqlite file permissions', () => {
  const mode = (path: string): number => statSync(path).mode & 0o777;

  test('a file the gateway creates, and its -wal and -shm, are readable by their owner alone (key hashes, sealed secrets)', async () => {
    const file = join(scratchDir, 'private', 'sluice.db');
    const handle = await createDatabase(`sqlite://${file}`);
    try {
      await migrateToLatest(handle.db);
      expect(existsSync(`${file}-wal`)).toBe(true);
      expect([mode(file), mode(`${file}-wal`), mode(`${file}-shm`)]).toEqual([0o600, 0o600, 0o600]);
    } finally {
      await handle.close();
    }
  });

  test('a file that is there already keeps the mode its owner gave it', async () => {
    const file = join(scratchDir, 'shared.db');
    writeFileSync(file, '');
    chmodSync(file, 0o640);
    const handle = await createDatabase(`sqlite://${file}`);
    try {
      await migrateToLatest(handle.db);
      expect(mode(file)).toBe(0o640);
    } finally {
      await handle.close();
    }
  });
});

describe('BunSqliteDialect', () => {
  test('a tiny statement cache still answers every query right', async () => {
    const db = new Kysely<Record<string, never>>({
      dialect: new BunSqliteDialect({ database: ':memory:', statementCacheSize: 2 }),
    });
    for (let round = 0; round < 3; round++) {
      for (let n = 0; n < 6; n++) {
        // A different SQL text for each n, so the cache keeps evicting.
        const result = await sql<{ v: number }>`select ${sql.raw(String(n))} + ${round} as v`.execute(db);
        expect(result.rows).toEqual([{ v: n + round }]);
      }
    }
    await db.destroy();
  });

  test('rejects an impossible cache size at construction', () => {
    expect(() => new BunSqliteDialect({ database: ':memory:', statementCacheSize: 0 })).toThrow(/positive integer/);
  });
});

const postgresUrl = await postgresUrlForTests('src/db/db.test.ts');

describe.skipIf(postgresUrl === null)('postgres', () => {
  let database: TestPostgresDatabase | undefined;
  const databaseUrl = (): string => {
    if (database === undefined) {
      throw new Error('the test database was not created');
    }
    return database.url;
  };

  beforeAll(async () => {
    database = await createTestPostgresDatabase(postgresUrl ?? '', 'db');
  });
  afterAll(async () => {
    await database?.drop();
  });

  sharedSuite(databaseUrl);

  test('?search_path= naming a schema that does not exist: migrating says so, naming it', async () => {
    const handle = await createDatabase(`${databaseUrl()}?search_path=no_such_schema&max=1`);
    try {
      const failure = await errorOf(migrateToLatest(handle.db));
      expect(failure).toBeInstanceOf(MigrationError);
      expect((failure as MigrationError).message).toBe(
        'No schema to create the tables in: the search_path (no_such_schema) names none that exists. Create it (create schema …), or name one that exists in ?search_path= of DATABASE_URL.',
      );
    } finally {
      await handle.close();
    }
  });

  test('?search_path= naming a schema that does not exist: the status says so too, not another schema\'s status', async () => {
    // The database's default schema is migrated (sharedSuite did): its bookkeeping is not this search_path's.
    const migrated = await createDatabase(databaseUrl());
    await migrateToLatest(migrated.db);
    await migrated.close();
    const handle = await createDatabase(`${databaseUrl()}?search_path=no_such_schema&max=1`);
    try {
      const failure = await errorOf(migrationStatus(handle.db));
      expect(failure).toBeInstanceOf(MigrationError);
      expect((failure as MigrationError).message).toBe(
        'No schema to create the tables in: the search_path (no_such_schema) names none that exists. Create it (create schema …), or name one that exists in ?search_path= of DATABASE_URL.',
      );
    } finally {
      await handle.close();
    }
  });

  test('a URL with no host and the socket folder in ?host= connects over the Unix socket', async () => {
    const admin = await createDatabase(databaseUrl());
    let socketDir: string;
    try {
      const result = await sql<{ dirs: string }>`select current_setting('unix_socket_directories') as dirs`.execute(admin.db);
      socketDir = result.rows[0]?.dirs.split(',')[0]?.trim() ?? '';
    } finally {
      await admin.close();
    }
    const url = new URL(databaseUrl());
    const port = url.port || '5432';
    // A server in a container of its own has its socket out of reach: nothing to connect to here.
    if (socketDir === '' || !existsSync(join(socketDir, `.s.PGSQL.${port}`))) return;
    const credentials = url.password === '' ? url.username : `${url.username}:${url.password}`;
    const handle = await createDatabase(`postgres://${credentials}@${url.pathname}?host=${encodeURIComponent(socketDir)}&port=${port}&max=2`);
    try {
      const result = await sql<{ address: string | null }>`select inet_server_addr()::text as address`.execute(handle.db);
      // No server address: a Unix socket, not TCP.
      expect(result.rows).toEqual([{ address: null }]);
      expect(await migrateToLatest(handle.db)).toEqual({ applied: [] });
    } finally {
      await handle.close();
    }
  });

  test('?search_path= puts the tables (and the migration bookkeeping) in that schema', async () => {
    // The database's public schema already holds a migrated copy from the shared suite:
    // the migrator must not mistake that copy's bookkeeping for this schema's.
    const admin = await createDatabase(databaseUrl());
    await migrateToLatest(admin.db);
    await sql`create schema tenant_a`.execute(admin.db);
    const tenant = await createDatabase(`${databaseUrl()}?search_path=tenant_a&max=2`);
    try {
      expect((await migrateToLatest(tenant.db)).applied).toEqual(MIGRATION_NAMES);
      const result = await sql<{ table_name: string }>`
        select table_name from information_schema.tables where table_schema = 'tenant_a'`.execute(admin.db);
      expect(result.rows.map((row) => row.table_name)).toEqual(expect.arrayContaining([...TABLES, 'kysely_migration']));
      expect(await migrateToLatest(tenant.db)).toEqual({ applied: [] });
      // Five queries at once on a pool of two.
      expect(await Promise.all(Array.from({ length: 5 }, () => tenant.ping()))).toEqual([true, true, true, true, true]);
    } finally {
      await tenant.close();
      await admin.close();
    }
  });

});

describe('postgres handle without a server', () => {
  test('ping is false, quickly, when the server does not answer', async () => {
    const nowhere = await createDatabase('postgres://postgres@127.0.0.1:1/none');
    const started = performance.now();
    expect(await nowhere.ping(500)).toBe(false);
    expect(performance.now() - started).toBeLessThan(2000);
    await nowhere.close();
  });

  test('migrating an unreachable server throws a MigrationError that says why', async () => {
    const nowhere = await createDatabase('postgres://postgres@127.0.0.1:1/none');
    const failure = await errorOf(migrateToLatest(nowhere.db));
    expect(failure).toBeInstanceOf(MigrationError);
    expect((failure as MigrationError).message).toMatch(/^Could not query the database: .+ \(ERR_POSTGRES_\w+\)$/);
    await nowhere.close();
  });

  test('the handle URL masks the password', async () => {
    const handle = await createDatabase('postgres://postgres:secret@127.0.0.1:1/none');
    expect(handle.url).toBe('postgres://postgres:***@127.0.0.1:1/none');
    await handle.close();
  });
});
