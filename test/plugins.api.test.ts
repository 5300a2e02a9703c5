/**
 * The plugin API's contract at its edges: names and options checked at boot, what hooks may
 * return, how failures name their plugin, plugin routes beside the core's, and custom
 * authentication beside the built-in one. Real HTTP on 127.0.0.1; the mock upstream is the only fake.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'bun:test'
import { ConfigError, loadConfig } from '../src/config/load.ts'
import { GatewayError } from '../src/errors.ts'
import { resolvePlugins } from '../src/plugin-loader.ts'
import { definePlugin, type Identity, type StreamChunk, type Usage } from '../src/plugin.ts'
import { t } from '../src/index.ts'
import { priceOf } from '../src/lib/usage.ts'
import { BUILTIN_PLUGINS } from '../plugins/index.ts'
import { blockPii } from '../plugins/examples/block-pii/index.ts'
import { parseSse, startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { startMockAnthropic } from './fixtures/mock-anthropic.ts'
import { startMockGemini } from './fixtures/mock-gemini.ts'
import { startGateway, upstreamConfig, type TestGateway } from './support/gateway.ts'
import { expectError, postJson, streamedText, waitFor, type ChunkLike } from './support/http.ts'
import { capturingLogger } from './support/logging.ts'

const messages = [{ role: 'user', content: 'hello there' }]
const chat = { model: 'mock-gpt', messages, max_tokens: 3 }

let upstream: MockUpstream
const gateways: TestGateway[] = []

beforeAll(async () => {
  upstream = await startMockUpstream()
})
afterAll(async () => {
  await upstream.stop()
})
beforeEach(() => upstream.reset())
afterEach(async () => {
  await Promise.all(gateways.splice(0).map((g) => g.close()))
})

async function boot(plugins: unknown[], extra: Parameters<typeof upstreamConfig>[1] = {}, logger?: ReturnType<typeof capturingLogger>): Promise<TestGateway> {
  const gw = await startGateway(upstreamConfig(upstream.url, { plugins, ...extra }), logger ? { gateway: { logger: logger.logger } } : {})
  gateways.push(gw)
  return gw
}

/** The problems of a config whose plugins do not resolve, as `bun run start` finds them (a ConfigError: exit 2, nothing opened). */
async function pluginProblems(plugins: unknown[]): Promise<string[]> {
  const error = await loadConfig({
    config: upstreamConfig(upstream.url, { plugins }),
    env: { DATABASE_URL: 'sqlite::memory:', LOG_LEVEL: 'silent' },
    resolvePlugins: (source) => resolvePlugins(source, BUILTIN_PLUGINS),
  }).catch((e: unknown) => e)
  expect(error).toBeInstanceOf(ConfigError)
  return (error as ConfigError).problems
}

describe('plugin names at boot', () => {
  test('two different plugins with one name stop the boot, naming the name and both entries', async () => {
    const tagger = definePlugin({ name: 'policy', setup: () => ({ admit: () => undefined }) })
    const blocker = definePlugin({ name: 'policy', setup: () => ({ admit: () => undefined }) })
    const problems = await pluginProblems(['auth', tagger, blocker])
    expect(problems).toEqual([expect.stringContaining('/plugins/2: plugin "policy" is another plugin than the "policy" at /plugins/1')])
  })

  test('a user plugin named like a built-in one is refused too', async () => {
    const mine = definePlugin({ name: 'auth', setup: () => ({ stats: () => ({ hits: 100, misses: 0 }) }) })
    const problems = await pluginProblems(['auth', mine])
    expect(problems).toEqual([expect.stringContaining('/plugins/1: plugin "auth" is another plugin than the "auth" at /plugins/0')])
  })

  test('a plugin without a name of words (none, blank, a control character) is refused at its entry', async () => {
    const named = (name: unknown) => definePlugin({ name: name as string, setup: () => ({ admit: () => undefined }) })
    const problems = await pluginProblems([named(undefined), named(''), named('  '), named('two\nlines'), named(42), named('fine-name')])
    expect(problems).toEqual([
      '/plugins/0: a plugin needs a name (definePlugin({ name: "my-plugin", ... })): it names the plugin in every error, log line and metric; got undefined',
      '/plugins/1: a plugin needs a name (definePlugin({ name: "my-plugin", ... })): it names the plugin in every error, log line and metric; got ""',
      '/plugins/2: a plugin needs a name (definePlugin({ name: "my-plugin", ... })): it names the plugin in every error, log line and metric; got "  "',
      '/plugins/3: a plugin\'s name is one line of at most 100 characters, without control characters; got "two\\nlines"',
      '/plugins/4: a plugin needs a name (definePlugin({ name: "my-plugin", ... })): it names the plugin in every error, log line and metric; got 42',
    ])
  })

  test('the same plugin listed twice with equal options still registers once', async () => {
    const once = definePlugin({ name: 'once', setup: () => ({}) })
    const gw = await boot([once, once(), { use: 'auth' }, 'auth'])
    expect(gw.gateway.plugins.map((p) => p.name)).toEqual(['once', 'auth'])
  })
})

describe("options declared with the exported t (Elysia's)", () => {
  const received: unknown[] = []
  const counter = definePlugin({
    name: 'counter',
    options: t.Object({
      max: t.Integer({ minimum: 1, default: 5 }),
      ratio: t.Optional(t.Numeric({ maximum: 1 })),
      on: t.BooleanString({ default: true }),
      since: t.Optional(t.Date()),
    }),
    setup: ({ options }) => {
      received.push(options)
      return {}
    },
  })
  const problemsOf = (options: Record<string, unknown>) => pluginProblems([counter(options as never)])

  test('a string where a number or boolean is wanted is refused, saying so, not handed to setup as a string', async () => {
    expect(await problemsOf({ max: '10' })).toEqual(['/plugins/0: plugin "counter" option /max: Expected integer (got a string; write the value without quotes)'])
    expect(await problemsOf({ max: 2, ratio: '0.5', on: 'false' })).toEqual([
      '/plugins/0: plugin "counter" option /ratio: Expected number (got a string; write the value without quotes)',
      '/plugins/0: plugin "counter" option /on: Expected boolean (got a string; write the value without quotes)',
    ])
  })

  test('constraints are checked, with what is wrong', async () => {
    expect(await problemsOf({ max: -3 })).toEqual(['/plugins/0: plugin "counter" option /max: Expected integer to be greater or equal to 1'])
    expect(await problemsOf({ max: 2, ratio: 1.5 })).toEqual(['/plugins/0: plugin "counter" option /ratio: Expected number to be less or equal to 1'])
  })

  test('setup receives values of the declared types, defaults filled in', async () => {
    received.length = 0
    await boot([counter({ max: 10, ratio: 0.25, on: false, since: '2025-01-02T03:04:05Z' } as never), counter])
    expect(received[0]).toEqual({ max: 10, ratio: 0.25, on: false, since: new Date('2025-01-02T03:04:05Z') })
    expect(received[1]).toEqual({ max: 5, on: true })
  })
})

describe('a factory call in TypeScript', () => {
  test('leaves out options that have defaults (`bun run typecheck` compiles this file); boot fills them in', async () => {
    const header = definePlugin({
      name: 'header',
      options: t.Object({ name: t.String({ default: 'x-end-user' }), required: t.Boolean({ default: true }) }),
      setup: () => ({}),
    })
    const instances = await resolvePlugins({ plugins: [blockPii({ action: 'redact' }), header({}), header({ name: 'x-user' })], baseDir: '.' }, BUILTIN_PLUGINS)
    expect(instances.map((i) => i.options)).toEqual([
      { action: 'redact', detect: expect.any(Array), replacement: '[REDACTED]' },
      { name: 'x-end-user', required: true },
      { name: 'x-user', required: true },
    ])
  })
})

describe('an authenticate hook of your own beside the built-in auth', () => {
  /** Internal services call with x-internal-service; everyone else with an API key, checked by auth. */
  const internalAuth = definePlugin({
    name: 'internal-auth',
    setup: () => ({
      authenticate(req) {
        const service = req.request.headers.get('x-internal-service')
        if (!service) return
        const identity: Identity = { keyId: `svc:${service}`, userId: `svc-user:${service}`, teamId: 'team-internal', environment: 'dev', models: ['mock-gpt'], scopes: ['chat'], attributes: {} }
        req.identity = identity
      },
    }),
  })

  test("listed before auth, its callers are served; auth still refuses everyone else", async () => {
    const gw = await boot([internalAuth, { use: 'auth', options: { demo_key: false } }])
    const served = await postJson(`${gw.url}/v1/chat/completions`, chat, { 'x-internal-service': 'billing' })
    expect(served.status).toBe(200)
    await served.arrayBuffer()
    expect(upstream.stats.requests).toBe(1)
    await expectError(await postJson(`${gw.url}/v1/chat/completions`, chat), 'missing_api_key')
    await expectError(await postJson(`${gw.url}/v1/chat/completions`, chat, { authorization: 'Bearer sk-dev-not-a-key-0123456789abcdefghijklmnopq' }), 'invalid_api_key')
  })

  test('listed before auth, its callers may send a body of unknown length: auth, not first, judges no key before the body is read', async () => {
    const gw = await boot([internalAuth, { use: 'auth', options: { demo_key: false } }])
    const text = JSON.stringify({ ...chat, messages: [{ role: 'user', content: 'x'.repeat(40_000) }] })
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(text))
        controller.close()
      },
    })
    const res = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-internal-service': 'billing' }, body, duplex: 'half' } as RequestInit)
    expect(res.status).toBe(200)
    await res.arrayBuffer()
  })

  test('GET /v1/key tells what the identity holds', async () => {
    const gw = await boot([internalAuth, { use: 'auth', options: { demo_key: false } }])
    const res = await fetch(`${gw.url}/v1/key`, { headers: { 'x-internal-service': 'billing' } })
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ id: 'svc:billing', user_id: 'svc-user:billing', team_id: 'team-internal', environment: 'dev', models: ['mock-gpt'], scopes: ['chat'] })
  })
})

describe("a plugin's routes", () => {
  const routesOf = (name: string, add: (app: import('elysia').Elysia) => unknown) => definePlugin({ name, setup: () => ({ routes: add }) })
  const bootError = (plugins: unknown[]) => boot(plugins).then(() => undefined, (e: unknown) => e)

  test('may not replace a route the gateway serves: the boot fails naming the plugin, the method and the path', async () => {
    const admin = routesOf('shadow', (app) => app.post('/admin/keys', () => ({ shadowed: true })))
    expect(String(await bootError([{ use: 'auth', options: { demo_key: false } }, admin]))).toContain('plugin "shadow" failed to add its routes: POST /admin/keys is served by plugin "auth" already')
    const health = routesOf('shadow', (app) => app.get('/health', () => 'mine'))
    expect(String(await bootError([health]))).toContain('plugin "shadow" failed to add its routes: GET /health is served by the gateway already')
    // Another name for the parameter is the same route to the router.
    const model = routesOf('shadow', (app) => app.get('/v1/models/:model', () => 'mine'))
    expect(String(await bootError([model]))).toContain('GET /v1/models/:model is served by the gateway already')
  })

  test("nor another plugin's", async () => {
    const first = routesOf('first', (app) => app.get('/plugin/feedback', () => 'first'))
    const second = routesOf('second', (app) => app.all('/plugin/feedback', () => 'second'))
    expect(String(await bootError([first, second]))).toContain('plugin "second" failed to add its routes: ALL /plugin/feedback is served by plugin "first" already')
    // Other methods on a path of the core's are the plugin's to add.
    const gw = await boot([routesOf('extra', (app) => app.post('/health', () => 'posted'))])
    expect(await (await fetch(`${gw.url}/health`, { method: 'POST' })).text()).toBe('posted')
    expect((await fetch(`${gw.url}/health`)).status).toBe(200)
  })

  test('authenticate with ctx.authenticate: the identity, or the refusal to answer with', async () => {
    const internal = definePlugin({
      name: 'internal-auth',
      setup: () => ({
        authenticate(req) {
          const service = req.request.headers.get('x-internal-service')
          if (service) req.identity = { keyId: `svc:${service}`, userId: 'svc', teamId: null, environment: 'dev', models: null, scopes: null, attributes: {} }
        },
      }),
    })
    const feedback = definePlugin({
      name: 'feedback',
      setup: ({ authenticate }) => ({
        routes: (app) =>
          app.get('/v1/feedback', async ({ request, set }) => {
            const caller = await authenticate(request)
            if (caller instanceof GatewayError) return caller.toResponse(set.headers['x-request-id'] as string)
            return { key: caller.keyId }
          }),
      }),
    })
    const gw = await boot([internal, { use: 'auth', options: { demo_key: false } }, feedback])
    await expectError(await fetch(`${gw.url}/v1/feedback`), 'missing_api_key')
    await expectError(await fetch(`${gw.url}/v1/feedback`, { headers: { authorization: 'Bearer sk-dev-not-a-key-0123456789abcdefghijklmnopq' } }), 'invalid_api_key')
    const served = await fetch(`${gw.url}/v1/feedback`, { headers: { 'x-internal-service': 'billing' } })
    expect(await served.json()).toEqual({ key: 'svc:billing' })

    // With no plugin that checks keys, the route is closed rather than open.
    const open = await boot([feedback])
    await expectError(await fetch(`${open.url}/v1/feedback`, { headers: { authorization: 'Bearer anything' } }), 'missing_api_key')
  })

  test('a handler may return a GatewayError, as a hook does: its envelope, status and headers, with the request id', async () => {
    const gw = await boot([
      routesOf('refusing', (app) =>
        app
          .get('/refusing/now', () => new GatewayError('rate_limit_exceeded', 'Slow down, please.', { headers: { 'retry-after': '5' } }))
          .get('/refusing/later', async () => new GatewayError('not_found', 'Nothing here.'))),
    ])
    const now = await fetch(`${gw.url}/refusing/now`)
    expect(now.headers.get('retry-after')).toBe('5')
    expect((await expectError(now, 'rate_limit_exceeded')).message).toBe('Slow down, please.')
    expect((await expectError(await fetch(`${gw.url}/refusing/later`), 'not_found')).message).toBe('Nothing here.')
  })
})

describe('failures name their plugin', () => {
  test("a route handler that throws: 500 internal_error with the request id, and the log line names the plugin", async () => {
    const log = capturingLogger('error')
    const faulty = definePlugin({
      name: 'faulty',
      setup: () => ({
        routes: (app) =>
          app.get('/v1/faulty/:id', () => {
            throw new Error('route handler boom')
          }),
      }),
    })
    const gw = await boot([faulty], {}, log)
    const res = await fetch(`${gw.url}/v1/faulty/1`)
    const id = await expectInternalError(res)
    expect(log.lines).toEqual([expect.objectContaining({ msg: 'routes hook failed', plugin: 'faulty', request_id: id, error: expect.stringContaining('route handler boom') })])
  })

  /** A plugin that answers from its hooks what `answer` gives. */
  const answering = (name: string, answer: () => unknown) =>
    definePlugin({ name, setup: () => ({ admit: () => answer() as undefined, route: () => undefined }) })
  const quiet = definePlugin({ name: 'quiet', setup: () => ({ admit: () => undefined }) })

  test('an admit hook that returns something else than a GatewayError or nothing: 500, naming the plugin and what it returned', async () => {
    for (const [answer, shown] of [
      [() => 'not allowed', 'it returned the string "not allowed"'],
      [() => ({ error: 'nope', status: 403 }), 'it returned an object that is no GatewayError (Object)'],
      [() => true, 'it returned boolean true'],
      [() => Promise.resolve('late'), 'it returned the string "late"'],
    ] as const) {
      // Alone in its stage, and after another plugin's hook (the stage's hooks run in turn).
      for (const plugins of [[answering('faulty', answer)], [quiet, answering('faulty', answer)]]) {
        const log = capturingLogger('error')
        const gw = await boot(plugins, {}, log)
        const id = await expectInternalError(await postJson(`${gw.url}/v1/chat/completions`, chat))
        expect(log.lines).toEqual([expect.objectContaining({ msg: 'admit hook failed', plugin: 'faulty', request_id: id, error: expect.stringContaining(shown) })])
      }
    }
    expect(upstream.stats.requests).toBe(0)
  })

  test('a route hook that returns no plan names the plugin', async () => {
    const log = capturingLogger('error')
    const router = definePlugin({ name: 'router', setup: () => ({ route: () => ({ target: 'up' }) as never }) })
    const gw = await boot([router], {}, log)
    const id = await expectInternalError(await postJson(`${gw.url}/v1/chat/completions`, chat))
    expect(log.lines).toEqual([expect.objectContaining({ msg: 'route hook failed', plugin: 'router', request_id: id, error: expect.stringContaining('a RoutePlan') })])
    // Named once: the failure is not wrapped in another naming the same plugin.
    expect(String(log.lines[0]!.error)).not.toContain('HookFailure')
  })

  test('an unknown error code is refused where the GatewayError is made, listing the codes; in a hook, the failure names the plugin', async () => {
    expect(() => new GatewayError('pii_detected' as never, 'PII found')).toThrow('unknown error code "pii_detected"; use one of missing_api_key, invalid_api_key')
    const log = capturingLogger('error')
    const gw = await boot([answering('faulty', () => new GatewayError('pii_detected' as never, 'PII found'))], {}, log)
    const id = await expectInternalError(await postJson(`${gw.url}/v1/chat/completions`, chat))
    expect(log.lines).toEqual([expect.objectContaining({ msg: 'admit hook failed', plugin: 'faulty', request_id: id, error: expect.stringContaining('unknown error code "pii_detected"') })])
  })

  test('a describe hook that throws: GET /v1/key answers 500 and the log names the plugin', async () => {
    const log = capturingLogger('error')
    const facts = definePlugin({ name: 'facts', setup: () => ({ describe: () => ({ fine: true }) }) })
    const broken = definePlugin({
      name: 'broken-facts',
      setup: () => ({
        describe: () => {
          throw new Error('describe boom')
        },
      }),
    })
    const gw = await boot([facts, broken], {}, log)
    const id = await expectInternalError(await fetch(`${gw.url}/v1/key`))
    expect(log.lines).toEqual([expect.objectContaining({ msg: 'describe hook failed', plugin: 'broken-facts', request_id: id, error: expect.stringContaining('describe boom') })])
  })

  test.each([
    ['a string', 'abc', 'the string "abc"'],
    ['an array', [1, 2], 'an object that is no plain object (Array)'],
    ['a number', 42, 'number 42'],
  ])('a describe hook that answers %s (no facts object): GET /v1/key answers 500 naming the plugin, not fields "0", "1"…', async (_what, answer, shown) => {
    const log = capturingLogger('error')
    const odd = definePlugin({ name: 'odd-facts', setup: () => ({ describe: () => answer as never }) })
    const gw = await boot([odd], {}, log)
    const id = await expectInternalError(await fetch(`${gw.url}/v1/key`))
    expect(log.lines).toEqual([expect.objectContaining({ msg: 'describe hook failed', plugin: 'odd-facts', request_id: id, error: expect.stringContaining(`it returned ${shown}`) })])
  })

  test("the logger setup receives names the plugin on every line", async () => {
    const log = capturingLogger('info')
    const chatty = definePlugin({
      name: 'chatty',
      setup: ({ logger }) => {
        logger.info('starting', { mode: 'fast' })
        logger.warn('no fields')
        return {}
      },
    })
    await boot([chatty], {}, log)
    expect(log.lines.filter((l) => l.plugin === 'chatty').map((l) => [l.msg, l.mode])).toEqual([
      ['starting', 'fast'],
      ['no fields', undefined],
    ])
  })
})

/** A 500 internal_error envelope that quotes its request id; returns the id. */
async function expectInternalError(res: Response): Promise<string> {
  expect(res.status).toBe(500)
  const id = res.headers.get('x-request-id')!
  const body = (await res.json()) as { error: { code: string; message: string } }
  expect(body.error.code).toBe('internal_error')
  expect(body.error.message).toContain(id)
  return id
}

describe('onStreamChunk', () => {
  const streamed = { ...chat, max_tokens: 5, stream: true }
  const contentOf = (chunk: StreamChunk): string | undefined => (chunk.data.choices as ChunkLike['choices'] | undefined)?.[0]?.delta.content ?? undefined

  test('a hook replaces a chunk by returning new data; the hooks after see it; returning nothing keeps the bytes', async () => {
    const seenAfter: string[] = []
    const upper = definePlugin({
      name: 'upper',
      setup: () => ({
        onStreamChunk: (_req, chunk) => {
          const choices = chunk.data.choices as ChunkLike['choices']
          const content = contentOf(chunk)
          if (!content || content === ' mock') return
          return { ...chunk.data, choices: [{ ...choices[0]!, delta: { ...choices[0]!.delta, content: content.toUpperCase() } }] }
        },
      }),
    })
    const after = definePlugin({ name: 'after', setup: () => ({ onStreamChunk: (_req, chunk) => void seenAfter.push(contentOf(chunk) ?? '') }) })
    const gw = await boot([upper, after])
    const res = await postJson(`${gw.url}/v1/chat/completions`, streamed)
    const text = await res.text()
    const parsed = parseSse(text)
    expect(parsed.done).toBe(true)
    expect(streamedText(parsed.events as ChunkLike[])).toBe('THIS IS A mock REPLY')
    expect(seenAfter).toEqual(['', 'THIS', ' IS', ' A', ' mock', ' REPLY', ''])
    // The chunks no hook replaced go on as the upstream wrote them.
    const plain = await postJson(`${gw.url}/v1/chat/completions`, streamed)
    const upstreamLine = (await plain.text()).split('\n').find((line) => line.includes('" mock"'))!
    expect(text).toContain(upstreamLine)
  })

  test('chunk.data is read-only to TypeScript (`bun run typecheck` compiles this file); false still drops the chunk', async () => {
    const dropper = definePlugin({
      name: 'dropper',
      setup: () => ({
        onStreamChunk: (_req, chunk) => {
          // @ts-expect-error an edit in place would never reach the client: return new data instead
          if (chunk.data.never) chunk.data.choices = []
          return contentOf(chunk) === ' mock' ? false : undefined
        },
      }),
    })
    const gw = await boot([dropper])
    const parsed = parseSse(await (await postJson(`${gw.url}/v1/chat/completions`, streamed)).text())
    expect(streamedText(parsed.events as ChunkLike[])).toBe('This is a reply')
  })

  test('a hook that throws on every chunk is logged once per request, and still called for each chunk', async () => {
    const log = capturingLogger('error')
    let calls = 0
    const failing = definePlugin({
      name: 'failing',
      setup: () => ({
        onStreamChunk: () => {
          calls++
          throw new Error('chunk boom')
        },
      }),
    })
    const gw = await boot([failing], {}, log)
    const ids: string[] = []
    for (let i = 0; i < 2; i++) {
      const res = await postJson(`${gw.url}/v1/chat/completions`, streamed)
      ids.push(res.headers.get('x-request-id')!)
      expect(streamedText(parseSse(await res.text()).events as ChunkLike[])).toBe('This is a mock reply')
    }
    expect(calls).toBe(14)
    expect(log.lines.map((l) => [l.msg, l.plugin, l.request_id])).toEqual(ids.map((id) => ['onStreamChunk hook failed', 'failing', id]))
  })

  test.each([
    ['a promise (an async hook: it is not awaited)', async () => false, 'a Promise'],
    ['an array', () => [1, 2], 'an Array'],
    ['a string', () => 'hello', 'the string "hello"'],
    ['a number', () => 0, 'number 0'],
  ])('a hook that returns %s leaves each chunk as it came, logged once naming the plugin', async (_what, answer, shown) => {
    const log = capturingLogger('error')
    const wrong = definePlugin({ name: 'wrong', setup: () => ({ onStreamChunk: answer as unknown as () => undefined }) })
    const gw = await boot([wrong], {}, log)
    const res = await postJson(`${gw.url}/v1/chat/completions`, streamed)
    const parsed = parseSse(await res.text())
    expect(parsed.done).toBe(true)
    expect(streamedText(parsed.events as ChunkLike[])).toBe('This is a mock reply')
    expect(log.lines.map((l) => [l.msg, l.plugin, l.request_id])).toEqual([['onStreamChunk hook failed', 'wrong', res.headers.get('x-request-id')]])
    expect(String(log.lines[0]!.error)).toContain(`it returned ${shown}`)
  })
})

describe('a stream the client cuts off', () => {
  test("from Anthropic: the usage keeps message_start's prompt and cache tokens; only the completion is estimated", async () => {
    const claude = await startMockAnthropic({ chunkDelayMs: 40, cacheReadTokens: 1000 })
    try {
      const usages: Usage[] = []
      const recorder = definePlugin({ name: 'recorder', setup: () => ({ onUsage: (_req, usage) => void usages.push(usage) }) })
      const gw = await boot([recorder], {
        providers: [{ id: 'claude', type: 'anthropic', baseUrl: claude.url, keys: [{ id: 'an-1', secret: 'sk-ant-test-0123456789' }] }],
        models: [{ name: 'claude', targets: [{ provider: 'claude', model: 'claude-sonnet-4-5' }] }],
      })
      // Asked for by the gateway (the stream is rewritten to hide it) or by the client (the stream goes on natively, a copy read).
      for (const streamOptions of [{}, { stream_options: { include_usage: true } }]) {
        usages.length = 0
        const body = { model: 'claude', messages, max_tokens: 12, stream: true, ...streamOptions }
        // The same request streamed whole: the provider's count of its prompt.
        await (await postJson(`${gw.url}/v1/chat/completions`, body)).text()
        await waitFor(() => usages.length === 1, 'onUsage of the whole stream')
        expect(usages[0]).toMatchObject({ cachedTokens: 1000, source: 'provider' })
        const res = await postJson(`${gw.url}/v1/chat/completions`, body)
        const reader = res.body!.getReader()
        let text = ''
        while (text.split('data: ').length < 4) text += new TextDecoder().decode((await reader.read()).value)
        await reader.cancel()
        await waitFor(() => usages.length === 2, 'onUsage of the stream cut off')
        expect(usages[1]).toMatchObject({ promptTokens: usages[0]!.promptTokens, cachedTokens: 1000, source: 'estimated' })
        expect(usages[1]!.completionTokens).toBeLessThan(usages[0]!.completionTokens)
      }
    } finally {
      await claude.stop()
    }
  })

  test("from Gemini: the usage keeps the prompt tokens its chunks stated; only the completion is estimated", async () => {
    const gemini = await startMockGemini({ chunkDelayMs: 40 })
    try {
      const usages: Usage[] = []
      const recorder = definePlugin({ name: 'recorder', setup: () => ({ onUsage: (_req, usage) => void usages.push(usage) }) })
      const gw = await boot([recorder], {
        providers: [{ id: 'google', type: 'gemini', baseUrl: gemini.url, keys: [{ id: 'gm-1', secret: 'AIzaSy-test-0123456789' }] }],
        models: [{ name: 'gemini', targets: [{ provider: 'google', model: 'gemini-2.5-flash' }] }],
      })
      // An image: what the gateway would estimate for it (765 tokens) is not what Gemini counts.
      const png = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=='
      const withImage = [{ role: 'user', content: [{ type: 'text', text: 'what is this?' }, { type: 'image_url', image_url: { url: `data:image/png;base64,${png}` } }] }]
      for (const streamOptions of [{}, { stream_options: { include_usage: true } }]) {
        usages.length = 0
        const body = { model: 'gemini', messages: withImage, max_tokens: 12, stream: true, ...streamOptions }
        await (await postJson(`${gw.url}/v1/chat/completions`, body)).text()
        await waitFor(() => usages.length === 1, 'onUsage of the whole stream')
        expect(usages[0]).toMatchObject({ source: 'provider' })
        const res = await postJson(`${gw.url}/v1/chat/completions`, body)
        const reader = res.body!.getReader()
        let text = ''
        while (text.split('data: ').length < 4) text += new TextDecoder().decode((await reader.read()).value)
        await reader.cancel()
        await waitFor(() => usages.length === 2, 'onUsage of the stream cut off')
        expect(usages[1]).toMatchObject({ promptTokens: usages[0]!.promptTokens, source: 'estimated' })
        expect(usages[1]!.completionTokens).toBeLessThan(usages[0]!.completionTokens)
      }
    } finally {
      await gemini.stop()
    }
  })

  test("from Anthropic: the cache writes message_start stated are priced as writes in the cut-off stream's estimate, as in a whole one", async () => {
    const claude = await startMockAnthropic({ chunkDelayMs: 40, cacheCreationTokens: 2000 })
    const pricing = { input: 3, output: 15 }
    try {
      const usages: Usage[] = []
      const recorder = definePlugin({ name: 'recorder', setup: () => ({ onUsage: (_req, usage) => void usages.push(usage) }) })
      const gw = await boot([recorder], {
        providers: [{ id: 'claude', type: 'anthropic', baseUrl: claude.url, keys: [{ id: 'an-1', secret: 'sk-ant-test-0123456789' }] }],
        models: [{ name: 'claude', targets: [{ provider: 'claude', model: 'claude-sonnet-4-5' }], pricing }],
      })
      const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'claude', messages, max_tokens: 12, stream: true })
      const reader = res.body!.getReader()
      let text = ''
      while (text.split('data: ').length < 4) text += new TextDecoder().decode((await reader.read()).value)
      await reader.cancel()
      await waitFor(() => usages.length === 1, 'onUsage of the stream cut off')
      const cut = usages[0]!
      expect(cut.source).toBe('estimated')
      expect(cut.costUsd).toBeCloseTo(priceOf(cut.promptTokens, cut.completionTokens, 0, pricing, 2000)!, 12)
      expect(cut.costUsd!).toBeGreaterThan(priceOf(cut.promptTokens, cut.completionTokens, 0, pricing)!)
    } finally {
      await claude.stop()
    }
  })
})
