import {
  CONTEXT_LENGTH_EXCEEDED,
  chatUsage,
  count,
  errorResponse,
  errorTypeForStatus,
  isRecord,
  nowSeconds,
  pickHeaders,
  str,
  type ChatCompletion,
  type ChatUsage,
  type FinishReason,
  type JsonObject,
  type ToolCall,
  UPSTREAM_STATUS_HEADER,
} from '../shared/openai-format.ts'

/** Anthropic's `stop_reason` in OpenAI's terms. */
export function finishReason(stopReason: unknown): FinishReason {
  switch (stopReason) {
    case 'max_tokens':
    case 'model_context_window_exceeded':
      return 'length'
    case 'tool_use':
      return 'tool_calls'
    case 'refusal':
      return 'content_filter'
    default:
      // end_turn, stop_sequence, pause_turn
      return 'stop'
  }
}

/**
 * Anthropic's usage in OpenAI's terms. Anthropic counts cached and cache-writing input
 * apart from `input_tokens`; OpenAI's `prompt_tokens` holds all of them, with the cache
 * hits repeated as `cached_tokens` and the cache writes as `cache_creation_input_tokens`
 * (Anthropic bills them above the input price), with Anthropic's `cache_creation` split where some
 * went to the 1-hour cache (billed higher still).
 */
export function usageOf(usage: unknown): ChatUsage | undefined {
  // No usage is better than zeros: without it the gateway counts the tokens itself.
  if (!isRecord(usage)) return undefined
  const u = usage
  const cacheRead = count(u.cache_read_input_tokens)
  const cacheWrite = count(u.cache_creation_input_tokens)
  const prompt = count(u.input_tokens) + cacheRead + cacheWrite
  const out = chatUsage(prompt, count(u.output_tokens), cacheRead, 0, cacheWrite)
  const split = u.cache_creation
  const hour = cacheWrite > 0 && isRecord(split) ? Math.min(count(split.ephemeral_1h_input_tokens), cacheWrite) : 0
  if (hour > 0) out.cache_creation = { ephemeral_5m_input_tokens: cacheWrite - hour, ephemeral_1h_input_tokens: hour }
  return out
}

/**
 * A thinking block as the client keeps it to send back on the next turn (`thinking_blocks`):
 * Claude's reasoning with its signature, or a redacted block's encrypted data. Undefined for a
 * block without them.
 */
export function thinkingBlock(block: JsonObject): JsonObject | undefined {
  if (block.type === 'redacted_thinking') return typeof block.data === 'string' ? { type: 'redacted_thinking', data: block.data } : undefined
  if (typeof block.thinking !== 'string') return undefined
  return { type: 'thinking', thinking: block.thinking, signature: str(block.signature) ?? '' }
}

/**
 * A Messages API answer as an OpenAI `chat.completion`. Claude's thinking comes as
 * `reasoning_content` (its text) and `thinking_blocks` (to be sent back with the message).
 * `answerTool` names the tool a JSON answer was asked through (response_format): its input is
 * the content, as JSON text.
 */
export function toChatCompletion(message: JsonObject, fallbackModel: string, answerTool?: string): ChatCompletion {
  let text = ''
  let reasoning = ''
  const thinking: JsonObject[] = []
  let answer: string | undefined
  const toolCalls: ToolCall[] = []
  const blocks = Array.isArray(message.content) ? message.content : []
  for (const block of blocks) {
    if (!isRecord(block)) continue
    if (block.type === 'text' && typeof block.text === 'string') text += block.text
    else if (block.type === 'tool_use' && answerTool !== undefined && block.name === answerTool) {
      answer = JSON.stringify(isRecord(block.input) ? block.input : {})
    } else if (block.type === 'tool_use') {
      toolCalls.push({
        id: str(block.id) ?? '',
        type: 'function',
        function: { name: str(block.name) ?? '', arguments: JSON.stringify(isRecord(block.input) ? block.input : {}) },
      })
    }
    else if (block.type === 'thinking' || block.type === 'redacted_thinking') {
      const kept = thinkingBlock(block)
      if (kept) thinking.push(kept)
      if (typeof kept?.thinking === 'string') reasoning += kept.thinking
    }
    // Server-tool blocks have no OpenAI counterpart.
  }
  // The client asked for JSON: any text beside the answer would make the content unparseable.
  if (answer !== undefined) text = answer
  const completion: ChatCompletion = {
    id: str(message.id) ?? 'msg_unknown',
    object: 'chat.completion',
    created: nowSeconds(),
    model: str(message.model) ?? fallbackModel,
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: text === '' && toolCalls.length ? null : text,
          refusal: null,
          ...(toolCalls.length ? { tool_calls: toolCalls } : {}),
          ...(reasoning ? { reasoning_content: reasoning } : {}),
          ...(thinking.length ? { thinking_blocks: thinking } : {}),
        },
        logprobs: null,
        finish_reason: answer !== undefined && toolCalls.length === 0 && message.stop_reason === 'tool_use' ? 'stop' : finishReason(message.stop_reason),
      },
    ],
  }
  const usage = usageOf(message.usage)
  if (usage) completion.usage = usage
  return completion
}

/** The HTTP status of each Anthropic error type (its errors page), for an error that came as a stream's event. */
const ERROR_STATUS: Readonly<Record<string, number>> = {
  invalid_request_error: 400,
  authentication_error: 401,
  billing_error: 402,
  permission_error: 403,
  not_found_error: 404,
  request_too_large: 413,
  rate_limit_error: 429,
  api_error: 500,
  timeout_error: 504,
  overloaded_error: 529,
}

/**
 * A stream whose first event is an `error` (Anthropic answers 200 and then says it is overloaded) as
 * the error answer its type stands for (overloaded: 529, so a 503; see toErrorResponse); undefined
 * for a stream that starts with anything else.
 */
export function streamStartError(first: string | null, headers: Headers): Response | undefined {
  if (first === null || !first.includes('"error"')) return undefined
  let event: unknown
  try {
    event = JSON.parse(first)
  } catch {
    return undefined
  }
  if (!isRecord(event) || event.type !== 'error') return undefined
  const type = isRecord(event.error) ? str(event.error.type) : undefined
  return toErrorResponse(ERROR_STATUS[type ?? ''] ?? 500, first, headers)
}

/** Headers balancing reads: retry hints and Anthropic's rate-limit state. */
export const rateLimitHeaders = (headers: Headers): Record<string, string> =>
  pickHeaders(headers, (name) => name === 'retry-after' || name.startsWith('anthropic-ratelimit-') || name === 'request-id')

/**
 * How Anthropic words a prompt over the context window ("prompt is too long: 208656 tokens > 200000
 * maximum") and one whose `max_tokens` does not fit beside it ("input length and `max_tokens` exceed
 * context limit: …"): OpenAI's context_length_exceeded, as OpenAI names both.
 */
const CONTEXT_TOO_LONG = /^prompt is too long\b|exceed context limit/i

/** How Anthropic words the 400 it answers when the key's organisation has no credit left. */
const NO_CREDIT = /credit balance is too low/i

/**
 * The status the gateway acts on. Anthropic's 529 (overloaded) is a 503 in HTTP terms. An
 * organisation out of credit (a 402 billing_error, or the 400 whose message says the credit
 * balance is too low) is the key's fault, not the request's: as a 403, balancing stops using
 * that key and tries the next, and the client is not told that its request was invalid.
 */
export function statusOf(status: number, type?: string, message = ''): number {
  if (status === 529) return 503
  if (status === 402 || type === 'billing_error' || (status === 400 && NO_CREDIT.test(message))) return 403
  return status
}

/**
 * An Anthropic error answer (`{type: "error", error: {type, message}}`) as an OpenAI-style
 * error with the same status (529 → 503, the real one in UPSTREAM_STATUS_HEADER), so generic
 * code reads `error.message`. Anthropic's error type is kept as `type` where the status is the
 * client's; it is no `code` (the gateway's, such as model_not_found, says more to OpenAI clients),
 * except a prompt over the context window, which gets OpenAI's own code (CONTEXT_LENGTH_EXCEEDED).
 */
export function toErrorResponse(status: number, text: string, headers: Headers): Response {
  let message = ''
  let type: string | undefined
  try {
    const parsed: unknown = JSON.parse(text)
    if (isRecord(parsed) && isRecord(parsed.error)) {
      message = str(parsed.error.message) ?? ''
      type = str(parsed.error.type)
    }
  } catch {
    message = text.trim().slice(0, 500)
  }
  const mapped = statusOf(status, type, message)
  const out = rateLimitHeaders(headers)
  if (mapped !== status) out[UPSTREAM_STATUS_HEADER] = String(status)
  const context = mapped === 400 && CONTEXT_TOO_LONG.test(message) ? CONTEXT_LENGTH_EXCEEDED : undefined
  return errorResponse(mapped, message || `Anthropic answered HTTP ${status}.`, {
    type: mapped >= 500 || mapped !== status || !type ? errorTypeForStatus(mapped) : type,
    headers: out,
    ...context,
  })
}
