import { Elysia } from 'elysia'
import type { Kysely } from 'kysely'
import { adminGuard } from '../../src/admin-key.ts'
import { GatewayError } from '../../src/errors.ts'
import { encodeCursor } from '../../src/lib/cursor.ts'
import { echo } from '../../src/lib/key-text.ts'
import type { Database, RequestLogRow } from '../../src/db/schema.ts'
import type { Services } from '../../src/services.ts'
import { adminErrors } from '../../src/routes/schemas.ts'
import { GROUPINGS, groupLabels, logPage, logRow, usageBy, type Grouping, type LogFilter, type UsageCursor } from './repo.ts'
import * as S from './schemas.ts'
import { EARLIEST_TIME, LATEST_TIME, parseRfc3339 } from '../../src/lib/rfc3339.ts'

const tags = ['Admin: usage and logs']
/** A group with no name to show: another grouping, no such key, user or team, or none at all. */
const NO_LABEL = { name: null, display: null } as const

/**
 * `/admin/usage` and `/admin/logs`, behind the admin key. `reports`: where a report's reads run
 * instead of the gateway's connection (a SQLite file's report thread), or null.
 */
export function analyticsRoutes(services: Services, retentionDays: number, reports: Kysely<Database> | null = null) {
  const db = services.db.db
  // Reports scan a time range: on Postgres they get a longer statement timeout than requests (DatabaseHandle.report);
  // on a SQLite file they run on their own thread.
  const report = reports === null ? services.db.report.bind(services.db) : <T>(run: (db: Kysely<Database>) => Promise<T>) => run(reports)
  return (
    new Elysia({ name: 'sluice.logging.admin', prefix: '/admin' })
      // Every route here is a GET: transform runs for each of them before the query is read.
      .onTransform(adminGuard(services.admin).transform)
      .get(
        '/usage',
        async ({ query }) => {
          const by = query.group_by ?? 'key'
          const limit = bounded(query.limit, 1000, S.MAX_GROUPS, 'limit')
          const filter: LogFilter = { ...range(query.from, query.to), keyId: query.key_id, userId: query.user_id, teamId: query.team_id, model: query.model }
          const after = query.cursor === undefined ? null : parseUsageCursor(query.cursor, by)
          const groups = await report((db) => usageBy(db, by, filter, limit + 1, after))
          const more = groups.length > limit
          const page = more ? groups.slice(0, limit) : groups
          const ids = page.flatMap((g) => (g.group === null ? [] : [g.group]))
          const labels = await report((db) => groupLabels(db, by, ids))
          const data = page.map((g) => ({ ...g, ...((g.group === null ? undefined : labels.get(g.group)) ?? NO_LABEL) }))
          const last = data[data.length - 1]
          return { object: 'list' as const, group_by: by, data, next_cursor: more && last ? encodeUsageCursor(by, last) : null }
        },
        {
          query: S.UsageQuery,
          response: { 200: S.UsageList },
          detail: {
            tags,
            summary: 'Usage grouped by key, user, team, model, provider key or UTC day',
            description:
              'Requests, errors (status ≥ 400, or an upstream failure after a 200 went out; not counting requests the client abandoned: error_code client_closed), tokens and USD cost per group over [from, to), most requests first, then by group in byte order (the null group last), the same on SQLite and Postgres. Pass `next_cursor` back as `cursor` for the next page. Counts requests whose log row is written (rows are written in batches, normally within a second); pages are exact when `to` is in the past, while with live traffic a group whose count changes between pages may move across the page boundary.',
            responses: adminErrors(400),
          },
        },
      )
      .get(
        '/logs',
        async ({ query }) => {
          const limit = bounded(query.limit, 100, S.MAX_LOG_PAGE, 'limit')
          const filter: LogFilter = {
            ...range(query.from, query.to),
            keyId: query.key_id,
            userId: query.user_id,
            teamId: query.team_id,
            model: query.model,
            provider: query.provider,
            code: query.code,
            status: query.status === undefined ? undefined : query.status.endsWith('xx') ? { class: Number(query.status[0]) } : { exact: Number(query.status) },
          }
          const before = query.before === undefined ? null : parseBefore(query.before)
          const rows = await report((db) => logPage(db, filter, before, limit + 1))
          const more = rows.length > limit
          const shown = more ? rows.slice(0, limit) : rows
          const last = shown[shown.length - 1]
          return { object: 'list' as const, data: shown.map(logView), next_cursor: more && last ? encodeCursor(last.at, last.id) : null }
        },
        {
          query: S.LogsQuery,
          response: { 200: S.LogList },
          detail: {
            tags,
            summary: 'Request log, newest first, filtered and cursor-paged',
            description: 'One row per request. Pass `next_cursor` back as `before` for the next page. Never contains a key, a secret or a body.',
            responses: adminErrors(400),
          },
        },
      )
      .get(
        '/logs/:id',
        async ({ params }) => {
          const row = await logRow(db, params.id)
          if (row) return logView(row)
          const kept = retentionDays > 0 ? `, or it is older than the ${retentionDays} days rows are kept` : ''
          throw new GatewayError(
            'not_found',
            `No request log with id "${echo(params.id)}": the id is not one this gateway's deployment answered with (it is the x-request-id response header), its row is not written yet (rows are written in batches, normally within a second)${kept}.`,
          )
        },
        {
          response: { 200: S.LogEntry },
          detail: {
            tags,
            summary: 'One request, by its request id',
            description: "The log row of the request a client saw as `x-request-id` (every answer carries it, errors included): a user's report of a failed call is found by the id it quotes. Never contains a key, a secret or a body.",
            responses: adminErrors(404),
          },
        },
      )
  )
}

function logView(r: RequestLogRow) {
  return { object: 'request_log' as const, ...r, streamed: r.streamed === 1 }
}


/** What `before` holds when it is meant as a time rather than a cursor (a cursor is base64url of its time, never this). */
const LOOKS_LIKE_TIME = /^\d{4}-\d{2}-\d{2}/

/** Opaque cursor over (requests, group), in the report's order; it names its grouping so it is not reused under another. */
const encodeUsageCursor = (by: Grouping, last: UsageCursor): string => Buffer.from(JSON.stringify([by, last.requests, last.group])).toString('base64url')

function parseUsageCursor(value: string, by: Grouping): UsageCursor {
  let parsed: unknown
  try {
    parsed = JSON.parse(Buffer.from(value, 'base64url').toString('utf8'))
  } catch {
    parsed = null
  }
  if (!Array.isArray(parsed) || parsed.length !== 3 || !(GROUPINGS as readonly unknown[]).includes(parsed[0])) {
    throw new GatewayError('invalid_request', 'cursor must be the next_cursor of a previous page; start again without it.', { param: 'cursor' })
  }
  const [grouping, requests, group] = parsed as [Grouping, unknown, unknown]
  if (grouping !== by) throw new GatewayError('invalid_request', `cursor is from a report grouped by ${grouping}, not ${by}; start again without it.`, { param: 'cursor' })
  if (!Number.isSafeInteger(requests) || (requests as number) < 1 || (group !== null && typeof group !== 'string')) {
    throw new GatewayError('invalid_request', 'cursor must be the next_cursor of a previous page; start again without it.', { param: 'cursor' })
  }
  return { requests: requests as number, group: group as string | null }
}

/**
 * `before` is a cursor this API gave out, or a time. A hand-made cursor is held to the same
 * rule as a time, and its time is compared in UTC like the stored ones.
 */
function parseBefore(value: string): { at: string; id: string | null } {
  if (LOOKS_LIKE_TIME.test(value)) return { at: time(value, 'before'), id: null }
  const text = Buffer.from(value, 'base64url').toString('utf8')
  const bar = text.indexOf('|')
  const at = bar > 0 ? parseRfc3339(text.slice(0, bar)) : null
  if (at === null || at < EARLIEST_TIME || at > LATEST_TIME) {
    throw new GatewayError('invalid_request', 'before must be the next_cursor of a previous page or an RFC 3339 time with a time zone, such as 2026-01-31T00:00:00Z; start again without it.', { param: 'before' })
  }
  return { at: new Date(at).toISOString(), id: text.slice(bar + 1) }
}

function range(from: string | undefined, to: string | undefined): { from?: string; to?: string } {
  const out: { from?: string; to?: string } = {}
  if (from !== undefined) out.from = time(from, 'from')
  if (to !== undefined) out.to = time(to, 'to')
  if (out.from !== undefined && out.to !== undefined && out.from >= out.to) throw new GatewayError('invalid_request', 'from must be earlier than to.', { param: 'from' })
  return out
}

/**
 * An RFC 3339 time with its time zone (plugins/logging/time.ts) as the table stores times: UTC,
 * to the millisecond, in ISO text of fixed width, so text comparison is time comparison.
 */
function time(value: string, param: string): string {
  const at = parseRfc3339(value)
  if (at === null) {
    // A `+` left as it is in a query string arrives as a space.
    const plus = /\d \d{2}:\d{2}$/.test(value) ? ' (in a URL, write the + of an offset as %2B)' : ''
    throw new GatewayError('invalid_request', `${param} must be an RFC 3339 time: a real date, T, a time and a time zone (Z or ±hh:mm), such as 2026-01-31T00:00:00Z or 2026-01-31T05:30:00+05:30${plus}; got "${echo(value, 40)}".`, { param })
  }
  if (at < EARLIEST_TIME || at > LATEST_TIME) throw new GatewayError('invalid_request', `${param} must be in the years 0000 to 9999 in UTC; got "${echo(value, 40)}".`, { param })
  return new Date(at).toISOString()
}

function bounded(value: number | undefined, fallback: number, max: number, param: string): number {
  const n = value ?? fallback
  if (!Number.isInteger(n) || n < 1 || n > max) throw new GatewayError('invalid_request', `${param} must be an integer from 1 to ${max}.`, { param })
  return n
}
