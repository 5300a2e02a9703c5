import { describe, expect, test } from 'bun:test'
import { parseSse } from '../../../test/fixtures/mock-upstream.ts'
import { geminiStreamToOpenAI } from './stream.ts'
import { SSE_KEEP_ALIVE } from '../shared/sse-transform.ts'

const usage = { promptTokenCount: 8, candidatesTokenCount: 5, totalTokenCount: 13 }
const head = { modelVersion: 'gemini-x-001', responseId: 'resp1' }

/** A stream as streamGenerateContent?alt=sse sends it: whole responses, CRLF-separated, no end marker. */
const CHUNKS: Array<Record<string, unknown>> = [
  { candidates: [{ content: { role: 'model', parts: [{ text: 'Hel' }] }, index: 0 }], usageMetadata: { promptTokenCount: 8, totalTokenCount: 8 }, ...head },
  { candidates: [{ content: { role: 'model', parts: [{ text: 'lo' }] }, index: 0 }], usageMetadata: { promptTokenCount: 8, totalTokenCount: 8 }, ...head },
  {
    candidates: [{ content: { role: 'model', parts: [{ functionCall: { name: 'f', args: { a: 1 } }, thoughtSignature: 'c2ln' }] }, finishReason: 'STOP', index: 0 }],
    usageMetadata: usage,
    ...head,
  },
]

const sse = (chunks: Array<Record<string, unknown>>): string => chunks.map((c) => `data: ${JSON.stringify(c)}\r\n\r\n`).join('')

function source(text: string, pieceSize = Infinity): ReadableStream<Uint8Array> {
  const bytes = new TextEncoder().encode(text)
  return new ReadableStream({
    start(c) {
      const size = Math.min(pieceSize, bytes.length || 1)
      for (let i = 0; i < bytes.length; i += size) c.enqueue(bytes.slice(i, i + size))
      c.close()
    },
  })
}

interface Chunk {
  id: string
  model: string
  choices: Array<{ index: number; delta: Record<string, unknown>; finish_reason: string | null }>
  usage?: unknown
}

async function translate(text: string, includeUsage = false, pieceSize = Infinity): Promise<{ chunks: Chunk[]; done: boolean; raw: string }> {
  const sent = await new Response(geminiStreamToOpenAI(source(text, pieceSize), { model: 'asked', includeUsage, provider: 'google', secret: 'AIza-test-secret-0123' })).text()
  // A read that translated to nothing went on as a keep-alive comment (how the bytes were cut decides where).
  const frames = sent.replaceAll(SSE_KEEP_ALIVE, '')
  const parsed = parseSse(frames)
  return { chunks: parsed.events as Chunk[], done: parsed.done, raw: frames }
}

describe('geminiStreamToOpenAI', () => {
  test('text pieces, then a whole function call as head + arguments, then the finish chunk and [DONE]', async () => {
    const { chunks, done } = await translate(sse(CHUNKS))
    expect(done).toBe(true)
    for (const chunk of chunks) expect(chunk).toMatchObject({ id: 'chatcmpl-resp1', model: 'gemini-x-001' })
    const deltas = chunks.map((c) => c.choices[0]?.delta)
    expect(deltas[0]).toEqual({ role: 'assistant', content: '' })
    expect(deltas[1]).toEqual({ content: 'Hel' })
    expect(deltas[2]).toEqual({ content: 'lo' })
    expect(deltas[3]).toMatchObject({
      tool_calls: [{ index: 0, type: 'function', function: { name: 'f', arguments: '' }, extra_content: { google: { thought_signature: 'c2ln' } } }],
    })
    expect(deltas[4]).toEqual({ tool_calls: [{ index: 0, function: { arguments: '{"a":1}' } }] })
    expect(chunks.at(-1)?.choices[0]).toMatchObject({ delta: {}, finish_reason: 'tool_calls' })
    expect(chunks).toHaveLength(6)
  })

  test('thought summaries stream as reasoning_content deltas, one per part, after the single role chunk and never in content', async () => {
    const thinking = [
      { candidates: [{ index: 0, content: { role: 'model', parts: [{ text: 'Weighing it. ', thought: true }] } }], ...head },
      {
        candidates: [{ index: 0, content: { role: 'model', parts: [{ text: 'Done weighing.', thought: true }, { thought: true, thoughtSignature: 'c2ln' }, { text: 'Yes.' }] } }],
        ...head,
      },
      { candidates: [{ index: 0, content: { role: 'model', parts: [{ text: '' }] }, finishReason: 'STOP' }], usageMetadata: usage, ...head },
    ]
    const { chunks, done } = await translate(sse(thinking))
    expect(done).toBe(true)
    expect(chunks.map((c) => c.choices[0]?.delta)).toEqual([
      { role: 'assistant', content: '' },
      { reasoning_content: 'Weighing it. ' },
      { reasoning_content: 'Done weighing.' },
      { content: 'Yes.' },
      {},
    ])
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('stop')
  })

  test('the same output however the bytes are cut', async () => {
    const whole = await translate(sse(CHUNKS), true)
    for (const size of [1, 5, 33]) {
      const cut = await translate(sse(CHUNKS), true, size)
      expect(cut.chunks.map((c) => c.choices.map((x) => ({ ...x, delta: { ...x.delta, tool_calls: undefined } })))).toEqual(
        whole.chunks.map((c) => c.choices.map((x) => ({ ...x, delta: { ...x.delta, tool_calls: undefined } }))),
      )
    }
  })

  test('include_usage: the last usageMetadata becomes the usage chunk after the finish chunk', async () => {
    const { chunks } = await translate(sse(CHUNKS), true)
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: 8, completion_tokens: 5, total_tokens: 13 } })
    expect(chunks.at(-2)?.choices[0]?.finish_reason).toBe('tool_calls')
    for (const chunk of chunks.slice(0, -1)) expect(chunk.usage).toBeNull()
  })

  test('without usageMetadata there is no usage chunk (zeros would be billed as real)', async () => {
    const { chunks, done } = await translate(sse([{ candidates: [{ index: 0, content: { parts: [{ text: 'x' }] }, finishReason: 'STOP' }], ...head }]), true)
    expect(done).toBe(true)
    expect(chunks.some((c) => c.choices.length === 0)).toBe(false)
  })

  test('several candidates stream as interleaved choices, each finished', async () => {
    const two = [
      { candidates: [0, 1].map((index) => ({ index, content: { parts: [{ text: `c${index}` }] } })), ...head },
      { candidates: [0, 1].map((index) => ({ index, finishReason: index === 0 ? 'STOP' : 'MAX_TOKENS' })), usageMetadata: usage, ...head },
    ]
    const { chunks } = await translate(sse(two))
    expect(chunks.map((c) => [c.choices[0]?.index, c.choices[0]?.delta.content ?? null, c.choices[0]?.finish_reason])).toEqual([
      [0, '', null],
      [0, 'c0', null],
      [1, '', null],
      [1, 'c1', null],
      [0, null, 'stop'],
      [1, null, 'length'],
    ])
  })

  test('a safety stop and a blocked prompt finish with content_filter', async () => {
    const safety = await translate(sse([{ candidates: [{ index: 0, finishReason: 'SAFETY' }], ...head }]))
    expect(safety.chunks.at(-1)?.choices[0]?.finish_reason).toBe('content_filter')
    const blocked = await translate(sse([{ promptFeedback: { blockReason: 'OTHER' }, usageMetadata: { promptTokenCount: 3 }, ...head }]))
    expect(blocked.done).toBe(true)
    expect(blocked.chunks.map((c) => c.choices[0]?.finish_reason)).toEqual([null, 'content_filter'])
  })

  test('a stream that ends before a finishReason was cut off: an error event, no finish chunk, no partial usage, no [DONE]', async () => {
    const { chunks, done, raw } = await translate(sse(CHUNKS.slice(0, 2)), true)
    expect(done).toBe(false)
    const deltas = chunks.slice(0, -1)
    expect(deltas.map((c) => c.choices[0]?.delta.content ?? null)).toEqual(['', 'Hel', 'lo'])
    expect(deltas.some((c) => c.choices[0]?.finish_reason)).toBe(false)
    // The partial usageMetadata (no candidatesTokenCount) must not become a usage chunk billed as real.
    expect(raw).not.toContain('"prompt_tokens"')
    expect(JSON.parse(raw.trimEnd().split('\n\n').at(-1)!.slice(6))).toEqual({
      error: { message: 'The upstream stream ended before the answer was complete.', type: 'api_error', param: null, code: 'upstream_error' },
    })
    // With several candidates, each must have finished.
    const two = [
      { candidates: [0, 1].map((index) => ({ index, content: { parts: [{ text: `c${index}` }] } })), ...head },
      { candidates: [{ index: 0, finishReason: 'STOP' }], usageMetadata: usage, ...head },
    ]
    expect((await translate(sse(two))).raw).toContain('"code":"upstream_error"')
  })

  test('an error frame ends the stream with an OpenAI error frame and no [DONE]; an empty stream is an error too', async () => {
    const failed = await translate(sse([CHUNKS[0]!, { error: { code: 503, message: 'The model is overloaded.', status: 'UNAVAILABLE' } }, CHUNKS[1]!]))
    expect(failed.raw).not.toContain('[DONE]')
    const lastFrame = (raw: string) => JSON.parse(raw.trimEnd().split('\n\n').at(-1)!.slice(6)) as { error: Record<string, unknown> }
    // The code is one of DESIGN.md's (a client branches on it); Google's status stays in the message.
    expect(lastFrame(failed.raw)).toEqual({
      error: { message: 'Upstream provider "google" failed mid-stream (UNAVAILABLE): The model is overloaded.', type: 'api_error', param: null, code: 'upstream_error' },
    })
    const codes: Array<[number, string, string]> = [
      [429, 'RESOURCE_EXHAUSTED', 'rate_limit_exceeded'],
      [400, 'INVALID_ARGUMENT', 'invalid_request'],
      [504, 'DEADLINE_EXCEEDED', 'upstream_error'],
      [500, 'INTERNAL', 'upstream_error'],
    ]
    for (const [code, status, expected] of codes) {
      const frame = lastFrame((await translate(sse([CHUNKS[0]!, { error: { code, message: 'key AIza-test-secret-0123 failed', status } }]))).raw)
      expect(frame.error.code).toBe(expected)
      expect(String(frame.error.message)).not.toContain('AIza-test-secret-0123')
    }
    const empty = await translate('')
    expect(empty.raw).toContain('"code":"upstream_error"')
  })

  test('a candidate that ends on a malformed function call with nothing else ends the stream on an upstream_error event', async () => {
    const malformed = { candidates: [{ content: { role: 'model', parts: [] }, finishReason: 'MALFORMED_FUNCTION_CALL', index: 0 }], ...head }
    const thinking = { candidates: [{ content: { role: 'model', parts: [{ text: 'Let me call it.', thought: true }] }, index: 0 }], ...head }
    for (const chunks of [[malformed], [thinking, malformed]]) {
      const { raw, chunks: out } = await translate(sse(chunks))
      expect(raw).not.toContain('[DONE]')
      expect(raw).not.toContain('"finish_reason":"stop"')
      const error = (out.at(-1) as unknown as { error: { code: string; message: string } }).error
      expect(error.code).toBe('upstream_error')
      expect(error.message).toContain('MALFORMED_FUNCTION_CALL')
    }
    // Text that came before it is an answer: finished as usual.
    const answered = await translate(sse([CHUNKS[0]!, malformed]))
    expect(answered.done).toBe(true)
    expect(answered.chunks.at(-1)?.choices[0]?.finish_reason).toBe('stop')
  })
})
