import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startMockAnthropic, type MockAnthropic } from '../../../test/fixtures/mock-anthropic.ts'
import type { ProviderConfig } from '../../config/schema.ts'
import type { UpstreamCall } from '../types.ts'
import { anthropicAdapter } from './index.ts'

const SECRET = 'sk-ant-unit-secret'

function provider(baseUrl: string, extra: Partial<ProviderConfig> = {}): ProviderConfig {
  return { id: 'claude', type: 'anthropic', baseUrl, keys: [{ id: 'k', secret: SECRET }], ...extra }
}

function call(body: Record<string, unknown>, extra: Partial<UpstreamCall> = {}): UpstreamCall {
  return {
    endpoint: 'chat.completions',
    body: { model: 'claude-x', messages: [{ role: 'user', content: 'hi' }], ...body },
    stream: body.stream === true,
    key: { id: 'k', secret: SECRET },
    signal: new AbortController().signal,
    ...extra,
  }
}

describe('anthropicAdapter', () => {
  let mock: MockAnthropic
  beforeAll(async () => {
    mock = await startMockAnthropic({ apiKeys: [SECRET] })
  })
  afterAll(() => mock.stop())

  test('posts to {baseUrl}/v1/messages (a baseUrl ending in /v1 too) with the configured headers', async () => {
    const adapter = anthropicAdapter(provider(`${mock.url}/v1/`, { headers: { 'anthropic-beta': 'feature-x' }, options: { anthropic_version: '2024-01-01' } }))
    expect(adapter.type).toBe('anthropic')
    expect([...adapter.endpoints]).toEqual(['chat.completions'])
    const res = await adapter.send(call({}))
    expect(res.status).toBe(200)
    const headers = mock.stats.lastHeaders!
    expect(headers.get('anthropic-version')).toBe('2024-01-01')
    expect(headers.get('anthropic-beta')).toBe('feature-x')
    expect(headers.get('x-api-key')).toBe(SECRET)
    // Rate-limit state is passed on for balancing to read.
    expect(res.headers.get('anthropic-ratelimit-requests-remaining')).toBe('49')
    expect(res.headers.get('request-id')).toStartWith('req_')
  })

  test('default_max_tokens is used when the client gives none, and a bad one stops the boot', async () => {
    await anthropicAdapter(provider(mock.url, { options: { default_max_tokens: 123 } })).send(call({}))
    expect((mock.stats.lastBody as { max_tokens: number }).max_tokens).toBe(123)
    expect(() => anthropicAdapter(provider(mock.url, { options: { default_max_tokens: 'lots' } }))).toThrow('default_max_tokens')
  })

  test('streams are sent with stream: true even when the body did not say so', async () => {
    const res = await anthropicAdapter(provider(mock.url)).send(call({}, { stream: true }))
    expect(res.headers.get('content-type')).toStartWith('text/event-stream')
    expect((mock.stats.lastBody as { stream?: boolean }).stream).toBe(true)
    expect(await res.text()).toEndWith('data: [DONE]\n\n')
  })

  test('an abort while the answer is read rejects, so the pipeline can tell a timeout from a bad body', async () => {
    const server = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      fetch: () =>
        new Response(
          new ReadableStream({
            async start(c) {
              c.enqueue(new TextEncoder().encode('{"id":'))
              await Bun.sleep(2000)
              c.close()
            },
          }),
          { headers: { 'content-type': 'application/json' } },
        ),
    })
    try {
      const controller = new AbortController()
      const pending = anthropicAdapter(provider(`http://127.0.0.1:${server.port}`)).send(call({}, { signal: controller.signal }))
      setTimeout(() => controller.abort(new DOMException('upstream timed out', 'TimeoutError')), 50)
      await expect(pending).rejects.toThrow()
    } finally {
      await server.stop(true)
    }
  })
})
