/**
 * Helpers for the logging plugin's tests: waiting for rows, reading the plugin's hooks,
 * holding SQLite's write lock (the SQLite form of "the database is unavailable"), and a
 * logger that keeps its lines.
 */
import { Database } from 'bun:sqlite'
import type { Kysely } from 'kysely'
import type { Database as Schema, RequestLogInsert } from '../../src/db/schema.ts'
import { createLogger, type LogLevel, type Logger } from '../../src/lib/logger.ts'
import type { Gateway } from '../../src/server.ts'
import type { LoggingHooks } from '../../plugins/logging/index.ts'

/** Rows in request_logs now. */
export async function rowCount(db: Kysely<Schema>): Promise<number> {
  const row = await db.selectFrom('request_logs').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()
  return Number(row.n)
}

/** Wait until request_logs holds `n` rows (polling); fails saying how many it saw. */
export async function waitForRows(db: Kysely<Schema>, n: number, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  let seen = -1
  while (Date.now() < deadline) {
    seen = await rowCount(db)
    if (seen >= n) return
    await Bun.sleep(20)
  }
  throw new Error(`expected ${n} request_logs rows within ${ms} ms, saw ${seen}`)
}

/** The loaded logging plugin's hooks (stats, prune, checkAlerts). */
export function loggingHooks(gateway: Gateway): LoggingHooks {
  const plugin = gateway.plugins.find((p) => p.name === 'logging')
  if (!plugin) throw new Error('the logging plugin is not loaded')
  return plugin.hooks as LoggingHooks
}

/**
 * Take SQLite's write lock on a database file from another connection, as another process
 * would (`BEGIN EXCLUSIVE`): writers elsewhere get SQLITE_BUSY until `release`.
 */
export function lockSqlite(path: string): { release(): void } {
  const other = new Database(path)
  // Waits for a writer that holds the lock right now (the logging writer thread, say), then keeps it.
  other.run('PRAGMA busy_timeout = 5000')
  other.run('BEGIN EXCLUSIVE')
  let released = false
  return {
    release() {
      if (released) return
      released = true
      other.run('COMMIT')
      other.close()
    },
  }
}

/** A logger that keeps every line it writes (as parsed JSON), at `level`. */
export function capturingLogger(level: LogLevel = 'info'): { logger: Logger; lines: Array<Record<string, unknown>>; raw: string[] } {
  const lines: Array<Record<string, unknown>> = []
  const raw: string[] = []
  const logger = createLogger(level, (line) => {
    raw.push(line)
    lines.push(JSON.parse(line) as Record<string, unknown>)
  })
  return { logger, lines, raw }
}

/** A complete request_logs row for fixtures, with defaults a test overrides. */
export function logRow(id: string, at: string, over: Partial<RequestLogInsert> = {}): RequestLogInsert {
  return {
    id,
    at,
    key_id: null,
    user_id: null,
    team_id: null,
    environment: 'dev',
    endpoint: 'chat.completions',
    model: 'mock-gpt',
    provider: 'up',
    upstream_model: 'mock-gpt',
    provider_key_id: 'k1',
    status: 200,
    error_code: null,
    prompt_tokens: 0,
    completion_tokens: 0,
    cached_tokens: 0,
    total_tokens: 0,
    cost_usd: 0,
    usage_source: 'provider',
    latency_ms: 5,
    ttft_ms: null,
    streamed: 0,
    client_ip: '127.0.0.1',
    user_agent: 'test',
    ...over,
  }
}
