/**
 * OpenAI-compatible servers that refuse `stream_options` (the gateway adds
 * `stream_options.include_usage` to every stream some plugin reads the usage of): with the
 * provider's `options.stream_usage: false` the field is not sent, the stream goes through and its
 * usage is counted by estimate; without it such a server's refusal reaches the client. A bad value
 * stops the boot. The upstream is a small Bun server that answers 400 to a body carrying
 * `stream_options`, as such servers do. Real HTTP on 127.0.0.1.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { definePlugin, type Usage } from '../src/plugin.ts'
import { startGateway, type TestGateway } from './support/gateway.ts'
import { expectError, settledHooks, streamedText } from './support/http.ts'

const enc = new TextEncoder()
const frame = (delta: Record<string, unknown>, finish: string | null = null) =>
  `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'strict', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`

const REFUSAL = "I'm sorry, but I can't help with that request, as it asks for something I must not provide."
const REASONING = 'The user greets me, so a short and friendly greeting back is what fits here best of all.'
let strict: ReturnType<typeof Bun.serve>
const bodies: Record<string, unknown>[] = []
const usages: Usage[] = []
const recorder = definePlugin({ name: 'usage-recorder', setup: () => ({ onUsage: (_req, usage) => void usages.push(usage) }) })
let gw: TestGateway
const QUIET = { env: { SLUICE_ADMIN_KEY: 'sluice-admin-test-only-0123456789' } }

const config = (options?: Record<string, unknown>) => ({
  providers: [
    { id: 'strict', type: 'openai-compatible' as const, baseUrl: `http://127.0.0.1:${strict.port}/v1`, keys: [{ id: 'k1', secret: 'sk-upstream-0123456789' }], ...(options ? { options } : {}) },
  ],
  models: [{ name: 'strict', targets: [{ provider: 'strict', model: 'strict' }] }],
  plugins: [recorder],
})

beforeAll(async () => {
  strict = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    async fetch(request) {
      const body = (await request.json()) as Record<string, unknown>
      bodies.push(body)
      if ('stream_options' in body) {
        return Response.json({ error: { message: 'stream_options: Extra inputs are not permitted', type: 'invalid_request_error', param: 'stream_options', code: null } }, { status: 400 })
      }
      // Asked to "think", it shows its reasoning first, as DeepSeek and vLLM do, and reports no usage either way.
      const thinks = JSON.stringify(body.messages).includes('think')
      // Asked for what it will not do, it refuses as OpenAI's structured outputs do: the text in `refusal`, content null.
      if (JSON.stringify(body.messages).includes('forbidden')) {
        if (body.stream !== true) {
          const message = { role: 'assistant', content: null, refusal: REFUSAL }
          return Response.json({ id: 'c1', object: 'chat.completion', created: 1, model: 'strict', choices: [{ index: 0, message, finish_reason: 'stop' }] })
        }
        const text = frame({ role: 'assistant', content: null, refusal: '' }) + frame({ refusal: REFUSAL.slice(0, 30) }) + frame({ refusal: REFUSAL.slice(30) }) + frame({}, 'stop') + 'data: [DONE]\n\n'
        return new Response(enc.encode(text), { headers: { 'content-type': 'text/event-stream' } })
      }
      if (body.stream !== true) {
        const message = { role: 'assistant', content: 'four words of text', ...(thinks ? { reasoning_content: REASONING } : {}) }
        return Response.json({ id: 'c1', object: 'chat.completion', created: 1, model: 'strict', choices: [{ index: 0, message, finish_reason: 'stop' }] })
      }
      const reasoning = thinks ? frame({ role: 'assistant', reasoning_content: REASONING.slice(0, 20) }) + frame({ reasoning: REASONING.slice(20) }) : ''
      const text = reasoning + frame({ role: 'assistant', content: 'four words of text' }) + frame({}, 'stop') + 'data: [DONE]\n\n'
      return new Response(enc.encode(text), { headers: { 'content-type': 'text/event-stream' } })
    },
  })
})
afterAll(async () => {
  await gw?.close()
  strict?.stop(true)
})

const streamChat = (url: string, extra: Record<string, unknown> = {}) =>
  fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'strict', messages: [{ role: 'user', content: 'hi' }], stream: true, ...extra }),
  })

describe('a provider that refuses stream_options', () => {
  test('without stream_usage: false, the gateway sends it and the server refuses the stream', async () => {
    const plain = await startGateway(config(), QUIET)
    try {
      const error = await expectError(await streamChat(plain.url), 'invalid_request', 400)
      expect(error.message).toContain('stream_options')
      expect(bodies.at(-1)).toHaveProperty('stream_options', { include_usage: true })
    } finally {
      await plain.close()
    }
  })

  test('with stream_usage: false, no stream_options goes upstream; the stream passes and its usage is estimated', async () => {
    gw = await startGateway(config({ stream_usage: false }), QUIET)
    usages.length = 0
    for (const extra of [{}, { stream_options: { include_usage: true } }]) {
      const res = await streamChat(gw.url, extra)
      expect(res.status).toBe(200)
      const text = await res.text()
      expect(text).toContain('[DONE]')
      const chunks = text.split('\n\n').filter((f) => f.startsWith('data: {')).map((f) => JSON.parse(f.slice(6)))
      expect(streamedText(chunks)).toBe('four words of text')
      expect(bodies.at(-1)).not.toHaveProperty('stream_options')
    }
    await settledHooks(() => usages.length)
    expect(usages).toHaveLength(2)
    for (const usage of usages) {
      expect(usage.source).toBe('estimated')
      expect(usage.completionTokens).toBeGreaterThan(0)
    }
  })

  test('the estimate counts the reasoning a server shows (reasoning_content, reasoning) as completion tokens', async () => {
    const estimate = async (content: string, stream: boolean): Promise<number> => {
      usages.length = 0
      const res = await fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'strict', messages: [{ role: 'user', content }], stream }),
      })
      expect(res.status).toBe(200)
      await res.arrayBuffer()
      await settledHooks(() => usages.length)
      expect(usages[0]?.source).toBe('estimated')
      return usages[0]?.completionTokens ?? 0
    }
    for (const stream of [true, false]) {
      const plain = await estimate('hi', stream)
      const reasoned = await estimate('think', stream)
      // The same answer; the reasoning's own words on top (about a token a word here).
      expect(reasoned - plain).toBeGreaterThanOrEqual(REASONING.split(' ').length - 2)
    }
  })

  test('the estimate counts a refusal (OpenAI\'s `refusal`, content null) as completion tokens, streamed or not', async () => {
    for (const stream of [true, false]) {
      usages.length = 0
      const res = await fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'strict', messages: [{ role: 'user', content: 'something forbidden' }], stream }),
      })
      expect(res.status).toBe(200)
      await res.arrayBuffer()
      await settledHooks(() => usages.length)
      expect(usages[0]?.source).toBe('estimated')
      // About a token a word: the refusal's words were generated and are billed as such.
      expect(usages[0]?.completionTokens ?? 0).toBeGreaterThanOrEqual(REFUSAL.split(' ').length - 2)
    }
  })

  test('a non-streaming call is sent as it came', async () => {
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'strict', messages: [{ role: 'user', content: 'hi' }] }),
    })
    await res.arrayBuffer()
    expect(bodies.at(-1)).toMatchObject({ model: 'strict', messages: [{ role: 'user', content: 'hi' }] })
  })

  test('stream_usage that is not a boolean stops the boot, naming the provider and the option', async () => {
    const failed = await startGateway(config({ stream_usage: 'no' }), QUIET).then(
      async (booted) => {
        await booted.close()
        return null
      },
      (error: unknown) => error,
    )
    expect(String(failed)).toContain('provider "strict": options.stream_usage must be true or false')
  })
})
