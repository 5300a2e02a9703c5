import type { RequestLogInsert } from '../../src/db/schema.ts'
import type { GatewayRequest, Outcome } from '../../src/plugin.ts'
import { redactBody } from './redact.ts'

/** The `error_code` of a request the client abandoned before its end (no gateway error code applies). */
export const CLIENT_CLOSED = 'client_closed'

const MAX_MODEL = 256
const MAX_USER_AGENT = 512
/** An address as it may appear in `X-Forwarded-For`: IPv4, IPv6 (possibly with a zone), nothing else. */
const ADDRESS = /^[0-9A-Fa-f:.%]{2,64}$/

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
 * The client address: the first `X-Forwarded-For` entry when the gateway sits behind a proxy
 * the operator trusts (`trust_proxy`), else the socket's peer. A header value that is not an
 * address is ignored rather than stored.
 */
export function clientIpOf(req: GatewayRequest, trustProxy: boolean): string | null {
  if (trustProxy) {
    const forwarded = req.request.headers.get('x-forwarded-for')
    if (forwarded) {
      const comma = forwarded.indexOf(',')
      const first = (comma < 0 ? forwarded : forwarded.slice(0, comma)).trim()
      if (ADDRESS.test(first)) return first
    }
  }
  return req.clientIp
}

/** One row per request, from what the pipeline recorded on it and how it ended. */
export function toRow(req: GatewayRequest, outcome: Outcome, arrivedAt: number, environment: string, trustProxy: boolean): LogRow {
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
    model: req.model === undefined ? null : req.model.slice(0, MAX_MODEL),
    provider: target?.provider.id ?? null,
    upstream_model: target?.model ?? null,
    provider_key_id: target?.key.id ?? null,
    status: outcome.status,
    error_code: outcome.errorCode ?? (outcome.aborted ? CLIENT_CLOSED : null),
    prompt_tokens: usage?.promptTokens ?? 0,
    completion_tokens: usage?.completionTokens ?? 0,
    cached_tokens: usage?.cachedTokens ?? 0,
    total_tokens: usage?.totalTokens ?? 0,
    cost_usd: usage?.costUsd ?? 0,
    usage_source: usage?.source ?? null,
    latency_ms: Math.round(outcome.latencyMs),
    ttft_ms: outcome.ttftMs === null ? null : Math.round(outcome.ttftMs),
    streamed: req.stream ? 1 : 0,
    client_ip: clientIpOf(req, trustProxy),
    user_agent: userAgent === null ? null : userAgent.slice(0, MAX_USER_AGENT),
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
