import type { RequestLogInsert } from '../../src/db/schema.ts'
import type { GatewayRequest, Outcome } from '../../src/plugin.ts'
import { maskKeysUpTo } from '../../src/lib/key-text.ts'
import { redactBody } from './redact.ts'
import { forwardedAddress } from '../../src/lib/forwarded.ts'


/** The `error_code` of a request the client abandoned before its end (no gateway error code applies). */
export const CLIENT_CLOSED = 'client_closed'

/**
 * The code a finished request is recorded under, in its row, its log line and the metrics
 * alike: the gateway's error code when it refused or failed the request (an upstream timeout
 * stays one even if the client left too), `client_closed` when the client abandoned it (a 499
 * before the answer, or a stream cut short at 200), null when it ended well.
 */
export function outcomeCode(outcome: Outcome): string | null {
  return outcome.errorCode ?? (outcome.aborted ? CLIENT_CLOSED : null)
}

const MAX_MODEL = 256
const MAX_USER_AGENT = 512
/** The largest value of a Postgres `integer` column. */
const MAX_INT = 2_147_483_647

/**
 * Text a database column will take: Postgres refuses NUL in `text`, and a row it refuses would
 * fail its whole batch on every retry, holding up every row behind it.
 */
function text(s: string): string {
  return s.indexOf('\u0000') < 0 ? s : s.replaceAll('\u0000', '')
}

/** {@link text}, cut to `max` characters first when given one; null for a value not there. */
function textOrNull(s: string | null | undefined, max = Infinity): string | null {
  return s === null || s === undefined ? null : text(s.length > max ? s.slice(0, max) : s)
}

/**
 * The model a client named, as stored: a key sent in its place (a client with its arguments
 * swapped) is masked, as in the error that answered it, since a key is never stored whole.
 */
function modelText(model: string | undefined): string | null {
  if (model === undefined) return null
  return textOrNull(model.includes('sk-') ? maskKeysUpTo(model, MAX_MODEL) : model, MAX_MODEL)
}

/** A count an `integer` column will take: whole, within [0, 2^31-1]; anything else (NaN) is 0. */
function count(n: number): number {
  return n >= 0 ? (n < MAX_INT ? Math.floor(n) : MAX_INT) : 0
}

/** A cost a `double precision NOT NULL` column will take: finite and not negative (Infinity would become null on its way to the writer thread). */
function usd(n: number): number {
  return Number.isFinite(n) && n > 0 ? n : 0
}

let isoSecond = Number.NaN
let isoPrefix = ''
/** `Date#toISOString` for a time in ms, with the part up to the second made once a second (one per row otherwise). */
export function isoTime(ms: number): string {
  const t = Math.floor(ms)
  const second = Math.floor(t / 1000)
  if (second !== isoSecond) {
    isoSecond = second
    isoPrefix = new Date(second * 1000).toISOString().slice(0, 20)
  }
  const milli = t - second * 1000
  return isoPrefix + (milli < 10 ? '00' : milli < 100 ? '0' : '') + milli + 'Z'
}

/** A `request_logs` row, as the table stores it. */
export type LogRow = RequestLogInsert & {
  prompt_tokens: number
  completion_tokens: number
  cached_tokens: number
  total_tokens: number
  cost_usd: number
  streamed: 0 | 1
}


/**
 * The client address: from `X-Forwarded-For` when the gateway sits behind proxies the operator
 * trusts (`trust_proxy`: true for its first entry, a number of proxies for the entry they
 * appended; see {@link forwardedAddress}), else the socket's peer. A header value that gives no
 * address is ignored rather than stored.
 */
export function clientIpOf(req: GatewayRequest, trustProxy: boolean | number): string | null {
  if (trustProxy !== false) {
    const forwarded = forwardedAddress(req.request.headers.get('x-forwarded-for'), trustProxy === true ? null : trustProxy)
    if (forwarded !== null) return forwarded
  }
  return req.clientIp
}

/**
 * One row per request, from what the pipeline recorded on it and how it ended. Every value is
 * made one both databases accept (no NUL in text, counts within `integer`, a finite cost): the
 * writer retries a refused batch as it is, so a row no database takes would stop the log.
 */
export function toRow(req: GatewayRequest, outcome: Outcome, arrivedAt: number, environment: string, trustProxy: boolean | number): LogRow {
  // A refused request is still tied to the key it presented, when auth knew it.
  const identity = req.identity ?? req.refusedKey
  const usage = req.usage
  const target = req.target
  const userAgent = req.request.headers.get('user-agent')
  return {
    id: req.id,
    at: isoTime(arrivedAt),
    key_id: identity?.keyId ?? null,
    user_id: identity?.userId ?? null,
    team_id: identity?.teamId ?? null,
    environment: req.identity?.environment ?? environment,
    endpoint: req.endpoint,
    model: modelText(req.model),
    // Upstream names come from the config or the admin API: not cut, but no NUL either.
    provider: textOrNull(target?.provider.id),
    upstream_model: textOrNull(target?.model),
    provider_key_id: textOrNull(target?.key.id),
    status: outcome.status,
    error_code: outcomeCode(outcome),
    prompt_tokens: usage ? count(usage.promptTokens) : 0,
    completion_tokens: usage ? count(usage.completionTokens) : 0,
    cached_tokens: usage ? count(usage.cachedTokens) : 0,
    total_tokens: usage ? count(usage.totalTokens) : 0,
    cost_usd: usd(usage?.costUsd ?? 0),
    usage_source: usage?.source ?? null,
    latency_ms: count(Math.round(outcome.latencyMs)),
    ttft_ms: outcome.ttftMs === null ? null : count(Math.round(outcome.ttftMs)),
    streamed: req.stream ? 1 : 0,
    // A socket's peer, or an X-Forwarded-For entry isIP accepted: no NUL in either.
    client_ip: clientIpOf(req, trustProxy),
    user_agent: textOrNull(userAgent, MAX_USER_AGENT),
  }
}

/**
 * The fields of the structured log line of a request: the row under the names a log search
 * expects, never a header but the user agent, never a key (only its id), and the body only
 * in its redacted form, when asked for.
 */
export function logFields(row: LogRow, req: GatewayRequest, outcome: Outcome, bodies: 'off' | 'redacted'): Record<string, unknown> {
  const fields: Record<string, unknown> = {
    request_id: row.id,
    endpoint: row.endpoint,
    model: row.model,
    provider: row.provider,
    upstream_model: row.upstream_model,
    provider_key_id: row.provider_key_id,
    key_id: row.key_id,
    user_id: row.user_id,
    team_id: row.team_id,
    environment: row.environment,
    status: row.status,
    error_code: row.error_code,
    prompt_tokens: row.prompt_tokens,
    completion_tokens: row.completion_tokens,
    cached_tokens: row.cached_tokens,
    total_tokens: row.total_tokens,
    cost_usd: row.cost_usd,
    usage_source: row.usage_source,
    latency_ms: row.latency_ms,
    ttft_ms: row.ttft_ms,
    streamed: row.streamed === 1,
    aborted: outcome.aborted,
    client_ip: row.client_ip,
    user_agent: row.user_agent,
  }
  if (bodies === 'redacted') fields.request_body = redactBody(req.body)
  return fields
}
