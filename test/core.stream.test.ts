/**
 * Gateway core, transport: compressed upstreams, clients that go away mid-stream, and the
 * usage chunk the gateway asks for on a plugin's behalf. Real HTTP on 127.0.0.1 only.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test'
import { request as httpRequest } from 'node:http'
import { gunzipSync } from 'node:zlib'
import { definePlugin } from '../src/plugin.ts'
import { lastUsage } from '../src/lib/usage.ts'
import type { Outcome, Usage } from '../src/plugin.ts'
import { mockChatCompletion, mockEmbeddings } from '../src/providers/mock/generate.ts'
import { parseSse, startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { startGateway, upstreamConfig, type TestGateway } from './support/gateway.ts'
import { postJson, settledHooks, streamedText, waitFor, type ChunkLike } from './support/http.ts'

const messages = [{ role: 'user', content: 'hello there' }]

/** Records what the usage and completion hooks were told. */
function recorder() {
  const usages: Usage[] = []
  const outcomes: Outcome[] = []
  const plugin = definePlugin({
    name: 'test-recorder',
    setup: () => ({
      onUsage: (_req, usage) => void usages.push(usage),
      onComplete: (_req, outcome) => void outcomes.push(outcome),
    }),
  })
  /** Empties the record once the hooks of earlier requests have all been heard (see settledHooks). */
  async function reset(): Promise<void> {
    await settledHooks(() => usages.length + outcomes.length)
    usages.length = 0
    outcomes.length = 0
  }
  return { plugin, usages, outcomes, reset }
}

/** A raw HTTP exchange: the bytes and headers exactly as sent, with no decompression on our side. */
function rawPost(url: string, body: unknown): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; bytes: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'POST', headers: { 'content-type': 'application/json', 'accept-encoding': 'identity' } }, (res) => {
      const parts: Buffer[] = []
      res.on('data', (d: Buffer) => parts.push(d))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes: Buffer.concat(parts) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(JSON.stringify(body))
  })
}

/** The body as the headers describe it: gunzipped if and only if they say gzip. */
function decodeAsDeclared(raw: { headers: Record<string, string | string[] | undefined>; bytes: Buffer }): unknown {
  const encoding = raw.headers['content-encoding']
  const text = encoding === 'gzip' ? gunzipSync(raw.bytes).toString('utf8') : raw.bytes.toString('utf8')
  return JSON.parse(text)
}

describe('a gzip-compressing upstream', () => {
  let upstream: MockUpstream
  let plain: TestGateway
  let tapped: TestGateway
  const rec = recorder()

  beforeAll(async () => {
    upstream = await startMockUpstream({ gzip: true })
    plain = await startGateway(upstreamConfig(upstream.url))
    // With a usage hook the gateway reads the body as it passes: a second code path.
    tapped = await startGateway(upstreamConfig(upstream.url, { plugins: [rec.plugin] }))
  })
  afterAll(async () => {
    await plain.close()
    await tapped.close()
    await upstream.stop()
  })
  beforeEach(() => upstream.reset())

  test('the mock really compresses (so the tests below test something)', async () => {
    const raw = await rawPost(`${upstream.url}/chat/completions`, { model: 'mock-gpt', messages })
    expect(raw.headers['content-encoding']).toBe('gzip')
    expect(raw.bytes[0]).toBe(0x1f)
    expect(raw.bytes[1]).toBe(0x8b)
  })

  for (const which of ['no plugin', 'a usage plugin'] as const) {
    test(`chat: the client gets the JSON with headers that match the bytes (${which})`, async () => {
      const gw = which === 'no plugin' ? plain : tapped
      const body = { model: 'mock-gpt', messages, max_tokens: 3 }
      const raw = await rawPost(`${gw.url}/v1/chat/completions`, body)
      expect(raw.status).toBe(200)
      const parsed = decodeAsDeclared(raw) as ReturnType<typeof mockChatCompletion>
      expect(parsed).toEqual(mockChatCompletion(body, { created: parsed.created }))
      if (raw.headers['content-length'] !== undefined) expect(Number(raw.headers['content-length'])).toBe(raw.bytes.length)
      expect(upstream.stats.requests).toBe(1)

      // And through fetch, which decodes whatever the headers claim.
      const res = await postJson(`${gw.url}/v1/chat/completions`, body)
      expect(((await res.json()) as { choices: Array<{ message: { content: string } }> }).choices[0]?.message.content).toBe('This is a')
    })
  }

  test('the usage hook reads the provider usage from a decompressed body', async () => {
    await rec.reset()
    const body = { model: 'mock-gpt', input: 'alpha' }
    const res = await postJson(`${tapped.url}/v1/embeddings`, body)
    expect(((await res.json()) as { usage: unknown }).usage).toEqual(mockEmbeddings(body).usage)
    // The hooks run after the responses: an earlier test's chat may still be heard after the reset above.
    const prompt = mockEmbeddings(body).usage.prompt_tokens
    await waitFor(() => rec.usages.some((u) => u.completionTokens === 0 && u.promptTokens === prompt), 'onUsage')
    expect(rec.usages.find((u) => u.completionTokens === 0)).toMatchObject({ source: 'provider', promptTokens: prompt })
  })
})

describe('a client that goes away mid-stream', () => {
  let upstream: MockUpstream
  let plain: TestGateway
  let tapped: TestGateway
  const rec = recorder()

  beforeAll(async () => {
    upstream = await startMockUpstream({ chunkDelayMs: 50 })
    plain = await startGateway(upstreamConfig(upstream.url))
    tapped = await startGateway(upstreamConfig(upstream.url, { plugins: [rec.plugin] }))
  })
  afterAll(async () => {
    await plain.close()
    await tapped.close()
    await upstream.stop()
  })
  beforeEach(async () => {
    upstream.reset()
    await rec.reset()
  })

  /**
   * Start a long stream (200 pieces, 50 ms apart), read until its second piece, then abort. A
   * client that asks for the usage chunk itself gets the upstream's bytes natively while the
   * gateway reads a copy (Pipeline.mirrorStream); otherwise the gateway's own stream hides it.
   */
  async function readThenAbort(gw: TestGateway, clientAsksUsage = false): Promise<string> {
    const controller = new AbortController()
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'mock-gpt', messages, max_tokens: 200, stream: true, ...(clientAsksUsage && { stream_options: { include_usage: true } }) }),
      signal: controller.signal,
    })
    expect(res.status).toBe(200)
    const reader = res.body!.getReader()
    const decoder = new TextDecoder()
    let text = ''
    while (!text.includes('"content":" is"')) {
      const { value, done } = await reader.read()
      if (done) throw new Error('the stream ended before the client went away')
      text += decoder.decode(value, { stream: true })
    }
    controller.abort()
    return text
  }

  test('with no plugin: the upstream stream is cancelled', async () => {
    const seen = await readThenAbort(plain)
    expect(seen).toContain('"role":"assistant"')
    await waitFor(() => upstream.stats.aborted === 1, 'the upstream stream cancelled')
    expect(upstream.stats.requests).toBe(1)
  })

  test.each([
    ['the gateway hides the usage chunk', false],
    ['the client asked for the usage chunk (its stream goes on natively)', true],
  ])('with a plugin (%s): the upstream is cancelled and onUsage/onComplete still fire, with aborted: true', async (_, clientAsksUsage) => {
    await readThenAbort(tapped, clientAsksUsage)
    await waitFor(() => upstream.stats.aborted === 1, 'the upstream stream cancelled')
    await waitFor(() => rec.outcomes.length === 1, 'onComplete')
    expect(rec.usages.length).toBe(1)
    for (const outcome of rec.outcomes) {
      expect(outcome.aborted).toBe(true)
      expect(outcome.status).toBe(200)
      expect(outcome.errorCode).toBeNull()
      expect(outcome.ttftMs).not.toBeNull()
    }
    // The stream was cut before its usage chunk: the usage is an estimate, with the prompt counted.
    for (const usage of rec.usages) {
      expect(usage.source).toBe('estimated')
      expect(usage.promptTokens).toBeGreaterThan(0)
    }
  })
})

describe('the usage chunk a plugin needs', () => {
  let upstream: MockUpstream
  let gw: TestGateway
  let plain: TestGateway
  const rec = recorder()

  beforeAll(async () => {
    upstream = await startMockUpstream()
    gw = await startGateway(upstreamConfig(upstream.url, { plugins: [rec.plugin] }))
    plain = await startGateway(upstreamConfig(upstream.url))
  })
  afterAll(async () => {
    await gw.close()
    await plain.close()
    await upstream.stop()
  })
  beforeEach(async () => {
    upstream.reset()
    await rec.reset()
  })

  test('is asked of the upstream, hidden from a client that did not ask, and reaches onUsage', async () => {
    const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages, max_tokens: 4, stream: true })
    const parsed = parseSse(await res.text())
    expect(parsed.done).toBe(true)
    const chunks = parsed.events as ChunkLike[]
    expect(streamedText(chunks)).toBe('This is a mock')
    // role, 4 pieces, finish: the usage chunk (choices: []) is gone.
    expect(chunks.length).toBe(6)
    expect(chunks.every((c) => c.choices.length === 1)).toBe(true)
    expect(chunks.some((c) => c.usage)).toBe(false)

    expect((upstream.stats.lastBody as { stream_options?: unknown }).stream_options).toEqual({ include_usage: true })
    await waitFor(() => rec.usages.length === 1, 'onUsage')
    expect(rec.usages[0]).toEqual({ promptTokens: 9, completionTokens: 4, cachedTokens: 0, totalTokens: 13, costUsd: null, source: 'provider' })
    expect(rec.outcomes[0]?.aborted).toBe(false)
  })

  test('other stream_options the client sent are kept when include_usage is added', async () => {
    const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages, max_tokens: 2, stream: true, stream_options: { include_obfuscation: false } })
    expect(parseSse(await res.text()).done).toBe(true)
    expect((upstream.stats.lastBody as { stream_options?: unknown }).stream_options).toEqual({ include_obfuscation: false, include_usage: true })
  })

  test('a client that asked for it still gets it, byte for byte as the upstream sent it', async () => {
    const body = { model: 'mock-gpt', messages, max_tokens: 2, stream: true, stream_options: { include_usage: true } }
    const text = await (await postJson(`${gw.url}/v1/chat/completions`, body)).text()
    const chunks = parseSse(text).events as ChunkLike[]
    expect(chunks.at(-1)?.choices).toEqual([])
    expect(chunks.at(-1)?.usage).toEqual({ prompt_tokens: 9, completion_tokens: 2, total_tokens: 11 })
    // The mock's answer is deterministic but for its id and time: the same bytes with those aligned.
    const direct = await (await postJson(`${upstream.url}/chat/completions`, body)).text()
    const align = (s: string) => s.replace(/chatcmpl-[A-Za-z0-9]+/g, 'ID').replace(/"created":\d+/g, '"created":0')
    expect(align(text)).toBe(align(direct))
    await waitFor(() => rec.outcomes.length === 1, 'onComplete')
    expect(rec.usages[0]?.completionTokens).toBe(2)
    expect(rec.outcomes[0]).toMatchObject({ status: 200, aborted: false, errorCode: null })
    expect(rec.outcomes[0]?.ttftMs).toBeGreaterThan(0)
  })

  test('a stream the client asked usage of that comes without it is estimated from the text it carried', async () => {
    // An OpenAI-compatible server that ignores stream_options: no usage chunk at all.
    const frame = (content: string) => `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content } }] })}\n\n`
    const bare = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: () => new Response(frame('Hello there, ') + frame('a few words of text.') + 'data: [DONE]\n\n', { headers: { 'content-type': 'text/event-stream' } }) })
    const local = await startGateway(upstreamConfig(`http://127.0.0.1:${bare.port}/v1`, { plugins: [rec.plugin] }))
    try {
      const res = await postJson(`${local.url}/v1/chat/completions`, { model: 'mock-gpt', messages, stream: true, stream_options: { include_usage: true } })
      expect(streamedText(parseSse(await res.text()).events as ChunkLike[])).toBe('Hello there, a few words of text.')
      await waitFor(() => rec.outcomes.length === 1, 'onComplete')
      expect(rec.usages[0]).toMatchObject({ source: 'estimated', completionTokens: Math.ceil('Hello there, a few words of text.'.length / 4) })
      expect(rec.usages[0]!.promptTokens).toBeGreaterThan(0)
    } finally {
      await local.close()
      bare.stop(true)
    }
  })

  test('an estimate counts each choice apart (n > 1 interleaves them) and not a legacy completion’s echoed prompt', async () => {
    // An OpenAI-compatible server that reports no usage: two choices streamed in turn, then a
    // legacy completion that echoes its prompt.
    const frame = (index: number, content: string) => `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index, delta: { content } }] })}\n\n`
    const bare = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      fetch: (request) =>
        new URL(request.url).pathname.endsWith('/completions') && !new URL(request.url).pathname.endsWith('/chat/completions')
          ? Response.json({ id: 'c', object: 'text_completion', choices: [{ index: 0, text: 'Say this is a test, done', finish_reason: 'stop' }] })
          : new Response(frame(0, 'abc') + frame(1, 'fgh') + frame(0, 'de') + frame(1, 'ij') + 'data: [DONE]\n\n', { headers: { 'content-type': 'text/event-stream' } }),
    })
    const local = await startGateway(upstreamConfig(`http://127.0.0.1:${bare.port}/v1`, { plugins: [rec.plugin] }))
    try {
      const res = await postJson(`${local.url}/v1/chat/completions`, { model: 'mock-gpt', messages, n: 2, stream: true, stream_options: { include_usage: true } })
      await res.text()
      await waitFor(() => rec.outcomes.length === 1, 'onComplete')
      // The rough counter's 4 characters a token, per choice: "abcde" and "fghij" are 2 each; read
      // as one text ("abcfghdeij") they were 3.
      expect(rec.usages[0]).toMatchObject({ source: 'estimated', completionTokens: 4 })

      const legacy = await postJson(`${local.url}/v1/completions`, { model: 'mock-gpt', prompt: 'Say this is a test', echo: true, max_tokens: 5 })
      expect(((await legacy.json()) as { choices: { text: string }[] }).choices[0]!.text).toBe('Say this is a test, done')
      await waitFor(() => rec.outcomes.length === 2, 'onComplete')
      // Only ", done" was generated: 2 tokens, not the 6 of the whole text.
      expect(rec.usages[1]).toMatchObject({ source: 'estimated', completionTokens: 2 })
    } finally {
      await local.close()
      bare.stop(true)
    }
  })

  test('without a usage plugin the stream options are the client’s own', async () => {
    const res = await postJson(`${plain.url}/v1/chat/completions`, { model: 'mock-gpt', messages, max_tokens: 2, stream: true })
    expect(parseSse(await res.text()).done).toBe(true)
    expect((upstream.stats.lastBody as Record<string, unknown>).stream_options).toBeUndefined()
  })

  test('legacy completion streams get the same treatment', async () => {
    const res = await postJson(`${gw.url}/v1/completions`, { model: 'mock-gpt', prompt: 'Say hi', max_tokens: 3, stream: true })
    const parsed = parseSse(await res.text())
    expect(parsed.done).toBe(true)
    const events = parsed.events as Array<{ choices: Array<{ text: string }>; usage?: unknown }>
    expect(events.map((e) => e.choices[0]?.text ?? '').join('')).toBe('This is a')
    expect(events.every((e) => e.choices.length > 0)).toBe(true)
    expect((upstream.stats.lastBody as { stream_options?: unknown }).stream_options).toEqual({ include_usage: true })
    await waitFor(() => rec.usages.length === 1, 'onUsage')
    expect(rec.usages[0]).toMatchObject({ source: 'provider', completionTokens: 3 })
  })
})

/** JSON as Python's json.dumps writes it by default: a space after every `,` and `:`. */
function pyDumps(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(pyDumps).join(', ')}]`
  if (typeof value === 'object' && value !== null) return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${pyDumps(v)}`).join(', ')}}`
  return JSON.stringify(value)
}

describe('an upstream that writes its JSON with spaces, as Python servers do', () => {
  const usage = { prompt_tokens: 7, completion_tokens: 2, total_tokens: 9 }
  const chunk = (choices: unknown[], u: unknown) => `data: ${pyDumps({ id: 'chatcmpl-py', object: 'chat.completion.chunk', model: 'mock-gpt', choices, usage: u })}\n\n`
  const body =
    chunk([{ index: 0, delta: { role: 'assistant', content: 'Hello ' }, finish_reason: null }], null) +
    chunk([{ index: 0, delta: { content: 'there' }, finish_reason: 'stop' }], null) +
    chunk([], usage) +
    'data: [DONE]\n\n'
  const rec = recorder()
  let py: ReturnType<typeof Bun.serve>
  let gw: TestGateway

  beforeAll(async () => {
    py = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: () => new Response(body, { headers: { 'content-type': 'text/event-stream' } }) })
    gw = await startGateway(upstreamConfig(`http://127.0.0.1:${py.port}/v1`, { plugins: [rec.plugin] }))
  })
  afterAll(async () => {
    await gw.close()
    py.stop(true)
  })
  beforeEach(async () => {
    await rec.reset()
  })

  test('the usage chunk the client did not ask for is hidden, and its usage reaches onUsage', async () => {
    expect(body).toContain('"usage": {')
    const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages, stream: true })
    const parsed = parseSse(await res.text())
    expect(parsed.done).toBe(true)
    const chunks = parsed.events as ChunkLike[]
    expect(streamedText(chunks)).toBe('Hello there')
    expect(chunks.every((c) => c.choices.length === 1)).toBe(true)
    await waitFor(() => rec.usages.length === 1, 'onUsage')
    expect(rec.usages[0]).toEqual({ promptTokens: 7, completionTokens: 2, cachedTokens: 0, totalTokens: 9, costUsd: null, source: 'provider' })
  })

  test('a client that asked for usage gets the chunk as sent, and the hooks get the provider usage', async () => {
    const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages, stream: true, stream_options: { include_usage: true } })
    expect(await res.text()).toBe(body)
    await waitFor(() => rec.usages.length === 1, 'onUsage')
    expect(rec.usages[0]).toMatchObject({ promptTokens: 7, completionTokens: 2, totalTokens: 9, source: 'provider' })
  })
})

describe('lastUsage: the usage of a whole stream, read from its end', () => {
  const chunk = (obj: unknown) => `data: ${JSON.stringify(obj)}\n\n`
  const usage = { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 }
  test('the last usage event wins; [DONE] after it; CRLF lines', () => {
    const text = chunk({ choices: [{ delta: { content: 'the "usage":{ of it' } }], usage: null }) + chunk({ choices: [], usage }) + 'data: [DONE]\n\n'
    expect(lastUsage(text, undefined)).toMatchObject({ promptTokens: 7, completionTokens: 3, totalTokens: 10, source: 'provider' })
    expect(lastUsage(text.replaceAll('\n', '\r\n'), undefined)).toMatchObject({ totalTokens: 10 })
  })
  test('whitespace after the colon, and `"usage": null` chunks after the one that has it', () => {
    const text = `data: {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}\n\ndata: {"choices": [], "usage": null}\n\ndata: [DONE]\n\n`
    expect(lastUsage(text, undefined)).toMatchObject({ promptTokens: 7, completionTokens: 3, totalTokens: 10, source: 'provider' })
  })
  test('none, or an event it cannot read as one JSON line: null (the caller splits every event)', () => {
    expect(lastUsage(chunk({ choices: [{ delta: { content: 'hi' } }], usage: null }) + 'data: [DONE]\n\n', undefined)).toBeNull()
    // One event over two data: lines (legal SSE, not what OpenAI sends).
    expect(lastUsage('data: {"choices":[],\ndata: "usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\n', undefined)).toBeNull()
  })
})

describe('a mirrored stream longer than what is held for the end', () => {
  test('over 1 MiB: read as it comes from there on, and its usage still reaches the hooks', async () => {
    const rec = recorder()
    const piece = 'x'.repeat(4000)
    const frames: string[] = []
    for (let i = 0; i < 400; i++) frames.push(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: piece } }], usage: null })}\n\n`)
    frames.push(`data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 5, completion_tokens: 400, total_tokens: 405 } })}\n\ndata: [DONE]\n\n`)
    const encoder = new TextEncoder()
    const big = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      fetch: () =>
        new Response(
          new ReadableStream({
            pull(controller) {
              const next = frames.shift()
              if (next === undefined) controller.close()
              else controller.enqueue(encoder.encode(next))
            },
          }),
          { headers: { 'content-type': 'text/event-stream' } },
        ),
    })
    const gw = await startGateway(upstreamConfig(`http://127.0.0.1:${big.port}/v1`, { plugins: [rec.plugin] }))
    try {
      const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages, stream: true, stream_options: { include_usage: true } })
      const text = await res.text()
      expect(text.length).toBeGreaterThan(1_600_000)
      expect(parseSse(text).done).toBe(true)
      await waitFor(() => rec.outcomes.length === 1, 'onComplete')
      expect(rec.usages[0]).toMatchObject({ source: 'provider', completionTokens: 400, totalTokens: 405 })
    } finally {
      await gw.close()
      big.stop(true)
    }
  })
})
