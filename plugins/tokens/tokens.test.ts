/**
 * The tokens plugin in a real gateway on 127.0.0.1: `POST /v1/tokens/count`, usage counted
 * with tiktoken when the provider reports none (streams, cut streams), cost from the config
 * and from the built-in table, and counting kept off the event loop. The upstreams are the
 * mock and, for answers without usage, a bare OpenAI-format server defined here.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test'
import type { Server } from 'bun'
import { roughPromptTokens } from '../../src/lib/usage.ts'
import { definePlugin, type GatewayRequest, type Usage } from '../../src/plugin.ts'
import { startMockUpstream, type MockUpstream } from '../../test/fixtures/mock-upstream.ts'
import { startAuthGateway, userWithKey, type AuthGateway } from '../../test/support/auth.ts'
import { startGateway as startTestGateway, type TestGateway } from '../../test/support/gateway.ts'
import { expectError, postJson, settledHooks, waitFor } from '../../test/support/http.ts'
import { BUILTIN_PRICES } from './prices.ts'

/** The cookbook's chat example: 124 tokens for gpt-4o (o200k_base), 129 for gpt-4 (cl100k_base). */
const COOKBOOK_MESSAGES = [
  { role: 'system', content: 'You are a helpful, pattern-following assistant that translates corporate jargon into plain English.' },
  { role: 'system', name: 'example_user', content: 'New synergies will help drive top-line growth.' },
  { role: 'system', name: 'example_assistant', content: 'Things working well together will increase revenue.' },
  { role: 'system', name: 'example_user', content: "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage." },
  { role: 'system', name: 'example_assistant', content: "Let's talk later when we're less busy about how to do better." },
  { role: 'user', content: "This late pivot means we don't have time to boil the ocean for the client deliverable." },
]
/** The cookbook's weather example: 101 with its tool for gpt-4o, 105 for gpt-4. */
const WEATHER = {
  messages: [
    { role: 'system', content: 'You are a helpful assistant that can answer to questions about the weather.' },
    { role: 'user', content: "What's the weather like in San Francisco?" },
  ],
  tools: [
    {
      type: 'function',
      function: {
        name: 'get_current_weather',
        description: 'Get the current weather in a given location',
        parameters: {
          type: 'object',
          properties: {
            location: { type: 'string', description: 'The city and state, e.g. San Francisco, CA' },
            unit: { type: 'string', description: 'The unit of temperature to return', enum: ['celsius', 'fahrenheit'] },
          },
          required: ['location'],
        },
      },
    },
  ],
}
/** The cookbook's sample sentence: 6 tokens in both o200k_base and cl100k_base. */
const ANSWER = ['tiktoken', ' is', ' great', '!']
const ANSWER_TOKENS = 6

/** Pieces the model `*-long` streams: with each event's JSON about 140 bytes, past the 4 MB of events the gateway keeps raw. */
const LONG_PIECES = 40_000

/**
 * An OpenAI-format upstream that never reports usage, whatever `stream_options` says. The
 * model `*-slow` streams 200 pieces 20 ms apart, for clients that go away; `*-long` streams
 * {@link LONG_PIECES} times " word" (one token each); `*-zeros` states a usage of all zeros in each chunk.
 */
function bareUpstream() {
  let requests = 0
  let lastBody: Record<string, unknown> | undefined
  let cancelled = 0
  // `*-zeros` puts a usage of all zeros in every chunk, as a server that does not count may.
  const chunk = (model: string, delta: Record<string, unknown>, finish: string | null = null) =>
    `data: ${JSON.stringify({ id: 'chatcmpl-bare', object: 'chat.completion.chunk', created: 0, model, choices: [{ index: 0, delta, finish_reason: finish }], ...(model.endsWith('-zeros') && { usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 } }) })}\n\n`
  const server: Server<unknown> = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    idleTimeout: 60,
    routes: {
      '/v1/chat/completions': {
        POST: async (req) => {
          requests++
          const body = (await req.json()) as Record<string, unknown>
          lastBody = body
          const model = String(body.model)
          if (body.stream !== true) {
            return Response.json({
              id: 'chatcmpl-bare',
              object: 'chat.completion',
              created: 0,
              model,
              choices: [{ index: 0, message: { role: 'assistant', content: ANSWER.join('') }, finish_reason: 'stop' }],
            })
          }
          const slow = model.endsWith('-slow')
          const pieces = slow ? Array.from({ length: 200 }, (_, i) => ` word${i}`) : model.endsWith('-long') ? Array.from({ length: LONG_PIECES }, () => ' word') : ANSWER
          const encoder = new TextEncoder()
          let closed = false
          const stream = new ReadableStream<Uint8Array>({
            async start(controller) {
              controller.enqueue(encoder.encode(chunk(model, { role: 'assistant', content: '' })))
              for (const piece of pieces) {
                if (closed) return
                if (slow) await Bun.sleep(20)
                if (closed) return
                controller.enqueue(encoder.encode(chunk(model, { content: piece })))
              }
              if (model.endsWith('-moonshot')) {
                // Moonshot's last chunk: its usage within the choice that finishes, not at the top.
                const usage = { prompt_tokens: 19, completion_tokens: 13, total_tokens: 32 }
                const last = { id: 'chatcmpl-bare', object: 'chat.completion.chunk', created: 0, model, choices: [{ index: 0, delta: {}, finish_reason: 'stop', usage }] }
                controller.enqueue(encoder.encode(`data: ${JSON.stringify(last)}\n\n`))
              } else if (model.endsWith('-groq')) {
                // Groq's last chunk: its usage (with its timings) under x_groq, beside the finish.
                const usage = { queue_time: 0.02, prompt_tokens: 23, prompt_time: 0.001, completion_tokens: 11, completion_time: 0.01, total_tokens: 34, total_time: 0.011 }
                const last = { id: 'chatcmpl-bare', object: 'chat.completion.chunk', created: 0, model, choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }], x_groq: { id: 'req_01', usage } }
                controller.enqueue(encoder.encode(`data: ${JSON.stringify(last)}\n\n`))
              } else controller.enqueue(encoder.encode(chunk(model, {}, 'stop')))
              controller.enqueue(encoder.encode('data: [DONE]\n\n'))
              controller.close()
            },
            cancel() {
              closed = true
              cancelled++
            },
          })
          return new Response(stream, { headers: { 'content-type': 'text/event-stream' } })
        },
      },
    },
    fetch: () => new Response('not found', { status: 404 }),
  })
  return {
    url: `http://127.0.0.1:${server.port}/v1`,
    get requests() {
      return requests
    },
    get lastBody() {
      return lastBody
    },
    get cancelled() {
      return cancelled
    },
    stop: () => server.stop(true),
  }
}

/** A configured pricing with prices per service tier. */
const TIERED = { input: 1, output: 2, service_tiers: { flex: { input: 0.5, output: 1 }, priority: { input: 3, output: 6 } } }

/** Records every usage event with the model the client asked for. */
function recorder() {
  const usages: Array<{ model: string | undefined; usage: Usage }> = []
  const plugin = definePlugin({
    name: 'test-usage-recorder',
    setup: () => ({ onUsage: (req: GatewayRequest, usage: Usage) => void usages.push({ model: req.model, usage }) }),
  })
  return { plugin, usages }
}

/** The tokens plugin's own counters (workers running and started, counts pending). */
const tokenStats = (gw: TestGateway) => (gw.gateway.plugins.find((p) => p.name === 'tokens')?.hooks.stats?.() ?? {}) as { workers?: number; started?: number; pending?: number }

/** A gateway with a fixed admin key (none is generated and printed). */
const startGateway = (cfg: Parameters<typeof startTestGateway>[0]) => startTestGateway(cfg, { env: { SLUICE_ADMIN_KEY: 'sluice-tokens-test-admin-key-0123456789' } })

const count = (gw: TestGateway, body: unknown, headers: Record<string, string> = {}) => postJson(`${gw.url}/v1/tokens/count`, body, headers)

let mock: MockUpstream
let bare: ReturnType<typeof bareUpstream>
beforeAll(async () => {
  mock = await startMockUpstream()
  bare = bareUpstream()
})
afterAll(async () => {
  await mock.stop()
  await bare.stop()
})

function config(plugins: unknown[]) {
  return {
    providers: [
      { id: 'mock', type: 'openai-compatible' as const, baseUrl: mock.url, keys: [{ id: 'm1', secret: 'sk-mock-upstream-0123456789' }] },
      { id: 'bare', type: 'openai-compatible' as const, baseUrl: bare.url, keys: [{ id: 'b1', secret: 'sk-bare-upstream-0123456789' }] },
    ],
    models: [
      { name: 'gpt-4o', targets: [{ provider: 'bare', model: 'gpt-4o' }] },
      { name: 'gpt-4', targets: [{ provider: 'bare', model: 'gpt-4-0613' }] },
      // An Azure-style deployment name the table cannot know: the group's name tells the encoding.
      { name: 'gpt-4-azure', targets: [{ provider: 'bare', model: 'prod-deployment' }] },
      { name: 'priced', pricing: { input: 1, output: 2 }, targets: [{ provider: 'bare', model: 'gpt-4o' }] },
      { name: 'gpt-4o-slow', targets: [{ provider: 'bare', model: 'gpt-4o-slow' }] },
      { name: 'gpt-4o-long', targets: [{ provider: 'bare', model: 'gpt-4o-long' }] },
      { name: 'kimi-moonshot', targets: [{ provider: 'bare', model: 'kimi-moonshot' }] },
      { name: 'llama-3.3-70b-groq', encoding: 'cl100k_base', targets: [{ provider: 'bare', model: 'llama-3.3-70b-groq' }] },
      { name: 'gpt-4o-zeros', targets: [{ provider: 'bare', model: 'gpt-4o-zeros' }] },
      { name: 'gpt-4o-mini', targets: [{ provider: 'mock', model: 'mock-gpt' }] },
      { name: 'gpt-5', targets: [{ provider: 'mock', model: 'mock-gpt' }] },
      { name: 'tiered', pricing: TIERED, targets: [{ provider: 'mock', model: 'mock-gpt' }] },
      { name: 'embed', targets: [{ provider: 'mock', model: 'text-embedding-3-small' }] },
      { name: 'local', encoding: 'cl100k_base', targets: [{ provider: 'mock', model: 'llama-3' }] },
    ],
    plugins,
  }
}

describe('POST /v1/tokens/count', () => {
  let gw: TestGateway
  beforeAll(async () => {
    gw = await startGateway(config(['tokens']))
  })
  afterAll(() => gw.close())
  beforeEach(() => mock.reset())

  test("a chat body: the cookbook's counts, by each model's encoding", async () => {
    const cases = [
      [{ model: 'gpt-4o', messages: COOKBOOK_MESSAGES }, 'o200k_base', 124],
      [{ model: 'gpt-4', messages: COOKBOOK_MESSAGES }, 'cl100k_base', 129],
      [{ model: 'gpt-4o', ...WEATHER }, 'o200k_base', 101],
      [{ model: 'gpt-4', ...WEATHER }, 'cl100k_base', 105],
      // A configured encoding for a model the table does not know.
      [{ model: 'local', messages: COOKBOOK_MESSAGES }, 'cl100k_base', 129],
    ] as const
    for (const [body, encoding, tokens] of cases) {
      const res = await count(gw, body)
      expect(res.status).toBe(200)
      expect(res.headers.get('x-request-id')).toStartWith('req_')
      expect(await res.json()).toEqual({ model: body.model, encoding, prompt_tokens: tokens })
    }
  })

  test("images by the model's rule: gpt-4o-mini's 2833 + 5667 a tile; a model without one of its own keeps gpt-4o's", async () => {
    // A remote image is taken as 1024×1024: 4 tiles at high detail. 'user' is 1 token in both encodings.
    const messages = [
      {
        role: 'user',
        content: [
          { type: 'image_url', image_url: { url: 'https://example.com/cat.png', detail: 'high' } },
          { type: 'image_url', image_url: { url: 'https://example.com/dog.png', detail: 'low' } },
        ],
      },
    ]
    const text = 3 + 1 + 3
    const cases = [
      ['gpt-4o-mini', 'o200k_base', 2833 + 4 * 5667 + 2833],
      ['gpt-4o', 'o200k_base', 85 + 4 * 170 + 85],
      ['gpt-4', 'cl100k_base', 85 + 4 * 170 + 85],
    ] as const
    for (const [model, encoding, images] of cases) {
      const res = await count(gw, { model, messages })
      expect(await res.json()).toEqual({ model, encoding, prompt_tokens: text + images })
    }
  })

  test('an embeddings body: strings are encoded, token arrays count their length', async () => {
    const text = await count(gw, { model: 'embed', input: ['hello world', 'tiktoken is great!'] })
    expect(await text.json()).toEqual({ model: 'embed', encoding: 'cl100k_base', prompt_tokens: 2 + 6 })
    const ids = await count(gw, { model: 'embed', input: [[1, 2, 3], [4]] })
    expect(await ids.json()).toEqual({ model: 'embed', encoding: 'cl100k_base', prompt_tokens: 4 })
  })

  test('never calls the upstream', async () => {
    await count(gw, { model: 'gpt-4o-mini', messages: COOKBOOK_MESSAGES })
    const before = bare.requests
    await count(gw, { model: 'gpt-4o', messages: COOKBOOK_MESSAGES })
    expect(mock.stats.requests).toBe(0)
    expect(bare.requests).toBe(before)
  })

  test('an unknown model is 404 model_not_found; a body that is neither shape is 400 naming the field', async () => {
    const notFound = await expectError(await count(gw, { model: 'no-such-model', messages: COOKBOOK_MESSAGES }), 'model_not_found')
    expect(notFound.param).toBe('model')
    expect((await expectError(await count(gw, { model: 'gpt-4o' }), 'invalid_request')).param).toBe('messages')
    // What it takes is said, for a body with neither or with both.
    const neither = await expectError(await count(gw, { model: 'gpt-4o', prompt: 'hi' }), 'invalid_request')
    expect(neither.message).toContain('a chat body (model, messages, tools?) or an embeddings body (model, input)')
    expect(neither.message).toContain('a completions prompt is not counted here')
    const both = await expectError(await count(gw, { model: 'gpt-4o', messages: COOKBOOK_MESSAGES, input: 'hi' }), 'invalid_request')
    expect(both.message).toContain('has both messages and input')
    expect((await expectError(await count(gw, { model: 'gpt-4o', messages: [] }), 'invalid_request')).param).toBe('messages')
    expect((await expectError(await count(gw, { model: 'gpt-4o', input: { text: 'x' } }), 'invalid_request')).param).toBe('input')
    expect((await expectError(await count(gw, { messages: COOKBOOK_MESSAGES }), 'invalid_request')).param).toBe('model')
  })

  test('special-token text is counted as text', async () => {
    const res = await count(gw, { model: 'gpt-4o', input: '<|endoftext|>' })
    expect(await res.json()).toEqual({ model: 'gpt-4o', encoding: 'o200k_base', prompt_tokens: 7 })
  })

  test('is in the OpenAPI document under OpenAI, with both body shapes', async () => {
    const doc = (await (await fetch(`${gw.url}/swagger/json`)).json()) as {
      paths: Record<string, Record<string, { tags?: string[]; requestBody?: { content: Record<string, { schema: { anyOf?: Array<{ required?: string[] }> } }> } }>>
    }
    const op = doc.paths['/v1/tokens/count']?.post
    expect(op?.tags).toEqual(['OpenAI'])
    const shapes = op?.requestBody?.content['application/json']?.schema.anyOf ?? []
    expect(shapes.map((s) => [...(s.required ?? [])].sort())).toEqual([
      ['messages', 'model'],
      ['input', 'model'],
    ])
  })
})

describe('POST /v1/tokens/count without the tokens plugin', () => {
  test('answers with the rough estimate and says so', async () => {
    const gw = await startGateway(config([]))
    try {
      const body = { model: 'gpt-4o', messages: COOKBOOK_MESSAGES }
      const res = await count(gw, body)
      expect(await res.json()).toEqual({ model: 'gpt-4o', encoding: 'estimate', prompt_tokens: roughPromptTokens(body) })
    } finally {
      await gw.close()
    }
  })
})

describe('POST /v1/tokens/count with auth', () => {
  let gw: AuthGateway
  beforeAll(async () => {
    gw = await startAuthGateway(mock.url, { config: { plugins: [{ use: 'auth', options: { demo_key: false } }, 'tokens'] } })
  })
  afterAll(() => gw.close())

  test('needs a key, the tokens scope, and the model allowed to the key', async () => {
    const body = { model: 'mock-gpt', messages: [{ role: 'user', content: 'hello' }] }
    await expectError(await count(gw, body), 'missing_api_key')
    const chatOnly = await userWithKey(gw, { scopes: ['chat'] })
    const refused = await count(gw, body, { authorization: `Bearer ${chatOnly.key.key}` })
    expect(refused.status).toBe(403)
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('insufficient_permissions')

    const counter = await userWithKey(gw, { scopes: ['tokens'], models: ['mock-gpt'] })
    const ok = await count(gw, body, { authorization: `Bearer ${counter.key.key}` })
    expect(ok.status).toBe(200)
    expect(await ok.json()).toEqual({ model: 'mock-gpt', encoding: 'o200k_base', prompt_tokens: 3 + 1 + 1 + 3 })
    const other = await count(gw, { ...body, model: 'other-gpt' }, { authorization: `Bearer ${counter.key.key}` })
    expect(other.status).toBe(403)
    expect(((await other.json()) as { error: { code: string } }).error.code).toBe('model_not_allowed')
  })
})

describe('usage the provider did not report', () => {
  let gw: TestGateway
  const rec = recorder()
  beforeAll(async () => {
    gw = await startGateway(config(['tokens', rec.plugin]))
  })
  afterAll(() => gw.close())
  beforeEach(async () => {
    await settledHooks(() => rec.usages.length)
    rec.usages.length = 0
  })

  const priceOf = (prompt: number, completion: number, p: { input: number; output: number }) => (prompt * p.input + completion * p.output) / 1_000_000

  test('a stream without a usage chunk is counted exactly: source "estimated", tiktoken counts, built-in price', async () => {
    const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'gpt-4o', messages: COOKBOOK_MESSAGES, stream: true })
    const text = await res.text()
    expect(text).toContain('"content":" great"')
    expect(text).not.toContain('"usage"')
    // The gateway asked for usage; this upstream ignores the request.
    expect((bare.lastBody?.stream_options as Record<string, unknown>).include_usage).toBe(true)
    await waitFor(() => rec.usages.length === 1, 'onUsage')
    const { usage } = rec.usages[0]!
    expect(usage).toEqual({
      promptTokens: 124,
      completionTokens: ANSWER_TOKENS,
      cachedTokens: 0,
      totalTokens: 124 + ANSWER_TOKENS,
      costUsd: priceOf(124, ANSWER_TOKENS, BUILTIN_PRICES['gpt-4o']),
      source: 'estimated',
    })
  })

  test('a long stream without a usage chunk is counted to its end, past the events kept as they came', async () => {
    const text = await (await postJson(`${gw.url}/v1/chat/completions`, { model: 'gpt-4o-long', messages: COOKBOOK_MESSAGES, stream: true })).text()
    expect(text.length).toBeGreaterThan(5_000_000)
    await waitFor(() => rec.usages.length === 1, 'onUsage')
    expect(rec.usages[0]!.usage).toMatchObject({ promptTokens: 124, completionTokens: LONG_PIECES, source: 'estimated' })
  })

  test('the upstream model decides the encoding and the price (gpt-4-0613: cl100k_base, gpt-4 prices)', async () => {
    await (await postJson(`${gw.url}/v1/chat/completions`, { model: 'gpt-4', messages: COOKBOOK_MESSAGES, stream: true })).text()
    await waitFor(() => rec.usages.length === 1, 'onUsage')
    expect(rec.usages[0]!.usage).toMatchObject({ promptTokens: 129, completionTokens: ANSWER_TOKENS, costUsd: priceOf(129, ANSWER_TOKENS, BUILTIN_PRICES['gpt-4']), source: 'estimated' })
  })

  test('an upstream name the table does not know: counted by the group name, as /v1/tokens/count counts it', async () => {
    const counted = (await (await count(gw, { model: 'gpt-4-azure', messages: COOKBOOK_MESSAGES })).json()) as { encoding: string; prompt_tokens: number }
    expect(counted).toMatchObject({ encoding: 'cl100k_base', prompt_tokens: 129 })
    await (await postJson(`${gw.url}/v1/chat/completions`, { model: 'gpt-4-azure', messages: COOKBOOK_MESSAGES, stream: true })).text()
    await waitFor(() => rec.usages.length === 1, 'onUsage')
    expect(rec.usages[0]!.usage).toMatchObject({ promptTokens: counted.prompt_tokens, completionTokens: ANSWER_TOKENS, source: 'estimated' })
  })

  test('a plain answer without usage, with tools: counted the same way', async () => {
    const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'gpt-4o', ...WEATHER })
    expect(res.status).toBe(200)
    await res.text()
    await waitFor(() => rec.usages.length === 1, 'onUsage')
    expect(rec.usages[0]!.usage).toMatchObject({ promptTokens: 101, completionTokens: ANSWER_TOKENS, source: 'estimated' })
  })

  test("the config's pricing wins over the built-in table", async () => {
    await (await postJson(`${gw.url}/v1/chat/completions`, { model: 'priced', messages: COOKBOOK_MESSAGES, stream: true })).text()
    await waitFor(() => rec.usages.length === 1, 'onUsage')
    expect(rec.usages[0]!.usage.costUsd).toBe(priceOf(124, ANSWER_TOKENS, { input: 1, output: 2 }))
  })

  test('a stream the client cuts halfway still produces a usage event, the prompt counted exactly', async () => {
    const controller = new AbortController()
    const cancelledBefore = bare.cancelled
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-slow', messages: COOKBOOK_MESSAGES, stream: true }),
      signal: controller.signal,
    })
    const reader = res.body!.getReader()
    const decoder = new TextDecoder()
    let seen = ''
    while (!seen.includes(' word3')) {
      const { value, done } = await reader.read()
      if (done) throw new Error('the stream ended before the client went away')
      seen += decoder.decode(value, { stream: true })
    }
    controller.abort()
    await waitFor(() => rec.usages.length === 1, 'onUsage after the cut')
    await waitFor(() => bare.cancelled === cancelledBefore + 1, 'the upstream stream cancelled')
    const { usage } = rec.usages[0]!
    expect(usage.source).toBe('estimated')
    expect(usage.promptTokens).toBe(124)
    // At least the four words the client saw (" word0" … " word3": 2 tokens each), far fewer than all 200.
    expect(usage.completionTokens).toBeGreaterThanOrEqual(8)
    expect(usage.completionTokens).toBeLessThan(200)
  })
})

describe('usage the provider reported', () => {
  let gw: TestGateway
  const rec = recorder()
  beforeAll(async () => {
    gw = await startGateway(config(['tokens', rec.plugin]))
  })
  afterAll(() => gw.close())

  test('is taken as it is (source "provider"), priced from the built-in table, and loads no encoder', async () => {
    const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello there' }], stream: true })
    await res.text()
    await waitFor(() => rec.usages.length === 1, 'onUsage')
    const plain = await postJson(`${gw.url}/v1/chat/completions`, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello there' }] })
    await plain.text()
    await waitFor(() => rec.usages.length === 2, 'onUsage')
    for (const { usage } of rec.usages) {
      expect(usage.source).toBe('provider')
      const p = BUILTIN_PRICES['gpt-4o-mini']
      expect(usage.costUsd).toBeCloseTo((usage.promptTokens * p.input + usage.completionTokens * p.output) / 1_000_000, 15)
    }
    // Quota-style reservations estimate by default, so nothing here needed the counting worker.
    expect(tokenStats(gw)).toEqual({ workers: 0, started: 0, pending: 0 })
  })
})

/** A plugin that reads every stream event, so the gateway reads each as it comes instead of holding the stream to its end. */
const streamReader = definePlugin({ name: 'test-stream-reader', setup: () => ({ onStreamChunk: () => undefined }) })
/** The two ways the gateway reads a stream for its usage, and the plugins that make it read each. */
const STREAM_READS = [
  ['held to its end', []],
  ['read event by event', [streamReader]],
] as const

describe("service tiers (OpenAI's service_tier: flex, priority)", () => {
  const rec = recorder()
  const gateways: TestGateway[] = []
  afterAll(async () => {
    for (const gw of gateways) await gw.close()
  })
  const cost = (u: Usage, p: { input: number; output: number }) => (u.promptTokens * p.input + u.completionTokens * p.output) / 1_000_000

  for (const [how, plugins] of [['as a JSON answer', []], ...STREAM_READS] as const) {
    test(`are priced at the tier the answer reports, the built-in table's and a configured one's, ${how}`, async () => {
      const gw = await startGateway(config(['tokens', rec.plugin, ...plugins]))
      gateways.push(gw)
      const gpt5 = BUILTIN_PRICES['gpt-5']
      const cases = [
        ['gpt-5', undefined, gpt5],
        ['gpt-5', 'auto', gpt5],
        ['gpt-5', 'default', gpt5],
        ['gpt-5', 'flex', gpt5.service_tiers.flex],
        ['gpt-5', 'priority', gpt5.service_tiers.priority],
        ['tiered', 'flex', TIERED.service_tiers.flex],
        ['tiered', 'priority', TIERED.service_tiers.priority],
        ['tiered', 'auto', TIERED],
        // A model whose prices know no tiers: the one it has.
        ['gpt-4o-mini', 'flex', BUILTIN_PRICES['gpt-4o-mini']],
      ] as const
      for (const [model, tier, prices] of cases) {
        rec.usages.length = 0
        const stream = how !== 'as a JSON answer'
        const res = await postJson(`${gw.url}/v1/chat/completions`, { model, messages: [{ role: 'user', content: 'hello there' }], stream, ...(tier && { service_tier: tier }) })
        const text = await res.text()
        // The mock answers as OpenAI does, with the tier that served ("auto" is "default").
        if (tier) expect(text).toContain(`"service_tier":"${tier === 'auto' ? 'default' : tier}"`)
        await waitFor(() => rec.usages.length === 1, 'onUsage')
        const { usage } = rec.usages[0]!
        expect({ model, tier, source: usage.source, cost: usage.costUsd }).toEqual({ model, tier, source: 'provider', cost: expect.closeTo(cost(usage, prices), 15) })
      }
    })
  }

  test('the answer decides, not the request: priority asked and standard served costs standard; flex served unasked costs flex', async () => {
    const served: Record<string, string> = { flex: 'flex', priority: 'default' }
    const upstream = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      fetch: async (req) => {
        const body = (await req.json()) as { service_tier?: string; stream?: boolean }
        const tier = served[body.service_tier ?? 'flex']
        const usage = { prompt_tokens: 1_000, completion_tokens: 100, total_tokens: 1_100 }
        const head = { id: 'chatcmpl-t', created: 0, model: 'gpt-5-2025-08-07', service_tier: tier, system_fingerprint: null }
        if (!body.stream) return Response.json({ ...head, object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }], usage })
        const chunk = (fields: object) => `data: ${JSON.stringify({ ...head, object: 'chat.completion.chunk', ...fields })}\n\n`
        const text = chunk({ choices: [{ index: 0, delta: { content: 'ok' }, finish_reason: 'stop' }], usage: null }) + chunk({ choices: [], usage }) + 'data: [DONE]\n\n'
        return new Response(text, { headers: { 'content-type': 'text/event-stream' } })
      },
    })
    try {
      const gw = await startGateway({
        providers: [{ id: 'oa', type: 'openai' as const, baseUrl: `http://127.0.0.1:${upstream.port}/v1`, keys: [{ id: 'o1', secret: 'sk-openai-upstream-0123456789' }] }],
        models: [{ name: 'gpt-5', targets: [{ provider: 'oa', model: 'gpt-5-2025-08-07' }] }],
        plugins: ['tokens', rec.plugin],
      })
      gateways.push(gw)
      const prices = BUILTIN_PRICES['gpt-5']
      for (const stream of [false, true]) {
        for (const [asked, expected] of [['priority', prices], [undefined, prices.service_tiers.flex]] as const) {
          rec.usages.length = 0
          await (await postJson(`${gw.url}/v1/chat/completions`, { model: 'gpt-5', messages: [{ role: 'user', content: 'hi' }], stream, ...(asked && { service_tier: asked }) })).text()
          await waitFor(() => rec.usages.length === 1, 'onUsage')
          expect({ stream, asked, cost: rec.usages[0]!.usage.costUsd }).toEqual({ stream, asked, cost: expect.closeTo((1_000 * expected.input + 100 * expected.output) / 1e6, 15) })
        }
      }
    } finally {
      await upstream.stop(true)
    }
  })

  test('a usage the gateway counts itself (none reported) is priced at the tier the request asked for', async () => {
    const gw = await startGateway({ ...config(['tokens', rec.plugin]), models: [{ name: 'gpt-5', targets: [{ provider: 'bare', model: 'gpt-5' }] }] })
    gateways.push(gw)
    rec.usages.length = 0
    await (await postJson(`${gw.url}/v1/chat/completions`, { model: 'gpt-5', messages: COOKBOOK_MESSAGES, stream: true, service_tier: 'flex' })).text()
    await waitFor(() => rec.usages.length === 1, 'onUsage')
    const { usage } = rec.usages[0]!
    expect(usage.source).toBe('estimated')
    expect(usage.costUsd).toBeCloseTo(cost(usage, BUILTIN_PRICES['gpt-5'].service_tiers.flex), 15)
  })
})

/** A stream of `model` from a gateway with the tokens plugin and `plugins`: its text and the one usage recorded. */
async function streamUsage(model: string, plugins: readonly unknown[]): Promise<{ text: string; usage: Usage }> {
  const rec = recorder()
  const gw = await startGateway(config(['tokens', rec.plugin, ...plugins]))
  try {
    const res = await postJson(`${gw.url}/v1/chat/completions`, { model, messages: COOKBOOK_MESSAGES, stream: true })
    const text = await res.text()
    await waitFor(() => rec.usages.length === 1, 'onUsage')
    return { text, usage: rec.usages[0]!.usage }
  } finally {
    await gw.close()
  }
}

describe("usage within the finishing choice (Moonshot's streams)", () => {
  for (const [how, plugins] of STREAM_READS) {
    test(`is the provider's usage, the stream ${how}`, async () => {
      const { text, usage } = await streamUsage('kimi-moonshot', plugins)
      expect(text).toContain('"usage":{"prompt_tokens":19')
      expect(usage).toMatchObject({ promptTokens: 19, completionTokens: 13, totalTokens: 32, source: 'provider' })
    })
  }
})

describe("usage under x_groq in the finishing chunk (Groq's streams)", () => {
  for (const [how, plugins] of STREAM_READS) {
    test(`is the provider's usage, the stream ${how}`, async () => {
      const { text, usage } = await streamUsage('llama-3.3-70b-groq', plugins)
      expect(text).toContain('"x_groq":{"id":"req_01","usage":{')
      expect(usage).toMatchObject({ promptTokens: 23, completionTokens: 11, totalTokens: 34, source: 'provider' })
    })
  }
})

describe('a usage of all zeros in every chunk (a server that does not count)', () => {
  for (const [how, plugins] of STREAM_READS) {
    test(`is no usage, and the completion is counted from those chunks' text, the stream ${how}`, async () => {
      const { text, usage } = await streamUsage('gpt-4o-zeros', plugins)
      expect(text).toContain('great')
      expect(usage).toMatchObject({ promptTokens: 124, completionTokens: ANSWER_TOKENS, source: 'estimated' })
    })
  }
})

describe('counting a large prompt', () => {
  let gw: TestGateway
  beforeAll(async () => {
    gw = await startGateway(config(['tokens']))
    // Warm the worker and the encoder first: the point is the counting itself.
    await count(gw, { model: 'gpt-4o', messages: [{ role: 'user', content: 'warm up' }] })
  })
  afterAll(() => gw.close())

  test('happens off the main thread: a timer keeps firing while 1 MB is counted', async () => {
    const words = 'the quick brown fox jumps over the lazy dog while a gateway counts its tokens'.split(' ')
    let content = ''
    for (let i = 0; content.length < 1_000_000; i++) content += words[i % words.length] + (i % 19 === 18 ? '.\n' : ' ')
    const body = JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content }] })

    let last = performance.now()
    let maxGap = 0
    const timer = setInterval(() => {
      const now = performance.now()
      maxGap = Math.max(maxGap, now - last)
      last = now
    }, 2)
    const started = performance.now()
    const res = await count(gw, body)
    const took = performance.now() - started
    clearInterval(timer)

    const answer = (await res.json()) as { prompt_tokens: number }
    expect(answer.prompt_tokens).toBeGreaterThan(200_000)
    // tiktoken needs a few hundred ms for 1 MB; the loop never waited more than a small part of that.
    expect(took).toBeGreaterThan(100)
    expect(maxGap).toBeLessThan(Math.max(50, took / 4))
  })
})
