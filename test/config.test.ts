/**
 * Configuration: files (JSON and TS), `${VAR}` interpolation, environment overrides, and a
 * bad config reported in full, one line per problem with its path.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { ConfigError, DEFAULT_MAX_BODY_BYTES, loadConfig, loadDatabaseUrl, type LoadOptions } from '../src/config/load.ts'
import type { ConfigFile } from '../src/config/schema.ts'
import { resolvePlugins } from '../src/plugin-loader.ts'
import { BUILTIN_PLUGINS } from '../plugins/index.ts'

const SRC_INDEX = resolve(import.meta.dir, '../src/index.ts')
/** A master key (32 bytes, base64): required outside dev. */
const MASTER = Buffer.alloc(32, 7).toString('base64')

const provider = (extra: Record<string, unknown> = {}) => ({
  id: 'up',
  type: 'openai-compatible' as const,
  baseUrl: 'http://127.0.0.1:9/v1',
  keys: [{ id: 'k1', secret: 'plain' }],
  ...extra,
})
const model = { name: 'm', targets: [{ provider: 'up', model: 'upstream-m' }] }

/** The `ConfigError` a load throws (fails the test if it does not throw one). */
async function problemsOf(options: LoadOptions): Promise<string[]> {
  const error = await loadConfig(options).then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(error).toBeInstanceOf(ConfigError)
  return (error as ConfigError).problems
}

let dir: string
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-config-'))
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** A fresh folder under the temp dir (Bun caches imported modules by path, so TS configs need unique paths). */
function folder(): string {
  const path = join(dir, crypto.randomUUID())
  mkdirSync(path)
  return path
}

describe('defaults', () => {
  test('no file and no variables: dev, port 8080, SQLite file, built-in mock, all built-in plugins', async () => {
    const config = await loadConfig({ env: {}, cwd: folder() })
    expect(config).toMatchObject({
      environment: 'dev',
      port: 8080,
      host: '0.0.0.0',
      databaseUrl: 'sqlite://./data/sluice.db',
      redisUrl: null,
      maxBodyBytes: 32 * 1024 * 1024,
      plugins: null,
      configPath: null,
    })
    expect(DEFAULT_MAX_BODY_BYTES).toBe(33_554_432)
    expect(config.providers.map((p) => [p.id, p.type])).toEqual([['mock', 'mock']])
    expect(config.models.map((m) => m.name)).toEqual(['mock-gpt'])
  })

  test('a config with providers but no models serves no models (the mock is only the no-config default)', async () => {
    const config = await loadConfig({ env: {}, config: { providers: [provider()] } })
    expect(config.models).toEqual([])
    expect(config.providers.map((p) => p.id)).toEqual(['up'])
  })
})

describe('${VAR} interpolation', () => {
  test('variables are replaced in every string, anywhere in the tree', async () => {
    const config = await loadConfig({
      env: { UP_KEY: 'sk-from-env', HOSTPORT: '10.0.0.7:8000', ORG: 'acme' },
      config: {
        providers: [provider({ baseUrl: 'http://${HOSTPORT}/v1', keys: [{ id: 'k1', secret: '${UP_KEY}' }], headers: { 'x-org': 'org-${ORG}-${ORG}' } })],
        models: [model],
      },
    })
    expect(config.providers[0]?.keys[0]?.secret).toBe('sk-from-env')
    expect(config.providers[0]?.baseUrl).toBe('http://10.0.0.7:8000/v1')
    expect(config.providers[0]?.headers).toEqual({ 'x-org': 'org-acme-acme' })
  })

  test('a variable set to the empty string is used as is; text without ${…} is left alone', async () => {
    const config = await loadConfig({
      env: { EMPTY: '' },
      config: { providers: [provider({ keys: [{ id: 'k1', secret: '${EMPTY}' }, { id: 'k2', secret: '$NOT_A_REF {X} $ {Y} ${unclosed' }] })], models: [model] },
    })
    expect(config.providers[0]?.keys.map((k) => k.secret)).toEqual(['', '$NOT_A_REF {X} $ {Y} ${unclosed'])
  })

  test('${…} that is no variable reference (a shell default ${A-b}, spaces, a dot) stops the boot at its path, with the variable set or not, where it was sent as it was written', async () => {
    const problems = await problemsOf({
      env: { OPENAI_KEY: 'sk-real', 'OPENAI-KEY': 'sk-real' },
      config: {
        providers: [provider({ baseUrl: '${BASE-http://127.0.0.1:9/v1}', keys: [{ id: 'k1', secret: '${OPENAI-KEY}' }, { id: 'k2', secret: '${ OPENAI_KEY }' }, { id: 'k3', secret: 'a${}b' }] })],
        models: [model],
        plugins: [{ use: './greeter.ts', options: { template: 'Hello ${user.name}' } }],
      },
    })
    const why = 'is not a variable reference: write ${NAME} or ${NAME:-default}, NAME of letters, digits and _ not beginning with a digit; $${…} keeps the text as written'
    expect(problems).toEqual([
      `/providers/0/baseUrl: "\${BASE-http://127.0.0.1:9/v1}" ${why}`,
      `/providers/0/keys/0/secret: "\${OPENAI-KEY}" ${why}`,
      `/providers/0/keys/1/secret: "\${ OPENAI_KEY }" ${why}`,
      `/providers/0/keys/2/secret: "\${}" ${why}`,
      `/plugins/0/options/template: "\${user.name}" ${why}`,
    ])
  })

  test('${…} holding a long text (a secret pasted between the braces) is refused without repeating it', async () => {
    const secret = `sk-ant-api03-${'x'.repeat(60)}`
    const problems = await problemsOf({ env: {}, config: { providers: [provider({ keys: [{ id: 'k1', secret: `\${${secret}}` }] })], models: [model] } })
    expect(problems).toHaveLength(1)
    expect(problems[0]).toStartWith(`/providers/0/keys/0/secret: "\${…}" (${secret.length} characters between the braces, not shown: they may be a secret) is not a variable reference`)
    expect(problems.join('\n')).not.toContain('xxxx')
  })

  test('$${…} keeps any such text as written, one $ less', async () => {
    const config = await loadConfig({
      env: {},
      config: { providers: [provider({ keys: [{ id: 'k1', secret: 'p$${a-b}w $${ x } $${}' }] })], models: [model], plugins: [{ use: './greeter.ts', options: { template: 'Hello $${user.name}' } }] },
    })
    expect(config.providers[0]?.keys[0]?.secret).toBe('p${a-b}w ${ x } ${}')
    expect(config.plugins).toEqual([{ use: './greeter.ts', options: { template: 'Hello ${user.name}' } }])
  })

  test('$${NAME} is the literal ${NAME}, as in Compose and Terraform: a template or a secret may hold one', async () => {
    const config = await loadConfig({
      env: { user: 'alice', SET: 'x' },
      config: {
        providers: [provider({ keys: [{ id: 'k1', secret: 'p$${SET}w' }, { id: 'k2', secret: '$${SET:-d} ${SET} $$${SET} $$ $${' }] })],
        models: [model],
        plugins: [{ use: './greeter.ts', options: { template: 'Hello $${user}, from ${SET}' } }],
      },
    })
    expect(config.providers[0]?.keys.map((k) => k.secret)).toEqual(['p${SET}w', '${SET:-d} x $${SET} $$ $${'])
    expect(config.plugins).toEqual([{ use: './greeter.ts', options: { template: 'Hello ${user}, from x' } }])
    // Escaped, a variable that is not set is no problem.
    expect((await loadConfig({ env: {}, config: { providers: [provider({ keys: [{ id: 'k', secret: '$${NOT_SET}' }] })], models: [model] } })).providers[0]?.keys[0]?.secret).toBe('${NOT_SET}')
  })

  test('a number field that is exactly "${NAME}" (or "${NAME:-default}") takes the variable as a number', async () => {
    const config = await loadConfig({
      env: { LISTEN_PORT: '9090', RPM: ' 500 ', WEIGHT: '2.5', BODY: '' },
      config: {
        server: { port: '${LISTEN_PORT}' },
        limits: { max_body_bytes: '${BODY:-1048576}' },
        providers: [provider({ keys: [{ id: 'k1', secret: 'plain', rpm: '${RPM}', weight: '${WEIGHT}' }] })],
        models: [model],
      } as never,
    })
    expect(config.port).toBe(9090)
    expect(config.maxBodyBytes).toBe(1048576)
    expect(config.providers[0]?.keys[0]).toEqual({ id: 'k1', secret: 'plain', rpm: 500, weight: 2.5 })
  })

  test('a variable that is no number, in a number field, is one problem naming the field and the variable (not its value); the number is held to the field\'s rules', async () => {
    const problems = await problemsOf({
      env: { LISTEN_PORT: 'eighty', RPM: '1.5', TPM: '0x10', SECRETISH: 'sk-abc123' },
      config: {
        server: { port: '${LISTEN_PORT}' },
        providers: [provider({ keys: [{ id: 'k1', secret: 'plain', rpm: '${RPM}', tpm: '${TPM}', weight: '${SECRETISH}' }] })],
        models: [model],
      } as never,
    })
    expect(problems.toSorted()).toEqual([
      '/providers/0/keys/0/rpm: Expected integer',
      '/providers/0/keys/0/tpm: environment variable TPM is not a number, and this field takes one',
      '/providers/0/keys/0/weight: environment variable SECRETISH is not a number, and this field takes one',
      '/server/port: environment variable LISTEN_PORT is not a number, and this field takes one',
    ])
    expect(problems.join('\n')).not.toContain('sk-abc123')
    // Within a longer string a variable stays text: a number field holding one is a string.
    const mixed = await problemsOf({ env: { LISTEN_PORT: '80' }, config: { server: { port: ':${LISTEN_PORT}' } } as never })
    expect(mixed).toEqual([expect.stringMatching(/^\/server\/port: Expected integer/)])
  })

  test('a number plugin option that is exactly "${NAME}" takes the variable as a number, through loadConfig and through a later resolvePlugins; a value that is no number names the option and the variable', async () => {
    const plugins = [{ use: 'balance', options: { backoff_ms: '${BACKOFF}', backoff_max_ms: '${BACKOFF_MAX:-2000}', max_attempts: '${ATTEMPTS}' } }]
    const env = { BACKOFF: ' 75 ', ATTEMPTS: '4' }
    const resolved = await loadConfig({ env, config: { plugins }, resolvePlugins: (source) => resolvePlugins(source, BUILTIN_PLUGINS) })
    expect((resolved.plugins as Array<{ options: Record<string, unknown> }>)[0]?.options).toMatchObject({ backoff_ms: 75, backoff_max_ms: 2000, max_attempts: 4 })
    // Resolved by the gateway after the load (createGateway on a loaded config).
    const later = await resolvePlugins(await loadConfig({ env, config: { plugins } }), BUILTIN_PLUGINS)
    expect(later[0]?.options).toMatchObject({ backoff_ms: 75, backoff_max_ms: 2000, max_attempts: 4 })

    const problems = await problemsOf({
      env: { BACKOFF: 'fast', ATTEMPTS: '2.5', BACKOFF_MAX: 'sk-abc123' },
      config: { plugins },
      resolvePlugins: (source) => resolvePlugins(source, BUILTIN_PLUGINS),
    })
    expect(problems.toSorted()).toEqual([
      '/plugins/0: plugin "balance" option /backoff_max_ms: environment variable BACKOFF_MAX is not a number, and this field takes one',
      '/plugins/0: plugin "balance" option /backoff_ms: environment variable BACKOFF is not a number, and this field takes one',
      '/plugins/0: plugin "balance" option /max_attempts: Expected integer',
    ])
    expect(problems.join('\n')).not.toContain('sk-abc123')
    // Written as a string, not a variable: still refused as one.
    const quoted = await problemsOf({ env: {}, config: { plugins: [{ use: 'balance', options: { backoff_ms: '75' } }] }, resolvePlugins: (source) => resolvePlugins(source, BUILTIN_PLUGINS) })
    expect(quoted).toEqual(['/plugins/0: plugin "balance" option /backoff_ms: Expected integer (got a string; write the value without quotes)'])
  })

  test('${NAME:-default} takes the default when NAME is unset or empty, and the variable otherwise', async () => {
    const config = await loadConfig({
      env: { SET: 'from-env', EMPTY: '' },
      config: {
        providers: [
          provider({
            baseUrl: 'http://${UNSET_HOST:-127.0.0.1:8000}/v1',
            keys: [{ id: 'k1', secret: '${SET:-fallback}' }, { id: 'k2', secret: '${EMPTY:-fallback}' }, { id: 'k3', secret: '${UNSET:-}' }, { id: 'k4', secret: 'a-${UNSET:-b:c-d}-e' }],
          }),
        ],
        models: [model],
      },
    })
    expect(config.providers[0]?.baseUrl).toBe('http://127.0.0.1:8000/v1')
    expect(config.providers[0]?.keys.map((k) => k.secret)).toEqual(['from-env', 'fallback', '', 'a-b:c-d-e'])
  })

  test('a missing variable is an error that names it and where it is used; every missing one is listed', async () => {
    const problems = await problemsOf({
      env: {},
      config: { providers: [provider({ keys: [{ id: 'k1', secret: '${OPENAI_KEY_1}' }, { id: 'k2', secret: '${OPENAI_KEY_2}' }] })], models: [model] },
    })
    expect(problems).toEqual([
      expect.stringMatching(/^\/providers\/0\/keys\/0\/secret: .*OPENAI_KEY_1/),
      expect.stringMatching(/^\/providers\/0\/keys\/1\/secret: .*OPENAI_KEY_2/),
    ])
  })
})

describe('every problem in one boot', () => {
  test('a missing variable does not hide the problems of other fields', async () => {
    const problems = await problemsOf({
      env: { PORT: 'eighty' },
      config: {
        providers: [provider({ keys: [{ id: 'k', secret: 's' }, { id: 'k', secret: 't' }] }), provider({ type: 'openai', keys: [{ id: 'z', secret: '${NOPE_X}' }] })],
        models: [{ ...model, targets: [{ provider: 'q', model: 'x' }], fallbacks: ['zz'] }],
        limits: { max_body_bytes: 10 },
      },
    })
    expect(problems).toEqual([
      '/providers/1/keys/0/secret: environment variable NOPE_X is not set',
      '/limits/max_body_bytes: Expected integer to be greater or equal to 1024 (got 10)',
      '/providers/0/keys/1/id: duplicate key id "k" in provider "up"',
      '/providers/1/id: duplicate provider id "up"',
      '/models/0/targets/0/provider: no provider with id "q"',
      'PORT: "eighty" is not a port number (digits, 1 to 65535)',
    ])
  })

  test('the empty string standing in for a missing variable is not reported again', async () => {
    const problems = await problemsOf({
      env: {},
      config: {
        environment: '${ENV_NAME}',
        providers: [provider({ baseUrl: '${BASE_URL}' }), provider({ id: '${SECOND_ID}' })],
        models: [{ name: '${MODEL_NAME}', targets: [{ provider: '${SECOND_ID}', model: 'x' }] }, { ...model, fallbacks: ['nowhere'] }],
        database: { url: '${DB_URL}' },
        server: { cors: { origins: ['${ORIGIN}'] } },
        plugins: [{ use: '${PLUGIN_PATH}' }, 'balnce'],
      },
      resolvePlugins: (source) => resolvePlugins(source, BUILTIN_PLUGINS),
    })
    expect(problems).toEqual([
      '/environment: environment variable ENV_NAME is not set',
      '/providers/0/baseUrl: environment variable BASE_URL is not set',
      '/providers/1/id: environment variable SECOND_ID is not set',
      '/models/0/name: environment variable MODEL_NAME is not set',
      '/models/0/targets/0/provider: environment variable SECOND_ID is not set',
      '/database/url: environment variable DB_URL is not set',
      '/server/cors/origins/0: environment variable ORIGIN is not set',
      '/plugins/0/use: environment variable PLUGIN_PATH is not set',
      expect.stringMatching(/^\/plugins\/1: unknown plugin "balnce"/),
    ])
  })

  test('one problem per path: a pricing without output is one line, not also "Expected number"', async () => {
    const problems = await problemsOf({ env: {}, config: { providers: [provider()], models: [{ ...model, pricing: { input: 1 } }] } as unknown as ConfigFile })
    expect(problems).toEqual(['/models/0/pricing/output: Expected required property'])
  })

  test('one problem per path for the CLI too: a database section without its url is one line', async () => {
    const error = await loadDatabaseUrl({ env: {}, config: { database: {} } as unknown as ConfigFile }).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).problems).toEqual(['/database/url: Expected required property'])
  })

  test('an entry the schema refuses does not hide the catalog problems of the others', async () => {
    const problems = await problemsOf({
      env: {},
      config: {
        providers: [provider({ id: 'a', type: 'openia' }), provider({ id: 'b', baseUrl: undefined }), provider({ id: 'b' })],
        models: [
          { name: 'm', targets: [{ provider: 'nope', model: 'x' }, { provider: 'a', model: 'y' }] },
          { name: 'n', targets: 'b' },
          { name: 'm', targets: [{ provider: 'b', model: 'x' }] },
        ],
      } as unknown as ConfigFile,
    })
    expect(problems).toEqual([
      '/providers/0/type: must be one of "openai", "openai-compatible", "anthropic", "gemini", "mock" (got "openia")',
      expect.stringMatching(/^\/models\/1\/targets: Expected array/),
      '/providers/1/baseUrl: required for type openai-compatible',
      '/providers/2/id: duplicate provider id "b"',
      // The target naming provider "a" is not reported: "a" has its own problem above.
      '/models/0/targets/0/provider: no provider with id "nope"',
      '/models/2/name: duplicate model name "m"',
    ])
  })

  test("an entry the schema refuses still has the catalog problems of the parts it can read reported, in the same boot", async () => {
    const problems = await problemsOf({
      env: {},
      config: {
        providers: [provider({ keys: [{ id: 'k', secret: 's', rpm: 'fast' }, { id: 'k', secret: 't' }] }), provider({ id: 'up', timeouts: { first_byte: 5 } })],
        models: [
          { name: 'm', targets: [{ provider: 'nope', model: 'x' }], pricing: { input: '2.5', output: 10 }, fallbacks: ['m'] },
          { name: 'm', targets: [{ provider: 'up', model: 'x' }], strategy: 'random' },
        ],
      } as unknown as ConfigFile,
    })
    expect(problems).toEqual([
      expect.stringMatching(/^\/providers\/0\/keys\/0\/rpm: Expected integer/),
      expect.stringMatching(/^\/providers\/1\/timeouts\/first_byte: Unexpected property/),
      '/models/0/pricing/input: Expected number (got "2.5")',
      expect.stringMatching(/^\/models\/1\/strategy: must be one of/),
      '/providers/0/keys/1/id: duplicate key id "k" in provider "up"',
      '/providers/1/id: duplicate provider id "up"',
      '/models/0/targets/0/provider: no provider with id "nope"',
      '/models/0/fallbacks/0: a model cannot fall back to itself',
      '/models/1/name: duplicate model name "m"',
    ])
  })

  test('a section the schema refuses is left out of the checks that would read it, not the others', async () => {
    const problems = await problemsOf({
      env: { LOG_LEVEL: 'chatty' },
      config: { providers: [provider({ keys: 'k1' })], models: [{ ...model, fallbacks: ['nowhere'] }], server: { port: 'x', cors: { origins: ['nope'] } } } as unknown as ConfigFile,
    })
    expect(problems).toEqual([
      expect.stringMatching(/^\/providers\/0\/keys: Expected array/),
      expect.stringMatching(/^\/server\/port: Expected integer/),
      'LOG_LEVEL: "chatty" is not one of debug, info, warn, error, silent',
    ])
  })
})

describe('a bad config', () => {
  test('two wrong things → two problems, each with its path, one line each in the message', async () => {
    const error = await loadConfig({ env: {}, config: { environment: 'Prod!', limits: { max_body_bytes: 10 } } as ConfigFile }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ConfigError)
    const { problems, message } = error as ConfigError
    expect(problems.length).toBe(2)
    expect(problems[0]).toStartWith('/environment: ')
    expect(problems[0]).toContain('"Prod!"')
    expect(problems[1]).toStartWith('/limits/max_body_bytes: ')
    expect(message.split('\n').filter((line) => line.startsWith('  - '))).toEqual([`  - ${problems[0]}`, `  - ${problems[1]}`])
    expect(message).toContain('2 problems')
  })

  test('problems deep in lists are reported with their index', async () => {
    const problems = await problemsOf({
      env: {},
      config: {
        providers: [provider(), provider({ id: 'second', type: 'no-such-type' }), provider({ id: 'third', keys: [] })],
        models: [model],
        unknownTopLevel: true,
      } as unknown as ConfigFile,
    })
    expect(problems.some((p) => p.startsWith('/providers/1/type: '))).toBe(true)
    expect(problems.some((p) => p.startsWith('/providers/2/keys: '))).toBe(true)
    expect(problems.some((p) => p.includes('unknownTopLevel'))).toBe(true)
    expect(problems.every((p) => p.startsWith('/'))).toBe(true)
  })

  test('references: a model targeting an unknown provider is reported, a fallback to a model not defined is not (the admin API may add it)', async () => {
    const problems = await problemsOf({
      env: {},
      config: {
        providers: [provider()],
        models: [
          { name: 'a', targets: [{ provider: 'up', model: 'x' }, { provider: 'ghost', model: 'y' }], fallbacks: ['b', 'nowhere'] },
          { name: 'b', targets: [{ provider: 'up', model: 'z' }] },
        ],
      },
    })
    expect(problems).toEqual(['/models/0/targets/1/provider: no provider with id "ghost"'])
  })

  test('duplicates and an openai-compatible provider without baseUrl are reported', async () => {
    const problems = await problemsOf({
      env: {},
      config: {
        providers: [provider(), provider({ baseUrl: undefined, keys: [{ id: 'k', secret: '' }, { id: 'k', secret: '' }] })],
        models: [model, model],
      },
    })
    expect(problems).toContain('/providers/1/id: duplicate provider id "up"')
    expect(problems).toContain('/providers/1/keys/1/id: duplicate key id "k" in provider "up"')
    expect(problems).toContain('/providers/1/baseUrl: required for type openai-compatible')
    expect(problems).toContain('/models/1/name: duplicate model name "m"')
  })

  test('outside dev the boot stops without SLUICE_ENCRYPTION_KEY, saying how to make one; in dev it is not needed', async () => {
    const problems = await problemsOf({ env: { SLUICE_ENV: 'prod' }, config: {} })
    expect(problems).toEqual(['SLUICE_ENCRYPTION_KEY: required outside dev (this gateway serves "prod"); set a 32-byte base64 key (openssl rand -base64 32), the same on every instance'])
    expect((await loadConfig({ env: { SLUICE_ENV: 'prod', SLUICE_ENCRYPTION_KEY: MASTER }, config: {} })).encryptionKey).toBe(MASTER)
    expect((await loadConfig({ env: {}, config: {} })).encryptionKey).toBeNull()
  })

  test('bad environment variables are reported by name', async () => {
    const problems = await problemsOf({ env: { PORT: 'eighty', SLUICE_ENV: 'NOT A SLUG', LOG_LEVEL: 'chatty', SLUICE_ADMIN_KEY: 'admin' }, config: {} })
    expect(problems.length).toBe(4)
    // A guessable admin key (nothing slows down guesses at it) is refused.
    expect(problems).toContain('SLUICE_ADMIN_KEY: 5 characters is too short to guard the admin API; use at least 24 random ones (openssl rand -hex 24), or leave it unset to have one generated')
    expect((await loadConfig({ env: { SLUICE_ADMIN_KEY: 'a'.repeat(24) }, config: {} })).adminKey).toBe('a'.repeat(24))
    expect(problems.some((p) => p.startsWith('PORT: '))).toBe(true)
    expect(problems.some((p) => p.startsWith('SLUICE_ENV: '))).toBe(true)
    expect(problems.some((p) => p.startsWith('LOG_LEVEL: '))).toBe(true)
  })

  test('LOG_LEVEL: blank is unset (info), as PORT and HOST are; the case and white space around it do not matter', async () => {
    for (const [value, level] of [['', 'info'], ['  ', 'info'], ['INFO', 'info'], ['Warn', 'warn'], [' debug\n', 'debug']] as const) {
      expect((await loadConfig({ env: { LOG_LEVEL: value }, config: {} })).logLevel).toBe(level)
    }
    expect(await problemsOf({ env: { LOG_LEVEL: 'WARNING' }, config: {} })).toEqual(['LOG_LEVEL: "WARNING" is not one of debug, info, warn, error, silent'])
  })

  test('SLUICE_REUSE_PORT is 1 or 0 (blank is unset); another value is refused by name, not taken for 0', async () => {
    for (const [value, reuse] of [['1', true], [' 1 ', true], ['0', false], ['', false]] as const) {
      expect((await loadConfig({ env: { SLUICE_REUSE_PORT: value }, config: {} })).reusePort).toBe(reuse)
    }
    expect((await loadConfig({ env: {}, config: {} })).reusePort).toBe(false)
    expect(await problemsOf({ env: { SLUICE_REUSE_PORT: 'true' }, config: {} })).toEqual([
      'SLUICE_REUSE_PORT: "true" is neither 1 (share the port with other gateway processes) nor 0 (do not)',
    ])
  })

  test('a value outside a fixed set (a provider type, a strategy, a plugin mode) names the values accepted', async () => {
    const problems = await problemsOf({
      env: {},
      config: { providers: [provider({ type: 'open-ai' })], models: [{ ...model, strategy: 'roundrobin' }] } as unknown as ConfigFile,
    })
    expect(problems).toEqual([
      '/providers/0/type: must be one of "openai", "openai-compatible", "anthropic", "gemini", "mock" (got "open-ai")',
      '/models/0/strategy: must be one of "weighted", "round-robin", "least-busy", "latency", "usage" (got "roundrobin")',
    ])
    const config = await loadConfig({ env: {}, config: { plugins: [{ use: 'quota', options: { fail_mode: 'shut' } }] } })
    const error = await resolvePlugins(config, BUILTIN_PLUGINS).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).problems).toEqual(['/plugins/0: plugin "quota" option /fail_mode: must be one of "closed", "open"'])
  })

  test('a time in ms past what a timer can wait is refused, in the config and in plugin options (Bun fires a longer timer after 1 ms)', async () => {
    const tooLong = 2 ** 31
    const problems = await problemsOf({
      env: {},
      config: { providers: [provider({ timeouts: { total_ms: tooLong } })], server: { shutdown_grace_ms: tooLong } } as unknown as ConfigFile,
    })
    expect(problems).toEqual([expect.stringMatching(/^\/providers\/0\/timeouts\/total_ms: /), expect.stringMatching(/^\/server\/shutdown_grace_ms: /)])
    const longest = await loadConfig({ env: {}, config: { providers: [provider({ timeouts: { total_ms: tooLong - 1 } })] } as unknown as ConfigFile })
    expect(longest.providers[0]?.timeouts?.total_ms).toBe(tooLong - 1)
    for (const [plugin, option] of [['auth', 'last_used_flush_ms'], ['balance', 'backoff_max_ms'], ['logging', 'retention_check_ms'], ['tokens', 'timeout_ms']] as const) {
      const config = await loadConfig({ env: {}, config: { plugins: [{ use: plugin, options: { [option]: tooLong } }] } })
      const error = await resolvePlugins(config, BUILTIN_PLUGINS).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(ConfigError)
      expect((error as ConfigError).problems).toEqual([expect.stringContaining(`/plugins/0: plugin "${plugin}" option /${option}:`)])
    }
  })

  test("the quota plugin's times and estimate are bounded: past a timer's range a lease's renewal or a Redis call's deadline would fire at once", async () => {
    const config = await loadConfig({ env: {}, config: { plugins: [{ use: 'quota', options: { lease_ms: 7_000_000_000, redis_timeout_ms: 2 ** 31, completion_estimate: 1e300 } }] } })
    const error = await resolvePlugins(config, BUILTIN_PLUGINS).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ConfigError)
    const problems = (error as ConfigError).problems.join('\n')
    for (const option of ['completion_estimate', 'lease_ms', 'redis_timeout_ms']) expect(problems).toContain(`option /${option}:`)
  })

  test('TLS files that cannot be read are reported by their variable; readable ones are used by their full path', async () => {
    const cwd = folder()
    // A real pair (test/fixtures/tls): a readable file is also checked for what it holds (test/config.tls.test.ts).
    writeFileSync(join(cwd, 'cert.pem'), readFileSync(join(import.meta.dir, 'fixtures/tls/cert.pem')))
    writeFileSync(join(cwd, 'key.pem'), readFileSync(join(import.meta.dir, 'fixtures/tls/key.pem')))
    const problems = await problemsOf({ env: { SLUICE_TLS_CERT: join(cwd, 'nope.pem'), SLUICE_TLS_KEY: cwd }, cwd, config: {} })
    expect(problems).toEqual([`SLUICE_TLS_CERT: no file at ${join(cwd, 'nope.pem')}`, `SLUICE_TLS_KEY: ${cwd} is a folder, not a file`])
    const config = await loadConfig({ env: { SLUICE_TLS_CERT: 'cert.pem', SLUICE_TLS_KEY: 'key.pem' }, cwd, config: {} })
    expect(config.tls).toEqual({ cert: join(cwd, 'cert.pem'), key: join(cwd, 'key.pem') })
  })

  test('an unknown built-in plugin name is an error naming it', async () => {
    const config = await loadConfig({ env: {}, config: { plugins: ['definitely-not-a-plugin'] } })
    const error = await resolvePlugins(config, BUILTIN_PLUGINS).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).problems).toEqual([expect.stringContaining('/plugins/0: unknown plugin "definitely-not-a-plugin"')])
  })

  test('a problem never shows a value that came from an environment variable', async () => {
    const secret = 'sk-' + 'a'.repeat(48)
    const error = await loadConfig({
      env: { K: secret },
      config: {
        environment: '${K}',
        server: { port: '${K}' },
        providers: [provider({ keys: [{ id: 'k', key: '${K}' }] })],
        models: [model],
      } as unknown as ConfigFile,
    }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ConfigError)
    const { message, problems } = error as ConfigError
    expect(problems).toContain('/providers/0/keys/0/key: Unexpected property')
    expect(problems.some((p) => p.startsWith('/environment: '))).toBe(true)
    expect(problems.some((p) => p.startsWith('/server/port: '))).toBe(true)
    expect(message).not.toContain(secret.slice(0, 12))
  })

  test('nor the value of a misspelt key or of anything under a provider key, even written in the file', async () => {
    const secret = 'sk-' + 'b'.repeat(48)
    const { message } = (await loadConfig({
      env: {},
      config: { providers: [provider({ keys: [{ id: 'k', secret: 5 }, { id: 'k2', secert: secret }] })], models: [model] } as unknown as ConfigFile,
    }).catch((e: unknown) => e)) as ConfigError
    expect(message).toContain('/providers/0/keys/1/secert: Unexpected property')
    expect(message).toContain('/providers/0/keys/0/secret: ')
    expect(message).not.toContain(secret.slice(0, 12))
    expect(message).not.toContain('got')
  })

  test('a plugin entry with a key other than use and options is refused, naming the key', async () => {
    const problems = await problemsOf({
      env: {},
      config: { plugins: [{ use: 'quota', option: { fail_open: true } }, 'tokens', { use: 'auth', enabled: false }] } as unknown as ConfigFile,
    })
    expect(problems).toEqual([
      expect.stringMatching(/^\/plugins\/0\/option: unknown key.*did you mean "options"/),
      expect.stringMatching(/^\/plugins\/2\/enabled: unknown key/),
    ])
  })

  test('the plugin loader refuses such an entry too, when the config did not come through loadConfig', async () => {
    const config = { ...(await loadConfig({ env: {}, config: { plugins: [] } })), plugins: [{ use: 'quota', option: {} }] }
    const error = await resolvePlugins(config, BUILTIN_PLUGINS).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).problems).toEqual([expect.stringMatching(/^\/plugins\/0\/option: unknown key/)])
  })

  test('a malformed plugin entry is reported by loadConfig with its path', async () => {
    const problems = await problemsOf({ env: {}, config: { plugins: [{ use: '' }, 42] } as unknown as ConfigFile })
    expect(problems.some((p) => p.startsWith('/plugins/0'))).toBe(true)
    expect(problems.some((p) => p.startsWith('/plugins/1'))).toBe(true)
  })
})

describe('environment variables override the file', () => {
  const file: ConfigFile = {
    environment: 'prod',
    server: { port: 9000, host: '10.1.1.1' },
    database: { url: 'sqlite://./from-file.db' },
    providers: [provider()],
    models: [model],
  }

  test('without variables, the file wins over defaults', async () => {
    const config = await loadConfig({ env: { SLUICE_ENCRYPTION_KEY: MASTER }, config: file })
    expect([config.environment, config.port, config.host, config.databaseUrl]).toEqual(['prod', 9000, '10.1.1.1', 'sqlite://./from-file.db'])
  })

  test('SLUICE_ENV, PORT, HOST and DATABASE_URL override it', async () => {
    const config = await loadConfig({
      env: { SLUICE_ENV: 'staging', PORT: '9123', HOST: '127.0.0.1', DATABASE_URL: 'sqlite::memory:', REDIS_URL: 'redis://127.0.0.1:6390', SLUICE_ENCRYPTION_KEY: MASTER },
      config: file,
    })
    expect([config.environment, config.port, config.host, config.databaseUrl, config.redisUrl]).toEqual([
      'staging',
      9123,
      '127.0.0.1',
      'sqlite::memory:',
      'redis://127.0.0.1:6390',
    ])
  })
})

describe('config files', () => {
  const json = { environment: 'jsonenv', providers: [provider({ keys: [{ id: 'k1', secret: '${FILE_SECRET}' }] })], models: [model], limits: { max_body_bytes: 2048 } }

  test('a JSON file named by SLUICE_CONFIG (relative to the working dir), interpolated', async () => {
    const cwd = folder()
    mkdirSync(join(cwd, 'conf'))
    writeFileSync(join(cwd, 'conf', 'gateway.json'), JSON.stringify(json))
    const config = await loadConfig({ env: { SLUICE_CONFIG: 'conf/gateway.json', FILE_SECRET: 's3', SLUICE_ENCRYPTION_KEY: MASTER }, cwd })
    expect(config.configPath).toBe(join(cwd, 'conf', 'gateway.json'))
    expect(config.baseDir).toBe(join(cwd, 'conf'))
    expect(config.environment).toBe('jsonenv')
    expect(config.maxBodyBytes).toBe(2048)
    expect(config.providers[0]?.keys[0]?.secret).toBe('s3')
  })

  test('sluice.config.json in the working dir, by default', async () => {
    const cwd = folder()
    writeFileSync(join(cwd, 'sluice.config.json'), JSON.stringify(json))
    const config = await loadConfig({ env: { FILE_SECRET: 'x', SLUICE_ENCRYPTION_KEY: MASTER }, cwd })
    expect(config.configPath).toBe(join(cwd, 'sluice.config.json'))
    expect(config.environment).toBe('jsonenv')
  })

  const tsConfig = (env: string) => `import { defineConfig } from ${JSON.stringify(SRC_INDEX)}

export default defineConfig({
  environment: ${JSON.stringify(env)},
  providers: [{ id: 'up', type: 'openai-compatible', baseUrl: 'http://127.0.0.1:9/v1', keys: [{ id: 'k1', secret: '\${TS_SECRET}' }] }],
  models: [{ name: 'm', targets: [{ provider: 'up', model: 'upstream-m' }] }],
  plugins: [],
})
`

  test('sluice.config.ts with defineConfig in the working dir, preferred over sluice.config.json', async () => {
    const cwd = folder()
    writeFileSync(join(cwd, 'sluice.config.ts'), tsConfig('tsenv'))
    writeFileSync(join(cwd, 'sluice.config.json'), JSON.stringify(json))
    const config = await loadConfig({ env: { TS_SECRET: 'from-ts', SLUICE_ENCRYPTION_KEY: MASTER }, cwd })
    expect(config.configPath).toBe(join(cwd, 'sluice.config.ts'))
    expect(config.environment).toBe('tsenv')
    expect(config.providers[0]?.keys[0]?.secret).toBe('from-ts')
    expect(config.plugins).toEqual([])
  })

  test('a TS config may list plugin instances with options; they survive loading intact', async () => {
    const cwd = folder()
    const blockPii = resolve(import.meta.dir, '../plugins/examples/block-pii/index.ts')
    writeFileSync(
      join(cwd, 'sluice.config.ts'),
      `import { defineConfig } from ${JSON.stringify(SRC_INDEX)}
import { blockPii } from ${JSON.stringify(blockPii)}

export default defineConfig({ plugins: [blockPii({ action: 'redact', detect: ['email'], replacement: '[gone]' })] })
`,
    )
    const config = await loadConfig({ env: {}, cwd })
    const instances = await resolvePlugins(config, BUILTIN_PLUGINS)
    expect(instances.map((i) => [i.name, i.options])).toEqual([['block-pii', { action: 'redact', detect: ['email'], replacement: '[gone]' }]])
  })

  test('a TS file named by SLUICE_CONFIG (absolute)', async () => {
    const where = join(folder(), 'custom.config.ts')
    writeFileSync(where, tsConfig('custom'))
    const config = await loadConfig({ env: { SLUICE_CONFIG: where, TS_SECRET: 'y', SLUICE_ENCRYPTION_KEY: MASTER }, cwd: folder() })
    expect(config.configPath).toBe(where)
    expect(config.environment).toBe('custom')
  })

  test('SLUICE_CONFIG naming a missing file is an error naming the path', async () => {
    const cwd = folder()
    const problems = await problemsOf({ env: { SLUICE_CONFIG: 'missing.json' }, cwd })
    expect(problems).toEqual([`SLUICE_CONFIG: no file at ${join(cwd, 'missing.json')}`])
  })

  test('a JSON file that does not parse is an error naming the file', async () => {
    const cwd = folder()
    writeFileSync(join(cwd, 'sluice.config.json'), '{"environment": "prod",')
    const problems = await problemsOf({ env: {}, cwd })
    expect(problems.length).toBe(1)
    expect(problems[0]).toStartWith(`${join(cwd, 'sluice.config.json')}: not valid JSON`)
  })

  test('a TS file without a default export is an error naming the file', async () => {
    const cwd = folder()
    writeFileSync(join(cwd, 'sluice.config.ts'), 'export const nothing = 1\n')
    const problems = await problemsOf({ env: {}, cwd })
    expect(problems.length).toBe(1)
    expect(problems[0]).toStartWith(join(cwd, 'sluice.config.ts'))
    expect(problems[0]).toContain('export default defineConfig')
  })
})
