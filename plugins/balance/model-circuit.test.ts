/**
 * The circuit breaker is per provider key and upstream model: 5xx answers, timeouts and network
 * errors of one model (deprecated or broken at the provider, or a prompt a client keeps sending
 * that it always fails on) open the key's circuit for that model only, and the key keeps serving
 * its other models. Real HTTP on 127.0.0.1 to an upstream whose answers are set per model name
 * (test/support/balance.ts), and to one that drops every connection (a network failure).
 */
import { describe, expect, test } from 'bun:test'
import { startBalanceGateway, startModelUpstream, type BalanceGateway, type BalanceSetup, upstreamForFile } from '../../test/support/balance.ts'
import { expectError, waitFor } from '../../test/support/http.ts'

/** `m` → p/model-a and `m2` → p/model-b, no fallbacks: one key, two upstream models, one attempt a request. */
const MODEL_A = { name: 'm', targets: [{ provider: 'p', model: 'model-a' }] }
const MODEL_B = { name: 'm2', targets: [{ provider: 'p', model: 'model-b' }] }
const FAST = { cooldown_ms: 1000, circuit_failures: 3, circuit_open_ms: 600, backoff_ms: 0 }

const fixture = upstreamForFile(startModelUpstream)

async function boot(setup: { models?: BalanceSetup['models']; url?: string } = {}): Promise<BalanceGateway> {
  const gw = fixture.closeAfter(await startBalanceGateway(setup.url ?? fixture.up.url, { providers: { p: ['k1'] }, models: setup.models ?? [MODEL_A, MODEL_B], options: FAST }))
  return gw
}

/** One chat request that must succeed; the upstream model that answered it. */
async function served(g: BalanceGateway, model: string): Promise<string> {
  const res = await g.chat({ model })
  const text = await res.text()
  expect({ model, status: res.status, body: res.status === 200 ? '' : text }).toEqual({ model, status: 200, body: '' })
  return (JSON.parse(text) as { model: string }).model
}

/** Until the key's circuit for `model` is past its open period (half-open). */
async function untilHalfOpen(g: BalanceGateway, model: string): Promise<void> {
  const open = (await g.key('k1')).circuit_models.find((c) => c.model === model)?.open_until
  if (!open) throw new Error(`the circuit for ${model} is not open`)
  await Bun.sleep(Math.max(0, Date.parse(open) - Date.now()) + 50)
}

describe('the circuit is per key and upstream model', () => {
  test('model-a answering 500 opens its circuit on the key after circuit_failures (3); model-b on the same key keeps answering 200', async () => {
    const g = await boot()
    fixture.up.fail('model-a', { status: 500 })
    for (let i = 0; i < 3; i++) await expectError(await g.chat({ model: 'm' }), 'upstream_error')
    expect(fixture.up.requests('model-a')).toBe(3)
    await expectError(await g.chat({ model: 'm' }), 'no_healthy_upstream')
    expect(fixture.up.requests('model-a')).toBe(3)

    for (let i = 0; i < 5; i++) expect(await served(g, 'm2')).toBe('model-b')
    expect([fixture.up.requests('model-a'), fixture.up.requests('model-b')]).toEqual([3, 5])

    // The operator sees the key open, for which model, until when; the key's circuit is its worst model's.
    const row = await g.key('k1')
    expect(row.state).toBe('open')
    expect(row.circuit_models.map((c) => c.model)).toEqual(['model-a'])
    const until = row.circuit_models[0]!.open_until
    expect(until).not.toBeNull()
    expect(row.circuit).toEqual({ consecutive_failures: row.circuit_models[0]!.consecutive_failures, open_until: until })
    expect(row.last_error?.status).toBe(500)
  })

  test('with model-b as its fallback, requests for model-a are served all along, by model-b once model-a is open', async () => {
    const g = await boot({ models: [{ ...MODEL_A, fallbacks: ['m2'] }, MODEL_B] })
    fixture.up.fail('model-a', { status: 500 })
    for (let i = 0; i < 6; i++) expect(await served(g, 'm')).toBe('model-b')
    // Three failures open model-a's circuit; from then on its requests go straight to model-b.
    expect([fixture.up.requests('model-a'), fixture.up.requests('model-b')]).toEqual([3, 6])
  })

  test('after circuit_open_ms one trial for model-a while model-b keeps serving: a failed trial opens it again, a successful one closes it', async () => {
    const g = await boot()
    fixture.up.fail('model-a', { status: 500 })
    for (let i = 0; i < 3; i++) await expectError(await g.chat({ model: 'm' }), 'upstream_error')
    expect(await served(g, 'm2')).toBe('model-b')

    // Half-open: one trial, which fails: open again at once (not after three more).
    await untilHalfOpen(g, 'model-a')
    // The operator sees it half-open, not healthy: model-a has failed and waits for its trial.
    let row = await g.key('k1')
    expect([row.state, row.circuit_models.map((c) => [c.model, c.consecutive_failures, c.open_until])]).toEqual(['half_open', [['model-a', 3, null]]])
    await expectError(await g.chat({ model: 'm' }), 'upstream_error')
    await expectError(await g.chat({ model: 'm' }), 'no_healthy_upstream')
    expect(fixture.up.requests('model-a')).toBe(4)
    expect((await g.key('k1')).circuit_models.map((c) => [c.model, c.open_until !== null])).toEqual([['model-a', true]])
    expect(await served(g, 'm2')).toBe('model-b')

    // model-a recovers, slowly: while its one trial is in flight, no other request goes to model-a,
    // and model-b on the same key is served as ever.
    await untilHalfOpen(g, 'model-a')
    fixture.up.fail('model-a', null)
    fixture.up.delay('model-a', 300)
    const trial = g.chat({ model: 'm' })
    await waitFor(() => fixture.up.requests('model-a') === 5, 'the trial reached model-a')
    // Its trial in flight: half-open still, until the trial's answer.
    expect((await g.key('k1')).state).toBe('half_open')
    await expectError(await g.chat({ model: 'm' }), 'no_healthy_upstream')
    expect(await served(g, 'm2')).toBe('model-b')
    const answer = await trial
    expect(answer.status).toBe(200)
    await answer.arrayBuffer()
    expect(fixture.up.requests('model-a')).toBe(5)

    row = await g.key('k1')
    expect([row.state, row.circuit, row.circuit_models]).toEqual(['healthy', { consecutive_failures: 0, open_until: null }, []])
    fixture.up.delay('model-a', 0)
    expect(await served(g, 'm')).toBe('model-a')
  })

  test('the health view counts every failure in a row: circuit_failures when the circuit opens, one more for each failed trial, 0 after a success', async () => {
    const g = await boot()
    fixture.up.fail('model-a', { status: 500 })
    const failuresOf = async () => (await g.key('k1')).circuit_models.find((c) => c.model === 'model-a')?.consecutive_failures
    await expectError(await g.chat({ model: 'm' }), 'upstream_error')
    await expectError(await g.chat({ model: 'm' }), 'upstream_error')
    expect(await failuresOf()).toBe(2)
    expect((await g.key('k1')).state).toBe('healthy')
    await expectError(await g.chat({ model: 'm' }), 'upstream_error')
    // Open: three failures in a row, as many as circuit_failures; the key's circuit says the same.
    let row = await g.key('k1')
    expect([row.state, row.circuit_models[0]!.consecutive_failures, row.circuit.consecutive_failures]).toEqual(['open', 3, 3])

    // The failed trial is the fourth in a row, and opens the circuit again at once.
    await untilHalfOpen(g, 'model-a')
    await expectError(await g.chat({ model: 'm' }), 'upstream_error')
    row = await g.key('k1')
    expect([row.state, row.circuit_models[0]!.consecutive_failures, row.circuit_models[0]!.open_until !== null]).toEqual(['open', 4, true])
    await expectError(await g.chat({ model: 'm' }), 'no_healthy_upstream')
    expect(fixture.up.requests('model-a')).toBe(4)

    // A successful trial closes it: no failures in a row left.
    await untilHalfOpen(g, 'model-a')
    fixture.up.fail('model-a', null)
    expect(await served(g, 'm')).toBe('model-a')
    row = await g.key('k1')
    expect([row.state, row.circuit, row.circuit_models]).toEqual(['healthy', { consecutive_failures: 0, open_until: null }, []])
  })

  test('a key-wide network failure stops every model once each has failed circuit_failures times: 3 requests for model-a, 3 for model-b, 6 in all', async () => {
    // Accepts each connection and closes it at once: every attempt is a network error (status 0).
    let attempts = 0
    const dropping = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { open: (socket) => void (attempts++, socket.end()), data: () => {} } })
    try {
      const g = await boot({ url: `http://127.0.0.1:${dropping.port}/v1` })
      for (let i = 0; i < 3; i++) await expectError(await g.chat({ model: 'm' }), 'upstream_error')
      await expectError(await g.chat({ model: 'm' }), 'no_healthy_upstream')
      expect(attempts).toBe(3)
      // model-b has its own circuit: it is tried until it has failed three times too.
      for (let i = 0; i < 3; i++) await expectError(await g.chat({ model: 'm2' }), 'upstream_error')
      expect(attempts).toBe(6)
      for (const model of ['m', 'm2']) await expectError(await g.chat({ model }), 'no_healthy_upstream')
      expect(attempts).toBe(6)
      const row = await g.key('k1')
      expect(row.state).toBe('open')
      expect(row.last_error?.status).toBe(0)
      expect(row.circuit_models.map((c) => [c.model, c.open_until !== null]).sort()).toEqual([['model-a', true], ['model-b', true]])

      // The operator's reset closes every model's circuit.
      expect((await g.admin('POST', '/admin/providers/p/keys/k1/reset')).status).toBe(200)
      const reset = await g.key('k1')
      expect([reset.state, reset.circuit, reset.circuit_models]).toEqual(['healthy', { consecutive_failures: 0, open_until: null }, []])
      await expectError(await g.chat({ model: 'm2' }), 'upstream_error')
      expect(attempts).toBe(7)
    } finally {
      dropping.stop(true)
    }
  })
})
