/**
 * A config file changed between restarts under a database that holds providers and models added
 * through the admin API: a stored model whose provider is gone from the config file does not stop
 * the boot (it is not served, and stays in /admin/models to be changed or deleted), and a stored
 * provider or model whose id the config file now defines too is the config file's, in routing as
 * in the admin API, which shows it once.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { closedPort, expectError } from './support/http.ts'
import { startGateway, type TestGateway } from './support/gateway.ts'
import type { ConfigFile } from '../src/config/schema.ts'
import { createLogger } from '../src/lib/logger.ts'

const ADMIN = 'catalog-change-admin-0123456789abcdef'
const SECRET = 'sk-provider-secret-change-0123456789'
const ENCRYPTION = Buffer.alloc(32, 5).toString('base64')
const admin = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }

describe('a config file changed between restarts', () => {
  let mock: MockUpstream
  let dir: string
  let gw: TestGateway | undefined
  const warnings: string[] = []

  const boot = (config: ConfigFile) =>
    startGateway(
      { environment: 'prod', plugins: [], ...config },
      {
        env: { SLUICE_ADMIN_KEY: ADMIN, DATABASE_URL: `sqlite://${join(dir, 'change.db')}`, SLUICE_ENCRYPTION_KEY: ENCRYPTION },
        gateway: { logger: createLogger('warn', (line) => void warnings.push(line)) },
      },
    )
  const call = (url: string, method: string, path: string, body?: unknown) =>
    fetch(`${url}${path}`, { method, headers: admin, ...(body !== undefined && { body: JSON.stringify(body) }) })
  const chat = (url: string, model: string) =>
    fetch(`${url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }) })

  beforeAll(async () => {
    mock = await startMockUpstream({ apiKeys: [SECRET] })
    dir = mkdtempSync(join(tmpdir(), 'sluice-catalog-change-'))
    // First life: the config file has provider "first"; the admin API adds provider "shared" (at a
    // port nothing listens on), a model on each, and model "both" that the next config defines too.
    const first = await boot({ providers: [{ id: 'first', type: 'openai-compatible', baseUrl: mock.url, keys: [{ id: 'k1', secret: SECRET }] }] })
    const dead = `http://127.0.0.1:${await closedPort()}/v1`
    for (const [path, body] of [
      ['/admin/providers', { id: 'shared', type: 'openai-compatible', base_url: dead, keys: [{ id: 'stored', secret: SECRET }] }],
      ['/admin/models', { name: 'on-first', targets: [{ provider: 'first', model: 'mock-gpt' }] }],
      ['/admin/models', { name: 'on-shared', targets: [{ provider: 'shared', model: 'mock-gpt' }] }],
      ['/admin/models', { name: 'both', targets: [{ provider: 'shared', model: 'mock-gpt' }] }],
    ] as const) {
      expect((await call(first.url, 'POST', path, body)).status).toBe(201)
    }
    await first.close()
    // Second life: "first" is gone from the config file; "shared" and "both" are in it now.
    gw = await boot({
      providers: [{ id: 'shared', type: 'openai-compatible', baseUrl: mock.url, keys: [{ id: 'configured', secret: SECRET }] }],
      models: [{ name: 'both', targets: [{ provider: 'shared', model: 'mock-gpt' }] }],
    })
  })

  afterAll(async () => {
    await gw?.close()
    await mock?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  test('the gateway boots, and says which stored model it does not serve and why', () => {
    expect(gw).toBeDefined()
    expect(warnings.some((w) => w.includes('"on-first"') && w.includes('"first"'))).toBe(true)
  })

  test("a provider and a model the config file defines too are the config file's: listed once, and called", async () => {
    const url = gw!.url
    const providers = (await (await call(url, 'GET', '/admin/providers')).json()) as { data: { id: string; source: string }[] }
    expect(providers.data.map((p) => [p.id, p.source])).toEqual([['shared', 'config']])
    const models = (await (await call(url, 'GET', '/admin/models')).json()) as { data: { name: string; source: string }[] }
    expect(models.data.map((m) => [m.name, m.source])).toEqual([
      ['both', 'config'],
      ['on-first', 'admin'],
      ['on-shared', 'admin'],
    ])
    // The stored "shared" points at a closed port: only the config file's answers.
    expect((await chat(url, 'both')).status).toBe(200)
    expect((await chat(url, 'on-shared')).status).toBe(200)
    expect(warnings.some((w) => w.includes('"shared"') && w.includes('config file'))).toBe(true)
  })

  test('the stored model whose provider is gone is not served until it is changed, and can be deleted', async () => {
    const url = gw!.url
    await expectError(await chat(url, 'on-first'), 'model_not_found')
    const patched = await call(url, 'PATCH', '/admin/models/on-first', { targets: [{ provider: 'shared', model: 'mock-gpt' }] })
    expect(patched.status).toBe(200)
    expect((await chat(url, 'on-first')).status).toBe(200)
    expect((await call(url, 'DELETE', '/admin/models/on-first')).status).toBe(200)
    await expectError(await chat(url, 'on-first'), 'model_not_found')
  })
})
