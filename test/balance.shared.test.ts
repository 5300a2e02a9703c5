/**
 * Two gateway instances sharing one Redis: what one learns about a provider key (dead after
 * a 401, cooling for one upstream model after a 429, an open circuit) the other sees within a
 * second, and an operator's reset on one puts the key back on both. In process (startGateway twice, each
 * with its own Redis connections), the keyed upstream is the only fake.
 *
 * Needs Redis: skipped with a printed line without it, a failure with CI set.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test'
import { startKeyedUpstream, type KeyedUpstream } from './fixtures/keyed-upstream.ts'
import { secretOf, startBalanceGateway, type BalanceGateway, type HealthRow } from './support/balance.ts'
import { redisUrlForTests, uniqueTestName } from './support/services.ts'

const SUITE = 'test/balance.shared.test.ts'
const redisUrl = await redisUrlForTests(SUITE)

/** What "within a second" means here. */
const PROPAGATION_MS = 1000

/** A health row with the per-model list of cooldowns. */
type CoolingRow = HealthRow & { cooling_models: { model: string; until: string }[] }

describe.skipIf(redisUrl === null)('balance health shared over Redis', () => {
  // A provider id of its own: other suites on the same Redis publish health for their own keys.
  const provider = uniqueTestName('bal').replace(/_/g, '-')
  let up: KeyedUpstream
  let a: BalanceGateway
  let b: BalanceGateway

  beforeAll(async () => {
    up = await startKeyedUpstream()
    const setup = {
      providers: { [provider]: ['k1', 'k2', 'k3'] },
      // Two upstream models on the same keys: a 429 for one says nothing about the other.
      models: [
        { name: 'm', targets: [{ provider, model: 'mock-gpt' }] },
        { name: 'm2', targets: [{ provider, model: 'mock-gpt-2' }] },
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
  })
  beforeEach(() => up.reset())

  /** Poll instance `g` until key `k`'s row satisfies `check`; returns the ms it took. */
  async function seenBy(g: BalanceGateway, k: string, check: (row: CoolingRow) => boolean): Promise<number> {
    const started = Date.now()
    for (;;) {
      const row = (await g.key(k, provider)) as CoolingRow
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
    const onA = (await a.key('k2', provider)) as CoolingRow
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
    expect(((await b.key('k2', provider)) as CoolingRow).cooling_models.map((c) => c.model)).toEqual(['mock-gpt'])

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

  test('a cooldown from an instance older than per-model cooldowns (no model) is left out; its dead verdict still counts', async () => {
    // What such an instance publishes after a 429 on k3, then after a 401 on k1: one whole-key state each.
    const until = Date.now() + 20_000
    await a.gateway.services.bus.publish('balance.health', JSON.stringify({ provider, key: 'k3', coolingUntil: until, dead: null, openUntil: 0 }))
    await a.gateway.services.bus.publish('balance.health', JSON.stringify({ provider, key: 'k1', coolingUntil: until, dead: 'the upstream refused this key (HTTP 401)', openUntil: 0 }))
    await seenBy(b, 'k1', (r) => r.state === 'dead')
    // k1's message came second over the same connection: k3's has been handled too.
    const k3 = (await b.key('k3', provider)) as CoolingRow
    expect([k3.state, k3.cooling_until, k3.cooling_models]).toEqual(['healthy', null, []])
    await ok(b, 6)
    expect(up.stats(secretOf('k1')).requests).toBe(0)
    expect(up.stats(secretOf('k3')).requests).toBeGreaterThan(0)
    await a.admin('POST', `/admin/providers/${provider}/keys/k1/reset`)
    await seenBy(b, 'k1', (r) => r.state === 'healthy')
  })
})
