import {
  ChunkWriter,
  SSE_DONE,
  count,
  errorTypeForStatus,
  isRecord,
  nowSeconds,
  str,
  streamErrorFrame,
  type FinishReason,
  type JsonObject,
} from '../shared/openai-format.ts'
import { translateSse, type SseTranslator } from '../shared/sse-transform.ts'
import { finishReason, usageOf } from './response.ts'

export interface AnthropicStreamOptions {
  /** The model asked for, until `message_start` names the one that answers. */
  model: string
  /** The client asked for `stream_options.include_usage`. */
  includeUsage: boolean
}

/** Anthropic's stream error types that mean "try again later" rather than "bad request". */
const STREAM_ERROR_STATUS: Record<string, number> = {
  overloaded_error: 503,
  api_error: 500,
  rate_limit_error: 429,
  invalid_request_error: 400,
}

/**
 * Messages API stream events → OpenAI `chat.completion.chunk` frames:
 * `message_start` gives the role chunk, text deltas become content, a `tool_use` block
 * becomes a tool call (id and name first, then its `input_json_delta` pieces as arguments),
 * `message_delta` brings the stop reason and output usage, `message_stop` closes with the
 * finish chunk, the usage chunk (if asked) and `[DONE]`. An `error` event becomes an
 * OpenAI error frame and ends the stream.
 */
export class AnthropicStreamTranslator implements SseTranslator {
  done = false
  private readonly writer: ChunkWriter
  private started = false
  /** Content block index → OpenAI tool call index, for tool_use blocks. */
  private readonly toolIndex = new Map<number, number>()
  /** Tool calls whose arguments have begun; one that ends without any gets `{}` as non-streamed. */
  private readonly argsSeen = new Set<number>()
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
        if (isRecord(event.usage)) this.usage = { ...(this.usage ?? {}), ...event.usage }
        return ''
      }
      case 'message_stop':
        this.done = true
        return this.roleChunk() + this.writer.finish(this.finish) + this.writer.usage(usageOf(this.usage)) + SSE_DONE
      case 'error': {
        this.done = true
        const error = isRecord(event.error) ? event.error : {}
        const type = str(error.type) ?? 'api_error'
        const status = STREAM_ERROR_STATUS[type] ?? 500
        return streamErrorFrame(str(error.message) ?? 'The upstream stream failed.', errorTypeForStatus(status), type)
      }
      default:
        // ping, and event types added later.
        return ''
    }
  }

  end(): string {
    if (this.done) return ''
    this.done = true
    return streamErrorFrame('The upstream stream ended before the message was complete.', 'api_error', 'upstream_error')
  }

  private start(message: JsonObject): string {
    this.writer.head.id = str(message.id) ?? this.writer.head.id
    this.writer.head.model = str(message.model) ?? this.options.model
    if (isRecord(message.usage)) this.usage = { ...message.usage }
    // The role goes out with the first content, so it can take the shape OpenAI gives it.
    return ''
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
    if (block.type !== 'tool_use') return ''
    const toolIndex = this.toolIndex.size
    this.toolIndex.set(index, toolIndex)
    const call = { index: toolIndex, id: str(block.id) ?? '', type: 'function', function: { name: str(block.name) ?? '', arguments: '' } }
    return this.toolHead(call)
  }

  private blockStop(index: number): string {
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
      const toolIndex = this.toolIndex.get(index)
      const piece = str(delta.partial_json)
      if (toolIndex === undefined || !piece) return ''
      this.argsSeen.add(toolIndex)
      return this.writer.delta({ tool_calls: [{ index: toolIndex, function: { arguments: piece } }] })
    }
    // thinking_delta, signature_delta, citations_delta: no OpenAI counterpart.
    return ''
  }
}

/** Translate an Anthropic SSE body into an OpenAI SSE body, event by event. */
export function anthropicStreamToOpenAI(source: ReadableStream<Uint8Array>, options: AnthropicStreamOptions): ReadableStream<Uint8Array> {
  return translateSse(source, new AnthropicStreamTranslator(options))
}
