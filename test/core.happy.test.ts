/**
 * Gateway core, happy paths: the official `openai` client → a listening gateway → the mock
 * upstream over real HTTP on 127.0.0.1, with no plugin. The mock upstream is the only fake.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test'
import OpenAI from 'openai'
import { loadConfig } from '../src/config/load.ts'
import { createGateway } from '../src/server.ts'
import { createLogger } from '../src/lib/logger.ts'
import { mockChatCompletion, mockEmbeddings } from '../src/providers/mock/generate.ts'
import { parseSse, startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { startGateway, upstreamConfig, type TestGateway } from './support/gateway.ts'
import { REQUEST_ID, postJson, rawExchange, type ChunkLike } from './support/http.ts'

const SECRET = 'sk-upstream-secret-0123456789'
const messages = [{ role: 'user' as const, content: 'hello there' }]

describe('core happy paths through the openai client', () => {
  let upstream: MockUpstream
  let gw: TestGateway
  let client: OpenAI

  beforeAll(async () => {
    upstream = await startMockUpstream()
    gw = await startGateway(
      upstreamConfig(upstream.url, {
        models: [
          { name: 'mock-gpt', targets: [{ provider: 'up', model: 'mock-gpt' }] },
          { name: 'mock-embed', targets: [{ provider: 'up', model: 'mock-embed' }] },
          // The client-facing name differs from the upstream's model name.
          { name: 'house-model', targets: [{ provider: 'up', model: 'upstream-model-v2' }] },
        ],
      }),
    )
    client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-dev-client-key-not-checked', maxRetries: 0 })
  })
  afterAll(async () => {
    await gw.close()
    await upstream.stop()
  })
  beforeEach(() => upstream.reset())

  test('chat completion: content, usage and model come back as the upstream gave them', async () => {
    const { data, response } = await client.chat.completions.create({ model: 'mock-gpt', messages, max_tokens: 5 }).withResponse()
    const expected = mockChatCompletion({ model: 'mock-gpt', messages, max_tokens: 5 }, { created: data.created })
    expect(data.choices[0]?.message.content).toBe('This is a mock reply')
    expect(data.model).toBe('mock-gpt')
    expect(data.usage).toEqual({ prompt_tokens: 9, completion_tokens: 5, total_tokens: 14 })
    expect(data as unknown).toEqual(expected)
    expect(response.status).toBe(200)
    expect(response.headers.get('x-request-id')).toMatch(REQUEST_ID)
    expect(upstream.stats.requests).toBe(1)
  })

  test('a host name of one to three characters (a service name: http://api/v1) routes as any other', async () => {
    for (const host of ['a', 'gw', 'api', 'a:1', 'abc:8080']) {
      const models = await fetch(`${gw.url}/v1/models`, { headers: { host } })
      expect(models.status).toBe(200)
      expect(((await models.json()) as { object: string }).object).toBe('list')
      const health = await fetch(`${gw.url}/health`, { headers: { host } })
      expect(health.status).toBe(200)
      const chat = await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages, max_tokens: 2 }, { host })
      expect(chat.status).toBe(200)
      expect(((await chat.json()) as { object: string }).object).toBe('chat.completion')
      expect((await fetch(`${gw.url}/v1/nothing`, { headers: { host } })).status).toBe(404)
    }
    // In process too (the gateway's own handle, as tests and embedders call it).
    const inProcess = await gw.gateway.handle(new Request('http://api/v1/models'))
    expect(inProcess.status).toBe(200)
  })

  test('a Host header that is no host (none on HTTP/1.0, "a b", "x/admin", "[::1", a port past 65535) routes the path as sent, never a crash page', async () => {
    const port = Number(new URL(gw.url).port)
    for (const host of [null, 'a b', 'x/admin', 'evil.example:1/admin', 'x?', '@', '[::1', 'a:99999']) {
      const head = host === null ? 'GET /v1/models HTTP/1.0\r\n' : `GET /v1/models HTTP/1.1\r\nhost: ${host}\r\nconnection: close\r\n`
      const answer = await rawExchange(port, head + '\r\n')
      // Before: 500 with Bun's development page (source lines and paths) for every one of these.
      expect(answer.split('\r\n')[0]).toBe('HTTP/1.1 200 OK')
      expect(answer).toContain('"object":"list"')
    }
  })

  test('a request target with a fragment is routed without it', async () => {
    const port = Number(new URL(gw.url).port)
    for (const target of ['/v1/models#x', '/health#frag?ment', '/v1/models?x=1#y']) {
      const answer = await rawExchange(port, `GET ${target} HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n`)
      // Before: 405 "GET is not allowed on /v1/models; use GET." (the router saw the fragment, the method table did not).
      expect(answer.split('\r\n')[0]).toBe('HTTP/1.1 200 OK')
    }
  })

  test('the upstream gets the provider key as Bearer and the upstream model name, not the client key or name', async () => {
    const completion = await client.chat.completions.create({ model: 'house-model', messages, max_tokens: 2 })
    expect(upstream.stats.lastHeaders?.get('authorization')).toBe(`Bearer ${SECRET}`)
    expect((upstream.stats.lastBody as { model: string }).model).toBe('upstream-model-v2')
    // The answer is the upstream's own, naming the model it ran.
    expect(completion.model).toBe('upstream-model-v2')
    expect(completion.choices[0]?.message.content).toBe('This is')
  })

  test('fields the gateway does not know pass through to the upstream untouched', async () => {
    const body = {
      model: 'mock-gpt',
      messages,
      seed: 42,
      logit_bias: { '50256': -100 },
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object' } } },
      some_future_param: { nested: [1, 'two', { three: null }], flag: true },
    }
    const res = await postJson(`${gw.url}/v1/chat/completions`, body)
    expect(res.status).toBe(200)
    await res.arrayBuffer()
    expect(upstream.stats.lastBody).toEqual(body)
  })

  describe('every request OpenAI documents as valid is served, and reaches the upstream as sent', () => {
    // From the openai SDK's ChatCompletionCreateParams, CompletionCreateParams and EmbeddingCreateParams.
    // SDKs and frameworks send `null` for optional fields they leave unset (openai-python's None, LangChain, LiteLLM).
    /** A test that `body` posted to `path` is answered 200 and reaches the upstream exactly as sent. */
    const sentAsIs = (name: string, path: string, body: Record<string, unknown>) =>
      test(name, async () => {
        const res = await postJson(`${gw.url}${path}`, body)
        expect(res.status).toBe(200)
        await res.arrayBuffer()
        expect(upstream.stats.lastBody).toEqual(body)
      })
    const tool = { type: 'function', function: { name: 'get_weather', description: 'Weather.', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false }, strict: true } }
    const chatBodies: Array<[string, Record<string, unknown>]> = [
      [
        'every message role and content shape',
        {
          messages: [
            { role: 'system', content: 'Be brief.', name: 'house-rules' },
            { role: 'developer', content: [{ type: 'text', text: 'Answer in English.' }] },
            {
              role: 'user',
              name: 'ada',
              content: [
                { type: 'text', text: 'What is this?' },
                { type: 'image_url', image_url: { url: 'https://example.com/cat.png', detail: 'low' } },
                { type: 'input_audio', input_audio: { data: 'UklGRg==', format: 'wav' } },
                { type: 'file', file: { file_id: 'file-abc123' } },
              ],
            },
            { role: 'assistant', content: null, refusal: null, audio: null, name: 'bot', tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
            { role: 'tool', tool_call_id: 'call_1', content: [{ type: 'text', text: 'sunny' }] },
            { role: 'assistant', content: [{ type: 'refusal', refusal: 'I cannot.' }], refusal: 'I cannot.' },
            { role: 'assistant', audio: { id: 'audio_abc' } },
            { role: 'assistant', content: null, function_call: { name: 'get_weather', arguments: '{}' } },
            { role: 'function', name: 'get_weather', content: null },
            { role: 'user', content: 'And tomorrow?', name: null },
          ],
        },
      ],
      [
        'the newer parameters',
        {
          max_completion_tokens: 5,
          reasoning_effort: 'minimal',
          verbosity: 'low',
          modalities: ['text', 'audio'],
          audio: { voice: 'alloy', format: 'wav' },
          prediction: { type: 'content', content: 'hello there' },
          store: true,
          metadata: { team: 'search' },
          service_tier: 'flex',
          tools: [tool, { type: 'custom', custom: { name: 'grammar', format: { type: 'text' } } }],
          tool_choice: { type: 'function', function: { name: 'get_weather' } },
          parallel_tool_calls: false,
          logit_bias: { '50256': -100, '11': 100 },
          logprobs: true,
          top_logprobs: 20,
          seed: -7,
          stop: ['\n\n', 'END'],
          response_format: { type: 'json_schema', json_schema: { name: 'answer', strict: true, schema: { type: 'object', properties: {}, additionalProperties: false } } },
          web_search_options: { search_context_size: 'low', user_location: { type: 'approximate', approximate: { city: 'Paris' } } },
          user: 'user-1',
          safety_identifier: 'hash-of-user-1',
          prompt_cache_key: 'tenant-1',
        },
      ],
      ['tool_choice as a string, response_format json_object, stop as a string', { tools: [tool], tool_choice: 'required', response_format: { type: 'json_object' }, stop: 'END' }],
      ['the deprecated functions and function_call', { functions: [{ name: 'get_weather', parameters: { type: 'object', properties: {} } }], function_call: { name: 'get_weather' } }],
      ['the low bounds', { temperature: 0, top_p: 0, n: 1, frequency_penalty: -2, presence_penalty: -2, top_logprobs: 0, logprobs: true, max_tokens: 1 }],
      ['the high bounds', { temperature: 2, top_p: 1, n: 128, frequency_penalty: 2, presence_penalty: 2 }],
      [
        'null for every optional field',
        Object.fromEntries(
          ['stream', 'stream_options', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'n', 'frequency_penalty', 'presence_penalty', 'stop', 'seed', 'logprobs', 'top_logprobs', 'logit_bias', 'metadata', 'modalities', 'audio', 'prediction', 'store', 'service_tier', 'reasoning_effort', 'verbosity', 'safety_identifier', 'prompt_cache_key', 'tools', 'tool_choice', 'user'].map((field) => [field, null]),
        ),
      ],
      ['extras of a provider (vLLM)', { top_k: 40, min_p: 0.05, repetition_penalty: 1.1, guided_json: { type: 'object' }, chat_template_kwargs: { enable_thinking: false } }],
    ]
    for (const [what, extra] of chatBodies) sentAsIs(`chat: ${what}`, '/v1/chat/completions', { model: 'mock-gpt', messages, ...extra })

    const completionBodies: Array<[string, Record<string, unknown>]> = [
      ['a list of prompts', { prompt: ['Say hi', 'Say bye'] }],
      ['a prompt of token ids', { prompt: [1212, 318, 257, 1332] }],
      ['prompts of token ids', { prompt: [[1212, 318], [257, 1332]] }],
      ['a null prompt (a new document)', { prompt: null }],
      ['suffix, echo, best_of, logprobs', { prompt: 'def add(a, b):', suffix: '\n\nprint(add(1, 2))', echo: true, best_of: 3, n: 2, logprobs: 5, max_tokens: 4 }],
      ['null for the optional fields', { prompt: 'Say hi', ...Object.fromEntries(['stream', 'stream_options', 'max_tokens', 'temperature', 'top_p', 'n', 'best_of', 'echo', 'logprobs', 'suffix', 'stop', 'seed', 'logit_bias', 'frequency_penalty', 'presence_penalty'].map((f) => [f, null])) }],
    ]
    for (const [what, extra] of completionBodies) sentAsIs(`completions: ${what}`, '/v1/completions', { model: 'mock-gpt', ...extra })

    const embeddingBodies: Array<[string, Record<string, unknown>]> = [
      ['a string, with dimensions, float and a user', { input: 'alpha', dimensions: 8, encoding_format: 'float', user: 'user-1' }],
      ['token ids', { input: [1212, 318, 257] }],
      ['lists of token ids, as base64', { input: [[1212, 318], [257]], encoding_format: 'base64' }],
      ['null for the optional fields', { input: ['alpha', 'beta'], dimensions: null, encoding_format: null, user: null }],
    ]
    for (const [what, extra] of embeddingBodies) sentAsIs(`embeddings: ${what}`, '/v1/embeddings', { model: 'mock-embed', ...extra })

    test('a stream with stream_options null gets no usage chunk; include_obfuscation reaches the upstream', async () => {
      const plain = parseSse(await (await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages, max_tokens: 2, stream: true, stream_options: null })).text())
      expect(plain.done).toBe(true)
      expect((plain.events as Array<{ usage?: unknown }>).every((e) => e.usage === undefined || e.usage === null)).toBe(true)

      const options = { include_usage: true, include_obfuscation: false }
      const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages, max_tokens: 2, stream: true, stream_options: options })
      expect(parseSse(await res.text()).done).toBe(true)
      expect((upstream.stats.lastBody as { stream_options: unknown }).stream_options).toEqual(options)
    })

    test('the openai client, passing null where the SDK types allow it', async () => {
      const completion = await client.chat.completions.create({ model: 'mock-gpt', messages, max_tokens: null, temperature: null, n: null, stream: null, stop: null, seed: null })
      expect(completion.choices[0]?.message.content).toStartWith('This is a mock reply')
      expect(upstream.stats.lastBody).toMatchObject({ max_tokens: null, temperature: null, n: null, stream: null })
    })
  })

  test('streamed chat through the client: role, content pieces, finish, [DONE]', async () => {
    const stream = await client.chat.completions.create({ model: 'mock-gpt', messages, max_tokens: 4, stream: true })
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = []
    for await (const chunk of stream) chunks.push(chunk)
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('This is a mock')
    expect(chunks[0]?.choices[0]?.delta.role).toBe('assistant')
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('length')
    // Without include_usage, no chunk carries usage.
    expect(chunks.every((c) => c.usage === undefined || c.usage === null)).toBe(true)
    expect(chunks.length).toBe(6)
  })

  test('a stream with stream_options.include_usage ends with a usage chunk', async () => {
    const stream = await client.chat.completions.create({
      model: 'mock-gpt',
      messages,
      max_tokens: 3,
      stream: true,
      stream_options: { include_usage: true },
    })
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = []
    for await (const chunk of stream) chunks.push(chunk)
    const last = chunks.at(-1)
    expect(last?.choices).toEqual([])
    expect(last?.usage).toEqual({ prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 })
    expect(chunks.filter((c) => c.usage).length).toBe(1)
    expect((upstream.stats.lastBody as { stream_options: unknown }).stream_options).toEqual({ include_usage: true })
  })

  test('legacy completions', async () => {
    const completion = await client.completions.create({ model: 'mock-gpt', prompt: 'Say hi', max_tokens: 3 })
    expect(completion.object).toBe('text_completion')
    expect(completion.choices[0]?.text).toBe('This is a')
    expect(completion.usage?.completion_tokens).toBe(3)
    expect((upstream.stats.lastBody as { prompt: string }).prompt).toBe('Say hi')
  })

  test('embeddings (the client asks for base64 and decodes it)', async () => {
    const result = await client.embeddings.create({ model: 'mock-embed', input: ['alpha', 'beta'] })
    const expected = mockEmbeddings({ model: 'mock-embed', input: ['alpha', 'beta'] })
    expect(result.data.length).toBe(2)
    expect(result.model).toBe('mock-embed')
    expect(result.usage).toEqual(expected.usage)
    const first = expected.data[0]?.embedding as number[]
    expect(result.data[0]?.embedding.length).toBe(first.length)
    result.data[0]?.embedding.forEach((v, i) => expect(v).toBeCloseTo(first[i]!, 5))
    expect((upstream.stats.lastBody as { encoding_format?: string }).encoding_format).toBe('base64')
  })

  test('models list: every configured model, as an OpenAI list with next_cursor null', async () => {
    const ids: string[] = []
    for await (const model of client.models.list()) ids.push(model.id)
    expect(ids.sort()).toEqual(['house-model', 'mock-embed', 'mock-gpt'])

    const res = await fetch(`${gw.url}/v1/models`)
    expect(res.status).toBe(200)
    const body = (await res.json()) as { object: string; data: Array<Record<string, unknown>>; next_cursor: unknown }
    expect(body.object).toBe('list')
    expect(body.next_cursor).toBeNull()
    expect(body.data.length).toBe(3)
    for (const m of body.data) {
      expect(Object.keys(m).sort()).toEqual(['created', 'id', 'object', 'owned_by'])
      expect(m.object).toBe('model')
      expect(Number.isInteger(m.created)).toBe(true)
    }
    // The list is the gateway's own: the upstream is not asked.
    expect(upstream.stats.requests).toBe(0)
  })

  test('model retrieve', async () => {
    const model = await client.models.retrieve('house-model')
    expect(model.id).toBe('house-model')
    expect(model.object).toBe('model')
    expect(model.owned_by).toBe('sluice')
  })

  test('x-request-id is present, req_-prefixed and distinct on every kind of response', async () => {
    const responses = [
      await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages }),
      await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages, stream: true }),
      await fetch(`${gw.url}/v1/models`),
      await fetch(`${gw.url}/v1/models/mock-gpt`),
      await postJson(`${gw.url}/v1/chat/completions`, { model: 'nope', messages }),
      await postJson(`${gw.url}/v1/chat/completions`, '{not json'),
      await fetch(`${gw.url}/no/such/route`),
      await fetch(`${gw.url}/health`),
      await fetch(`${gw.url}/ready`),
      await fetch(`${gw.url}/swagger/json`),
      await fetch(`${gw.url}/swagger`),
    ]
    const ids = responses.map((r) => r.headers.get('x-request-id'))
    for (const [i, id] of ids.entries()) expect({ i, id }).toEqual({ i, id: expect.stringMatching(REQUEST_ID) })
    expect(new Set(ids).size).toBe(ids.length)
    expect(responses.map((r) => r.status)).toEqual([200, 200, 200, 200, 404, 400, 404, 200, 200, 200, 200])
    await Promise.all(responses.map((r) => r.arrayBuffer()))
  })
})

describe('a stream arrives chunk by chunk, not buffered', () => {
  // Lockstep, so no clock decides the outcome: this upstream sends the next content chunk only
  // once the client holds the one before. A gateway that buffered would hold the first chunk
  // until the stream ended; the upstream then waits in vain (WAIT_MS per chunk, so the test
  // still ends) and notes every chunk it had to send before the client saw the previous one.
  const PARTS = ['one ', 'two ', 'three ', 'four ', 'five']
  const WAIT_MS = 3000
  let upstream: ReturnType<typeof Bun.serve>
  let gw: TestGateway
  let seen: Array<PromiseWithResolvers<void>> = []
  let unseen: number[] = []

  function frame(delta: object, finish: string | null, extra: object = {}): Uint8Array {
    const chunk = { id: 'chatcmpl-lockstep', object: 'chat.completion.chunk', created: 0, model: 'mock-gpt', choices: [{ index: 0, delta, finish_reason: finish }], ...extra }
    return new TextEncoder().encode(`data: ${JSON.stringify(chunk)}\n\n`)
  }

  beforeAll(async () => {
    upstream = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      fetch: () =>
        new Response(
          new ReadableStream<Uint8Array>({
            async start(controller) {
              controller.enqueue(frame({ role: 'assistant', content: '' }, null))
              for (const [i, part] of PARTS.entries()) {
                controller.enqueue(frame({ content: part }, null))
                const arrived = await Promise.race([seen[i]!.promise.then(() => true), Bun.sleep(WAIT_MS).then(() => false)])
                if (!arrived) unseen.push(i)
              }
              controller.enqueue(frame({}, 'stop', { usage: { prompt_tokens: 3, completion_tokens: PARTS.length, total_tokens: 3 + PARTS.length } }))
              controller.enqueue(new TextEncoder().encode('data: [DONE]\n\n'))
              controller.close()
            },
          }),
          { headers: { 'content-type': 'text/event-stream' } },
        ),
    })
    gw = await startGateway(upstreamConfig(`http://127.0.0.1:${upstream.port}/v1`))
  })
  afterAll(async () => {
    await gw.close()
    upstream.stop(true)
  })

  test('each content chunk reaches the client before the upstream sends the next one', async () => {
    seen = PARTS.map(() => Promise.withResolvers<void>())
    unseen = []
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 })
    const stream = await client.chat.completions.create({ model: 'mock-gpt', messages, stream: true })
    const contents: string[] = []
    for await (const chunk of stream) {
      const content = chunk.choices[0]?.delta.content
      if (!content) continue
      seen[contents.length]?.resolve()
      contents.push(content)
    }
    expect(contents).toEqual(PARTS)
    expect(unseen).toEqual([])
  })
})

describe('the built-in mock provider, with no configuration at all', () => {
  test('an empty config serves mock-gpt from the built-in mock provider', async () => {
    const config = await loadConfig({ config: {}, env: { DATABASE_URL: 'sqlite::memory:', LOG_LEVEL: 'silent' } })
    expect(config.providers).toEqual([{ id: 'mock', type: 'mock', keys: [{ id: 'mock', secret: '' }] }])
    expect(config.models.map((m) => m.name)).toEqual(['mock-gpt'])
    expect(config.environment).toBe('dev')
    // The core is under test here, not the built-in plugins (auth would ask for a key).
    const gateway = await createGateway({ ...config, plugins: [] }, { logger: createLogger('silent') })
    const server = gateway.listen({ port: 0, hostname: '127.0.0.1' })
    try {
      const client = new OpenAI({ baseURL: `http://127.0.0.1:${server.port}/v1`, apiKey: 'unused', maxRetries: 0 })
      const completion = await client.chat.completions.create({ model: 'mock-gpt', messages, max_tokens: 4 })
      expect(completion.choices[0]?.message.content).toBe('This is a mock')
      expect(completion.model).toBe('mock-gpt')
      expect(completion.usage?.completion_tokens).toBe(4)

      const res = await postJson(`http://127.0.0.1:${server.port}/v1/chat/completions`, { model: 'mock-gpt', messages, max_tokens: 3, stream: true })
      const parsed = parseSse(await res.text())
      expect(parsed.done).toBe(true)
      expect((parsed.events as ChunkLike[]).map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('This is a')

      const models = await client.models.list()
      expect(models.data.map((m) => m.id)).toEqual(['mock-gpt'])
    } finally {
      await gateway.close()
    }
  })
})
