/**
 * A 429 cools a provider key for the upstream model it was for, not for the key's other models:
 * OpenAI, Anthropic and Gemini count rate limits per model. Real HTTP on 127.0.0.1 to an upstream
 * (below) whose answers are set per model name, so a fallback to another model on the same key
 * can be told apart from a retry of the same one.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'bun:test'
import { mockChatCompletion, mockErrorBody } from '../../src/providers/mock/generate.ts'
import { startBalanceGateway, type BalanceGateway, type HealthRow } from '../../test/support/balance.ts'
import { expectError } from '../../test/support/http.ts'

/** An upstream answering per model: an error set for the model, or a completion. */
interface ModelUpstream {
  url: string
  /** Make `model` answer with this error (`null`: answer normally again). */
  fail(model: string, failure: { status: number; headers?: Record<string, string> } | null): void
  /** Requests that reached `model`, failed ones included. */
  requests(model: string): number
  reset(): void
  stop(): Promise<void>
}

async function startModelUpstream(): Promise<ModelUpstream> {
  const failures = new Map<string, { status: number; headers?: Record<string, string> }>()
  const counts = new Map<string, number>()
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    routes: {
      '/v1/chat/completions': {
        POST: async (req) => {
          const body = (await req.json()) as Record<string, unknown>
          const model = String(body.model)
          counts.set(model, (counts.get(model) ?? 0) + 1)
          const f = failures.get(model)
          if (f) return Response.json(mockErrorBody(f.status), { status: f.status, headers: f.headers })
          return Response.json(mockChatCompletion(body))
        },
      },
    },
    fetch: () => Response.json(mockErrorBody(404), { status: 404 }),
  })
  return {
    url: `http://127.0.0.1:${server.port}/v1`,
    fail: (model, failure) => void (failure ? failures.set(model, failure) : failures.delete(model)),
    requests: (model) => counts.get(model) ?? 0,
    reset() {
      failures.clear()
      counts.clear()
    },
    stop: () => server.stop(true),
  }
}

/** A health row with the per-model list of cooldowns. */
type CoolingRow = HealthRow & { cooling_models: { model: string; until: string }[] }

/** `m` → p/model-a, falling back to `m2` → p/model-b: one provider, one key, two upstream models. */
const SETUP = {
  providers: { p: ['k1'] },
  models: [
    { name: 'm', targets: [{ provider: 'p', model: 'model-a' }], fallbacks: ['m2'] },
    { name: 'm2', targets: [{ provider: 'p', model: 'model-b' }] },
  ],
}
const FAST = { cooldown_ms: 1000, circuit_failures: 3, circuit_open_ms: 600, backoff_ms: 0 }

let up: ModelUpstream
let gw: BalanceGateway | undefined

beforeAll(async () => {
  up = await startModelUpstream()
})
afterAll(async () => {
  await up.stop()
})
beforeEach(() => up.reset())
afterEach(async () => {
  await gw?.close()
  gw = undefined
})

async function boot(options: Record<string, unknown> = {}): Promise<BalanceGateway> {
  gw = await startBalanceGateway(up.url, { ...SETUP, options: { ...FAST, ...options } })
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
    up.fail('model-a', { status: 429, headers: { 'retry-after': '20' } })
    expect(await served(g, 'm')).toBe('model-b')
    expect([up.requests('model-a'), up.requests('model-b')]).toEqual([1, 1])
    expect(await served(g, 'm2')).toBe('model-b')
    expect([up.requests('model-a'), up.requests('model-b')]).toEqual([1, 2])
  })

  test('the same model stays cooling: the next request goes to the fallback, not to model-a, until the cooldown ends', async () => {
    const g = await boot({ cooldown_ms: 1000 })
    // No Retry-After: `cooldown_ms` applies.
    up.fail('model-a', { status: 429 })
    const started = Date.now()
    expect(await served(g, 'm')).toBe('model-b')
    expect(await served(g, 'm')).toBe('model-b')
    expect(await served(g, 'm')).toBe('model-b')
    expect([up.requests('model-a'), up.requests('model-b')]).toEqual([1, 3])
    expect(Date.now() - started).toBeLessThan(1000)

    up.fail('model-a', null)
    const row = (await g.key('k1')) as CoolingRow
    expect(row.cooling_models.map((c) => c.model)).toEqual(['model-a'])
    await Bun.sleep(Math.max(0, Date.parse(row.cooling_models[0]!.until) - Date.now()) + 50)
    expect(await served(g, 'm')).toBe('model-a')
    expect([up.requests('model-a'), up.requests('model-b')]).toEqual([2, 3])
  })

  test("every model of the key cooling: 503 no_healthy_upstream, its Retry-After the requested model's own cooldown", async () => {
    const g = await boot()
    up.fail('model-a', { status: 429, headers: { 'retry-after': '20' } })
    up.fail('model-b', { status: 429, headers: { 'retry-after': '5' } })
    await expectError(await g.chat({ model: 'm' }), 'no_healthy_upstream')
    expect([up.requests('model-a'), up.requests('model-b')]).toEqual([1, 1])
    // m2 waits for model-b's 5 s, not for model-a's 20 s on the same key.
    const res = await g.chat({ model: 'm2' })
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(4)
    expect(Number(res.headers.get('retry-after'))).toBeLessThanOrEqual(5)
    await expectError(res, 'no_healthy_upstream')
    expect([up.requests('model-a'), up.requests('model-b')]).toEqual([1, 1])
  })

  test('the health view shows the key cooling, for which models until when; a 401 still kills the key for every model', async () => {
    const g = await boot()
    up.fail('model-a', { status: 429, headers: { 'retry-after': '20' } })
    const started = Date.now()
    expect(await served(g, 'm')).toBe('model-b')
    let row = (await g.key('k1')) as CoolingRow
    expect(row.state).toBe('cooling')
    expect(row.cooling_models.map((c) => c.model)).toEqual(['model-a'])
    const until = Date.parse(row.cooling_models[0]!.until)
    expect(until - started).toBeGreaterThanOrEqual(19_000)
    expect(until - started).toBeLessThan(21_000)
    expect(row.cooling_until).toBe(row.cooling_models[0]!.until)

    // A refusal is about the key itself: dead for model-b as for model-a.
    up.fail('model-b', { status: 401 })
    await expectError(await g.chat({ model: 'm2' }), 'no_healthy_upstream')
    await expectError(await g.chat({ model: 'm2' }), 'no_healthy_upstream')
    up.fail('model-a', null)
    await expectError(await g.chat({ model: 'm' }), 'no_healthy_upstream')
    // model-b: the first request's fallback, then the refusal; model-a: the first request's 429 only.
    expect([up.requests('model-a'), up.requests('model-b')]).toEqual([1, 2])
    row = (await g.key('k1')) as CoolingRow
    expect(row.state).toBe('dead')

    // The operator's reset puts the key back for every model.
    up.reset()
    expect((await g.admin('POST', '/admin/providers/p/keys/k1/reset')).status).toBe(200)
    row = (await g.key('k1')) as CoolingRow
    expect([row.state, row.cooling_until, row.cooling_models]).toEqual(['healthy', null, []])
    expect(await served(g, 'm')).toBe('model-a')
  })

  test('a registry change keeps the cooldowns of the models still sent to the key and drops the others', async () => {
    const g = await boot()
    up.fail('model-a', { status: 429, headers: { 'retry-after': '20' } })
    expect(await served(g, 'm')).toBe('model-b')
    const config = g.gateway.config
    // What the admin API does on any change: the registry is swapped whole, every group a new object.
    g.gateway.models.replace(config.providers, config.models)
    expect(await served(g, 'm')).toBe('model-b')
    expect(up.requests('model-a')).toBe(1)
    expect(((await g.key('k1')) as CoolingRow).cooling_models.map((c) => c.model)).toEqual(['model-a'])

    // model-a is no longer sent to the key: its cooldown goes with it; model-c starts fresh.
    g.gateway.models.replace(config.providers, [{ ...config.models[0]!, targets: [{ provider: 'p', model: 'model-c' }] }, config.models[1]!])
    expect(await served(g, 'm')).toBe('model-c')
    const row = (await g.key('k1')) as CoolingRow
    expect([row.state, row.cooling_until, row.cooling_models]).toEqual(['healthy', null, []])
  })
})
