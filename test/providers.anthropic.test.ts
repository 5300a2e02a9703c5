/**
 * The anthropic adapter end to end: the official `openai` client → a listening gateway →
 * a mock that speaks Anthropic's real Messages API wire format and validates what it is
 * sent. The client must get what OpenAI would have given it. Real HTTP on 127.0.0.1.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test'
import OpenAI from 'openai'
import type { ConfigFile } from '../src/config/schema.ts'
import { definePlugin, type Usage } from '../src/plugin.ts'
import { MOCK_CLAUDE_REPLY, signatureOf, startMockAnthropic, type MockAnthropic } from './fixtures/mock-anthropic.ts'
import { parseSse } from './fixtures/mock-upstream.ts'
import { SSE_KEEP_ALIVE } from '../src/providers/shared/sse-transform.ts'
import { startGateway, type TestGateway } from './support/gateway.ts'
import { drainStream, expectError, postJson, waitFor } from './support/http.ts'

const SECRET = 'sk-ant-api03-upstream-secret-0123456789abcdef'
const UPSTREAM_MODEL = 'claude-sonnet-4-5'
/** A model that thinks adaptively (Claude 4.6 and later), where claude-sonnet-4-5 takes a budget. */
const ADAPTIVE_MODEL = 'claude-opus-4-7'
const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=='

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

function config(baseUrl: string, plugins: unknown[] = []): ConfigFile & { plugins?: unknown[] } {
  return {
    providers: [{ id: 'claude', type: 'anthropic', baseUrl, keys: [{ id: 'an-1', secret: SECRET }] }],
    models: [
      { name: 'claude-test', targets: [{ provider: 'claude', model: UPSTREAM_MODEL }] },
      { name: 'claude-adaptive', targets: [{ provider: 'claude', model: ADAPTIVE_MODEL }] },
    ],
    plugins,
  }
}

const lastBody = (mock: MockAnthropic) => mock.stats.lastBody as Record<string, unknown> & { messages: unknown[] }

async function collect(stream: AsyncIterable<Chunk>): Promise<Chunk[]> {
  const chunks: Chunk[] = []
  for await (const chunk of stream) chunks.push(chunk)
  return chunks
}

describe('anthropic provider through the gateway', () => {
  let mock: MockAnthropic
  let gw: TestGateway
  let client: OpenAI

  beforeAll(async () => {
    mock = await startMockAnthropic({ apiKeys: [SECRET] })
    gw = await startGateway(config(mock.url))
    client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-dev-client-key-not-checked', maxRetries: 0 })
  })
  afterAll(async () => {
    await gw.close()
    await mock.stop()
  })
  beforeEach(() => mock.reset())

  test('plain chat: a chat.completion from a Messages API answer, key in x-api-key', async () => {
    const completion = await client.chat.completions.create({ model: 'claude-test', messages: [{ role: 'user', content: 'hello' }] })
    expect(completion.object).toBe('chat.completion')
    expect(completion.id).toStartWith('msg_mock')
    expect(completion.model).toBe(UPSTREAM_MODEL)
    expect(completion.choices).toHaveLength(1)
    expect(completion.choices[0]).toMatchObject({ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: MOCK_CLAUDE_REPLY } })
    const words = MOCK_CLAUDE_REPLY.split(' ').length
    expect(completion.usage?.completion_tokens).toBe(words)
    expect(completion.usage?.total_tokens).toBe((completion.usage?.prompt_tokens ?? 0) + words)
    expect(completion.usage?.prompt_tokens).toBeGreaterThan(0)

    const headers = mock.stats.lastHeaders!
    expect(headers.get('x-api-key')).toBe(SECRET)
    expect(headers.get('anthropic-version')).toBe('2023-06-01')
    expect(headers.get('authorization')).toBeNull()
    // Anthropic requires max_tokens: the default is sent when the client gives none.
    expect(mock.stats.lastBody).toEqual({ model: UPSTREAM_MODEL, max_tokens: 4096, messages: [{ role: 'user', content: [{ type: 'text', text: 'hello' }] }] })
  })

  test('system and developer messages become the top-level system; same-role turns are merged', async () => {
    const completion = await client.chat.completions.create({
      model: 'claude-test',
      max_tokens: 50,
      temperature: 0.2,
      // The neutral top_p many clients send by default is left out: the model refuses it with temperature.
      top_p: 1,
      user: 'user-42',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'developer', content: 'Answer in English.' },
        { role: 'user', content: 'hi' },
        { role: 'user', content: [{ type: 'text', text: 'are you there?' }] },
        { role: 'assistant', content: 'yes' },
        { role: 'user', content: 'good' },
      ],
    })
    expect(completion.choices[0]?.message.content).toBe(MOCK_CLAUDE_REPLY)
    expect(mock.stats.lastBody).toEqual({
      model: UPSTREAM_MODEL,
      max_tokens: 50,
      temperature: 0.2,
      metadata: { user_id: 'user-42' },
      system: [
        { type: 'text', text: 'Be brief.' },
        { type: 'text', text: 'Answer in English.' },
      ],
      messages: [
        { role: 'user', content: [{ type: 'text', text: 'hi' }, { type: 'text', text: 'are you there?' }] },
        { role: 'assistant', content: [{ type: 'text', text: 'yes' }] },
        { role: 'user', content: [{ type: 'text', text: 'good' }] },
      ],
    })
  })

  test('what OpenAI accepts and Anthropic would refuse is made acceptable before it is sent', async () => {
    // Each of these was a 400 from Anthropic: temperature above 1, a whitespace stop sequence,
    // whitespace-only texts, an image/jpg data URL, a function schema without "type", an email as user.
    const completion = await client.chat.completions.create({
      model: 'claude-test',
      temperature: 1.5,
      user: 'ada@example.com',
      stop: ['\n', 'mock'],
      tools: [{ type: 'function', function: { name: 'noop', parameters: {} } }],
      messages: [
        { role: 'system', content: ' ' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'hi' },
            { type: 'text', text: '\n' },
            { type: 'image_url', image_url: { url: `data:image/jpg;base64,${PNG}` } },
          ],
        },
      ],
    })
    expect(completion.choices[0]).toMatchObject({ finish_reason: 'stop', message: { content: 'I see 1 image. Hello from the ' } })
    const body = lastBody(mock)
    expect(body.temperature).toBe(1)
    expect(body.metadata).toEqual({ user_id: new Bun.CryptoHasher('sha256').update('ada@example.com').digest('hex') })
    expect(body.stop_sequences).toEqual(['mock'])
    expect(body.system).toBeUndefined()
    expect(body.tools).toEqual([{ name: 'noop', input_schema: { type: 'object' } }])
    expect(body.messages).toEqual([
      {
        role: 'user',
        content: [
          { type: 'text', text: 'hi' },
          { type: 'image', source: { type: 'base64', media_type: 'image/jpeg', data: PNG } },
        ],
      },
    ])
  })

  test('a conversation of system messages alone (OpenAI answers it) is served: the instructions go as the user turn Anthropic needs', async () => {
    for (const stream of [false, true]) {
      const body = { model: 'claude-test', messages: [{ role: 'system', content: 'Write a haiku.' }, { role: 'developer', content: 'About rain.' }] } satisfies OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming
      const completion = stream ? await client.chat.completions.stream(body).finalChatCompletion() : await client.chat.completions.create(body)
      expect(completion.choices[0]?.message.content).toBe(MOCK_CLAUDE_REPLY)
      expect(lastBody(mock).messages).toEqual([{ role: 'user', content: [{ type: 'text', text: 'Write a haiku.' }, { type: 'text', text: 'About rain.' }] }])
      expect(lastBody(mock).system).toBeUndefined()
    }
  })

  test('images: a data: URL becomes a base64 image block, an http URL a url source', async () => {
    const completion = await client.chat.completions.create({
      model: 'claude-test',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What are these?' },
            { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}` } },
            { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg', detail: 'low' } },
          ],
        },
      ],
    })
    expect(completion.choices[0]?.message.content).toStartWith('I see 2 images.')
    expect(lastBody(mock).messages[0]).toEqual({
      role: 'user',
      content: [
        { type: 'text', text: 'What are these?' },
        { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG } },
        { type: 'image', source: { type: 'url', url: 'https://example.com/cat.jpg' } },
      ],
    })
  })

  test('tools: a tool_use answer becomes tool_calls with JSON-string arguments; the result goes back as tool_result', async () => {
    const first = await client.chat.completions.create({
      model: 'claude-test',
      messages: [{ role: 'user', content: 'use get_weather for Paris' }],
      tools: [weatherTool],
    })
    const choice = first.choices[0]!
    expect(choice.finish_reason).toBe('tool_calls')
    expect(choice.message.content).toBe('Calling get_weather.')
    const call = choice.message.tool_calls?.[0]
    expect(call?.type).toBe('function')
    if (call?.type !== 'function') throw new Error('expected a function tool call')
    expect(call.id).toStartWith('toolu_mock')
    expect(call.function.name).toBe('get_weather')
    expect(typeof call.function.arguments).toBe('string')
    expect(JSON.parse(call.function.arguments)).toEqual({ city: 'mock', unit: 'celsius' })
    expect(lastBody(mock).tools).toEqual([
      { name: 'get_weather', description: 'Current weather for a city', input_schema: weatherTool.function.parameters },
    ])
    expect(lastBody(mock).tool_choice).toBeUndefined()

    const second = await client.chat.completions.create({
      model: 'claude-test',
      messages: [{ role: 'user', content: 'use get_weather for Paris' }, choice.message, { role: 'tool', tool_call_id: call.id, content: 'sunny, 21 C' }],
      tools: [weatherTool],
    })
    expect(second.choices[0]?.finish_reason).toBe('stop')
    expect(second.choices[0]?.message.content).toBe('Tool result received: sunny, 21 C')
    expect(lastBody(mock).messages).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'use get_weather for Paris' }] },
      {
        role: 'assistant',
        content: [
          { type: 'text', text: 'Calling get_weather.' },
          { type: 'tool_use', id: call.id, name: 'get_weather', input: { city: 'mock', unit: 'celsius' } },
        ],
      },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: call.id, content: 'sunny, 21 C' }] },
    ])
  })

  test('a tool loop followed by a request without tools (a final summary) is served: the called tools are declared, Claude may not call them', async () => {
    const first = await client.chat.completions.create({ model: 'claude-test', messages: [{ role: 'user', content: 'use get_weather for Paris' }], tools: [weatherTool] })
    const call = first.choices[0]!.message.tool_calls![0]!
    const history: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [
      { role: 'user', content: 'use get_weather for Paris' },
      first.choices[0]!.message,
      { role: 'tool', tool_call_id: call.id, content: 'sunny, 21 C' },
      { role: 'user', content: 'Summarize in one line.' },
    ]
    for (const stream of [false, true]) {
      const answer = stream
        ? await client.chat.completions.stream({ model: 'claude-test', messages: history }).finalChatCompletion()
        : await client.chat.completions.create({ model: 'claude-test', messages: history })
      expect(answer.choices[0]?.finish_reason).toBe('stop')
      expect(answer.choices[0]?.message.tool_calls ?? []).toEqual([])
      expect(lastBody(mock).tools).toEqual([{ name: 'get_weather', input_schema: { type: 'object' } }])
      expect(lastBody(mock).tool_choice).toEqual({ type: 'none' })
    }
    // A JSON answer asked for by structured outputs after the loop is served too.
    const schema = { type: 'object', properties: { line: { type: 'string' } }, required: ['line'], additionalProperties: false }
    const structured = await client.chat.completions.create({
      model: 'claude-test',
      messages: history,
      response_format: { type: 'json_schema', json_schema: { name: 'summary', strict: true, schema } },
    })
    expect(structured.choices[0]?.finish_reason).toBe('stop')
    expect(lastBody(mock).tool_choice).toEqual({ type: 'none' })
  })

  describe('reasoning_effort', () => {
    /** The thinking the mock writes for a last user text, and the message fields it comes back as. */
    const thought = (text: string) => `The user wrote: ${text}. Answering.`
    type Reasoning = { reasoning_content?: string; thinking_blocks?: Array<Record<string, unknown>> }

    test('Claude thinks: a budget for 4.5, adaptive at an effort for 4.7; the reasoning comes back with its signature', async () => {
      const completion = await client.chat.completions.create({ model: 'claude-test', messages: [{ role: 'user', content: 'why?' }], reasoning_effort: 'high', temperature: 0.3 })
      expect(lastBody(mock)).toMatchObject({ thinking: { type: 'enabled', budget_tokens: 4096 }, max_tokens: 8192 })
      // The mock refuses a temperature other than 1 while Claude thinks: the gateway left it out.
      expect(lastBody(mock).temperature).toBeUndefined()
      const message = completion.choices[0]!.message as typeof completion.choices[0]['message'] & Reasoning
      expect(message.content).toBe(MOCK_CLAUDE_REPLY)
      expect(message.reasoning_content).toBe(thought('why?'))
      expect(message.thinking_blocks).toEqual([{ type: 'thinking', thinking: thought('why?'), signature: signatureOf(thought('why?')) }])
      // Thinking is output: the usage the client sees counts it.
      expect(completion.usage?.completion_tokens).toBe(MOCK_CLAUDE_REPLY.split(' ').length + thought('why?').split(' ').length)

      await client.chat.completions.create({ model: 'claude-adaptive', messages: [{ role: 'user', content: 'why?' }], reasoning_effort: 'low' })
      expect(lastBody(mock)).toMatchObject({ thinking: { type: 'adaptive' }, output_config: { effort: 'low' }, max_tokens: 4096 })
    })

    test('streamed: reasoning_content deltas, then the signed block whole, then the content', async () => {
      const stream = await client.chat.completions.create({ model: 'claude-adaptive', messages: [{ role: 'user', content: 'why?' }], reasoning_effort: 'medium', stream: true })
      const chunks = await collect(stream)
      const deltas = chunks.map((c) => c.choices[0]?.delta as (Chunk['choices'][0]['delta'] & Reasoning) | undefined)
      expect(deltas.map((d) => d?.reasoning_content ?? '').join('')).toBe(thought('why?'))
      expect(deltas.flatMap((d) => d?.thinking_blocks ?? [])).toEqual([{ type: 'thinking', thinking: thought('why?'), signature: signatureOf(thought('why?')) }])
      expect(deltas.map((d) => d?.content ?? '').join('')).toBe(MOCK_CLAUDE_REPLY)
      const firstContent = deltas.findIndex((d) => typeof d?.content === 'string' && d.content !== '')
      expect(deltas.findIndex((d) => d?.thinking_blocks !== undefined)).toBeLessThan(firstContent)
    })

    test('a tool loop: the message sent back as received keeps Claude\'s thinking; one without it goes without thinking', async () => {
      const ask = { role: 'user', content: 'use get_weather for Paris' } as const
      const first = await client.chat.completions.create({ model: 'claude-adaptive', messages: [ask], tools: [weatherTool], reasoning_effort: 'high' })
      const message = first.choices[0]!.message
      const call = message.tool_calls?.[0]
      if (call?.type !== 'function') throw new Error('expected a function tool call')
      expect((message as typeof message & Reasoning).thinking_blocks).toHaveLength(1)

      // The message as the SDK gave it, thinking_blocks included: Claude's turn starts with its thinking.
      const result = { role: 'tool', tool_call_id: call.id, content: 'sunny' } as const
      const second = await client.chat.completions.create({ model: 'claude-adaptive', messages: [ask, message, result], tools: [weatherTool], reasoning_effort: 'high' })
      expect(second.choices[0]?.message.content).toBe('Tool result received: sunny')
      expect(lastBody(mock).thinking).toEqual({ type: 'adaptive' })
      expect((lastBody(mock).messages[1] as { content: Array<{ type: string }> }).content.map((b) => b.type)).toEqual(['thinking', 'text', 'tool_use'])

      // A client that keeps only OpenAI's fields: the mock (as Anthropic) would refuse thinking here.
      const bare = { role: 'assistant', content: message.content, tool_calls: message.tool_calls } as const
      const third = await client.chat.completions.create({ model: 'claude-adaptive', messages: [ask, bare, result], tools: [weatherTool], reasoning_effort: 'high' })
      expect(third.choices[0]?.message.content).toBe('Tool result received: sunny')
      expect(lastBody(mock).thinking).toBeUndefined()
    })

    test('a prefill (a final assistant message) goes without thinking, which Anthropic refuses with it', async () => {
      const res = await postJson(`${gw.url}/v1/chat/completions`, {
        model: 'claude-adaptive',
        messages: [{ role: 'user', content: 'name a colour' }, { role: 'assistant', content: 'The colour is' }],
        reasoning_effort: 'high',
      })
      expect(res.status).toBe(200)
      await res.arrayBuffer()
      expect(lastBody(mock).thinking).toBeUndefined()
    })

    test('what cannot go with thinking is a 400 naming the field, before any upstream call', async () => {
      const forced = await postJson(`${gw.url}/v1/chat/completions`, {
        model: 'claude-adaptive',
        messages: [{ role: 'user', content: 'hi' }],
        tools: [weatherTool],
        tool_choice: 'required',
        reasoning_effort: 'high',
      })
      expect((await expectError(forced, 'invalid_request')).param).toBe('reasoning_effort')
      const unknown = await postJson(`${gw.url}/v1/chat/completions`, { model: 'claude-test', messages: [{ role: 'user', content: 'hi' }], reasoning_effort: 'maximum' })
      expect((await expectError(unknown, 'invalid_request')).param).toBe('reasoning_effort')
      expect(mock.stats.requests).toBe(0)
    })
  })

  test('tool_choice: required → any, a named function → tool, none → none; parallel_tool_calls false is kept', async () => {
    const messages: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [{ role: 'user', content: 'hello' }]
    const required = await client.chat.completions.create({ model: 'claude-test', messages, tools: [weatherTool], tool_choice: 'required', parallel_tool_calls: false })
    expect(lastBody(mock).tool_choice).toEqual({ type: 'any', disable_parallel_tool_use: true })
    expect(required.choices[0]?.finish_reason).toBe('tool_calls')

    await client.chat.completions.create({ model: 'claude-test', messages, tools: [weatherTool], tool_choice: { type: 'function', function: { name: 'get_weather' } } })
    expect(lastBody(mock).tool_choice).toEqual({ type: 'tool', name: 'get_weather' })

    const none = await client.chat.completions.create({ model: 'claude-test', messages: [{ role: 'user', content: 'use get_weather' }], tools: [weatherTool], tool_choice: 'none' })
    expect(lastBody(mock).tool_choice).toEqual({ type: 'none' })
    expect(none.choices[0]?.finish_reason).toBe('stop')
    expect(none.choices[0]?.message.tool_calls).toBeUndefined()
  })

  test('response_format json_schema: the content is JSON that follows the schema, streamed or not (strict: structured outputs; otherwise the answer tool)', async () => {
    const schema = {
      type: 'object',
      properties: { city: { type: 'string' }, days: { type: 'integer' } },
      required: ['city', 'days'],
      additionalProperties: false,
    }
    const params = {
      model: 'claude-test',
      messages: [{ role: 'user' as const, content: 'The forecast for Paris, as JSON.' }],
      response_format: { type: 'json_schema' as const, json_schema: { name: 'forecast', schema, strict: true } },
    }
    const loose = { ...params, response_format: { type: 'json_schema' as const, json_schema: { name: 'forecast', schema } } }
    for (const [body, sent] of [
      [params, { output_config: { format: { type: 'json_schema', schema } } }],
      [loose, { tool_choice: { type: 'tool', name: 'forecast' } }],
    ] as const) {
      const completion = await client.chat.completions.create(body)
      expect(completion.choices[0]?.finish_reason).toBe('stop')
      expect(completion.choices[0]?.message.tool_calls).toBeUndefined()
      expect(JSON.parse(completion.choices[0]?.message.content ?? '')).toEqual({ city: 'mock', days: 1 })
      expect(lastBody(mock)).toMatchObject(sent)

      const chunks = await collect(await client.chat.completions.create({ ...body, stream: true }))
      expect(JSON.parse(chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''))).toEqual({ city: 'mock', days: 1 })
      expect(chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? [])).toEqual([])
      expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('stop')
    }
    expect(lastBody(mock).output_config).toBeUndefined()

    const object = await client.chat.completions.create({ ...params, response_format: { type: 'json_object' } })
    expect(JSON.parse(object.choices[0]?.message.content ?? '')).toEqual({})
  })

  test("json_schema with Claude's thinking and the client's own tools: a structured answer, with the reasoning, where the answer tool would be refused", async () => {
    const schema = { type: 'object', properties: { summary: { type: 'string' } }, required: ['summary'], additionalProperties: false }
    const completion = await client.chat.completions.create({
      model: 'claude-adaptive',
      messages: [{ role: 'user', content: 'Summarise the plan, as JSON.' }],
      tools: [weatherTool],
      reasoning_effort: 'high',
      response_format: { type: 'json_schema', json_schema: { name: 'summary', schema } },
    })
    const message = completion.choices[0]?.message as { content: string | null; reasoning_content?: string }
    expect(JSON.parse(message.content ?? '')).toEqual({ summary: 'mock' })
    expect(message.reasoning_content).toContain('Summarise the plan')
    expect(lastBody(mock)).toMatchObject({
      thinking: { type: 'adaptive' },
      output_config: { effort: 'high', format: { type: 'json_schema', schema } },
      tools: [{ name: 'get_weather' }],
    })
    expect(lastBody(mock).tool_choice).toBeUndefined()
  })

  test('a strict schema with bounds structured outputs do not hold (minimum, maxLength) is served: the bounds go to Claude as descriptions', async () => {
    const schema = {
      type: 'object',
      properties: { city: { type: 'string', maxLength: 40 }, days: { type: 'integer', minimum: 1, maximum: 16 } },
      required: ['city', 'days'],
      additionalProperties: false,
    }
    const completion = await client.chat.completions.create({
      model: 'claude-test',
      messages: [{ role: 'user', content: 'The forecast, as JSON.' }],
      response_format: { type: 'json_schema', json_schema: { name: 'forecast', schema, strict: true } },
    })
    expect(JSON.parse(completion.choices[0]?.message.content ?? '')).toEqual({ city: 'mock', days: 1 })
    const sent = (lastBody(mock).output_config as { format: { schema: { properties: Record<string, unknown> } } }).format.schema
    expect(sent.properties.days).toEqual({ type: 'integer', description: '{minimum: 1, maximum: 16}' })
  })

  test("a strict schema Anthropic does not take (an object left open) comes back as Anthropic's own 400", async () => {
    const open = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }
    const refused = await client.chat.completions
      .create({ model: 'claude-test', messages: [{ role: 'user', content: 'JSON please' }], response_format: { type: 'json_schema', json_schema: { name: 'c', schema: open, strict: true } } })
      .catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(OpenAI.APIError)
    expect((refused as InstanceType<typeof OpenAI.APIError>).status).toBe(400)
    expect((refused as Error).message).toContain("'additionalProperties' must be explicitly set to false")
  })

  test('stop reasons: max_tokens → length, a stop sequence → stop', async () => {
    const short = await client.chat.completions.create({ model: 'claude-test', messages: [{ role: 'user', content: 'hi' }], max_completion_tokens: 3 })
    expect(short.choices[0]).toMatchObject({ finish_reason: 'length', message: { content: 'Hello from the' } })
    expect(lastBody(mock).max_tokens).toBe(3)

    const stopped = await client.chat.completions.create({ model: 'claude-test', messages: [{ role: 'user', content: 'hi' }], stop: ['mock'] })
    expect(stopped.choices[0]).toMatchObject({ finish_reason: 'stop', message: { content: 'Hello from the ' } })
    expect(lastBody(mock).stop_sequences).toEqual(['mock'])
  })

  test('streamed text: OpenAI SSE frames, role first, content pieces, finish chunk, [DONE]', async () => {
    const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'claude-test', messages: [{ role: 'user', content: 'hello' }], stream: true })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toStartWith('text/event-stream')
    const parsed = framesOf(await res.text())
    expect(parsed.done).toBe(true)
    const chunks = parsed.events as Chunk[]
    for (const chunk of chunks) {
      expect(chunk.object).toBe('chat.completion.chunk')
      expect(chunk.id).toStartWith('msg_mock')
      expect(chunk.model).toBe(UPSTREAM_MODEL)
      expect('usage' in chunk).toBe(false)
    }
    expect(chunks[0]?.choices[0]?.delta).toEqual({ role: 'assistant', content: '' })
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe(MOCK_CLAUDE_REPLY)
    // One chunk per upstream text delta: translated event by event, not re-chunked.
    expect(chunks).toHaveLength(1 + MOCK_CLAUDE_REPLY.split(' ').length + 1)
    expect(chunks.at(-1)?.choices[0]).toMatchObject({ delta: {}, finish_reason: 'stop' })
    expect(lastBody(mock).stream).toBe(true)
  })

  test('streamed text with include_usage ends with the usage chunk; other chunks carry usage null', async () => {
    const body = { model: 'claude-test', messages: [{ role: 'user' as const, content: 'hello' }] }
    const plain = await client.chat.completions.create(body)
    const chunks = await collect(await client.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } }))
    const last = chunks.at(-1)
    expect(last?.choices).toEqual([])
    expect(last?.usage).toEqual(plain.usage!)
    for (const chunk of chunks.slice(0, -1)) expect(chunk.usage).toBeNull()
    expect(chunks.at(-2)?.choices[0]?.finish_reason).toBe('stop')
  })

  test('streamed tool calls: id and name first, then argument pieces; the SDK helper accumulates them', async () => {
    const params = { model: 'claude-test', messages: [{ role: 'user' as const, content: 'use get_weather for Paris' }], tools: [weatherTool] }
    const chunks = await collect(await client.chat.completions.create({ ...params, stream: true }))
    const toolDeltas = chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? [])
    expect(toolDeltas[0]).toMatchObject({ index: 0, type: 'function', function: { name: 'get_weather', arguments: '' } })
    expect(toolDeltas[0]?.id).toStartWith('toolu_mock')
    expect(toolDeltas.length).toBeGreaterThan(2)
    for (const delta of toolDeltas.slice(1)) expect(delta.id).toBeUndefined()
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('tool_calls')

    const stream = client.chat.completions.stream({ ...params })
    const final = await stream.finalChatCompletion()
    const message = final.choices[0]?.message
    expect(message?.content).toBe('Calling get_weather.')
    const call = message?.tool_calls?.[0]
    if (call?.type !== 'function') throw new Error('expected a function tool call')
    expect(call.function.name).toBe('get_weather')
    expect(JSON.parse(call.function.arguments)).toEqual({ city: 'mock', unit: 'celsius' })
    expect(final.choices[0]?.finish_reason).toBe('tool_calls')
  })

  test('streamed stop reason max_tokens → length', async () => {
    const chunks = await collect(await client.chat.completions.create({ model: 'claude-test', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, stream: true }))
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Hello from')
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('length')
  })

  test('an error event inside the stream reaches the client as an API error', async () => {
    mock.setFailure({ status: 529, midStream: true, times: 1 })
    const stream = await client.chat.completions.create({ model: 'claude-test', messages: [{ role: 'user', content: 'hi' }], stream: true })
    const { seen, error } = await drainStream<Chunk>(stream)
    expect(error).toBeInstanceOf(OpenAI.APIError)
    expect((error as Error).message).toContain('Overloaded')
    // The gateway's code for an upstream failure (DESIGN.md), not Anthropic's "overloaded_error".
    expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe('upstream_error')
    expect(seen.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Hello ')
  })

  test('a client that goes away mid-stream cancels the upstream stream', async () => {
    const slow = await startMockAnthropic({ chunkDelayMs: 40 })
    const slowGw = await startGateway(config(slow.url))
    try {
      const controller = new AbortController()
      const res = await fetch(`${slowGw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'claude-test', messages: [{ role: 'user', content: 'hi' }], stream: true }),
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

  describe('provider errors in the gateway envelope', () => {
    test('400 from Anthropic → 400 invalid_request carrying Anthropic\'s message', async () => {
      mock.setFailure({ status: 400, times: 1, body: { type: 'error', error: { type: 'invalid_request_error', message: 'messages.0.content: too many images' } } })
      const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'claude-test', messages: [{ role: 'user', content: 'hi' }] })
      const error = await expectError(res, 'invalid_request', 400)
      expect(error.message).toContain('messages.0.content: too many images')
      expect(error.message).toContain('"claude"')
      // temperature and top_p both set to values that matter, which Claude 4.5 refuses together: temperature goes alone.
      const pair = await postJson(`${gw.url}/v1/chat/completions`, { model: 'claude-test', messages: [{ role: 'user', content: 'hi' }], temperature: 0.5, top_p: 0.9 })
      expect(pair.status).toBe(200)
      expect([lastBody(mock).temperature, lastBody(mock).top_p]).toEqual([0.5, undefined])
      // A temperature above Anthropic's range still matters: it goes alone, as Claude's most random.
      const hot = await postJson(`${gw.url}/v1/chat/completions`, { model: 'claude-test', messages: [{ role: 'user', content: 'hi' }], temperature: 1.5, top_p: 0.5 })
      expect(hot.status).toBe(200)
      expect([lastBody(mock).temperature, lastBody(mock).top_p]).toEqual([1, undefined])
    })

    test('a prompt over the context window is OpenAI\'s context_length_exceeded (param messages), which SDKs and agents branch on to trim the history', async () => {
      for (const message of ['prompt is too long: 208656 tokens > 200000 maximum', 'input length and `max_tokens` exceed context limit: 197626 + 8192 > 200000, decrease input length or `max_tokens` and try again']) {
        mock.setFailure({ status: 400, times: 1, body: { type: 'error', error: { type: 'invalid_request_error', message } } })
        const error = await client.chat.completions.create({ model: 'claude-test', messages: [{ role: 'user', content: 'hi' }] }).then(
          () => undefined,
          (e: unknown) => e,
        )
        expect(error).toBeInstanceOf(OpenAI.BadRequestError)
        const failed = error as InstanceType<typeof OpenAI.BadRequestError>
        expect([failed.status, failed.code, failed.param, failed.type]).toEqual([400, 'context_length_exceeded', 'messages', 'invalid_request_error'])
        expect(failed.message).toContain(message)
      }
    })

    test('an Anthropic organisation out of credit is the key\'s fault: 502 upstream_error, not the client\'s 400', async () => {
      const credit = 'Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.'
      for (const failure of [
        { status: 400, body: { type: 'error', error: { type: 'invalid_request_error', message: credit } } },
        { status: 402 },
      ]) {
        mock.setFailure({ ...failure, times: 1 })
        const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'claude-test', messages: [{ role: 'user', content: 'hi' }] })
        const error = await expectError(res, 'upstream_error', 502)
        expect(error.message).toContain('credit balance is too low')
        expect(error.message).toContain('"an-1"')
      }
    })

    test('429 → 429 rate_limit_exceeded with Retry-After', async () => {
      mock.setFailure({ status: 429, times: 1 })
      const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'claude-test', messages: [{ role: 'user', content: 'hi' }] })
      expect(res.headers.get('retry-after')).toBe('7')
      const error = await expectError(res, 'rate_limit_exceeded', 429)
      expect(error.message).toContain('per-minute rate limit')
    })

    test('500 and 529 (overloaded) → 502 upstream_error', async () => {
      for (const status of [500, 529]) {
        mock.setFailure({ status, times: 1 })
        const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'claude-test', messages: [{ role: 'user', content: 'hi' }] })
        const error = await expectError(res, 'upstream_error', 502)
        expect(error.message).toContain(status === 529 ? 'Overloaded' : 'Internal server error')
      }
    })

    test('a 2xx web page (a baseUrl at a website, a proxy\'s login page) → 502 upstream_error, streamed or not, never a 200 stream', async () => {
      for (const stream of [false, true]) {
        mock.setFailure({ status: 200, page: '<html><body>Sign in to continue</body></html>', times: 1 })
        const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'claude-test', messages: [{ role: 'user', content: 'hi' }], stream })
        const error = await expectError(res, 'upstream_error', 502)
        expect(error.message).toContain('"claude"')
        expect(error.message).toContain('web page (text/html)')
      }
    })

    test('a 4xx web page (Anthropic\'s is JSON; a page is a wrong baseUrl or a proxy) → 502 upstream_error, not 404 model_not_found', async () => {
      mock.setFailure({ status: 404, page: '<html><body>Not Found</body></html>', times: 1 })
      const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'claude-test', messages: [{ role: 'user', content: 'hi' }] })
      const error = await expectError(res, 'upstream_error', 502)
      expect(error.message).toContain('HTTP 404 with a web page')
      // A redirect is not followed with the key; where it pointed is the operator's to read, not the client's.
      mock.setFailure({ status: 301, headers: { location: 'https://api.anthropic.test/v1/messages' }, times: 1 })
      const moved = await postJson(`${gw.url}/v1/chat/completions`, { model: 'claude-test', messages: [{ role: 'user', content: 'hi' }] })
      const said = (await expectError(moved, 'upstream_error', 502)).message
      expect(said).toContain('redirect (HTTP 301)')
      expect(said).not.toContain('api.anthropic.test')
    })

    test('the upstream key never reaches the client, even when the provider echoes it', async () => {
      mock.setFailure({ status: 401, times: 1, body: { type: 'error', error: { type: 'authentication_error', message: `invalid x-api-key ${SECRET}` } } })
      const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'claude-test', messages: [{ role: 'user', content: 'hi' }] })
      const text = await res.clone().text()
      expect(text).not.toContain(SECRET)
      const error = await expectError(res, 'upstream_error', 502)
      expect(error.message).toContain('an-1')
    })

    test('a request Anthropic cannot take is refused with 400 before any upstream call', async () => {
      const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'claude-test', messages: [{ role: 'user', content: 'hi' }], n: 2 })
      const error = await expectError(res, 'invalid_request', 400)
      expect(error.message).toContain('n must be 1')
      expect(mock.stats.requests).toBe(0)
    })

    test('the legacy functions parameter and logprobs are refused with 400 naming the field, before any upstream call', async () => {
      const messages = [{ role: 'user', content: 'weather in Paris?' }]
      const functions = [{ name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } }]
      for (const [extra, param] of [
        [{ functions, function_call: 'auto' }, 'functions'],
        [{ function_call: 'none' }, 'function_call'],
        [{ logprobs: true, top_logprobs: 2 }, 'logprobs'],
      ] as const) {
        const error = await expectError(await postJson(`${gw.url}/v1/chat/completions`, { model: 'claude-test', messages, ...extra }), 'invalid_request', 400)
        expect(error.param).toBe(param)
      }
      expect(mock.stats.requests).toBe(0)
    })

    test('embeddings are not served by an anthropic provider: 400 that says so', async () => {
      const res = await postJson(`${gw.url}/v1/embeddings`, { model: 'claude-test', input: 'hello' })
      const error = await expectError(res, 'invalid_request', 400)
      expect(error.message).toContain('chat completions only')
      expect(mock.stats.requests).toBe(0)
    })
  })
})

describe('anthropic key failover', () => {
  test('a key whose organisation is out of credit is set aside and the next key answers', async () => {
    const other = 'sk-ant-api03-second-account-0123456789abcdef'
    const mock = await startMockAnthropic({ apiKeys: [SECRET, other] })
    const keys = [
      { id: 'an-1', secret: SECRET },
      { id: 'an-2', secret: other },
    ]
    const gw = await startGateway({
      providers: [{ id: 'claude', type: 'anthropic', baseUrl: mock.url, keys }],
      models: [
      { name: 'claude-test', targets: [{ provider: 'claude', model: UPSTREAM_MODEL }] },
      { name: 'claude-adaptive', targets: [{ provider: 'claude', model: ADAPTIVE_MODEL }] },
    ],
      plugins: ['balance'],
    })
    try {
      const credit = 'Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.'
      mock.setFailure({ status: 400, times: 1, body: { type: 'error', error: { type: 'invalid_request_error', message: credit } } })
      const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'claude-test', messages: [{ role: 'user', content: 'hi' }] })
      // The first key tried (whichever balancing picks) was refused; the other one answered.
      expect(res.status).toBe(200)
      expect(mock.stats.requests).toBe(2)
    } finally {
      await gw.close()
      await mock.stop()
    }
  })
})

describe('a web page instead of an answer is the key\'s failure', () => {
  test('a stream request answered with a 2xx web page goes to the next key, as a 5xx would', async () => {
    const mock = await startMockAnthropic({ apiKeys: [SECRET] })
    const gw = await startGateway({ ...config(mock.url), providers: [{ id: 'claude', type: 'anthropic', baseUrl: mock.url, keys: [{ id: 'an-1', secret: SECRET }, { id: 'an-2', secret: SECRET }] }], plugins: ['balance'] })
    try {
      mock.setFailure({ status: 200, page: '<html><body>Sign in to continue</body></html>', times: 1 })
      const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'claude-test', messages: [{ role: 'user', content: 'hi' }], stream: true })
      expect(res.status).toBe(200)
      expect(framesOf(await res.text()).done).toBe(true)
      expect(mock.stats.requests).toBe(2)
    } finally {
      await gw.close()
      await mock.stop()
    }
  })
})

describe('what the client must change is not laid on the provider key', () => {
  test("the adapter's refusal says what to change without blaming Anthropic, and neither it nor Anthropic's own 400 becomes the key's last error", async () => {
    const mock = await startMockAnthropic({ apiKeys: [SECRET] })
    const adminKey = 'sluice-admin-refusal-test-0123456789'
    const gw = await startGateway({ ...config(mock.url), plugins: ['balance'] }, { env: { SLUICE_ADMIN_KEY: adminKey } })
    const lastError = async () => {
      const res = await fetch(`${gw.url}/admin/providers/health`, { headers: { authorization: `Bearer ${adminKey}` } })
      return ((await res.json()) as { data: Array<{ last_error: { status: number } | null }> }).data[0]!.last_error
    }
    try {
      for (const body of [
        { model: 'claude-test', messages: [{ role: 'user', content: 'hi' }], n: 2 },
        { model: 'claude-test', messages: [{ role: 'user', content: 'hi' }], tools: [{ type: 'function', function: {} }] },
      ]) {
        const error = await expectError(await postJson(`${gw.url}/v1/chat/completions`, body), 'invalid_request', 400)
        expect(error.message).not.toContain('Upstream provider')
        expect(error.message).not.toContain('rejected')
      }
      const embeddings = await expectError(await postJson(`${gw.url}/v1/embeddings`, { model: 'claude-test', input: 'hello' }), 'invalid_request', 400)
      expect(embeddings.message).toContain('chat completions only')
      expect(embeddings.message).not.toContain('rejected')
      expect(mock.stats.requests).toBe(0)
      expect(await lastError()).toBeNull()

      mock.setFailure({ status: 400, times: 1, body: { type: 'error', error: { type: 'invalid_request_error', message: 'messages.0.content: too many images' } } })
      await expectError(await postJson(`${gw.url}/v1/chat/completions`, { model: 'claude-test', messages: [{ role: 'user', content: 'hi' }] }), 'invalid_request', 400)
      expect(await lastError()).toBeNull()
      // A failure of Anthropic's own is the key's to show.
      mock.setFailure({ status: 500, times: 1 })
      await postJson(`${gw.url}/v1/chat/completions`, { model: 'claude-test', messages: [{ role: 'user', content: 'hi' }] })
      expect((await lastError())?.status).toBe(500)
    } finally {
      await gw.close()
      await mock.stop()
    }
  })
})

describe('anthropic streams and the idle timeout', () => {
  test("a Claude stream that only pings for longer than idle_ms (each ping inside it) is alive: it completes, with or without a plugin reading it", async () => {
    // 8 pings 60 ms apart before any content: 480 ms without a translated chunk, against idle_ms 200.
    const mock = await startMockAnthropic({ slowStart: { pings: 8, everyMs: 60 } })
    const usages: Usage[] = []
    const recorder = definePlugin({ name: 'test-usage', setup: () => ({ onUsage: (_req, usage) => void usages.push(usage) }) })
    const idle = (plugins: unknown[]): ConfigFile & { plugins?: unknown[] } => {
      const base = config(mock.url, plugins)
      return { ...base, providers: base.providers?.map((p) => ({ ...p, timeouts: { idle_ms: 200 } })) }
    }
    // Without plugins the body passes under the watchdog as it comes; with a usage plugin it is read event by event.
    const gateways = [await startGateway(idle([])), await startGateway(idle([recorder]))]
    try {
      for (const gw of gateways) {
        const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 })
        const started = performance.now()
        const stream = await client.chat.completions.create({ model: 'claude-test', messages: [{ role: 'user', content: 'hi' }], stream: true })
        const { seen, error } = await drainStream<Chunk>(stream)
        expect(error).toBeNull()
        expect(performance.now() - started).toBeGreaterThan(450)
        // The keep-alives are SSE comments: the SDK never shows them as chunks.
        expect(seen.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe(MOCK_CLAUDE_REPLY)
        expect(seen.at(-1)?.choices[0]?.finish_reason).toBe('stop')

        const raw = await (await postJson(`${gw.url}/v1/chat/completions`, { model: 'claude-test', messages: [{ role: 'user', content: 'hi' }], stream: true })).text()
        expect(raw).toContain(SSE_KEEP_ALIVE)
        expect(raw).not.toContain('upstream_timeout')
        expect(framesOf(raw).done).toBe(true)
      }
      await waitFor(() => usages.length === 2, 'the usage hook')
      expect(usages.every((usage) => usage.source === 'provider')).toBe(true)
    } finally {
      for (const gw of gateways) await gw.close()
      await mock.stop()
    }
  })
})

describe('anthropic usage accounting', () => {
  test('cache reads and writes count as prompt tokens; reads are the cached_tokens', async () => {
    const mock = await startMockAnthropic({ cacheReadTokens: 100, cacheCreationTokens: 20 })
    const gw = await startGateway(config(mock.url))
    try {
      const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 })
      const completion = await client.chat.completions.create({ model: 'claude-test', messages: [{ role: 'user', content: 'hi' }] })
      const usage = completion.usage!
      const input = usage.prompt_tokens - 120
      expect(input).toBeGreaterThan(0)
      expect(usage.prompt_tokens_details?.cached_tokens).toBe(100)
      expect(usage.total_tokens).toBe(usage.prompt_tokens + usage.completion_tokens)

      const chunks = await collect(
        await client.chat.completions.create({ model: 'claude-test', messages: [{ role: 'user', content: 'hi' }], stream: true, stream_options: { include_usage: true } }),
      )
      expect(chunks.at(-1)?.usage).toEqual(usage)
    } finally {
      await gw.close()
      await mock.stop()
    }
  })

  test('a usage plugin gets the provider usage of a stream; the client that did not ask sees no usage chunk', async () => {
    const usages: Usage[] = []
    const recorder = definePlugin({ name: 'test-usage', setup: () => ({ onUsage: (_req, usage) => void usages.push(usage) }) })
    const mock = await startMockAnthropic()
    const gw = await startGateway(config(mock.url, [recorder]))
    try {
      const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'claude-test', messages: [{ role: 'user', content: 'hi' }], stream: true })
      const parsed = framesOf(await res.text())
      expect(parsed.done).toBe(true)
      expect((parsed.events as Chunk[]).some((c) => Array.isArray(c.choices) && c.choices.length === 0)).toBe(false)
      await waitFor(() => usages.length === 1, 'the usage hook')
      expect(usages[0]).toMatchObject({ source: 'provider', completionTokens: MOCK_CLAUDE_REPLY.split(' ').length })
      expect(usages[0]!.promptTokens).toBeGreaterThan(0)
    } finally {
      await gw.close()
      await mock.stop()
    }
  })
})

describe('a group that mixes Claude with a provider serving more endpoints', () => {
  test('sends embeddings and legacy completions to the targets that serve them, with or without balance; a group of Claude alone refuses them with 400', async () => {
    const mock = await startMockAnthropic()
    const mixed = (plugins: unknown[]): ConfigFile & { plugins?: unknown[] } => ({
      providers: [
        { id: 'claude', type: 'anthropic', baseUrl: mock.url, keys: [{ id: 'an-1', secret: SECRET }] },
        { id: 'local', type: 'mock', keys: [{ id: 'm-1', secret: '' }] },
      ],
      models: [
        { name: 'mixed', strategy: 'round-robin', targets: [{ provider: 'claude', model: UPSTREAM_MODEL }, { provider: 'local', model: 'mock-gpt' }] },
        { name: 'claude-only', targets: [{ provider: 'claude', model: UPSTREAM_MODEL }] },
      ],
      plugins,
    })
    const gateways = [await startGateway(mixed([])), await startGateway(mixed(['balance']))]
    try {
      for (const gw of gateways) {
        for (let i = 0; i < 4; i++) {
          expect((await postJson(`${gw.url}/v1/embeddings`, { model: 'mixed', input: 'hello' })).status).toBe(200)
          expect((await postJson(`${gw.url}/v1/completions`, { model: 'mixed', prompt: 'hello' })).status).toBe(200)
        }
        const error = await expectError(await postJson(`${gw.url}/v1/embeddings`, { model: 'claude-only', input: 'hello' }), 'invalid_request', 400)
        expect(error.message).toContain('serves chat completions only')
      }
    } finally {
      for (const gw of gateways) await gw.close()
      await mock.stop()
    }
  })
})

describe('an Anthropic stream whose first event is an error (its 200 when overloaded)', () => {
  test('is the HTTP error it stands for, before the client\'s stream starts: balancing tries the next key and the client gets a whole answer', async () => {
    const mock = await startMockAnthropic()
    const keys = (plugins: unknown[]): ConfigFile & { plugins?: unknown[] } => {
      const base = config(mock.url, plugins)
      return { ...base, providers: base.providers?.map((p) => ({ ...p, keys: [{ id: 'an-1', secret: SECRET }, { id: 'an-2', secret: `${SECRET}-2` }] })) }
    }
    const plain = await startGateway(keys([]))
    const balanced = await startGateway(keys([{ use: 'balance', options: { backoff_ms: 1, backoff_max_ms: 5 } }]))
    try {
      // Without balancing, the status line says what happened: a 502 (Anthropic's 529) or a 429, not a 200 stream.
      for (const [status, code, gatewayStatus] of [[529, 'upstream_error', 502], [429, 'rate_limit_exceeded', 429]] as const) {
        mock.setFailure({ status, atStart: true, times: 1 })
        const res = await postJson(`${plain.url}/v1/chat/completions`, { model: 'claude-test', messages: [{ role: 'user', content: 'hi' }], stream: true })
        const error = await expectError(res, code, gatewayStatus)
        expect(error.message).toContain(status === 529 ? 'Overloaded' : 'rate limit')
      }
      mock.reset()
      mock.setFailure({ status: 529, atStart: true, times: 1 })
      const client = new OpenAI({ baseURL: `${balanced.url}/v1`, apiKey: 'unused', maxRetries: 0 })
      const stream = await client.chat.completions.create({ model: 'claude-test', messages: [{ role: 'user', content: 'hi' }], stream: true })
      const { seen, error } = await drainStream<Chunk>(stream)
      expect(error).toBeNull()
      expect(seen.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe(MOCK_CLAUDE_REPLY)
      expect(mock.stats.requests).toBe(2)
      // An error after the stream has begun stays an error event of the stream, as before.
      mock.setFailure({ status: 529, midStream: true, times: 1 })
      const later = await postJson(`${plain.url}/v1/chat/completions`, { model: 'claude-test', messages: [{ role: 'user', content: 'hi' }], stream: true })
      expect(later.status).toBe(200)
      expect(await later.text()).toContain('overloaded_error')
    } finally {
      await plain.close()
      await balanced.close()
      await mock.stop()
    }
  })
})

describe('a mixed group whose only targets serving the endpoint are out', () => {
  test('says when they are back or that they were refused, where the Claude target it skips counted as free (Retry-After 1 s)', async () => {
    const mock = await startMockAnthropic()
    // An OpenAI-compatible account that answers embeddings by its key: rate-limited for a minute, or refused.
    const account = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      fetch: (req) =>
        req.headers.get('authorization') === 'Bearer sk-upstream-limited-0123456789'
          ? Response.json({ error: { message: 'Rate limit reached', type: 'requests', code: 'rate_limit_exceeded' } }, { status: 429, headers: { 'retry-after': '60' } })
          : Response.json({ error: { message: 'Incorrect API key provided', type: 'invalid_request_error', code: 'invalid_api_key' } }, { status: 401 }),
    })
    const gw = await startGateway({
      providers: [
        { id: 'claude', type: 'anthropic', baseUrl: mock.url, keys: [{ id: 'an-1', secret: SECRET }] },
        { id: 'limited', type: 'openai-compatible', baseUrl: `http://127.0.0.1:${account.port}/v1`, keys: [{ id: 'l-1', secret: 'sk-upstream-limited-0123456789' }] },
        { id: 'refused', type: 'openai-compatible', baseUrl: `http://127.0.0.1:${account.port}/v1`, keys: [{ id: 'r-1', secret: 'sk-upstream-refused-0123456789' }] },
      ],
      models: [
        { name: 'cooling', targets: [{ provider: 'claude', model: UPSTREAM_MODEL }, { provider: 'limited', model: 'text-embedding-3-small' }] },
        { name: 'dead', targets: [{ provider: 'claude', model: UPSTREAM_MODEL }, { provider: 'refused', model: 'text-embedding-3-small' }] },
      ],
      plugins: ['balance'],
    })
    try {
      // The first request meets the 429, the second finds the key cooling: both are told to wait a minute.
      for (let i = 0; i < 2; i++) {
        const cooling = await postJson(`${gw.url}/v1/embeddings`, { model: 'cooling', input: 'hello' })
        const error = await expectError(cooling, 'no_healthy_upstream', 503)
        expect(Number(cooling.headers.get('retry-after'))).toBeGreaterThan(50)
        expect(error.message).not.toContain('tried already')
      }

      // Refused by its provider: an operator must act, whichever request asks.
      for (let i = 0; i < 2; i++) {
        const dead = await expectError(await postJson(`${gw.url}/v1/embeddings`, { model: 'dead', input: 'hello' }), 'upstream_error', 502)
        expect(dead.message).toContain('POST /admin/providers/refused/keys/r-1/reset')
      }
    } finally {
      await gw.close()
      account.stop(true)
      await mock.stop()
    }
  })
})
