import { isRecord, num, pickHeaders, str } from '../shared/openai-format.ts'

/** OpenAI's error types (and Groq's `requests`/`tokens` for its rate limits) as the statuses they come with outside a stream. */
const TYPE_STATUS: Readonly<Record<string, number>> = {
  invalid_request_error: 400,
  authentication_error: 401,
  permission_error: 403,
  not_found_error: 404,
  rate_limit_error: 429,
  requests: 429,
  tokens: 429,
  insufficient_quota: 429,
  server_error: 500,
  api_error: 500,
  overloaded_error: 503,
  service_unavailable: 503,
}

/** Error codes that say more than their type: a rate limit or a spent quota, whatever type it is filed under. */
const CODE_STATUS: Readonly<Record<string, number>> = {
  rate_limit_exceeded: 429,
  insufficient_quota: 429,
  invalid_api_key: 401,
  server_is_overloaded: 503,
  context_length_exceeded: 400,
}

/** Headers balancing reads off an error: retry hints and the rate-limit state. */
const hintHeaders = (headers: Headers): Record<string, string> =>
  pickHeaders(headers, (name) => name === 'retry-after' || name === 'retry-after-ms' || name.startsWith('x-ratelimit-'))

/**
 * The status an error event stands for: its numeric `code` where that is an HTTP error status
 * (OpenRouter's, vLLM's), else its `code` or `type` as OpenAI answers them outside a stream, else 500.
 */
function statusOf(error: Record<string, unknown>): number {
  const numeric = num(error.code) ?? num(error.status)
  if (numeric !== undefined && Number.isInteger(numeric) && numeric >= 400 && numeric < 600) return numeric
  return CODE_STATUS[str(error.code) ?? ''] ?? TYPE_STATUS[str(error.type) ?? ''] ?? 500
}

/**
 * The HTTP error a stream's first event stands for, or undefined when it is none. An OpenAI-format
 * server that fails before any content may still answer 200 and say so in its first event: OpenAI's
 * and Groq's `{"error": {message, type, code}}`, OpenRouter's `{"error": {code: 502, message},
 * "choices": [...finish_reason "error"]}` (after its processing comments), vLLM's older
 * `{"object": "error", message, type, code: 400}`. The answer carries that event as its body, so
 * the gateway reads its message and code as it reads any upstream error.
 */
export function streamStartError(first: string | null, headers: Headers): Response | undefined {
  if (first === null || !first.includes('error')) return undefined
  let event: unknown
  try {
    event = JSON.parse(first)
  } catch {
    return undefined
  }
  if (!isRecord(event)) return undefined
  let status: number
  if (isRecord(event.error)) status = statusOf(event.error)
  else if (event.object === 'error' && typeof event.message === 'string') status = statusOf(event)
  else return undefined
  return new Response(first, { status, headers: { 'content-type': 'application/json', ...hintHeaders(headers) } })
}
