import { describe, expect, test } from 'bun:test'
import { FIRST_EVENT_WAIT_MS, SSE_KEEP_ALIVE, firstEventWait, peekFirstEvent, translateSse, type SseTranslator } from './sse-transform.ts'
import type { ProviderConfig } from '../../config/schema.ts'

const encoder = new TextEncoder()

/** Upper-cases each event's data; finishes on "STOP", closes with "END". */
function upper(): { done: boolean; seen: string[] } & SseTranslator {
  return {
    done: false,
    seen: [],
    push(data) {
      this.seen.push(data)
      if (data === 'stop') {
        this.done = true
        return 'data: STOP\n\n'
      }
      return data === 'ping' ? '' : `data: ${data.toUpperCase()}\n\n`
    },
    end() {
      return this.done ? '' : 'data: END\n\n'
    },
  }
}

/** A source whose chunks the test releases one by one, recording reads and cancels. */
function manualSource() {
  let controller!: ReadableStreamDefaultController<Uint8Array>
  let pulls = 0
  let cancelled: unknown = null
  const stream = new ReadableStream<Uint8Array>(
    {
      start(c) {
        controller = c
      },
      pull() {
        pulls++
      },
      cancel(reason) {
        cancelled = reason ?? 'cancelled'
      },
    },
    { highWaterMark: 0 },
  )
  return {
    stream,
    send: (text: string) => controller.enqueue(encoder.encode(text)),
    close: () => controller.close(),
    fail: (error: Error) => controller.error(error),
    get pulls() {
      return pulls
    },
    get cancelled() {
      return cancelled
    },
  }
}

const decode = (chunk: Uint8Array | undefined): string => new TextDecoder().decode(chunk)

describe('translateSse', () => {
  test('hands each translated event on as soon as it arrives (no buffering to the end)', async () => {
    const source = manualSource()
    const reader = translateSse(source.stream, upper()).getReader()
    source.send('data: a\n\n')
    expect(decode((await reader.read()).value)).toBe('data: A\n\n')
    // The upstream is still open: the second event comes out before the source ends.
    source.send('data: b\n\n')
    expect(decode((await reader.read()).value)).toBe('data: B\n\n')
    source.close()
    expect(decode((await reader.read()).value)).toBe('data: END\n\n')
    expect((await reader.read()).done).toBe(true)
  })

  test('events split anywhere, even inside a multi-byte character, are put back together', async () => {
    const text = 'event: x\ndata: héllo wörld\n\ndata: ping\n\ndata: ✓ done\n\n'
    const bytes = encoder.encode(text)
    for (const size of [1, 2, 3, 5, 7]) {
      const translator = upper()
      const source = new ReadableStream<Uint8Array>({
        start(c) {
          for (let i = 0; i < bytes.length; i += size) c.enqueue(bytes.slice(i, i + size))
          c.close()
        },
      })
      const out = await new Response(translateSse(source, translator)).text()
      // The ping translates to nothing: the read that completes it goes on as a keep-alive.
      expect(out).toBe('data: HÉLLO WÖRLD\n\n' + SSE_KEEP_ALIVE + 'data: ✓ DONE\n\ndata: END\n\n')
      expect(translator.seen).toEqual(['héllo wörld', 'ping', '✓ done'])
    }
  })

  test('CRLF framing (as Google sends it), split anywhere, and a last event without its blank line', async () => {
    const bytes = encoder.encode('data: one\r\n\r\ndata: two\r\n\r\ndata: three')
    for (const size of [1, 2, 3, 4, 5, 6, 7, 11, 64]) {
      const source = new ReadableStream<Uint8Array>({
        start(c) {
          for (let i = 0; i < bytes.length; i += size) c.enqueue(bytes.slice(i, i + size))
          c.close()
        },
      })
      expect(await new Response(translateSse(source, upper())).text()).toBe('data: ONE\n\ndata: TWO\n\ndata: THREE\n\ndata: END\n\n')
    }
  })

  test('a read whose whole events all translate to nothing goes on as a keep-alive comment; part of an event alone does not', async () => {
    const source = manualSource()
    const reader = translateSse(source.stream, upper()).getReader()
    source.send('data: ping\n\n')
    expect(decode((await reader.read()).value)).toBe(SSE_KEEP_ALIVE)
    // Two pings in one read, and a ping with the start of the next event: one comment each.
    source.send('data: ping\n\ndata: ping\n\n')
    expect(decode((await reader.read()).value)).toBe(SSE_KEEP_ALIVE)
    source.send('data: ping\n\ndata: he')
    expect(decode((await reader.read()).value)).toBe(SSE_KEEP_ALIVE)
    // The rest of that event only in pieces: no comment for a piece, the event once it is whole.
    const pending = reader.read()
    source.send('l')
    source.send('lo')
    await Bun.sleep(5)
    source.send('\n\n')
    expect(decode((await pending).value)).toBe('data: HELLO\n\n')
    // A comment the upstream sends itself is a whole event with no data: a keep-alive too.
    source.send(': upstream keep-alive\n\n')
    expect(decode((await reader.read()).value)).toBe(SSE_KEEP_ALIVE)
    await reader.cancel()
  })

  test('reads the upstream only as the client reads (no read-ahead)', async () => {
    const source = manualSource()
    const reader = translateSse(source.stream, upper()).getReader()
    await Bun.sleep(5)
    expect(source.pulls).toBe(0)
    const pending = reader.read()
    source.send('data: a\n\n')
    await pending
    await Bun.sleep(5)
    // One read asked for, one upstream pull; nothing queued behind the client's back.
    expect(source.pulls).toBe(1)
    await reader.cancel()
  })

  test('cancelling the translated stream cancels the upstream body', async () => {
    const source = manualSource()
    const reader = translateSse(source.stream, upper()).getReader()
    source.send('data: a\n\n')
    await reader.read()
    await reader.cancel('client gone')
    expect(source.cancelled).toBe('client gone')
  })

  test('once the translator is done the stream closes and the rest of the upstream is dropped', async () => {
    const source = manualSource()
    const translator = upper()
    const reader = translateSse(source.stream, translator).getReader()
    source.send('data: a\n\ndata: stop\n\ndata: after\n\n')
    expect(decode((await reader.read()).value)).toBe('data: A\n\ndata: STOP\n\n')
    expect((await reader.read()).done).toBe(true)
    expect(translator.seen).toEqual(['a', 'stop'])
    expect(source.cancelled).not.toBeNull()
  })

  test('an upstream read error errors the translated stream', async () => {
    const source = manualSource()
    const reader = translateSse(source.stream, upper()).getReader()
    const pending = reader.read()
    source.fail(new Error('connection reset'))
    await expect(pending).rejects.toThrow('connection reset')
  })
})

describe('peekFirstEvent', () => {
  const body = (...chunks: string[]) =>
    new ReadableStream<Uint8Array>({
      start(c) {
        for (const chunk of chunks) c.enqueue(encoder.encode(chunk))
        c.close()
      },
    })

  test('reads until the first event is whole (across chunks); the translation then gets every byte, the read ones first', async () => {
    const peeked = await peekFirstEvent(body('data: fi', 'rst\n\ndata: sec', 'ond\n\n', 'data: third\n\n'))
    expect(peeked.first).toBe('first')
    expect(peeked.read).toHaveLength(2)
    expect(await new Response(translateSse(peeked, upper())).text()).toBe('data: FIRST\n\ndata: SECOND\n\ndata: THIRD\n\ndata: END\n\n')
  })

  test('a body that ends before a whole event: its last event if it has one, else null', async () => {
    expect((await peekFirstEvent(body('data: only'))).first).toBe('only')
    expect((await peekFirstEvent(body())).first).toBeNull()
  })

  test('comments before the first event (OpenRouter\'s while it waits) are passed over, and still reach the translation', async () => {
    const peeked = await peekFirstEvent(body(': OPENROUTER PROCESSING\n\n', ': OPENROUTER PROCESSING\n\ndata: first\n\n'))
    expect([peeked.first, peeked.event, peeked.read.length]).toEqual(['first', 'data: first', 2])
    expect(await new Response(translateSse(peeked, upper())).text()).toBe(`${SSE_KEEP_ALIVE}data: FIRST\n\ndata: END\n\n`)
  })

  test('an event without data (Gemini\'s bare error object) is the first event, its data null', async () => {
    const bare = '{\n  "error": {\n    "code": 503\n  }\n}\n'
    const peeked = await peekFirstEvent(body(bare))
    expect([peeked.first, peeked.event]).toEqual([null, bare])
  })

  test('with `within`, a stream still silent when the wait is over is given on whole: the read it gave up on goes to the translation first', async () => {
    const source = manualSource()
    const peeked = await peekFirstEvent(source.stream, { within: 1 })
    expect([peeked.first, peeked.event, peeked.read.length]).toEqual([null, null, 0])
    expect(peeked.pending).toBeDefined()
    const out = new Response(translateSse(peeked, upper())).text()
    source.send('data: late\n\n')
    source.send('data: later\n\n')
    source.close()
    expect(await out).toBe('data: LATE\n\ndata: LATER\n\ndata: END\n\n')
  })

  test('with `within`, a read that fails after the wait fails the translation, not the process', async () => {
    const source = manualSource()
    const peeked = await peekFirstEvent(source.stream, { within: 1 })
    source.fail(new Error('connection reset'))
    await expect(new Response(translateSse(peeked, upper())).text()).rejects.toThrow('connection reset')
  })
})

describe('firstEventWait', () => {
  const provider = (timeouts?: { first_byte_ms?: number; total_ms?: number }) => ({ id: 'p', type: 'openai' as const, keys: [], timeouts })

  test('is FIRST_EVENT_WAIT_MS, or less where the provider\'s own first_byte_ms or total_ms leaves less (half of what is left), never below 0', () => {
    const now = performance.now()
    expect(firstEventWait(provider())(now)).toBe(FIRST_EVENT_WAIT_MS)
    expect(firstEventWait(provider({ first_byte_ms: 100_000 }))(now)).toBe(FIRST_EVENT_WAIT_MS)
    expect(firstEventWait(provider({ first_byte_ms: 400 }))(now)).toBeLessThanOrEqual(200)
    expect(firstEventWait(provider({ total_ms: 400 }))(now)).toBeLessThanOrEqual(200)
    expect(firstEventWait(provider({ first_byte_ms: 400 }))(now - 1000)).toBe(0)
  })
})

describe('firstEventWait', () => {
  test("never past half of what the headers' wait leaves, with the provider's timeouts or the defaults (first_byte_ms 60 s)", () => {
    const now = performance.now()
    const wait = (timeouts: ProviderConfig['timeouts'], ago: number) => firstEventWait({ id: 'p', type: 'gemini', keys: [], ...(timeouts && { timeouts }) } as ProviderConfig)(now - ago)
    expect(wait(undefined, 0)).toBe(FIRST_EVENT_WAIT_MS)
    // Headers after 59 s of the default 60: half of the second left, where it waited 2 s and the call was cut as a timeout.
    expect(wait(undefined, 59_000)).toBeLessThanOrEqual(500)
    expect(wait({ first_byte_ms: 1000 }, 0)).toBeLessThanOrEqual(500)
    expect(wait({ total_ms: 3000 }, 2000)).toBeLessThanOrEqual(500)
    expect(wait(undefined, 61_000)).toBe(0)
  })
})
