/**
 * What official clients saw go wrong through the translating adapters and the upstream error path
 * (a black-box hunt with the `openai` SDK): parameters dropped without a word, cache writes priced
 * as plain input, refusals that clients retried in vain, and an upstream's own error code lost.
 * A scripted upstream speaks each provider's wire format; the gateway listens on 127.0.0.1.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test'
import type { ConfigFile } from '../src/config/schema.ts'
import { definePlugin, type Usage } from '../src/plugin.ts'
import { SSE_KEEP_ALIVE } from '../src/providers/shared/sse-transform.ts'
import { parseSse } from './fixtures/mock-upstream.ts'
import { startGateway, type TestGateway } from './support/gateway.ts'
import { postJson, settledHooks, waitFor } from './support/http.ts'

type Json = Record<string, unknown>
type Script = (path: string, body: Json) => Response

const json = (body: unknown, status = 200): Response => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } })

const sse = (events: unknown[]): Response =>
  new Response(events.map((event) => `data: ${JSON.stringify(event)}\n\n`).join(''), { headers: { 'content-type': 'text/event-stream' } })

/** Anthropic's event stream: each event with its `event:` line, as the Messages API sends it. */
const anthropicSse = (events: Json[]): Response =>
  new Response(events.map((event) => `event: ${String(event.type)}\ndata: ${JSON.stringify(event)}\n\n`).join(''), { headers: { 'content-type': 'text/event-stream' } })

/** An upstream that answers what the test scripts, recording what it was sent. */
function scriptedUpstream() {
  const sent: Array<{ path: string; body: Json }> = []
  let script: Script = () => json({ error: 'no script' }, 500)
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    async fetch(request) {
      const body = (await request.json().catch(() => ({}))) as Json
      const path = new URL(request.url).pathname
      sent.push({ path, body })
      return script(path, body)
    },
  })
  return {
    url: `http://127.0.0.1:${server.port}`,
    sent,
    answer(next: Script) {
      script = next
    },
    stop: () => server.stop(true),
  }
}

const frames = (text: string) => parseSse(text.replaceAll(SSE_KEEP_ALIVE, '')).events as Json[]

describe('parameters the translating adapters cannot give', () => {
  const upstream = scriptedUpstream()
  let gw: TestGateway

  beforeAll(async () => {
    const config: ConfigFile & { plugins?: unknown[] } = {
      providers: [
        { id: 'an', type: 'anthropic', baseUrl: `${upstream.url}/anthropic`, keys: [{ id: 'an-1', secret: 'sk-ant-upstream-0123456789' }] },
        { id: 'gm', type: 'gemini', baseUrl: `${upstream.url}/gemini`, keys: [{ id: 'gm-1', secret: 'gm-upstream-0123456789' }] },
      ],
      models: [
        { name: 'claude', targets: [{ provider: 'an', model: 'claude-sonnet-4-5' }] },
        { name: 'gem', targets: [{ provider: 'gm', model: 'gemini-2.5-flash' }] },
      ],
      plugins: [],
    }
    gw = await startGateway(config)
  })
  afterAll(async () => {
    await gw.close()
    upstream.stop()
  })
  beforeEach(() => {
    upstream.sent.length = 0
  })

  const chat = (body: Json) => postJson(`${gw.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'hi' }], ...body })

  for (const model of ['claude', 'gem']) {
    test(`${model}: an audio answer (modalities with "audio") is refused naming modalities, before anything is sent`, async () => {
      const res = await chat({ model, modalities: ['text', 'audio'], audio: { voice: 'alloy', format: 'wav' } })
      expect(res.status).toBe(400)
      const { error } = (await res.json()) as { error: Json }
      expect(error).toMatchObject({ code: 'invalid_request', param: 'modalities', type: 'invalid_request_error' })
      expect(upstream.sent).toHaveLength(0)
    })

    test(`${model}: web_search_options is refused naming it; modalities ["text"] and a null web_search_options pass`, async () => {
      const res = await chat({ model, web_search_options: { search_context_size: 'low' } })
      expect(res.status).toBe(400)
      expect(((await res.json()) as { error: Json }).error).toMatchObject({ code: 'invalid_request', param: 'web_search_options' })
      expect(upstream.sent).toHaveLength(0)

      upstream.answer((path) =>
        path.startsWith('/anthropic')
          ? json({ id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [{ type: 'text', text: 'ok' }], stop_reason: 'end_turn', usage: { input_tokens: 3, output_tokens: 1 } })
          : json({ candidates: [{ content: { role: 'model', parts: [{ text: 'ok' }] }, finishReason: 'STOP', index: 0 }], usageMetadata: { promptTokenCount: 3, candidatesTokenCount: 1 } }),
      )
      const ok = await chat({ model, modalities: ['text'], web_search_options: null })
      expect(ok.status).toBe(200)
    })
  }

  const twoCalls = {
    content: { role: 'model', parts: [{ functionCall: { name: 'f', args: {} } }, { functionCall: { name: 'f', args: { again: true } } }] },
    finishReason: 'STOP',
    index: 0,
  }
  const tools = [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { again: { type: 'boolean' } } } } }]

  test('gem: parallel_tool_calls false gives only the first function call Gemini made (two without it)', async () => {
    upstream.answer(() => json({ candidates: [twoCalls], usageMetadata: { promptTokenCount: 5, candidatesTokenCount: 2 } }))
    const one = (await (await chat({ model: 'gem', tools, parallel_tool_calls: false })).json()) as { choices: Array<{ message: { tool_calls: Array<{ function: Json }> }; finish_reason: string }> }
    expect(one.choices[0]!.message.tool_calls.map((call) => call.function)).toEqual([{ name: 'f', arguments: '{}' }])
    expect(one.choices[0]!.finish_reason).toBe('tool_calls')
    const both = (await (await chat({ model: 'gem', tools })).json()) as { choices: Array<{ message: { tool_calls: unknown[] } }> }
    expect(both.choices[0]!.message.tool_calls).toHaveLength(2)
  })

  test('gem: parallel_tool_calls false streams only the first function call', async () => {
    upstream.answer(() => sse([{ candidates: [twoCalls], usageMetadata: { promptTokenCount: 5, candidatesTokenCount: 2 } }]))
    const res = await chat({ model: 'gem', tools, parallel_tool_calls: false, stream: true })
    const events = frames(await res.text())
    const calls = events.flatMap((e) => ((e.choices as Array<{ delta: { tool_calls?: Array<{ index: number }> } }>)[0]?.delta.tool_calls ?? []))
    expect(new Set(calls.map((call) => call.index))).toEqual(new Set([0]))
    expect(calls.some((call) => (call as { function?: { arguments?: string } }).function?.arguments === '{}')).toBe(true)
    const finish = events.map((e) => (e.choices as Array<{ finish_reason: string | null }>)[0]?.finish_reason).filter(Boolean)
    expect(finish).toEqual(['tool_calls'])
  })
})

describe('Anthropic prompt-cache writes are priced as Anthropic bills them', () => {
  const upstream = scriptedUpstream()
  const usages: Usage[] = []
  let gw: TestGateway
  const upstreamUsage = { input_tokens: 100, cache_creation_input_tokens: 10_000, cache_read_input_tokens: 0, output_tokens: 100 }

  beforeAll(async () => {
    const recorder = definePlugin({ name: 'test-usage', setup: () => ({ onUsage: (_req, usage) => void usages.push(usage) }) })
    gw = await startGateway({
      providers: [{ id: 'an', type: 'anthropic', baseUrl: upstream.url, keys: [{ id: 'an-1', secret: 'sk-ant-upstream-0123456789' }] }],
      models: [
        { name: 'claude', targets: [{ provider: 'an', model: 'claude-sonnet-4-5' }], pricing: { input: 3, output: 15 } },
        { name: 'claude-priced', targets: [{ provider: 'an', model: 'claude-sonnet-4-5' }], pricing: { input: 3, output: 15, cache_write_input: 6 } },
        { name: 'claude-hour', targets: [{ provider: 'an', model: 'claude-sonnet-4-5' }], pricing: { input: 3, output: 15, cache_write_1h_input: 9 } },
      ],
      plugins: [recorder],
    })
  })
  afterAll(async () => {
    await gw.close()
    upstream.stop()
  })
  beforeEach(async () => {
    await settledHooks(() => usages.length)
    usages.length = 0
  })

  const cached = { role: 'system', content: [{ type: 'text', text: 'a long system prompt', cache_control: { type: 'ephemeral' } }] }
  // 100 input at 3, 10,000 written at 1.25 x 3, 100 output at 15 (USD per million).
  const billed = (100 * 3 + 10_000 * 3.75 + 100 * 15) / 1e6

  test('non-streamed: 1.25 x input by default, cache_write_input when the model sets it; prompt_tokens still hold the writes', async () => {
    upstream.answer(() =>
      json({ id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [{ type: 'text', text: 'ok' }], stop_reason: 'end_turn', usage: upstreamUsage }),
    )
    const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'claude', messages: [cached, { role: 'user', content: 'hi' }] })
    const body = (await res.json()) as { usage: Json }
    expect(body.usage).toMatchObject({ prompt_tokens: 10_100, completion_tokens: 100, cache_creation_input_tokens: 10_000 })
    await waitFor(() => usages.length === 1, 'the usage hook')
    expect(usages[0]).toMatchObject({ promptTokens: 10_100, completionTokens: 100, source: 'provider' })
    expect(usages[0]!.costUsd).toBeCloseTo(billed, 10)

    await postJson(`${gw.url}/v1/chat/completions`, { model: 'claude-priced', messages: [cached, { role: 'user', content: 'hi' }] })
    await waitFor(() => usages.length === 2, 'the usage hook')
    expect(usages[1]!.costUsd).toBeCloseTo((100 * 3 + 10_000 * 6 + 100 * 15) / 1e6, 10)
  })

  test('streamed: the writes message_start reports are priced the same', async () => {
    upstream.answer(() =>
      anthropicSse([
        { type: 'message_start', message: { id: 'msg_2', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [], stop_reason: null, usage: { ...upstreamUsage, output_tokens: 1 } } },
        { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
        { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'ok' } },
        { type: 'content_block_stop', index: 0 },
        { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 100 } },
        { type: 'message_stop' },
      ]),
    )
    const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'claude', stream: true, messages: [cached, { role: 'user', content: 'hi' }] })
    expect(res.status).toBe(200)
    await res.text()
    await waitFor(() => usages.length === 1, 'the usage hook')
    expect(usages[0]).toMatchObject({ promptTokens: 10_100, completionTokens: 100, source: 'provider' })
    expect(usages[0]!.costUsd).toBeCloseTo(billed, 10)
  })

  // Of the 10,000 written, 6,000 to the 1-hour cache (cache_control ttl "1h"), which Anthropic bills at 2 x input.
  const hourUsage = { ...upstreamUsage, cache_creation: { ephemeral_5m_input_tokens: 4_000, ephemeral_1h_input_tokens: 6_000 } }
  const hourBilled = (100 * 3 + 4_000 * 3.75 + 6_000 * 6 + 100 * 15) / 1e6
  const hourCached = { role: 'system', content: [{ type: 'text', text: 'a long system prompt', cache_control: { type: 'ephemeral', ttl: '1h' } }] }

  test('1-hour cache writes cost 2 x input by default (cache_write_1h_input when set), streamed or not; the client sees the split', async () => {
    upstream.answer(() =>
      json({ id: 'msg_3', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [{ type: 'text', text: 'ok' }], stop_reason: 'end_turn', usage: hourUsage }),
    )
    const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'claude', messages: [hourCached, { role: 'user', content: 'hi' }] })
    const body = (await res.json()) as { usage: Json }
    expect(body.usage).toMatchObject({
      prompt_tokens: 10_100,
      cache_creation_input_tokens: 10_000,
      cache_creation: { ephemeral_5m_input_tokens: 4_000, ephemeral_1h_input_tokens: 6_000 },
    })
    await waitFor(() => usages.length === 1, 'the usage hook')
    expect(usages[0]!.costUsd).toBeCloseTo(hourBilled, 10)

    await postJson(`${gw.url}/v1/chat/completions`, { model: 'claude-hour', messages: [hourCached, { role: 'user', content: 'hi' }] })
    await waitFor(() => usages.length === 2, 'the usage hook')
    expect(usages[1]!.costUsd).toBeCloseTo((100 * 3 + 4_000 * 3.75 + 6_000 * 9 + 100 * 15) / 1e6, 10)

    upstream.answer(() =>
      anthropicSse([
        { type: 'message_start', message: { id: 'msg_4', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [], stop_reason: null, usage: { ...hourUsage, output_tokens: 1 } } },
        { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
        { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'ok' } },
        { type: 'content_block_stop', index: 0 },
        { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 100 } },
        { type: 'message_stop' },
      ]),
    )
    const streamed = await postJson(`${gw.url}/v1/chat/completions`, { model: 'claude', stream: true, stream_options: { include_usage: true }, messages: [hourCached, { role: 'user', content: 'hi' }] })
    expect(await streamed.text()).toContain('"cache_creation":{"ephemeral_5m_input_tokens":4000,"ephemeral_1h_input_tokens":6000}')
    await waitFor(() => usages.length === 3, 'the usage hook')
    expect(usages[2]!.costUsd).toBeCloseTo(hourBilled, 10)
  })
})

describe("an upstream's error as the client sees it", () => {
  const upstream = scriptedUpstream()
  let gw: TestGateway

  beforeAll(async () => {
    gw = await startGateway({
      providers: [
        { id: 'oa', type: 'openai', baseUrl: `${upstream.url}/openai/v1`, keys: [{ id: 'oa-1', secret: 'sk-upstream-oa-0123456789' }] },
        { id: 'an', type: 'anthropic', baseUrl: `${upstream.url}/anthropic`, keys: [{ id: 'an-1', secret: 'sk-ant-upstream-0123456789' }] },
        { id: 'gm', type: 'gemini', baseUrl: `${upstream.url}/gemini`, keys: [{ id: 'gm-1', secret: 'gm-upstream-0123456789' }] },
      ],
      models: [
        { name: 'gpt', targets: [{ provider: 'oa', model: 'gpt-4o' }] },
        { name: 'claude', targets: [{ provider: 'an', model: 'claude-sonnet-4-5' }] },
        { name: 'gem', targets: [{ provider: 'gm', model: 'gemini-2.5-flash' }] },
      ],
      plugins: [],
    })
  })
  afterAll(async () => {
    await gw.close()
    upstream.stop()
  })

  const ask = async (model: string) => {
    const res = await postJson(`${gw.url}/v1/chat/completions`, { model, messages: [{ role: 'user', content: 'hi' }] })
    return { status: res.status, error: ((await res.json()) as { error: Json }).error }
  }

  test("an OpenAI 4xx keeps its own code (context_length_exceeded), with its status, message and param", async () => {
    const message = "This model's maximum context length is 128000 tokens."
    upstream.answer(() => json({ error: { message, type: 'invalid_request_error', param: 'messages', code: 'context_length_exceeded' } }, 400))
    const { status, error } = await ask('gpt')
    expect(status).toBe(400)
    expect(error).toMatchObject({ code: 'context_length_exceeded', param: 'messages', type: 'invalid_request_error' })
    expect(String(error.message)).toContain(message)
  })

  test("a code that is no plain identifier, or none, gives the gateway's own", async () => {
    upstream.answer(() => json({ error: { message: 'bad', type: 'invalid_request_error', param: null, code: 'Not A Code!' } }, 400))
    expect((await ask('gpt')).error.code).toBe('invalid_request')
    upstream.answer(() => json({ error: { message: 'The model `gpt-x` does not exist', type: 'invalid_request_error', param: null, code: null } }, 404))
    expect(await ask('gpt')).toMatchObject({ status: 404, error: { code: 'model_not_found' } })
  })

  test("Anthropic's and Gemini's 4xx keep the gateway's codes (their error type and status are no codes)", async () => {
    upstream.answer(() => json({ type: 'error', error: { type: 'not_found_error', message: 'model: claude-x' } }, 404))
    expect(await ask('claude')).toMatchObject({ status: 404, error: { code: 'model_not_found' } })
    upstream.answer(() => json({ type: 'error', error: { type: 'invalid_request_error', message: 'messages.0.content: bad' } }, 400))
    expect(await ask('claude')).toMatchObject({ status: 400, error: { code: 'invalid_request' } })
    upstream.answer(() => json({ error: { code: 404, message: 'models/gemini-x is not found', status: 'NOT_FOUND' } }, 404))
    expect(await ask('gem')).toMatchObject({ status: 404, error: { code: 'model_not_found' } })
  })

  test("Anthropic's 529 is told as HTTP 529 in the 502's message", async () => {
    upstream.answer(() => json({ type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }, 529))
    const { status, error } = await ask('claude')
    expect(status).toBe(502)
    expect(error.code).toBe('upstream_error')
    expect(String(error.message)).toContain('(HTTP 529): Overloaded')
  })
})
