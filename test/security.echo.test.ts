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
// Sent trimmed: fetch drops the white space around a header value (a secret file's newline).
const PADDED_KEY = 'sk-upstream-PADDED-0123456789abcdef'
const PADDED_HEADER = 'org-token-PADDED-987654321'
// In a base URL's user info, sent as `Authorization: Basic base64(user:password)` when no other Authorization is.
const BASIC_USER = 'proxy-user'
const BASIC_PASSWORD = 'basic-PW-0123456789'
const USER_TOKEN = 'user-TOKEN-0123456789abcdef'

let echo: ReturnType<typeof Bun.serve>
let gw: TestGateway

beforeAll(async () => {
  echo = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    fetch(request) {
      const seen = `${request.url} ${JSON.stringify(Object.fromEntries(request.headers))}`
      // A header named as the gateway marks its adapters' own refusals, which no upstream answer is.
      const marked = new URL(request.url).searchParams.has('marked') ? { 'x-sluice-refusal': '1' } : undefined
      return Response.json({ error: { message: `Bad request, I saw: ${seen}`, param: `x-org-token=${request.headers.get('x-org-token')}` } }, { status: 400, headers: marked })
    },
  })
  const base = `http://user:${PASSWORD}@127.0.0.1:${echo.port}/v1?key=${QUERY_SECRET}`
  gw = await startGateway({
    providers: [
      { id: 'echo', type: 'openai-compatible', baseUrl: base, keys: [{ id: 'k1', secret: KEY }], headers: { 'x-org-token': HEADER_SECRET } },
      // Nothing listens on port 9 here: the call fails, with the URL in its message.
      { id: 'gone', type: 'openai-compatible', baseUrl: `http://127.0.0.1:9/v1?key=${QUERY_SECRET}`, keys: [{ id: 'k1', secret: KEY }] },
      { id: 'padded', type: 'openai-compatible', baseUrl: `http://127.0.0.1:${echo.port}/v1`, keys: [{ id: 'k1', secret: `${PADDED_KEY}\n` }], headers: { 'x-org-token': ` ${PADDED_HEADER}\t` } },
      { id: 'basic', type: 'openai-compatible', baseUrl: `http://${BASIC_USER}:${BASIC_PASSWORD}@127.0.0.1:${echo.port}/v1`, keys: [{ id: 'none', secret: '' }] },
      { id: 'marked', type: 'openai-compatible', baseUrl: `http://127.0.0.1:${echo.port}/v1?marked`, keys: [{ id: 'k1', secret: KEY }], headers: { 'x-org-token': HEADER_SECRET } },
      { id: 'token-user', type: 'openai-compatible', baseUrl: `http://${USER_TOKEN}@127.0.0.1:${echo.port}/v1`, keys: [{ id: 'none', secret: '' }] },
    ],
    models: [
      { name: 'echo-400', targets: [{ provider: 'echo', model: 'm' }] },
      { name: 'gone', targets: [{ provider: 'gone', model: 'm' }] },
      { name: 'padded', targets: [{ provider: 'padded', model: 'm' }] },
      { name: 'basic', targets: [{ provider: 'basic', model: 'm' }] },
      { name: 'marked', targets: [{ provider: 'marked', model: 'm' }] },
      { name: 'token-user', targets: [{ provider: 'token-user', model: 'm' }] },
    ],
    plugins: [],
  })
})
afterAll(async () => {
  await gw?.close()
  echo?.stop(true)
})

const base64 = (text: string) => Buffer.from(text).toString('base64')
const leaks = (text: string) =>
  [KEY, HEADER_SECRET, QUERY_SECRET, PASSWORD, PADDED_KEY, PADDED_HEADER, BASIC_PASSWORD, USER_TOKEN, base64(`${BASIC_USER}:${BASIC_PASSWORD}`), base64(`${USER_TOKEN}:`)].filter((s) =>
    text.includes(s),
  )

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

  test('a key secret and a header value with white space around them, sent trimmed and echoed so: neither reaches the client', async () => {
    const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'padded', messages: [{ role: 'user', content: 'hi' }] })
    expect(res.status).toBe(400)
    const text = await res.text()
    expect(text).toContain('Bad request, I saw')
    expect(leaks(text)).toEqual([])
  })

  test("a base URL's user info, sent as Basic credentials and echoed: neither the password, nor a user name standing for a token, nor their base64 reaches the client", async () => {
    for (const model of ['basic', 'token-user']) {
      const res = await postJson(`${gw.url}/v1/chat/completions`, { model, messages: [{ role: 'user', content: 'hi' }] })
      expect({ model, status: res.status }).toEqual({ model, status: 400 })
      const text = await res.text()
      expect(text).toContain('Basic ')
      expect({ model, leaks: leaks(text) }).toEqual({ model, leaks: [] })
    }
  })

  test("an upstream answer carrying the header of an adapter's own refusal is the upstream's still: its echo is scrubbed and the provider named", async () => {
    const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'marked', messages: [{ role: 'user', content: 'hi' }] })
    expect(res.status).toBe(400)
    const text = await res.text()
    expect(text).toContain('Upstream provider \\"marked\\"')
    expect(leaks(text)).toEqual([])
  })

  test('a call that cannot be made: its message names no query value of the base URL', async () => {
    const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'gone', messages: [{ role: 'user', content: 'hi' }] })
    expect(res.status).toBe(502)
    expect(leaks(await res.text())).toEqual([])
  })
})
