import { PostgresAdapter, sql, type Expression, type Kysely, type RawBuilder, type Transaction } from 'kysely'
import type { Database, RequestLogRow } from '../../src/db/schema.ts'
import { byteOrder } from '../../src/db/index.ts'
import { displayKey } from '../../src/lib/key-text.ts'
import { roundUsdSum } from '../../src/lib/usage.ts'
import { CLIENT_CLOSED } from './row.ts'

/** A database or a transaction: repositories take either. */
export type Db = Kysely<Database> | Transaction<Database>

export const GROUPINGS = ['key', 'user', 'team', 'model', 'provider_key', 'day'] as const
export type Grouping = (typeof GROUPINGS)[number]

/** Filters shared by the usage report and the log listing. */
export interface LogFilter {
  from?: string
  to?: string
  keyId?: string
  userId?: string
  teamId?: string
  model?: string
  provider?: string
  /** An exact status, or a class as its first digit (4 for 4xx). */
  status?: { exact: number } | { class: number }
  code?: string
}

export interface UsageGroup {
  group: string | null
  requests: number
  errors: number
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
  cost_usd: number
}

/** Postgres returns sums of integers as bigint text; SQLite as numbers. */
const num = (v: unknown): number => (v === null || v === undefined ? 0 : Number(v))

/**
 * A column as a grouping that no index serves: given the bare column, SQLite groups by walking
 * its (column, at) index and reading each row from the table in that order, which over a big
 * log is far slower than reading the rows in range and sorting them (16 s against 2.6 s over a
 * million rows). Postgres plans it as the column.
 */
const unindexed = (column: 'key_id' | 'user_id' | 'team_id') => sql<string | null>`coalesce(${sql.ref(column)}, null)`

/** A sum of costs, without the float noise of the database's addition (see roundUsdSum). */
const usdSum = (v: unknown): number => roundUsdSum(num(v))

/**
 * The sum of a cost column (or an expression of one) as each dialect adds it exactly: SQLite's
 * sum() of doubles is compensated (Kahan-Babushka-Neumaier, since 3.43), Postgres' is a double's
 * addition row after row, whose error grows with the rows past what usdSum's rounding hides (2,400
 * costs of $0.00025 made 0.599999999999962), so Postgres adds them as numeric (each cost's 15
 * digits, exact). Both then read the same after usdSum.
 */
function costSum(db: Db, cost: Expression<number> | RawBuilder<number>): RawBuilder<number> {
  return db.getExecutor().adapter instanceof PostgresAdapter ? sql<number>`sum(cast(${cost} as numeric))` : sql<number>`sum(${cost})`
}

function groupExpression(by: Grouping): Expression<string | null> {
  switch (by) {
    case 'key':
      return unindexed('key_id')
    case 'user':
      return unindexed('user_id')
    case 'team':
      return unindexed('team_id')
    case 'model':
      return sql.ref<string | null>('model')
    // `||` is SQL's concatenation on both dialects; a NULL part makes the group NULL (no upstream was tried).
    case 'provider_key':
      return sql<string | null>`${sql.ref('provider')} || '/' || ${sql.ref('provider_key_id')}`
    // ISO times: the first ten characters are the UTC day.
    case 'day':
      return sql<string | null>`substr(${sql.ref('at')}, 1, 10)`
  }
}

function applyFilter<Q extends { where: (...args: never[]) => unknown }>(q: Q, f: LogFilter): Q {
  let r = q as unknown as import('kysely').SelectQueryBuilder<Database, 'request_logs', object>
  if (f.from !== undefined) r = r.where('at', '>=', f.from)
  if (f.to !== undefined) r = r.where('at', '<', f.to)
  if (f.keyId !== undefined) r = r.where('key_id', '=', f.keyId)
  if (f.userId !== undefined) r = r.where('user_id', '=', f.userId)
  if (f.teamId !== undefined) r = r.where('team_id', '=', f.teamId)
  if (f.model !== undefined) r = r.where('model', '=', f.model)
  if (f.provider !== undefined) r = r.where('provider', '=', f.provider)
  if (f.code !== undefined) r = r.where('error_code', '=', f.code)
  if (f.status !== undefined) {
    if ('exact' in f.status) r = r.where('status', '=', f.status.exact)
    else r = r.where('status', '>=', f.status.class * 100).where('status', '<', f.status.class * 100 + 100)
  }
  return r as unknown as Q
}

/** Where a usage page ends: the last group shown and its request count. */
export interface UsageCursor {
  requests: number
  group: string | null
}

/**
 * Requests, errors, tokens and cost per group: most requests first, then by group with the
 * null group last on both dialects (SQLite sorts NULL first, Postgres last), so the order is
 * total and the same everywhere. With `after`, only the groups that come after it in that order.
 */
export async function usageBy(db: Db, by: Grouping, filter: LogFilter, limit: number, after: UsageCursor | null = null): Promise<UsageGroup[]> {
  const group = groupExpression(by)
  const grouped = applyFilter(db.selectFrom('request_logs'), filter)
    .select([
      sql<string | null>`${group}`.as('group'),
      (eb) => eb.fn.countAll<number>().as('requests'),
      // An error is an answer of 400 or more, or one whose upstream failed after its 200 went out (a
      // stream cut by upstream_error or upstream_timeout); a request the client abandoned is none,
      // whether it left before the answer (499) or during a stream (200): both carry client_closed,
      // which only an abandonment does.
      sql<number>`sum(case when (${sql.ref('status')} >= 400 or ${sql.ref('error_code')} is not null) and (${sql.ref('error_code')} is null or ${sql.ref('error_code')} <> ${CLIENT_CLOSED}) then 1 else 0 end)`.as('errors'),
      (eb) => eb.fn.sum<number>('prompt_tokens').as('prompt_tokens'),
      (eb) => eb.fn.sum<number>('completion_tokens').as('completion_tokens'),
      (eb) => eb.fn.sum<number>('total_tokens').as('total_tokens'),
      costSum(db, sql.ref('cost_usd')).as('cost_usd'),
    ])
    .groupBy(group)
  // Filtered and ordered outside the aggregate, by its output columns: the keyset condition
  // then needs no HAVING that repeats the grouping expression.
  const isNull = sql<number>`case when ${sql.ref('u.group')} is null then 1 else 0 end`
  // Groups are ordered, and the cursor compared, byte by byte as SQLite does: Postgres would use the
  // database's collation, which in a linguistic one (en_US, ICU) sorts case and punctuation otherwise.
  const groupText: RawBuilder<string | null> = byteOrder('u.group', db.getExecutor().adapter instanceof PostgresAdapter ? 'postgres' : 'sqlite')
  let q = db.selectFrom(grouped.as('u')).selectAll('u')
  if (after) {
    const { requests, group: last } = after
    q =
      last === null
        ? q.where('u.requests', '<', requests)
        : q.where((eb) => eb.or([eb('u.requests', '<', requests), eb.and([eb('u.requests', '=', requests), eb.or([eb('u.group', 'is', null), eb(groupText, '>', last)])])]))
  }
  const rows = await q.orderBy('u.requests', 'desc').orderBy(isNull).orderBy(groupText).limit(limit).execute()
  return rows.map((r) => ({
    group: r.group === null || r.group === undefined ? null : String(r.group),
    requests: num(r.requests),
    errors: num(r.errors),
    prompt_tokens: num(r.prompt_tokens),
    completion_tokens: num(r.completion_tokens),
    total_tokens: num(r.total_tokens),
    cost_usd: usdSum(r.cost_usd),
  }))
}

/** One page of log rows, newest first, strictly before the cursor `(at, id)` when given. */
export async function logPage(db: Db, filter: LogFilter, before: { at: string; id: string | null } | null, limit: number): Promise<RequestLogRow[]> {
  let q = applyFilter(db.selectFrom('request_logs').selectAll(), filter)
  if (before) {
    const { at, id } = before
    q = id === null ? q.where('at', '<', at) : q.where((eb) => eb.or([eb('at', '<', at), eb.and([eb('at', '=', at), eb('id', '<', id)])]))
  }
  const rows = await q.orderBy('at', 'desc').orderBy('id', 'desc').limit(limit).execute()
  return rows.map(normaliseRow)
}

/** The log row of one request, by its id (x-request-id), or null. */
export async function logRow(db: Db, id: string): Promise<RequestLogRow | null> {
  const row = await db.selectFrom('request_logs').selectAll().where('id', '=', id).executeTakeFirst()
  return row ? normaliseRow(row) : null
}

/** Numbers as numbers on both dialects (Postgres' driver may hand bigints back as text). */
export function normaliseRow(r: RequestLogRow): RequestLogRow {
  return {
    ...r,
    status: num(r.status),
    prompt_tokens: num(r.prompt_tokens),
    completion_tokens: num(r.completion_tokens),
    cached_tokens: num(r.cached_tokens),
    total_tokens: num(r.total_tokens),
    cost_usd: num(r.cost_usd),
    latency_ms: num(r.latency_ms),
    ttft_ms: r.ttft_ms === null ? null : num(r.ttft_ms),
    streamed: num(r.streamed) === 1 ? 1 : 0,
  }
}

/**
 * Delete up to `batch` rows older than `cutoff` (ISO), oldest first, in one short statement;
 * returns how many went. Called in a loop: no single statement holds a lock for long.
 */
export async function deleteOlderThan(db: Db, cutoff: string, batch: number): Promise<number> {
  const result = await db
    .deleteFrom('request_logs')
    .where('id', 'in', (eb) => eb.selectFrom('request_logs').select('id').where('at', '<', cutoff).orderBy('at').limit(batch))
    .executeTakeFirst()
  return Number(result.numDeletedRows)
}

export type SpendColumn = 'key_id' | 'user_id' | 'team_id'

/** What a subject spent: tokens and USD. */
export interface Spend {
  tokens: number
  usd: number
}

/** What a subject spent since a time, and of it what was logged before `closedBefore` (zero without one). */
export interface SpendSplit extends Spend {
  closed: Spend
}

/** Sums of tokens and USD, and of the rows before `closedBefore` (ISO; null: none), as the columns of one query; `prefix` names the log's table. */
function spendSums(db: Db, prefix: '' | 'r.', closedBefore: string | null) {
  const ref = (column: 'at' | 'total_tokens' | 'cost_usd') => sql.ref<number>(`${prefix}${column}`)
  const closedTokens = closedBefore === null ? sql<number>`0` : sql<number>`sum(case when ${ref('at')} < ${closedBefore} then ${ref('total_tokens')} else 0 end)`
  const closedUsd = closedBefore === null ? sql<number>`0` : costSum(db, sql<number>`case when ${ref('at')} < ${closedBefore} then ${ref('cost_usd')} else 0 end`)
  return [sql<number>`sum(${ref('total_tokens')})`.as('tokens'), costSum(db, ref('cost_usd')).as('usd'), closedTokens.as('closed_tokens'), closedUsd.as('closed_usd')] as const
}

const split = (r: { tokens: unknown; usd: unknown; closed_tokens: unknown; closed_usd: unknown }): SpendSplit => ({
  tokens: num(r.tokens),
  usd: usdSum(r.usd),
  closed: { tokens: num(r.closed_tokens), usd: usdSum(r.closed_usd) },
})

/**
 * Tokens and USD spent per subject since `from` (ISO; null: ever), for the given ids; with
 * `closedBefore`, the part logged before it too, in the same read (see SpendCache).
 */
export async function spendSince(db: Db, column: SpendColumn, ids: readonly string[], from: string | null, closedBefore: string | null = null): Promise<Map<string, SpendSplit>> {
  const out = new Map<string, SpendSplit>()
  await inChunks(ids, async (chunk) => {
    let q = db
      .selectFrom('request_logs')
      .select([sql<string>`${sql.ref(column)}`.as('id'), ...spendSums(db, '', closedBefore)])
      .where(column, 'in', chunk)
    if (from !== null) q = q.where('at', '>=', from)
    const rows = await q.groupBy(column).execute()
    for (const r of rows) out.set(String(r.id), split(r))
  })
  return out
}

/**
 * Tokens and USD spent per key lineage since `from` (ISO; null: ever), for the given lineage
 * ids: the logged spend of every key of the lineage (`coalesce(lineage_id, id)`), so a rotated
 * key's spend goes on from its predecessors', as the quota counts it. With `closedBefore`, the
 * part logged before it too.
 */
export async function lineageSpendSince(db: Db, lineages: readonly string[], from: string | null, closedBefore: string | null = null): Promise<Map<string, SpendSplit>> {
  const out = new Map<string, SpendSplit>()
  const lineage = sql<string>`coalesce(${sql.ref('k.lineage_id')}, ${sql.ref('k.id')})`
  // Each chunk is bound twice: still far below both dialects' parameter caps.
  await inChunks(lineages, async (chunk) => {
    let q = db
      .selectFrom('api_keys as k')
      .innerJoin('request_logs as r', 'r.key_id', 'k.id')
      .select([lineage.as('id'), ...spendSums(db, 'r.', closedBefore)])
      // The lineage's first key by its id, its successors by api_keys_lineage_id_idx; both
      // then reach their rows by request_logs_key_id_at_idx.
      .where((eb) => eb.or([eb('k.lineage_id', 'in', chunk), eb.and([eb('k.lineage_id', 'is', null), eb('k.id', 'in', chunk)])]))
    if (from !== null) q = q.where('r.at', '>=', from)
    const rows = await q.groupBy(lineage).execute()
    for (const r of rows) out.set(String(r.id), split(r))
  })
  return out
}

/** Runs `run` on the ids 500 at a time, one after the other: both dialects cap the parameters a statement binds. */
export async function inChunks(ids: readonly string[], run: (chunk: readonly string[]) => Promise<void>): Promise<void> {
  for (let i = 0; i < ids.length; i += 500) await run(ids.slice(i, i + 500))
}

/** What a usage group shows beside its id: a name, and for a key its shortened form. */
export interface GroupLabel {
  name: string | null
  display: string | null
}

/**
 * The names of the keys, users or teams a page of usage groups names, in one query per 500 (inChunks)
 * (not one per group): a key's name and shortened form (`start…end`, as the admin API shows it),
 * a user's name or else its email, a team's name. Deleted users and teams keep theirs. Empty for
 * the groupings that are names already (model, provider key, day).
 */
export async function groupLabels(db: Db, by: Grouping, ids: readonly string[]): Promise<Map<string, GroupLabel>> {
  const labels = new Map<string, GroupLabel>()
  if (by !== 'key' && by !== 'user' && by !== 'team') return labels
  await inChunks(ids, async (chunk) => {
    if (by === 'key') {
      const rows = await db.selectFrom('api_keys').select(['id', 'name', 'start', 'end']).where('id', 'in', chunk).execute()
      for (const r of rows) labels.set(r.id, { name: r.name, display: displayKey(r.start, r.end) })
    } else if (by === 'user') {
      const rows = await db.selectFrom('users').select(['id', 'name', 'email']).where('id', 'in', chunk).execute()
      for (const r of rows) labels.set(r.id, { name: r.name ?? r.email, display: null })
    } else {
      const rows = await db.selectFrom('teams').select(['id', 'name']).where('id', 'in', chunk).execute()
      for (const r of rows) labels.set(r.id, { name: r.name, display: null })
    }
  })
  return labels
}
