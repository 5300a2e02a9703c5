import { Elysia, t } from 'elysia'
import { sql } from 'kysely'
import { adminGuard } from '../admin-key.ts'
import { GatewayError } from '../errors.ts'
import { decodeCursor, encodeCursor } from '../lib/cursor.ts'
import { fromJson } from '../lib/json-text.ts'
import { EARLIEST_TIME, LATEST_TIME, parseRfc3339 } from '../lib/rfc3339.ts'
import type { Services } from '../services.ts'
import { adminErrors } from './schemas.ts'

const MAX_PAGE = 500
const tags = ['Admin: audit']
const Id = (description: string) => t.String({ minLength: 1, maxLength: 256, description })

const AuditQuery = t.Object({
  target_type: t.Optional(Id('Only changes to this kind of object: user, team, key, provider, model, provider_key')),
  target_id: t.Optional(Id('Only changes to this object (a key, user or team id, a provider id, a model name, provider/key)')),
  action: t.Optional(Id('Only this action, e.g. key.revoke, or a prefix ending in a dot, e.g. key.')),
  from: t.Optional(t.String({ maxLength: 40, description: 'RFC 3339 time: only changes at or after it' })),
  limit: t.Optional(t.Integer({ description: `Page size, 1 to ${MAX_PAGE} @default 100` })),
  before: t.Optional(t.String({ maxLength: 300, description: 'next_cursor of the previous page' })),
})

const AuditEntry = t.Object({
  object: t.Literal('audit_entry'),
  id: t.String(),
  at: t.String({ description: 'When the change was made' }),
  actor: t.String({ description: 'Who made it: `admin` (a call with the admin key) or `console` (a console session)' }),
  action: t.String({ description: 'e.g. key.revoke, quota.reset, provider.update' }),
  target_type: t.Union([t.String(), t.Null()]),
  target_id: t.Union([t.String(), t.Null()]),
  details: t.Unknown({ description: 'What the change was (field names, a reason); never a secret' }),
})

const AuditList = t.Object({ object: t.Literal('list'), data: t.Array(AuditEntry), next_cursor: t.Union([t.String(), t.Null()]) })

/** `GET /admin/audit`: the trail of admin changes, newest first, filtered and cursor-paged. */
export function auditRoutes(services: Services) {
  const db = services.db.db
  return new Elysia({ name: 'sluice.audit' }).onTransform(adminGuard(services.admin).transform).get(
    '/admin/audit',
    async ({ query }) => {
      const limit = query.limit ?? 100
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) throw new GatewayError('invalid_request', `limit must be an integer from 1 to ${MAX_PAGE}.`, { param: 'limit' })
      let q = db.selectFrom('audit_log').selectAll()
      if (query.target_type !== undefined) q = q.where('target_type', '=', query.target_type)
      if (query.target_id !== undefined) q = q.where('target_id', '=', query.target_id)
      if (query.action !== undefined) {
        // A prefix (`key.`) matches every action of that kind: compared as a substring, which neither
        // LIKE's wildcards (`_` is in action names) nor a database's collation can bend.
        const action = query.action
        q = action.endsWith('.') ? q.where(sql<string>`substr(action, 1, ${action.length})`, '=', action) : q.where('action', '=', action)
      }
      if (query.from !== undefined) {
        const from = parseRfc3339(query.from)
        if (from === null || from < EARLIEST_TIME || from > LATEST_TIME) {
          throw new GatewayError('invalid_request', 'from must be an RFC 3339 time with a time zone in the years 0000 to 9999, such as 2026-01-31T00:00:00Z (write + as %2B in a URL).', { param: 'from' })
        }
        q = q.where('at', '>=', new Date(from).toISOString())
      }
      if (query.before !== undefined) {
        const c = decodeCursor(query.before)
        if (!c) throw new GatewayError('invalid_request', 'before must be the next_cursor of a previous page; start again without it.', { param: 'before' })
        q = q.where((eb) => eb.or([eb('at', '<', c.at), eb.and([eb('at', '=', c.at), eb('id', '<', c.id)])]))
      }
      const rows = await q.orderBy('at', 'desc').orderBy('id', 'desc').limit(limit + 1).execute()
      const more = rows.length > limit
      const shown = more ? rows.slice(0, limit) : rows
      const last = shown[shown.length - 1]
      return {
        object: 'list' as const,
        // Details are JSON the gateway wrote; anything else is shown as the text it is.
        data: shown.map((r) => ({ object: 'audit_entry' as const, ...r, details: fromJson(r.details) ?? r.details })),
        next_cursor: more && last ? encodeCursor(last.at, last.id) : null,
      }
    },
    {
      query: AuditQuery,
      response: { 200: AuditList },
      detail: {
        tags,
        summary: 'Who changed what: the audit trail of the admin API, newest first',
        description:
          'Every change made through the admin API or the console: users, teams and memberships, keys (created, changed, revoked, rotated), quota resets, providers and models, provider key health resets. Pass `next_cursor` back as `before` for the next page. Never holds a key or a provider secret.',
        responses: adminErrors(400),
      },
    },
  )
}
