/**
 * A config the gateway cannot use, as an operator meets it: `bun run src/main.ts` exits 2 with one
 * line per problem, and has created nothing (no database file, no dev encryption key) when it does.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

const ROOT = resolve(import.meta.dir, '..')
const SRC_INDEX = join(ROOT, 'src/index.ts')
/** The gateway must stop before it listens; were it to start, it would listen here (the range these tests may use). */
const PORT = '19453'

let dir: string
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-config-boot-'))
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const provider = { id: 'p', type: 'openai-compatible', baseUrl: 'http://127.0.0.1:9/v1', keys: [{ id: 'k', secret: 's' }] }
const model = { name: 'm', targets: [{ provider: 'p', model: 'x' }] }

/** A plugin module with options, for configs to load by path or import. */
const PLUGIN_SOURCE = `import { definePlugin, t } from ${JSON.stringify(SRC_INDEX)}
export default definePlugin({ name: 'tagger', options: t.Object({ tag: t.String() }), setup: () => ({}) })
`

interface Boot {
  code: number
  stderr: string
  /** What the gateway left in the folder its SQLite database was to be in. */
  dataDir: string[]
}

/**
 * Boots the gateway on a config file written into a fresh folder (its data folder beside it);
 * files maps file names to their text; env adds variables (undefined: unset). Killed if still running after 15 s.
 */
async function boot(configName: string, files: Record<string, string>, env: Record<string, string | undefined> = {}): Promise<Boot> {
  const folder = join(dir, crypto.randomUUID())
  mkdirSync(folder)
  for (const [name, text] of Object.entries(files)) writeFileSync(join(folder, name), text)
  const data = join(folder, 'data')
  const proc = Bun.spawn([process.execPath, 'run', join(ROOT, 'src/main.ts')], {
    cwd: folder,
    env: {
      ...process.env,
      PORT,
      HOST: '127.0.0.1',
      SLUICE_CONFIG: join(folder, configName),
      DATABASE_URL: `sqlite://${join(data, 'sluice.db')}`,
      SLUICE_ADMIN_KEY: 'sluice-admin-test-only-0123456789',
      SLUICE_ENCRYPTION_KEY: undefined,
      SLUICE_ENV: undefined,
      REDIS_URL: undefined,
      LOG_LEVEL: 'warn',
      ...env,
    },
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
  })
  const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000)
  const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited])
  clearTimeout(timer)
  return { code, stderr, dataDir: existsSync(data) ? readdirSync(data) : [] }
}

describe('plugin problems are config problems: exit 2, before anything is created', () => {
  test('JSON: an unknown plugin name, a module that is not there, one that exports no plugin, bad options', async () => {
    const config = {
      providers: [provider],
      models: [model],
      plugins: [
        { use: 'balance', options: { max_attempt: 3 } },
        'balnce',
        { use: './nothere.ts' },
        { use: './no-plugin.ts' },
        { use: './tagger.ts', options: { tag: 1 } },
      ],
    }
    const result = await boot('sluice.config.json', {
      'sluice.config.json': JSON.stringify(config),
      'no-plugin.ts': 'export const x = 1\n',
      'tagger.ts': PLUGIN_SOURCE,
    })
    expect(result.code).toBe(2)
    expect(result.stderr).toStartWith('sluice: invalid configuration (5 problems):')
    expect(result.stderr).not.toContain('failed to start')
    expect(result.stderr).toContain('  - /plugins/0: plugin "balance" option /max_attempt: Unexpected property')
    expect(result.stderr).toContain('  - /plugins/1: unknown plugin "balnce"')
    expect(result.stderr).toContain('  - /plugins/2: plugin "./nothere.ts" cannot be loaded')
    expect(result.stderr).toContain('  - /plugins/3: plugin "./no-plugin.ts" exports no plugin')
    expect(result.stderr).toContain('  - /plugins/4: plugin "tagger" option /tag: Expected string')
    expect(result.dataDir).toEqual([])
  }, 30_000)

  test('TS: a plugin imported through defineConfig and given bad options', async () => {
    const config = `import { defineConfig } from ${JSON.stringify(SRC_INDEX)}
import tagger from './tagger.ts'
export default defineConfig({
  providers: [${JSON.stringify(provider)}],
  models: [${JSON.stringify(model)}],
  plugins: ['balance', tagger({ tag: 5 } as never)],
})
`
    const result = await boot('sluice.config.ts', { 'sluice.config.ts': config, 'tagger.ts': PLUGIN_SOURCE })
    expect(result.code).toBe(2)
    expect(result.stderr.trim()).toBe('sluice: invalid configuration (1 problem):\n  - /plugins/1: plugin "tagger" option /tag: Expected string')
    expect(result.dataDir).toEqual([])
  }, 30_000)

  test('plugin problems come with the config file’s other problems, in one boot', async () => {
    const config = { providers: [provider], models: [{ name: 'm', targets: [{ provider: 'q', model: 'x' }] }], plugins: ['balnce'] }
    const result = await boot('sluice.config.json', { 'sluice.config.json': JSON.stringify(config) }, { PORT: 'eighty' })
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('(3 problems)')
    expect(result.stderr).toContain('  - /models/0/targets/0/provider: no provider with id "q"')
    expect(result.stderr).toContain('  - PORT: "eighty" is not a port number')
    expect(result.stderr).toContain('  - /plugins/0: unknown plugin "balnce"')
  }, 30_000)
})

describe('TLS files are checked with the config', () => {
  test('a certificate or key that cannot be read stops the boot naming its variable, exit 2, before anything is created', async () => {
    const result = await boot('sluice.config.json', { 'sluice.config.json': '{}' }, { SLUICE_TLS_CERT: '/nope/cert.pem', SLUICE_TLS_KEY: '/nope/key.pem' })
    expect(result.code).toBe(2)
    expect(result.stderr.trim()).toBe('sluice: invalid configuration (2 problems):\n  - SLUICE_TLS_CERT: no file at /nope/cert.pem\n  - SLUICE_TLS_KEY: no file at /nope/key.pem')
    expect(result.dataDir).toEqual([])
  }, 30_000)
})

describe('DATABASE_URL and REDIS_URL the gateway cannot use are config problems', () => {
  test('each is named, its password masked, exit 2, before anything is created', async () => {
    const result = await boot('sluice.config.json', { 'sluice.config.json': JSON.stringify({ providers: [provider], models: [model] }) }, {
      DATABASE_URL: 'mysql://root:hunter2@localhost/sluice',
      REDIS_URL: 'http://user:hunter3@x',
    })
    expect(result.code).toBe(2)
    expect(result.stderr).toStartWith('sluice: invalid configuration (2 problems):')
    expect(result.stderr).toContain('  - DATABASE_URL: Unsupported DATABASE_URL "mysql://root:***@localhost/sluice". Expected sqlite://')
    expect(result.stderr).toContain('  - REDIS_URL: the scheme "http:" is not Redis\'s; expected redis://HOST:PORT')
    expect(result.stderr).not.toContain('hunter')
    expect(result.dataDir).toEqual([])
  }, 30_000)

  test("the config file's database.url and redis.url are named by their paths", async () => {
    const config = { database: { url: 'mongodb://h/x' }, redis: { url: 'redis+sentinel://h1:26379,h2:26379' } }
    const result = await boot('sluice.config.json', { 'sluice.config.json': JSON.stringify(config) }, { DATABASE_URL: undefined })
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('  - /database/url: Unsupported DATABASE_URL "mongodb://h/x"')
    expect(result.stderr).toContain('  - /redis/url: names no master')
    expect(result.dataDir).toEqual([])
  }, 30_000)
})

describe('SLUICE_ENCRYPTION_KEY_PREVIOUS is checked with the config', () => {
  test('a previous key that is not 32 bytes of base64 is named, by its place in the list, exit 2, before anything is created', async () => {
    const good = Buffer.alloc(32, 3).toString('base64')
    const result = await boot('sluice.config.json', { 'sluice.config.json': '{}' }, {
      SLUICE_ENCRYPTION_KEY: Buffer.alloc(32, 4).toString('base64'),
      SLUICE_ENCRYPTION_KEY_PREVIOUS: `${good}, not-a-key`,
    })
    expect(result.code).toBe(2)
    expect(result.stderr.trim()).toBe(
      'sluice: invalid configuration (1 problem):\n  - SLUICE_ENCRYPTION_KEY_PREVIOUS: its key 2 is not 32 bytes, base64-encoded (each key of the comma-separated list is one, as SLUICE_ENCRYPTION_KEY is)',
    )
    expect(result.dataDir).toEqual([])
  }, 30_000)
})
