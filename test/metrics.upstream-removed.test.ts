/**
 * `sluice_upstream_key_up{provider,key}` speaks of the provider keys the gateway has: a key taken
 * away at run time (its provider deleted, or the key replaced through the admin API) leaves the
 * gauge, rather than reading 0 until the next restart and keeping an alert on it firing for a key
 * that no longer exists; an attempt with it still in flight then does not bring it back when it ends.
 * A key that stays keeps its series.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { startGateway, upstreamConfig, type TestGateway } from './support/gateway.ts'
import { sampleValue, scrape } from './support/metrics.ts'

const ADMIN_KEY = 'sluice-upstream-removed-admin-key-0123456789'

let upstream: MockUpstream
let gw: TestGateway
beforeAll(async () => {
  upstream = await startMockUpstream({ apiKeys: ['good-upstream-key-0123456789', 'sk-upstream-secret-0123456789'] })
  gw = await startGateway(upstreamConfig(upstream.url, { plugins: ['balance'] }), { env: { SLUICE_ADMIN_KEY: ADMIN_KEY } })
})
afterAll(async () => {
  await gw?.close()
  await upstream?.stop()
})

const admin = (method: string, path: string, body?: unknown) =>
  fetch(`${gw.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(body !== undefined && { 'content-type': 'application/json' }) },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  })

const chat = async (model: string) => {
  const res = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }) })
  await res.arrayBuffer()
  return res.status
}

describe('upstream key health of keys taken away', () => {
  test('a deleted provider, and a key replaced by a PATCH, leave sluice_upstream_key_up; the config\'s key and the kept key stay', async () => {
    expect((await admin('POST', '/admin/providers', { id: 'rt', type: 'openai-compatible', base_url: upstream.url, keys: [{ id: 'dead', secret: 'refused-key-0123456789' }] })).status).toBe(201)
    expect((await admin('POST', '/admin/providers', { id: 'rt2', type: 'openai-compatible', base_url: upstream.url, keys: [{ id: 'old', secret: 'refused-key-0123456789' }, { id: 'kept', secret: 'good-upstream-key-0123456789' }] })).status).toBe(201)
    expect((await admin('POST', '/admin/models', { name: 'rt-model', targets: [{ provider: 'rt', model: 'mock-gpt' }] })).status).toBe(201)
    expect((await admin('POST', '/admin/models', { name: 'rt2-model', targets: [{ provider: 'rt2', model: 'mock-gpt' }] })).status).toBe(201)
    expect(await chat('mock-gpt')).toBe(200)
    expect(await chat('rt-model')).toBeGreaterThanOrEqual(400)
    // Two calls: the first key (refused) then the second, whatever order the routing takes.
    await chat('rt2-model')
    await chat('rt2-model')

    let m = await scrape(gw.url)
    expect(sampleValue(m, 'sluice_upstream_key_up', { provider: 'up', key: 'k1' })).toBe(1)
    expect(sampleValue(m, 'sluice_upstream_key_up', { provider: 'rt', key: 'dead' })).toBe(0)
    expect(sampleValue(m, 'sluice_upstream_key_up', { provider: 'rt2', key: 'old' })).toBe(0)
    expect(sampleValue(m, 'sluice_upstream_key_up', { provider: 'rt2', key: 'kept' })).toBe(1)

    expect((await admin('DELETE', '/admin/models/rt-model')).status).toBe(200)
    expect((await admin('DELETE', '/admin/providers/rt')).status).toBe(200)
    const patched = await admin('PATCH', '/admin/providers/rt2', { keys: [{ id: 'kept', secret: 'good-upstream-key-0123456789' }] })
    expect(patched.status).toBe(200)

    m = await scrape(gw.url)
    expect(sampleValue(m, 'sluice_upstream_key_up', { provider: 'rt', key: 'dead' })).toBeUndefined()
    expect(sampleValue(m, 'sluice_upstream_key_up', { provider: 'rt2', key: 'old' })).toBeUndefined()
    expect(sampleValue(m, 'sluice_upstream_key_up', { provider: 'rt2', key: 'kept' })).toBe(1)
    expect(sampleValue(m, 'sluice_upstream_key_up', { provider: 'up', key: 'k1' })).toBe(1)
    // Counters keep what happened.
    expect(sampleValue(m, 'sluice_upstream_attempts_total', { provider: 'rt', key: 'dead', status: '401' })).toBe(1)

    // A provider made again under the same id is tracked afresh.
    expect((await admin('POST', '/admin/providers', { id: 'rt', type: 'openai-compatible', base_url: upstream.url, keys: [{ id: 'dead', secret: 'good-upstream-key-0123456789' }] })).status).toBe(201)
    expect((await admin('POST', '/admin/models', { name: 'rt-model', targets: [{ provider: 'rt', model: 'mock-gpt' }] })).status).toBe(201)
    expect(await chat('rt-model')).toBe(200)
    m = await scrape(gw.url)
    expect(sampleValue(m, 'sluice_upstream_key_up', { provider: 'rt', key: 'dead' })).toBe(1)
  })

  test('a request in flight while its provider is deleted does not bring the key\'s gauge back when it ends', async () => {
    expect((await admin('POST', '/admin/providers', { id: 'late', type: 'openai-compatible', base_url: upstream.url, keys: [{ id: 'k', secret: 'good-upstream-key-0123456789' }] })).status).toBe(201)
    // The mock answers this model after 600 ms.
    expect((await admin('POST', '/admin/models', { name: 'late-model', targets: [{ provider: 'late', model: 'mock-slow-600' }] })).status).toBe(201)
    const asked = upstream.stats.requests
    const inFlight = chat('late-model')
    while (upstream.stats.requests === asked) await Bun.sleep(5)
    expect((await admin('DELETE', '/admin/models/late-model')).status).toBe(200)
    expect((await admin('DELETE', '/admin/providers/late')).status).toBe(200)
    expect(await inFlight).toBe(200)
    const m = await scrape(gw.url)
    expect(sampleValue(m, 'sluice_upstream_key_up', { provider: 'late', key: 'k' })).toBeUndefined()
    expect(sampleValue(m, 'sluice_upstream_key_up', { provider: 'up', key: 'k1' })).toBe(1)
  })
})
