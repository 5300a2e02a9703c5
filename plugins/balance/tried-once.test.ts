/**
 * One request goes to each provider key × upstream model at most once: a 5xx or a timeout there is
 * not sent again to the same pair because a group lists the same provider and model twice, or a
 * fallback group sends to it too (the upstream may have done, and billed, the work already). Real
 * HTTP on 127.0.0.1 to an upstream whose answers are set per model name.
 */
import { describe, expect, test } from 'bun:test'
import { secretOf, startBalanceGateway, startModelUpstream, type BalanceGateway, upstreamForFile } from '../../test/support/balance.ts'
import { expectError } from '../../test/support/http.ts'

const fixture = upstreamForFile(startModelUpstream)

const GROUPS = [
  // The same provider × model twice (to weight it, or a copy-paste): the config accepts it.
  { name: 'dup', targets: [{ provider: 'p', model: 'model-a' }, { provider: 'p', model: 'model-a', weight: 2 }] },
  // A fallback that sends to the same upstream model on the same key.
  { name: 'alias', targets: [{ provider: 'p', model: 'model-a' }] },
  { name: 'a', targets: [{ provider: 'p', model: 'model-a' }], fallbacks: ['alias'] },
  // A fallback to another model of the same key is another pair: it is tried.
  { name: 'b', targets: [{ provider: 'p', model: 'model-b' }] },
  { name: 'ab', targets: [{ provider: 'p', model: 'model-a' }], fallbacks: ['alias', 'b'] },
]

async function boot(timeouts?: { first_byte_ms: number }): Promise<BalanceGateway> {
  const gw = fixture.closeAfter(await startBalanceGateway(fixture.up.url, {
    providers: {},
    extraProviders: [{ id: 'p', type: 'openai-compatible', baseUrl: fixture.up.url, keys: [{ id: 'k1', secret: secretOf('k1') }], ...(timeouts ? { timeouts } : {}) }],
    models: GROUPS,
    options: { circuit_failures: 5, backoff_ms: 0 },
  }))
  return gw
}

describe('a request tries each key × upstream model once', () => {
  test('a 5xx is not sent again to the same key and model, through a duplicate target or a fallback group', async () => {
    const g = await boot()
    fixture.up.fail('model-a', { status: 500 })
    await expectError(await g.chat({ model: 'dup' }), 'upstream_error')
    expect(fixture.up.requests('model-a')).toBe(1)
    await expectError(await g.chat({ model: 'a' }), 'upstream_error')
    expect(fixture.up.requests('model-a')).toBe(2)
    // model-b on the same key is another pair: the request goes on to it and succeeds.
    const res = await g.chat({ model: 'ab' })
    expect(res.status).toBe(200)
    expect(((await res.json()) as { model: string }).model).toBe('model-b')
    expect([fixture.up.requests('model-a'), fixture.up.requests('model-b')]).toEqual([3, 1])
  })

  test('a first-byte timeout is not sent again to the same key and model (the upstream may still do, and bill, the work)', async () => {
    const g = await boot({ first_byte_ms: 150 })
    fixture.up.delay('model-a', 600)
    await expectError(await g.chat({ model: 'dup' }), 'upstream_timeout')
    await expectError(await g.chat({ model: 'a' }), 'upstream_timeout')
    expect(fixture.up.requests('model-a')).toBe(2)
  })
})
