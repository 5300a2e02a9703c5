import { ERROR_CODES, upstreamErrorCode } from '../../errors.ts'
import { scrub } from '../../lib/secrets.ts'
import { eventData } from '../../lib/sse.ts'
import { statePromptUsage } from '../../lib/usage.ts'
import {
  ChunkWriter,
  SSE_DONE,
  errorResponse,
  isRecord,
  nowSeconds,
  num,
  str,
  streamErrorFrame,
  type JsonObject,
} from '../shared/openai-format.ts'
import { translateSse, type PeekedSse, type SseTranslator } from '../shared/sse-transform.ts'
import { brokenCallOf, brokenCallsOf, completionId, finishReason, textOf, thoughtOf, toolCallOf, toErrorResponse, usageOf } from './response.ts'

export interface GeminiStreamOptions {
  /** The model asked for, until a chunk's `modelVersion` names the one that answers. */
  model: string
  /** The client asked for `stream_options.include_usage`. */
  includeUsage: boolean
  /** The provider's id, named in an error event so the client knows which upstream failed. */
  provider: string
  /** The key's secret, kept out of any error text the upstream sends. */
  secret: string
  /** `parallel_tool_calls: false`: each candidate streams its first function call only (see CompletionOptions). */
  oneToolCall?: boolean
}

interface CandidateState {
  /** The role chunk was sent. */
  announced: boolean
  toolCalls: number
  /** Content went out (reasoning alone is no answer). */
  answered: boolean
  finished: boolean
}

/**
 * `streamGenerateContent?alt=sse` chunks → OpenAI `chat.completion.chunk` frames. Each
 * Gemini chunk is a whole `GenerateContentResponse` holding the next piece of each
 * candidate: text parts become content deltas, thought summaries `reasoning_content`
 * deltas, a functionCall part (Gemini sends it whole) becomes a tool call announced with
 * id and name and then given its arguments (only the first of each candidate when the client
 * sent `parallel_tool_calls: false`), `finishReason` becomes the finish chunk. The
 * stream has no end marker: when the upstream body ends, the usage chunk (if asked) and
 * `[DONE]` follow, or an error event if some candidate never got its `finishReason`.
 */
export class GeminiStreamTranslator implements SseTranslator {
  done = false
  private readonly writer: ChunkWriter
  private headSet = false
  private readonly candidates = new Map<number, CandidateState>()
  private usage: unknown

  constructor(private readonly options: GeminiStreamOptions) {
    this.writer = new ChunkWriter({ id: 'chatcmpl-pending', model: options.model, created: nowSeconds() }, options.includeUsage)
  }

  push(data: string): string {
    let chunk: unknown
    try {
      chunk = JSON.parse(data)
    } catch {
      return ''
    }
    if (!isRecord(chunk)) return ''
    if (isRecord(chunk.error)) {
      this.done = true
      const status = num(chunk.error.code) ?? 500
      // The status line has gone out: the code is the only thing a client can branch on.
      const code = upstreamErrorCode(status)
      const detail = scrub(str(chunk.error.message) ?? 'no details given.', this.options.secret)
      const what = str(chunk.error.status) ?? `HTTP ${status}`
      return streamErrorFrame(`Upstream provider "${this.options.provider}" failed mid-stream (${what}): ${detail}`, ERROR_CODES[code].type, code)
    }
    if (!this.headSet) {
      this.headSet = true
      this.writer.head.id = completionId(chunk)
      this.writer.head.model = str(chunk.modelVersion) ?? this.options.model
    }
    if (chunk.usageMetadata !== undefined) this.usage = chunk.usageMetadata
    let out = ''
    const candidates = Array.isArray(chunk.candidates) ? chunk.candidates.filter(isRecord) : []
    candidates.forEach((candidate, position) => {
      out += this.candidate(typeof candidate.index === 'number' ? candidate.index : position, candidate)
    })
    const feedback = chunk.promptFeedback
    if (candidates.length === 0 && isRecord(feedback) && feedback.blockReason) {
      // The prompt itself was blocked: one empty, filtered choice, as the non-streamed answer has.
      const state = this.state(0)
      out += this.roleChunk(0, state)
      if (!state.finished) {
        state.finished = true
        out += this.writer.finish('content_filter', 0)
      }
    }
    return out
  }

  /**
   * Google ends some failing streams (overloaded, out of quota) with its error object bare, pretty
   * printed and without a `data:` line: read as the error event it is, so the client gets Google's
   * message and the code of its status rather than a stream that merely ended early.
   */
  bare(event: string): string {
    const text = event.trim()
    if (!text.startsWith('{') && !text.startsWith('[')) return ''
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch {
      return ''
    }
    // The JSON-array form of an answer wraps its error in a list.
    const body = Array.isArray(parsed) ? parsed[0] : parsed
    return isRecord(body) && isRecord(body.error) ? this.push(JSON.stringify(body)) : ''
  }

  /**
   * The prompt's usage as the chunks so far stated it (Gemini restates `promptTokenCount` on each), in
   * OpenAI's form; undefined before any did. What the gateway counts for a stream cut off before its
   * last chunk, where it would otherwise estimate the prompt too (an image, a PDF, far from Gemini's count).
   */
  promptUsage(): ReturnType<typeof usageOf> {
    const usage = this.usage
    if (!isRecord(usage) || num(usage.promptTokenCount) === undefined) return undefined
    return usageOf({ promptTokenCount: usage.promptTokenCount, cachedContentTokenCount: usage.cachedContentTokenCount })
  }

  end(): string {
    if (this.done) return ''
    this.done = true
    if (this.candidates.size === 0) {
      return streamErrorFrame('The upstream stream ended before any content arrived.', 'api_error', 'upstream_error')
    }
    // Gemini has no end marker: the last chunk carries each candidate's finishReason, and
    // without it the model had not stopped. Such a stream was cut off; finishing it with
    // `stop` would pass a truncated answer off as whole, and its usage (only complete on
    // the last chunk) would bill the completion as zero tokens.
    for (const state of this.candidates.values()) {
      if (!state.finished) return streamErrorFrame('The upstream stream ended before the answer was complete.', 'api_error', 'upstream_error')
    }
    return this.writer.usage(usageOf(this.usage)) + SSE_DONE
  }

  private state(index: number): CandidateState {
    let state = this.candidates.get(index)
    if (!state) {
      state = { announced: false, toolCalls: 0, answered: false, finished: false }
      this.candidates.set(index, state)
    }
    return state
  }

  private roleChunk(index: number, state: CandidateState): string {
    if (state.announced) return ''
    state.announced = true
    return this.writer.delta({ role: 'assistant', content: '' }, index)
  }

  private candidate(index: number, candidate: JsonObject): string {
    const state = this.state(index)
    let out = ''
    if (state.finished) return out
    const content = isRecord(candidate.content) ? candidate.content : {}
    const parts = Array.isArray(content.parts) ? content.parts.filter(isRecord) : []
    for (const part of parts) {
      const thought = thoughtOf(part)
      if (thought) out += this.roleChunk(index, state) + this.writer.delta({ reasoning_content: thought }, index)
      const text = textOf(part)
      if (text) {
        state.answered = true
        out += this.roleChunk(index, state) + this.writer.delta({ content: text }, index)
      }
      const call = toolCallOf(part)
      if (!call || (this.options.oneToolCall && state.toolCalls > 0)) continue
      state.answered = true
      const callIndex = state.toolCalls++
      const head: JsonObject = { index: callIndex, id: call.id, type: 'function', function: { name: call.function.name, arguments: '' } }
      if (call.extra_content) head.extra_content = call.extra_content
      // A call that opens the message carries the role and `content: null`, as OpenAI sends it.
      const role = state.announced ? {} : { role: 'assistant', content: null }
      state.announced = true
      out += this.writer.delta({ ...role, tool_calls: [head] }, index)
      out += this.writer.delta({ tool_calls: [{ index: callIndex, function: { arguments: call.function.arguments } }] }, index)
    }
    if (candidate.finishReason) {
      const broken = brokenCallOf(candidate, state.answered)
      if (broken) {
        // Nothing usable came: the stream ends on the error rather than on a finish that looks whole.
        this.done = true
        return out + streamErrorFrame(broken, ERROR_CODES.upstream_error.type, 'upstream_error')
      }
      state.finished = true
      out += this.roleChunk(index, state) + this.writer.finish(finishReason(candidate.finishReason, state.toolCalls > 0), index)
    }
    return out
  }
}

/** Translate a Gemini SSE body (maybe its start read ahead, see peekFirstEvent) into an OpenAI SSE body, chunk by chunk. */
export function geminiStreamToOpenAI(source: ReadableStream<Uint8Array> | PeekedSse, options: GeminiStreamOptions): ReadableStream<Uint8Array> {
  const translator = new GeminiStreamTranslator(options)
  const body = translateSse(source, translator)
  statePromptUsage(body, () => translator.promptUsage())
  return body
}

/**
 * The HTTP error a stream's first event stands for, or undefined when it is none: Google's error
 * object (`{"error": {code, message, status}}`), on a `data:` line or bare (pretty-printed, without
 * one), as its answer outside a stream would have been, with the status its `code` names; or a first
 * chunk whose every candidate ended on a broken function call with nothing in it, the 502 the same
 * answer outside a stream is (see brokenCallsOf), which a second try usually gets past.
 */
export function streamStartError(event: string | null, headers: Headers): Response | undefined {
  if (event === null || (!event.includes('"error"') && !event.includes('_CALL'))) return undefined
  const data = event.trimStart().startsWith('{') || event.trimStart().startsWith('[') ? event : eventData(event)
  if (data === null) return undefined
  let parsed: unknown
  try {
    parsed = JSON.parse(data)
  } catch {
    return undefined
  }
  // The JSON-array form of an answer wraps its error in a list.
  const body = Array.isArray(parsed) ? parsed[0] : parsed
  if (!isRecord(body)) return undefined
  if (!isRecord(body.error)) {
    const broken = Array.isArray(body.candidates) && body.candidates.length > 0 ? brokenCallsOf(body) : undefined
    return broken === undefined ? undefined : errorResponse(502, broken)
  }
  const code = num(body.error.code)
  const status = code !== undefined && Number.isInteger(code) && code >= 400 && code < 600 ? code : 500
  return toErrorResponse(status, data, headers)
}
