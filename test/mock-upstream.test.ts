import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test'
import OpenAI from 'openai'
import { mockChatCompletion } from '../src/providers/mock/generate.ts'
import { parseSse, startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'

const chatBody = { model: 'mock-gpt', messages: [{ role: 'user', content: 'hello there' }] }

function post(upstream: MockUpstream, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${upstream.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer sk-upstream-test', ...headers },
    body: JSON.stringify(body),
  })
}

describe('mock upstream: happy paths', () => {
  let upstream: MockUpstream
  beforeAll(async () => {
    upstream = await startMockUpstream()
  })
  afterAll(() => upstream.stop())
  beforeEach(() => upstream.reset())

  test('listens on 127.0.0.1 with a /v1 base URL and answers /health', async () => {
    expect(upstream.url).toBe(`http://127.0.0.1:${upstream.port}/v1`)
    const res = await fetch(`http://127.0.0.1:${upstream.port}/health`)
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ status: 'ok' })
    expect(upstream.stats.requests).toBe(0)
  })

  test('chat completion: the builder answer, and what the client sent is recorded', async () => {
    const res = await post(upstream, '/chat/completions', chatBody)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('application/json')
    const body = (await res.json()) as ReturnType<typeof mockChatCompletion>
    const expected = mockChatCompletion(chatBody, { created: body.created })
    expect(body).toEqual(expected)
    expect(upstream.stats).toMatchObject({ requests: 1, promptTokens: 9, completionTokens: 16, aborted: 0 })
    expect(upstream.stats.lastHeaders?.get('authorization')).toBe('Bearer sk-upstream-test')
    expect(upstream.stats.lastBody).toEqual(chatBody)
  })

  test('chat stream: SSE content type, strict framing, usage chunk and [DONE]', async () => {
    const res = await post(upstream, '/chat/completions', { ...chatBody, stream: true, max_tokens: 4, stream_options: { include_usage: true } })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toStartWith('text/event-stream')
    const parsed = parseSse(await res.text())
    expect(parsed.done).toBe(true)
    const events = parsed.events as Array<{ choices: Array<{ delta: { content?: string } }>; usage: unknown }>
    expect(events.map((e) => e.choices[0]?.delta.content ?? '').join('')).toBe('This is a mock')
    expect(events[events.length - 1]?.usage).toEqual({ prompt_tokens: 9, completion_tokens: 4, total_tokens: 13 })
    expect(upstream.stats).toMatchObject({ requests: 1, promptTokens: 9, completionTokens: 4 })
  })

  test('legacy completions, stream and not', async () => {
    const res = await post(upstream, '/completions', { model: 'mock-gpt', prompt: 'Say hi', max_tokens: 2 })
    expect(await res.json()).toMatchObject({ object: 'text_completion', choices: [{ text: 'This is' }] })
    const stream = await post(upstream, '/completions', { model: 'mock-gpt', prompt: 'Say hi', max_tokens: 2, stream: true })
    expect(parseSse(await stream.text()).done).toBe(true)
    expect(upstream.stats.requests).toBe(2)
  })

  test('embeddings', async () => {
    const res = await post(upstream, '/embeddings', { model: 'mock-embed', input: ['a', 'b'], dimensions: 4 })
    const body = (await res.json()) as { data: Array<{ embedding: number[] }>; usage: { prompt_tokens: number } }
    expect(body.data).toHaveLength(2)
    expect(body.data[0]?.embedding).toHaveLength(4)
    expect(upstream.stats.promptTokens).toBe(body.usage.prompt_tokens)
  })

  test('models list and single model', async () => {
    const list = await fetch(`${upstream.url}/models`)
    expect(await list.json()).toMatchObject({ object: 'list', data: [{ id: 'mock-gpt' }, { id: 'mock-embed' }] })
    expect(await (await fetch(`${upstream.url}/models/mock-gpt`)).json()).toMatchObject({ id: 'mock-gpt', object: 'model' })
    const missing = await fetch(`${upstream.url}/models/nope`)
    expect(missing.status).toBe(404)
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe('model_not_found')
  })

  test('unknown routes and bad JSON answer OpenAI error envelopes', async () => {
    const unknown = await fetch(`${upstream.url}/nothing`)
    expect(unknown.status).toBe(404)
    expect(await unknown.json()).toMatchObject({ error: { type: expect.any(String), message: expect.any(String) } })
    const bad = await fetch(`${upstream.url}/chat/completions`, { method: 'POST', body: '{nope' })
    expect(bad.status).toBe(400)
    expect(((await bad.json()) as { error: { type: string } }).error.type).toBe('invalid_request_error')
  })

  test('GET /mock/stats serves the stats to other processes', async () => {
    await post(upstream, '/chat/completions', chatBody)
    const res = await fetch(`http://127.0.0.1:${upstream.port}/mock/stats`)
    expect(await res.json()).toEqual({ requests: 1, prompt_tokens: 9, completion_tokens: 16, aborted: 0, last_authorization: 'Bearer sk-upstream-test' })
    expect(upstream.stats.requests).toBe(1)
  })

  test('reset zeroes the stats in place', async () => {
    const stats = upstream.stats
    await post(upstream, '/chat/completions', chatBody)
    upstream.reset()
    expect(stats).toEqual({ requests: 0, promptTokens: 0, completionTokens: 0, aborted: 0 })
  })
})

describe('mock upstream: failure injection', () => {
  let upstream: MockUpstream
  beforeAll(async () => {
    upstream = await startMockUpstream()
  })
  afterAll(() => upstream.stop())
  beforeEach(() => upstream.reset())

  test('setFailure with times fails that many requests, then clears', async () => {
    upstream.setFailure({ status: 503, times: 2 })
    const statuses: number[] = []
    for (let i = 0; i < 3; i++) statuses.push((await post(upstream, '/chat/completions', chatBody)).status)
    expect(statuses).toEqual([503, 503, 200])
    expect(upstream.stats.requests).toBe(3)
  })

  test('setFailure with a custom body and headers lasts until cleared', async () => {
    upstream.setFailure({ status: 429, body: { error: { message: 'slow down', type: 'rate_limit_error', code: 'rate_limit_exceeded' } }, headers: { 'retry-after': '7' } })
    for (let i = 0; i < 2; i++) {
      const res = await post(upstream, '/chat/completions', chatBody)
      expect(res.status).toBe(429)
      expect(res.headers.get('retry-after')).toBe('7')
      expect(((await res.json()) as { error: { message: string } }).error.message).toBe('slow down')
    }
    upstream.setFailure(null)
    expect((await post(upstream, '/chat/completions', chatBody)).status).toBe(200)
  })

  test('x-mock-status header fails one request with the OpenAI envelope', async () => {
    const res = await post(upstream, '/chat/completions', chatBody, { 'x-mock-status': '500' })
    expect(res.status).toBe(500)
    expect(await res.json()).toEqual({ error: { message: expect.any(String), type: 'server_error', param: null, code: 'server_error' } })
    expect((await post(upstream, '/chat/completions', chatBody)).status).toBe(200)
  })

  test('a mock-fail-<status> model fails every time, streams included', async () => {
    const res = await post(upstream, '/chat/completions', { ...chatBody, model: 'mock-fail-429' })
    expect(res.status).toBe(429)
    expect(((await res.json()) as { error: { type: string; code: string } }).error).toMatchObject({ type: 'rate_limit_error', code: 'rate_limit_exceeded' })
    const stream = await post(upstream, '/chat/completions', { ...chatBody, model: 'mock-fail-502', stream: true })
    expect(stream.status).toBe(502)
    expect(stream.headers.get('content-type')).toBe('application/json')
  })

  test('apiKeys refuses other bearer tokens with 401 invalid_api_key', async () => {
    const guarded = await startMockUpstream({ apiKeys: ['sk-good'] })
    try {
      const bad = await post(guarded, '/chat/completions', chatBody, { authorization: 'Bearer sk-bad' })
      expect(bad.status).toBe(401)
      expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('invalid_api_key')
      expect((await post(guarded, '/chat/completions', chatBody, { authorization: 'Bearer sk-good' })).status).toBe(200)
    } finally {
      await guarded.stop()
    }
  })
})

describe('mock upstream: the official OpenAI SDK reads it', () => {
  let upstream: MockUpstream
  let client: OpenAI
  beforeAll(async () => {
    upstream = await startMockUpstream()
    client = new OpenAI({ baseURL: upstream.url, apiKey: 'sk-upstream-test', maxRetries: 0 })
  })
  afterAll(() => upstream.stop())

  test('chat, stream with usage, base64 embeddings and errors', async () => {
    const messages = [{ role: 'user' as const, content: 'hello there' }]
    const completion = await client.chat.completions.create({ model: 'mock-gpt', messages })
    expect(completion.usage?.completion_tokens).toBe(16)

    const stream = await client.chat.completions.create({ model: 'mock-gpt', messages, stream: true, stream_options: { include_usage: true } })
    let text = ''
    let completionTokens = 0
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? ''
      completionTokens = chunk.usage?.completion_tokens ?? completionTokens
    }
    expect(text).toBe(completion.choices[0]?.message.content ?? '')
    expect(completionTokens).toBe(16)

    // The SDK asks for base64 by default and decodes it; the floats must survive the trip.
    const embeddings = await client.embeddings.create({ model: 'mock-embed', input: 'hello' })
    expect(upstream.stats.lastBody).toMatchObject({ encoding_format: 'base64' })
    expect(embeddings.data[0]?.embedding).toHaveLength(8)

    const failure = await client.chat.completions.create({ model: 'mock-fail-429', messages }).catch((error: unknown) => error)
    expect(failure).toBeInstanceOf(OpenAI.APIError)
    if (failure instanceof OpenAI.APIError) {
      expect(failure.status).toBe(429)
      expect(failure.code).toBe('rate_limit_exceeded')
    }
  })
})

describe('mock upstream: transport behaviour', () => {
  test('gzip: non-stream JSON is really gzip with a matching content-encoding; streams are not', async () => {
    const upstream = await startMockUpstream({ gzip: true })
    try {
      const raw = await fetch(`${upstream.url}/chat/completions`, { method: 'POST', body: JSON.stringify(chatBody), decompress: false })
      expect(raw.headers.get('content-encoding')).toBe('gzip')
      const bytes = new Uint8Array(await raw.arrayBuffer())
      expect([bytes[0], bytes[1]]).toEqual([0x1f, 0x8b])
      expect(JSON.parse(new TextDecoder().decode(Bun.gunzipSync(bytes)))).toMatchObject({ object: 'chat.completion' })
      // Bun's fetch decompresses by default: the body reads as plain JSON.
      expect(await (await post(upstream, '/chat/completions', chatBody)).json()).toMatchObject({ object: 'chat.completion' })
      const stream = await post(upstream, '/chat/completions', { ...chatBody, stream: true })
      expect(stream.headers.get('content-encoding')).toBeNull()
      expect(parseSse(await stream.text()).done).toBe(true)
    } finally {
      await upstream.stop()
    }
  })

  test('latencyMs delays the answer', async () => {
    const upstream = await startMockUpstream({ latencyMs: 120 })
    try {
      const started = performance.now()
      await (await post(upstream, '/chat/completions', chatBody)).json()
      expect(performance.now() - started).toBeGreaterThanOrEqual(110)
    } finally {
      await upstream.stop()
    }
  })

  test('chunks and chunkDelayMs shape streams', async () => {
    const upstream = await startMockUpstream({ chunks: 2, chunkDelayMs: 20 })
    try {
      const started = performance.now()
      const parsed = parseSse(await (await post(upstream, '/chat/completions', { ...chatBody, stream: true })).text())
      // role + 2 content + finish
      expect(parsed.events).toHaveLength(4)
      expect(performance.now() - started).toBeGreaterThanOrEqual(3 * 20 - 5)
    } finally {
      await upstream.stop()
    }
  })

  test('a client that goes away mid-stream is counted in stats.aborted', async () => {
    const upstream = await startMockUpstream({ chunkDelayMs: 50 })
    try {
      const controller = new AbortController()
      const res = await fetch(`${upstream.url}/chat/completions`, {
        method: 'POST',
        body: JSON.stringify({ ...chatBody, stream: true, max_tokens: 200 }),
        signal: controller.signal,
      })
      const reader = res.body?.getReader()
      await reader?.read()
      controller.abort()
      const deadline = Date.now() + 3000
      while (upstream.stats.aborted === 0 && Date.now() < deadline) await Bun.sleep(20)
      expect(upstream.stats.aborted).toBe(1)

      // A stream read to its end is not an abort.
      await (await post(upstream, '/chat/completions', { ...chatBody, stream: true, max_tokens: 2 })).text()
      await Bun.sleep(100)
      expect(upstream.stats.aborted).toBe(1)
    } finally {
      await upstream.stop()
    }
  })

  test('the CLI starts a standalone server and stops on SIGTERM', async () => {
    const child = Bun.spawn(['bun', 'run', `${import.meta.dir}/fixtures/mock-upstream.ts`, '--port', '0'], { stdout: 'pipe', stderr: 'inherit' })
    try {
      const reader = child.stdout.getReader()
      let out = ''
      while (!out.includes('\n')) {
        const { value, done } = await reader.read()
        if (done) break
        out += new TextDecoder().decode(value)
      }
      const url = /(http:\/\/127\.0\.0\.1:\d+\/v1)/.exec(out)?.[1]
      expect(url).toBeDefined()
      const res = await fetch(`${url}/chat/completions`, { method: 'POST', body: JSON.stringify(chatBody) })
      expect(res.status).toBe(200)
      child.kill('SIGTERM')
      expect(await child.exited).toBe(0)
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL')
    }
  })
})
