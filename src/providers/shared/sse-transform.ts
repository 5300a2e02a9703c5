import { SseSplitter, eventData } from '../../lib/sse.ts'

/** Turns one provider's stream events into OpenAI SSE text, one event at a time. */
export interface SseTranslator {
  /** One upstream event's `data:`; returns the OpenAI frames it becomes (maybe none). */
  push(data: string): string
  /** The upstream body ended; returns the closing frames (nothing if already complete). */
  end(): string
  /** The translation is complete (final frames written); later upstream bytes are ignored. */
  readonly done: boolean
}

const encoder = new TextEncoder()

/**
 * What goes to the client for a read of the upstream whose events all translate to nothing
 * (Anthropic's pings, a message_start whose role waits for the content): an SSE comment,
 * which SSE clients and the OpenAI SDKs skip, so the upstream's sign of life still reaches
 * the gateway's idle watchdog, and the client's connection sees traffic.
 */
export const SSE_KEEP_ALIVE = ': keep-alive\n\n'

/**
 * Translate an upstream SSE body as it arrives: each read of the upstream is split into
 * events, translated, and handed on before the next read. Nothing is buffered beyond a
 * partial event, the client's pace drives the upstream reads (pull, high-water mark 0),
 * and cancelling the result cancels the upstream body. A read holding whole events that
 * all translate to nothing goes on as SSE_KEEP_ALIVE: passed over in silence, a stream
 * that only pings for a while would look stalled to the idle timeout and be cut off.
 */
export function translateSse(source: ReadableStream<Uint8Array>, translator: SseTranslator): ReadableStream<Uint8Array> {
  const reader = source.getReader()
  const decoder = new TextDecoder()
  const splitter = new SseSplitter()

  const translate = (events: readonly string[]): string => {
    let out = ''
    for (const event of events) {
      if (translator.done) break
      const data = eventData(event)
      if (data !== null) out += translator.push(data)
    }
    return out
  }

  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          // Loop only past reads that hold no whole event (the start of one still to come).
          for (;;) {
            const { done, value } = await reader.read()
            if (done) {
              const events = splitter.push(decoder.decode())
              const rest = splitter.flush()
              if (rest !== null) events.push(rest)
              const out = translate(events) + translator.end()
              if (out) controller.enqueue(encoder.encode(out))
              controller.close()
              return
            }
            const events = splitter.push(decoder.decode(value, { stream: true }))
            const out = translate(events)
            if (translator.done) {
              if (out) controller.enqueue(encoder.encode(out))
              controller.close()
              // The message is complete; whatever the upstream still sends is not wanted.
              reader.cancel().catch(() => {})
              return
            }
            if (out || events.length > 0) {
              controller.enqueue(encoder.encode(out || SSE_KEEP_ALIVE))
              return
            }
          }
        } catch (error) {
          controller.error(error)
          reader.cancel(error).catch(() => {})
        }
      },
      cancel(reason) {
        return reader.cancel(reason)
      },
    },
    { highWaterMark: 0 },
  )
}
