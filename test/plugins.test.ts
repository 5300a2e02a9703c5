/**
 * The plugin API, end to end: hooks run in their documented order, refuse with their own
 * errors, pick targets and hide chunks; plugins are validated and set up at boot, loaded
 * from files, and registered once. Real HTTP on 127.0.0.1; the mock upstream is the only fake.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'bun:test'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { Type } from '@sinclair/typebox'
import { ConfigError, loadConfig } from '../src/config/load.ts'
import { GatewayError } from '../src/errors.ts'
import { createLogger } from '../src/lib/logger.ts'
import { definePlugin } from '../src/plugin.ts'
import type { RouteTarget } from '../src/models.ts'
import { resolvePlugins, setupPlugins } from '../src/plugin-loader.ts'
import { createGateway } from '../src/server.ts'
import { BUILTIN_PLUGINS } from '../plugins/index.ts'
import { parseSse, startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { startGateway, upstreamConfig, type TestGateway } from './support/gateway.ts'
import { expectError, postJson, streamedText, waitFor, type ChunkLike } from './support/http.ts'
import { capturingLogger } from './support/logging.ts'

const messages = [{ role: 'user', content: 'hello there' }]
const chat = { model: 'mock-gpt', messages, max_tokens: 3 }
const SRC = resolve(import.meta.dir, '../src')

let upstream: MockUpstream
let other: MockUpstream
const gateways: TestGateway[] = []

beforeAll(async () => {
  upstream = await startMockUpstream()
  other = await startMockUpstream()
})
afterAll(async () => {
  await upstream.stop()
  await other.stop()
})
beforeEach(() => {
  upstream.reset()
  other.reset()
})
afterEach(async () => {
  await Promise.all(gateways.splice(0).map((g) => g.close()))
})

async function boot(plugins: unknown[], extra: Parameters<typeof upstreamConfig>[1] = {}): Promise<TestGateway> {
  const gw = await startGateway(upstreamConfig(upstream.url, { plugins, ...extra }))
  gateways.push(gw)
  return gw
}

describe('hooks at run time', () => {
  test('hooks run in order: authenticate → admit → route → onUsage → onComplete', async () => {
    const calls: string[] = []
    const order = definePlugin({
      name: 'order',
      setup: () => ({
        authenticate: () => void calls.push('authenticate'),
        admit: () => void calls.push('admit'),
        route: () => void calls.push('route'),
        onUsage: () => void calls.push('onUsage'),
        onComplete: () => void calls.push('onComplete'),
      }),
    })
    const gw = await boot([order])
    const res = await postJson(`${gw.url}/v1/chat/completions`, chat)
    expect(res.status).toBe(200)
    await res.json()
    await waitFor(() => calls.includes('onComplete'), 'onComplete')
    expect(calls).toEqual(['authenticate', 'admit', 'route', 'onUsage', 'onComplete'])
    expect(upstream.stats.requests).toBe(1)
  })

  test('stages run across plugins in the order they are listed', async () => {
    const calls: string[] = []
    const make = (name: string) =>
      definePlugin({
        name,
        setup: () => ({
          authenticate: () => void calls.push(`${name}.authenticate`),
          admit: () => void calls.push(`${name}.admit`),
        }),
      })
    const gw = await boot([make('first'), make('second')])
    await (await postJson(`${gw.url}/v1/chat/completions`, chat)).arrayBuffer()
    expect(calls).toEqual(['first.authenticate', 'second.authenticate', 'first.admit', 'second.admit'])
  })

  test('a hook returning a GatewayError refuses with its code and status; later stages and the upstream do not run', async () => {
    const calls: string[] = []
    const outcomes: Array<{ status: number; errorCode: string | null }> = []
    const gate = definePlugin({
      name: 'gate',
      setup: () => ({
        authenticate: (req) => {
          calls.push('authenticate')
          if (!req.request.headers.get('authorization')) return new GatewayError('missing_api_key', 'Send a key as Authorization: Bearer <key>.')
        },
        admit: (req) => {
          calls.push('admit')
          req.responseHeaders['x-ratelimit-remaining-requests'] = '0'
          if (req.model === 'mock-gpt') return new GatewayError('rate_limit_exceeded', 'Too many requests; retry in 5 seconds.', { headers: { 'retry-after': '5' } })
        },
        route: () => void calls.push('route'),
        onComplete: (_req, outcome) => void outcomes.push(outcome),
      }),
    })
    const gw = await boot([gate])

    const noKey = await postJson(`${gw.url}/v1/chat/completions`, chat)
    await expectError(noKey, 'missing_api_key')
    expect(calls).toEqual(['authenticate'])

    calls.length = 0
    const limited = await postJson(`${gw.url}/v1/chat/completions`, chat, { authorization: 'Bearer anything' })
    expect(limited.headers.get('retry-after')).toBe('5')
    // Headers a plugin collected reach the client on a refusal too.
    expect(limited.headers.get('x-ratelimit-remaining-requests')).toBe('0')
    await expectError(limited, 'rate_limit_exceeded')
    expect(calls).toEqual(['authenticate', 'admit'])
    expect(upstream.stats.requests).toBe(0)

    // The authenticate stage also guards the model list.
    await expectError(await fetch(`${gw.url}/v1/models`), 'missing_api_key')
    await waitFor(() => outcomes.length === 3, 'onComplete for each refusal')
    expect(outcomes.map((o) => [o.status, o.errorCode])).toEqual([
      [401, 'missing_api_key'],
      [429, 'rate_limit_exceeded'],
      [401, 'missing_api_key'],
    ])
  })

  test('a route hook can send the request to a different target', async () => {
    const router = definePlugin({
      name: 'router',
      setup: ({ models }) => {
        const elsewhere = models.provider('elsewhere')
        if (!elsewhere) throw new Error('provider "elsewhere" missing')
        return {
          route: (req, group) => {
            if (req.body.metadata === undefined) return undefined
            let given = false
            return {
              next: (): RouteTarget | undefined => {
                if (given) return undefined
                given = true
                return { provider: elsewhere, model: 'routed-model', key: elsewhere.keys[0]!, group: group.name }
              },
            }
          },
        }
      },
    })
    const gw = await boot([router], {
      providers: [
        { id: 'up', type: 'openai-compatible', baseUrl: upstream.url, keys: [{ id: 'k1', secret: 'sk-upstream-secret-0123456789' }] },
        { id: 'elsewhere', type: 'openai-compatible', baseUrl: other.url, keys: [{ id: 'e1', secret: 'sk-elsewhere-secret-987654' }] },
      ],
    })

    const routed = await postJson(`${gw.url}/v1/chat/completions`, { ...chat, metadata: { route: 'yes' } })
    expect(((await routed.json()) as { model: string }).model).toBe('routed-model')
    expect(other.stats.requests).toBe(1)
    expect(upstream.stats.requests).toBe(0)
    expect(other.stats.lastHeaders?.get('authorization')).toBe('Bearer sk-elsewhere-secret-987654')
    expect((other.stats.lastBody as { model: string }).model).toBe('routed-model')

    // Without a plan from the hook the core takes the group's first target.
    const plain = await postJson(`${gw.url}/v1/chat/completions`, chat)
    expect(((await plain.json()) as { model: string }).model).toBe('mock-gpt')
    expect(upstream.stats.requests).toBe(1)
    expect(other.stats.requests).toBe(1)
  })

  test('a route hook returning a GatewayError refuses', async () => {
    const closed = definePlugin({
      name: 'closed',
      setup: () => ({ route: () => new GatewayError('no_healthy_upstream', 'Every upstream is cooling down; retry shortly.') }),
    })
    const gw = await boot([closed])
    await expectError(await postJson(`${gw.url}/v1/chat/completions`, chat), 'no_healthy_upstream')
    expect(upstream.stats.requests).toBe(0)
  })

  test('onStreamChunk returning false hides that chunk from the client', async () => {
    const seen: string[] = []
    const censor = definePlugin({
      name: 'censor',
      setup: () => ({
        onStreamChunk: (_req, chunk) => {
          const choices = chunk.data.choices as ChunkLike['choices']
          const content = choices[0]?.delta.content ?? ''
          seen.push(content)
          if (content === ' mock') return false
        },
      }),
    })
    const gw = await boot([censor])
    const res = await postJson(`${gw.url}/v1/chat/completions`, { ...chat, max_tokens: 5, stream: true })
    const parsed = parseSse(await res.text())
    expect(parsed.done).toBe(true)
    const chunks = parsed.events as ChunkLike[]
    expect(streamedText(chunks)).toBe('This is a reply')
    // The hook saw every chunk, the hidden one included: role, five pieces, finish.
    expect(seen).toEqual(['', 'This', ' is', ' a', ' mock', ' reply', ''])
    expect(chunks.length).toBe(6)
  })

  test('a plugin may rewrite the body before the upstream sees it, and add response headers', async () => {
    const rewrite = definePlugin({
      name: 'rewrite',
      setup: () => ({
        admit: (req) => {
          req.body = { ...req.body, user: 'tenant-42' }
          req.responseHeaders['x-rewritten'] = 'yes'
        },
      }),
    })
    const gw = await boot([rewrite])
    const res = await postJson(`${gw.url}/v1/chat/completions`, chat)
    expect(res.status).toBe(200)
    expect(res.headers.get('x-rewritten')).toBe('yes')
    expect(upstream.stats.lastBody).toEqual({ ...chat, user: 'tenant-42' })
  })

  test('a hook that throws becomes a 500 internal_error envelope, not a crash', async () => {
    const broken = definePlugin({
      name: 'broken',
      setup: () => ({
        admit: () => {
          throw new Error('boom')
        },
      }),
    })
    const gw = await boot([broken])
    const res = await postJson(`${gw.url}/v1/chat/completions`, chat)
    expect(res.status).toBe(500)
    const body = (await res.json()) as { error: { code: string; message: string } }
    expect(body.error.code).toBe('internal_error')
    expect(body.error.message).not.toContain('boom')
    // The gateway still serves.
    expect((await fetch(`${gw.url}/health`)).status).toBe(200)
  })

  test('the client address: read by a hook before the response, or by a completion hook after it', async () => {
    const seen: (string | null)[] = []
    const early = definePlugin({ name: 'ip-early', setup: () => ({ authenticate: (req) => void seen.push(req.clientIp) }) })
    const late = definePlugin({ name: 'ip-late', setup: () => ({ onComplete: (req) => void seen.push(req.clientIp) }) })
    const onlyEarly = await boot([early])
    expect((await postJson(`${onlyEarly.url}/v1/chat/completions`, chat)).status).toBe(200)
    expect(seen).toEqual(['127.0.0.1'])
    const both = await boot([early, late])
    const res = await postJson(`${both.url}/v1/chat/completions`, chat)
    await res.arrayBuffer()
    await waitFor(() => seen.length === 3, 'the completion hook')
    expect(seen).toEqual(['127.0.0.1', '127.0.0.1', '127.0.0.1'])
  })

  test('a plugin can add its own routes', async () => {
    const extra = definePlugin({
      name: 'extra-routes',
      setup: () => ({ routes: (app) => app.get('/plugin/ping', () => ({ pong: true })) }),
    })
    const gw = await boot([extra])
    const res = await fetch(`${gw.url}/plugin/ping`)
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ pong: true })
    await expectError(await fetch(`${gw.url}/plugin/ping`, { method: 'POST' }), 'method_not_allowed')
  })
})

describe('plugins at boot', () => {
  const limiter = definePlugin({
    name: 'limiter',
    options: Type.Object({ limit: Type.Integer({ minimum: 1 }), mode: Type.Union([Type.Literal('soft'), Type.Literal('hard')], { default: 'soft' }) }, { additionalProperties: false }),
    setup: ({ options }) => ({ admit: (req) => void (req.responseHeaders['x-limit'] = `${options.limit}/${options.mode}`) }),
  })

  async function configWith(plugins: unknown[]) {
    return loadConfig({ config: upstreamConfig(upstream.url, { plugins }), env: { DATABASE_URL: 'sqlite::memory:', LOG_LEVEL: 'silent' } })
  }

  test('a boot that fails at a later plugin (its setup, or its routes) closes the plugins already started, and names the one that failed', async () => {
    for (const failing of ['setup', 'routes'] as const) {
      const closed: string[] = []
      const good = definePlugin({ name: 'good', setup: () => ({ close: () => void closed.push('good') }) })
      const bad = definePlugin({
        name: 'bad',
        setup: () => {
          if (failing === 'setup') throw new Error('no database')
          return {
            routes: () => {
              throw new Error('route clash')
            },
            close: () => void closed.push('bad'),
          }
        },
      })
      const config = await configWith([good, bad])
      const error = await createGateway(config, { logger: createLogger('silent') }).catch((e: unknown) => e)
      expect(String(error)).toContain('plugin "bad" failed to')
      expect(String(error)).toContain(failing === 'setup' ? 'no database' : 'route clash')
      expect(closed).toEqual(failing === 'setup' ? ['good'] : ['bad', 'good'])
    }
  })

  test("a plugin whose close never finishes is logged, naming it, and the plugins started before it are still closed", async () => {
    const closed: string[] = []
    const logging = definePlugin({ name: 'flusher', setup: () => ({ close: async () => void closed.push('flusher') }) })
    const stuck = definePlugin({ name: 'stuck', setup: () => ({ close: () => new Promise<void>(() => {}) }) })
    const { logger, lines } = capturingLogger('error')
    const config = await configWith([logging, stuck])
    const gateway = await createGateway(config, { logger, pluginCloseMs: 50 })
    await gateway.close()
    expect(closed).toEqual(['flusher'])
    expect(lines.find((l) => l.plugin === 'stuck')).toMatchObject({ msg: 'plugin did not close in time; the plugins before it are closed without it', waited_ms: 50 })
  })

  test.each([
    ['a string', 'nope', 'its setup returned the string "nope", not an object of hooks'],
    ['an array', [() => undefined], 'its setup returned an Array, not an object of hooks'],
    ['a hook that is no function', { admit: true }, 'hook "admit" is a boolean, not a function'],
    ['a flag that is no boolean', { onComplete() {}, readsClientIpOnComplete: 'no' }, '"readsClientIpOnComplete" is a string, not a boolean'],
  ])('a setup returning %s stops the boot naming the plugin, and is closed', async (_what, hooks, message) => {
    let closed = 0
    const shape = definePlugin({ name: 'shape', setup: () => (typeof hooks === 'object' && !Array.isArray(hooks) ? { ...hooks, close: () => void closed++ } : hooks) as never })
    const error = await createGateway(await configWith([shape]), { logger: createLogger('silent') }).catch((e: unknown) => e)
    expect(String(error)).toContain('plugin "shape" failed to start: ')
    expect(String(error)).toContain(message)
    expect(closed).toBe(typeof hooks === 'object' && !Array.isArray(hooks) ? 1 : 0)
  })

  test('a hook left out as null or false (a JavaScript plugin) is no hook, and no failure', async () => {
    const seen: string[] = []
    const off = definePlugin({ name: 'off', setup: () => ({ authenticate: null, admit: false, routes: false, onComplete: null, close: null }) as never })
    const on = definePlugin({ name: 'on', setup: () => ({ authenticate: () => void seen.push('authenticate'), admit: () => void seen.push('admit') }) })
    const gw = await boot([off, on])
    const res = await postJson(`${gw.url}/v1/chat/completions`, chat)
    expect(res.status).toBe(200)
    await res.arrayBuffer()
    expect(seen).toEqual(['authenticate', 'admit'])
  })

  test('a member named like a misspelt hook is logged at boot, naming the plugin and the hook meant; members of its own pass', async () => {
    const { logger, lines } = capturingLogger('warn')
    const typo = definePlugin({ name: 'typo', setup: () => ({ onCompleted() {}, onChunk() {}, onReady() {}, prune() {}, admit: () => undefined }) as never })
    await (await createGateway(await configWith([typo]), { logger })).close()
    expect(lines.map((l) => [l.msg, l.plugin])).toEqual([
      [`plugin's setup returned "onCompleted", which is no hook and is never called (did you mean onComplete?)`, 'typo'],
      [`plugin's setup returned "onChunk", which is no hook and is never called (did you mean onStreamChunk, onUsage or onComplete?)`, 'typo'],
      [`plugin's setup returned "onReady", which is no hook and is never called (did you mean onStreamChunk, onUsage or onComplete?)`, 'typo'],
    ])
  })

  test('a setup that takes long is logged while it runs, naming its plugin', async () => {
    const { logger, lines } = capturingLogger('warn')
    let finish!: () => void
    const slow = definePlugin({ name: 'slow-start', setup: () => new Promise<{}>((resolve) => (finish = () => resolve({}))) })
    const config = await configWith([slow])
    const booting = setupPlugins(await resolvePlugins(config, BUILTIN_PLUGINS), { config, services: {} as never, models: {} as never, logger, authenticate: async () => new GatewayError('missing_api_key', 'none') }, 20)
    await waitFor(() => lines.filter((l) => l.plugin === 'slow-start').length >= 2, 'the lines of the plugin still starting')
    expect(lines[0]).toMatchObject({ msg: 'plugin is still starting (its setup has not finished)', plugin: 'slow-start' })
    finish()
    expect((await booting).map((p) => p.name)).toEqual(['slow-start'])
    const seen = lines.length
    await Bun.sleep(60)
    expect(lines.length).toBe(seen)
  })

  test('options are validated: every problem names the plugin, its place and the option path', async () => {
    const config = await configWith([limiter({ limit: 0, mode: 'soft' }), limiter({ limit: 2, mode: 'loud' as 'soft' })])
    const error = await resolvePlugins(config, BUILTIN_PLUGINS).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ConfigError)
    const problems = (error as ConfigError).problems
    expect(problems.length).toBe(2)
    expect(problems[0]).toStartWith('/plugins/0: plugin "limiter" option /limit:')
    expect(problems[1]).toStartWith('/plugins/1: plugin "limiter" option /mode:')
  })

  test('createGateway refuses to boot with bad plugin options', async () => {
    const config = await configWith([limiter({ limit: -3, mode: 'hard' })])
    const error = await createGateway(config, { logger: createLogger('silent') }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as Error).message).toContain('plugin "limiter" option /limit')
  })

  test('defaults from the options schema are filled in', async () => {
    const gw = await boot([limiter({ limit: 7 } as { limit: number; mode: 'soft' })])
    const res = await postJson(`${gw.url}/v1/chat/completions`, chat)
    expect(res.headers.get('x-limit')).toBe('7/soft')
  })

  test('a plugin whose setup throws is named in the error', async () => {
    const exploding = definePlugin({
      name: 'exploding',
      setup: () => {
        throw new Error('cannot reach the license server')
      },
    })
    const error = await startGateway(upstreamConfig(upstream.url, { plugins: [exploding] })).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(Error)
    expect((error as Error).message).toContain('"exploding"')
    expect((error as Error).message).toContain('cannot reach the license server')
  })

  test('the same plugin listed twice with equal options registers once; with other options, twice', async () => {
    let setups = 0
    let admits = 0
    const counted = definePlugin({
      name: 'counted',
      options: Type.Object({ tag: Type.String() }),
      setup: () => {
        setups++
        return { admit: () => void admits++ }
      },
    })
    const once = await boot([counted({ tag: 'a' }), counted({ tag: 'a' })])
    expect(once.gateway.plugins.map((p) => p.name)).toEqual(['counted'])
    expect(setups).toBe(1)
    await (await postJson(`${once.url}/v1/chat/completions`, chat)).arrayBuffer()
    expect(admits).toBe(1)

    const twice = await boot([counted({ tag: 'a' }), counted({ tag: 'b' })])
    expect(twice.gateway.plugins.map((p) => p.name)).toEqual(['counted', 'counted'])
    expect(setups).toBe(3)
  })

  test('an unknown built-in name is an error naming it and how to load your own', async () => {
    const config = await configWith(['no-such-plugin'])
    const error = await resolvePlugins(config, BUILTIN_PLUGINS).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).problems).toEqual([expect.stringContaining('/plugins/0: unknown plugin "no-such-plugin"')])
    expect((error as ConfigError).problems[0]).toContain('"use"')
  })
  test('names an object has by inheritance ("constructor", "toString"…) are unknown plugins too, not a crash', async () => {
    for (const name of ['constructor', 'toString', 'hasOwnProperty', '__proto__']) {
      const config = await configWith([name])
      const error = await resolvePlugins(config, BUILTIN_PLUGINS).catch((e: unknown) => e)
      expect({ name, error }).toEqual({ name, error: expect.any(ConfigError) })
      expect((error as ConfigError).problems).toEqual([expect.stringContaining(`/plugins/0: unknown plugin "${name}"`)])
    }
    // As {"use": name}, such a name is no built-in either: it is looked for as a file, and reported as one.
    const config = await configWith([{ use: 'constructor' }])
    const error = await resolvePlugins(config, BUILTIN_PLUGINS).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).problems.length).toBe(1)
    expect((error as ConfigError).problems[0]).toStartWith('/plugins/0: plugin "constructor" cannot be loaded')
  })

  describe('options a TypeScript config passes as values: functions and class instances', () => {
    class Clock {
      now = () => 42
    }
    const hooked = definePlugin({
      name: 'hooked',
      options: Type.Object(
        { onAdmit: Type.Function([Type.String()], Type.Void()), clock: Type.Optional(Type.Any()), tag: Type.String({ default: 'plain' }) },
        { additionalProperties: false },
      ),
      setup: ({ options }) => ({
        admit(req) {
          options.onAdmit(req.id)
          req.responseHeaders['x-hooked'] = `${options.tag}/${(options.clock as Clock | undefined)?.now() ?? '-'}`
        },
      }),
    })

    test('a function and a class instance reach setup as passed (not cloned); defaults are filled in without changing the config', async () => {
      const seen: string[] = []
      const clock = new Clock()
      const options = { onAdmit: (id: string) => void seen.push(id), clock }
      const gw = await boot([hooked(options as never)])
      const res = await postJson(`${gw.url}/v1/chat/completions`, chat)
      expect(res.status).toBe(200)
      expect(res.headers.get('x-hooked')).toBe('plain/42')
      await res.arrayBuffer()
      expect(seen.length).toBe(1)
      expect(options).toEqual({ onAdmit: options.onAdmit, clock }) // no `tag` written into the caller's object
    })

    test('the same callback listed twice registers once; a different callback, twice', async () => {
      const onAdmit = () => {}
      const config = await configWith([hooked({ onAdmit } as never), hooked({ onAdmit } as never), hooked({ onAdmit: () => {} } as never)])
      const instances = await resolvePlugins(config, BUILTIN_PLUGINS)
      expect(instances.length).toBe(2)
    })

    test('a function where the schema wants data is an option error naming /plugins/0 and the plugin', async () => {
      const config = await configWith([limiter({ limit: () => 3 } as never)])
      const error = await resolvePlugins(config, BUILTIN_PLUGINS).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(ConfigError)
      expect((error as ConfigError).problems.length).toBe(1)
      expect((error as ConfigError).problems[0]).toStartWith('/plugins/0: plugin "limiter" option /limit:')
    })
  })
})

describe('a user plugin from a file, listed in a JSON config', () => {
  let dir: string

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-plugin-'))
    writeFileSync(
      join(dir, 'stamp.ts'),
      `import { definePlugin, t } from ${JSON.stringify(join(SRC, 'index.ts'))}

export const stamp = definePlugin({
  name: 'stamp',
  options: t.Object({ header: t.String({ minLength: 1 }), value: t.String() }, { additionalProperties: false }),
  setup: ({ options }) => ({
    admit(req) {
      req.responseHeaders[options.header] = options.value
    },
  }),
})
`,
    )
    writeFileSync(join(dir, 'not-a-plugin.ts'), 'export const answer = 42\n')
    // Several plugins in one file: without a default, which one a {"use"} means is not said.
    const named = (name: string) => `export const ${name} = definePlugin({ name: '${name}', setup: () => ({ admit: (req) => void (req.responseHeaders['x-by'] = '${name}') }) })\n`
    const header = `import { definePlugin } from ${JSON.stringify(join(SRC, 'index.ts'))}\n`
    writeFileSync(join(dir, 'two.ts'), header + named('audit') + named('tagger') + 'export { audit as auditor }\n')
    writeFileSync(join(dir, 'two-and-default.ts'), header + named('audit') + named('tagger') + 'export default tagger\n')
    // A plugin installed as a package beside the config (node_modules), and a file named without "./".
    const pkg = join(dir, 'node_modules', '@acme', 'sluice-audit')
    mkdirSync(pkg, { recursive: true })
    writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: '@acme/sluice-audit', type: 'module', exports: { '.': './main.ts' } }))
    writeFileSync(join(pkg, 'main.ts'), header + named('audit') + 'export default audit\n')
    mkdirSync(join(dir, 'mine'))
    writeFileSync(join(dir, 'mine', 'tagger.ts'), header + named('tagger'))
    // A plugin project with its own installed copy of sluice: its GatewayError is another class
    // than the running gateway's (the query makes Bun load errors.ts a second time, as a copy is).
    writeFileSync(
      join(dir, 'gatekeeper.ts'),
      `import { definePlugin } from ${JSON.stringify(join(SRC, 'index.ts'))}
import { GatewayError } from ${JSON.stringify(join(SRC, 'errors.ts') + '?another-copy')}

export const gatekeeper = definePlugin({
  name: 'gatekeeper',
  setup: () => ({
    admit(req) {
      const how = req.request.headers.get('x-refuse')
      const refusal = new GatewayError('insufficient_permissions', 'The gatekeeper refuses.', { headers: { 'x-gatekeeper': 'no' } })
      if (how === 'return') return refusal
      if (how === 'throw') throw refusal
    },
    routes: (app) =>
      app.get('/gatekeeper', () => {
        throw new GatewayError('not_found', 'Nothing behind the gate.')
      }),
  }),
})
`,
    )
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  async function bootFromFile(plugins: unknown[]) {
    const path = join(dir, `config-${crypto.randomUUID()}.json`)
    writeFileSync(path, JSON.stringify(upstreamConfig(upstream.url, { plugins })))
    const config = await loadConfig({ env: { SLUICE_CONFIG: path, DATABASE_URL: 'sqlite::memory:', LOG_LEVEL: 'silent' }, cwd: '/' })
    return config
  }

  test('{"use": "./stamp.ts", "options": {...}} loads relative to the config file, with its options', async () => {
    const config = await bootFromFile([{ use: './stamp.ts', options: { header: 'x-stamp', value: 'from-file' } }])
    const gateway = await createGateway(config, { logger: createLogger('silent') })
    const server = gateway.listen({ port: 0, hostname: '127.0.0.1' })
    try {
      expect(gateway.plugins.map((p) => p.name)).toEqual(['stamp'])
      const res = await postJson(`http://127.0.0.1:${server.port}/v1/chat/completions`, chat)
      expect(res.status).toBe(200)
      expect(res.headers.get('x-stamp')).toBe('from-file')
    } finally {
      await gateway.close()
    }
  })

  test('its options are validated at boot, naming the plugin', async () => {
    const config = await bootFromFile([{ use: './stamp.ts', options: { header: '', value: 'x', extra: true } }])
    const error = await resolvePlugins(config, BUILTIN_PLUGINS).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ConfigError)
    const problems = (error as ConfigError).problems
    expect(problems.some((p) => p.startsWith('/plugins/0: plugin "stamp" option /header'))).toBe(true)
    expect(problems.every((p) => p.startsWith('/plugins/0: plugin "stamp"'))).toBe(true)
  })

  test("a GatewayError of another copy of sluice (the plugin project's own install) refuses as the gateway's does", async () => {
    const config = await bootFromFile([{ use: './gatekeeper.ts' }])
    const gateway = await createGateway(config, { logger: createLogger('silent') })
    const server = gateway.listen({ port: 0, hostname: '127.0.0.1' })
    const url = `http://127.0.0.1:${server.port}`
    try {
      for (const how of ['return', 'throw']) {
        const res = await postJson(`${url}/v1/chat/completions`, chat, { 'x-refuse': how })
        expect(res.headers.get('x-gatekeeper')).toBe('no')
        expect({ status: res.status, body: await res.json() }).toEqual({
          status: 403,
          body: { error: { message: 'The gatekeeper refuses.', type: 'permission_error', param: null, code: 'insufficient_permissions' } },
        })
      }
      expect((await expectError(await fetch(`${url}/gatekeeper`), 'not_found')).message).toBe('Nothing behind the gate.')
      expect((await postJson(`${url}/v1/chat/completions`, chat)).status).toBe(200)
    } finally {
      await gateway.close()
    }
  })

  test('a file exporting several plugins, none as default, is refused naming them; with a default, the default is loaded', async () => {
    const ambiguous = await bootFromFile([{ use: './two.ts' }])
    const error = await resolvePlugins(ambiguous, BUILTIN_PLUGINS).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).problems).toEqual([
      '/plugins/0: plugin "./two.ts" exports several plugins (audit, tagger) and none as default: export the one to load as default, or give each a file of its own',
    ])
    const config = await bootFromFile([{ use: './two-and-default.ts' }])
    expect((await resolvePlugins(config, BUILTIN_PLUGINS)).map((p) => p.name)).toEqual(['tagger'])
  })

  test('"use" names an installed package too (resolved from the config\'s folder); a path without "./" is still a file', async () => {
    const config = await bootFromFile([{ use: '@acme/sluice-audit' }, { use: 'mine/tagger.ts' }])
    expect((await resolvePlugins(config, BUILTIN_PLUGINS)).map((p) => p.name)).toEqual(['audit', 'tagger'])
    const missing = await bootFromFile([{ use: '@acme/not-installed' }])
    const error = await resolvePlugins(missing, BUILTIN_PLUGINS).catch((e: unknown) => e)
    expect((error as ConfigError).problems).toEqual([
      `/plugins/0: plugin "@acme/not-installed" cannot be loaded: no file ${join(dir, '@acme/not-installed')} and no package "@acme/not-installed" installed for ${dir}`,
    ])
  })

  test('a missing file and a file without a plugin are each reported with their entry', async () => {
    const config = await bootFromFile([{ use: './nowhere.ts' }, { use: './not-a-plugin.ts' }])
    const error = await resolvePlugins(config, BUILTIN_PLUGINS).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ConfigError)
    const problems = (error as ConfigError).problems
    expect(problems.length).toBe(2)
    expect(problems[0]).toStartWith('/plugins/0: plugin "./nowhere.ts" cannot be loaded')
    expect(problems[1]).toStartWith('/plugins/1: plugin "./not-a-plugin.ts" exports no plugin')
  })
})
