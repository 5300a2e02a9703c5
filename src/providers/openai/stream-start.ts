import { errorEventStatus, isRecord, pickHeaders } from '../shared/openai-format.ts'

/** Headers balancing reads off an error: retry hints and the rate-limit state. */
const hintHeaders = (headers: Headers): Record<string, string> =>
  pickHeaders(headers, (name) => name === 'retry-after' || name === 'retry-after-ms' || name.startsWith('x-ratelimit-'))

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
  if (isRecord(event.error)) status = errorEventStatus(event.error)
  else if (event.object === 'error' && typeof event.message === 'string') status = errorEventStatus(event)
  else return undefined
  return new Response(first, { status, headers: { 'content-type': 'application/json', ...hintHeaders(headers) } })
}
