import { t } from 'elysia'
import { GROUPINGS } from './repo.ts'

const Time = t.String({ maxLength: 40, description: 'RFC 3339 time with a time zone (Z or ±hh:mm), e.g. 2026-01-31T00:00:00Z' })
const Id = (what: string) => t.String({ minLength: 1, maxLength: 256, description: what })

/** Most groups in one usage report. */
export const MAX_GROUPS = 10_000
/** Most log rows in one page. */
export const MAX_LOG_PAGE = 1000

export const UsageQuery = t.Object({
  group_by: t.Optional(t.Union(GROUPINGS.map((g) => t.Literal(g)), { description: 'What to group by @default key' })),
  from: t.Optional(t.String({ maxLength: 40, description: 'RFC 3339 time with a time zone: only requests that arrived at or after it' })),
  to: t.Optional(t.String({ maxLength: 40, description: 'RFC 3339 time with a time zone: only requests that arrived before it' })),
  key_id: t.Optional(Id('Only this key')),
  user_id: t.Optional(Id('Only this user')),
  team_id: t.Optional(Id('Only this team')),
  model: t.Optional(Id('Only this requested model')),
  // Range checked by the handler, so the refusal can name the field.
  limit: t.Optional(t.Integer({ description: `Page size in groups, 1 to ${MAX_GROUPS} @default 1000` })),
  // A group can be a 256-character model name: room for its UTF-8, in base64.
  cursor: t.Optional(t.String({ maxLength: 4096, description: 'next_cursor of the previous page' })),
})

export const UsageGroup = t.Object({
  group: t.Union([t.String(), t.Null()], { description: 'The key, user, team, model, provider/key id or UTC day; null for requests that had none (refused before a key was known, no upstream tried)' }),
  requests: t.Number(),
  errors: t.Number({ description: 'Requests answered with a status of 400 or more, or whose upstream failed after a 200 went out (a stream cut by upstream_error or upstream_timeout), but for those the client abandoned (error_code client_closed, which are no error whether they ended at 499 or mid-stream at 200)' }),
  prompt_tokens: t.Number(),
  completion_tokens: t.Number(),
  total_tokens: t.Number(),
  cost_usd: t.Number(),
  name: t.Union([t.String(), t.Null()], { description: "For group_by key, user or team: the key's, user's (else its email) or team's name; null when it has none, and for the other groupings" }),
  display: t.Union([t.String(), t.Null()], { description: 'For group_by key: the key shortened (its start, "…", its last 4), as the admin API shows it; null otherwise' }),
})

export const UsageList = t.Object({
  object: t.Literal('list'),
  group_by: t.String(),
  data: t.Array(UsageGroup),
  next_cursor: t.Union([t.String(), t.Null()], { description: 'Pass it back as `cursor` for the next page; null on the last one' }),
})

export const LogsQuery = t.Object({
  key_id: t.Optional(Id('Only this key')),
  user_id: t.Optional(Id('Only this user')),
  team_id: t.Optional(Id('Only this team')),
  model: t.Optional(Id('Only this requested model')),
  provider: t.Optional(Id('Only this provider')),
  status: t.Optional(t.String({ pattern: '^([1-5][0-9]{2}|[1-5]xx)$', description: 'An HTTP status (429) or a class (4xx)' })),
  code: t.Optional(t.String({ maxLength: 64, description: 'An error code, e.g. rate_limit_exceeded' })),
  from: t.Optional(Time),
  to: t.Optional(Time),
  limit: t.Optional(t.Integer({ description: `Page size, 1 to ${MAX_LOG_PAGE} @default 100` })),
  before: t.Optional(t.String({ maxLength: 300, description: 'next_cursor of the previous page, or an RFC 3339 time with a time zone' })),
})

export const LogEntry = t.Object({
  object: t.Literal('request_log'),
  id: t.String({ description: 'The request id (x-request-id)' }),
  at: t.String({ description: 'When the request arrived' }),
  key_id: t.Union([t.String(), t.Null()]),
  user_id: t.Union([t.String(), t.Null()]),
  team_id: t.Union([t.String(), t.Null()]),
  environment: t.String(),
  endpoint: t.String(),
  model: t.Union([t.String(), t.Null()]),
  provider: t.Union([t.String(), t.Null()]),
  upstream_model: t.Union([t.String(), t.Null()]),
  provider_key_id: t.Union([t.String(), t.Null()]),
  status: t.Number(),
  error_code: t.Union([t.String(), t.Null()]),
  prompt_tokens: t.Number(),
  completion_tokens: t.Number(),
  cached_tokens: t.Number(),
  total_tokens: t.Number(),
  cost_usd: t.Number(),
  usage_source: t.Union([t.String(), t.Null()]),
  latency_ms: t.Number(),
  ttft_ms: t.Union([t.Number(), t.Null()]),
  streamed: t.Boolean(),
  client_ip: t.Union([t.String(), t.Null()]),
  user_agent: t.Union([t.String(), t.Null()]),
})

export const LogList = t.Object({
  object: t.Literal('list'),
  data: t.Array(LogEntry),
  next_cursor: t.Union([t.String(), t.Null()]),
})
