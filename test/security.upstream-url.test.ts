/**
 * Where the gateway calls is the operator's to say, never a client's: a key holder names a model,
 * and the model resolves to a target of the config file or the admin API. Nothing a client sends,
 * headers (Host, X-Forwarded-*, the SDKs' own), fields of the body that other gateways read as a
 * URL (`base_url`, `api_base`, `extra_query`…) or a model name shaped like a path, changes the URL
 * called or reaches the upstream as a header. Real gateway, an upstream of the test's own that
 * records every request.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { startGateway, type TestGateway } from './support/gateway.ts'
import { postJson } from './support/http.ts'

const SECRET = 'sk-upstream-STEER-0123456789abcdef'
const seen: { url: string; headers: Record<string, string>; body: Record<string, unknown> }[] = []
let upstream: ReturnType<typeof Bun.serve>
let gw: TestGateway

beforeAll(async () => {
  upstream = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    async fetch(request) {
      seen.push({ url: request.url, headers: Object.fromEntries(request.headers), body: (await request.json()) as Record<string, unknown> })
      return Response.json({ id: 'c', object: 'chat.completion', created: 1, model: 'm', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } })
    },
  })
  gw = await startGateway({
    providers: [{ id: 'up', type: 'openai-compatible', baseUrl: `http://127.0.0.1:${upstream.port}/v1?api-version=1`, keys: [{ id: 'k1', secret: SECRET }] }],
    models: [{ name: 'chat', targets: [{ provider: 'up', model: 'upstream-model' }] }],
    plugins: [],
  })
})
afterAll(async () => {
  await gw?.close()
  upstream?.stop(true)
})

test('no header, body field or model name of a client steers the URL the gateway calls, and no client header reaches the upstream', async () => {
  const steering = {
    host: 'internal.example:8443',
    'x-forwarded-host': 'internal.example',
    'x-forwarded-proto': 'https',
    forwarded: 'host=internal.example;proto=https',
    'x-upstream-url': 'http://169.254.169.254/latest/meta-data/',
    'x-original-url': '/admin',
    'x-stainless-lang': 'js',
    cookie: 'session=client-cookie',
    'openai-organization': 'org-client',
  }
  const body = {
    model: 'chat',
    messages: [{ role: 'user', content: 'hi' }],
    base_url: 'http://169.254.169.254/',
    api_base: 'http://169.254.169.254/',
    extra_query: { redirect: 'http://169.254.169.254/' },
    extra_headers: { authorization: 'Bearer client-chosen' },
  }
  const res = await postJson(`${gw.url}/v1/chat/completions`, body, steering)
  expect(res.status).toBe(200)
  await res.text()
  // A model name shaped like a path or a URL is a name that no target has: refused, nothing called.
  for (const model of ['../admin', 'http://169.254.169.254/', 'chat/../../x', 'chat?x=1']) {
    const refused = await postJson(`${gw.url}/v1/chat/completions`, { model, messages: [{ role: 'user', content: 'hi' }] })
    expect({ model, status: refused.status }).toEqual({ model, status: 404 })
    await refused.text()
  }
  expect(seen).toHaveLength(1)
  const call = seen[0]!
  expect(call.url).toBe(`http://127.0.0.1:${upstream.port}/v1/chat/completions?api-version=1`)
  expect(call.headers.host).toBe(`127.0.0.1:${upstream.port}`)
  expect(call.headers.authorization).toBe(`Bearer ${SECRET}`)
  // Only what fetch itself sends, and the content type: none of the client's headers.
  expect(Object.keys(call.headers).sort()).toEqual(['accept', 'accept-encoding', 'authorization', 'connection', 'content-length', 'content-type', 'host', 'user-agent'])
  // The model is the target's; the other fields go on as data, as every unknown field does.
  expect(call.body.model).toBe('upstream-model')
})
