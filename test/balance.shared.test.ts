/**
 * Two gateway instances sharing one Redis: what one learns about a provider key (dead after
 * a 401, cooling after a 429, an open circuit) the other sees within a second, and an
 * operator's reset on one puts the key back on both. In process (startGateway twice, each
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
  async function seenBy(g: BalanceGateway, k: string, check: (row: HealthRow) => boolean): Promise<number> {
    const started = Date.now()
    for (;;) {
      const row = await g.key(k, provider)
      if (check(row)) return Date.now() - started
      if (Date.now() - started > PROPAGATION_MS) throw new Error(`instance B did not see the change within ${PROPAGATION_MS} ms: ${JSON.stringify(row)}`)
      await Bun.sleep(10)
    }
  }

  async function ok(g: BalanceGateway, n: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      const res = await g.chat()
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

  test('a key cooling on A after a 429 is cooling on B, until the same time', async () => {
    up.set(secretOf('k2'), { failure: { status: 429, headers: { 'retry-after': '20' } } })
    for (let i = 0; i < 6 && up.stats(secretOf('k2')).requests === 0; i++) await ok(a, 1)
    expect(up.stats(secretOf('k2')).requests).toBe(1)
    const onA = await a.key('k2', provider)
    expect(onA.state).toBe('cooling')
    await seenBy(b, 'k2', (r) => r.state === 'cooling' && r.cooling_until === onA.cooling_until)
    await ok(b, 8)
    expect(up.stats(secretOf('k2')).requests).toBe(1)
    await a.admin('POST', `/admin/providers/${provider}/keys/k2/reset`)
    await seenBy(b, 'k2', (r) => r.state === 'healthy')
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
})
