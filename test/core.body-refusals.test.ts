/**
 * A /v1 request whose body is refused (not JSON, not valid for the endpoint, too large) is still
 * a request to the plugins: the key is checked first (a client without a valid key is told that,
 * not what is wrong with its body), and it ends through the pipeline, so completion hooks (the
 * request log, the metrics) see it, tied to its key. A real gateway with auth and a plugin that
 * records each completion; the mock upstream is never called.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { definePlugin, type Outcome } from '../src/plugin.ts'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { startAuthGateway, userWithKey, type AuthGateway } from './support/auth.ts'
import { startGateway } from './support/gateway.ts'
import { rawExchange } from './support/http.ts'

interface Seen {
  endpoint: string
  model: string | undefined
  keyId: string | undefined
  status: number
  code: string | null
}

describe('refused bodies go through the pipeline', () => {
  let upstream: MockUpstream
  let gw: AuthGateway
  let key: string
  let keyId: string
  const seen: Seen[] = []
  const recorder = definePlugin({
    name: 'recorder',
    setup: () => ({
      onComplete(req, outcome: Outcome) {
        seen.push({ endpoint: req.endpoint, model: req.model, keyId: (req.identity ?? req.refusedKey)?.keyId, status: outcome.status, code: outcome.errorCode })
      },
    }),
  })

  beforeAll(async () => {
    upstream = await startMockUpstream()
    gw = await startAuthGateway(upstream.url, { config: { plugins: [{ use: 'auth', options: { demo_key: false } }, recorder], limits: { max_body_bytes: 4096 } } })
    const made = await userWithKey(gw)
    key = made.key.key
    keyId = made.key.id
  })
  afterAll(async () => {
    await gw?.close()
    await upstream?.stop()
  })

  const post = (path: string, body: string, auth: string | null) =>
    fetch(gw.url + path, { method: 'POST', headers: { 'content-type': 'application/json', ...(auth === null ? {} : { authorization: `Bearer ${auth}` }) }, body })

  /** The `n`th completion the recorder saw since it was emptied (1-based), once it has seen it. */
  async function nth(n: number): Promise<Seen | undefined> {
    const until = Date.now() + 2000
    while (seen.length < n && Date.now() < until) await Bun.sleep(5)
    return seen[n - 1]
  }

  test('an invalid body with a valid key: 400 naming the field, recorded with the key and the model', async () => {
    seen.length = 0
    const res = await post('/v1/chat/completions', JSON.stringify({ model: 'mock-gpt', messages: 'hi' }), key)
    expect(res.status).toBe(400)
    const body = (await res.json()) as { error: { code: string; param: string | null } }
    expect(body.error.code).toBe('invalid_request')
    expect(body.error.param).toBe('messages')
    expect(res.headers.get('x-request-id')).toMatch(/^req_/)
    expect(await nth(1)).toEqual({ endpoint: 'chat.completions', model: 'mock-gpt', keyId, status: 400, code: 'invalid_request' })
    expect(upstream.stats.requests).toBe(0)
  })

  test('a body that is not JSON, and one too large: recorded too', async () => {
    seen.length = 0
    const bad = await post('/v1/embeddings', '{', key)
    expect(bad.status).toBe(400)
    await bad.arrayBuffer()
    expect(await nth(1)).toMatchObject({ endpoint: 'embeddings', keyId, status: 400, code: 'invalid_request' })
    const big = await post('/v1/chat/completions', JSON.stringify({ model: 'mock-gpt', messages: [{ role: 'user', content: 'x'.repeat(8000) }] }), key)
    expect(big.status).toBe(413)
    await big.arrayBuffer()
    expect(await nth(2)).toMatchObject({ endpoint: 'chat.completions', keyId, status: 413, code: 'request_too_large' })
  })

  test('without a key, or with a wrong one, the answer is the key error (401), recorded as such', async () => {
    seen.length = 0
    const none = await post('/v1/chat/completions', '{', null)
    expect(none.status).toBe(401)
    expect(((await none.json()) as { error: { code: string } }).error.code).toBe('missing_api_key')
    expect(await nth(1)).toMatchObject({ status: 401, code: 'missing_api_key' })
    const wrong = await post('/v1/tokens/count', JSON.stringify({ model: 'mock-gpt' }), 'sk-dev-' + 'x'.repeat(40))
    expect(wrong.status).toBe(401)
    await wrong.arrayBuffer()
    expect(await nth(2)).toMatchObject({ endpoint: 'tokens.count', status: 401 })
  })
})

describe('an authenticate hook that throws on a refused body', () => {
  test('the answer is 500 with the request id the hooks saw, and the completion hooks hear of it', async () => {
    const upstream = await startMockUpstream()
    const seen: Array<{ id: string; status: number; code: string | null }> = []
    const broken = definePlugin({
      name: 'broken-auth',
      setup: () => ({
        authenticate: () => {
          throw new Error('key store unreachable')
        },
        onComplete: (req, outcome: Outcome) => void seen.push({ id: req.id, status: outcome.status, code: outcome.errorCode }),
      }),
    })
    const gw = await startAuthGateway(upstream.url, { config: { plugins: [broken] } })
    try {
      const res = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{' })
      expect(res.status).toBe(500)
      const id = res.headers.get('x-request-id')
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('internal_error')
      const until = Date.now() + 2000
      while (seen.length === 0 && Date.now() < until) await Bun.sleep(5)
      expect(seen).toEqual([{ id: id!, status: 500, code: 'internal_error' }])
    } finally {
      await gw.close()
      await upstream.stop()
    }
  })
})

describe('a body that does not arrive', () => {
  test('a client API body sent partly (a Content-Length not reached, or chunks that stop) is refused after limits.body_timeout_ms and its connection closed: 408 for a key, 401 for none', async () => {
    const upstream = await startMockUpstream()
    const gw = await startAuthGateway(upstream.url, { config: { limits: { body_timeout_ms: 600 } } })
    const { key } = (await userWithKey(gw)).key
    const port = Number(new URL(gw.url).port)
    // Headers, a part of the body, then nothing. Answered once the gateway closes the connection:
    // before, it stayed open for good.
    const partial = (head: string, part: string) => rawExchange(port, head + part)
    try {
      for (const [auth, status] of [
        [`authorization: Bearer ${key}\r\n`, 'HTTP/1.1 408 Request Timeout'],
        ['', 'HTTP/1.1 401 Unauthorized'],
      ] as const) {
        for (const [framing, part] of [
          ['content-length: 1000', '{"model":'],
          ['transfer-encoding: chunked', '9\r\n{"model":\r\n'],
        ] as const) {
          const text = await partial(`POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n${auth}${framing}\r\n\r\n`, part)
          expect(text.split('\r\n')[0]).toBe(status)
          expect(text.toLowerCase()).toContain('connection: close')
          if (auth) expect(text).toContain('did not arrive within 0.6 s')
        }
      }
    } finally {
      await gw.close()
      await upstream.stop()
    }
  }, 20_000)
})

describe('a sign-in body that does not arrive', () => {
  test('the console sign-in, which takes no key before its body, refuses a body sent partly after limits.body_timeout_ms and closes its connection: 408', async () => {
    const gw = await startGateway({ limits: { body_timeout_ms: 600 }, plugins: [] }, { env: { SLUICE_ADMIN_KEY: 'sluice-admin-slow-sign-in-0123456789' } })
    const port = Number(new URL(gw.url).port)
    try {
      for (const [framing, part] of [
        ['content-length: 1000', '{"admin_key":'],
        ['transfer-encoding: chunked', 'd\r\n{"admin_key":\r\n'],
      ] as const) {
        // Answered once the gateway closes the connection: before, a stranger held it open for good.
        const text = await rawExchange(port, `POST /console/login HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n${framing}\r\n\r\n${part}`)
        expect(text.split('\r\n')[0]).toBe('HTTP/1.1 408 Request Timeout')
        expect(text.toLowerCase()).toContain('connection: close')
        expect(text).toContain('did not arrive within 0.6 s')
      }
    } finally {
      await gw.close()
    }
  }, 20_000)
})

describe('a body far over the limit', () => {
  // limits.max_body_bytes 4096: the client API's readers refuse past it, and nothing reads more than
  // twice it plus 1 MiB on any route (1,056,768 bytes).
  const FAR = 2 * 4096 + 1024 * 1024 + 1

  test('a Content-Length past what any route reads is refused in the envelope, with a request id, and the connection closed', async () => {
    const upstream = await startMockUpstream()
    const gw = await startAuthGateway(upstream.url, { config: { limits: { max_body_bytes: 4096 } } })
    const { key } = (await userWithKey(gw)).key
    const port = Number(new URL(gw.url).port)
    try {
      for (const [path, auth] of [
        ['/v1/chat/completions', `authorization: Bearer ${key}\r\n`],
        ['/console/login', ''],
        ['/admin/users', 'authorization: Bearer sluice-admin-test-only-0123456789\r\n'],
      ] as const) {
        const text = await rawExchange(port, `POST ${path} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n${auth}content-length: ${FAR}\r\n\r\n{"model":`)
        const [head = '', body = ''] = text.split('\r\n\r\n')
        expect(head.split('\r\n')[0]).toStartWith('HTTP/1.1 413 ')
        expect(head.toLowerCase()).toContain('connection: close')
        expect(head.toLowerCase()).toMatch(/x-request-id: req_/)
        expect(JSON.parse(body).error).toMatchObject({ code: 'request_too_large' })
      }
    } finally {
      await gw.close()
      await upstream.stop()
    }
  }, 20_000)

  test('a chunked body that grows past it is refused in the envelope too, on a route that reads it whole (the console sign-in)', async () => {
    const upstream = await startMockUpstream()
    const gw = await startAuthGateway(upstream.url, { config: { limits: { max_body_bytes: 4096 } } })
    try {
      const piece = new TextEncoder().encode('x'.repeat(64 * 1024))
      let sent = 0
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          // Past the bound, then no end: the answer must come from the bound, not from the body's end.
          if (sent > FAR) return new Promise<void>(() => {})
          sent += piece.byteLength
          controller.enqueue(piece)
        },
      })
      const res = await fetch(`${gw.url}/console/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
      expect(res.status).toBe(413)
      expect(res.headers.get('x-request-id')).toStartWith('req_')
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('request_too_large')
    } finally {
      await gw.close()
      await upstream.stop()
    }
  }, 20_000)
})
