/**
 * A fallback group is taken for a request only when the calling key may use that model itself
 * (the allow-list auth answers model_not_allowed by): a key limited to a cheap model is never served
 * by the expensive model the cheap one falls back to. Real HTTP on 127.0.0.1, auth and balance in
 * front of an upstream whose answers are set per model name.
 */
import { describe, expect, test } from 'bun:test'
import { BALANCE_ADMIN_KEY, secretOf, startModelUpstream, upstreamForFile } from '../../test/support/balance.ts'
import { startGateway, type TestGateway } from '../../test/support/gateway.ts'
import { expectError } from '../../test/support/http.ts'

const fixture = upstreamForFile(startModelUpstream)

async function boot(): Promise<TestGateway> {
  const gw = fixture.closeAfter(await startGateway(
    {
      providers: [{ id: 'p', type: 'openai-compatible', baseUrl: fixture.up.url, keys: [{ id: 'k1', secret: secretOf('k1') }] }],
      models: [
        { name: 'cheap', targets: [{ provider: 'p', model: 'model-cheap' }], fallbacks: ['secret-expensive', 'other'] },
        { name: 'secret-expensive', targets: [{ provider: 'p', model: 'model-x' }] },
        { name: 'other', targets: [{ provider: 'p', model: 'model-o' }] },
      ],
      plugins: [{ use: 'auth', options: { demo_key: false } }, { use: 'balance', options: { backoff_ms: 0 } }],
    },
    { env: { SLUICE_ADMIN_KEY: BALANCE_ADMIN_KEY } },
  ))
  const user = await admin(gw, '/admin/users', { id: 'alice' })
  expect(user.status).toBe(201)
  return gw
}

const admin = (g: TestGateway, path: string, body: unknown) =>
  fetch(g.url + path, { method: 'POST', headers: { authorization: `Bearer ${BALANCE_ADMIN_KEY}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })

/** A new API key of alice's with this model allow-list (null: every model). */
async function keyFor(g: TestGateway, models: string[] | null): Promise<string> {
  const res = await admin(g, '/admin/keys', { user_id: 'alice', ...(models ? { models } : {}) })
  expect(res.status).toBe(201)
  return ((await res.json()) as { key: string }).key
}

const chat = (g: TestGateway, key: string, model: string) =>
  fetch(`${g.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hello' }] }),
  })

/** The upstream model that answered a request that must succeed. */
async function servedBy(res: Response): Promise<string> {
  const text = await res.text()
  expect({ status: res.status, body: res.status === 200 ? '' : text }).toEqual({ status: 200, body: '' })
  return (JSON.parse(text) as { model: string }).model
}

describe('fallbacks and the calling key\'s allow-list', () => {
  test('a key that may use only "cheap" is not served by its fallbacks: the failure is the one it would have without them', async () => {
    const g = await boot()
    const key = await keyFor(g, ['cheap'])
    const direct = await chat(g, key, 'secret-expensive')
    expect([direct.status, ((await direct.json()) as { error: { code: string } }).error.code]).toEqual([403, 'model_not_allowed'])
    fixture.up.fail('model-cheap', { status: 500 })
    const error = await expectError(await chat(g, key, 'cheap'), 'upstream_error')
    expect(error.message).not.toContain('secret-expensive')
    expect([fixture.up.requests('model-x'), fixture.up.requests('model-o')]).toEqual([0, 0])
    // Every key of cheap itself out (its circuit open after the default 5 in a row): 503 as without fallbacks.
    for (let i = 0; i < 4; i++) await expectError(await chat(g, key, 'cheap'), 'upstream_error')
    const none = await expectError(await chat(g, key, 'cheap'), 'no_healthy_upstream')
    expect(none.message).toContain('for model "cheap"')
    expect(none.message).not.toContain('secret-expensive')
    expect([fixture.up.requests('model-x'), fixture.up.requests('model-o')]).toEqual([0, 0])
  })

  test('the fallbacks it may use are still taken, in order, skipping the one it may not', async () => {
    const g = await boot()
    const key = await keyFor(g, ['cheap', 'other'])
    fixture.up.fail('model-cheap', { status: 500 })
    expect(await servedBy(await chat(g, key, 'cheap'))).toBe('model-o')
    expect([fixture.up.requests('model-cheap'), fixture.up.requests('model-x'), fixture.up.requests('model-o')]).toEqual([1, 0, 1])
  })

  test('a key that may use every model takes the first fallback', async () => {
    const g = await boot()
    const key = await keyFor(g, null)
    fixture.up.fail('model-cheap', { status: 500 })
    expect(await servedBy(await chat(g, key, 'cheap'))).toBe('model-x')
  })
})
