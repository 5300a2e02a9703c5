/**
 * A 429 cools a provider key for the upstream model it was for, not for the key's other models:
 * OpenAI, Anthropic and Gemini count rate limits per model; the headroom their rate-limit headers
 * tell is per model too. Real HTTP on 127.0.0.1 to an upstream whose answers are set per model
 * name (test/support/balance.ts), so a fallback to another model on the same key can be told
 * apart from a retry of the same one.
 */
import { describe, expect, test } from 'bun:test'
import { secretOf, startBalanceGateway, startModelUpstream, type BalanceGateway, upstreamForFile } from '../../test/support/balance.ts'
import { expectError } from '../../test/support/http.ts'

/** `m` → p/model-a, falling back to `m2` → p/model-b: one provider, one key, two upstream models. */
const SETUP = {
  providers: { p: ['k1'] },
  models: [
    { name: 'm', targets: [{ provider: 'p', model: 'model-a' }], fallbacks: ['m2'] },
    { name: 'm2', targets: [{ provider: 'p', model: 'model-b' }] },
  ],
}
const FAST = { cooldown_ms: 1000, circuit_failures: 3, circuit_open_ms: 600, backoff_ms: 0 }

const fixture = upstreamForFile(startModelUpstream)

async function boot(options: Record<string, unknown> = {}): Promise<BalanceGateway> {
  const gw = fixture.closeAfter(await startBalanceGateway(fixture.up.url, { ...SETUP, options: { ...FAST, ...options } }))
  return gw
}

/** One chat request that must succeed; the upstream model that answered it. */
async function served(g: BalanceGateway, model: string): Promise<string> {
  const res = await g.chat({ model })
  const text = await res.text()
  expect({ model, status: res.status, body: res.status === 200 ? '' : text }).toEqual({ model, status: 200, body: '' })
  return (JSON.parse(text) as { model: string }).model
}

describe('a 429 cools the key for its upstream model only', () => {
  test('model-a rate-limited: the fallback to model-b on the same key answers, and so does a direct request for it', async () => {
    const g = await boot()
    fixture.up.fail('model-a', { status: 429, headers: { 'retry-after': '20' } })
    expect(await served(g, 'm')).toBe('model-b')
    expect([fixture.up.requests('model-a'), fixture.up.requests('model-b')]).toEqual([1, 1])
    expect(await served(g, 'm2')).toBe('model-b')
    expect([fixture.up.requests('model-a'), fixture.up.requests('model-b')]).toEqual([1, 2])
  })

  test('the same model stays cooling: the next request goes to the fallback, not to model-a, until the cooldown ends', async () => {
    const g = await boot({ cooldown_ms: 1000 })
    // No Retry-After: `cooldown_ms` applies.
    fixture.up.fail('model-a', { status: 429 })
    const started = Date.now()
    expect(await served(g, 'm')).toBe('model-b')
    expect(await served(g, 'm')).toBe('model-b')
    expect(await served(g, 'm')).toBe('model-b')
    expect([fixture.up.requests('model-a'), fixture.up.requests('model-b')]).toEqual([1, 3])
    expect(Date.now() - started).toBeLessThan(1000)

    fixture.up.fail('model-a', null)
    const row = await g.key('k1')
    expect(row.cooling_models.map((c) => c.model)).toEqual(['model-a'])
    await Bun.sleep(Math.max(0, Date.parse(row.cooling_models[0]!.until) - Date.now()) + 50)
    expect(await served(g, 'm')).toBe('model-a')
    expect([fixture.up.requests('model-a'), fixture.up.requests('model-b')]).toEqual([2, 3])
  })

  test("every model of the key cooling: 503 no_healthy_upstream, its Retry-After the requested model's own cooldown", async () => {
    const g = await boot()
    fixture.up.fail('model-a', { status: 429, headers: { 'retry-after': '20' } })
    fixture.up.fail('model-b', { status: 429, headers: { 'retry-after': '5' } })
    await expectError(await g.chat({ model: 'm' }), 'no_healthy_upstream')
    expect([fixture.up.requests('model-a'), fixture.up.requests('model-b')]).toEqual([1, 1])
    // m2 waits for model-b's 5 s, not for model-a's 20 s on the same key.
    const res = await g.chat({ model: 'm2' })
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(4)
    expect(Number(res.headers.get('retry-after'))).toBeLessThanOrEqual(5)
    await expectError(res, 'no_healthy_upstream')
    expect([fixture.up.requests('model-a'), fixture.up.requests('model-b')]).toEqual([1, 1])
  })

  test('the health view shows the key cooling, for which models until when; a 401 still kills the key for every model', async () => {
    const g = await boot()
    fixture.up.fail('model-a', { status: 429, headers: { 'retry-after': '20' } })
    const started = Date.now()
    expect(await served(g, 'm')).toBe('model-b')
    let row = await g.key('k1')
    expect(row.state).toBe('cooling')
    expect(row.cooling_models.map((c) => c.model)).toEqual(['model-a'])
    const until = Date.parse(row.cooling_models[0]!.until)
    expect(until - started).toBeGreaterThanOrEqual(19_000)
    expect(until - started).toBeLessThan(21_000)
    expect(row.cooling_until).toBe(row.cooling_models[0]!.until)

    // A refusal is about the key itself: dead for model-b as for model-a.
    fixture.up.fail('model-b', { status: 401 })
    // Refused: no other key, nothing to wait for; an operator must act (502, no Retry-After).
    await expectError(await g.chat({ model: 'm2' }), 'upstream_error')
    await expectError(await g.chat({ model: 'm2' }), 'upstream_error')
    fixture.up.fail('model-a', null)
    await expectError(await g.chat({ model: 'm' }), 'upstream_error')
    // model-b: the first request's fallback, then the refusal; model-a: the first request's 429 only.
    expect([fixture.up.requests('model-a'), fixture.up.requests('model-b')]).toEqual([1, 2])
    row = await g.key('k1')
    expect(row.state).toBe('dead')

    // The operator's reset puts the key back for every model.
    fixture.up.reset()
    expect((await g.admin('POST', '/admin/providers/p/keys/k1/reset')).status).toBe(200)
    row = await g.key('k1')
    expect([row.state, row.cooling_until, row.cooling_models]).toEqual(['healthy', null, []])
    expect(await served(g, 'm')).toBe('model-a')
  })

  test('a registry change keeps the cooldowns of the models still sent to the key and drops the others', async () => {
    const g = await boot()
    fixture.up.fail('model-a', { status: 429, headers: { 'retry-after': '20' } })
    expect(await served(g, 'm')).toBe('model-b')
    const config = g.gateway.config
    // What the admin API does on any change: the registry is swapped whole, every group a new object.
    g.gateway.models.replace(config.providers, config.models)
    expect(await served(g, 'm')).toBe('model-b')
    expect(fixture.up.requests('model-a')).toBe(1)
    expect((await g.key('k1')).cooling_models.map((c) => c.model)).toEqual(['model-a'])

    // model-a is no longer sent to the key: its cooldown goes with it; model-c starts fresh.
    g.gateway.models.replace(config.providers, [{ ...config.models[0]!, targets: [{ provider: 'p', model: 'model-c' }] }, config.models[1]!])
    expect(await served(g, 'm')).toBe('model-c')
    const row = await g.key('k1')
    expect([row.state, row.cooling_until, row.cooling_models]).toEqual(['healthy', null, []])
  })
})

describe('headroom is learned per upstream model', () => {
  test('a key out of room for model-a (usage strategy) is still picked for model-b, where it has room', async () => {
    const gw = fixture.closeAfter(await startBalanceGateway(fixture.up.url, {
      providers: { p: ['k1', 'k2'] },
      models: [
        { name: 'm', strategy: 'usage', targets: [{ provider: 'p', model: 'model-a' }] },
        { name: 'm2', strategy: 'usage', targets: [{ provider: 'p', model: 'model-b' }] },
      ],
      options: FAST,
    }))
    const none = { 'x-ratelimit-limit-requests': '100', 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '60s' }
    const some = { 'x-ratelimit-limit-requests': '100', 'x-ratelimit-remaining-requests': '50', 'x-ratelimit-reset-requests': '60s' }
    const most = { 'x-ratelimit-limit-requests': '100', 'x-ratelimit-remaining-requests': '90', 'x-ratelimit-reset-requests': '60s' }
    // k1: no room left for model-a, the most for model-b; k2 the other way round.
    fixture.up.headers('model-a', secretOf('k1'), none)
    fixture.up.headers('model-a', secretOf('k2'), some)
    fixture.up.headers('model-b', secretOf('k1'), most)
    fixture.up.headers('model-b', secretOf('k2'), some)
    // Until both keys have answered once for a model, unknown headroom counts as full.
    for (let i = 0; i < 20 && (fixture.up.requestsBy('model-a', secretOf('k1')) === 0 || fixture.up.requestsBy('model-a', secretOf('k2')) === 0); i++) await served(gw, 'm')
    for (let i = 0; i < 20 && (fixture.up.requestsBy('model-b', secretOf('k1')) === 0 || fixture.up.requestsBy('model-b', secretOf('k2')) === 0); i++) await served(gw, 'm2')
    const before = ['model-a', 'model-b'].map((model) => ['k1', 'k2'].map((k) => fixture.up.requestsBy(model, secretOf(k))))
    for (let i = 0; i < 10; i++) {
      await served(gw, 'm')
      await served(gw, 'm2')
    }
    const after = ['model-a', 'model-b'].map((model) => ['k1', 'k2'].map((k) => fixture.up.requestsBy(model, secretOf(k))))
    // model-a goes to k2 only, model-b to k1 only: what k1 learned about model-a does not stop it for model-b.
    expect([after[0]![0]! - before[0]![0]!, after[0]![1]! - before[0]![1]!]).toEqual([0, 10])
    expect([after[1]![0]! - before[1]![0]!, after[1]![1]! - before[1]![1]!]).toEqual([10, 0])

    const row = await gw.key('k1')
    expect(row.headroom).toBe(0)
    expect(row.headroom_models.map((m) => [m.model, m.headroom]).sort()).toEqual([['model-a', 0], ['model-b', 0.9]])
  })
})

describe('a Retry-After past any date the gateway can write (a broken upstream or proxy: 1e13 s)', () => {
  test('cools the key for at most 2147483647 ms, and the health view still answers, where it failed 500 (Invalid time value)', async () => {
    const g = await boot()
    fixture.up.fail('model-a', { status: 429, headers: { 'retry-after': '1e13' } })
    expect(await served(g, 'm')).toBe('model-b')
    const row = await g.key('k1')
    expect(row.cooling_models.map((c) => c.model)).toEqual(['model-a'])
    const until = Date.parse(row.cooling_models[0]!.until)
    expect(until).toBeGreaterThan(Date.now() + 2_000_000_000)
    expect(until).toBeLessThanOrEqual(Date.now() + 2_147_483_647)
    const res = await g.chat({ model: 'm2' })
    expect(res.status).toBe(200)
  })
})
