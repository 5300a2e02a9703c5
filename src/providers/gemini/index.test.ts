import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startMockGemini, type MockGemini } from '../../../test/fixtures/mock-gemini.ts'
import type { ProviderConfig } from '../../config/schema.ts'
import type { UpstreamCall } from '../types.ts'
import { geminiAdapter } from './index.ts'

const SECRET = 'gemini-unit-secret'

function provider(baseUrl: string, extra: Partial<ProviderConfig> = {}): ProviderConfig {
  return { id: 'google', type: 'gemini', baseUrl, keys: [{ id: 'k', secret: SECRET }], ...extra }
}

function call(endpoint: UpstreamCall['endpoint'], body: Record<string, unknown>): UpstreamCall {
  return { endpoint, body: { model: 'gemini-x', ...body }, stream: false, key: { id: 'k', secret: SECRET }, signal: new AbortController().signal }
}

const chat = { messages: [{ role: 'user', content: 'hi' }] }

describe('geminiAdapter', () => {
  let mock: MockGemini
  beforeAll(async () => {
    mock = await startMockGemini({ apiKeys: [SECRET] })
  })
  afterAll(() => mock.stop())

  test('calls {baseUrl}/v1beta/models/{model}:generateContent with the key in x-goog-api-key', async () => {
    const adapter = geminiAdapter(provider(mock.url, { headers: { 'x-goog-user-project': 'p1' } }))
    expect([...adapter.endpoints]).toEqual(['chat.completions', 'embeddings'])
    const res = await adapter.send(call('chat.completions', chat))
    expect(res.status).toBe(200)
    expect(mock.stats.lastPath).toBe('/v1beta/models/gemini-x:generateContent')
    expect(mock.stats.lastHeaders?.get('x-goog-api-key')).toBe(SECRET)
    expect(mock.stats.lastHeaders?.get('x-goog-user-project')).toBe('p1')
  })

  test('the API version comes from options, or from a baseUrl that already ends in one', async () => {
    await geminiAdapter(provider(`${mock.url}/v1/`)).send(call('chat.completions', chat))
    expect(mock.stats.lastPath).toBe('/v1/models/gemini-x:generateContent')
    await geminiAdapter(provider(mock.url, { options: { api_version: 'v1' } })).send(call('chat.completions', chat))
    expect(mock.stats.lastPath).toBe('/v1/models/gemini-x:generateContent')
    expect(() => geminiAdapter(provider(mock.url, { options: { api_version: '../admin' } }))).toThrow('api_version')
    expect(() => geminiAdapter(provider(mock.url, { options: { safety_settings: 'off' } }))).toThrow('safety_settings')
  })

  test('safety_settings from the options are sent on every chat call', async () => {
    const settings = [{ category: 'HARM_CATEGORY_HARASSMENT', threshold: 'BLOCK_ONLY_HIGH' }]
    await geminiAdapter(provider(mock.url, { options: { safety_settings: settings } })).send(call('chat.completions', chat))
    expect((mock.stats.lastBody as { safetySettings: unknown }).safetySettings).toEqual(settings)
  })

  test('legacy completions are not served: a 400 in OpenAI shape, no upstream call', async () => {
    const before = mock.stats.requests
    const res = await geminiAdapter(provider(mock.url)).send(call('completions', { prompt: 'x' }))
    expect(res.status).toBe(400)
    expect(((await res.json()) as { error: { message: string } }).error.message).toContain('not completions')
    expect(mock.stats.requests).toBe(before)
  })
})
