import { describe, expect, test } from 'bun:test'
import { parseSse } from '../../../test/fixtures/mock-upstream.ts'
import { anthropicStreamToOpenAI } from './stream.ts'
import { SSE_KEEP_ALIVE } from '../shared/sse-transform.ts'

/** A stream as the Messages API sends it: a text block, then a tool_use block, with a ping. */
const EVENTS: Array<Record<string, unknown>> = [
  {
    type: 'message_start',
    message: {
      id: 'msg_01',
      type: 'message',
      role: 'assistant',
      model: 'claude-x-2025',
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: 25, cache_read_input_tokens: 5, cache_creation_input_tokens: 0, output_tokens: 1 },
    },
  },
  { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
  { type: 'ping' },
  { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Okay, ' } },
  { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'checking.' } },
  { type: 'content_block_stop', index: 0 },
  { type: 'content_block_start', index: 1, content_block: { type: 'tool_use', id: 'toolu_01', name: 'get_weather', input: {} } },
  { type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: '' } },
  { type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: '{"city": "Pa' } },
  { type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: 'ris"}' } },
  { type: 'content_block_stop', index: 1 },
  { type: 'content_block_start', index: 2, content_block: { type: 'tool_use', id: 'toolu_02', name: 'get_time', input: {} } },
  { type: 'content_block_stop', index: 2 },
  { type: 'message_delta', delta: { stop_reason: 'tool_use', stop_sequence: null }, usage: { output_tokens: 40 } },
  { type: 'message_stop' },
]

const SECRET = 'sk-ant-stream-secret'

const sse = (events: Array<Record<string, unknown>>): string =>
  events.map((e) => `event: ${String(e.type)}\ndata: ${JSON.stringify(e)}\n\n`).join('')

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
  object: string
  model: string
  choices: Array<{ index: number; delta: Record<string, unknown>; finish_reason: string | null }>
  usage?: unknown
}

async function translate(text: string, includeUsage = false, pieceSize = Infinity, answerTool?: string): Promise<{ chunks: Chunk[]; done: boolean; raw: string }> {
  const options = { model: 'asked-model', includeUsage, provider: 'claude', secret: SECRET, answerTool }
  const sent = await new Response(anthropicStreamToOpenAI(source(text, pieceSize), options)).text()
  // A read that translated to nothing went on as a keep-alive comment (how the bytes were cut decides where).
  const frames = sent.replaceAll(SSE_KEEP_ALIVE, '')
  const parsed = parseSse(frames)
  return { chunks: parsed.events as Chunk[], done: parsed.done, raw: frames }
}

describe('anthropicStreamToOpenAI', () => {
  test('a text block and tool_use blocks become OpenAI chunks, in order', async () => {
    const { chunks, done } = await translate(sse(EVENTS))
    expect(done).toBe(true)
    for (const chunk of chunks) expect(chunk).toMatchObject({ id: 'msg_01', object: 'chat.completion.chunk', model: 'claude-x-2025' })
    expect(chunks.map((c) => c.choices[0]?.delta)).toEqual([
      { role: 'assistant', content: '' },
      { content: 'Okay, ' },
      { content: 'checking.' },
      { tool_calls: [{ index: 0, id: 'toolu_01', type: 'function', function: { name: 'get_weather', arguments: '' } }] },
      { tool_calls: [{ index: 0, function: { arguments: '{"city": "Pa' } }] },
      { tool_calls: [{ index: 0, function: { arguments: 'ris"}' } }] },
      { tool_calls: [{ index: 1, id: 'toolu_02', type: 'function', function: { name: 'get_time', arguments: '' } }] },
      // A tool call whose input never streamed gets "{}", as the non-streamed answer has.
      { tool_calls: [{ index: 1, function: { arguments: '{}' } }] },
      {},
    ])
    expect(chunks.map((c) => c.choices[0]?.finish_reason)).toEqual([null, null, null, null, null, null, null, null, 'tool_calls'])
  })

  test('a message that opens with a tool call sends the role with it and content null, as OpenAI does', async () => {
    const { chunks } = await translate(sse([EVENTS[0]!, ...EVENTS.slice(6)]))
    expect(chunks[0]?.choices[0]?.delta).toEqual({
      role: 'assistant',
      content: null,
      tool_calls: [{ index: 0, id: 'toolu_01', type: 'function', function: { name: 'get_weather', arguments: '' } }],
    })
  })

  test('an empty message still gets its role chunk before the finish', async () => {
    const { chunks } = await translate(sse([EVENTS[0]!, { type: 'message_delta', delta: { stop_reason: 'end_turn' } }, { type: 'message_stop' }]))
    expect(chunks.map((c) => c.choices[0])).toMatchObject([
      { delta: { role: 'assistant', content: '' }, finish_reason: null },
      { delta: {}, finish_reason: 'stop' },
    ])
  })

  test('the same output however the bytes are cut', async () => {
    const whole = await translate(sse(EVENTS), true)
    for (const size of [1, 7, 64]) {
      const cut = await translate(sse(EVENTS), true, size)
      expect(cut.chunks.map((c) => c.choices)).toEqual(whole.chunks.map((c) => c.choices))
    }
  })

  test('pings arriving on their own go to the client as keep-alive comments, one per read, so a quiet stream is seen to be alive', async () => {
    const bytes = new TextEncoder()
    const reads = [sse(EVENTS.slice(0, 2)), sse([{ type: 'ping' }]), sse([{ type: 'ping' }, { type: 'ping' }]), sse(EVENTS.slice(2))]
    const upstream = new ReadableStream<Uint8Array>({
      start(c) {
        for (const read of reads) c.enqueue(bytes.encode(read))
        c.close()
      },
    })
    const sent = await new Response(anthropicStreamToOpenAI(upstream, { model: 'asked-model', includeUsage: false, provider: 'claude', secret: SECRET })).text()
    const frames = sent.trimEnd().split('\n\n')
    // message_start and the empty text block's start give nothing yet either: three reads, three comments, then content.
    expect(frames.slice(0, 3)).toEqual([SSE_KEEP_ALIVE.trimEnd(), SSE_KEEP_ALIVE.trimEnd(), SSE_KEEP_ALIVE.trimEnd()])
    expect(frames.slice(3).every((frame) => frame.startsWith('data: '))).toBe(true)
    expect(parseSse(sent.replaceAll(SSE_KEEP_ALIVE, '')).events).toEqual((await translate(sse(EVENTS))).chunks)
  })

  test('include_usage: usage null on every chunk, then the usage chunk from message_start + message_delta', async () => {
    const { chunks } = await translate(sse(EVENTS), true)
    const last = chunks.at(-1)
    expect(last?.choices).toEqual([])
    expect(last?.usage).toEqual({ prompt_tokens: 30, completion_tokens: 40, total_tokens: 70, prompt_tokens_details: { cached_tokens: 5 } })
    for (const chunk of chunks.slice(0, -1)) expect(chunk.usage).toBeNull()
  })

  test('a message_delta that gives null for the input counts keeps those of message_start', async () => {
    // The API's MessageDeltaUsage has nullable input counts; a null is "not restated", not zero.
    const events = [
      ...EVENTS.slice(0, -2),
      {
        type: 'message_delta',
        delta: { stop_reason: 'tool_use', stop_sequence: null },
        usage: { input_tokens: null, cache_read_input_tokens: null, cache_creation_input_tokens: null, output_tokens: 40, server_tool_use: null },
      },
      { type: 'message_stop' },
    ]
    const { chunks } = await translate(sse(events), true)
    expect(chunks.at(-1)?.usage).toEqual({ prompt_tokens: 30, completion_tokens: 40, total_tokens: 70, prompt_tokens_details: { cached_tokens: 5 } })
  })

  test('an error event becomes an OpenAI error frame and ends the stream without [DONE]', async () => {
    const events = [
      EVENTS[0]!,
      EVENTS[1]!,
      EVENTS[3]!,
      { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } },
      EVENTS[4]!,
    ]
    const { raw } = await translate(sse(events))
    const frames = raw.trimEnd().split('\n\n')
    expect(frames).toHaveLength(3)
    // The gateway's code (DESIGN.md), not Anthropic's type: that one stays readable in the message.
    expect(JSON.parse(frames[2]!.slice('data: '.length))).toEqual({
      error: { message: 'Upstream provider "claude" failed mid-stream (overloaded_error): Overloaded', type: 'api_error', param: null, code: 'upstream_error' },
    })
    expect(raw).not.toContain('[DONE]')
  })

  test('error events carry the code DESIGN.md gives their cause, and never the key', async () => {
    const frameOf = async (error: Record<string, unknown>) => {
      const { raw } = await translate(sse([EVENTS[0]!, { type: 'error', error }]))
      return JSON.parse(raw.trimEnd().split('\n\n').at(-1)!.slice('data: '.length)) as { error: { message: string; type: string; code: string } }
    }
    expect((await frameOf({ type: 'rate_limit_error', message: 'slow down' })).error).toMatchObject({ type: 'rate_limit_error', code: 'rate_limit_exceeded' })
    expect((await frameOf({ type: 'invalid_request_error', message: 'bad' })).error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_request' })
    expect((await frameOf({ type: 'api_error', message: 'Internal server error' })).error).toMatchObject({ type: 'api_error', code: 'upstream_error' })
    expect((await frameOf({ type: 'some_new_error' })).error).toMatchObject({ type: 'api_error', code: 'upstream_error' })
    // Anthropic's own timeout is an upstream 5xx: upstream_error (upstream_timeout is the gateway's own timeouts).
    expect((await frameOf({ type: 'timeout_error', message: 'Request timed out' })).error).toMatchObject({ type: 'api_error', code: 'upstream_error' })
    const echoed = await frameOf({ type: 'authentication_error', message: `invalid x-api-key ${SECRET}` })
    expect(echoed.error.message).not.toContain(SECRET)
    expect(echoed.error.code).toBe('upstream_error')
  })

  test('a stream cut before message_stop ends with an error frame, not a silent [DONE]', async () => {
    const { raw } = await translate(sse(EVENTS.slice(0, 4)))
    expect(raw).not.toContain('[DONE]')
    expect(raw.trimEnd().split('\n\n').at(-1)).toContain('"code":"upstream_error"')
  })

  test('unknown event types and non-JSON data are skipped', async () => {
    const odd = sse([EVENTS[0]!, { type: 'future_event', x: 1 }]) + 'event: weird\ndata: not json\n\n' + sse(EVENTS.slice(1))
    const { chunks } = await translate(odd)
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Okay, checking.')
  })

  test('a JSON answer (response_format) streams as content, and finishes with stop', async () => {
    const events = [
      EVENTS[0]!,
      { type: 'content_block_start', index: 0, content_block: { type: 'tool_use', id: 'toolu_9', name: 'weather', input: {} } },
      { type: 'content_block_delta', index: 0, delta: { type: 'input_json_delta', partial_json: '' } },
      { type: 'content_block_delta', index: 0, delta: { type: 'input_json_delta', partial_json: '{"city": ' } },
      { type: 'content_block_delta', index: 0, delta: { type: 'input_json_delta', partial_json: '"Paris"}' } },
      { type: 'content_block_stop', index: 0 },
      { type: 'message_delta', delta: { stop_reason: 'tool_use', stop_sequence: null }, usage: { output_tokens: 9 } },
      { type: 'message_stop' },
    ]
    const { chunks, done } = await translate(sse(events), false, Infinity, 'weather')
    expect(done).toBe(true)
    expect(chunks.map((c) => c.choices[0]?.delta)).toEqual([{ role: 'assistant', content: '' }, { content: '{"city": ' }, { content: '"Paris"}' }, {}])
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('stop')
    // An answer whose input never streamed is the empty object, as the non-streamed answer has it.
    const empty = await translate(sse([...events.slice(0, 2), ...events.slice(5)]), false, Infinity, 'weather')
    expect(empty.chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('{}')
  })

  test('a stop_reason of max_tokens finishes with length', async () => {
    const events = [EVENTS[0]!, EVENTS[1]!, EVENTS[3]!, { type: 'message_delta', delta: { stop_reason: 'max_tokens' }, usage: { output_tokens: 2 } }, { type: 'message_stop' }]
    const { chunks } = await translate(sse(events))
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('length')
  })
})

describe('anthropicStreamToOpenAI, thinking', () => {
  const THINKING: Array<Record<string, unknown>> = [
    EVENTS[0]!,
    { type: 'content_block_start', index: 0, content_block: { type: 'thinking', thinking: '', signature: '' } },
    { type: 'content_block_delta', index: 0, delta: { type: 'thinking_delta', thinking: 'Paris is ' } },
    { type: 'content_block_delta', index: 0, delta: { type: 'thinking_delta', thinking: 'in France.' } },
    { type: 'content_block_delta', index: 0, delta: { type: 'signature_delta', signature: 'EqQB' } },
    { type: 'content_block_delta', index: 0, delta: { type: 'signature_delta', signature: 'zz==' } },
    { type: 'content_block_stop', index: 0 },
    { type: 'content_block_start', index: 1, content_block: { type: 'redacted_thinking', data: 'encrypted' } },
    { type: 'content_block_stop', index: 1 },
    { type: 'content_block_start', index: 2, content_block: { type: 'text', text: '' } },
    { type: 'content_block_delta', index: 2, delta: { type: 'text_delta', text: 'France.' } },
    { type: 'content_block_stop', index: 2 },
    { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 30 } },
    { type: 'message_stop' },
  ]

  test('thinking streams as reasoning_content, then each block whole and signed as thinking_blocks', async () => {
    const { chunks, done } = await translate(sse(THINKING))
    expect(done).toBe(true)
    expect(chunks.map((c) => c.choices[0]?.delta)).toEqual([
      { role: 'assistant', content: '' },
      { reasoning_content: 'Paris is ' },
      { reasoning_content: 'in France.' },
      { thinking_blocks: [{ type: 'thinking', thinking: 'Paris is in France.', signature: 'EqQBzz==' }] },
      { thinking_blocks: [{ type: 'redacted_thinking', data: 'encrypted' }] },
      { content: 'France.' },
      {},
    ])
  })

  test('the same however the bytes are cut', async () => {
    const whole = await translate(sse(THINKING))
    for (const size of [1, 13]) expect((await translate(sse(THINKING), false, size)).chunks.map((c) => c.choices)).toEqual(whole.chunks.map((c) => c.choices))
  })
})
