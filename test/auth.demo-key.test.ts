/**
 * The demo key of the first start: an unrestricted key (every model, no limit), printed to the
 * boot output. Made in the dev environment only, unless the auth plugin's `demo_key` says otherwise.
 */
import { describe, expect, test } from 'bun:test'
import type { ConfigFile } from '../src/config/schema.ts'
import { bootProcess } from './support/boot-process.ts'
import { startGateway } from './support/gateway.ts'
import { freePort } from './support/redis-procs.ts'

const ADMIN = 'sluice-demo-key-test-admin-0123456789'
const MASTER = Buffer.alloc(32, 5).toString('base64')

/** Whether a first start with this config made the demo user (and so its key). */
async function madeDemoUser(config: ConfigFile & { plugins?: unknown[] }): Promise<boolean> {
  const gw = await startGateway(config, { env: { SLUICE_ADMIN_KEY: ADMIN, SLUICE_ENCRYPTION_KEY: MASTER } })
  try {
    const res = await fetch(`${gw.url}/admin/users/usr_demo`, { headers: { authorization: `Bearer ${ADMIN}` } })
    expect([200, 404]).toContain(res.status)
    return res.status === 200
  } finally {
    await gw.close()
  }
}

describe('the demo key', () => {
  test('is made in dev by default, not in another environment; demo_key set either way wins', async () => {
    expect(await madeDemoUser({ plugins: ['auth'] })).toBe(true)
    expect(await madeDemoUser({ environment: 'prod', plugins: ['auth'] })).toBe(false)
    expect(await madeDemoUser({ environment: 'prod', plugins: [{ use: 'auth', options: { demo_key: true } }] })).toBe(true)
    expect(await madeDemoUser({ plugins: [{ use: 'auth', options: { demo_key: false } }] })).toBe(false)
  })

  test('a first start in prod prints the admin key but no API key', async () => {
    const config = {
      environment: 'prod',
      providers: [{ id: 'openai', type: 'openai', baseUrl: 'http://127.0.0.1:9/v1', keys: [{ id: 'oa-1', secret: '${OPENAI_KEY_1}' }] }],
      models: [{ name: 'gpt-4o', targets: [{ provider: 'openai', model: 'gpt-4o' }] }],
    }
    const result = await bootProcess({
      files: { 'sluice.config.json': JSON.stringify(config) },
      env: { PORT: String(freePort()), HOST: '127.0.0.1', DATABASE_URL: 'sqlite::memory:', OPENAI_KEY_1: 'sk-real', SLUICE_ENCRYPTION_KEY: MASTER },
    })
    expect(result.listening).not.toBeNull()
    expect(result.stdout).toContain('sluice-admin-')
    expect(result.stdout).not.toMatch(/sk-prod-/)
    expect(result.stdout).not.toContain('demo')
  }, 30_000)
})
