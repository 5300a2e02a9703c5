import { ERROR_CODES, type ErrorCode } from '../../errors.ts'
import { scrub } from '../../lib/secrets.ts'
import { statePromptUsage } from '../../lib/usage.ts'
import {
  ChunkWriter,
  SSE_DONE,
  count,
  isRecord,
  nowSeconds,
  str,
  streamErrorFrame,
  type FinishReason,
  type JsonObject,
} from '../shared/openai-format.ts'
import { translateSse, type PeekedSse, type SseTranslator } from '../shared/sse-transform.ts'
import { finishReason, thinkingBlock, usageOf } from './response.ts'

export interface AnthropicStreamOptions {
  /** The model asked for, until `message_start` names the one that answers. */
  model: string
  /** The client asked for `stream_options.include_usage`. */
  includeUsage: boolean
  /** The provider's id, named in an error event so the client knows which upstream failed. */
  provider: string
  /** The key's secret, kept out of any error text the upstream sends. */
  secret: string
  /** The tool a JSON answer was asked through (response_format): its input streams as content. */
  answerTool?: string
}

/**
 * An `error` event's Anthropic type as the gateway's code (DESIGN.md): the status line has gone
 * out, so the code is the only thing a client can branch on. What is not the client's fault
 * (overloaded, internal, timed out upstream, the key's account) is `upstream_error`, as an upstream
 * 5xx is before the status line (DESIGN.md); `upstream_timeout` is the gateway's own timeouts.
 */
const STREAM_ERROR_CODES: Readonly<Record<string, ErrorCode>> = {
  invalid_request_error: 'invalid_request',
  request_too_large: 'request_too_large',
  rate_limit_error: 'rate_limit_exceeded',
}

/**
 * Messages API stream events → OpenAI `chat.completion.chunk` frames:
 * `message_start` gives the role chunk, text deltas become content, a `tool_use` block
 * becomes a tool call (id and name first, then its `input_json_delta` pieces as arguments),
 * `message_delta` brings the stop reason and output usage, `message_stop` closes with the
 * finish chunk, the usage chunk (if asked) and `[DONE]`. Thinking streams as
 * `reasoning_content`; each thinking block, once complete and signed, goes whole as
 * `thinking_blocks` for the client to send back. An `error` event becomes an
 * OpenAI error frame and ends the stream. The input of the answer tool (a JSON answer asked
 * for with response_format) streams as content instead of as a tool call.
 */
export class AnthropicStreamTranslator implements SseTranslator {
  done = false
  private readonly writer: ChunkWriter
  private started = false
  /** Content block index → OpenAI tool call index, for tool_use blocks. */
  private readonly toolIndex = new Map<number, number>()
  /** Tool calls whose arguments have begun; one that ends without any gets `{}` as non-streamed. */
  private readonly argsSeen = new Set<number>()
  /** The content block of the answer tool, whose input is streamed as content; -1 before it starts. */
  private answerBlock = -1
  private answerSeen = false
  /** Thinking blocks in progress, by content block index: their text and signature so far. */
  private readonly thinking = new Map<number, JsonObject>()
  private finish: FinishReason = 'stop'
  private usage: JsonObject | undefined

  constructor(private readonly options: AnthropicStreamOptions) {
    this.writer = new ChunkWriter({ id: 'msg_unknown', model: options.model, created: nowSeconds() }, options.includeUsage)
  }

  push(data: string): string {
    let event: unknown
    try {
      event = JSON.parse(data)
    } catch {
      return ''
    }
    if (!isRecord(event)) return ''
    switch (event.type) {
      case 'message_start':
        return this.start(isRecord(event.message) ? event.message : {})
      case 'content_block_start':
        return this.blockStart(count(event.index), isRecord(event.content_block) ? event.content_block : {})
      case 'content_block_delta':
        return this.blockDelta(count(event.index), isRecord(event.delta) ? event.delta : {})
      case 'content_block_stop':
        return this.blockStop(count(event.index))
      case 'message_delta': {
        if (isRecord(event.delta) && event.delta.stop_reason) this.finish = finishReason(event.delta.stop_reason)
        // message_delta's usage is cumulative; it may restate the input counts too.
        if (isRecord(event.usage)) this.takeUsage(event.usage)
        return ''
      }
      case 'message_stop': {
        this.done = true
        // Claude stopped to "call" the answer tool: for the client the answer is complete.
        const finish = this.answerBlock >= 0 && this.toolIndex.size === 0 && this.finish === 'tool_calls' ? 'stop' : this.finish
        return this.roleChunk() + this.writer.finish(finish) + this.writer.usage(usageOf(this.usage)) + SSE_DONE
      }
      case 'error':
        this.done = true
        return this.errorFrame(isRecord(event.error) ? event.error : {})
      default:
        // ping, and event types added later.
        return ''
    }
  }

  /**
   * The prompt's usage as message_start gave it (input and cache tokens), in OpenAI's form; undefined
   * before it. What the gateway counts for a stream cut off before message_delta, where it would
   * otherwise estimate the prompt too.
   */
  promptUsage(): ReturnType<typeof usageOf> {
    return this.usage === undefined ? undefined : usageOf({ ...this.usage, output_tokens: 0 })
  }

  end(): string {
    if (this.done) return ''
    this.done = true
    return streamErrorFrame(
      `Upstream provider "${this.options.provider}" ended the stream before the message was complete.`,
      ERROR_CODES.upstream_error.type,
      'upstream_error',
    )
  }

  /** An Anthropic `error` event as the gateway's error frame, with Anthropic's type kept in the message. */
  private errorFrame(error: JsonObject): string {
    const type = str(error.type) ?? 'api_error'
    const code = STREAM_ERROR_CODES[type] ?? 'upstream_error'
    const detail = scrub(str(error.message) ?? 'no details given.', this.options.secret)
    return streamErrorFrame(`Upstream provider "${this.options.provider}" failed mid-stream (${type}): ${detail}`, ERROR_CODES[code].type, code)
  }

  private start(message: JsonObject): string {
    this.writer.head.id = str(message.id) ?? this.writer.head.id
    this.writer.head.model = str(message.model) ?? this.options.model
    if (isRecord(message.usage)) this.takeUsage(message.usage)
    // The role goes out with the first content, so it can take the shape OpenAI gives it.
    return ''
  }

  /**
   * Keep the counts an event states. The API (and proxies in front of it) send `null` for a
   * count they do not restate, as message_delta does for the input counts: a null must not
   * wipe the number message_start gave, or the prompt tokens of the stream would read 0. The
   * split of the cache writes (`cache_creation`) is kept as the object it is.
   */
  private takeUsage(usage: JsonObject): void {
    const kept: JsonObject = { ...(this.usage ?? {}) }
    for (const [name, value] of Object.entries(usage)) if (typeof value === 'number' || (name === 'cache_creation' && isRecord(value))) kept[name] = value
    this.usage = kept
  }

  /** The first chunk of an OpenAI stream carries the role, once: with `content: ''` before text. */
  private roleChunk(): string {
    if (this.started) return ''
    this.started = true
    return this.writer.delta({ role: 'assistant', content: '' })
  }

  /** A tool call's first delta; when it opens the message, with the role and `content: null`, as OpenAI sends it. */
  private toolHead(call: JsonObject): string {
    if (this.started) return this.writer.delta({ tool_calls: [call] })
    this.started = true
    return this.writer.delta({ role: 'assistant', content: null, tool_calls: [call] })
  }

  private blockStart(index: number, block: JsonObject): string {
    if (block.type === 'text') {
      const text = str(block.text)
      return text ? this.roleChunk() + this.writer.delta({ content: text }) : ''
    }
    if (block.type === 'thinking') {
      const text = str(block.thinking) ?? ''
      this.thinking.set(index, { type: 'thinking', thinking: text, signature: str(block.signature) ?? '' })
      return text ? this.roleChunk() + this.writer.delta({ reasoning_content: text }) : ''
    }
    if (block.type === 'redacted_thinking') {
      const kept = thinkingBlock(block)
      return kept ? this.roleChunk() + this.writer.delta({ thinking_blocks: [kept] }) : ''
    }
    if (block.type !== 'tool_use') return ''
    if (this.options.answerTool !== undefined && block.name === this.options.answerTool) {
      this.answerBlock = index
      return ''
    }
    const toolIndex = this.toolIndex.size
    this.toolIndex.set(index, toolIndex)
    const call = { index: toolIndex, id: str(block.id) ?? '', type: 'function', function: { name: str(block.name) ?? '', arguments: '' } }
    return this.toolHead(call)
  }

  private blockStop(index: number): string {
    const thinking = this.thinking.get(index)
    if (thinking) {
      // The whole block, signed, once it is complete: what the client sends back on its next turn.
      this.thinking.delete(index)
      return this.roleChunk() + this.writer.delta({ thinking_blocks: [thinking] })
    }
    if (index === this.answerBlock && !this.answerSeen) {
      this.answerSeen = true
      return this.roleChunk() + this.writer.delta({ content: '{}' })
    }
    const toolIndex = this.toolIndex.get(index)
    if (toolIndex === undefined || this.argsSeen.has(toolIndex)) return ''
    this.argsSeen.add(toolIndex)
    return this.writer.delta({ tool_calls: [{ index: toolIndex, function: { arguments: '{}' } }] })
  }

  private blockDelta(index: number, delta: JsonObject): string {
    if (delta.type === 'text_delta') {
      const text = str(delta.text)
      return text ? this.roleChunk() + this.writer.delta({ content: text }) : ''
    }
    if (delta.type === 'input_json_delta') {
      const piece = str(delta.partial_json)
      if (index === this.answerBlock) {
        if (!piece) return ''
        this.answerSeen = true
        return this.roleChunk() + this.writer.delta({ content: piece })
      }
      const toolIndex = this.toolIndex.get(index)
      if (toolIndex === undefined || !piece) return ''
      this.argsSeen.add(toolIndex)
      return this.writer.delta({ tool_calls: [{ index: toolIndex, function: { arguments: piece } }] })
    }
    const thinking = this.thinking.get(index)
    if (thinking && delta.type === 'thinking_delta') {
      const piece = str(delta.thinking)
      if (!piece) return ''
      thinking.thinking = String(thinking.thinking) + piece
      return this.roleChunk() + this.writer.delta({ reasoning_content: piece })
    }
    if (thinking && delta.type === 'signature_delta') {
      thinking.signature = String(thinking.signature) + (str(delta.signature) ?? '')
      return ''
    }
    // citations_delta: no OpenAI counterpart.
    return ''
  }
}

/** Translate an Anthropic SSE body into an OpenAI SSE body, event by event. */
export function anthropicStreamToOpenAI(source: ReadableStream<Uint8Array> | PeekedSse, options: AnthropicStreamOptions): ReadableStream<Uint8Array> {
  const translator = new AnthropicStreamTranslator(options)
  const body = translateSse(source, translator)
  statePromptUsage(body, () => translator.promptUsage())
  return body
}
