import {
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
 * hits repeated as `cached_tokens`.
 */
export function usageOf(usage: unknown): ChatUsage | undefined {
  // No usage is better than zeros: without it the gateway counts the tokens itself.
  if (!isRecord(usage)) return undefined
  const u = usage
  const cacheRead = count(u.cache_read_input_tokens)
  const prompt = count(u.input_tokens) + cacheRead + count(u.cache_creation_input_tokens)
  return chatUsage(prompt, count(u.output_tokens), cacheRead)
}

/** A Messages API answer as an OpenAI `chat.completion`. */
export function toChatCompletion(message: JsonObject, fallbackModel: string): ChatCompletion {
  let text = ''
  const toolCalls: ToolCall[] = []
  const blocks = Array.isArray(message.content) ? message.content : []
  for (const block of blocks) {
    if (!isRecord(block)) continue
    if (block.type === 'text' && typeof block.text === 'string') text += block.text
    else if (block.type === 'tool_use') {
      toolCalls.push({
        id: str(block.id) ?? '',
        type: 'function',
        function: { name: str(block.name) ?? '', arguments: JSON.stringify(isRecord(block.input) ? block.input : {}) },
      })
    }
    // thinking, redacted_thinking and server-tool blocks have no OpenAI counterpart.
  }
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
        },
        logprobs: null,
        finish_reason: finishReason(message.stop_reason),
      },
    ],
  }
  const usage = usageOf(message.usage)
  if (usage) completion.usage = usage
  return completion
}

/** Headers balancing reads: retry hints and Anthropic's rate-limit state. */
export const rateLimitHeaders = (headers: Headers): Record<string, string> =>
  pickHeaders(headers, (name) => name === 'retry-after' || name.startsWith('anthropic-ratelimit-') || name === 'request-id')

/** Anthropic's 529 (overloaded) is a 503 in HTTP terms. */
export const statusOf = (status: number): number => (status === 529 ? 503 : status)

/**
 * An Anthropic error answer (`{type: "error", error: {type, message}}`) as an OpenAI-style
 * error with the same status (529 → 503), so generic code reads `error.message`.
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
  const mapped = statusOf(status)
  return errorResponse(mapped, message || `Anthropic answered HTTP ${status}.`, {
    type: mapped >= 500 || !type ? errorTypeForStatus(mapped) : type,
    code: type ?? null,
    headers: rateLimitHeaders(headers),
  })
}
