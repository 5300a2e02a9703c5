/**
 * Two gateway instances sharing one Redis: what one learns about a provider key (dead after
 * a 401, cooling for one upstream model after a 429, a circuit open for one upstream model) the
 * other sees within a second, and an operator's reset on one puts the key back on both. In
 * process (startGateway twice, each with its own Redis connections); the keyed upstream and the
 * per-model one are the only fakes.
 *
 * Needs Redis: skipped with a printed line without it, a failure with CI set.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startKeyedUpstream, type KeyedUpstream } from './fixtures/keyed-upstream.ts'
import { BALANCE_ADMIN_KEY, secretOf, startBalanceGateway, startModelUpstream, type BalanceGateway, type HealthRow, type ModelUpstream } from './support/balance.ts'
import { expectError, waitFor } from './support/http.ts'
import { redisUrlForTests, uniqueTestName } from './support/services.ts'

const SUITE = 'test/balance.shared.test.ts'
const redisUrl = await redisUrlForTests(SUITE)

/** What "within a second" means here. */
const PROPAGATION_MS = 1000

describe.skipIf(redisUrl === null)('balance health shared over Redis', () => {
  // A provider id of its own: other suites on the same Redis publish health for their own keys.
  const provider = uniqueTestName('bal').replace(/_/g, '-')
  /** A provider of its own on the per-model upstream: key `k4` serves model-a (group `pa`) and model-b (`pb`). */
  const perModel = `${provider}-pm`
  let up: KeyedUpstream
  let models: ModelUpstream
  let a: BalanceGateway
  let b: BalanceGateway

  beforeAll(async () => {
    up = await startKeyedUpstream()
    models = await startModelUpstream()
    const setup = {
      providers: { [provider]: ['k1', 'k2', 'k3'] },
      extraProviders: [{ id: perModel, type: 'openai-compatible' as const, baseUrl: models.url, keys: [{ id: 'k4', secret: secretOf('k4') }] }],
      // Two upstream models on the same keys: a 429 for one says nothing about the other.
      models: [
        { name: 'm', targets: [{ provider, model: 'mock-gpt' }] },
        { name: 'm2', targets: [{ provider, model: 'mock-gpt-2' }] },
        { name: 'pa', targets: [{ provider: perModel, model: 'model-a' }] },
        { name: 'pb', targets: [{ provider: perModel, model: 'model-b' }] },
      ],
      options: { cooldown_ms: 30_000, circuit_failures: 2, circuit_open_ms: 30_000, backoff_ms: 0 },
      env: { REDIS_URL: redisUrl ?? '' },
    }
    a = await startBalanceGateway(up.url, setup)
    b = await startBalanceGateway(up.url, setup)
  })
  afterAll(async () => {
    await a?.close()
    await b?.close()
    await up?.stop()
    await models?.stop()
  })
  beforeEach(() => {
    up.reset()
    models.reset()
  })

  /** Poll instance `g` until key `k`'s row satisfies `check`; returns the ms it took. */
  async function seenBy(g: BalanceGateway, k: string, check: (row: HealthRow) => boolean, on = provider): Promise<number> {
    const started = Date.now()
    for (;;) {
      const row = await g.key(k, on)
      if (check(row)) return Date.now() - started
      if (Date.now() - started > PROPAGATION_MS) throw new Error(`instance B did not see the change within ${PROPAGATION_MS} ms: ${JSON.stringify(row)}`)
      await Bun.sleep(10)
    }
  }

  async function ok(g: BalanceGateway, n: number, model = 'm'): Promise<void> {
    for (let i = 0; i < n; i++) {
      const res = await g.chat({ model })
      expect(res.status).toBe(200)
      await res.arrayBuffer()
    }
  }

  test('a key marked dead on A is dead on B, and B never sends to it', async () => {
    up.set(secretOf('k1'), { failure: { status: 401 } })
    // Equal weights: A's first pick is k1, which answers 401.
    await ok(a, 1)
    expect(up.stats(secretOf('k1')).requests).toBe(1)
    expect((await a.key('k1', provider)).state).toBe('dead')
    await seenBy(b, 'k1', (r) => r.state === 'dead' && (r.dead_reason ?? '').includes('HTTP 401'))
    await ok(b, 12)
    expect(up.stats(secretOf('k1')).requests).toBe(1)
  })

  test('a reset on A brings the key back on B', async () => {
    const reset = await a.admin('POST', `/admin/providers/${provider}/keys/k1/reset`)
    expect(reset.status).toBe(200)
    await seenBy(b, 'k1', (r) => r.state === 'healthy')
    await ok(b, 6)
    expect(up.stats(secretOf('k1')).requests).toBeGreaterThanOrEqual(1)
  })

  test('a key cooling on A after a 429 is cooling on B for the same model, until the same time, and not for its other model', async () => {
    up.set(secretOf('k2'), { failure: { status: 429, headers: { 'retry-after': '20' } } })
    for (let i = 0; i < 6 && up.stats(secretOf('k2')).requests === 0; i++) await ok(a, 1)
    expect(up.stats(secretOf('k2')).requests).toBe(1)
    const onA = await a.key('k2', provider)
    expect(onA.state).toBe('cooling')
    expect(onA.cooling_models).toEqual([{ model: 'mock-gpt', until: onA.cooling_until! }])
    await seenBy(b, 'k2', (r) => r.state === 'cooling' && r.cooling_until === onA.cooling_until && JSON.stringify(r.cooling_models) === JSON.stringify(onA.cooling_models))
    await ok(b, 8)
    expect(up.stats(secretOf('k2')).requests).toBe(1)

    // The key's limit for mock-gpt-2 is another one: B still sends that model to k2.
    up.set(secretOf('k2'), { failure: null })
    await ok(b, 6, 'm2')
    const afterOther = up.stats(secretOf('k2')).requests
    expect(afterOther).toBeGreaterThan(1)
    // …and still not mock-gpt, though k2 would answer it now: the cooldown holds until its time.
    await ok(b, 8)
    expect(up.stats(secretOf('k2')).requests).toBe(afterOther)
    expect((await b.key('k2', provider)).cooling_models.map((c) => c.model)).toEqual(['mock-gpt'])

    await a.admin('POST', `/admin/providers/${provider}/keys/k2/reset`)
    await seenBy(b, 'k2', (r) => r.state === 'healthy' && r.cooling_models.length === 0)
  })

  test("a circuit opened on A is open on B", async () => {
    up.set(secretOf('k3'), { failure: { status: 500 } })
    for (let i = 0; i < 12 && up.stats(secretOf('k3')).requests < 2; i++) await ok(a, 1)
    expect(up.stats(secretOf('k3')).requests).toBe(2)
    expect((await a.key('k3', provider)).state).toBe('open')
    await seenBy(b, 'k3', (r) => r.state === 'open')
    await ok(b, 8)
    expect(up.stats(secretOf('k3')).requests).toBe(2)
    await a.admin('POST', `/admin/providers/${provider}/keys/k3/reset`)
    await seenBy(b, 'k3', (r) => r.state === 'healthy')
  })

  test('a circuit opened on A for one upstream model is open on B for that model only, and what A sends leaves older instances the rest of the key', async () => {
    const heard: Record<string, unknown>[] = []
    await a.gateway.services.bus.subscribe('balance.health', (message) => {
      const state = JSON.parse(message) as Record<string, unknown>
      if (state.provider === perModel) heard.push(state)
    })
    models.fail('model-a', { status: 500 })
    // circuit_failures is 2 here.
    for (let i = 0; i < 2; i++) await expectError(await a.chat({ model: 'pa' }), 'upstream_error')
    expect(models.requests('model-a')).toBe(2)
    await seenBy(b, 'k4', (r) => r.state === 'open' && r.circuit_models.some((c) => c.model === 'model-a' && c.open_until !== null), perModel)
    expect((await b.key('k4', perModel)).circuit_models.map((c) => c.model)).toEqual(['model-a'])
    // B saw none of the failures: it shows A's count, the two in a row that opened the circuit.
    expect((await b.key('k4', perModel)).circuit_models[0]!.consecutive_failures).toBe(2)
    await expectError(await b.chat({ model: 'pa' }), 'no_healthy_upstream')
    expect(models.requests('model-a')).toBe(2)
    await ok(b, 4, 'pb')
    expect(models.requestsBy('model-b', secretOf('k4'))).toBe(4)

    // The model's circuit travels in a field of its own: `openUntil` is the whole key's circuit to
    // instances older than per-model circuits, and stays 0 so they keep serving the key's other models.
    const opened = heard.find((s) => s.model === 'model-a' && typeof s.modelOpenUntil === 'number' && s.modelOpenUntil > Date.now())
    expect(opened).toMatchObject({ key: 'k4', openUntil: 0, dead: null })

    models.fail('model-a', null)
    await a.admin('POST', `/admin/providers/${perModel}/keys/k4/reset`)
    await seenBy(b, 'k4', (r) => r.state === 'healthy' && r.circuit_models.length === 0, perModel)
    await ok(b, 1, 'pa')
  })

  test('a circuit from an instance older than per-model circuits (no model, openUntil for the key) opens every model of the key; each leaves it by its own trial', async () => {
    const until = Date.now() + 600
    await a.gateway.services.bus.publish('balance.health', JSON.stringify({ provider: perModel, key: 'k4', coolingUntil: 0, dead: null, openUntil: until }))
    await seenBy(b, 'k4', (r) => r.state === 'open' && r.circuit_models.filter((c) => c.open_until !== null).map((c) => c.model).sort().join() === 'model-a,model-b', perModel)
    await expectError(await b.chat({ model: 'pa' }), 'no_healthy_upstream')
    await expectError(await b.chat({ model: 'pb' }), 'no_healthy_upstream')
    expect([models.requests('model-a'), models.requests('model-b')]).toEqual([0, 0])

    // After the open period one trial each: model-b's succeeds and closes its circuit; model-a's
    // fails and opens model-a's again at once, as a circuit this instance opened itself would.
    models.fail('model-a', { status: 500 })
    await Bun.sleep(Math.max(0, until - Date.now()) + 50)
    await ok(b, 3, 'pb')
    await expectError(await b.chat({ model: 'pa' }), 'upstream_error')
    await expectError(await b.chat({ model: 'pa' }), 'no_healthy_upstream')
    expect([models.requests('model-a'), models.requests('model-b')]).toEqual([1, 3])
    expect((await b.key('k4', perModel)).circuit_models.map((c) => [c.model, c.open_until !== null])).toEqual([['model-a', true]])

    await a.admin('POST', `/admin/providers/${perModel}/keys/k4/reset`)
    await seenBy(b, 'k4', (r) => r.state === 'healthy' && r.circuit_models.length === 0, perModel)
  })

  test('a cooldown from an instance older than per-model cooldowns (no model) is left out; its dead verdict still counts', async () => {
    // What such an instance publishes after a 429 on k3, then after a 401 on k1: one whole-key state each.
    const until = Date.now() + 20_000
    await a.gateway.services.bus.publish('balance.health', JSON.stringify({ provider, key: 'k3', coolingUntil: until, dead: null, openUntil: 0 }))
    await a.gateway.services.bus.publish('balance.health', JSON.stringify({ provider, key: 'k1', coolingUntil: until, dead: 'the upstream refused this key (HTTP 401)', openUntil: 0 }))
    await seenBy(b, 'k1', (r) => r.state === 'dead')
    // k1's message came second over the same connection: k3's has been handled too.
    const k3 = await b.key('k3', provider)
    expect([k3.state, k3.cooling_until, k3.cooling_models]).toEqual(['healthy', null, []])
    await ok(b, 6)
    expect(up.stats(secretOf('k1')).requests).toBe(0)
    expect(up.stats(secretOf('k3')).requests).toBeGreaterThan(0)
    await a.admin('POST', `/admin/providers/${provider}/keys/k1/reset`)
    await seenBy(b, 'k1', (r) => r.state === 'healthy')
  })
})

describe.skipIf(redisUrl === null)('keys added and removed through the admin API, on the other instance', () => {
  // One database (a SQLite file) and one Redis: the catalog change written through A reaches B.
  const provider = uniqueTestName('balcat').replace(/_/g, '-')
  const admin = (g: BalanceGateway, method: string, path: string, body: unknown) =>
    fetch(g.url + path, { method, headers: { authorization: `Bearer ${BALANCE_ADMIN_KEY}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  let dir: string
  let up: KeyedUpstream
  let a: BalanceGateway
  let b: BalanceGateway

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-balance-catalog-'))
    up = await startKeyedUpstream()
    const setup = {
      providers: {},
      models: [],
      options: { backoff_ms: 0 },
      env: { REDIS_URL: redisUrl ?? '', DATABASE_URL: `sqlite://${join(dir, 'shared.db')}`, SLUICE_ENCRYPTION_KEY: Buffer.alloc(32, 5).toString('base64') },
    }
    a = await startBalanceGateway(up.url, setup)
    b = await startBalanceGateway(up.url, setup)
  })
  afterAll(async () => {
    await a?.close()
    await b?.close()
    await up?.stop()
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  /** Poll B's rows of the provider until `check` holds, within a second. */
  async function onB(check: (rows: HealthRow[]) => boolean, what: string): Promise<HealthRow[]> {
    const started = Date.now()
    for (;;) {
      const rows = (await b.health()).filter((r) => r.provider === provider)
      if (check(rows)) return rows
      if (Date.now() - started > PROPAGATION_MS) throw new Error(`B did not show ${what} within ${PROPAGATION_MS} ms: ${JSON.stringify(rows)}`)
      await Bun.sleep(10)
    }
  }
  /** Until B's registry has `keys` for the provider (read directly: no balance code runs). */
  async function registryOnB(keys: string[]): Promise<void> {
    const started = Date.now()
    while (JSON.stringify(b.gateway.models.provider(provider)?.keys.map((k) => k.id)) !== JSON.stringify(keys)) {
      if (Date.now() - started > PROPAGATION_MS) throw new Error(`B's registry did not reach ${keys.join()}`)
      await Bun.sleep(10)
    }
  }

  test('B shows a key A added, and takes a reset for it, before any request on B; a key A removed leaves B\'s view and reset', async () => {
    const created = await admin(a, 'POST', '/admin/providers', { id: provider, type: 'openai-compatible', base_url: up.url, keys: [{ id: 'k1', secret: secretOf('k1') }] })
    expect(created.status).toBe(201)
    expect((await admin(a, 'POST', '/admin/models', { name: 'cm', targets: [{ provider, model: 'mock-gpt' }] })).status).toBe(201)
    await onB((rows) => rows.map((r) => r.key).join() === 'k1', 'the added key k1')
    expect((await b.admin('POST', `/admin/providers/${provider}/keys/k1/reset`)).status).toBe(200)

    // k2 replaces k1 through A. Once B's registry has it, and before B reads its health, A learns
    // k2 is refused: B, which never routed to the provider, takes that verdict too. B's handlers
    // run in the order they subscribed: the balance plugin's has the message before this one.
    let heard = false
    await b.gateway.services.bus.subscribe('balance.health', (message) => {
      const state = JSON.parse(message) as { provider?: string; key?: string; dead?: string | null }
      if (state.provider === provider && state.key === 'k2' && typeof state.dead === 'string') heard = true
    })
    expect((await admin(a, 'PATCH', `/admin/providers/${provider}`, { keys: [{ id: 'k2', secret: secretOf('k2') }] })).status).toBe(200)
    await registryOnB(['k2'])
    up.set(secretOf('k2'), { failure: { status: 401 } })
    await expectError(await a.chat({ model: 'cm' }), 'upstream_error')
    await waitFor(() => heard, "B got A's message about k2", PROPAGATION_MS)
    const rows = await onB((r) => r.map((x) => `${x.key}:${x.state}`).join() === 'k2:dead', 'k2 dead, k1 gone')
    expect(rows[0]!.dead_reason).toContain('HTTP 401')
    await expectError(await b.admin('POST', `/admin/providers/${provider}/keys/k1/reset`), 'not_found')
    expect((await b.admin('POST', `/admin/providers/${provider}/keys/k2/reset`)).status).toBe(200)
    await onB((r) => r.map((x) => `${x.key}:${x.state}`).join() === 'k2:healthy', 'k2 reset')
  })
})
