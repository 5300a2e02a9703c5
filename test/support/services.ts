/**
 * External services for tests (Postgres, Redis): where they are, whether they answer,
 * and an isolated Postgres database per test file.
 *
 * The project-wide rule when a service does not answer:
 * - with `CI` set (to anything but `''`, `0` or `false`), the test file FAILS (the helper
 *   registers a failing test saying why; the file's other tests still run): CI must run
 *   every suite, and a green run that silently skipped one would lie;
 * - otherwise the suite is skipped, with one printed line saying why, so a laptop
 *   without Postgres or Redis still runs everything else.
 *
 * Usage in a test file (top-level await is fine in bun test):
 *
 * ```ts
 * const postgresUrl = await postgresUrlForTests('src/db/db.test.ts');
 * describe.skipIf(postgresUrl === null)('on postgres', () => {
 *   let database: TestPostgresDatabase;
 *   beforeAll(async () => { database = await createTestPostgresDatabase(postgresUrl ?? '', 'db'); });
 *   afterAll(() => database.drop());
 *   // ... connect to database.url
 * });
 * ```
 *
 * Environment: `TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`),
 * `TEST_REDIS_URL` (default `redis://127.0.0.1:6379`).
 */
import { SQL } from 'bun';
import { test } from 'bun:test';
import { maskDatabaseUrl } from '../../src/db/index.ts';

/** The server the Postgres tests use; each test file gets its own database on it. */
export const TEST_POSTGRES_URL = process.env.TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/test';

/** The Redis the Redis tests use. Share it safely by prefixing keys with {@link uniqueTestName}. */
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL || 'redis://127.0.0.1:6379';

/** How long a probe waits for a service before calling it unreachable. */
const PROBE_TIMEOUT_MS = 2000;

/** Databases made by {@link createTestPostgresDatabase} start with this; nothing else should. */
const TEST_DATABASE_PREFIX = 'sluice_test_';

/** A test database older than this is a leftover of a crashed run and is dropped by the next run. */
const STALE_TEST_DATABASE_MS = 6 * 60 * 60 * 1000;

/** Whether we run in CI, where an unreachable service is a failure rather than a skip. */
export function isCi(): boolean {
  const value = process.env.CI;
  return value !== undefined && value !== '' && value !== '0' && value.toLowerCase() !== 'false';
}

/**
 * The Postgres URL to test against, or `null` when Postgres does not answer: then it prints
 * why, and with CI set also registers a failing test. Call it at the top level of a test
 * file (not inside a test). `suite` names the caller in the message, e.g. the file's path.
 */
export async function postgresUrlForTests(suite: string): Promise<string | null> {
  return await serviceUrlForTests('Postgres', TEST_POSTGRES_URL, suite, probePostgres);
}

/** Same as {@link postgresUrlForTests}, for Redis (`redis://` or `rediss://`). */
export async function redisUrlForTests(suite: string): Promise<string | null> {
  return await serviceUrlForTests('Redis', TEST_REDIS_URL, suite, probeRedis);
}

/**
 * A name unique to this run, for a Postgres database or a Redis key prefix:
 * `sluice_test_<label>_<time>_<random>`, at most 63 characters (Postgres' identifier limit),
 * only `[a-z0-9_]`. The time part lets a later run recognise leftovers.
 */
export function uniqueTestName(label: string): string {
  const safeLabel = label.toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_+|_+$/g, '').slice(0, 24) || 'x';
  const random = crypto.getRandomValues(new Uint8Array(4)).toHex();
  return `${TEST_DATABASE_PREFIX}${safeLabel}_${Date.now().toString(36)}_${random}`;
}

export interface TestPostgresDatabase {
  /** Connection URL of the new database (same server and credentials as the base URL). */
  readonly url: string;
  /** Its name, from {@link uniqueTestName}. */
  readonly name: string;
  /** Drops it, closing any connection still open to it. Safe to call twice. */
  drop(): Promise<void>;
}

/**
 * Creates an empty database for one test file, so test files never see each other's
 * tables, even when they run at the same time. A database rather than a schema:
 * introspection (Kysely's Migrator among others) looks across every schema of a database.
 *
 * Call `drop()` in `afterAll`. Leftovers of crashed runs are dropped here once stale.
 */
export async function createTestPostgresDatabase(baseUrl: string, label: string): Promise<TestPostgresDatabase> {
  const name = uniqueTestName(label);
  await withAdminClient(baseUrl, async (admin) => {
    await dropStaleTestDatabases(admin);
    // Identifiers cannot be bound as parameters; the name is [a-z0-9_] by construction.
    await admin.unsafe(`create database "${name}"`);
  });
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  let dropping: Promise<void> | undefined;
  return {
    url: url.toString(),
    name,
    drop() {
      dropping ??= withAdminClient(baseUrl, async (admin) => {
        await admin.unsafe(`drop database if exists "${name}" with (force)`);
      });
      return dropping;
    },
  };
}

async function withAdminClient(baseUrl: string, work: (admin: SQL) => Promise<void>): Promise<void> {
  const admin = new SQL(baseUrl, { max: 1, connectionTimeout: PROBE_TIMEOUT_MS / 1000 });
  try {
    await work(admin);
  } finally {
    await admin.close();
  }
}

async function dropStaleTestDatabases(admin: SQL): Promise<void> {
  const rows: Array<{ datname: string }> = await admin`
    select datname from pg_database where starts_with(datname, ${TEST_DATABASE_PREFIX})`;
  const now = Date.now();
  for (const { datname } of rows) {
    // sluice_test_<label>_<time36>_<random>: the time is the second-to-last part.
    const createdAt = Number.parseInt(datname.split('_').at(-2) ?? '', 36);
    if (!Number.isFinite(createdAt) || now - createdAt < STALE_TEST_DATABASE_MS) {
      continue;
    }
    // Another run may be dropping the same leftover right now; losing that race is fine.
    await admin.unsafe(`drop database if exists "${datname.replaceAll('"', '""')}" with (force)`).catch(() => {});
  }
}

type Probe = (url: string) => Promise<string | null>;

// One probe per service and URL per process: bun test runs many files in one process.
const probes = new Map<string, Promise<string | null>>();

async function serviceUrlForTests(service: string, url: string, suite: string, probe: Probe): Promise<string | null> {
  const key = `${service} ${url}`;
  let pending = probes.get(key);
  if (pending === undefined) {
    pending = probe(url);
    probes.set(key, pending);
  }
  const failure = await pending;
  if (failure === null) {
    return url;
  }
  const where = maskDatabaseUrl(url);
  if (isCi()) {
    const message =
      `${suite}: ${service} is not reachable at ${where} (${failure}), and CI is set, so this is a failure: ` +
      `CI must run the ${service} tests. Start ${service} or point TEST_${service.toUpperCase()}_URL at one.`;
    console.error(`[fail] ${message}`);
    // A failing test rather than a throw: the file's other tests still run and report, and
    // the run fails with this message in its list of failures.
    test(`${service} is reachable (required when CI is set)`, () => {
      throw new Error(message);
    });
    return null;
  }
  console.warn(
    `[skip] ${suite}: ${service} tests skipped because ${service} is not reachable at ${where} (${failure}). ` +
      'With CI set this is a failure.',
  );
  return null;
}

/** `null` when Postgres answers a query, else why not. */
async function probePostgres(url: string): Promise<string | null> {
  let client: SQL | undefined;
  try {
    client = new SQL(url, { max: 1, connectionTimeout: PROBE_TIMEOUT_MS / 1000 });
    await withTimeout(client`select 1`, PROBE_TIMEOUT_MS);
    return null;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  } finally {
    await client?.close({ timeout: 0 }).catch(() => {});
  }
}

/** `null` when something speaking RESP answers a PING, else why not. */
async function probeRedis(url: string): Promise<string | null> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return `not a URL: ${maskDatabaseUrl(url)}`;
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    return `the probe understands redis:// and rediss:// only, got ${parsed.protocol}//`;
  }
  const hostname = parsed.hostname || '127.0.0.1';
  const port = parsed.port === '' ? 6379 : Number(parsed.port);
  const { promise, resolve } = Promise.withResolvers<string | null>();
  const timer = setTimeout(() => resolve(`no answer within ${PROBE_TIMEOUT_MS} ms`), PROBE_TIMEOUT_MS);
  const socket = await Bun.connect({
    hostname,
    port,
    tls: parsed.protocol === 'rediss:',
    socket: {
      open(sock) {
        sock.write('PING\r\n');
      },
      // Any RESP reply proves a Redis answers, "-NOAUTH" included: the tests authenticate with the URL.
      data(_sock, data) {
        const first = String.fromCharCode(data[0] ?? 0);
        resolve(first === '+' || first === '-' ? null : 'the server did not answer in RESP');
      },
      error(_sock, error) {
        resolve(error.message);
      },
      connectError(_sock, error) {
        resolve(error.message);
      },
      close() {
        resolve('connection closed before an answer');
      },
    },
  }).catch((error: unknown) => {
    resolve(error instanceof Error ? error.message : String(error));
    return undefined;
  });
  const failure = await promise;
  clearTimeout(timer);
  socket?.end();
  return failure;
}

function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
