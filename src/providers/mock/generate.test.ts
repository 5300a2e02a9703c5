import { describe, expect, test } from 'bun:test'
import { parseSse } from '../../../test/fixtures/mock-upstream.ts'
import {
  DEFAULT_EMBEDDING_DIMENSIONS,
  DEFAULT_REPLY_WORDS,
  MAX_REPLY_WORDS,
  estimateChatPromptTokens,
  mockChatCompletion,
  mockChatStream,
  mockCompletion,
  mockCompletionStream,
  mockEmbeddings,
  mockErrorBody,
  mockModelDirective,
  mockModels,
  replyText,
  type ChatBody,
  type MockStreamOptions,
} from './generate.ts'

const CREATED = 1_750_000_000
const hello = { model: 'mock-gpt', messages: [{ role: 'user', content: 'hello there' }] } as const

const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' }, unit: { enum: ['celsius', 'fahrenheit'] }, days: { type: 'integer' }, note: { type: 'string' } },
      required: ['city', 'unit', 'days'],
    },
  },
} as const

async function streamText(body: ChatBody, opts: MockStreamOptions = {}): Promise<string> {
  return new Response(mockChatStream(body, { created: CREATED, ...opts })).text()
}

interface ChunkShape {
  object: string
  choices: Array<{ index: number; delta: Record<string, unknown>; finish_reason: string | null }>
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null
  service_tier?: string
}

function chunks(text: string): ChunkShape[] {
  const parsed = parseSse(text)
  expect(parsed.done).toBe(true)
  return parsed.events as ChunkShape[]
}

function wordCount(text: string): number {
  return text.split(' ').length
}

describe('mockChatCompletion', () => {
  test('is deterministic for the same request', () => {
    expect(mockChatCompletion(hello, { created: CREATED })).toEqual(mockChatCompletion(hello, { created: CREATED }))
  })

  test('answers a chat.completion with the default reply and exact usage', () => {
    const completion = mockChatCompletion(hello, { created: CREATED })
    expect(completion.object).toBe('chat.completion')
    expect(completion.model).toBe('mock-gpt')
    expect(completion.created).toBe(CREATED)
    expect(completion.id).toMatch(/^chatcmpl-mock[0-9a-f]{8}$/)
    const [choice] = completion.choices
    expect(choice?.finish_reason).toBe('stop')
    expect(choice?.message.role).toBe('assistant')
    expect(choice?.message.content).toStartWith('This is a mock reply from sluice')
    expect(wordCount(choice?.message.content ?? '')).toBe(DEFAULT_REPLY_WORDS)
    // 'hello there' is 11 chars: ceil(11 / 4) + 3 for the message + 3 for priming.
    expect(completion.usage).toEqual({ prompt_tokens: 9, completion_tokens: 16, total_tokens: 25 })
  })

  test('reply length follows max_tokens, max_completion_tokens wins, and both are capped', () => {
    expect(mockChatCompletion({ ...hello, max_tokens: 5 }).usage.completion_tokens).toBe(5)
    expect(mockChatCompletion({ ...hello, max_tokens: 5 }).choices[0]?.message.content).toBe('This is a mock reply')
    expect(mockChatCompletion({ ...hello, max_tokens: 5, max_completion_tokens: 7 }).usage.completion_tokens).toBe(7)
    const long = mockChatCompletion({ ...hello, max_tokens: 1_000_000 })
    expect(long.usage.completion_tokens).toBe(MAX_REPLY_WORDS)
    expect(wordCount(long.choices[0]?.message.content ?? '')).toBe(MAX_REPLY_WORDS)
    expect(mockChatCompletion(hello, { words: 3 }).usage.completion_tokens).toBe(3)
  })

  test('different requests get different ids, the same request the same id', () => {
    const other = { ...hello, messages: [{ role: 'user', content: 'something else' }] }
    expect(mockChatCompletion(other).id).not.toBe(mockChatCompletion(hello).id)
    expect(mockChatCompletion(hello).id).toBe(mockChatCompletion(hello).id)
    expect(mockChatCompletion(hello, { id: 'fixed' }).id).toBe('fixed')
  })

  test('n gives n identical choices and multiplies completion tokens', () => {
    const completion = mockChatCompletion({ ...hello, n: 3, max_tokens: 4 })
    expect(completion.choices.map((c) => c.index)).toEqual([0, 1, 2])
    expect(completion.usage.completion_tokens).toBe(12)
  })

  test('tolerates a body without messages or model', () => {
    const completion = mockChatCompletion({})
    expect(completion.model).toBe('mock-gpt')
    expect(completion.usage.prompt_tokens).toBe(3)
  })

  test('prompt estimate counts text parts, images, tool calls and tool definitions', () => {
    const parts = { messages: [{ role: 'user', content: [{ type: 'text', text: 'abcdefgh' }, { type: 'image_url', image_url: { url: 'x' } }] }] }
    expect(estimateChatPromptTokens(parts)).toBe(2 + 85 + 3 + 3)
    const withTools = { ...hello, tools: [weatherTool] }
    expect(estimateChatPromptTokens(withTools)).toBe(Math.ceil((11 + JSON.stringify([weatherTool]).length) / 4) + 3 + 3)
  })
})

describe('tool calls', () => {
  const ask = (content: string, extra: Partial<Record<'tool_choice' | 'max_tokens', unknown>> = {}): ChatBody => ({
    model: 'mock-gpt',
    messages: [{ role: 'user', content }],
    tools: [weatherTool],
    ...extra,
  })

  test('tool_choice "required" calls the tool with arguments that satisfy its schema', () => {
    const completion = mockChatCompletion(ask('anything', { tool_choice: 'required' }))
    const choice = completion.choices[0]
    expect(choice?.finish_reason).toBe('tool_calls')
    expect(choice?.message.content).toBeNull()
    const call = choice?.message.tool_calls?.[0]
    expect(call?.type).toBe('function')
    expect(call?.id).toMatch(/^call_mock[0-9a-f]{8}$/)
    expect(call?.function.name).toBe('get_weather')
    // Required fields only, enums take their first member.
    expect(JSON.parse(call?.function.arguments ?? '')).toEqual({ city: 'mock', unit: 'celsius', days: 1 })
    expect(completion.usage.completion_tokens).toBe(Math.ceil(('get_weather'.length + (call?.function.arguments.length ?? 0)) / 4))
  })

  test('"auto" calls a tool only when the last user message names it', () => {
    expect(mockChatCompletion(ask('use get_weather for Paris')).choices[0]?.finish_reason).toBe('tool_calls')
    expect(mockChatCompletion(ask('just chat')).choices[0]?.finish_reason).toBe('stop')
  })

  test('after a tool result the mock answers in text, so agent loops end', () => {
    const body: ChatBody = {
      messages: [
        { role: 'user', content: 'use get_weather' },
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{}' } }] },
        { role: 'tool', tool_call_id: 'call_1', content: 'sunny' },
      ],
      tools: [weatherTool],
    }
    expect(mockChatCompletion(body).choices[0]?.finish_reason).toBe('stop')
  })

  test('a reply cut at the client\'s token budget finishes with "length", as OpenAI\'s; one the mock ends itself with "stop"', () => {
    const finish = (body: ChatBody): string | undefined => mockChatCompletion(body).choices[0]?.finish_reason
    expect(finish({ ...hello, max_tokens: 5 })).toBe('length')
    expect(finish({ ...hello, max_completion_tokens: 5, n: 2 })).toBe('length')
    expect(mockChatCompletion({ ...hello, max_tokens: 5, n: 2 }).choices.map((c) => c.finish_reason)).toEqual(['length', 'length'])
    expect(finish({ ...hello, max_tokens: MAX_REPLY_WORDS })).toBe('length')
    // Past the mock's own bound the reply ends before the budget does.
    expect(finish({ ...hello, max_tokens: MAX_REPLY_WORDS + 1 })).toBe('stop')
    expect(wordCount(mockChatCompletion({ ...hello, max_tokens: MAX_REPLY_WORDS + 1 }).choices[0]?.message.content ?? '')).toBe(MAX_REPLY_WORDS)
    expect(finish(hello)).toBe('stop')
    // A tool call is no text cut short.
    expect(finish(ask('use get_weather', { max_tokens: 5 }))).toBe('tool_calls')
    expect(mockCompletion({ prompt: 'hi', max_tokens: 2 }).choices[0]?.finish_reason).toBe('length')
    expect(mockCompletion({ prompt: 'hi' }).choices[0]?.finish_reason).toBe('stop')
  })

  test('"none" never calls; a named function is called even if not mentioned', () => {
    expect(mockChatCompletion(ask('use get_weather', { tool_choice: 'none' })).choices[0]?.finish_reason).toBe('stop')
    const named = mockChatCompletion(ask('hi', { tool_choice: { type: 'function', function: { name: 'get_weather' } } }))
    expect(named.choices[0]?.message.tool_calls?.[0]?.function.name).toBe('get_weather')
  })
})

describe('mockChatStream', () => {
  test('frames are exactly OpenAI SSE and the content matches the non-stream reply', async () => {
    const body = { ...hello, max_tokens: 6 }
    const text = await streamText(body)
    expect(text).toEndWith('\n\ndata: [DONE]\n\n')
    const events = chunks(text)
    for (const event of events) expect(event.object).toBe('chat.completion.chunk')
    expect(events[0]?.choices[0]?.delta).toEqual({ role: 'assistant', content: '', refusal: null })
    const content = events.map((e) => e.choices[0]?.delta.content ?? '').join('')
    expect(content).toBe(mockChatCompletion(body).choices[0]?.message.content ?? '')
    // role chunk + one per word + finish chunk
    expect(events).toHaveLength(1 + 6 + 1)
    const last = events[events.length - 1]
    // The reply stopped at max_tokens: OpenAI says `length`.
    expect(last?.choices[0]).toMatchObject({ delta: {}, finish_reason: 'length' })
    expect(events.some((e) => 'usage' in e)).toBe(false)
  })

  test('include_usage adds a choices-less usage chunk and usage: null elsewhere', async () => {
    const body = { ...hello, stream_options: { include_usage: true } }
    const events = chunks(await streamText(body))
    const usageChunk = events[events.length - 1]
    expect(usageChunk?.choices).toEqual([])
    expect(usageChunk?.usage).toEqual(mockChatCompletion(body).usage)
    for (const event of events.slice(0, -1)) expect(event.usage).toBeNull()
  })

  test('names the service tier that served when the request names one ("auto" as "default"), in every chunk as OpenAI does; none when it names none', async () => {
    for (const [asked, served] of [['flex', 'flex'], ['priority', 'priority'], ['auto', 'default'], ['default', 'default']]) {
      const body = { ...hello, service_tier: asked, stream_options: { include_usage: true } }
      expect(mockChatCompletion(body).service_tier).toBe(served)
      for (const event of chunks(await streamText(body))) expect(event.service_tier).toBe(served)
    }
    expect('service_tier' in mockChatCompletion(hello)).toBe(false)
    for (const event of chunks(await streamText(hello))) expect('service_tier' in event).toBe(false)
  })

  test('chunks groups words into that many content frames', async () => {
    const events = chunks(await streamText({ ...hello, max_tokens: 10 }, { chunks: 3 }))
    const content = events.slice(1, -1).map((e) => e.choices[0]?.delta.content)
    expect(content).toHaveLength(3)
    expect(content.join('')).toBe(replyText(10))
  })

  test('is byte-identical for the same request', async () => {
    expect(await streamText(hello)).toBe(await streamText(hello))
  })

  test('reports its usage through onUsage', async () => {
    let seen: unknown
    await streamText(hello, { onUsage: (usage) => (seen = usage) })
    expect(seen).toEqual(mockChatCompletion(hello).usage)
  })

  test('streams tool calls the OpenAI way', async () => {
    const body: ChatBody = { ...hello, tools: [weatherTool], tool_choice: 'required' }
    const events = chunks(await streamText(body))
    const first = events[0]?.choices[0]?.delta
    expect(first).toMatchObject({ role: 'assistant', content: null })
    const calls = first?.tool_calls as Array<{ index: number; id: string; function: { name: string; arguments: string } }>
    expect(calls[0]).toMatchObject({ index: 0, type: 'function', function: { name: 'get_weather', arguments: '' } })
    const args = events
      .slice(1, -1)
      .map((e) => (e.choices[0]?.delta.tool_calls as Array<{ function: { arguments: string } }>)[0]?.function.arguments)
      .join('')
    expect(args).toBe(mockChatCompletion(body).choices[0]?.message.tool_calls?.[0]?.function.arguments ?? '')
    expect(events[events.length - 1]?.choices[0]?.finish_reason).toBe('tool_calls')
  })

  test('n > 1 interleaves one chunk per choice', async () => {
    const events = chunks(await streamText({ ...hello, n: 2, max_tokens: 2 }))
    expect(events.map((e) => e.choices[0]?.index)).toEqual([0, 1, 0, 1, 0, 1, 0, 1])
  })

  test('paces chunks by chunkDelayMs', async () => {
    const started = performance.now()
    await streamText({ ...hello, max_tokens: 4 }, { chunkDelayMs: 25 })
    // 4 content frames and the finish frame each wait once.
    expect(performance.now() - started).toBeGreaterThanOrEqual(5 * 25 - 5)
  })

  test('cancel stops the timers and calls onCancel once', async () => {
    let cancelled = 0
    const stream = mockChatStream({ ...hello, max_tokens: 100 }, { chunkDelayMs: 10_000, onCancel: () => cancelled++ })
    const reader = stream.getReader()
    const first = await reader.read()
    expect(first.done).toBe(false)
    const started = performance.now()
    await reader.cancel()
    // A timer left behind would keep the 10 s wait pending; cancel must return at once.
    expect(performance.now() - started).toBeLessThan(1000)
    expect(cancelled).toBe(1)
  })

  test('an aborted signal errors the stream and counts as a cancel', async () => {
    let cancelled = 0
    const controller = new AbortController()
    const stream = mockChatStream(hello, { chunkDelayMs: 10_000, signal: controller.signal, onCancel: () => cancelled++ })
    const reader = stream.getReader()
    await reader.read()
    const pending = reader.read()
    controller.abort(new Error('client gone'))
    await expect(pending).rejects.toThrow('client gone')
    expect(cancelled).toBe(1)
  })

  test('a completed stream never calls onCancel', async () => {
    let cancelled = 0
    await streamText(hello, { chunkDelayMs: 1, onCancel: () => cancelled++ })
    expect(cancelled).toBe(0)
  })
})

describe('mockCompletion', () => {
  test('answers one choice per prompt and n, with token usage', () => {
    const completion = mockCompletion({ model: 'mock-gpt', prompt: ['abcd', 'abcdefgh'], n: 2, max_tokens: 3 }, { created: CREATED })
    expect(completion.object).toBe('text_completion')
    expect(completion.choices.map((c) => c.index)).toEqual([0, 1, 2, 3])
    expect(completion.choices[0]?.text).toBe('This is a')
    expect(completion.usage).toEqual({ prompt_tokens: 3, completion_tokens: 12, total_tokens: 15 })
  })

  test('token-array prompts count their tokens; echo prepends the prompt', () => {
    expect(mockCompletion({ prompt: [1, 2, 3, 4, 5] }).usage.prompt_tokens).toBe(5)
    expect(mockCompletion({ prompt: [[1, 2], [3]] }).choices).toHaveLength(2)
    expect(mockCompletion({ prompt: 'Say: ', echo: true, max_tokens: 1 }).choices[0]?.text).toBe('Say: This')
  })

  test('streams text_completion chunks with an optional usage chunk', async () => {
    const body = { prompt: 'hi', max_tokens: 3, stream_options: { include_usage: true } }
    const parsed = parseSse(await new Response(mockCompletionStream(body)).text())
    expect(parsed.done).toBe(true)
    const events = parsed.events as Array<{ object: string; choices: Array<{ text: string; finish_reason: string | null }>; usage: unknown }>
    expect(events.map((e) => e.choices[0]?.text ?? '').join('')).toBe('This is a')
    expect(events[events.length - 2]?.choices[0]?.finish_reason).toBe('length')
    expect(events[events.length - 1]?.usage).toEqual(mockCompletion(body).usage)
  })
})

describe('mockEmbeddings', () => {
  const norm = (v: readonly number[]): number => Math.sqrt(v.reduce((sum, x) => sum + x * x, 0))

  test('one deterministic unit vector per input, 8 wide by default', () => {
    const list = mockEmbeddings({ model: 'mock-embed', input: ['alpha', 'beta', 'alpha'] })
    expect(list.object).toBe('list')
    expect(list.model).toBe('mock-embed')
    expect(list.data.map((d) => d.index)).toEqual([0, 1, 2])
    const [a, b, a2] = list.data.map((d) => d.embedding as number[])
    expect(a).toHaveLength(DEFAULT_EMBEDDING_DIMENSIONS)
    expect(norm(a ?? [])).toBeCloseTo(1, 5)
    expect(a2).toEqual(a ?? [])
    expect(b).not.toEqual(a ?? [])
    expect(list.usage).toEqual({ prompt_tokens: 2 + 1 + 2, total_tokens: 5 })
    expect(mockEmbeddings({ input: 'alpha' })).toEqual(mockEmbeddings({ input: 'alpha' }))
  })

  test('honours dimensions and token-array inputs', () => {
    expect(mockEmbeddings({ input: 'x', dimensions: 32 }).data[0]?.embedding).toHaveLength(32)
    const tokens = mockEmbeddings({ input: [1, 2, 3] })
    expect(tokens.data).toHaveLength(1)
    expect(tokens.usage.prompt_tokens).toBe(3)
    expect(mockEmbeddings({ input: [[1, 2], [3]] }).data).toHaveLength(2)
  })

  test('base64 encodes the same floats as little-endian float32', () => {
    const floats = mockEmbeddings({ input: 'x' }).data[0]?.embedding as number[]
    const encoded = mockEmbeddings({ input: 'x', encoding_format: 'base64' }).data[0]?.embedding as string
    const bytes = Buffer.from(encoded, 'base64')
    expect(Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4))).toEqual(floats)
  })
})

describe('models and failures', () => {
  test('mockModels lists the ids as OpenAI model objects', () => {
    expect(mockModels(['a', 'b'])).toEqual({
      object: 'list',
      data: [
        { id: 'a', object: 'model', created: 1_700_000_000, owned_by: 'sluice-mock' },
        { id: 'b', object: 'model', created: 1_700_000_000, owned_by: 'sluice-mock' },
      ],
    })
  })

  test('error bodies use OpenAI types and codes', () => {
    expect(mockErrorBody(429).error).toMatchObject({ type: 'rate_limit_error', code: 'rate_limit_exceeded', param: null })
    expect(mockErrorBody(401).error.code).toBe('invalid_api_key')
    expect(mockErrorBody(503).error.type).toBe('server_error')
    expect(mockErrorBody(400, 'why').error.message).toBe('why')
  })

  test('magic model names steer failures and delays', () => {
    expect(mockModelDirective('mock-fail-503')).toEqual({ failStatus: 503 })
    expect(mockModelDirective('mock-slow-250')).toEqual({ delayMs: 250 })
    expect(mockModelDirective('mock-gpt')).toEqual({})
    expect(mockModelDirective('mock-fail-999')).toEqual({})
    expect(mockModelDirective(undefined)).toEqual({})
  })
})
