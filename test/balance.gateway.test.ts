/**
 * The balance plugin together with the rest of the gateway: what a fallback costs, a provider
 * key's own tpm, and a key whose secret the operator replaced through the admin API. Real HTTP
 * on 127.0.0.1 to the keyed upstream (the only fake), which tells the keys apart by secret.
 */
import { describe, expect, test } from 'bun:test'
import type { ConfigFile } from '../src/config/schema.ts'
import { definePlugin, type Usage } from '../src/plugin.ts'
import { startKeyedUpstream } from './fixtures/keyed-upstream.ts'
import { secretOf, type HealthRow, upstreamForFile } from './support/balance.ts'
import { startGateway, type TestGateway } from './support/gateway.ts'
import { expectError, postJson, waitFor } from './support/http.ts'

const ADMIN = 'sluice-balance-gateway-test-admin-0123456789'
const admin = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }
/** Short timings so a failing key does not slow the tests. */
const FAST = { cooldown_ms: 1000, circuit_failures: 3, circuit_open_ms: 600, backoff_ms: 5, backoff_max_ms: 20 }

const fixture = upstreamForFile(startKeyedUpstream)

async function boot(config: ConfigFile, plugins: unknown[] = []): Promise<TestGateway> {
  const gw = fixture.closeAfter(await startGateway({ ...config, plugins: [{ use: 'balance', options: FAST }, ...plugins] }, { env: { SLUICE_ADMIN_KEY: ADMIN } }))
  return gw
}

const provider = (id: string, keys: NonNullable<ConfigFile['providers']>[number]['keys']) => ({ id, type: 'openai-compatible' as const, baseUrl: fixture.up.url, keys })
const chat = (g: TestGateway, body: Record<string, unknown> = {}) =>
  postJson(`${g.url}/v1/chat/completions`, { model: 'm', messages: [{ role: 'user', content: 'hello' }], ...body })
const requests = (key: string): number => fixture.up.stats(secretOf(key)).requests

describe('usage after a fallback', () => {
  test('is priced at the group that served the request, not the one the client named', async () => {
    const usages: Usage[] = []
    const recorder = definePlugin({ name: 'test-usage', setup: () => ({ onUsage: (_req, usage) => void usages.push(usage) }) })
    const g = await boot(
      {
        providers: [provider('main', [{ id: 'm1', secret: secretOf('m1') }]), provider('spare', [{ id: 's1', secret: secretOf('s1') }])],
        models: [
          { name: 'm', targets: [{ provider: 'main', model: 'mock-gpt' }], fallbacks: ['backup'], pricing: { input: 1, output: 1 } },
          { name: 'backup', targets: [{ provider: 'spare', model: 'mock-gpt-spare' }], pricing: { input: 100, output: 200 } },
        ],
      },
      [recorder],
    )
    fixture.up.set(secretOf('m1'), { failure: { status: 500 } })
    const res = await chat(g)
    expect(res.status).toBe(200)
    const body = (await res.json()) as { model: string; usage: { prompt_tokens: number; completion_tokens: number } }
    expect(body.model).toBe('mock-gpt-spare')
    expect([requests('m1'), requests('s1')]).toEqual([1, 1])
    await waitFor(() => usages.length === 1, 'onUsage')
    expect(usages[0]!.promptTokens).toBe(body.usage.prompt_tokens)
    expect(usages[0]!.costUsd).toBeCloseTo((body.usage.prompt_tokens * 100 + body.usage.completion_tokens * 200) / 1_000_000, 12)
  })
})

describe('a target that answers 4xx with a web page (a baseUrl with a wrong path, a proxy in the way)', () => {
  test('is the upstream\'s failure: the next target serves, where the client got the page\'s 404 as model_not_found', async () => {
    const g = await boot({
      providers: [provider('main', [{ id: 'm1', secret: secretOf('m1') }]), provider('spare', [{ id: 's1', secret: secretOf('s1') }])],
      models: [{ name: 'm', targets: [{ provider: 'main', model: 'mock-gpt' }, { provider: 'spare', model: 'mock-gpt' }], strategy: 'round-robin' }],
    })
    fixture.up.set(secretOf('m1'), { failure: { status: 404, headers: { 'content-type': 'text/html; charset=utf-8' } } })
    for (let i = 0; i < 2; i++) expect((await chat(g)).status).toBe(200)
    // Each was answered by the spare, after the page of the main one where round-robin tried it first.
    expect(requests('s1')).toBe(2)
    expect(requests('m1')).toBeGreaterThan(0)
    // So is a redirect the gateway does not follow with the key (an http:// baseUrl moved to https://).
    fixture.up.set(secretOf('m1'), { failure: { status: 308, headers: { location: 'https://elsewhere.test/v1/chat/completions' } } })
    for (let i = 0; i < 2; i++) expect((await chat(g)).status).toBe(200)
    expect(requests('s1')).toBe(4)
    // A JSON 404 is the API's own answer (a model it does not have): still the client's.
    for (const key of ['m1', 's1']) fixture.up.set(secretOf(key), { failure: { status: 404 } })
    await expectError(await chat(g), 'model_not_found', 404)
  })
})

describe('a target that answers with a redirect', () => {
  test('tells the client no address (it may carry a token), and the operator its address without the query', async () => {
    const g = await boot({
      providers: [provider('main', [{ id: 'r1', secret: secretOf('r1') }])],
      models: [{ name: 'm', targets: [{ provider: 'main', model: 'mock-gpt' }] }],
    })
    // A proxy's sign-in page, its session token in the query, its user in the address.
    const location = 'https://sso-user:sso-pass@sso.corp.test/login/start?session=tok_9f8e7d6c5b4a&next=%2Fv1#frag'
    fixture.up.set(secretOf('r1'), { failure: { status: 302, headers: { location } } })
    const res = await chat(g)
    const text = await res.clone().text()
    const error = await expectError(res, 'upstream_error', 502)
    expect(error.message).toContain('redirect (HTTP 302)')
    expect(error.message).toContain('baseUrl')
    for (const part of ['sso.corp.test', 'tok_9f8e7d6c5b4a', 'sso-pass', 'login/start']) expect(text).not.toContain(part)
    const health = (await (await fetch(`${g.url}/admin/providers/health`, { headers: admin })).json()) as { data: HealthRow[] }
    const said = health.data.find((row) => row.key === 'r1')?.last_error?.message ?? ''
    expect(said).toContain('redirect (HTTP 302) to https://sso.corp.test/login/start?…')
    for (const part of ['tok_9f8e7d6c5b4a', 'sso-pass', 'sso-user', 'frag']) expect(said).not.toContain(part)
  })
})

describe('a provider key whose account is out of money', () => {
  test('(OpenAI\'s 429 insufficient_quota) is dead until reset, as a refused key, where it was cooled and tried again every cooldown', async () => {
    const g = await boot({
      providers: [provider('main', [{ id: 'q1', secret: secretOf('q1') }, { id: 'q2', secret: secretOf('q2') }])],
      models: [{ name: 'm', targets: [{ provider: 'main', model: 'mock-gpt' }], strategy: 'round-robin' }],
    })
    const body = { error: { message: 'You exceeded your current quota, please check your plan and billing details.', type: 'insufficient_quota', param: null, code: 'insufficient_quota' } }
    fixture.up.set(secretOf('q1'), { failure: { status: 429, body } })
    for (let i = 0; i < 3; i++) expect((await chat(g)).status).toBe(200)
    expect(requests('q1')).toBe(1)
    const health = (await (await fetch(`${g.url}/admin/providers/health`, { headers: admin })).json()) as { data: HealthRow[] }
    expect(health.data.find((row) => row.key === 'q1')).toMatchObject({ state: 'dead' })
  })
})

describe("a provider key's own tpm", () => {
  test('counts the prompt: a long prompt without max_tokens spends a small tpm at once', async () => {
    const g = await boot({
      providers: [provider('acct', [{ id: 'a', secret: secretOf('a'), tpm: 100 }, { id: 'b', secret: secretOf('b') }])],
      models: [{ name: 'm', targets: [{ provider: 'acct', model: 'mock-gpt' }] }],
    })
    // About 200 tokens of prompt (4 characters a token): over `a`'s whole minute after one request.
    const long = { messages: [{ role: 'user', content: 'word '.repeat(160) }] }
    for (let i = 0; i < 6; i++) {
      const res = await chat(g, long)
      expect(res.status).toBe(200)
      await res.arrayBuffer()
    }
    expect([requests('a'), requests('b')]).toEqual([1, 5])
  })

  test('counts max_completion_tokens (the newer spelling of max_tokens)', async () => {
    const g = await boot({
      providers: [provider('acct', [{ id: 'a', secret: secretOf('a'), tpm: 100 }])],
      models: [{ name: 'm', targets: [{ provider: 'acct', model: 'mock-gpt' }] }],
    })
    const first = await chat(g, { max_completion_tokens: 60 })
    expect(first.status).toBe(200)
    await first.arrayBuffer()
    // The first request took about 70 of the 100 tokens: the second does not fit before the provider would refuse it.
    const error = await expectError(await chat(g, { max_completion_tokens: 60 }), 'no_healthy_upstream')
    expect(error.message).toContain('rate limit')
    expect(requests('a')).toBe(1)
  })
  test('counts max_tokens once per completion asked (n), as the provider and the quota plugin do', async () => {
    const g = await boot({
      providers: [provider('acct', [{ id: 'a', secret: secretOf('a'), tpm: 100 }])],
      models: [{ name: 'm', targets: [{ provider: 'acct', model: 'mock-gpt' }] }],
    })
    const first = await chat(g, { max_tokens: 40, n: 2 })
    expect(first.status).toBe(200)
    await first.arrayBuffer()
    // Two completions of up to 40 tokens and the prompt: about 85 of the 100, where 45 were counted and
    // the second request was sent for the provider to refuse.
    const error = await expectError(await chat(g, { max_tokens: 40, n: 2 }), 'no_healthy_upstream')
    expect(error.message).toContain('rate limit')
    expect(requests('a')).toBe(1)
  })
})

describe('a provider key whose secret the operator replaced', () => {
  const OLD = secretOf('k1-old')
  const NEW = secretOf('k1-new')

  async function keyRow(g: TestGateway): Promise<HealthRow> {
    const res = await fetch(`${g.url}/admin/providers/health`, { headers: admin })
    expect(res.status).toBe(200)
    const row = ((await res.json()) as { data: HealthRow[] }).data.find((r) => r.provider === 'live' && r.key === 'k1')
    if (!row) throw new Error('no health row for live/k1')
    return row
  }

  test('is no longer dead: the new secret is another upstream key; a change that keeps the secret keeps the verdict', async () => {
    // Nothing in the config: the provider and its model come through the admin API, as an operator adds them.
    const g = await boot({})
    const created = await fetch(`${g.url}/admin/providers`, {
      method: 'POST',
      headers: admin,
      body: JSON.stringify({ id: 'live', type: 'openai-compatible', base_url: fixture.up.url, keys: [{ id: 'k1', secret: OLD }] }),
    })
    expect(created.status).toBe(201)
    const model = await fetch(`${g.url}/admin/models`, { method: 'POST', headers: admin, body: JSON.stringify({ name: 'm', targets: [{ provider: 'live', model: 'mock-gpt' }] }) })
    expect(model.status).toBe(201)

    fixture.up.set(OLD, { failure: { status: 401 } })
    await expectError(await chat(g), 'upstream_error')
    expect((await keyRow(g)).state).toBe('dead')

    // Another setting changes, the secret stays: the registry is rebuilt and the key stays dead.
    const headers = await fetch(`${g.url}/admin/providers/live`, { method: 'PATCH', headers: admin, body: JSON.stringify({ headers: { 'x-team': 'a' } }) })
    expect(headers.status).toBe(200)
    await expectError(await chat(g), 'upstream_error')
    expect(fixture.up.stats(OLD).requests).toBe(1)

    const replaced = await fetch(`${g.url}/admin/providers/live`, { method: 'PATCH', headers: admin, body: JSON.stringify({ keys: [{ id: 'k1', secret: NEW }] }) })
    expect(replaced.status).toBe(200)
    const res = await chat(g)
    expect(res.status).toBe(200)
    await res.arrayBuffer()
    expect([fixture.up.stats(OLD).requests, fixture.up.stats(NEW).requests]).toEqual([1, 1])
    const row = await keyRow(g)
    expect(row.state).toBe('healthy')
    expect(row.dead_reason).toBeNull()
  })
})

describe('keys added or removed through the admin API', () => {
  /** The rows of provider `live` (a config without providers has the built-in `mock` too). */
  const health = async (g: TestGateway): Promise<HealthRow[]> => {
    const res = await fetch(`${g.url}/admin/providers/health`, { headers: admin })
    expect(res.status).toBe(200)
    return ((await res.json()) as { data: HealthRow[] }).data.filter((r) => r.provider === 'live')
  }
  const reset = (g: TestGateway, key: string) => fetch(`${g.url}/admin/providers/live/keys/${key}/reset`, { method: 'POST', headers: admin })

  test('show in the health view and take a reset at once, before any request routes; a removed key leaves both', async () => {
    const g = await boot({})
    const created = await fetch(`${g.url}/admin/providers`, {
      method: 'POST',
      headers: admin,
      body: JSON.stringify({ id: 'live', type: 'openai-compatible', base_url: fixture.up.url, keys: [{ id: 'k1', secret: secretOf('k1') }] }),
    })
    expect(created.status).toBe(201)
    // No request yet: the key is in the catalog, so it is in the health view, and can be reset.
    expect((await health(g)).map((r) => [r.provider, r.key, r.state])).toEqual([['live', 'k1', 'healthy']])
    expect((await reset(g, 'k1')).status).toBe(200)

    const model = await fetch(`${g.url}/admin/models`, { method: 'POST', headers: admin, body: JSON.stringify({ name: 'm', targets: [{ provider: 'live', model: 'mock-gpt' }] }) })
    expect(model.status).toBe(201)
    fixture.up.set(secretOf('k1'), { failure: { status: 401 } })
    await expectError(await chat(g), 'upstream_error')
    expect((await health(g)).map((r) => [r.key, r.state])).toEqual([['k1', 'dead']])

    // k1 goes, k2 comes: the view and the reset follow the catalog, not the last request's registry.
    const replaced = await fetch(`${g.url}/admin/providers/live`, { method: 'PATCH', headers: admin, body: JSON.stringify({ keys: [{ id: 'k2', secret: secretOf('k2') }] }) })
    expect(replaced.status).toBe(200)
    expect((await health(g)).map((r) => [r.key, r.state])).toEqual([['k2', 'healthy']])
    await expectError(await reset(g, 'k1'), 'not_found')
    expect((await reset(g, 'k2')).status).toBe(200)
    expect(requests('k2')).toBe(0)
  })
})

describe('a target weight over a provider with several keys', () => {
  test("is the target's share, split among its keys by their weights, where every key took the whole target weight (more keys, more traffic)", async () => {
    // DESIGN.md's example: target "a" weight 3 with keys weighted 2 and 1, target "b" weight 1.
    const g = await boot({
      providers: [
        provider('a', [{ id: 'w1', secret: secretOf('w1'), weight: 2 }, { id: 'w2', secret: secretOf('w2') }]),
        provider('b', [{ id: 'w3', secret: secretOf('w3') }]),
      ],
      models: [{ name: 'm', targets: [{ provider: 'a', model: 'mock-gpt', weight: 3 }, { provider: 'b', model: 'mock-gpt' }] }],
    })
    for (let i = 0; i < 40; i++) expect((await chat(g)).status).toBe(200)
    // 3:1 between the targets, 2:1 between a's keys: weighted picks are exact over a window of the weights' sum.
    expect([requests('w1'), requests('w2'), requests('w3')]).toEqual([20, 10, 10])
  })
})

describe("a provider key's own rpm changed through the admin API", () => {
  test('keeps what was used: raised from 1 to 2 after one request, it has room for one more at once, where the spent bucket refilled at the new rate first (30 s)', async () => {
    const g = await boot({})
    const created = await fetch(`${g.url}/admin/providers`, {
      method: 'POST',
      headers: admin,
      body: JSON.stringify({ id: 'live', type: 'openai-compatible', base_url: fixture.up.url, keys: [{ id: 'q1', secret: secretOf('q1'), rpm: 1 }] }),
    })
    expect(created.status).toBe(201)
    const model = await fetch(`${g.url}/admin/models`, { method: 'POST', headers: admin, body: JSON.stringify({ name: 'm', targets: [{ provider: 'live', model: 'mock-gpt' }] }) })
    expect(model.status).toBe(201)
    expect((await chat(g)).status).toBe(200)
    await expectError(await chat(g), 'no_healthy_upstream', 503)

    // The provider raised the key's tier: the operator says so, and the gateway uses it now.
    const raised = await fetch(`${g.url}/admin/providers/live`, { method: 'PATCH', headers: admin, body: JSON.stringify({ keys: [{ id: 'q1', secret: secretOf('q1'), rpm: 2 }] }) })
    expect(raised.status).toBe(200)
    expect((await chat(g)).status).toBe(200)
    await expectError(await chat(g), 'no_healthy_upstream', 503)
    expect(requests('q1')).toBe(2)
  })
})
