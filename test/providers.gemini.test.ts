/**
 * The gemini adapter end to end: the official `openai` client → a listening gateway → a
 * mock that speaks Google's real Gemini API wire format (generateContent,
 * streamGenerateContent?alt=sse, batchEmbedContents) and validates what it is sent. The
 * client must get what OpenAI would have given it. Real HTTP on 127.0.0.1.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test'
import OpenAI from 'openai'
import type { ConfigFile } from '../src/config/schema.ts'
import { definePlugin, type Usage } from '../src/plugin.ts'
import { mockEmbeddings } from '../src/providers/mock/generate.ts'
import { MOCK_GEMINI_REPLY, mockThoughtSignature, startMockGemini, type MockGemini } from './fixtures/mock-gemini.ts'
import { SKIP_THOUGHT_SIGNATURE } from '../src/providers/gemini/request.ts'
import { parseSse } from './fixtures/mock-upstream.ts'
import { SSE_KEEP_ALIVE } from '../src/providers/shared/sse-transform.ts'
import { startGateway, type TestGateway } from './support/gateway.ts'
import { drainStream, expectError, postJson, waitFor } from './support/http.ts'

const SECRET = 'AIzaSy-upstream-secret-0123456789abcdef'
const UPSTREAM_MODEL = 'gemini-2.5-flash'
const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=='
const WORDS = MOCK_GEMINI_REPLY.split(' ').length

const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather for a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
      required: ['city', 'unit'],
      additionalProperties: false,
    },
  },
} as const satisfies OpenAI.Chat.Completions.ChatCompletionTool

type Chunk = OpenAI.Chat.Completions.ChatCompletionChunk

/** The OpenAI frames of a stream body, without the keep-alive comments that reads translating to nothing become. */
const framesOf = (text: string) => parseSse(text.replaceAll(SSE_KEEP_ALIVE, ''))

type Message = OpenAI.Chat.Completions.ChatCompletionMessageParam

function config(baseUrl: string, plugins: unknown[] = []): ConfigFile & { plugins?: unknown[] } {
  return {
    providers: [{ id: 'google', type: 'gemini', baseUrl, keys: [{ id: 'gm-1', secret: SECRET }] }],
    models: [
      { name: 'gemini-test', targets: [{ provider: 'google', model: UPSTREAM_MODEL }] },
      { name: 'gemini-3-test', targets: [{ provider: 'google', model: 'gemini-3-pro-preview' }] },
      { name: 'gemini-3-flash-test', targets: [{ provider: 'google', model: 'gemini-3-flash-preview' }] },
      { name: 'gemini-embed', targets: [{ provider: 'google', model: 'gemini-embedding-001' }] },
    ],
    plugins,
  }
}

const lastBody = (mock: MockGemini) => mock.stats.lastBody as Record<string, unknown> & { contents: unknown[] }

async function collect(stream: AsyncIterable<Chunk>): Promise<Chunk[]> {
  const chunks: Chunk[] = []
  for await (const chunk of stream) chunks.push(chunk)
  return chunks
}

describe('gemini provider through the gateway', () => {
  let mock: MockGemini
  let gw: TestGateway
  let client: OpenAI

  beforeAll(async () => {
    mock = await startMockGemini({ apiKeys: [SECRET] })
    gw = await startGateway(config(mock.url))
    client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-dev-client-key-not-checked', maxRetries: 0 })
  })
  afterAll(async () => {
    await gw.close()
    await mock.stop()
  })
  beforeEach(() => mock.reset())

  test('plain chat: a chat.completion from generateContent, key in x-goog-api-key', async () => {
    const completion = await client.chat.completions.create({ model: 'gemini-test', messages: [{ role: 'user', content: 'hello' }] })
    expect(completion.object).toBe('chat.completion')
    expect(completion.id).toStartWith('chatcmpl-mock')
    expect(completion.model).toBe(UPSTREAM_MODEL)
    expect(completion.choices).toHaveLength(1)
    expect(completion.choices[0]).toMatchObject({ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: MOCK_GEMINI_REPLY } })
    expect(completion.usage?.completion_tokens).toBe(WORDS)
    expect(completion.usage?.prompt_tokens).toBeGreaterThan(0)
    expect(completion.usage?.total_tokens).toBe((completion.usage?.prompt_tokens ?? 0) + WORDS)

    expect(mock.stats.lastPath).toBe(`/v1beta/models/${UPSTREAM_MODEL}:generateContent`)
    expect(mock.stats.lastHeaders?.get('x-goog-api-key')).toBe(SECRET)
    expect(mock.stats.lastHeaders?.get('authorization')).toBeNull()
    expect(mock.stats.lastBody).toEqual({ contents: [{ role: 'user', parts: [{ text: 'hello' }] }] })
  })

  test('system → systemInstruction, assistant → model, same-role turns merged, generationConfig', async () => {
    const completion = await client.chat.completions.create({
      model: 'gemini-test',
      max_tokens: 50,
      temperature: 0.3,
      top_p: 0.8,
      stop: 'never-appears',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'developer', content: 'Answer in English.' },
        { role: 'user', content: 'hi' },
        { role: 'user', content: [{ type: 'text', text: 'are you there?' }] },
        { role: 'assistant', content: 'yes' },
        { role: 'user', content: 'good' },
      ],
    })
    expect(completion.choices[0]?.message.content).toBe(MOCK_GEMINI_REPLY)
    expect(mock.stats.lastBody).toEqual({
      systemInstruction: { parts: [{ text: 'Be brief.' }, { text: 'Answer in English.' }] },
      contents: [
        { role: 'user', parts: [{ text: 'hi' }, { text: 'are you there?' }] },
        { role: 'model', parts: [{ text: 'yes' }] },
        { role: 'user', parts: [{ text: 'good' }] },
      ],
      generationConfig: { maxOutputTokens: 50, temperature: 0.3, topP: 0.8, stopSequences: ['never-appears'] },
    })
  })

  test('a conversation of system messages alone (OpenAI answers it) is served: the instructions go as the user turn Gemini needs', async () => {
    for (const stream of [false, true]) {
      const body = { model: 'gemini-test', messages: [{ role: 'system', content: 'Write a haiku.' }, { role: 'developer', content: 'About rain.' }] } satisfies OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming
      const completion = stream ? await client.chat.completions.stream(body).finalChatCompletion() : await client.chat.completions.create(body)
      expect(completion.choices[0]?.message.content).toBe(MOCK_GEMINI_REPLY)
      expect(mock.stats.lastBody).toMatchObject({ contents: [{ role: 'user', parts: [{ text: 'Write a haiku.' }, { text: 'About rain.' }] }] })
      expect((mock.stats.lastBody as Record<string, unknown>).systemInstruction).toBeUndefined()
    }
  })

  test('JSON beside tools, which Gemini before 3 refuses: json_object is left to the prompt, json_schema is a 400 naming response_format; Gemini 3 takes both', async () => {
    const messages = [{ role: 'user' as const, content: 'use get_weather for Paris, then answer as JSON' }]
    const schema = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false }
    const object = await client.chat.completions.create({ model: 'gemini-test', messages, tools: [weatherTool], response_format: { type: 'json_object' } })
    expect(object.choices[0]?.finish_reason).toBe('tool_calls')
    const sent = mock.stats.lastBody as { tools?: unknown[]; generationConfig?: Record<string, unknown> }
    expect(sent.tools).toHaveLength(1)
    expect(sent.generationConfig?.responseMimeType).toBeUndefined()

    mock.reset()
    const res = await postJson(`${gw.url}/v1/chat/completions`, {
      model: 'gemini-test',
      messages,
      tools: [weatherTool],
      response_format: { type: 'json_schema', json_schema: { name: 'w', strict: true, schema } },
    })
    const error = await expectError(res, 'invalid_request', 400)
    expect(error.param).toBe('response_format')
    expect(error.message).toContain('tools')
    expect(mock.stats.requests).toBe(0)

    const three = await client.chat.completions.create({
      model: 'gemini-3-flash-test',
      messages,
      tools: [weatherTool],
      response_format: { type: 'json_schema', json_schema: { name: 'w', strict: true, schema } },
    })
    expect(three.choices[0]?.finish_reason).toBe('tool_calls')
    expect(mock.stats.lastBody).toMatchObject({ generationConfig: { responseMimeType: 'application/json', responseJsonSchema: schema } })
  })

  test('parallel tool results answered out of order reach Gemini in the order of its calls, which it pairs them by', async () => {
    const call = (id: string, city: string) => ({ id, type: 'function' as const, function: { name: 'get_weather', arguments: JSON.stringify({ city, unit: 'celsius' }) } })
    await client.chat.completions.create({
      model: 'gemini-test',
      tools: [weatherTool],
      messages: [
        { role: 'user', content: 'weather in Paris and in London?' },
        { role: 'assistant', content: null, tool_calls: [call('call_paris', 'Paris'), call('call_london', 'London')] },
        { role: 'tool', tool_call_id: 'call_london', content: 'London: rain' },
        { role: 'tool', tool_call_id: 'call_paris', content: 'Paris: sun' },
        { role: 'user', content: 'and which is warmer?' },
      ],
    })
    const contents = (mock.stats.lastBody as { contents: Array<{ role: string; parts: unknown[] }> }).contents
    expect(contents[2]).toEqual({
      role: 'user',
      parts: [
        { functionResponse: { id: 'call_paris', name: 'get_weather', response: { content: 'Paris: sun' } } },
        { functionResponse: { id: 'call_london', name: 'get_weather', response: { content: 'London: rain' } } },
        { text: 'and which is warmer?' },
      ],
    })
  })

  test('images: a data: URL becomes inlineData, an http URL with a known type fileData', async () => {
    const completion = await client.chat.completions.create({
      model: 'gemini-test',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What are these?' },
            { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}` } },
            { type: 'image_url', image_url: { url: 'https://example.com/cat.JPG?size=large' } },
          ],
        },
      ],
    })
    expect(completion.choices[0]?.message.content).toStartWith('I see 2 images.')
    expect(lastBody(mock).contents[0]).toEqual({
      role: 'user',
      parts: [
        { text: 'What are these?' },
        { inlineData: { mimeType: 'image/png', data: PNG } },
        { fileData: { mimeType: 'image/jpeg', fileUri: 'https://example.com/cat.JPG?size=large' } },
      ],
    })
  })

  test('a JPEG data URL typed image/jpg (which OpenAI accepts and Google refuses) reaches Gemini as image/jpeg', async () => {
    const completion = await client.chat.completions.create({
      model: 'gemini-test',
      messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/jpg;base64,/9j/4AAQSkZJRg==' } }] }],
    })
    expect(completion.choices[0]?.message.content).toStartWith('I see 1 image.')
    expect(lastBody(mock).contents[0]).toEqual({ role: 'user', parts: [{ inlineData: { mimeType: 'image/jpeg', data: '/9j/4AAQSkZJRg==' } }] })
  })

  test('a GIF image, which Gemini does not take, is refused with a 400 naming the types it does, without calling Gemini', async () => {
    const res = await postJson(`${gw.url}/v1/chat/completions`, {
      model: 'gemini-test',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'what is it?' }, { type: 'image_url', image_url: { url: 'data:image/gif;base64,R0lGODlhAQABAAAAACw=' } }] }],
    })
    const error = await expectError(res, 'invalid_request', 400)
    expect(error.type).toBe('invalid_request_error')
    expect(error.param).toBe('messages[0].content[1]')
    expect(error.message).toContain('image/gif')
    for (const type of ['image/png', 'image/jpeg', 'image/webp', 'image/heic', 'image/heif']) expect(error.message).toContain(type)
    expect(mock.stats.requests).toBe(0)
  })

  test('an http image URL whose type cannot be told is refused with a clear 400, without calling Gemini', async () => {
    const res = await postJson(`${gw.url}/v1/chat/completions`, {
      model: 'gemini-test',
      messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/render?id=7' } }] }],
    })
    const error = await expectError(res, 'invalid_request', 400)
    expect(error.message).toContain('data: URL')
    expect(mock.stats.requests).toBe(0)
  })

  test('tools: a functionCall becomes tool_calls with a generated id; the result goes back as functionResponse by name', async () => {
    const first = await client.chat.completions.create({
      model: 'gemini-test',
      messages: [{ role: 'user', content: 'use get_weather for Paris' }],
      tools: [weatherTool],
    })
    const choice = first.choices[0]!
    expect(choice.finish_reason).toBe('tool_calls')
    expect(choice.message.content).toBeNull()
    const call = choice.message.tool_calls?.[0]
    if (call?.type !== 'function') throw new Error('expected a function tool call')
    expect(call.id).toMatch(/^call_[0-9a-f]{24}$/)
    expect(call.function.name).toBe('get_weather')
    expect(JSON.parse(call.function.arguments)).toEqual({ city: 'mock', unit: 'celsius' })
    // The JSON Schema goes as parametersJsonSchema, untouched (additionalProperties and all).
    expect(lastBody(mock).tools).toEqual([
      { functionDeclarations: [{ name: 'get_weather', description: 'Current weather for a city', parametersJsonSchema: weatherTool.function.parameters }] },
    ])

    const second = await client.chat.completions.create({
      model: 'gemini-test',
      messages: [
        { role: 'user', content: 'use get_weather for Paris' },
        choice.message,
        { role: 'tool', tool_call_id: call.id, content: '{"forecast":"sunny"}' },
      ],
      tools: [weatherTool],
    })
    expect(second.choices[0]).toMatchObject({ finish_reason: 'stop', message: { content: 'Tool result received: {"forecast":"sunny"}' } })
    expect(lastBody(mock).contents).toEqual([
      { role: 'user', parts: [{ text: 'use get_weather for Paris' }] },
      { role: 'model', parts: [{ functionCall: { name: 'get_weather', args: { city: 'mock', unit: 'celsius' } } }] },
      { role: 'user', parts: [{ functionResponse: { name: 'get_weather', response: { forecast: 'sunny' } } }] },
    ])
  })

  test("tools: Gemini's function call id is the tool call's id, and goes back with the call and its result", async () => {
    const withIds = await startMockGemini({ callIds: true })
    const idGw = await startGateway(config(withIds.url))
    try {
      const idClient = new OpenAI({ apiKey: 'unused', baseURL: `${idGw.url}/v1`, maxRetries: 0 })
      const question: Message = { role: 'user', content: 'use get_weather for Paris' }
      const first = await idClient.chat.completions.create({ model: 'gemini-test', messages: [question], tools: [weatherTool] })
      const message = first.choices[0]!.message
      const call = message.tool_calls?.[0]
      if (call?.type !== 'function') throw new Error('expected a function tool call')
      expect(call.id).toStartWith('function-call-')
      // Streamed, the call carries the same id.
      const chunks = await collect(await idClient.chat.completions.create({ model: 'gemini-test', messages: [question], tools: [weatherTool], stream: true }))
      expect(chunks.flatMap((chunk) => chunk.choices[0]?.delta.tool_calls ?? []).find((delta) => delta.id !== undefined)?.id).toBe(call.id)

      await idClient.chat.completions.create({
        model: 'gemini-test',
        messages: [question, message, { role: 'tool', tool_call_id: call.id, content: '{"forecast":"sunny"}' }],
        tools: [weatherTool],
      })
      expect(lastBody(withIds).contents.slice(1)).toEqual([
        { role: 'model', parts: [{ functionCall: { id: call.id, name: 'get_weather', args: { city: 'mock', unit: 'celsius' } } }] },
        { role: 'user', parts: [{ functionResponse: { id: call.id, name: 'get_weather', response: { forecast: 'sunny' } } }] },
      ])
    } finally {
      await idGw.close()
      await withIds.stop()
    }
  })

  test('tool_choice: required → ANY, a named function → ANY with allowedFunctionNames, none → NONE', async () => {
    const messages: Message[] = [{ role: 'user', content: 'hello' }]
    const required = await client.chat.completions.create({ model: 'gemini-test', messages, tools: [weatherTool], tool_choice: 'required' })
    expect(lastBody(mock).toolConfig).toEqual({ functionCallingConfig: { mode: 'ANY' } })
    expect(required.choices[0]?.finish_reason).toBe('tool_calls')

    await client.chat.completions.create({ model: 'gemini-test', messages, tools: [weatherTool], tool_choice: { type: 'function', function: { name: 'get_weather' } } })
    expect(lastBody(mock).toolConfig).toEqual({ functionCallingConfig: { mode: 'ANY', allowedFunctionNames: ['get_weather'] } })

    const none = await client.chat.completions.create({ model: 'gemini-test', messages: [{ role: 'user', content: 'use get_weather' }], tools: [weatherTool], tool_choice: 'none' })
    expect(lastBody(mock).toolConfig).toEqual({ functionCallingConfig: { mode: 'NONE' } })
    expect(none.choices[0]?.finish_reason).toBe('stop')
  })

  test('finish reasons: MAX_TOKENS → length, SAFETY → content_filter, a blocked prompt → content_filter', async () => {
    const short = await client.chat.completions.create({ model: 'gemini-test', messages: [{ role: 'user', content: 'hi' }], max_completion_tokens: 3 })
    expect(short.choices[0]).toMatchObject({ finish_reason: 'length', message: { content: 'Hello from the' } })
    expect(lastBody(mock).generationConfig).toEqual({ maxOutputTokens: 3 })

    const filtered = await client.chat.completions.create({ model: 'gemini-test', messages: [{ role: 'user', content: 'BLOCKME please' }] })
    expect(filtered.choices[0]).toMatchObject({ finish_reason: 'content_filter', message: { content: '' } })

    const blocked = await client.chat.completions.create({ model: 'gemini-test', messages: [{ role: 'user', content: 'BLOCKPROMPT please' }] })
    expect(blocked.choices).toHaveLength(1)
    expect(blocked.choices[0]?.finish_reason).toBe('content_filter')
  })

  test('reasoning_effort: Gemini 3 Pro, which takes only low and high thinking levels, is sent one of those; Flash gets all four', async () => {
    const sent = async (model: string, reasoning_effort: string) => {
      const res = await postJson(`${gw.url}/v1/chat/completions`, { model, reasoning_effort, messages: [{ role: 'user', content: 'hi' }] })
      expect(res.status).toBe(200)
      return ((lastBody(mock).generationConfig as { thinkingConfig: { thinkingLevel: string } }).thinkingConfig).thinkingLevel
    }
    const efforts = ['none', 'minimal', 'low', 'medium', 'high']
    const pro: string[] = []
    const flash: string[] = []
    for (const effort of efforts) {
      pro.push(await sent('gemini-3-test', effort))
      flash.push(await sent('gemini-3-flash-test', effort))
    }
    expect(pro).toEqual(['low', 'low', 'low', 'high', 'high'])
    expect(flash).toEqual(['minimal', 'minimal', 'low', 'medium', 'high'])
  })

  test('n → candidateCount, one choice per candidate', async () => {
    const completion = await client.chat.completions.create({ model: 'gemini-test', messages: [{ role: 'user', content: 'hi' }], n: 2, max_tokens: 2 })
    expect(completion.choices.map((c) => [c.index, c.message.content])).toEqual([
      [0, 'Hello from'],
      [1, 'Hello from'],
    ])
    expect((lastBody(mock).generationConfig as Record<string, unknown>).candidateCount).toBe(2)
  })

  test('streamed text: OpenAI SSE frames, role first, content pieces, finish chunk, [DONE]', async () => {
    const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'gemini-test', messages: [{ role: 'user', content: 'hello' }], stream: true })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toStartWith('text/event-stream')
    const parsed = framesOf(await res.text())
    expect(parsed.done).toBe(true)
    const chunks = parsed.events as Chunk[]
    for (const chunk of chunks) {
      expect(chunk.object).toBe('chat.completion.chunk')
      expect(chunk.id).toBe(chunks[0]!.id)
      expect(chunk.model).toBe(UPSTREAM_MODEL)
      expect('usage' in chunk).toBe(false)
    }
    expect(chunks[0]?.choices[0]?.delta).toEqual({ role: 'assistant', content: '' })
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe(MOCK_GEMINI_REPLY)
    expect(chunks).toHaveLength(1 + WORDS + 1)
    expect(chunks.at(-1)?.choices[0]).toMatchObject({ delta: {}, finish_reason: 'stop' })
    expect(mock.stats.lastPath).toBe(`/v1beta/models/${UPSTREAM_MODEL}:streamGenerateContent?alt=sse`)
  })

  test('streamed text with include_usage ends with the usage chunk; other chunks carry usage null', async () => {
    const body = { model: 'gemini-test', messages: [{ role: 'user' as const, content: 'hello' }] }
    const plain = await client.chat.completions.create(body)
    const chunks = await collect(await client.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } }))
    const last = chunks.at(-1)
    expect(last?.choices).toEqual([])
    expect(last?.usage).toEqual(plain.usage!)
    for (const chunk of chunks.slice(0, -1)) expect(chunk.usage).toBeNull()
  })

  test('streamed tool calls: id and name first, then arguments; the SDK helper accumulates them', async () => {
    const params = { model: 'gemini-test', messages: [{ role: 'user' as const, content: 'use get_weather for Paris' }], tools: [weatherTool] }
    const chunks = await collect(await client.chat.completions.create({ ...params, stream: true }))
    // As OpenAI does it: the role arrives with the first tool call, content null.
    expect(chunks[0]?.choices[0]?.delta).toMatchObject({ role: 'assistant', content: null })
    const toolDeltas = chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? [])
    expect(toolDeltas[0]).toMatchObject({ index: 0, type: 'function', function: { name: 'get_weather', arguments: '' } })
    expect(toolDeltas[0]?.id).toMatch(/^call_/)
    expect(JSON.parse(toolDeltas.map((d) => d.function?.arguments ?? '').join(''))).toEqual({ city: 'mock', unit: 'celsius' })
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('tool_calls')

    const final = await client.chat.completions.stream(params).finalChatCompletion()
    expect(final.choices[0]?.message.content).toBeNull()
    const call = final.choices[0]?.message.tool_calls?.[0]
    if (call?.type !== 'function') throw new Error('expected a function tool call')
    expect(call.function.name).toBe('get_weather')
    expect(JSON.parse(call.function.arguments)).toEqual({ city: 'mock', unit: 'celsius' })
    expect(final.choices[0]?.finish_reason).toBe('tool_calls')
  })

  test('an error frame inside the stream reaches the client as an API error', async () => {
    mock.setFailure({ status: 503, midStream: true, times: 1 })
    const stream = await client.chat.completions.create({ model: 'gemini-test', messages: [{ role: 'user', content: 'hi' }], stream: true })
    const error = await (async () => {
      try {
        for await (const _ of stream) void _
      } catch (err) {
        return err
      }
      return null
    })()
    expect(error).toBeInstanceOf(OpenAI.APIError)
    expect((error as Error).message).toContain('overloaded')
  })

  test('an error Gemini ends a stream with as bare JSON (no data: line) reaches the client with Google\'s message and the code of its status', async () => {
    for (const [status, code, said] of [[503, 'upstream_error', 'overloaded'], [429, 'rate_limit_exceeded', 'quota']] as const) {
      mock.setFailure({ status, midStream: true, bare: true, times: 1 })
      const stream = await client.chat.completions.create({ model: 'gemini-test', messages: [{ role: 'user', content: 'hi' }], stream: true })
      const { error } = await drainStream<Chunk>(stream)
      expect(error).toBeInstanceOf(OpenAI.APIError)
      expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe(code)
      expect((error as Error).message.toLowerCase()).toContain(said)
    }
  })

  test('a stream Gemini ends before its finishReason reaches the client as an API error, not as a complete answer', async () => {
    mock.setFailure({ status: 200, midStream: true, cut: true, times: 1 })
    const stream = await client.chat.completions.create({ model: 'gemini-test', messages: [{ role: 'user', content: 'hi' }], stream: true })
    const { seen, error } = await drainStream<Chunk>(stream)
    expect(error).toBeInstanceOf(OpenAI.APIError)
    expect((error as Error).message).toContain('before the answer was complete')
    expect(seen.some((c) => c.choices[0]?.finish_reason)).toBe(false)
  })

  test('a client that goes away mid-stream cancels the upstream stream', async () => {
    const slow = await startMockGemini({ chunkDelayMs: 40 })
    const slowGw = await startGateway(config(slow.url))
    try {
      const controller = new AbortController()
      const res = await fetch(`${slowGw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gemini-test', messages: [{ role: 'user', content: 'hi' }], stream: true }),
        signal: controller.signal,
      })
      const reader = res.body!.getReader()
      await reader.read()
      controller.abort()
      await waitFor(() => slow.stats.aborted === 1, 'the mock to see its stream cancelled')
    } finally {
      await slowGw.close()
      await slow.stop()
    }
  })

  test('embeddings through batchEmbedContents (the client asks for base64 and decodes it)', async () => {
    const result = await client.embeddings.create({ model: 'gemini-embed', input: ['alpha', 'beta'], dimensions: 4 })
    expect(result.object).toBe('list')
    expect(result.model).toBe('gemini-embedding-001')
    expect(result.data.map((d) => d.index)).toEqual([0, 1])
    const expected = mockEmbeddings({ input: 'alpha', dimensions: 4 }).data[0]!.embedding as number[]
    result.data[0]!.embedding.forEach((v, i) => expect(v).toBeCloseTo(expected[i]!, 5))
    expect(mock.stats.lastPath).toBe('/v1beta/models/gemini-embedding-001:batchEmbedContents')
    expect(mock.stats.lastBody).toEqual({
      requests: [
        { model: 'models/gemini-embedding-001', content: { parts: [{ text: 'alpha' }] }, outputDimensionality: 4 },
        { model: 'models/gemini-embedding-001', content: { parts: [{ text: 'beta' }] }, outputDimensionality: 4 },
      ],
    })
  })

  test('embeddings of fewer dimensions than the model\'s full size come back at unit length, as OpenAI gives them (Gemini leaves them unnormalized)', async () => {
    const norm = (v: readonly number[]) => Math.sqrt(v.reduce((sum, x) => sum + x * x, 0))
    for (const encoding of ['float', 'base64'] as const) {
      const res = await postJson(`${gw.url}/v1/embeddings`, { model: 'gemini-embed', input: ['alpha', 'beta'], dimensions: 768, encoding_format: encoding })
      expect(res.status).toBe(200)
      const body = (await res.json()) as { data: Array<{ embedding: number[] | string }> }
      for (const { embedding } of body.data) {
        const vector = typeof embedding === 'string' ? Array.from(new Float32Array(Buffer.from(embedding, 'base64').buffer.slice(0))) : embedding
        expect(vector).toHaveLength(768)
        expect(norm(vector)).toBeCloseTo(1, 5)
      }
    }
    // The full-size vector Gemini normalizes itself comes through as sent.
    const full = await client.embeddings.create({ model: 'gemini-embed', input: 'alpha', encoding_format: 'float' })
    expect(full.data[0]!.embedding).toEqual(mockEmbeddings({ input: 'alpha', dimensions: 3072 }).data[0]!.embedding as number[])
  })

  test('more embeddings inputs than one Gemini batch takes (100) go in several calls, joined in order', async () => {
    const input = Array.from({ length: 250 }, (_, i) => `text ${i}`)
    const result = await client.embeddings.create({ model: 'gemini-embed', input, dimensions: 3, encoding_format: 'float' })
    expect(mock.stats.requests).toBe(3)
    expect(result.data).toHaveLength(250)
    expect(result.data.map((d) => d.index)).toEqual(input.map((_, i) => i))
    for (const i of [0, 99, 100, 249]) {
      const expected = mockEmbeddings({ input: input[i]!, dimensions: 3 }).data[0]!.embedding as number[]
      result.data[i]!.embedding.forEach((v, k) => expect(v).toBeCloseTo(expected[k]!, 6))
    }
    expect((mock.stats.lastBody as { requests: unknown[] }).requests).toHaveLength(50)
  })

  test('presence_penalty and frequency_penalty, which Gemini 2.5 and later refuse ("Penalty is not enabled"), are left out for them, as sampling Claude cannot take is', async () => {
    const completion = await client.chat.completions.create({ model: 'gemini-test', messages: [{ role: 'user', content: 'hi' }], presence_penalty: 0.5, frequency_penalty: -0.3 })
    expect(completion.choices[0]!.message.content).toBeTruthy()
    const sent = mock.stats.lastBody as { generationConfig?: Record<string, unknown> }
    expect(sent.generationConfig?.presencePenalty).toBeUndefined()
    expect(sent.generationConfig?.frequencyPenalty).toBeUndefined()
  })

  describe('provider errors in the gateway envelope', () => {
    test('400 from Gemini → 400 invalid_request carrying Google\'s message', async () => {
      // A refusal as Google words it: {error: {code, message, status}}.
      mock.setFailure({ status: 400, times: 1, body: { error: { code: 400, message: '* GenerateContentRequest.generation_config.top_k: must be positive', status: 'INVALID_ARGUMENT' } } })
      const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'gemini-test', messages: [{ role: 'user', content: 'hi' }] })
      const error = await expectError(res, 'invalid_request', 400)
      expect(error.message).toContain('top_k: must be positive')
      expect(error.message).toContain('"google"')
    })

    test('a Google account without billing (free tier not in its country) or out of prepaid credit is the key\'s fault: 502 upstream_error, not the client\'s 400 or 402', async () => {
      for (const failure of [
        { status: 400, body: { error: { code: 400, message: 'Gemini API free tier is not available in your country. Please enable billing on your project in Google AI Studio.', status: 'FAILED_PRECONDITION' } } },
        { status: 402, body: { error: { code: 402, message: 'Your prepayment credits are depleted. Please go to AI Studio to manage your billing.', status: 'RESOURCE_EXHAUSTED' } } },
      ]) {
        mock.setFailure({ ...failure, times: 1 })
        const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'gemini-test', messages: [{ role: 'user', content: 'hi' }] })
        const error = await expectError(res, 'upstream_error', 502)
        expect(error.message).toContain(failure.body.error.message)
        expect(error.message).toContain(`"gm-1" (HTTP ${failure.status})`)
      }
      // A precondition of the request's own (a file still being processed) stays the client's.
      mock.setFailure({ status: 400, times: 1, body: { error: { code: 400, message: 'The File abc is not in an ACTIVE state and usage is not allowed.', status: 'FAILED_PRECONDITION' } } })
      await expectError(await postJson(`${gw.url}/v1/chat/completions`, { model: 'gemini-test', messages: [{ role: 'user', content: 'hi' }] }), 'invalid_request', 400)
    })

    test('a 4xx web page (Google\'s 404 for a path that is no API method, from a wrong baseUrl) → 502 upstream_error, not 404 model_not_found', async () => {
      for (const [endpoint, body] of [
        ['chat/completions', { model: 'gemini-test', messages: [{ role: 'user', content: 'hi' }] }],
        ['embeddings', { model: 'gemini-embed', input: 'hello' }],
      ] as const) {
        mock.setFailure({ status: 404, page: '<html><body>The requested URL was not found on this server. That’s all we know.</body></html>', times: 1 })
        const error = await expectError(await postJson(`${gw.url}/v1/${endpoint}`, body), 'upstream_error', 502)
        expect(error.message).toContain('HTTP 404 with a web page')
      }
    })

    test('a prompt over the context window is OpenAI\'s context_length_exceeded (param messages), which SDKs and agents branch on to trim the history', async () => {
      const message = 'The input token count (1054016) exceeds the maximum number of tokens allowed (1048576).'
      mock.setFailure({ status: 400, times: 1, body: { error: { code: 400, message, status: 'INVALID_ARGUMENT' } } })
      const error = await client.chat.completions.create({ model: 'gemini-test', messages: [{ role: 'user', content: 'hi' }] }).then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(error).toBeInstanceOf(OpenAI.BadRequestError)
      const failed = error as InstanceType<typeof OpenAI.BadRequestError>
      expect([failed.status, failed.code, failed.param, failed.type]).toEqual([400, 'context_length_exceeded', 'messages', 'invalid_request_error'])
      expect(failed.message).toContain(message)
    })

    test('a request the mock validates as invalid is passed on with Google\'s own message', async () => {
      const res = await postJson(`${gw.url}/v1/chat/completions`, {
        model: 'gemini-test',
        messages: [{ role: 'user', content: 'hi' }],
        stop: ['a', 'b', 'c', 'd', 'e', 'f'],
      })
      const error = await expectError(res, 'invalid_request', 400)
      expect(error.message).toContain('at most 5 stop sequences')
    })

    test('429 RESOURCE_EXHAUSTED → 429 rate_limit_exceeded, the RetryInfo delay as Retry-After', async () => {
      mock.setFailure({ status: 429, times: 1 })
      const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'gemini-test', messages: [{ role: 'user', content: 'hi' }] })
      expect(res.headers.get('retry-after')).toBe('7')
      const error = await expectError(res, 'rate_limit_exceeded', 429)
      expect(error.message).toContain('exceeded your current quota')
    })

    test('a 2xx web page (a baseUrl at a website, a proxy\'s login page) → 502 upstream_error for chat, streamed or not, and for embeddings', async () => {
      const requests: Array<[string, Record<string, unknown>]> = [
        ['chat/completions', { model: 'gemini-test', messages: [{ role: 'user', content: 'hi' }] }],
        ['chat/completions', { model: 'gemini-test', messages: [{ role: 'user', content: 'hi' }], stream: true }],
        ['embeddings', { model: 'gemini-embed', input: 'hello' }],
      ]
      for (const [path, body] of requests) {
        mock.setFailure({ status: 200, page: '<html><body>Sign in to continue</body></html>', times: 1 })
        const error = await expectError(await postJson(`${gw.url}/v1/${path}`, body), 'upstream_error', 502)
        expect(error.message).toContain('web page (text/html)')
      }
    })

    test('500 and 503 → 502 upstream_error', async () => {
      for (const status of [500, 503]) {
        mock.setFailure({ status, times: 1 })
        const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'gemini-test', messages: [{ role: 'user', content: 'hi' }] })
        await expectError(res, 'upstream_error', 502)
      }
    })

    test('an answer that is only a malformed function call is an upstream error (502), not an empty answer that looks finished', async () => {
      const malformed = {
        candidates: [{ content: { role: 'model', parts: [] }, finishReason: 'MALFORMED_FUNCTION_CALL', finishMessage: 'Malformed function call: print(get_weather(city="Paris"))', index: 0 }],
        usageMetadata: { promptTokenCount: 12, totalTokenCount: 12 },
        modelVersion: UPSTREAM_MODEL,
      }
      mock.setFailure({ status: 200, times: 1, body: malformed })
      const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'gemini-test', messages: [{ role: 'user', content: 'use get_weather' }], tools: [weatherTool] })
      const error = await expectError(res, 'upstream_error', 502)
      expect(error.message).toContain('MALFORMED_FUNCTION_CALL')
      expect(error.message).toContain('print(get_weather(city="Paris"))')
      // The next call is served as usual.
      const again = await postJson(`${gw.url}/v1/chat/completions`, { model: 'gemini-test', messages: [{ role: 'user', content: 'hi' }] })
      expect(again.status).toBe(200)
    })

    test('a rejected key (Google answers 400 API_KEY_INVALID) is a key problem: 502, and the key is never shown', async () => {
      const other = await startMockGemini({ apiKeys: ['some-other-key'] })
      const otherGw = await startGateway(config(other.url))
      try {
        const res = await postJson(`${otherGw.url}/v1/chat/completions`, { model: 'gemini-test', messages: [{ role: 'user', content: 'hi' }] })
        const text = await res.clone().text()
        expect(text).not.toContain(SECRET)
        const error = await expectError(res, 'upstream_error', 502)
        expect(error.message).toContain('gm-1')
        expect(error.message).toContain('API key not valid')
      } finally {
        await otherGw.close()
        await other.stop()
      }
    })

    test('the legacy functions parameter and logprobs are refused with 400 naming the field, before any upstream call', async () => {
      const messages = [{ role: 'user', content: 'weather in Paris?' }]
      const functions = [{ name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } }]
      for (const [extra, param] of [
        [{ functions }, 'functions'],
        [{ function_call: { name: 'get_weather' } }, 'function_call'],
        [{ logprobs: true }, 'logprobs'],
        [{ top_logprobs: 3 }, 'top_logprobs'],
      ] as const) {
        const error = await expectError(await postJson(`${gw.url}/v1/chat/completions`, { model: 'gemini-test', messages, ...extra }), 'invalid_request', 400)
        expect(error.param).toBe(param)
      }
      expect(mock.stats.requests).toBe(0)
    })

    test('a tool message answering an unknown call is refused with 400 before any upstream call', async () => {
      const res = await postJson(`${gw.url}/v1/chat/completions`, {
        model: 'gemini-test',
        messages: [
          { role: 'user', content: 'hi' },
          { role: 'tool', tool_call_id: 'call_nowhere', content: 'x' },
        ],
      })
      const error = await expectError(res, 'invalid_request', 400)
      expect(error.message).toContain('call_nowhere')
      expect(mock.stats.requests).toBe(0)
    })
  })
})

describe('gemini specifics', () => {
  test('thought signatures ride on tool calls as extra_content and go back with the history (Gemini 3)', async () => {
    const mock = await startMockGemini({ thoughtSignatures: true })
    const gw = await startGateway(config(mock.url))
    try {
      const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 })
      const ask: Message = { role: 'user', content: 'use get_weather for Paris' }
      const first = await client.chat.completions.create({ model: 'gemini-3-test', messages: [ask], tools: [weatherTool] })
      const message = first.choices[0]!.message
      const call = message.tool_calls?.[0] as OpenAI.Chat.Completions.ChatCompletionMessageFunctionToolCall & { extra_content?: unknown }
      expect(call.extra_content).toEqual({ google: { thought_signature: mockThoughtSignature('get_weather') } })

      const second = await client.chat.completions.create({
        model: 'gemini-3-test',
        messages: [ask, message, { role: 'tool', tool_call_id: call.id, content: 'sunny' }],
        tools: [weatherTool],
      })
      expect(second.choices[0]?.message.content).toBe('Tool result received: {"content":"sunny"}')
      const model = (mock.stats.lastBody as { contents: Array<{ parts: Array<Record<string, unknown>> }> }).contents[1]
      expect(model?.parts[0]?.thoughtSignature).toBe(mockThoughtSignature('get_weather'))

      // Streams carry the signature on the tool call's first delta.
      const chunks = await collect(await client.chat.completions.create({ model: 'gemini-3-test', messages: [ask], tools: [weatherTool], stream: true }))
      const head = chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? [])[0] as { extra_content?: unknown }
      expect(head.extra_content).toEqual({ google: { thought_signature: mockThoughtSignature('get_weather') } })

      // Most OpenAI clients (LangChain among them) drop extra_content from the history. Gemini 3
      // refuses such a history, so the call goes with Google's documented skip value instead.
      const stripped = { role: 'assistant' as const, content: null, tool_calls: [{ id: call.id, type: 'function' as const, function: call.function }] }
      const third = await client.chat.completions.create({
        model: 'gemini-3-test',
        messages: [ask, stripped, { role: 'tool', tool_call_id: call.id, content: 'sunny' }],
        tools: [weatherTool],
      })
      expect(third.choices[0]?.message.content).toBe('Tool result received: {"content":"sunny"}')
      const replayed = (mock.stats.lastBody as { contents: Array<{ parts: Array<Record<string, unknown>> }> }).contents[1]
      expect(replayed?.parts[0]?.thoughtSignature).toBe(SKIP_THOUGHT_SIGNATURE)

      // A Gemini 2.x model never checks signatures, and gets the history as the client sent it
      // (this mock checks whatever the model, so it refuses it: what matters is what was sent).
      const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'gemini-test', messages: [ask, stripped, { role: 'tool', tool_call_id: call.id, content: 'sunny' }] })
      expect(res.status).toBe(400)
      const unsigned = (mock.stats.lastBody as { contents: Array<{ parts: Array<Record<string, unknown>> }> }).contents[1]
      expect(unsigned?.parts[0]?.thoughtSignature).toBeUndefined()
    } finally {
      await gw.close()
      await mock.stop()
    }
  })

  test('usage: cached content and thinking tokens map to cached_tokens and reasoning_tokens', async () => {
    const mock = await startMockGemini({ cachedTokens: 5, thoughtsTokens: 11 })
    const gw = await startGateway(config(mock.url))
    try {
      const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 })
      const completion = await client.chat.completions.create({ model: 'gemini-test', messages: [{ role: 'user', content: 'hi' }] })
      const usage = completion.usage!
      expect(usage.prompt_tokens_details?.cached_tokens).toBe(5)
      expect(usage.completion_tokens).toBe(WORDS + 11)
      expect(usage.completion_tokens_details?.reasoning_tokens).toBe(11)
      expect(usage.total_tokens).toBe(usage.prompt_tokens + usage.completion_tokens)
    } finally {
      await gw.close()
      await mock.stop()
    }
  })

  test('a usage plugin gets the provider usage of a stream; the client that did not ask sees no usage chunk', async () => {
    const usages: Usage[] = []
    const recorder = definePlugin({ name: 'test-usage', setup: () => ({ onUsage: (_req, usage) => void usages.push(usage) }) })
    const mock = await startMockGemini()
    const gw = await startGateway(config(mock.url, [recorder]))
    try {
      const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'gemini-test', messages: [{ role: 'user', content: 'hi' }], stream: true })
      const parsed = framesOf(await res.text())
      expect(parsed.done).toBe(true)
      expect((parsed.events as Chunk[]).some((c) => c.choices.length === 0)).toBe(false)
      await waitFor(() => usages.length === 1, 'the usage hook')
      expect(usages[0]).toMatchObject({ source: 'provider', completionTokens: WORDS })
    } finally {
      await gw.close()
      await mock.stop()
    }
  })
})
