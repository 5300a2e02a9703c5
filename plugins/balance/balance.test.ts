/**
 * The balance plugin through a listening gateway: real HTTP on 127.0.0.1 to a keyed upstream
 * that tells the provider keys apart by their secret, so every test can say which key served
 * what. Each test boots its own gateway (key health is per gateway) on the shared upstream.
 */
import { describe, expect, spyOn, test } from 'bun:test'
import { parseSse } from '../../test/fixtures/mock-upstream.ts'
import { readUntilEnd, startBreakingUpstream, startKeyedUpstream } from '../../test/fixtures/keyed-upstream.ts'
import { startMockAnthropic } from '../../test/fixtures/mock-anthropic.ts'
import { secretOf, startBalanceGateway, type BalanceGateway, type BalanceSetup, upstreamForFile } from '../../test/support/balance.ts'
import { expectError, waitFor } from '../../test/support/http.ts'
import { FORBIDDEN_STRIKES } from './index.ts'

/** Short timings so cooldowns, open circuits and backoffs fit in a test. */
const FAST = { cooldown_ms: 1000, circuit_failures: 3, circuit_open_ms: 600, backoff_ms: 10, backoff_max_ms: 40 }

const fixture = upstreamForFile(startKeyedUpstream)

async function boot(setup: Partial<BalanceSetup> & { keys?: readonly string[] }): Promise<BalanceGateway> {
  const { keys, ...rest } = setup
  const gw = fixture.closeAfter(await startBalanceGateway(fixture.up.url, { providers: { acct: keys ?? ['a', 'b'] }, ...rest, options: { ...FAST, ...rest.options } }))
  return gw
}

const requests = (key: string): number => fixture.up.stats(secretOf(key)).requests

/** `n` chat requests one after another; every one must succeed. */
async function okSequential(g: BalanceGateway, n: number, body: Record<string, unknown> = {}): Promise<void> {
  for (let i = 0; i < n; i++) {
    const res = await g.chat(body)
    expect({ i, status: res.status, body: res.status === 200 ? '' : await res.text() }).toEqual({ i, status: 200, body: '' })
    await res.arrayBuffer()
  }
}

/** Send successful requests until `check` holds (at most `max`). */
async function okUntil(g: BalanceGateway, check: () => boolean, what: string, max = 40): Promise<void> {
  for (let i = 0; i < max && !check(); i++) await okSequential(g, 1)
  if (!check()) throw new Error(`after ${max} requests still not: ${what}`)
}

/** Poll an async condition (a health read) until it holds. */
async function eventually(check: () => Promise<boolean>, what: string, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`)
    await Bun.sleep(20)
  }
}

describe('429 and Retry-After', () => {
  test('a rate-limited key is skipped until its Retry-After ends, then used again', async () => {
    const g = await boot({ keys: ['a', 'b'] })
    fixture.up.set(secretOf('a'), { failure: { status: 429, headers: { 'retry-after': '1' }, times: 1 } })
    const started = Date.now()
    // Equal weights: the first pick is `a`; its 429 sends the request on to `b` at once.
    await okSequential(g, 6)
    expect(requests('a')).toBe(1)
    expect(requests('b')).toBe(6)
    const row = await g.key('a')
    expect(row.state).toBe('cooling')
    expect(row.last_error?.status).toBe(429)
    const coolingEnds = Date.parse(row.cooling_until!)
    expect(coolingEnds - started).toBeGreaterThanOrEqual(900)
    expect(coolingEnds - started).toBeLessThan(2000)

    await Bun.sleep(Math.max(0, coolingEnds - Date.now()) + 50)
    expect((await g.key('a')).state).toBe('healthy')
    await okSequential(g, 4)
    expect(requests('a')).toBeGreaterThanOrEqual(2)
  })

  test.each([
    ['retry-after-ms alone', { 'retry-after-ms': '400' }],
    ['retry-after-ms before Retry-After', { 'retry-after-ms': '400', 'retry-after': '5' }],
    // No Retry-After at all: the reset of the limit the headers say is spent (OpenAI's duration form).
    ['the spent limit\'s x-ratelimit-reset-*', { 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '400ms', 'x-ratelimit-remaining-tokens': '900', 'x-ratelimit-reset-tokens': '6m0s' }],
  ] as const)('%s (as OpenAI and Azure send it) sets a 429\'s cooldown, not cooldown_ms', async (_what, headers) => {
    const g = await boot({ keys: ['a', 'b'], options: { cooldown_ms: 5000 } })
    fixture.up.set(secretOf('a'), { failure: { status: 429, headers, times: 1 } })
    const started = Date.now()
    await okSequential(g, 1)
    const row = await g.key('a')
    expect(row.state).toBe('cooling')
    const coolingEnds = Date.parse(row.cooling_until!)
    expect(coolingEnds - started).toBeGreaterThanOrEqual(350)
    expect(coolingEnds - Date.now()).toBeLessThan(450)
    await Bun.sleep(Math.max(0, coolingEnds - Date.now()) + 50)
    expect((await g.key('a')).state).toBe('healthy')
  })

  test('without Retry-After the configured cooldown applies', async () => {
    const g = await boot({ keys: ['a', 'b'], options: { cooldown_ms: 300 } })
    fixture.up.set(secretOf('a'), { failure: { status: 429, times: 1 } })
    await okSequential(g, 3)
    expect(requests('a')).toBe(1)
    const row = await g.key('a')
    expect(row.state).toBe('cooling')
    await Bun.sleep(350)
    await okUntil(g, () => requests('a') === 2, 'a used again after its cooldown', 4)
  })

  test('every key cooling: 503 no_healthy_upstream with Retry-After, and no upstream call', async () => {
    const g = await boot({ keys: ['a'] })
    fixture.up.set(secretOf('a'), { failure: { status: 429, headers: { 'retry-after': '2' } } })
    const first = await g.chat()
    expect(first.headers.get('retry-after')).toBe('2')
    const error = await expectError(first, 'no_healthy_upstream')
    // The message says why and when, as the header does; nothing about refused keys.
    expect(error.message).toContain("cooling down after the provider's 429")
    expect(error.message).toContain('Retry in 2 s')
    expect(error.message).not.toContain('refused')
    const second = await g.chat()
    expect(Number(second.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
    await expectError(second, 'no_healthy_upstream')
    expect(requests('a')).toBe(1)
  })
})

describe('401 and 403: dead keys', () => {
  test('a refused key is never used again, shows dead with a reason, and an admin reset brings it back', async () => {
    const g = await boot({ keys: ['a', 'b', 'c'] })
    fixture.up.set(secretOf('a'), { failure: { status: 401 } })
    await okSequential(g, 30)
    expect(requests('a')).toBe(1)
    expect(requests('b') + requests('c')).toBe(30)

    const row = await g.key('a')
    expect(row.state).toBe('dead')
    expect(row.dead_reason).toContain('HTTP 401')
    expect(row.last_error?.status).toBe(401)
    // The upstream's message may echo the secret; the health view must not.
    expect(JSON.stringify(await g.health())).not.toContain(secretOf('a'))

    await okSequential(g, 10)
    expect(requests('a')).toBe(1)

    // The operator fixes the key upstream and puts it back.
    fixture.up.set(secretOf('a'), { failure: null })
    const refused = await fetch(`${g.url}/admin/providers/acct/keys/a/reset`, { method: 'POST' })
    expect(refused.status).toBe(401)
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('invalid_admin_key')
    expect((await g.key('a')).state).toBe('dead')
    const reset = await g.admin('POST', '/admin/providers/acct/keys/a/reset')
    expect(reset.status).toBe(200)
    expect(await reset.json()).toMatchObject({ provider: 'acct', key: 'a', state: 'healthy' })
    expect((await g.key('a')).state).toBe('healthy')
    await okSequential(g, 6)
    expect(requests('a')).toBeGreaterThanOrEqual(2)
  })

  test('403 kills a key too', async () => {
    const g = await boot({ keys: ['a', 'b'] })
    fixture.up.set(secretOf('a'), { failure: { status: 403 } })
    await okSequential(g, 8)
    expect(requests('a')).toBe(1)
    expect((await g.key('a')).dead_reason).toContain('HTTP 403')
  })

  test('the only key refused: 502 upstream_error naming the provider and the refusal, and so every later request, with no Retry-After, until an operator resets it', async () => {
    const g = await boot({ keys: ['a'] })
    fixture.up.set(secretOf('a'), { failure: { status: 401 } })
    const first = await g.chat()
    expect(first.headers.get('retry-after')).toBeNull()
    const refusal = await expectError(first, 'upstream_error')
    expect(refusal.message).toContain('Upstream provider "acct" refused the gateway\'s key "a" (HTTP 401)')
    expect(refusal.message).toContain('POST /admin/providers/acct/keys/a/reset')
    expect(refusal.message).not.toContain(secretOf('a'))

    for (let i = 0; i < 3; i++) {
      const later = await g.chat()
      expect(later.headers.get('retry-after')).toBeNull()
      const error = await expectError(later, 'upstream_error')
      expect(error.message).toContain('the provider refused the only one (acct/a, HTTP 401/403)')
      expect(error.message).toContain('an operator must replace it or, once fixed upstream, reset it (POST /admin/providers/acct/keys/a/reset)')
      expect(error.message).not.toContain('Retry shortly')
    }
    expect(requests('a')).toBe(1)

    fixture.up.set(secretOf('a'), { failure: null })
    expect((await g.admin('POST', '/admin/providers/acct/keys/a/reset')).status).toBe(200)
    await okSequential(g, 1)
    expect(requests('a')).toBe(2)
  })

  test('a 403 that a second key gives the same request is about the request (a provider\'s moderation, say): the client has it, no key is retired, nor a third tried', async () => {
    const g = await boot({ keys: ['a', 'b', 'c'] })
    // What OpenRouter answers a flagged prompt, whichever key sends it.
    for (const k of ['a', 'b', 'c']) fixture.up.set(secretOf(k), { failure: { status: 403 } })
    const error = await expectError(await g.chat(), 'upstream_error')
    expect(error.message).toContain('(HTTP 403)')
    expect(error.message).toContain('no key is retired')
    expect(error.message).not.toContain('An operator must')
    expect(requests('a') + requests('b') + requests('c')).toBe(2)
    const rows = await g.health()
    for (const row of rows) expect({ key: row.key, state: row.state }).toEqual({ key: row.key, state: 'healthy' })
    // The two keys asked still show the refusal to an operator.
    expect(rows.filter((row) => row.last_error?.status === 403)).toHaveLength(2)
    for (const k of ['a', 'b', 'c']) fixture.up.set(secretOf(k), { failure: null })
    await okSequential(g, 6)
  })

  test('an account out of money on every key (a 402, acted on as a 403) still retires each key it reaches', async () => {
    const g = await boot({ keys: ['a', 'b'] })
    for (const k of ['a', 'b']) fixture.up.set(secretOf(k), { failure: { status: 402 } })
    await expectError(await g.chat(), 'upstream_error')
    for (const row of await g.health()) expect({ key: row.key, state: row.state }).toEqual({ key: row.key, state: 'dead' })
  })

  // A 403 may be about the request (a flagged prompt, another project's file): with no other key to
  // ask, one request must not retire a provider's only key for every user.
  test('403 on the only key: 502 upstream_error; the key is retired at the third such request in a row, a success between starting the count again', async () => {
    const g = await boot({ keys: ['a'] })
    fixture.up.set(secretOf('a'), { failure: { status: 403 } })
    expect(FORBIDDEN_STRIKES).toBeGreaterThan(1)
    for (let i = 1; i < FORBIDDEN_STRIKES; i++) {
      const error = await expectError(await g.chat(), 'upstream_error')
      expect(error.message).toContain('(HTTP 403)')
      expect(error.message).toContain('no other key of it was left')
      expect((await g.health())[0]!.state).toBe('healthy')
    }
    // A success between: the refusals were about those requests.
    fixture.up.set(secretOf('a'), { failure: null })
    expect((await g.chat()).status).toBe(200)
    fixture.up.set(secretOf('a'), { failure: { status: 403 } })
    for (let i = 1; i < FORBIDDEN_STRIKES; i++) await expectError(await g.chat(), 'upstream_error')
    expect((await g.health())[0]!.state).toBe('healthy')
    // The third in a row: about the key after all.
    const error = await expectError(await g.chat(), 'upstream_error')
    expect(error.message).toContain('(HTTP 403)')
    expect((await g.health())[0]!.state).toBe('dead')
    await expectError(await g.chat(), 'upstream_error')
    expect(requests('a')).toBe(2 * FORBIDDEN_STRIKES)
  })

  test('a refused key beside a cooling one: 503 no_healthy_upstream with the cooling key\'s Retry-After, naming both reasons', async () => {
    const g = await boot({ keys: ['a', 'b'] })
    fixture.up.set(secretOf('a'), { failure: { status: 429, headers: { 'retry-after': '20' } } })
    fixture.up.set(secretOf('b'), { failure: { status: 401 } })
    // Equal weights: `a` first (429, cooling 20 s), then `b` (401, dead).
    for (const res of [await g.chat(), await g.chat()]) {
      const retryAfter = Number(res.headers.get('retry-after'))
      expect(retryAfter).toBeGreaterThanOrEqual(19)
      expect(retryAfter).toBeLessThanOrEqual(20)
      const error = await expectError(res, 'no_healthy_upstream')
      expect(error.message).toContain("cooling down after the provider's 429")
      expect(error.message).toContain('refused by its provider')
      expect(error.message).toContain('POST /admin/providers/acct/keys/b/reset')
      expect(error.message).toMatch(/Retry in (19|20) s/)
    }
    expect([requests('a'), requests('b')]).toEqual([1, 1])
  })

  test('reset of a key that does not exist: 404 not_found', async () => {
    const g = await boot({ keys: ['a'] })
    await expectError(await g.admin('POST', '/admin/providers/acct/keys/nope/reset'), 'not_found')
  })
})

describe('5xx: retries, backoff and the circuit breaker', () => {
  test('a 5xx is retried on another key after a backoff; the client sees success', async () => {
    const g = await boot({ keys: ['a', 'b'], options: { backoff_ms: 200, backoff_max_ms: 1000 } })
    fixture.up.set(secretOf('a'), { failure: { status: 503, times: 1 } })
    // Full jitter draws the delay in [0, ceiling); pin the draw near the top to see it.
    const random = spyOn(Math, 'random').mockReturnValue(0.9)
    try {
      await okSequential(g, 1)
    } finally {
      random.mockRestore()
    }
    const [failedAt] = fixture.up.stats(secretOf('a')).arrivals
    const [retriedAt] = fixture.up.stats(secretOf('b')).arrivals
    expect(retriedAt! - failedAt!).toBeGreaterThanOrEqual(170)
    expect(retriedAt! - failedAt!).toBeLessThan(600)
  })

  test('no backoff when no key is left to try: the error comes at once, where it came after a sleep in vain', async () => {
    // A ceiling of a minute, the draw pinned near its top: a sleep would outlast the race below.
    const g = await boot({ keys: ['a', 'b'], options: { backoff_ms: 60_000, backoff_max_ms: 60_000 } })
    // b cools for a day (its 429 sends that request on to a at once).
    fixture.up.set(secretOf('b'), { failure: { status: 429, headers: { 'retry-after': '86400' }, times: 1 } })
    await okUntil(g, () => requests('b') === 1, "b's 429")
    fixture.up.set(secretOf('a'), { failure: { status: 500 } })
    const before = requests('a')
    const random = spyOn(Math, 'random').mockReturnValue(0.9)
    try {
      const res = await Promise.race([g.chat(), Bun.sleep(10_000).then(() => null)])
      expect(res).not.toBeNull()
      const error = await expectError(res!, 'upstream_error')
      expect(error.message).toContain('HTTP 500')
    } finally {
      random.mockRestore()
    }
    expect([requests('a') - before, requests('b')]).toEqual([1, 1])
  })

  test('the backoff still waits for a key that is back before it ends, and tries it', async () => {
    const g = await boot({ keys: ['a', 'b'], options: { backoff_ms: 2000, backoff_max_ms: 2000 } })
    // b cools for a second, less than the 1.8 s drawn below.
    fixture.up.set(secretOf('b'), { failure: { status: 429, headers: { 'retry-after': '1' }, times: 1 } })
    await okUntil(g, () => requests('b') === 1, "b's 429")
    fixture.up.set(secretOf('a'), { failure: { status: 500, times: 1 } })
    const random = spyOn(Math, 'random').mockReturnValue(0.9)
    try {
      await okSequential(g, 1)
    } finally {
      random.mockRestore()
    }
    expect(requests('b')).toBe(2)
    const [, retriedAt] = fixture.up.stats(secretOf('b')).arrivals
    const failedAt = fixture.up.stats(secretOf('a')).arrivals.at(-1)!
    expect(retriedAt! - failedAt).toBeGreaterThanOrEqual(1700)
  })

  test('the circuit opens after N consecutive failures, keeps the key out, and a failed trial opens it again', async () => {
    const g = await boot({ keys: ['a', 'b'] })
    fixture.up.set(secretOf('a'), { failure: { status: 500 } })
    await okUntil(g, () => requests('a') === 3, 'three failures on a')
    let row = await g.key('a')
    expect(row.state).toBe('open')
    expect(row.circuit.open_until).not.toBeNull()
    const opened = Date.now()
    await okSequential(g, 10)
    expect(requests('a')).toBe(3)

    // After the open period, one trial; it fails, so the circuit opens again.
    await Bun.sleep(Math.max(0, Date.parse(row.circuit.open_until!) - Date.now()) + 50)
    expect(Date.now() - opened).toBeGreaterThanOrEqual(500)
    await okUntil(g, () => requests('a') === 4, 'the trial request')
    row = await g.key('a')
    expect(row.state).toBe('open')
    await okSequential(g, 5)
    expect(requests('a')).toBe(4)
  })

  test('every key with an open circuit: 503 no_healthy_upstream saying so, Retry-After when the first circuit lets a trial through', async () => {
    const g = await boot({ keys: ['a'], options: { circuit_open_ms: 5000 } })
    fixture.up.set(secretOf('a'), { failure: { status: 500 } })
    for (let i = 0; i < 3; i++) await expectError(await g.chat(), 'upstream_error')
    const res = await g.chat()
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(4)
    expect(Number(res.headers.get('retry-after'))).toBeLessThanOrEqual(5)
    const error = await expectError(res, 'no_healthy_upstream')
    expect(error.message).toContain('circuit open after repeated failures')
    expect(error.message).not.toContain('refused')
    expect(requests('a')).toBe(3)
  })

  test('a successful trial after the open period closes the circuit; only one trial runs at a time', async () => {
    const g = await boot({ keys: ['a', 'b'] })
    fixture.up.set(secretOf('a'), { failure: { status: 500 } })
    await okUntil(g, () => requests('a') === 3, 'three failures on a')
    const row = await g.key('a')
    expect(row.state).toBe('open')

    // The key recovers, slowly: while its trial is in flight, nobody else is sent to it.
    fixture.up.set(secretOf('a'), { failure: null, latencyMs: 300 })
    await Bun.sleep(Math.max(0, Date.parse(row.circuit.open_until!) - Date.now()) + 50)
    const results = await Promise.all(Array.from({ length: 6 }, async (_, i) => {
      await Bun.sleep(i * 20)
      const res = await g.chat()
      await res.arrayBuffer()
      return res.status
    }))
    expect(results).toEqual([200, 200, 200, 200, 200, 200])
    expect(requests('a')).toBe(4)

    const closed = await g.key('a')
    expect(closed.state).toBe('healthy')
    expect(closed.circuit).toEqual({ consecutive_failures: 0, open_until: null })
    fixture.up.set(secretOf('a'), { latencyMs: 0 })
    await okSequential(g, 6)
    expect(requests('a')).toBeGreaterThanOrEqual(6)
  })

  test('every key failing: 502 upstream_error after each key was tried once', async () => {
    const g = await boot({ keys: ['a', 'b', 'c'] })
    for (const k of ['a', 'b', 'c']) fixture.up.set(secretOf(k), { failure: { status: 500 } })
    const error = await expectError(await g.chat(), 'upstream_error')
    expect(error.message).toContain('HTTP 500')
    expect(fixture.up.counts(['a', 'b', 'c'].map(secretOf))).toEqual([1, 1, 1])
  })

  test('max_attempts bounds the tries', async () => {
    const g = await boot({ keys: ['a', 'b', 'c', 'd', 'e'], options: { max_attempts: 2 } })
    for (const k of ['a', 'b', 'c', 'd', 'e']) fixture.up.set(secretOf(k), { failure: { status: 502 } })
    await expectError(await g.chat(), 'upstream_error')
    expect(fixture.up.counts(['a', 'b', 'c', 'd', 'e'].map(secretOf)).reduce((x, y) => x + y, 0)).toBe(2)
  })
})

describe('the request is at fault: no retry', () => {
  test.each([
    [400, 'invalid_request', 400],
    [404, 'model_not_found', 404],
    [422, 'invalid_request', 422],
  ] as const)('upstream %p reaches the client as %p (%p), sent upstream once', async (status, code, clientStatus) => {
    const g = await boot({ keys: ['a', 'b', 'c'] })
    for (const k of ['a', 'b', 'c']) fixture.up.set(secretOf(k), { failure: { status } })
    await expectError(await g.chat(), code, clientStatus)
    expect(fixture.up.counts(['a', 'b', 'c'].map(secretOf)).reduce((x, y) => x + y, 0)).toBe(1)
    // Not the key's fault either: it stays healthy.
    expect((await g.health()).map((r) => r.state)).toEqual(['healthy', 'healthy', 'healthy'])
  })
})

describe("a target whose adapter cannot translate the request (Claude in a group with an OpenAI-compatible provider)", () => {
  /** Nothing is sent to Claude: its adapter refuses `logprobs` before any call, so no server is needed at its address. */
  const claude = { id: 'claude', type: 'anthropic' as const, baseUrl: 'http://127.0.0.1:9', keys: [{ id: 'an-1', secret: secretOf('an-1') }] }

  test('is skipped for another target of the group, where the client got the refusal whenever the pick fell on it (every other request)', async () => {
    const g = await boot({
      keys: ['a'],
      extraProviders: [claude],
      models: [{ name: 'm', targets: [{ provider: 'acct', model: 'mock-gpt' }, { provider: 'claude', model: 'claude-sonnet-4-5' }] }],
    })
    await okSequential(g, 6, { logprobs: true })
    expect(requests('a')).toBe(6)
    // No fault of a key's: both stay healthy, and Claude still takes its share of what it can serve.
    expect((await g.health()).map((r) => [r.key, r.state, r.last_error])).toEqual([['a', 'healthy', null], ['an-1', 'healthy', null]])
  })

  test("is the refusal when the group has no other target to take it, fallbacks left alone (they serve a group with no healthy target, not a field it lacks)", async () => {
    const g = await boot({
      keys: ['a'],
      extraProviders: [claude],
      models: [
        { name: 'm', targets: [{ provider: 'claude', model: 'claude-sonnet-4-5' }], fallbacks: ['gpt'] },
        { name: 'gpt', targets: [{ provider: 'acct', model: 'mock-gpt' }] },
      ],
    })
    const error = await expectError(await g.chat({ logprobs: true }), 'invalid_request', 400)
    expect(error.param).toBe('logprobs')
    expect(requests('a')).toBe(0)
  })

  test("takes nothing from the key's own rpm: nothing was sent, where each refusal spent a request of the key's minute", async () => {
    const anthropic = await startMockAnthropic()
    try {
      const g = await boot({
        keys: ['a'],
        extraProviders: [{ ...claude, baseUrl: anthropic.url, keys: [{ id: 'an-1', secret: secretOf('an-1'), rpm: 1 }] }],
        models: [{ name: 'm', targets: [{ provider: 'claude', model: 'claude-sonnet-4-5' }] }],
      })
      await expectError(await g.chat({ logprobs: true }), 'invalid_request', 400)
      await okSequential(g, 1)
      expect(anthropic.stats.requests).toBe(1)
      // Its one request of the minute is spent now, by the call that reached Claude.
      await expectError(await g.chat(), 'no_healthy_upstream')
    } finally {
      await anthropic.stop()
    }
  })
})

describe('fallbacks', () => {
  const setup = {
    providers: { main: ['m1', 'm2'], spare: ['s1'] },
    models: [
      { name: 'm', targets: [{ provider: 'main', model: 'mock-gpt' }], fallbacks: ['backup'] },
      { name: 'backup', targets: [{ provider: 'spare', model: 'mock-gpt-spare' }] },
    ],
  }

  test('a dead group falls back to the next; the client sees success while any path works', async () => {
    const g = await boot(setup)
    fixture.up.set(secretOf('m1'), { failure: { status: 401 } })
    fixture.up.set(secretOf('m2'), { failure: { status: 401 } })
    const res = await g.chat()
    expect(res.status).toBe(200)
    expect(((await res.json()) as { model: string }).model).toBe('mock-gpt-spare')
    expect(fixture.up.counts(['m1', 'm2', 's1'].map(secretOf))).toEqual([1, 1, 1])
    await okSequential(g, 5)
    expect(fixture.up.counts(['m1', 'm2', 's1'].map(secretOf))).toEqual([1, 1, 6])

    // The primary comes back: traffic returns to it.
    fixture.up.set(secretOf('m1'), { failure: null })
    await g.admin('POST', '/admin/providers/main/keys/m1/reset')
    await okSequential(g, 3)
    expect(fixture.up.counts(['m1', 's1'].map(secretOf))).toEqual([4, 6])
  })

  test('5xx on the primary falls back too', async () => {
    const g = await boot(setup)
    fixture.up.set(secretOf('m1'), { failure: { status: 500 } })
    fixture.up.set(secretOf('m2'), { failure: { status: 500 } })
    await okSequential(g, 1)
    expect(fixture.up.counts(['m1', 'm2', 's1'].map(secretOf))).toEqual([1, 1, 1])
  })

  test('a primary whose retries spend max_attempts still leaves the fallback its attempt', async () => {
    const keys = ['m1', 'm2', 'm3', 'm4']
    const g = await boot({ ...setup, providers: { main: keys, spare: ['s1'] }, options: { max_attempts: 4 } })
    for (const k of keys) fixture.up.set(secretOf(k), { failure: { status: 500 } })
    const res = await g.chat()
    expect(res.status).toBe(200)
    expect(((await res.json()) as { model: string }).model).toBe('mock-gpt-spare')
    expect(fixture.up.counts([...keys, 's1'].map(secretOf))).toEqual([1, 1, 1, 1, 1])
  })

  test('the last attempts fail: 502 upstream_error; every key of the group and its fallback dead: 502 naming them, no Retry-After', async () => {
    const g = await boot(setup)
    fixture.up.set(secretOf('m1'), { failure: { status: 401 } })
    fixture.up.set(secretOf('m2'), { failure: { status: 401 } })
    fixture.up.set(secretOf('s1'), { failure: { status: 500 } })
    await expectError(await g.chat(), 'upstream_error')

    // The fallback's key is refused too: the upstream's own refusal, and that nothing is left.
    fixture.up.set(secretOf('s1'), { failure: { status: 401 } })
    const last = await expectError(await g.chat(), 'upstream_error')
    expect(last.message).toContain('Upstream provider "spare" refused the gateway\'s key "s1" (HTTP 401)')
    expect(last.message).toContain('Model "m" and its fallbacks have no upstream key left')
    const before = fixture.up.counts(['m1', 'm2', 's1'].map(secretOf))
    const res = await g.chat()
    // Dead keys come back only through an operator: no time to retry after, and no retry for the SDKs to make (they retry a 502 twice otherwise).
    expect(res.headers.get('retry-after')).toBeNull()
    expect(res.headers.get('x-should-retry')).toBe('false')
    const error = await expectError(res, 'upstream_error')
    expect(error.message).toContain('main/m1, main/m2, spare/s1')
    expect(error.message).toContain('/admin/providers/health')
    expect(fixture.up.counts(['m1', 'm2', 's1'].map(secretOf))).toEqual(before)
    expect((await g.health()).map((r) => r.state)).toEqual(['dead', 'dead', 'dead'])
  })
})

describe('strategies through the gateway', () => {
  test('least-busy avoids a slow key', async () => {
    const g = await boot({ keys: ['slow', 'fast'], models: [{ name: 'm', strategy: 'least-busy', targets: [{ provider: 'acct', model: 'mock-gpt' }] }] })
    fixture.up.set(secretOf('slow'), { latencyMs: 250 })
    const until = Date.now() + 1200
    await Promise.all(Array.from({ length: 4 }, async () => {
      while (Date.now() < until) await okSequential(g, 1)
    }))
    const [slow, fast] = [requests('slow'), requests('fast')]
    expect(fast).toBeGreaterThan(50)
    expect(slow / (slow + fast)).toBeLessThan(0.1)
  })

  /**
   * Keys `a` and `b` under the latency strategy, warmed up through a key outside the group: a cold
   * first request (compiling the path, opening the upstream connection) would be the first sample
   * of whichever key served it.
   */
  async function latencyGateway(options: Record<string, unknown> = {}): Promise<BalanceGateway> {
    const g = await boot({
      providers: { acct: ['a', 'b'], warm: ['w'] },
      models: [
        { name: 'm', strategy: 'latency', targets: [{ provider: 'acct', model: 'mock-gpt' }] },
        { name: 'w', targets: [{ provider: 'warm', model: 'mock-gpt' }] },
      ],
      options,
    })
    await okSequential(g, 3, { model: 'w' })
    return g
  }

  test('latency shifts traffic off a key that became slower', async () => {
    const g = await latencyGateway()
    fixture.up.set(secretOf('a'), { latencyMs: 80 })
    await okSequential(g, 20)
    // Whichever key goes first, the other is tried next (an unknown latency wins the tie): `a` once.
    const first = [requests('a'), requests('b')]
    expect(first).toEqual([1, 19])

    // `a`'s average is its one 80 ms sample. 250 ms samples take `b` past it within two requests,
    // and past a sample of a few times that within a few more.
    fixture.up.set(secretOf('a'), { latencyMs: 0 })
    fixture.up.set(secretOf('b'), { latencyMs: 250 })
    await okSequential(g, 20)
    const second = [requests('a') - first[0]!, requests('b') - first[1]!]
    expect(second[0]!).toBeGreaterThanOrEqual(14)
    expect((await g.key('b')).latency_ewma_ms!).toBeGreaterThan((await g.key('a')).latency_ewma_ms!)
  })

  test('latency: a key that was slow once is tried again once its average is older than latency_ttl_ms, and takes traffic if it is fast now', async () => {
    const g = await latencyGateway({ latency_ttl_ms: 500 })
    fixture.up.set(secretOf('a'), { latencyMs: 150 })
    await okSequential(g, 10)
    expect([requests('a'), requests('b')]).toEqual([1, 9])
    // `a` is fast again, but nothing sends it a request to show it while its 150 ms average stands.
    fixture.up.set(secretOf('a'), { latencyMs: 0 })
    fixture.up.set(secretOf('b'), { latencyMs: 40 })
    await Bun.sleep(600)
    // Both averages have gone stale and are forgotten: whichever key serves first, the other (unknown)
    // wins the next draw, and from then on `a`'s fresh samples keep it ahead of `b`'s 40 ms.
    await okSequential(g, 10)
    expect(requests('a')).toBeGreaterThanOrEqual(1 + 5)
  })

  test('a reset past any date the gateway can write (9999999999999s from a broken upstream) is held for at most 2147483647 ms, where the health view failed 500 (Invalid time value)', async () => {
    const g = await boot({ keys: ['a'], models: [{ name: 'm', strategy: 'usage', targets: [{ provider: 'acct', model: 'mock-gpt' }] }] })
    fixture.up.set(secretOf('a'), { headers: { 'x-ratelimit-limit-requests': '100', 'x-ratelimit-remaining-requests': '50', 'x-ratelimit-reset-requests': '9999999999999s' } })
    await okSequential(g, 1)
    const row = await g.key('a')
    expect(row.headroom).toBe(0.5)
    const until = Date.parse(row.headroom_models[0]!.until)
    expect(until).toBeGreaterThan(Date.now() + 2_000_000_000)
    expect(until).toBeLessThanOrEqual(Date.now() + 2_147_483_647)
  })

  test('usage avoids a key whose x-ratelimit-remaining-requests reads 0, until its window resets', async () => {
    const g = await boot({ keys: ['a', 'b'], models: [{ name: 'm', strategy: 'usage', targets: [{ provider: 'acct', model: 'mock-gpt' }] }] })
    fixture.up.set(secretOf('a'), { headers: { 'x-ratelimit-limit-requests': '100', 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '1s' } })
    fixture.up.set(secretOf('b'), { headers: { 'x-ratelimit-limit-requests': '100', 'x-ratelimit-remaining-requests': '60', 'x-ratelimit-reset-requests': '1s' } })
    await okUntil(g, () => requests('a') === 1, 'a tried once')
    const learnedAt = Date.now()
    expect((await g.key('a')).headroom).toBe(0)
    await okSequential(g, 20)
    expect(requests('a')).toBe(1)

    // The provider's window resets after 1 s: what was learned no longer holds, `a` is tried again.
    fixture.up.set(secretOf('a'), { headers: { 'x-ratelimit-limit-requests': '100', 'x-ratelimit-remaining-requests': '90' } })
    await Bun.sleep(Math.max(0, learnedAt + 1100 - Date.now()))
    await okUntil(g, () => requests('a') === 2, 'a tried again after the reset')
    await okSequential(g, 10)
    expect(requests('a')).toBeGreaterThan(6)
  })

  test('weighted follows key weights', async () => {
    const g = await boot({ providers: { acct: [{ id: 'a', weight: 1 }, { id: 'b', weight: 3 }] } })
    await okSequential(g, 40)
    expect([requests('a'), requests('b')]).toEqual([10, 30])
  })
})

describe('streams', () => {
  const stream = { stream: true }

  test('a stream whose upstream fails before its first byte is retried on another key', async () => {
    const g = await boot({ keys: ['a', 'b'] })
    fixture.up.set(secretOf('a'), { failure: { status: 500, times: 1 } })
    const res = await g.chat(stream)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toStartWith('text/event-stream')
    const parsed = parseSse(await res.text())
    expect(parsed.done).toBe(true)
    expect(parsed.events.length).toBeGreaterThan(2)
    expect([requests('a'), requests('b')]).toEqual([1, 1])
  })

  test('a stream that breaks after sending chunks is not retried: the client sees the partial stream end with an error event', async () => {
    const breaking = startBreakingUpstream(3)
    try {
      const gw = fixture.closeAfter(await startBalanceGateway(fixture.up.url, {
        providers: { acct: ['b'] },
        // Least-busy holds a stream's key until the stream ends: the break must release it.
        models: [{ name: 'm', strategy: 'least-busy', targets: [{ provider: 'brk', model: 'mock-gpt' }, { provider: 'acct', model: 'mock-gpt' }] }],
        options: FAST,
        extraProviders: [{ id: 'brk', type: 'openai-compatible', baseUrl: breaking.url, keys: [{ id: 'x', secret: 'sk-breaking-0123456789' }] }],
      }))
      const res = await gw.chat(stream)
      expect(res.status).toBe(200)
      const { text, error } = await readUntilEnd(res.body!)
      expect(text).toContain('part 2')
      expect(text).not.toContain('[DONE]')
      // The gateway writes this stream (balance's release at its end): the break ends it with an
      // upstream_error event after the whole events, not with a broken body.
      expect(error).toBeNull()
      expect(text.trimEnd().split('\n\n').at(-1)).toContain('"code":"upstream_error"')
      expect([breaking.requests, requests('b')]).toEqual([1, 0])
      await eventually(async () => (await gw!.key('x')).in_flight === 0, 'the broken stream released its key')
    } finally {
      breaking.stop()
    }
  })

  test('least-busy: in_flight counts open streams and returns to 0 when they end, also when the client cancels', async () => {
    const g = await boot({ keys: ['a', 'b'], models: [{ name: 'm', strategy: 'least-busy', targets: [{ provider: 'acct', model: 'mock-gpt' }] }] })
    fixture.up.set(secretOf('a'), { chunkDelayMs: 40 })
    fixture.up.set(secretOf('b'), { chunkDelayMs: 40 })
    const open = await Promise.all([g.chat(stream), g.chat(stream), g.chat(stream)])
    const inFlight = async () => (await g.health()).map((r) => r.in_flight)
    // Least-busy spread them: 2 on one key, 1 on the other.
    expect((await inFlight()).sort()).toEqual([1, 2])
    const texts = await Promise.all(open.map((r) => r.text()))
    for (const t of texts) expect(parseSse(t).done).toBe(true)
    await eventually(async () => (await inFlight()).every((n) => n === 0), 'in_flight back to 0 after the streams ended')

    // The client reads one chunk and goes away.
    const controller = new AbortController()
    const cut = await g.chat(stream, { signal: controller.signal })
    const reader = cut.body!.getReader()
    await reader.read()
    expect((await inFlight()).reduce((x, y) => x + y, 0)).toBe(1)
    controller.abort()
    await reader.cancel().catch(() => {})
    await eventually(async () => (await inFlight()).every((n) => n === 0), 'in_flight back to 0 after the cancel')
    await waitFor(() => fixture.up.stats(secretOf('a')).cancelled + fixture.up.stats(secretOf('b')).cancelled === 1, 'the upstream stream was cancelled')
  })

  test('latency: streams count too; weighted: a stream frees its key at its headers (no end to watch)', async () => {
    for (const [strategy, held] of [['latency', 2], ['weighted', 0]] as const) {
      const g = await boot({ keys: ['a', 'b'], models: [{ name: 'm', strategy, targets: [{ provider: 'acct', model: 'mock-gpt' }] }] })
      fixture.up.set(secretOf('a'), { chunkDelayMs: 40 })
      fixture.up.set(secretOf('b'), { chunkDelayMs: 40 })
      const open = await Promise.all([g.chat(stream), g.chat(stream)])
      expect((await g.health()).reduce((sum, r) => sum + r.in_flight, 0)).toBe(held)
      for (const r of open) expect(parseSse(await r.text()).done).toBe(true)
      await eventually(async () => (await g.health()).every((r) => r.in_flight === 0), `${strategy}: in_flight back to 0`)
    }
  })

  test('in_flight returns to 0 after plain requests and failed attempts', async () => {
    const g = await boot({ keys: ['a', 'b'] })
    fixture.up.set(secretOf('a'), { failure: { status: 500, times: 2 } })
    await okSequential(g, 6)
    expect((await g.health()).map((r) => r.in_flight)).toEqual([0, 0])
  })
})

describe("a provider key's own rpm", () => {
  test('is respected before the provider says 429: with rpm 2 and 2 keys, the 5th request of a burst is refused', async () => {
    const g = await boot({ providers: { acct: [{ id: 'a', rpm: 2 }, { id: 'b', rpm: 2 }] } })
    const results = await Promise.all(Array.from({ length: 5 }, () => g.chat()))
    const statuses = results.map((r) => r.status).sort()
    expect(statuses).toEqual([200, 200, 200, 200, 503])
    const refused = results.find((r) => r.status === 503)!
    // One request of room comes back after 60 s / 2.
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(25)
    expect(Number(refused.headers.get('retry-after'))).toBeLessThanOrEqual(30)
    const error = await expectError(refused, 'no_healthy_upstream')
    expect(error.message).toContain('rate limit')
    for (const r of results) await r.arrayBuffer().catch(() => {})
    expect([requests('a'), requests('b')]).toEqual([2, 2])
  })

  test('a key at its rpm leaves the traffic to the keys without one', async () => {
    const g = await boot({ providers: { acct: [{ id: 'a', rpm: 3 }, { id: 'b' }] } })
    await okSequential(g, 20)
    expect([requests('a'), requests('b')]).toEqual([3, 17])
  })
})

describe('providers changed at run time', () => {
  test('keys that leave the registry leave the health view; new keys join it on first use', async () => {
    const g = await boot({ keys: ['a', 'b'] })
    await okSequential(g, 2)
    const config = g.gateway.config
    const acct = config.providers.find((p) => p.id === 'acct')!
    // What the admin API does when a provider's keys change: the registry is swapped whole.
    g.gateway.models.replace([{ ...acct, keys: [{ id: 'c', secret: secretOf('c') }] }], config.models)
    await okSequential(g, 3)
    expect((await g.health()).map((r) => r.key)).toEqual(['c'])
    expect(requests('c')).toBe(3)
  })
})

