/**
 * A fallback that names a model the config file does not define: the model may be added at run
 * time (POST /admin/models, kept in the database), so the boot goes on with a warning naming it,
 * a request skips it meanwhile, and uses the model once it is added.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { loadConfig } from '../src/config/load.ts'
import type { ConfigFile } from '../src/config/schema.ts'
import { startKeyedUpstream, type KeyedUpstream } from './fixtures/keyed-upstream.ts'
import { secretOf } from './support/balance.ts'
import { bootProcess } from './support/boot-process.ts'
import { bootProblems, startGateway } from './support/gateway.ts'
import { postJson } from './support/http.ts'
import { freePort } from './support/redis-procs.ts'

/** DESIGN.md's config file example ("Config file"), verbatim. */
const DESIGN_EXAMPLE = `{
  "environment": "prod",
  "providers": [
    { "id": "openai", "type": "openai", "baseUrl": "https://api.openai.com/v1",
      "keys": [ { "id": "oa-1", "secret": "\${OPENAI_KEY_1}", "weight": 2, "rpm": 500, "tpm": 200000 },
                { "id": "oa-2", "secret": "\${OPENAI_KEY_2}" } ] },
    { "id": "claude", "type": "anthropic", "keys": [ { "id": "an-1", "secret": "\${ANTHROPIC_KEY}" } ] },
    { "id": "local",  "type": "openai-compatible", "baseUrl": "http://127.0.0.1:8000/v1", "keys": [ { "id": "none", "secret": "" } ] }
  ],
  "models": [
    { "name": "gpt-4o", "strategy": "weighted",
      "targets": [ { "provider": "openai", "model": "gpt-4o", "weight": 3 }, { "provider": "local", "model": "llama-3" } ],
      "fallbacks": ["gpt-4o-mini"], "pricing": { "input": 2.5, "output": 10 } }
  ],
  "plugins": ["auth", "quota", "tokens", "balance", "logging", { "use": "./my-plugins/block-pii.ts", "options": { } }]
}
`

const DESIGN_ENV = { OPENAI_KEY_1: 'sk-one', OPENAI_KEY_2: 'sk-two', ANTHROPIC_KEY: 'sk-ant', SLUICE_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64') }

describe("DESIGN.md's config example", () => {
  test('loads: its model falls back to gpt-4o-mini, which it does not define', async () => {
    const config = await loadConfig({ config: JSON.parse(DESIGN_EXAMPLE) as ConfigFile, env: DESIGN_ENV })
    expect(config.models.map((m) => [m.name, m.fallbacks])).toEqual([['gpt-4o', ['gpt-4o-mini']]])
  })

  test('boots as a process, warning that the fallback names no model yet', async () => {
    const result = await bootProcess({
      files: {
        'sluice.config.json': DESIGN_EXAMPLE,
        'my-plugins/block-pii.ts': `import { definePlugin } from ${JSON.stringify(new URL('../src/index.ts', import.meta.url).pathname)}\nexport default definePlugin({ name: 'block-pii', setup: () => ({}) })\n`,
      },
      env: { ...DESIGN_ENV, PORT: String(freePort()), HOST: '127.0.0.1', DATABASE_URL: 'sqlite::memory:', LOG_LEVEL: 'info' },
    })
    expect(result.listening).not.toBeNull()
    const warning = result.stderr.split('\n').find((l) => l.includes('"warn"') && l.includes('gpt-4o-mini'))
    expect(warning).toBeDefined()
    expect(JSON.parse(warning!)).toMatchObject({ model: 'gpt-4o', fallback: 'gpt-4o-mini' })
  }, 30_000)
})

describe('still refused', () => {
  test('a model falling back to itself, and an unknown provider', async () => {
    const problems = await bootProblems({
      providers: [{ id: 'p', type: 'mock', keys: [{ id: 'k', secret: '' }] }],
      models: [{ name: 'a', targets: [{ provider: 'nope', model: 'x' }], fallbacks: ['a', 'later'] }],
    })
    expect(problems).toEqual(['/models/0/targets/0/provider: no provider with id "nope"', '/models/0/fallbacks/0: a model cannot fall back to itself'])
  })
})

describe('at request time', () => {
  let up: KeyedUpstream
  beforeAll(async () => {
    up = await startKeyedUpstream()
  })
  afterAll(() => up.stop())

  test('a fallback naming no model is skipped; once the admin API adds the model, it serves', async () => {
    const admin = 'sluice-fallback-test-admin-0123456789'
    const provider = (id: string, key: string) => ({ id, type: 'openai-compatible' as const, baseUrl: up.url, keys: [{ id: key, secret: secretOf(key) }] })
    const gw = await startGateway(
      {
        providers: [provider('main', 'm1'), provider('spare', 's1')],
        models: [{ name: 'm', targets: [{ provider: 'main', model: 'mock-gpt' }], fallbacks: ['later'] }],
        plugins: [{ use: 'balance', options: { backoff_ms: 1, backoff_max_ms: 2 } }],
      },
      { env: { SLUICE_ADMIN_KEY: admin } },
    )
    try {
      up.set(secretOf('m1'), { failure: { status: 500 } })
      const chat = () => postJson(`${gw.url}/v1/chat/completions`, { model: 'm', messages: [{ role: 'user', content: 'hi' }] })
      const before = await chat()
      expect(before.status).toBe(502)
      expect(up.stats(secretOf('s1')).requests).toBe(0)

      const added = await postJson(`${gw.url}/admin/models`, { name: 'later', targets: [{ provider: 'spare', model: 'mock-gpt-spare' }] }, { authorization: `Bearer ${admin}` })
      expect(added.status).toBe(201)
      const after = await chat()
      expect(after.status).toBe(200)
      expect(((await after.json()) as { model: string }).model).toBe('mock-gpt-spare')
      expect(up.stats(secretOf('s1')).requests).toBe(1)
    } finally {
      await gw.close()
    }
  })
})
