/**
 * A stream whose upstream fails after its 200 ends on an error event (OpenAI's
 * `data: {"error": …}`, which every adapter writes for a failure mid-stream). The client sees the
 * event; the completion hooks (logging, metrics) must hear the request as the failure it was, with
 * the event's code, not as a success. Both ways a stream is read: mirrored (the client asked for
 * the usage chunk itself) and tapped (the gateway hides the usage chunk it asked for).
 * The upstream is a small Bun server; real HTTP on 127.0.0.1.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { definePlugin, type Outcome } from '../src/plugin.ts'
import { startGateway, upstreamConfig, type TestGateway } from './support/gateway.ts'
import { settledHooks } from './support/http.ts'

const frame = (data: unknown) => `data: ${JSON.stringify(data)}\n\n`
const chunk = (text: string) => frame({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content: text }, finish_reason: null }] })

/** A chunk carrying the usage so far, as servers that count on every chunk send it (vLLM's continuous_usage_stats). */
const counted = (text: string, completion: number, reason: string | null = null) =>
  frame({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content: text }, finish_reason: reason }], usage: { prompt_tokens: 5, completion_tokens: completion, total_tokens: 5 + completion } })

const finishing = (reason: string) => frame({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: {}, finish_reason: reason }] })

/**
 * Models: `fails-known` ends on an error event with a gateway code, `fails-other` with a code of
 * its own, `whole` ends normally; `cut` closes cleanly mid-answer (no finish_reason, no [DONE]),
 * `no-done` finishes its answer but sends no [DONE] (some servers), `no-done-spaced` the same with
 * Python's JSON spacing; `cut-counted` and `no-done-counted` are `cut` and `no-done` from a server that
 * sends the usage so far on every chunk.
 */
function body(model: string): string {
  if (model === 'cut') return chunk('Hel') + chunk('lo')
  if (model === 'cut-counted') return counted('Hel', 1) + counted('lo', 2)
  if (model === 'no-done-counted') return counted('Hel', 1) + counted('lo', 2) + counted('', 2, 'stop')
  if (model === 'no-done') return chunk('Hel') + finishing('stop')
  if (model === 'no-done-spaced') return chunk('Hel') + 'data: {"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}\n\n'
  if (model === 'fails-known') return chunk('Hel') + frame({ error: { message: 'Rate limit reached mid-stream.', type: 'rate_limit_error', param: null, code: 'rate_limit_exceeded' } })
  // OpenRouter's: the error at the top of a chunk whose choice finishes with "error", then [DONE].
  if (model === 'fails-openrouter') {
    const failed = { id: 'gen-1', object: 'chat.completion.chunk', created: 1, model: 'm', provider: 'openai', error: { code: 'server_error', message: 'Provider disconnected unexpectedly' }, choices: [{ index: 0, delta: { content: '' }, finish_reason: 'error' }] }
    return chunk('Hel') + frame(failed) + 'data: [DONE]\n\n'
  }
  if (model === 'fails-other') return chunk('Hel') + frame({ error: { message: 'The server had an error.', type: 'server_error', param: null, code: 'server_overloaded' } })
  // OpenAI's own, code null; vLLM's, its HTTP status as the code; one that echoes the provider key.
  if (model === 'fails-openai') return chunk('Hel') + frame({ error: { message: 'The server had an error while processing your request.', type: 'server_error', param: null, code: null } })
  if (model === 'fails-vllm') return chunk('Hel') + frame({ error: { message: 'This model cannot take the request.', type: 'BadRequestError', param: null, code: 400 } })
  if (model === 'fails-limited') return chunk('Hel') + frame({ error: { message: 'Rate limit reached for tokens.', type: 'tokens', param: null, code: 'rate_limit_exceeded' } })
  if (model === 'fails-bare') return chunk('Hel') + frame({ error: 'Internal server error' })
  if (model === 'fails-echo') return chunk('Hel') + frame({ error: { message: `Bad key ${SECRET} mid-stream`, type: 'server_error', param: null, code: null } })
  const usage = { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 }
  return chunk('Hel') + chunk('lo') + frame({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [], usage }) + 'data: [DONE]\n\n'
}

/** The provider key of upstreamConfig, which no client may read. */
const SECRET = 'sk-upstream-secret-0123456789'

let upstream: ReturnType<typeof Bun.serve>
let gw: TestGateway
const outcomes: Outcome[] = []
const recorder = definePlugin({ name: 'outcome-recorder', setup: () => ({ onComplete: (_req, outcome) => void outcomes.push(outcome) }) })

beforeAll(async () => {
  upstream = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    async fetch(request) {
      const { model } = (await request.json()) as { model: string }
      return new Response(body(model), { headers: { 'content-type': 'text/event-stream' } })
    },
  })
  const url = `http://127.0.0.1:${upstream.port}/v1`
  gw = await startGateway(
    upstreamConfig(url, {
      models: ['fails-known', 'fails-other', 'fails-openai', 'fails-vllm', 'fails-limited', 'fails-bare', 'fails-echo', 'fails-openrouter', 'whole', 'cut', 'cut-counted', 'no-done', 'no-done-spaced', 'no-done-counted'].map((name) => ({ name, targets: [{ provider: 'up', model: name }] })),
      plugins: [recorder],
    }),
  )
})
afterAll(async () => {
  await gw?.close()
  upstream?.stop(true)
})

async function streamOf(model: string, askUsage: boolean): Promise<{ status: number; text: string; outcome: Outcome }> {
  await settledHooks(() => outcomes.length)
  outcomes.length = 0
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, stream: true, messages: [{ role: 'user', content: 'hi' }], ...(askUsage ? { stream_options: { include_usage: true } } : {}) }),
  })
  const text = await res.text()
  await settledHooks(() => outcomes.length)
  expect(outcomes).toHaveLength(1)
  return { status: res.status, text, outcome: outcomes[0]! }
}

for (const [way, askUsage] of [['mirrored', true], ['tapped', false]] as const) {
  describe(`a stream that ends on an error event (${way})`, () => {
    test("is heard with the event's code when it is one of the gateway's", async () => {
      const { status, text, outcome } = await streamOf('fails-known', askUsage)
      expect(status).toBe(200)
      expect(text).toContain('Rate limit reached mid-stream.')
      expect(outcome).toMatchObject({ status: 200, errorCode: 'rate_limit_exceeded', aborted: false })
    })

    test('is heard as upstream_error when its code is not one of the gateway\'s', async () => {
      const { outcome } = await streamOf('fails-other', askUsage)
      expect(outcome).toMatchObject({ status: 200, errorCode: 'upstream_error', aborted: false })
    })

    test("is heard with the code of the HTTP status an upstream gives as its code (vLLM's)", async () => {
      const { outcome } = await streamOf('fails-vllm', askUsage)
      expect(outcome).toMatchObject({ status: 200, errorCode: 'invalid_request', aborted: false })
    })

    test("reaches the client in the gateway's envelope where the gateway writes the stream, else as the upstream sent it", async () => {
      const cases = [
        ['fails-other', 'server_error', 'The server had an error.', 'upstream_error', 'api_error'],
        ['fails-openai', 'server_error', 'The server had an error while processing your request.', 'upstream_error', 'api_error'],
        ['fails-vllm', 'BadRequestError', 'This model cannot take the request.', 'invalid_request', 'invalid_request_error'],
        ['fails-limited', 'tokens', 'Rate limit reached for tokens.', 'rate_limit_exceeded', 'rate_limit_error'],
        ['fails-bare', 'error', 'Internal server error', 'upstream_error', 'api_error'],
      ] as const
      for (const [model, said, message, code, type] of cases) {
        const { text } = await streamOf(model, askUsage)
        const last = JSON.parse(text.trim().split('\n\n').at(-1)!.slice('data: '.length)) as { error: Record<string, unknown> }
        if (way === 'tapped') {
          expect({ model, error: last.error }).toEqual({ model, error: { message: `Upstream provider "up" failed mid-stream (${said}): ${message}`, type, param: null, code } })
        } else {
          // Mirrored: the upstream's own bytes, handed on as they came.
          expect(JSON.stringify(last.error)).toContain(message)
        }
      }
      // One already in the envelope, with one of the gateway's codes and its type, goes on as it came.
      const known = await streamOf('fails-known', askUsage)
      expect(JSON.parse(known.text.trim().split('\n\n').at(-1)!.slice('data: '.length))).toEqual({
        error: { message: 'Rate limit reached mid-stream.', type: 'rate_limit_error', param: null, code: 'rate_limit_exceeded' },
      })
      if (way === 'tapped') {
        const echo = await streamOf('fails-echo', askUsage)
        expect(echo.text).not.toContain(SECRET)
        expect(echo.text).toContain('Bad key')
      }
    })

    test("is heard as upstream_error when it is OpenRouter's (the error beside a choice finishing with \"error\"), not as an answer that finished", async () => {
      const { text, outcome } = await streamOf('fails-openrouter', askUsage)
      expect(text).toContain('Provider disconnected unexpectedly')
      expect(outcome).toMatchObject({ status: 200, errorCode: 'upstream_error', aborted: false })
    })

    test('a stream that ends normally is heard without an error', async () => {
      const { text, outcome } = await streamOf('whole', askUsage)
      expect(text).toContain('[DONE]')
      expect(outcome).toMatchObject({ status: 200, errorCode: null, aborted: false })
    })

    test('a stream the upstream closed before the answer finished is heard as upstream_error, a server that counts on every chunk too', async () => {
      for (const model of ['cut', 'cut-counted']) {
        const { text, outcome } = await streamOf(model, askUsage)
        expect(text).toContain('"lo"')
        expect(outcome).toMatchObject({ status: 200, errorCode: 'upstream_error', aborted: false })
        // The client's own stream: where the gateway writes it (tapped), it ends with an error event
        // the SDK raises; a mirrored stream is the upstream's own bytes, handed on natively.
        if (way === 'tapped') {
          const last = text.trim().split('\n\n').at(-1)!
          expect(JSON.parse(last.slice('data: '.length))).toMatchObject({ error: { code: 'upstream_error', type: 'api_error' } })
          expect(last).toContain('ended the stream before the answer finished')
        }
      }
    })

    test('a finished answer without [DONE] is no error', async () => {
      for (const model of ['no-done', 'no-done-spaced', 'no-done-counted']) {
        const { text, outcome } = await streamOf(model, askUsage)
        expect(text).not.toContain('"error"')
        expect(outcome).toMatchObject({ status: 200, errorCode: null, aborted: false })
      }
    })
  })
}
