/**
 * `bun run migrate` as an operator runs it: a child process, DATABASE_URL in its environment.
 */
import { SQL } from 'bun';
import { Database } from 'bun:sqlite';
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { migrations } from '../../migrations/index.ts';
import {
  createTestPostgresDatabase,
  postgresUrlForTests,
  type TestPostgresDatabase,
} from '../../test/support/services.ts';

const SCRIPT = join(import.meta.dir, 'migrate.ts');
const MIGRATION_NAMES = Object.keys(migrations);
const count = MIGRATION_NAMES.length;
/** The last line of a run that applied every migration. */
const appliedAllLine = (url: string): string =>
  `done: applied ${count} migration${count === 1 ? '' : 's'} to ${url}, now up to date`;

interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

async function runMigrate(
  databaseUrl: string | undefined,
  args: string[] = [],
  cwd?: string,
  extraEnv: Record<string, string> = {},
): Promise<RunResult> {
  const env: Record<string, string | undefined> = { ...process.env, DATABASE_URL: databaseUrl, SLUICE_CONFIG: undefined, ...extraEnv };
  const child = Bun.spawn([process.execPath, SCRIPT, ...args], { env, cwd, stdout: 'pipe', stderr: 'pipe' });
  const [stdout, stderr, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  return { code, stdout, stderr };
}

const scratchDir = mkdtempSync(join(tmpdir(), 'sluice-migrate-cli-'));
afterAll(() => rmSync(scratchDir, { recursive: true, force: true }));

describe('bun run migrate on SQLite', () => {
  const url = `sqlite://${join(scratchDir, 'cli', 'sluice.db')}`;

  test('applies every migration, printing each, then a final line', async () => {
    const { code, stdout, stderr } = await runMigrate(url);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const lines = stdout.trim().split('\n');
    expect(lines.slice(0, -1)).toEqual(MIGRATION_NAMES.map((name) => `applied ${name}`));
    expect(lines.at(-1)).toBe(appliedAllLine(url));
  });

  test('a second run applies nothing', async () => {
    const { code, stdout } = await runMigrate(url);
    expect(code).toBe(0);
    expect(stdout.trim()).toBe(`done: ${url} is already up to date`);
  });

  test('--status lists each migration with when it was applied', async () => {
    const { code, stdout } = await runMigrate(url, ['--status']);
    expect(code).toBe(0);
    const lines = stdout.trim().split('\n');
    MIGRATION_NAMES.forEach((name, i) => {
      expect(lines[i]).toMatch(new RegExp(`^${name}\\s+applied \\d{4}-\\d{2}-\\d{2}T`));
    });
    expect(lines.at(-1)).toBe(`${count} applied, 0 pending on ${url}`);
  });

  test('--status on a fresh database shows everything pending and changes nothing', async () => {
    // An empty file is an empty SQLite database.
    const file = join(scratchDir, 'fresh.db');
    writeFileSync(file, '');
    const fresh = `sqlite://${file}`;
    const { code, stdout } = await runMigrate(fresh, ['--status']);
    expect(code).toBe(0);
    // Names are padded to the longest one, so the gap varies.
    expect(stdout).toMatch(new RegExp(`^${MIGRATION_NAMES[0]} +pending$`, 'm'));
    expect(stdout.trim().split('\n').at(-1)).toBe(`0 applied, ${count} pending on ${fresh}`);
    expect((await runMigrate(fresh, ['--status'])).stdout).toContain('pending');
    expect(statSync(file).size).toBe(0);
  });

  test('--status on a SQLite path that is not there says so, exits 1, and creates neither the file nor its folders', async () => {
    const file = join(scratchDir, 'typo', 'nested', 'sluice.db');
    const { code, stdout, stderr } = await runMigrate(`sqlite://${file}`, ['--status']);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr.trim()).toBe(`migrate: no SQLite database at ${file}; nothing was created (check DATABASE_URL or database.url in the config file; bun run migrate creates it)`);
    expect(existsSync(join(scratchDir, 'typo'))).toBe(false);
  });

  test('--status leaves an up-to-date SQLite database byte for byte as it was, with no file beside it', async () => {
    const file = join(scratchDir, 'cli', 'sluice.db');
    const before = await Bun.file(file).bytes();
    const listed = readdirSync(join(scratchDir, 'cli'));
    expect((await runMigrate(`sqlite://${file}`, ['--status'])).code).toBe(0);
    expect(await Bun.file(file).bytes()).toEqual(before);
    expect(readdirSync(join(scratchDir, 'cli'))).toEqual(listed);
  });

  test('--status on a database a newer sluice migrated lists the unknown migration and exits 1', async () => {
    const file = join(scratchDir, 'newer.db');
    const url = `sqlite://${file}`;
    expect((await runMigrate(url)).code).toBe(0);
    const database = new Database(file);
    database.run(`insert into kysely_migration (name, timestamp) values ('9999-from-a-newer-sluice', '2031-01-02T03:04:05.000Z')`);
    database.close();
    const { code, stdout, stderr } = await runMigrate(url, ['--status']);
    expect(code).toBe(1);
    const lines = stdout.trim().split('\n');
    expect(lines.at(-2)).toMatch(
      /^9999-from-a-newer-sluice\s+applied 2031-01-02T03:04:05\.000Z, unknown to this version \(migrated by a newer sluice\?\)$/,
    );
    expect(lines.at(-1)).toBe(`${count + 1} applied, 0 pending, 1 unknown to this version on ${url}`);
    expect(stderr).toContain('1 migration this version of sluice does not know');
  });

  test('without DATABASE_URL it uses ./data/sluice.db under the current directory', async () => {
    const cwd = mkdtempSync(join(scratchDir, 'default-'));
    const { code, stdout } = await runMigrate(undefined, [], cwd);
    expect(code).toBe(0);
    expect(stdout.trim().split('\n').at(-1)).toBe(appliedAllLine('sqlite://./data/sluice.db'));
    expect(await Bun.file(join(cwd, 'data', 'sluice.db')).exists()).toBe(true);
  });
});

describe('bun run migrate finds the database as the gateway does', () => {
  test('without DATABASE_URL, database.url of ./sluice.config.json in the working dir', async () => {
    const cwd = mkdtempSync(join(scratchDir, 'config-'));
    const url = `sqlite://${join(cwd, 'named-by-config.db')}`;
    writeFileSync(join(cwd, 'sluice.config.json'), JSON.stringify({ database: { url } }));
    const { code, stdout, stderr } = await runMigrate(undefined, [], cwd);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout.trim().split('\n').at(-1)).toBe(appliedAllLine(url));
    expect(existsSync(join(cwd, 'data'))).toBe(false);
  });

  test('the file SLUICE_CONFIG names, ${VAR} in database.url interpolated; other sections are not needed', async () => {
    const cwd = mkdtempSync(join(scratchDir, 'config-'));
    const file = join(cwd, 'elsewhere.db');
    writeFileSync(file, '');
    const configPath = join(cwd, 'conf', 'gateway.json');
    mkdirSync(join(cwd, 'conf'));
    // The provider secret's variable is not set here: the gateway would refuse to start, migrate need not.
    writeFileSync(
      configPath,
      JSON.stringify({
        database: { url: 'sqlite://${DB_FILE}' },
        providers: [{ id: 'p', type: 'openai', keys: [{ id: 'k', secret: '${NOT_SET_HERE}' }] }],
      }),
    );
    const { code, stdout } = await runMigrate(undefined, ['--status'], cwd, { SLUICE_CONFIG: 'conf/gateway.json', DB_FILE: file });
    expect(code).toBe(0);
    expect(stdout.trim().split('\n').at(-1)).toBe(`0 applied, ${count} pending on sqlite://${file}`);
  });

  test('DATABASE_URL still wins over the file', async () => {
    const cwd = mkdtempSync(join(scratchDir, 'config-'));
    writeFileSync(join(cwd, 'sluice.config.json'), JSON.stringify({ database: { url: 'mysql://not:used@h/x' } }));
    writeFileSync(join(cwd, 'from-env.db'), '');
    const url = `sqlite://${join(cwd, 'from-env.db')}`;
    const { code, stdout } = await runMigrate(url, ['--status'], cwd);
    expect(code).toBe(0);
    expect(stdout).toContain(`pending on ${url}`);
  });

  test('a bad database section exits 2 naming the path; a bad URL in it too, password masked', async () => {
    const cwd = mkdtempSync(join(scratchDir, 'config-'));
    writeFileSync(join(cwd, 'sluice.config.json'), JSON.stringify({ database: { url: 5 } }));
    const bad = await runMigrate(undefined, [], cwd);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('/database/url: Expected string');

    const missing = await runMigrate(undefined, [], cwd, { SLUICE_CONFIG: 'nowhere.json' });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(`SLUICE_CONFIG: no file at ${join(cwd, 'nowhere.json')}`);

    writeFileSync(join(cwd, 'sluice.config.json'), JSON.stringify({ database: { url: 'mysql://root:hunter2@localhost/sluice' } }));
    const unsupported = await runMigrate(undefined, [], cwd);
    expect(unsupported.code).toBe(2);
    expect(unsupported.stderr).toContain('/database/url: ');
    expect(unsupported.stderr).toContain('Unsupported DATABASE_URL "mysql://root:***@localhost/sluice"');
    expect(unsupported.stderr).not.toContain('hunter2');
  });
});

describe('bun run migrate failures', () => {
  test('an unsupported URL is bad config: exit 2 with a message naming the variable and the supported forms, password masked', async () => {
    const { code, stdout, stderr } = await runMigrate('mysql://root:hunter2@localhost/sluice');
    expect(code).toBe(2);
    expect(stderr).toContain('DATABASE_URL: Unsupported DATABASE_URL');
    expect(stdout).toBe('');
    expect(stderr).toContain('Unsupported DATABASE_URL "mysql://root:***@localhost/sluice"');
    expect(stderr).toContain('sqlite::memory:');
    expect(stderr).not.toContain('hunter2');
  });

  test('an unreachable Postgres exits 1 and says which database failed', async () => {
    const { code, stderr } = await runMigrate('postgres://postgres:hunter2@127.0.0.1:1/none');
    expect(code).toBe(1);
    expect(stderr).toContain('migrate: failed on postgres://postgres:***@127.0.0.1:1/none');
    expect(stderr).not.toContain('hunter2');
  });

  test('an unknown argument exits 2 with the usage', async () => {
    const { code, stderr } = await runMigrate('sqlite::memory:', ['--sideways']);
    expect(code).toBe(2);
    expect(stderr).toContain('unknown argument --sideways');
    expect(stderr).toContain('Usage: bun run migrate');
  });
});

const postgresUrl = await postgresUrlForTests('src/cli/migrate.test.ts');

describe.skipIf(postgresUrl === null)('bun run migrate on Postgres', () => {
  let database: TestPostgresDatabase | undefined;
  beforeAll(async () => {
    database = await createTestPostgresDatabase(postgresUrl ?? '', 'cli');
  });
  afterAll(async () => {
    await database?.drop();
  });

  test('a config file naming the database is enough (no DATABASE_URL)', async () => {
    const cwd = mkdtempSync(join(scratchDir, 'pg-config-'));
    writeFileSync(join(cwd, 'sluice.config.json'), JSON.stringify({ database: { url: '${PG_URL}' } }));
    const { code, stdout } = await runMigrate(undefined, ['--status'], cwd, { PG_URL: database?.url ?? '' });
    expect(code).toBe(0);
    expect(stdout.trim().split('\n').at(-1)).toBe(`0 applied, ${count} pending on ${database?.url ?? ''}`);
  });

  test('applies, then finds nothing to apply', async () => {
    const url = database?.url ?? '';
    const first = await runMigrate(url);
    expect(first.code).toBe(0);
    expect(first.stdout).toContain(`applied ${MIGRATION_NAMES[0]}`);
    const second = await runMigrate(url);
    expect(second.code).toBe(0);
    expect(second.stdout.trim()).toEndWith('is already up to date');
  });

  test('--status lists a migration unknown to this version and exits 1', async () => {
    const url = database?.url ?? '';
    expect((await runMigrate(url)).code).toBe(0);
    const client = new SQL(url);
    try {
      await client`insert into kysely_migration (name, timestamp) values ('9999-from-a-newer-sluice', '2031-01-02T03:04:05.000Z')`;
      const { code, stdout } = await runMigrate(url, ['--status']);
      expect(code).toBe(1);
      expect(stdout).toMatch(/^9999-from-a-newer-sluice\s+applied 2031-01-02T03:04:05\.000Z, unknown to this version/m);
      expect(stdout.trim().split('\n').at(-1)).toBe(`${count + 1} applied, 0 pending, 1 unknown to this version on ${url}`);
    } finally {
      await client`delete from kysely_migration where name = '9999-from-a-newer-sluice'`;
      await client.close();
    }
  });
});
