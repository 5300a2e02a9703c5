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
 * Translate an upstream SSE body as it arrives: each read of the upstream is split into
 * events, translated, and handed on before the next read. Nothing is buffered beyond a
 * partial event, the client's pace drives the upstream reads (pull, high-water mark 0),
 * and cancelling the result cancels the upstream body.
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
          // Loop only past reads that translate to nothing (pings, partial events).
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
            const out = translate(splitter.push(decoder.decode(value, { stream: true })))
            if (translator.done) {
              if (out) controller.enqueue(encoder.encode(out))
              controller.close()
              // The message is complete; whatever the upstream still sends is not wanted.
              reader.cancel().catch(() => {})
              return
            }
            if (out) {
              controller.enqueue(encoder.encode(out))
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
