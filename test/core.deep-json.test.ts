import { describe, expect, test } from 'bun:test'
import { startAuthGateway, userWithKey } from './support/auth.ts'
import { startMockUpstream } from './fixtures/mock-upstream.ts'

/** A JSON value nested `depth` levels: JSON.parse takes it, JSON.stringify and structured clones overflow the stack. */
const deep = (depth: number): string => '{"a":'.repeat(depth) + '1' + '}'.repeat(depth)

describe('a JSON value nested too deeply', () => {
  test('is the client\'s 400 invalid_request, on a model call (never sent, nothing counted against the provider key, whose next request goes through) and on a token count, where they were a 502 that opened the key\'s circuit and a 500', async () => {
    const upstream = await startMockUpstream()
    const gw = await startAuthGateway(upstream.url, {
      config: { plugins: [{ use: 'auth', options: { demo_key: false } }, 'tokens', 'balance'] },
    })
    const { key } = (await userWithKey(gw)).key
    const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' }
    const chat = (extra: string) =>
      fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers, body: `{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}]${extra}}` })
    try {
      for (let i = 0; i < 6; i++) {
        const refused = await chat(`,"metadata":${deep(100_000)}`)
        expect(refused.status).toBe(400)
        const { error } = (await refused.json()) as { error: { code: string; message: string } }
        expect(error.code).toBe('invalid_request')
        expect(error.message).toContain('levels deep')
      }
      // The bound: 10,000 levels pass (the body's object and metadata's are two), 10,001 do not.
      const array = (depth: number) => '['.repeat(depth) + ']'.repeat(depth)
      expect((await chat(`,"metadata":{"a":${array(9_998)}}`)).status).toBe(200)
      const over = await chat(`,"metadata":{"a":${array(9_999)}}`)
      expect(over.status).toBe(400)
      expect(((await over.json()) as { error: { message: string } }).error.message).toContain('more than 10000 levels deep')
      expect(upstream.stats.requests).toBe(1)
      const health = (await gw.adminOk<{ data: { failures: number; state: string }[] }>('GET', '/admin/providers/health')).data
      expect(health.map((h) => h.state)).not.toContain('open')
      expect((await chat('')).status).toBe(200)
      expect(upstream.stats.requests).toBe(2)

      const counted = await fetch(`${gw.url}/v1/tokens/count`, {
        method: 'POST',
        headers,
        body: `{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":${deep(100_000)}}}]}`,
      })
      expect(counted.status).toBe(400)
      expect(((await counted.json()) as { error: { code: string } }).error.code).toBe('invalid_request')
      // Just under the bound, the count's worker takes it.
      const near = await fetch(`${gw.url}/v1/tokens/count`, {
        method: 'POST',
        headers,
        body: `{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":${array(9_990)}}}}}]}`,
      })
      expect(near.status).toBe(200)
    } finally {
      await gw.close()
      await upstream.stop()
    }
  }, 30_000)
})
