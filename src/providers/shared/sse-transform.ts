import { SseSplitter, eventData } from '../../lib/sse.ts'

/** Turns one provider's stream events into OpenAI SSE text, one event at a time. */
export interface SseTranslator {
  /** One upstream event's `data:`; returns the OpenAI frames it becomes (maybe none). */
  push(data: string): string
  /**
   * An upstream event without a `data:` line (a comment, or Gemini's error object sent bare at the
   * end of a failing stream); returns the OpenAI frames it becomes. Without it such events are skipped.
   */
  bare?(event: string): string
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
 * An upstream SSE body whose start was read ahead of its translation (see peekFirstEvent): its
 * reader, the chunks read so far (given to the translation first) and the data of its first event.
 */
export interface PeekedSse {
  reader: ReadableStreamDefaultReader<Uint8Array>
  read: Uint8Array[]
  /** The first event's `data:`, null when the body ended before one came whole (or held no data). */
  first: string | null
}

/**
 * Read an SSE body until its first event is whole, to learn what it starts with before the client's
 * stream does (Anthropic answers an overloaded stream 200 and says so in its first event). Costs no
 * more than the first read on a body that starts with an event, as a stream does; a read that fails
 * (abort, timeout) throws on to the caller.
 */
export async function peekFirstEvent(source: ReadableStream<Uint8Array>): Promise<PeekedSse> {
  const reader = source.getReader()
  const read: Uint8Array[] = []
  const decoder = new TextDecoder()
  const splitter = new SseSplitter()
  for (;;) {
    const { done, value } = await reader.read()
    if (done) {
      const events = splitter.push(decoder.decode())
      const rest = splitter.flush()
      if (rest !== null) events.push(rest)
      return { reader, read, first: events.length > 0 ? eventData(events[0]!) : null }
    }
    read.push(value)
    const events = splitter.push(decoder.decode(value, { stream: true }))
    if (events.length > 0) return { reader, read, first: eventData(events[0]!) }
  }
}

/**
 * Translate an upstream SSE body as it arrives: each read of the upstream is split into
 * events, translated, and handed on before the next read. Nothing is buffered beyond a
 * partial event, the client's pace drives the upstream reads (pull, high-water mark 0),
 * and cancelling the result cancels the upstream body. A read holding whole events that
 * all translate to nothing goes on as SSE_KEEP_ALIVE: passed over in silence, a stream
 * that only pings for a while would look stalled to the idle timeout and be cut off.
 * `source` may be a body whose start peekFirstEvent read already.
 */
export function translateSse(source: ReadableStream<Uint8Array> | PeekedSse, translator: SseTranslator): ReadableStream<Uint8Array> {
  const reader = source instanceof ReadableStream ? source.getReader() : source.reader
  // What a peek read already goes first, one chunk a pull as the upstream gave it.
  const ahead = source instanceof ReadableStream ? [] : source.read
  const next = (): ReturnType<typeof reader.read> => {
    const value = ahead.shift()
    return value === undefined ? reader.read() : Promise.resolve({ done: false, value })
  }
  const decoder = new TextDecoder()
  const splitter = new SseSplitter()

  const translate = (events: readonly string[]): string => {
    let out = ''
    for (const event of events) {
      if (translator.done) break
      const data = eventData(event)
      if (data !== null) out += translator.push(data)
      else if (translator.bare) out += translator.bare(event)
    }
    return out
  }

  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          // Loop only past reads that hold no whole event (the start of one still to come).
          for (;;) {
            const { done, value } = await next()
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
