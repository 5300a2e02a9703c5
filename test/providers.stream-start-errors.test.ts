/**
 * Streams answered 200 whose first event is an error: the upstream failed before any content
 * (OpenAI's and Groq's `data: {"error": …}`, OpenRouter's after its processing comments, Gemini's
 * error object, as a `data:` line or bare). As the Anthropic adapter does for Claude's overloaded
 * stream, each is the HTTP error it stands for, answered before the client's stream starts: the
 * next key is tried, and a client the gateway cannot serve gets a status, not a 200 stream that
 * fails at once. An error after content has begun stays an event of the stream. Real HTTP on
 * 127.0.0.1; the upstreams are small Bun servers and the Gemini mock.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import OpenAI from 'openai'
import type { ConfigFile } from '../src/config/schema.ts'
import { startMockGemini, type MockGemini } from './fixtures/mock-gemini.ts'
import { startGateway, type TestGateway } from './support/gateway.ts'
import { drainStream, expectError, postJson } from './support/http.ts'

type Chunk = OpenAI.Chat.Completions.ChatCompletionChunk

const frame = (data: unknown) => `data: ${JSON.stringify(data)}\n\n`
const head = { id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'm' }
const chunk = (delta: Record<string, unknown>, finish: string | null = null) => frame({ ...head, choices: [{ index: 0, delta, finish_reason: finish }] })
const WHOLE = chunk({ role: 'assistant', content: '' }) + chunk({ content: 'Hello' }) + chunk({}, 'stop') + 'data: [DONE]\n\n'

/** What the failing key's stream starts with, by the model asked for. */
const FAILURES: Record<string, string> = {
  // OpenAI's own words for an overloaded server, as the SDKs raise them mid-stream.
  overloaded: frame({ error: { message: 'The server is overloaded. Please try again later.', type: 'server_error', param: null, code: 'server_is_overloaded' } }),
  // OpenRouter: comments while it waits, then the error with its HTTP status as `code` and a choice finishing on "error".
  openrouter:
    ': OPENROUTER PROCESSING\n\n: OPENROUTER PROCESSING\n\n' +
    frame({ ...head, error: { code: 502, message: 'Provider returned error' }, choices: [{ index: 0, delta: { content: '' }, finish_reason: 'error' }] }),
  limited: frame({ error: { message: 'Rate limit reached for requests', type: 'requests', param: null, code: 'rate_limit_exceeded' } }),
  // Groq's tool call the model botched: the request's failure, the client's to see with Groq's code.
  'tool-failed': frame({ error: { message: "Failed to call a function. Please adjust your prompt. See 'failed_generation' for more details.", type: 'invalid_request_error', code: 'tool_use_failed', failed_generation: '<function=x>' } }),
  // Content came first: the error stays in the stream.
  later: chunk({ role: 'assistant', content: '' }) + chunk({ content: 'Hel' }) + frame({ error: { message: 'The server had an error while processing your request.', type: 'server_error', param: null, code: null } }),
}

const GOOD = 'sk-upstream-good-0123456789'
const BAD = 'sk-upstream-bad-0123456789'

let upstream: ReturnType<typeof Bun.serve>
const requests: Record<string, number> = {}
let plain: TestGateway
let balanced: TestGateway

// The check is the provider's option (off by default: it reads each stream through a copy).
const config = (keys: { id: string; secret: string }[], plugins: unknown[], check = true): ConfigFile & { plugins?: unknown[] } => ({
  providers: [{ id: 'up', type: 'openai-compatible', baseUrl: `http://127.0.0.1:${upstream.port}/v1`, keys, ...(check ? { options: { stream_start_errors: true } } : {}) }],
  models: Object.keys(FAILURES).map((name) => ({ name, strategy: 'round-robin' as const, targets: [{ provider: 'up', model: name }] })),
  plugins,
})

beforeAll(async () => {
  upstream = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    async fetch(request) {
      const { model } = (await request.json()) as { model: string }
      const key = request.headers.get('authorization')?.slice(7) ?? ''
      requests[key] = (requests[key] ?? 0) + 1
      if (model === 'thinking') {
        // Headers at once (with a comment: Bun's server sends a stream's headers with its first bytes),
        // the first event only once the model has thought: past the gateway's wait for it.
        const body = new ReadableStream<Uint8Array>({
          async start(controller) {
            controller.enqueue(new TextEncoder().encode(': thinking\n\n'))
            await Bun.sleep(1500)
            controller.enqueue(new TextEncoder().encode(WHOLE))
            controller.close()
          },
        })
        return new Response(body, { headers: { 'content-type': 'text/event-stream' } })
      }
      return new Response(key === BAD ? FAILURES[model] : WHOLE, { headers: { 'content-type': 'text/event-stream' } })
    },
  })
  plain = await startGateway(config([{ id: 'bad', secret: BAD }], []))
  balanced = await startGateway(config([{ id: 'bad', secret: BAD }, { id: 'good', secret: GOOD }], [{ use: 'balance', options: { backoff_ms: 1, backoff_max_ms: 5 } }]))
})
afterAll(async () => {
  await plain?.close()
  await balanced?.close()
  upstream?.stop(true)
})

const stream = (gw: TestGateway, model: string) => postJson(`${gw.url}/v1/chat/completions`, { model, messages: [{ role: 'user', content: 'hi' }], stream: true })

describe('an OpenAI-compatible stream whose first event is an error', () => {
  test('is the HTTP error it stands for: a 502 for a server error (OpenAI, OpenRouter past its comments), a 429 for a rate limit', async () => {
    for (const [model, code, status, said] of [
      ['overloaded', 'upstream_error', 502, 'overloaded'],
      ['openrouter', 'upstream_error', 502, 'Provider returned error'],
      ['limited', 'rate_limit_exceeded', 429, ''],
    ] as const) {
      const error = await expectError(await stream(plain, model), code, status)
      expect(error.message).toContain(said)
    }
  })

  test('without options.stream_start_errors the stream goes to the client as it came (a 200 whose first event is the error)', async () => {
    const unchecked = await startGateway(config([{ id: 'bad', secret: BAD }], [], false))
    try {
      const res = await stream(unchecked, 'overloaded')
      expect(res.status).toBe(200)
      expect(await res.text()).toContain('"error"')
    } finally {
      await unchecked.close()
    }
  })

  test('options.stream_start_errors must be true or false', async () => {
    await expect(startGateway({ ...config([{ id: 'good', secret: GOOD }], []), providers: [{ id: 'up', type: 'openai-compatible', baseUrl: `http://127.0.0.1:${upstream.port}/v1`, keys: [{ id: 'good', secret: GOOD }], options: { stream_start_errors: 'yes' } }] })).rejects.toThrow('options.stream_start_errors must be true or false')
  })

  test("the request's own failure reaches the client with its status and the provider's code", async () => {
    const res = await stream(plain, 'tool-failed')
    expect(res.status).toBe(400)
    const body = (await res.json()) as { error: { code: string; message: string } }
    expect(body.error.code).toBe('tool_use_failed')
    expect(body.error.message).toContain('Failed to call a function')
  })

  test('is tried again on the next key: the client gets the whole answer', async () => {
    for (const model of ['overloaded', 'openrouter']) {
      const before = requests[BAD] ?? 0
      const client = new OpenAI({ baseURL: `${balanced.url}/v1`, apiKey: 'unused', maxRetries: 0 })
      // Round-robin: two requests, so one of them meets the failing key first whichever key starts.
      for (let i = 0; i < 2; i++) {
        const { seen, error } = await drainStream<Chunk>(await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], stream: true }))
        expect(error).toBeNull()
        expect(seen.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Hello')
      }
      expect(requests[BAD]! - before).toBeGreaterThan(0)
    }
  })

  test('a stream whose first event comes after the wait for it is passed on whole (a reasoning model is not cut for thinking)', async () => {
    // first_byte_ms 1000: the wait for the first event is at most half of it, the event comes at 1500 ms
    // (room to spare on a busy machine, where 60 and 150 ms were cut as a timeout once).
    const quick = await startGateway({
      providers: [{ id: 'up', type: 'openai-compatible', baseUrl: `http://127.0.0.1:${upstream.port}/v1`, keys: [{ id: 'good', secret: GOOD }], timeouts: { first_byte_ms: 1000 }, options: { stream_start_errors: true } }],
      models: [{ name: 'thinking', targets: [{ provider: 'up', model: 'thinking' }] }],
      plugins: [],
    })
    try {
      const res = await stream(quick, 'thinking')
      expect(res.status).toBe(200)
      const text = await res.text()
      expect(text).toStartWith(': thinking\n\n')
      expect(text).toContain('"content":"Hello"')
      expect(text).toEndWith('data: [DONE]\n\n')
    } finally {
      await quick.close()
    }
  })

  test('an error after content has begun stays an event of the 200 stream', async () => {
    const res = await stream(plain, 'later')
    expect(res.status).toBe(200)
    const text = await res.text()
    expect(text).toContain('"content":"Hel"')
    expect(text).toContain('The server had an error')
  })
})

describe('a Gemini stream whose first event is an error', () => {
  let mock: MockGemini
  let gemini: TestGateway
  let geminiBalanced: TestGateway
  const SECRET = 'AIzaSy-upstream-secret-0123456789abcdef'
  const geminiConfig = (secrets: string[], plugins: unknown[]): ConfigFile & { plugins?: unknown[] } => ({
    providers: [{ id: 'google', type: 'gemini', baseUrl: mock.url, keys: secrets.map((secret, i) => ({ id: `gm-${i}`, secret })) }],
    models: [{ name: 'gemini-test', targets: [{ provider: 'google', model: 'gemini-2.5-flash' }] }],
    plugins,
  })
  beforeAll(async () => {
    mock = await startMockGemini()
    gemini = await startGateway(geminiConfig([SECRET], []))
    geminiBalanced = await startGateway(geminiConfig([SECRET, `${SECRET}-2`], [{ use: 'balance', options: { backoff_ms: 1, backoff_max_ms: 5 } }]))
  })
  afterAll(async () => {
    await gemini?.close()
    await geminiBalanced?.close()
    await mock?.stop()
  })

  test('is the HTTP error it stands for, as a data: line or bare: a 502 for an overloaded model, a 429 for a spent quota', async () => {
    for (const bare of [false, true]) {
      for (const [status, code, gatewayStatus, said] of [[503, 'upstream_error', 502, 'overloaded'], [429, 'rate_limit_exceeded', 429, 'quota']] as const) {
        mock.setFailure({ status, atStart: true, bare, times: 1 })
        const res = await postJson(`${gemini.url}/v1/chat/completions`, { model: 'gemini-test', messages: [{ role: 'user', content: 'hi' }], stream: true })
        const error = await expectError(res, code, gatewayStatus)
        expect(error.message.toLowerCase()).toContain(said)
      }
    }
  })

  test('a first chunk that is only a malformed function call is a 502 before the stream starts, as outside a stream, and tried again', async () => {
    const malformed = {
      candidates: [{ content: { role: 'model', parts: [] }, finishReason: 'MALFORMED_FUNCTION_CALL', finishMessage: 'Malformed function call: print(get_weather(city="Paris"))', index: 0 }],
      usageMetadata: { promptTokenCount: 12, totalTokenCount: 12 },
      modelVersion: 'gemini-2.5-flash',
    }
    const body = { model: 'gemini-test', messages: [{ role: 'user', content: 'hi' }], stream: true }
    mock.setFailure({ status: 200, atStart: true, body: malformed, times: 1 })
    const error = await expectError(await postJson(`${gemini.url}/v1/chat/completions`, body), 'upstream_error', 502)
    expect(error.message).toContain('MALFORMED_FUNCTION_CALL')
    mock.setFailure({ status: 200, atStart: true, body: malformed, times: 1 })
    const client = new OpenAI({ baseURL: `${geminiBalanced.url}/v1`, apiKey: 'unused', maxRetries: 0 })
    const { seen, error: failed } = await drainStream<Chunk>(await client.chat.completions.create({ model: 'gemini-test', messages: [{ role: 'user', content: 'hi' }], stream: true }))
    expect(failed).toBeNull()
    expect(seen.at(-1)?.choices[0]?.finish_reason).toBe('stop')
  })

  test('is tried again on the next key: the client gets the whole answer', async () => {
    mock.setFailure({ status: 503, atStart: true, times: 1 })
    const before = mock.stats.requests
    const client = new OpenAI({ baseURL: `${geminiBalanced.url}/v1`, apiKey: 'unused', maxRetries: 0 })
    const { seen, error } = await drainStream<Chunk>(await client.chat.completions.create({ model: 'gemini-test', messages: [{ role: 'user', content: 'hi' }], stream: true }))
    expect(error).toBeNull()
    expect(seen.at(-1)?.choices[0]?.finish_reason).toBe('stop')
    expect(mock.stats.requests - before).toBe(2)
  })
})

describe('an Anthropic-format stream whose first event comes late (a proxy that sends message_start with the first token)', () => {
  test('is passed on whole once the wait for its first event is over, not cut as a timeout', async () => {
    const event = (type: string, data: Record<string, unknown>) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`
    const events =
      event('message_start', { message: { id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-x', content: [], stop_reason: null, usage: { input_tokens: 5, output_tokens: 1 } } }) +
      event('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }) +
      event('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'Hello' } }) +
      event('content_block_stop', { index: 0 }) +
      event('message_delta', { delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 2 } }) +
      event('message_stop', {})
    const server = Bun.serve({
      hostname: '127.0.0.1',
      port: 0,
      fetch: () =>
        new Response(
          new ReadableStream<Uint8Array>({
            async start(controller) {
              controller.enqueue(new TextEncoder().encode(': thinking\n\n'))
              // Past the wait for the first event (half of first_byte_ms), with room to spare on a busy machine.
              await Bun.sleep(1500)
              controller.enqueue(new TextEncoder().encode(events))
              controller.close()
            },
          }),
          { headers: { 'content-type': 'text/event-stream' } },
        ),
    })
    const gw = await startGateway({
      providers: [{ id: 'claude', type: 'anthropic', baseUrl: `http://127.0.0.1:${server.port}`, keys: [{ id: 'an-1', secret: 'sk-ant-upstream-0123456789' }], timeouts: { first_byte_ms: 1000 } }],
      models: [{ name: 'claude-test', targets: [{ provider: 'claude', model: 'claude-x' }] }],
      plugins: [],
    })
    try {
      const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'claude-test', messages: [{ role: 'user', content: 'hi' }], stream: true })
      expect(res.status).toBe(200)
      const text = await res.text()
      expect(text).toContain('"content":"Hello"')
      expect(text).toEndWith('data: [DONE]\n\n')
    } finally {
      await gw.close()
      server.stop(true)
    }
  })
})
