/**
 * Gateway core, error paths: every failure reaches the client as the one envelope with the
 * status from DESIGN.md's table and a request id. Real HTTP on 127.0.0.1; the mock upstreams
 * (OpenAI's format with failure injection, and Anthropic's) are the only fakes. No plugin.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test'
import { brotliCompressSync, deflateSync } from 'node:zlib'
import OpenAI, { APIError } from 'openai'
import { startMockAnthropic, type MockAnthropic } from './fixtures/mock-anthropic.ts'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { startGateway, upstreamConfig, type TestGateway } from './support/gateway.ts'
import { REQUEST_ID, closedPort, expectError, postJson, type ErrorEnvelopeBody } from './support/http.ts'

const SECRET = 'sk-upstream-secret-0123456789'
const MAX_BODY = 4096
const messages = [{ role: 'user', content: 'hello there' }]
const chat = { model: 'mock-gpt', messages }
/** What a message of a failure of the upstream's tells the client to do. */
const RETRY = 'Retry the request; if this keeps happening, tell the operator.'

let upstream: MockUpstream
let gw: TestGateway
let chatUrl: string

beforeAll(async () => {
  upstream = await startMockUpstream()
  const deadPort = await closedPort()
  gw = await startGateway(
    upstreamConfig(upstream.url, {
      providers: [
        { id: 'up', type: 'openai-compatible', baseUrl: upstream.url, keys: [{ id: 'k1', secret: SECRET }] },
        { id: 'dead', type: 'openai-compatible', baseUrl: `http://127.0.0.1:${deadPort}/v1`, keys: [{ id: 'd1', secret: SECRET }] },
        { id: 'slow', type: 'openai-compatible', baseUrl: upstream.url, keys: [{ id: 's1', secret: SECRET }], timeouts: { first_byte_ms: 150 } },
      ],
      models: [
        { name: 'mock-gpt', targets: [{ provider: 'up', model: 'mock-gpt' }] },
        { name: 'dead-model', targets: [{ provider: 'dead', model: 'mock-gpt' }] },
        // The mock upstream waits 3 s before answering a model named mock-slow-3000.
        { name: 'slow-model', targets: [{ provider: 'slow', model: 'mock-slow-3000' }] },
      ],
      limits: { max_body_bytes: MAX_BODY },
    }),
  )
  chatUrl = `${gw.url}/v1/chat/completions`
})
afterAll(async () => {
  await gw.close()
  await upstream.stop()
})
beforeEach(() => upstream.reset())

describe('upstream failures', () => {
  test('upstream 500 → 502 upstream_error', async () => {
    upstream.setFailure({ status: 500 })
    const error = await expectError(await postJson(chatUrl, chat), 'upstream_error')
    expect(error.message).toContain('HTTP 500')
    // What to do, as DESIGN.md asks of every message: a failure of the upstream's may pass.
    expect(error.message).toEndWith(RETRY)
    expect(upstream.stats.requests).toBe(1)
  })

  test("upstream 400 → 400 in our envelope, carrying the upstream's message, param and own code", async () => {
    upstream.setFailure({
      status: 400,
      body: { error: { message: "Invalid 'temperature': decimal above maximum value.", type: 'invalid_request_error', param: 'temperature', code: 'decimal_above_max_value' } },
    })
    const res = await postJson(chatUrl, chat)
    expect(res.status).toBe(400)
    expect(res.headers.get('x-request-id') ?? '').toMatch(REQUEST_ID)
    const { error } = (await res.json()) as ErrorEnvelopeBody
    // The upstream's code says more than the gateway's invalid_request (decided: kept where it is a plain identifier).
    expect(error).toMatchObject({ type: 'invalid_request_error', param: 'temperature', code: 'decimal_above_max_value' })
    expect(error.message).toContain("Invalid 'temperature': decimal above maximum value.")
    // Without a code of its own, the gateway's.
    upstream.setFailure({ status: 400, body: { error: { message: 'bad temperature', type: 'invalid_request_error', param: 'temperature', code: null } } })
    expect((await expectError(await postJson(chatUrl, chat), 'invalid_request', 400)).param).toBe('temperature')
  })

  test('upstream 401 → 502, and the provider secret appears nowhere in the answer', async () => {
    // The upstream echoes the key it was sent, as OpenAI does ("Incorrect API key provided: sk-…").
    upstream.setFailure({ status: 401, body: { error: { message: `Incorrect API key provided: ${SECRET}.`, type: 'invalid_request_error', param: null, code: 'invalid_api_key' } } })
    const res = await postJson(chatUrl, chat)
    const raw = await res.clone().text()
    const error = await expectError(res, 'upstream_error')
    expect(error.message).toContain('401')
    expect(raw).not.toContain(SECRET)
    expect(raw).not.toContain(SECRET.slice(0, 16))
    for (const [, value] of res.headers) expect(value).not.toContain(SECRET)
  })

  test('upstream 429 with Retry-After → 429 rate_limit_exceeded with retry-after', async () => {
    upstream.setFailure({ status: 429, headers: { 'retry-after': '17' } })
    const res = await postJson(chatUrl, chat)
    expect(res.headers.get('retry-after')).toBe('17')
    await expectError(res, 'rate_limit_exceeded')
  })

  test("upstream 429 without Retry-After → 429 rate_limit_exceeded still saying when to retry: from retry-after-ms, the spent limit's reset, else in a second", async () => {
    // OpenAI's retry-after-ms, rounded up; its reset of a spent limit; a date; a local server's bare 429 (vLLM, Ollama).
    const cases: Array<[Record<string, string>, string]> = [
      [{ 'retry-after-ms': '1500' }, '2'],
      [{ 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '6.2s' }, '7'],
      [{}, '1'],
      // A hint past any timer is bounded, where 1e21 went on as "1e+21".
      [{ 'retry-after': '1e21' }, '2147483'],
    ]
    for (const [headers, wait] of cases) {
      upstream.setFailure({ status: 429, headers })
      const res = await postJson(chatUrl, chat)
      expect([headers, res.headers.get('retry-after')]).toEqual([headers, wait])
      const { message } = await expectError(res, 'rate_limit_exceeded')
      expect(message).toEndWith(`Retry after ${wait} s.`)
    }
  })

  test('upstream unreachable (nothing listens on its port) → 502 upstream_error', async () => {
    const error = await expectError(await postJson(chatUrl, { ...chat, model: 'dead-model' }), 'upstream_error')
    expect(error.message).toContain('dead')
    expect(error.message).toEndWith(RETRY)
    expect(error.message).not.toContain(SECRET)
  })

  test('upstream 200 with a web page (a baseUrl that points at a website or a login page) → 502 upstream_error, not a success', async () => {
    for (const stream of [false, true]) {
      upstream.setFailure({ status: 200, body: '<html><body>Sign in to continue</body></html>', headers: { 'content-type': 'text/html; charset=utf-8' }, times: 1 })
      const error = await expectError(await postJson(chatUrl, { ...chat, stream }), 'upstream_error', 502)
      expect(error.message).toContain('web page')
      expect(error.message).toContain('"up"')
    }
  })

  test('upstream 4xx with a web page (a baseUrl with a wrong path, a proxy in the way) → 502 upstream_error, not the client\'s 404 model_not_found', async () => {
    for (const status of [404, 405, 400]) {
      upstream.setFailure({ status, body: '<html><body>404 page not found</body></html>', headers: { 'content-type': 'text/html' }, times: 1 })
      const error = await expectError(await postJson(chatUrl, chat), 'upstream_error', 502)
      expect(error.message).toContain(`HTTP ${status} with a web page`)
      expect(error.message).toContain('"up"')
    }
    // Pages that are about the key (401, 403), the pace (429) or the request's size (413) keep their meaning.
    upstream.setFailure({ status: 413, body: '<html><body>413 Request Entity Too Large</body></html>', headers: { 'content-type': 'text/html' }, times: 1 })
    await expectError(await postJson(chatUrl, chat), 'request_too_large', 413)
  })

  test('an upstream account out of money (OpenAI\'s 429 insufficient_quota, a 402) → 502 upstream_error naming the key, not a rate limit to retry nor the client\'s 402', async () => {
    for (const failure of [
      { status: 429, body: { error: { message: 'You exceeded your current quota, please check your plan and billing details.', type: 'insufficient_quota', param: null, code: 'insufficient_quota' } } },
      { status: 402, body: { error: { message: 'Insufficient Balance', type: 'unknown_error', param: null, code: 'invalid_request_error' } } },
    ]) {
      upstream.setFailure({ ...failure, times: 1 })
      const res = await postJson(chatUrl, chat)
      expect(res.headers.get('retry-after')).toBeNull()
      const error = await expectError(res, 'upstream_error', 502)
      expect(error.message).toContain(`refused the gateway's key "k1" (HTTP ${failure.status})`)
      expect(error.message).toContain(failure.body.error.message)
    }
    // A 429 that is a rate limit stays one.
    upstream.setFailure({ status: 429, times: 1 })
    await expectError(await postJson(chatUrl, chat), 'rate_limit_exceeded', 429)
  })

  test('an upstream redirect (an http:// baseUrl its server moves to https://) → 502 upstream_error saying so without the address, never followed with the key', async () => {
    upstream.setFailure({ status: 301, body: 'Moved', headers: { location: 'https://api.example.test/v1/chat/completions' }, times: 1 })
    const error = await expectError(await postJson(chatUrl, chat), 'upstream_error', 502)
    expect(error.message).toContain('redirect (HTTP 301)')
    // The address is the operator's to read (a sign-in page's may carry a token): not the client's.
    expect(error.message).not.toContain('api.example.test')
    expect(error.message).toContain('baseUrl')
    expect(upstream.stats.requests).toBe(1)
  })

  test('upstream slower than timeouts.first_byte_ms → 504 upstream_timeout', async () => {
    const error = await expectError(await postJson(chatUrl, { ...chat, model: 'slow-model' }), 'upstream_timeout')
    expect(error.message).toContain('150 ms')
    expect(error.message).toEndWith(RETRY)
    expect(upstream.stats.requests).toBe(1)
  })
})

describe('bad requests', () => {
  test('malformed JSON → 400 invalid_request (not 422)', async () => {
    const error = await expectError(await postJson(chatUrl, '{"model": "mock-gpt", "messages": ['), 'invalid_request')
    expect(error.message).toContain('not valid JSON')
    expect(upstream.stats.requests).toBe(0)
  })

  test('an empty body → 400 invalid_request saying it is empty', async () => {
    const error = await expectError(await postJson(chatUrl, ''), 'invalid_request')
    expect(error.message).toContain('empty')
  })

  test('a JSON array body → 400 invalid_request asking for an object', async () => {
    const error = await expectError(await postJson(chatUrl, JSON.stringify([chat])), 'invalid_request')
    expect(error.message).toContain('must be a JSON object')
  })

  test('a JSON scalar body → 400 invalid_request asking for an object', async () => {
    const error = await expectError(await postJson(chatUrl, '"hello"'), 'invalid_request')
    expect(error.message).toContain('must be a JSON object')
  })

  const invalid: Array<[string, string, Record<string, unknown>]> = [
    ['no messages', 'messages', { model: 'mock-gpt' }],
    ['messages not an array', 'messages', { model: 'mock-gpt', messages: 'hi' }],
    ['empty messages', 'messages', { model: 'mock-gpt', messages: [] }],
    ['a message without role', 'messages[0].role', { model: 'mock-gpt', messages: [{ content: 'hi' }] }],
    ['a second message with a numeric role', 'messages[1].role', { model: 'mock-gpt', messages: [{ role: 'user', content: 'a' }, { role: 7, content: 'b' }] }],
    ['no model', 'model', { messages }],
    ['a numeric model', 'model', { model: 42, messages }],
    ['temperature out of range', 'temperature', { ...chat, temperature: 9 }],
    ['max_tokens not an integer', 'max_tokens', { ...chat, max_tokens: 1.5 }],
    // Refused, not rewritten: Elysia's default normalisation once turned these into {} and {"0":"a",…} and forwarded them.
    ['stream_options a number', 'stream_options', { ...chat, stream_options: 5 }],
    ['stream_options a string', 'stream_options', { ...chat, stream_options: 'abc' }],
    ['a message that is a string', 'messages[0]', { model: 'mock-gpt', messages: ['hi'] }],
    ['content a number', 'messages[0].content', { model: 'mock-gpt', messages: [{ role: 'user', content: 5 }] }],
    ['a numeric name', 'messages[0].name', { model: 'mock-gpt', messages: [{ role: 'user', content: 'a', name: 5 }] }],
    ['stream a string', 'stream', { ...chat, stream: 'yes' }],
    ['include_usage a string', 'stream_options.include_usage', { ...chat, stream: true, stream_options: { include_usage: 'yes' } }],
    ['max_completion_tokens zero', 'max_completion_tokens', { ...chat, max_completion_tokens: 0 }],
    ['top_p above 1', 'top_p', { ...chat, top_p: 1.5 }],
    ['frequency_penalty above 2', 'frequency_penalty', { ...chat, frequency_penalty: 2.5 }],
    ['presence_penalty below -2', 'presence_penalty', { ...chat, presence_penalty: -3 }],
    ['top_logprobs above 20', 'top_logprobs', { ...chat, logprobs: true, top_logprobs: 21 }],
    ['n zero', 'n', { ...chat, n: 0 }],
    ['stop a number', 'stop', { ...chat, stop: 5 }],
    ['a stop sequence that is not a string', 'stop[1]', { ...chat, stop: ['END', 7] }],
    ['tools an object', 'tools', { ...chat, tools: { type: 'function' } }],
    ['a tool without its type', 'tools[0].type', { ...chat, tools: [{ function: { name: 'f' } }] }],
    ['a function tool without a name', 'tools[0].function.name', { ...chat, tools: [{ type: 'function', function: {} }] }],
    ['a function tool without its function', 'tools[0].function.name', { ...chat, tools: [{ type: 'function' }] }],
    ['a function name with a space', 'tools[1].function.name', { ...chat, tools: [{ type: 'function', function: { name: 'ok' } }, { type: 'function', function: { name: 'has space!' } }] }],
    ['a function given twice', 'tools[1].function.name', { ...chat, tools: [{ type: 'function', function: { name: 'f' } }, { type: 'function', function: { name: 'f' } }] }],
    ['tool_choice "required" without tools', 'tool_choice', { ...chat, tool_choice: 'required' }],
    ['tool_choice naming a function not in tools', 'tool_choice.function.name', { ...chat, tools: [{ type: 'function', function: { name: 'f' } }], tool_choice: { type: 'function', function: { name: 'g' } } }],
    ['max_tokens no model could take (1e300)', 'max_tokens', { ...chat, max_tokens: 1e300 }],
  ]
  for (const [what, param, body] of invalid) {
    test(`validation: ${what} → 400 invalid_request with param "${param}"`, async () => {
      const error = await expectError(await postJson(chatUrl, body), 'invalid_request')
      expect(error.param).toBe(param)
      expect(error.message).toContain(param)
      expect(upstream.stats.requests).toBe(0)
    })
  }

  test('a key pasted as a function name is echoed masked by the tools checks, never whole', async () => {
    const key = `sk-dev-${'F9'.repeat(20)}`
    const masked = `${key.slice(0, 12)}…${key.slice(-4)}`
    const tool = (name: string) => ({ type: 'function', function: { name } })
    const cases: Array<[string, Record<string, unknown>]> = [
      ['tools[0].function.name', { ...chat, tools: [tool(`${key}!`)] }],
      ['tools[1].function.name', { ...chat, tools: [tool(key), tool(key)] }],
      ['tool_choice.function.name', { ...chat, tools: [tool('f')], tool_choice: { type: 'function', function: { name: key } } }],
    ]
    for (const [param, body] of cases) {
      const error = await expectError(await postJson(chatUrl, body), 'invalid_request')
      expect({ param: error.param, whole: error.message.includes(key) }).toEqual({ param, whole: false })
      expect(error.message).toContain(masked)
    }
    expect(upstream.stats.requests).toBe(0)
  })

  test('a field that may take several shapes is explained by the shape that came closest, not "union value"', async () => {
    const cases: Array<[string, Record<string, unknown>, string, string]> = [
      ['/v1/chat/completions', { ...chat, temperature: 9 }, 'temperature', 'Expected number to be less or equal to 2'],
      ['/v1/chat/completions', { ...chat, max_tokens: 'ten' }, 'max_tokens', 'Expected integer or null'],
      ['/v1/completions', { model: 'mock-gpt', prompt: 5 }, 'prompt', 'Expected string or array or null'],
      // A list of token ids with a string in it: the token-list shape got furthest, so its item is named.
      ['/v1/completions', { model: 'mock-gpt', prompt: [1, 2, 'three'] }, 'prompt[2]', 'Expected integer'],
      ['/v1/completions', { model: 'mock-gpt', prompt: [[1], [2, 'x']] }, 'prompt[1][1]', 'Expected integer'],
      ['/v1/embeddings', { model: 'mock-embed', input: [1.5] }, 'input[0]', 'Expected string or integer or array'],
      ['/v1/embeddings', { model: 'mock-embed', input: 'a', encoding_format: 'hex' }, 'encoding_format', "Expected 'float' or 'base64' or null"],
      ['/v1/embeddings', { model: 'mock-embed', input: 'a', dimensions: 0 }, 'dimensions', 'Expected integer to be greater or equal to 1'],
    ]
    for (const [path, body, param, reason] of cases) {
      const error = await expectError(await postJson(gw.url + path, body), 'invalid_request')
      expect({ path, param: error.param, message: error.message }).toEqual({ path, param, message: `Invalid value for "${param}": ${reason}.` })
    }
    expect(upstream.stats.requests).toBe(0)
  })

  test('tools as OpenAI takes them pass: named functions, a tool_choice naming one, tools of another type as sent', async () => {
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }, { type: 'custom', custom: { name: 'free form' } }]
    const res = await postJson(chatUrl, { ...chat, tools, tool_choice: { type: 'function', function: { name: 'get_weather' } } })
    expect(res.status).toBe(200)
    expect((upstream.stats.lastBody as { tools: unknown }).tools).toEqual(tools)
    expect((await postJson(chatUrl, { ...chat, tools, tool_choice: 'required' })).status).toBe(200)
  })

  test('an embeddings input with nothing to embed (an empty string or list) → 400 naming input', async () => {
    for (const input of ['', [], [''], ['a', ''], [[]]]) {
      const error = await expectError(await postJson(`${gw.url}/v1/embeddings`, { model: 'mock-embed', input }), 'invalid_request')
      expect(error.param ?? '').toStartWith('input')
    }
    expect(upstream.stats.requests).toBe(0)
  })

  test('a compressed body (Content-Encoding gzip, deflate, br) is read; another encoding or a broken one is a 400, a bomb past the limit a 413', async () => {
    const text = JSON.stringify(chat)
    const compressed: Array<[string, Buffer]> = [
      ['gzip', Buffer.from(Bun.gzipSync(text))],
      ['deflate', deflateSync(text)],
      // Raw deflate, without zlib's wrapper, as some clients send it.
      ['deflate', Buffer.from(Bun.deflateSync(text))],
      ['br', brotliCompressSync(text)],
    ]
    for (const [encoding, body] of compressed) {
      const res = await fetch(chatUrl, { method: 'POST', headers: { 'content-type': 'application/json', 'content-encoding': encoding }, body: new Uint8Array(body) })
      expect({ encoding, status: res.status }).toEqual({ encoding, status: 200 })
      expect(((await res.json()) as { object: string }).object).toBe('chat.completion')
    }
    const unknown = await fetch(chatUrl, { method: 'POST', headers: { 'content-encoding': 'zstd' }, body: text })
    expect((await expectError(unknown, 'invalid_request', 400)).message).toContain('Content-Encoding "zstd" is not supported')
    const broken = await fetch(chatUrl, { method: 'POST', headers: { 'content-encoding': 'gzip' }, body: text })
    expect((await expectError(broken, 'invalid_request', 400)).message).toContain('not valid gzip')
    // 1 MB of JSON whitespace in 1 KB of gzip: refused at the limit, never decoded whole.
    const bomb = Buffer.from(Bun.gzipSync(text + ' '.repeat(1_000_000)))
    expect(bomb.byteLength).toBeLessThan(MAX_BODY)
    await expectError(await fetch(chatUrl, { method: 'POST', headers: { 'content-encoding': 'gzip' }, body: new Uint8Array(bomb) }), 'request_too_large', 413)
    expect(upstream.stats.requests).toBe(4)
  })

  test('a missing field is named as missing', async () => {
    const error = await expectError(await postJson(`${gw.url}/v1/completions`, { model: 'mock-gpt' }), 'invalid_request')
    expect(error.param).toBe('prompt')
    expect(error.message).toBe('Missing required parameter "prompt".')
  })

  test('validation on the other POST routes names the field too', async () => {
    const emb = await expectError(await postJson(`${gw.url}/v1/embeddings`, { model: 'mock-gpt' }), 'invalid_request')
    expect(emb.param).toBe('input')
    const comp = await expectError(await postJson(`${gw.url}/v1/completions`, { prompt: 'hi' }), 'invalid_request')
    expect(comp.param).toBe('model')
    expect(upstream.stats.requests).toBe(0)
  })

  test('a body over limits.max_body_bytes, with Content-Length → 413 request_too_large', async () => {
    const body = JSON.stringify({ ...chat, messages: [{ role: 'user', content: 'x'.repeat(MAX_BODY * 2) }] })
    const res = await postJson(chatUrl, body)
    await expectError(res, 'request_too_large')
    expect(upstream.stats.requests).toBe(0)
  })

  test('a chunked body (no Content-Length) over the limit → 413 request_too_large', async () => {
    const piece = new TextEncoder().encode('x'.repeat(1024))
    let sent = 0
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('{"model":"mock-gpt","messages":[{"role":"user","content":"'))
      },
      pull(controller) {
        // Far more than the limit, so a reader that does not stop would be seen holding it all.
        if (sent++ < 64) controller.enqueue(piece)
        else {
          controller.enqueue(new TextEncoder().encode('"}]}'))
          controller.close()
        }
      },
    })
    const res = await fetch(chatUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body, duplex: 'half' } as RequestInit)
    await expectError(res, 'request_too_large')
    expect(upstream.stats.requests).toBe(0)
  })

  test('a chunked body under the limit is read and served', async () => {
    const text = JSON.stringify({ ...chat, max_tokens: 2 })
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        const bytes = new TextEncoder().encode(text)
        controller.enqueue(bytes.slice(0, 10))
        controller.enqueue(bytes.slice(10))
        controller.close()
      },
    })
    const res = await fetch(chatUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body, duplex: 'half' } as RequestInit)
    expect(res.status).toBe(200)
    expect(((await res.json()) as { choices: Array<{ message: { content: string } }> }).choices[0]?.message.content).toBe('This is')
  })

  test('unknown model → 404 model_not_found naming the model', async () => {
    const error = await expectError(await postJson(chatUrl, { ...chat, model: 'gpt-nonexistent' }), 'model_not_found')
    expect(error.param).toBe('model')
    expect(error.message).toContain('gpt-nonexistent')
    await expectError(await fetch(`${gw.url}/v1/models/gpt-nonexistent`), 'model_not_found')
    expect(upstream.stats.requests).toBe(0)
  })

  test('an unknown model name is echoed cut short (a long name does not come back whole), and one shaped like a key masked', async () => {
    const long = 'm'.repeat(3_000)
    const key = `sk-dev-${'A1b2C3d4'.repeat(5)}`
    for (const answer of [
      await postJson(chatUrl, { ...chat, model: long }),
      await fetch(`${gw.url}/v1/models/${long}`),
      await postJson(`${gw.url}/v1/tokens/count`, { ...chat, model: long }),
    ]) {
      const error = await expectError(answer, 'model_not_found')
      expect(error.message.length).toBeLessThan(500)
      expect(error.message).toContain('m'.repeat(256) + '…')
    }
    for (const answer of [await postJson(chatUrl, { ...chat, model: key }), await fetch(`${gw.url}/v1/models/${key}`)]) {
      const error = await expectError(answer, 'model_not_found')
      expect(error.message).not.toContain(key)
      expect(error.message).toContain(key.slice(0, 12))
    }
  })
})

describe('a request the provider adapter cannot translate', () => {
  let anthropic: MockAnthropic
  let local: TestGateway

  beforeAll(async () => {
    anthropic = await startMockAnthropic()
    local = await startGateway({
      providers: [{ id: 'claude', type: 'anthropic', baseUrl: anthropic.url, keys: [{ id: 'an-1', secret: SECRET }] }],
      models: [{ name: 'claude-test', targets: [{ provider: 'claude', model: 'claude-sonnet-4-5' }] }],
      plugins: [],
    })
  })
  afterAll(async () => {
    await local.close()
    await anthropic.stop()
  })

  test('→ 400 invalid_request whose param names the field the adapter refused', async () => {
    const error = await expectError(await postJson(`${local.url}/v1/chat/completions`, { ...chat, model: 'claude-test', n: 2 }), 'invalid_request', 400)
    expect(error.message).toContain('n must be 1')
    expect(error.param).toBe('n')
    expect(anthropic.stats.requests).toBe(0)
  })
})

describe('routing errors', () => {
  test('unknown route → 404 not_found', async () => {
    await expectError(await fetch(`${gw.url}/v1/nothing-here`), 'not_found')
    await expectError(await postJson(`${gw.url}/v2/chat/completions`, chat), 'not_found')
    await expectError(await fetch(`${gw.url}/`), 'not_found')
  })

  test('wrong method on a known route → 405 method_not_allowed with Allow', async () => {
    const get = await fetch(chatUrl)
    expect(get.headers.get('allow')).toBe('POST, OPTIONS')
    await expectError(get, 'method_not_allowed')

    const del = await fetch(`${gw.url}/v1/models/mock-gpt`, { method: 'DELETE' })
    expect(del.headers.get('allow')).toBe('GET, HEAD, OPTIONS')
    await expectError(del, 'method_not_allowed')

    const post = await fetch(`${gw.url}/health`, { method: 'POST' })
    expect(post.headers.get('allow')).toBe('GET, HEAD, OPTIONS')
    await expectError(post, 'method_not_allowed')
  })

  test('a key pasted into the path is echoed masked by the 404 (of a route, of a static asset) and the 405, never whole', async () => {
    const key = `sk-dev-${'Q7'.repeat(20)}`
    const masked = `${key.slice(0, 12)}…${key.slice(-4)}`
    for (const [method, path, code] of [
      ['GET', `/v1/key/${key}`, 'not_found'],
      ['GET', `/${key}`, 'not_found'],
      ['POST', `/v1/chat/completions/${key}/x`, 'not_found'],
      ['DELETE', `/v1/models/${key}`, 'method_not_allowed'],
      ['GET', `/swagger/assets/${key}`, 'not_found'],
      ['GET', `/console/assets/${key}`, 'not_found'],
    ] as const) {
      const error = await expectError(await fetch(`${gw.url}${path}`, { method }), code)
      expect({ path, message: error.message.includes(key) }).toEqual({ path, message: false })
      expect(error.message).toContain(masked)
    }
  })
})

describe('the openai client sees APIError with the status and code', () => {
  const client = () => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 })

  async function rejection(work: Promise<unknown>): Promise<APIError> {
    const error = await work.then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(error).toBeInstanceOf(APIError)
    return error as APIError
  }

  test('unknown model', async () => {
    const error = await rejection(client().chat.completions.create({ model: 'gpt-nonexistent', messages: [{ role: 'user', content: 'hi' }] }))
    expect(error.status).toBe(404)
    expect(error.code).toBe('model_not_found')
    expect(error.type).toBe('not_found_error')
    expect(error.param).toBe('model')
    expect(error.requestID ?? '').toMatch(REQUEST_ID)
  })

  test('upstream 500', async () => {
    upstream.setFailure({ status: 500 })
    const error = await rejection(client().chat.completions.create({ model: 'mock-gpt', messages: [{ role: 'user', content: 'hi' }] }))
    expect(error.status).toBe(502)
    expect(error.code).toBe('upstream_error')
  })

  test('upstream 429 on a stream', async () => {
    upstream.setFailure({ status: 429, headers: { 'retry-after': '3' } })
    const error = await rejection(client().chat.completions.create({ model: 'mock-gpt', messages: [{ role: 'user', content: 'hi' }], stream: true }))
    expect(error.status).toBe(429)
    expect(error.code).toBe('rate_limit_exceeded')
    expect(error.headers?.get('retry-after')).toBe('3')
  })

  test('validation', async () => {
    const error = await rejection(client().chat.completions.create({ model: 'mock-gpt', messages: [] }))
    expect(error.status).toBe(400)
    expect(error.code).toBe('invalid_request')
    expect(error.param).toBe('messages')
  })
})
