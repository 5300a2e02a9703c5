/**
 * How the gateway reads the upstream's answers it mirrors or taps for its plugins: a JSON answer
 * kept alive with blank lines until it is ready is not cut at idle_ms; a stream the client's SDK
 * stops reading at its end ([DONE], an error event) is settled as ended, not as a client that
 * left; a 2xx that is no completion (no body, an error object) is the upstream's failure, counted
 * against its key; a usage chunk without `choices` is hidden from a client that did not ask for it.
 * Real gateway with the balance plugin and a completion hook, an upstream of the test's own on 127.0.0.1.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import OpenAI from 'openai'
import { definePlugin, type Outcome, type Usage } from '../src/plugin.ts'
import type { ConfigFile } from '../src/config/schema.ts'
import { startGateway, type TestGateway } from './support/gateway.ts'
import { settledHooks } from './support/http.ts'
import { BALANCE_ADMIN_KEY, type HealthRow } from './support/balance.ts'

const enc = new TextEncoder()
const frame = (data: unknown) => `data: ${JSON.stringify(data)}\n\n`
const delta = (content: string, finish: string | null = null) =>
  frame({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content }, finish_reason: finish }] })
const USAGE = { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 }
const completion = { id: 'x', object: 'chat.completion', created: 1, model: 'm', choices: [{ index: 0, message: { role: 'assistant', content: 'Hello there' }, finish_reason: 'stop' }], usage: USAGE }

/** A body written piece by piece, `gapMs` apart, then held open for `holdMs` before it closes. */
function paced(pieces: string[], gapMs: number, holdMs: number, type: string): Response {
  return new Response(
    new ReadableStream<Uint8Array>({
      async start(controller) {
        for (const piece of pieces) {
          controller.enqueue(enc.encode(piece))
          await Bun.sleep(gapMs)
        }
        await Bun.sleep(holdMs)
        controller.close()
      },
    }),
    { headers: { 'content-type': type } },
  )
}

/** The upstream's answer for each model (the upstream model name picks it). */
function answer(model: string, body: Record<string, unknown>): Response {
  const usageAsked = (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true
  switch (model) {
    case 'queued':
      // DeepSeek under load: the headers at once, a blank line every 100 ms for 900 ms, then the JSON.
      return paced([...Array.from({ length: 9 }, () => '\n'), JSON.stringify(completion)], 100, 0, 'application/json')
    case 'done-late':
      // [DONE], and the upstream's end of stream 400 ms later.
      return paced([delta('Hel') + delta('lo', 'stop') + (usageAsked ? frame({ id: 'c1', object: 'chat.completion.chunk', choices: [], usage: USAGE }) : '') + 'data: [DONE]\n\n'], 0, 400, 'text/event-stream')
    case 'error-late':
      return paced([delta('Hel') + frame({ error: { message: 'CUDA out of memory', type: 'server_error', param: null, code: null } })], 0, 400, 'text/event-stream')
    case 'no-content':
      return new Response(null, { status: 204 })
    case 'empty':
      return new Response('', { headers: { 'content-type': 'application/json' } })
    case 'blank-chunked':
      return paced(['\n', '\n'], 10, 0, 'application/json')
    case 'error-200':
      return Response.json({ error: { message: 'The server had an error while processing your request', type: 'server_error', param: null, code: null } })
    case 'detail-200':
      return Response.json({ detail: 'Internal error in model worker' })
    case 'no-usage':
      return Response.json({ ...completion, usage: undefined })
    case 'usage-no-choices':
    case 'usage-null-choices': {
      const last = model === 'usage-no-choices' ? { id: 'c1', object: 'chat.completion.chunk', usage: USAGE } : { id: 'c1', object: 'chat.completion.chunk', choices: null, usage: USAGE }
      return paced([delta('Hel') + delta('lo', 'stop') + (usageAsked ? frame(last) : '') + 'data: [DONE]\n\n'], 0, 0, 'text/event-stream')
    }
    default:
      return Response.json(completion)
  }
}

let upstream: ReturnType<typeof Bun.serve>
let gw: TestGateway
/** What the completion hooks heard, with the usage billed (none for a failure). */
type Heard = Outcome & { usage: Usage | undefined }
const outcomes: Heard[] = []
const recorder = definePlugin({ name: 'outcome-recorder', setup: () => ({ onComplete: (req, outcome) => void outcomes.push({ ...outcome, usage: req.usage }) }) })
const MODELS = ['queued', 'done-late', 'error-late', 'no-content', 'empty', 'blank-chunked', 'error-200', 'detail-200', 'no-usage', 'usage-no-choices', 'usage-null-choices']

beforeAll(async () => {
  upstream = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    async fetch(request) {
      const body = (await request.json()) as Record<string, unknown>
      return answer(String(body.model), body)
    },
  })
  const baseUrl = `http://127.0.0.1:${upstream.port}/v1`
  // One provider (and key) per model: each key's health tells what its answers did. idle_ms 300:
  // the queued answer sends nothing but blank lines for 900 ms.
  const providers: NonNullable<ConfigFile['providers']> = MODELS.map((m) => ({ id: m, type: 'openai-compatible', baseUrl, timeouts: { idle_ms: 300 }, keys: [{ id: `key-${m}`, secret: `sk-upstream-${m}-0123456789abcdef` }] }))
  for (const id of ['fine', 'retry-empty']) providers.push({ id, type: 'openai-compatible', baseUrl, keys: [{ id: `key-${id}`, secret: `sk-upstream-${id}-0123456789abcdef` }] })
  const models: ConfigFile['models'] = MODELS.map((m) => ({ name: m, targets: [{ provider: m, model: m }] }))
  // An empty answer is retried on the group's next target, as a 5xx is.
  models.push({ name: 'empty-then-fine', strategy: 'weighted', targets: [{ provider: 'retry-empty', model: 'no-content', weight: 1000 }, { provider: 'fine', model: 'fine', weight: 1 }] })
  gw = await startGateway({ providers, models, plugins: [{ use: 'balance', options: { backoff_ms: 0 } }, recorder] }, { env: { SLUICE_ADMIN_KEY: BALANCE_ADMIN_KEY } })
})
afterAll(async () => {
  await gw?.close()
  upstream?.stop(true)
})

const post = (body: Record<string, unknown>) =>
  fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], ...body }) })

/** The one outcome the completion hooks heard for what `run` did. */
async function outcomeOf(run: () => Promise<unknown>): Promise<Heard> {
  await settledHooks(() => outcomes.length)
  outcomes.length = 0
  await run()
  await settledHooks(() => outcomes.length, 50)
  expect(outcomes).toHaveLength(1)
  return outcomes[0]!
}

async function health(key: string): Promise<HealthRow> {
  const res = await fetch(`${gw.url}/admin/providers/health`, { headers: { authorization: `Bearer ${BALANCE_ADMIN_KEY}` } })
  const row = ((await res.json()) as { data: HealthRow[] }).data.find((r) => r.key === key)
  if (!row) throw new Error(`no health row for ${key}`)
  return row
}

describe('a JSON answer kept alive with blank lines until it is ready', () => {
  test('is not cut at idle_ms: the blank lines are activity, and the answer is whole and counted', async () => {
    let text = ''
    const outcome = await outcomeOf(async () => {
      const res = await post({ model: 'queued' })
      expect(res.status).toBe(200)
      text = await res.text()
    })
    expect((JSON.parse(text) as typeof completion).choices[0]!.message.content).toBe('Hello there')
    expect(outcome).toMatchObject({ status: 200, errorCode: null, aborted: false, usage: { promptTokens: 7, completionTokens: 3, source: 'provider' } })
    expect((await health('key-queued')).last_error).toBeNull()
  })
})

describe('a stream the client stops reading at its end, before the upstream closes it', () => {
  const client = () => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 })
  for (const [way, extra] of [
    ['tapped', {}],
    ['mirrored', { stream_options: { include_usage: true }, max_tokens: 16 }],
  ] as const) {
    test(`at [DONE] (${way}): ended, not a client that left`, async () => {
      let text = ''
      const outcome = await outcomeOf(async () => {
        const stream = await client().chat.completions.create({ model: 'done-late', stream: true, messages: [{ role: 'user', content: 'hi' }], ...extra })
        for await (const part of stream) text += part.choices[0]?.delta.content ?? ''
      })
      expect(text).toBe('Hello')
      expect(outcome).toMatchObject({ status: 200, errorCode: null, aborted: false })
    })

    test(`at an error event (${way}): the upstream's error, not a client that left`, async () => {
      let caught: unknown
      const outcome = await outcomeOf(async () => {
        const stream = await client().chat.completions.create({ model: 'error-late', stream: true, messages: [{ role: 'user', content: 'hi' }], ...extra })
        try {
          for await (const _ of stream);
        } catch (error) {
          caught = error
        }
      })
      expect(caught).toBeInstanceOf(OpenAI.APIError)
      expect(outcome).toMatchObject({ status: 200, errorCode: 'upstream_error', aborted: false })
    })
  }

  test('a client that leaves mid-answer is still one that left', async () => {
    const outcome = await outcomeOf(async () => {
      const controller = new AbortController()
      const res = await fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'queued', messages: [{ role: 'user', content: 'hi' }] }),
        signal: controller.signal,
      })
      await res.body!.getReader().read()
      controller.abort()
    })
    expect(outcome).toMatchObject({ aborted: true, errorCode: null })
  })
})

describe('a 2xx that is no completion', () => {
  test.each([
    ['a 204', 'no-content'],
    ['a 200 with content-length 0', 'empty'],
  ])('%s is a 502 upstream_error, counted against the key', async (_what, model) => {
    const before = (await health(`key-${model}`)).circuit.consecutive_failures
    let status = 0
    let code = ''
    const outcome = await outcomeOf(async () => {
      const res = await post({ model })
      status = res.status
      code = ((await res.json()) as { error: { code: string } }).error.code
    })
    expect([status, code]).toEqual([502, 'upstream_error'])
    expect(outcome).toMatchObject({ status: 502, errorCode: 'upstream_error' })
    const row = await health(`key-${model}`)
    expect(row.circuit.consecutive_failures).toBe(before + 1)
    expect(row.last_error?.status).toBe(502)
    expect(row.last_error?.message).toContain('empty body')
  })

  test('an empty answer is retried on the next target, as a 5xx is', async () => {
    const res = await post({ model: 'empty-then-fine' })
    expect(res.status).toBe(200)
    expect(((await res.json()) as typeof completion).choices[0]!.message.content).toBe('Hello there')
    expect((await health('key-retry-empty')).last_error?.status).toBe(502)
  })

  test.each([
    ['an error object', 'error-200', 'The server had an error'],
    ["a Python server's detail", 'detail-200', 'Internal error in model worker'],
    ['a body of blank lines with no length', 'blank-chunked', 'empty body'],
  ])('%s at HTTP 200 reaches the client as sent, and is logged and counted as upstream_error, not billed', async (_what, model, said) => {
    const before = (await health(`key-${model}`)).circuit.consecutive_failures
    let status = 0
    const outcome = await outcomeOf(async () => {
      const res = await post({ model })
      status = res.status
      await res.text()
    })
    expect(status).toBe(200)
    expect(outcome).toMatchObject({ status: 200, errorCode: 'upstream_error', aborted: false, usage: undefined })
    const row = await health(`key-${model}`)
    expect(row.circuit.consecutive_failures).toBe(before + 1)
    expect(row.last_error?.message).toContain(said)
  })

  test('an answer without usage is still an answer', async () => {
    const outcome = await outcomeOf(async () => (await post({ model: 'no-usage' })).text())
    expect(outcome).toMatchObject({ status: 200, errorCode: null })
    expect((await health('key-no-usage')).last_error).toBeNull()
  })
})

describe('a usage chunk without choices', () => {
  test.each(['usage-no-choices', 'usage-null-choices'])('(%s) is hidden from a client that did not ask for usage', async (model) => {
    const stream = await new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 }).chat.completions.create({ model, stream: true, messages: [{ role: 'user', content: 'hi' }] })
    let text = ''
    // The README's loop: a chunk without choices would throw here.
    for await (const chunk of stream) {
      expect(chunk.usage ?? null).toBeNull()
      text += chunk.choices[0]?.delta?.content ?? ''
    }
    expect(text).toBe('Hello')
  })
})
