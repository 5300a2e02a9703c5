import { SseSplitter, eventData } from '../../lib/sse.ts'
import type { ProviderConfig } from '../../config/schema.ts'
import { headersWaitMs } from '../timeouts.ts'

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

const readerOf = (body: ReadableStream<Uint8Array>) => body.getReader()
/**
 * A body's reader, as `getReader()` types it. Not `ReadableStreamDefaultReader`: without the DOM's
 * types (a plugin author's project, which type-checks these sources too), `getReader()` answers
 * Node's reader type, which lacks the `readMany` of Bun's, and so was no `ReadableStreamDefaultReader`.
 */
type BodyReader = ReturnType<typeof readerOf>

/**
 * An upstream SSE body whose start was read ahead of its translation (see peekFirstEvent): its
 * reader, the chunks read so far (given to the translation first) and its first event.
 */
export interface PeekedSse {
  reader: BodyReader
  read: Uint8Array[]
  /** The first event's `data:`, null when the body ended (or the wait did) before one came whole, or it held no data. */
  first: string | null
  /** The first event's whole text (a `data:`-less one too, as Gemini's bare error object), null as for `first`. */
  event: string | null
  /** A read the wait gave up on (see peekFirstEvent's `within`): its chunk goes to the translation before any other read. */
  pending?: ReturnType<BodyReader['read']>
}

/** An event that is only comments (`: keep-alive`, OpenRouter's `: OPENROUTER PROCESSING`): no sign of what the stream holds. */
const isComment = (event: string): boolean => {
  const text = event.trimStart()
  return text === '' || (text.startsWith(':') && !/\n[^:]/.test(text))
}

/**
 * Read an SSE body until its first event is whole, to learn what it starts with before the client's
 * stream does (Anthropic answers an overloaded stream 200 and says so in its first event; OpenAI-
 * format servers and Gemini may send an error first). Comment events before it are passed over (they
 * stay in `read`, for the translation). Costs no more than the first read on a body that starts with
 * an event, as a stream does; a read that fails (abort, timeout) throws on to the caller.
 * `within` (ms) bounds the wait: a server that sends its first event only once the model has
 * thought (a reasoning model: a minute or more) is passed on as it is, the failure an error event
 * stands for being one the server knows as it answers. Without it the wait is the caller's to bound.
 */
export async function peekFirstEvent(source: ReadableStream<Uint8Array>, options: { within?: number } = {}): Promise<PeekedSse> {
  const reader = readerOf(source)
  const read: Uint8Array[] = []
  const decoder = new TextDecoder()
  const splitter = new SseSplitter()
  const found = (events: readonly string[]): string | undefined => events.find((event) => !isComment(event))
  let timer: ReturnType<typeof setTimeout> | undefined
  const expired = options.within === undefined ? null : new Promise<null>((resolve) => (timer = setTimeout(resolve, options.within, null)))
  try {
    for (;;) {
      const next = reader.read()
      const result = expired === null ? await next : await Promise.race([next, expired])
      if (result === null) {
        // Still owed to the translation; a failure of it is the translation's to meet, not an unhandled rejection now.
        next.catch(() => {})
        return { reader, read, first: null, event: null, pending: next }
      }
      const { done, value } = result
      if (done) {
        const events = splitter.push(decoder.decode())
        const rest = splitter.flush()
        if (rest !== null) events.push(rest)
        const event = found(events) ?? null
        return { reader, read, first: event === null ? null : eventData(event), event }
      }
      read.push(value)
      const event = found(splitter.push(decoder.decode(value, { stream: true })))
      if (event !== undefined) return { reader, read, first: eventData(event), event }
    }
  } finally {
    clearTimeout(timer)
  }
}

/**
 * How long an adapter waits, once a stream's headers came, for its first event to learn whether it
 * is an error (see peekFirstEvent): a server that fails before any content says so as it answers.
 * @default 2000
 */
export const FIRST_EVENT_WAIT_MS = 2000

/**
 * The wait for a stream's first event, by when its call started (performance.now()): at most
 * FIRST_EVENT_WAIT_MS, and at most half of what the wait for the headers leaves (the provider's
 * `first_byte_ms` or `total_ms`, else their defaults, as the pipeline bounds that wait), so the wait
 * never makes a stream that had its headers in time a timeout. 0: no wait.
 */
export function firstEventWait(provider: ProviderConfig): (startedAt: number) => number {
  const bound = headersWaitMs(provider.timeouts, true)
  return (startedAt) => Math.max(0, Math.min(FIRST_EVENT_WAIT_MS, (bound - (performance.now() - startedAt)) / 2))
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
  const reader = source instanceof ReadableStream ? readerOf(source) : source.reader
  // What a peek read already goes first, one chunk a pull as the upstream gave it.
  const ahead = source instanceof ReadableStream ? [] : source.read
  let pending = source instanceof ReadableStream ? undefined : source.pending
  const next = (): ReturnType<typeof reader.read> => {
    const value = ahead.shift()
    if (value !== undefined) return Promise.resolve({ done: false, value })
    if (pending === undefined) return reader.read()
    const owed = pending
    pending = undefined
    return owed
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
