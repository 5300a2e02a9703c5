/**
 * An upstream's error may echo what the gateway sent it: the provider key, the values of the
 * provider's extra headers (often credentials), the password and query values of its base URL.
 * None of them reaches the client, in an upstream's 4xx, or in the message of a call that
 * could not be made. Real gateway, an upstream of the test's own that echoes everything.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startGateway, type TestGateway } from './support/gateway.ts'
import { postJson } from './support/http.ts'

const KEY = 'sk-upstream-ECHOED-0123456789abcdef'
const HEADER_SECRET = 'org-token-HEADERSECRET-987654321'
const QUERY_SECRET = 'QUERYKEYSECRET777'
const PASSWORD = 'p4ss-w0rd-URL'

let echo: ReturnType<typeof Bun.serve>
let gw: TestGateway

beforeAll(async () => {
  echo = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    fetch(request) {
      const seen = `${request.url} ${JSON.stringify(Object.fromEntries(request.headers))}`
      return Response.json({ error: { message: `Bad request, I saw: ${seen}`, param: `x-org-token=${request.headers.get('x-org-token')}` } }, { status: 400 })
    },
  })
  const base = `http://user:${PASSWORD}@127.0.0.1:${echo.port}/v1?key=${QUERY_SECRET}`
  gw = await startGateway({
    providers: [
      { id: 'echo', type: 'openai-compatible', baseUrl: base, keys: [{ id: 'k1', secret: KEY }], headers: { 'x-org-token': HEADER_SECRET } },
      // Nothing listens on port 9 here: the call fails, with the URL in its message.
      { id: 'gone', type: 'openai-compatible', baseUrl: `http://127.0.0.1:9/v1?key=${QUERY_SECRET}`, keys: [{ id: 'k1', secret: KEY }] },
    ],
    models: [
      { name: 'echo-400', targets: [{ provider: 'echo', model: 'm' }] },
      { name: 'gone', targets: [{ provider: 'gone', model: 'm' }] },
    ],
    plugins: [],
  })
})
afterAll(async () => {
  await gw?.close()
  echo?.stop(true)
})

const leaks = (text: string) => [KEY, HEADER_SECRET, QUERY_SECRET, PASSWORD].filter((s) => text.includes(s))

describe('secrets an upstream echoes', () => {
  test('an upstream 4xx that echoes the headers and the URL: the message and param carry none of the secrets', async () => {
    const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'echo-400', messages: [{ role: 'user', content: 'hi' }] })
    expect(res.status).toBe(400)
    const text = await res.text()
    // The upstream's words still come through, without the secrets.
    expect(text).toContain('Bad request, I saw')
    expect(text).toContain('***')
    expect(leaks(text)).toEqual([])
  })

  test('a call that cannot be made: its message names no query value of the base URL', async () => {
    const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'gone', messages: [{ role: 'user', content: 'hi' }] })
    expect(res.status).toBe(502)
    expect(leaks(await res.text())).toEqual([])
  })
})
