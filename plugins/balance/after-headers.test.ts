/**
 * An answer that fails after its headers, by the upstream's doing (it stalls past the provider's
 * idle_ms, or its connection breaks mid-body), counts against its key for that upstream model as
 * any 5xx or timeout does: failures in a row, last_error, the circuit. It is never retried (the
 * client has had part of the answer), and a client that goes away is not the key's fault. Real
 * HTTP on 127.0.0.1: a keyed upstream whose streams can be slowed, and one that breaks every answer.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test'
import { readUntilEnd, startBreakingUpstream, startKeyedUpstream, type BreakingUpstream } from '../../test/fixtures/keyed-upstream.ts'
import { BALANCE_ADMIN_KEY, secretOf, upstreamForFile, type HealthRow } from '../../test/support/balance.ts'
import { startGateway, type TestGateway } from '../../test/support/gateway.ts'
import { definePlugin, type Outcome } from '../../src/plugin.ts'
import type { ConfigFile } from '../../src/config/schema.ts'

const OPTIONS = { circuit_failures: 2, circuit_open_ms: 30_000, backoff_ms: 0 }

const fixture = upstreamForFile(startKeyedUpstream)
let breaking: BreakingUpstream
const outcomes: Outcome[] = []
/** A completion hook: the gateway then reads (taps) every stream for it. */
const recorder = definePlugin({ name: 'outcome-recorder', setup: () => ({ onComplete: (_req, outcome) => void outcomes.push(outcome) }) })

beforeAll(() => {
  breaking = startBreakingUpstream(2)
})
afterAll(() => breaking.stop())
beforeEach(() => {
  outcomes.length = 0
})

async function boot(providers: NonNullable<ConfigFile['providers']>, models: ConfigFile['models'], plugins: unknown[] = []): Promise<TestGateway> {
  return fixture.closeAfter(await startGateway({ providers, models, plugins: [{ use: 'balance', options: OPTIONS }, ...plugins] }, { env: { SLUICE_ADMIN_KEY: BALANCE_ADMIN_KEY } }))
}

const chat = (g: TestGateway, body: Record<string, unknown>, signal?: AbortSignal) =>
  fetch(`${g.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hello' }], ...body }),
    signal,
  })

async function healthOf(g: TestGateway, key: string): Promise<HealthRow> {
  const res = await fetch(`${g.url}/admin/providers/health`, { headers: { authorization: `Bearer ${BALANCE_ADMIN_KEY}` } })
  const row = ((await res.json()) as { data: HealthRow[] }).data.find((r) => r.key === key)
  if (!row) throw new Error(`no health row for key ${key}`)
  return row
}

/** The error code a client's stream ended with (its last event), or null when it ended well. */
const endCode = (text: string): string | null => /"code":"([a-z_]+)"/.exec(text.trimEnd().split('\n\n').at(-1) ?? '')?.[1] ?? null

describe('an answer that fails after its headers', () => {
  test('a stream stalling past idle_ms counts against its key: after circuit_failures (2) its circuit opens and the other key serves the rest', async () => {
    const g = await boot(
      [{ id: 'p', type: 'openai-compatible', baseUrl: fixture.up.url, timeouts: { idle_ms: 200 }, keys: [{ id: 'slow', secret: secretOf('slow') }, { id: 'fast', secret: secretOf('fast') }] }],
      [{ name: 'm', strategy: 'round-robin', targets: [{ provider: 'p', model: 'mock-gpt' }] }],
    )
    fixture.up.set(secretOf('slow'), { chunkDelayMs: 2000 })
    const ends: (string | null)[] = []
    for (let i = 0; i < 6; i++) {
      const res = await chat(g, { stream: true })
      expect(res.status).toBe(200)
      ends.push(endCode((await readUntilEnd(res.body!)).text))
    }
    // Round-robin: slow, fast, slow, fast; then slow is open and fast serves. Nothing was retried.
    expect(ends).toEqual(['upstream_timeout', null, 'upstream_timeout', null, null, null])
    expect(fixture.up.counts([secretOf('slow'), secretOf('fast')])).toEqual([2, 4])
    const slow = await healthOf(g, 'slow')
    expect(slow.state).toBe('open')
    expect(slow.circuit_models).toEqual([{ model: 'mock-gpt', consecutive_failures: 2, open_until: expect.any(String) }])
    expect(slow.last_error?.status).toBe(0)
    expect(slow.last_error?.message).toContain('sent nothing for 200 ms')
    const fast = await healthOf(g, 'fast')
    expect([fast.state, fast.circuit.consecutive_failures, fast.last_error]).toEqual(['healthy', 0, null])
  })

  test.each([
    ['a stream the gateway taps', 'round-robin', { stream: true }],
    ['a short stream the gateway mirrors', 'round-robin', { stream: true, max_tokens: 16 }],
    ['a JSON answer', 'round-robin', {}],
    ['a stream holding its key (least-busy)', 'least-busy', { stream: true }],
  ] as const)('%s whose connection breaks counts against its key, which opens after 2; not retried', async (_what, strategy, body) => {
    const before = breaking.requests
    const g = await boot(
      [
        { id: 'brk', type: 'openai-compatible', baseUrl: breaking.url, keys: [{ id: 'x', secret: 'sk-breaking-0123456789' }] },
        { id: 'acct', type: 'openai-compatible', baseUrl: fixture.up.url, keys: [{ id: 'ok', secret: secretOf('ok') }] },
      ],
      [{ name: 'm', strategy, targets: [{ provider: 'brk', model: 'mock-gpt' }, { provider: 'acct', model: 'mock-gpt' }] }],
      [recorder],
    )
    for (let i = 0; i < 6; i++) {
      const res = await chat(g, body)
      await readUntilEnd(res.body!)
    }
    expect(breaking.requests - before).toBe(2)
    expect(fixture.up.stats(secretOf('ok')).requests).toBe(4)
    const x = await healthOf(g, 'x')
    expect([x.state, x.circuit.consecutive_failures, x.last_error?.status, x.in_flight]).toEqual(['open', 2, 0, 0])
    expect(x.last_error?.message).toContain('broke off')
    await Bun.sleep(50)
    expect(outcomes.filter((o) => o.errorCode === 'upstream_error')).toHaveLength(2)
  })

  test('a client that goes away mid-stream is not the key\'s fault', async () => {
    const g = await boot(
      [{ id: 'p', type: 'openai-compatible', baseUrl: fixture.up.url, timeouts: { idle_ms: 5000 }, keys: [{ id: 'slow', secret: secretOf('slow') }] }],
      [{ name: 'm', targets: [{ provider: 'p', model: 'mock-gpt' }] }],
    )
    fixture.up.set(secretOf('slow'), { chunkDelayMs: 1000 })
    for (let i = 0; i < 3; i++) {
      const client = new AbortController()
      const res = await chat(g, { stream: true }, client.signal)
      const reader = res.body!.getReader()
      await reader.read()
      client.abort()
      await reader.read().catch(() => {})
    }
    await Bun.sleep(100)
    const slow = await healthOf(g, 'slow')
    expect([slow.state, slow.circuit.consecutive_failures, slow.last_error, slow.in_flight]).toEqual(['healthy', 0, null, 0])
  })
})
