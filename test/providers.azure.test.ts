/**
 * Azure OpenAI's classic API through an `openai-compatible` provider: the deployment and the
 * `api-version` live in the base URL, and the key travels in `api-key` (`options.auth_header`).
 * The upstream is a small Bun server that answers only what Azure would accept and records what
 * it was sent. Real HTTP on 127.0.0.1.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startGateway, type TestGateway } from './support/gateway.ts'
import { postJson } from './support/http.ts'

const SECRET = 'azure-key-0123456789abcdef0123456789'
const QUIET = { env: { SLUICE_ADMIN_KEY: 'sluice-admin-test-only-0123456789' } }
const seen: Array<{ url: string; apiKey: string | null; authorization: string | null }> = []
let azure: ReturnType<typeof Bun.serve>

beforeAll(() => {
  azure = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    async fetch(request) {
      const url = new URL(request.url)
      seen.push({ url: url.pathname + url.search, apiKey: request.headers.get('api-key'), authorization: request.headers.get('authorization') })
      await request.arrayBuffer()
      if (request.headers.get('api-key') !== SECRET) {
        return Response.json({ error: { code: '401', message: 'Access denied due to invalid subscription key or wrong API endpoint.' } }, { status: 401 })
      }
      if (url.searchParams.get('api-version') !== '2024-10-21') return Response.json({ error: { code: '404', message: 'Resource not found' } }, { status: 404 })
      if (url.pathname.endsWith('/embeddings')) {
        return Response.json({ object: 'list', data: [{ object: 'embedding', index: 0, embedding: [0.1, 0.2] }], model: 'text-embedding-3-small', usage: { prompt_tokens: 2, total_tokens: 2 } })
      }
      return Response.json({
        id: 'chatcmpl-az',
        object: 'chat.completion',
        created: 1,
        model: 'gpt-4o',
        choices: [{ index: 0, message: { role: 'assistant', content: 'Hello from Azure.' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 5, completion_tokens: 4, total_tokens: 9 },
      })
    },
  })
})
afterAll(() => azure?.stop(true))

const config = (options?: Record<string, unknown>) => ({
  providers: [
    {
      id: 'azure',
      type: 'openai-compatible' as const,
      baseUrl: `http://127.0.0.1:${azure.port}/openai/deployments/gpt-4o/?api-version=2024-10-21`,
      keys: [{ id: 'az-1', secret: SECRET }],
      ...(options ? { options } : {}),
    },
  ],
  models: [
    { name: 'gpt-4o', targets: [{ provider: 'azure', model: 'gpt-4o' }] },
    { name: 'embed', targets: [{ provider: 'azure', model: 'text-embedding-3-small' }] },
  ],
  // No client keys: what is tested is what reaches the upstream.
  plugins: [],
})

describe('Azure OpenAI, classic API', () => {
  let gw: TestGateway
  afterAll(async () => await gw?.close())

  test('the key goes in api-key, the path before the base URL\'s query, for every endpoint', async () => {
    gw = await startGateway(config({ auth_header: 'api-key' }), QUIET)
    seen.length = 0
    const chat = await postJson(`${gw.url}/v1/chat/completions`, { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] })
    expect(chat.status).toBe(200)
    expect(((await chat.json()) as { choices: Array<{ message: { content: string } }> }).choices[0]?.message.content).toBe('Hello from Azure.')
    const embed = await postJson(`${gw.url}/v1/embeddings`, { model: 'embed', input: 'hi' })
    expect(embed.status).toBe(200)
    await embed.arrayBuffer()
    expect(seen).toEqual([
      { url: '/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21', apiKey: SECRET, authorization: null },
      { url: '/openai/deployments/gpt-4o/embeddings?api-version=2024-10-21', apiKey: SECRET, authorization: null },
    ])
  })

  test('without auth_header the key goes as a bearer token, which Azure\'s classic API refuses', async () => {
    const plain = await startGateway(config(), QUIET)
    try {
      seen.length = 0
      const res = await postJson(`${plain.url}/v1/chat/completions`, { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] })
      expect(res.status).toBe(502)
      await res.arrayBuffer()
      expect(seen[0]).toEqual({ url: '/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21', apiKey: null, authorization: `Bearer ${SECRET}` })
    } finally {
      await plain.close()
    }
  })

  test('an auth_header that is not a header name, or one with its own meaning, stops the boot naming the option', async () => {
    for (const bad of ['api key', 'Content-Type', 42]) {
      const failed = await startGateway(config({ auth_header: bad }), QUIET).then(
        async (booted) => {
          await booted.close()
          return null
        },
        (error: unknown) => error,
      )
      expect(String(failed)).toContain('provider "azure": options.auth_header must be a header name')
    }
  })
})
