/**
 * OPTIONS and cross-origin access: every route answers OPTIONS with its methods; with
 * `server.cors` set, web pages of the listed origins may call the client API (`/v1/*`) from a
 * browser (preflight, then answers they may read), and never the admin API. Real HTTP on
 * 127.0.0.1 against the mock upstream.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { bootProblems, startGateway, upstreamConfig, type TestGateway } from './support/gateway.ts'
import { REQUEST_ID, expectError } from './support/http.ts'

const APP = 'https://app.example.com'
const ADMIN_KEY = 'sluice-admin-cors-test-0123456789'
const chat = { model: 'mock-gpt', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }

let upstream: MockUpstream
beforeAll(async () => {
  upstream = await startMockUpstream()
})
afterAll(async () => {
  await upstream?.stop()
})

const preflight = (url: string, origin: string, method = 'POST', headers = 'authorization, content-type, x-stainless-os') =>
  fetch(url, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': method, 'access-control-request-headers': headers } })

const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })

describe('without server.cors', () => {
  let gw: TestGateway
  beforeAll(async () => {
    gw = await startGateway(upstreamConfig(upstream.url), { env: { SLUICE_ADMIN_KEY: ADMIN_KEY } })
  })
  afterAll(async () => {
    await gw?.close()
  })

  test('OPTIONS on a route answers its methods in Allow (HEAD beside GET); on no route, 404', async () => {
    for (const [path, allow] of [
      ['/v1/chat/completions', 'POST, OPTIONS'],
      ['/v1/models', 'GET, HEAD, OPTIONS'],
      ['/v1/models/mock-gpt', 'GET, HEAD, OPTIONS'],
      ['/health', 'GET, HEAD, OPTIONS'],
    ] as const) {
      const res = await fetch(gw.url + path, { method: 'OPTIONS' })
      expect({ path, status: res.status, allow: res.headers.get('allow') }).toEqual({ path, status: 204, allow })
      // An answer like any other: it carries its request id.
      expect(res.headers.get('x-request-id')).toMatch(REQUEST_ID)
    }
    await expectError(await fetch(`${gw.url}/v1/nothing`, { method: 'OPTIONS' }), 'not_found', 404)
  })

  test('a 405 lists HEAD and OPTIONS in Allow too', async () => {
    const res = await fetch(`${gw.url}/v1/models`, { method: 'DELETE' })
    expect(res.headers.get('allow')).toBe('GET, HEAD, OPTIONS')
    await expectError(res, 'method_not_allowed', 405)
  })

  test('no origin is allowed: a preflight and an answer carry no CORS header', async () => {
    const pre = await preflight(`${gw.url}/v1/chat/completions`, APP)
    expect(pre.status).toBe(204)
    expect(pre.headers.get('access-control-allow-origin')).toBeNull()
    expect(pre.headers.get('x-request-id')).toMatch(REQUEST_ID)
    const res = await post(`${gw.url}/v1/chat/completions`, chat, { origin: APP })
    expect(res.status).toBe(200)
    expect(res.headers.get('access-control-allow-origin')).toBeNull()
  })
})

describe('server.cors with listed origins', () => {
  let gw: TestGateway
  beforeAll(async () => {
    gw = await startGateway({ ...upstreamConfig(upstream.url), server: { cors: { origins: [APP, 'http://localhost:5173'], max_age_s: 120 } } }, { env: { SLUICE_ADMIN_KEY: ADMIN_KEY } })
  })
  afterAll(async () => {
    await gw?.close()
  })

  test("a listed origin's preflight is allowed, with the methods, the headers it asks for and the max age", async () => {
    upstream.reset()
    const res = await preflight(`${gw.url}/v1/chat/completions`, APP)
    expect(res.status).toBe(204)
    expect(res.headers.get('x-request-id')).toMatch(REQUEST_ID)
    expect(res.headers.get('access-control-allow-origin')).toBe(APP)
    expect(res.headers.get('access-control-allow-methods')).toBe('POST, OPTIONS')
    expect(res.headers.get('access-control-allow-headers')).toBe('authorization, content-type, x-stainless-os')
    expect(res.headers.get('access-control-max-age')).toBe('120')
    expect(res.headers.get('vary')).toContain('Origin')
    // The preflight reached no plugin and no upstream.
    expect(upstream.stats.requests).toBe(0)
  })

  test('another origin gets no CORS header, so the browser sends nothing', async () => {
    for (const origin of ['https://evil.example.com', 'https://app.example.com.evil.net', 'http://app.example.com']) {
      const res = await preflight(`${gw.url}/v1/chat/completions`, origin)
      expect(res.status).toBe(204)
      expect(res.headers.get('access-control-allow-origin')).toBeNull()
    }
  })

  test('answers to a listed origin, successes, errors and streams alike, may be read with their request id and rate-limit headers', async () => {
    const ok = await post(`${gw.url}/v1/chat/completions`, chat, { origin: APP })
    expect(ok.status).toBe(200)
    expect(ok.headers.get('access-control-allow-origin')).toBe(APP)
    expect(ok.headers.get('access-control-expose-headers')).toContain('x-request-id')
    expect(ok.headers.get('access-control-expose-headers')).toContain('x-ratelimit-remaining-requests')
    expect(ok.headers.get('access-control-expose-headers')).toContain('x-should-retry')
    expect(ok.headers.get('vary')).toContain('Origin')
    await ok.arrayBuffer()
    const stream = await post(`${gw.url}/v1/chat/completions`, { ...chat, stream: true }, { origin: 'http://localhost:5173' })
    expect(stream.headers.get('access-control-allow-origin')).toBe('http://localhost:5173')
    expect(await stream.text()).toContain('[DONE]')
    const missing = await post(`${gw.url}/v1/chat/completions`, { ...chat, model: 'nope' }, { origin: APP })
    expect(missing.headers.get('access-control-allow-origin')).toBe(APP)
    await expectError(missing, 'model_not_found', 404)
    const other = await post(`${gw.url}/v1/chat/completions`, chat, { origin: 'https://evil.example.com' })
    expect(other.headers.get('access-control-allow-origin')).toBeNull()
    await other.arrayBuffer()
  })

  test('the admin API never takes part', async () => {
    const pre = await preflight(`${gw.url}/admin/providers`, APP)
    expect(pre.headers.get('access-control-allow-origin')).toBeNull()
    const res = await fetch(`${gw.url}/admin/providers`, { headers: { origin: APP, authorization: `Bearer ${ADMIN_KEY}` } })
    expect(res.status).toBe(200)
    expect(res.headers.get('access-control-allow-origin')).toBeNull()
  })
})

describe('server.cors with "*"', () => {
  test('any origin may read the answers; the origin is not named', async () => {
    const gw = await startGateway({ ...upstreamConfig(upstream.url), server: { cors: { origins: ['*'] } } })
    try {
      const pre = await preflight(`${gw.url}/v1/models`, 'https://anywhere.example', 'GET', 'authorization')
      expect(pre.headers.get('access-control-allow-origin')).toBe('*')
      expect(pre.headers.get('access-control-max-age')).toBe('600')
      const res = await fetch(`${gw.url}/v1/models`, { headers: { origin: 'https://anywhere.example' } })
      expect(res.headers.get('access-control-allow-origin')).toBe('*')
      expect(res.headers.get('vary') ?? '').not.toContain('Origin')
    } finally {
      await gw.close()
    }
  })
})

describe('server.cors in the config file', () => {
  test('origins not written as browsers send them are boot errors naming the path', async () => {
    const problems = await bootProblems({ server: { cors: { origins: ['https://app.example.com/', 'ftp://files.example.com', 'HTTPS://APP.EXAMPLE.COM', '*'] } } })
    expect(problems).toHaveLength(4)
    expect(problems[0]).toStartWith('/server/cors/origins/0: "https://app.example.com/" is not an origin')
    expect(problems[0]).toContain('"https://app.example.com"')
    expect(problems[1]).toStartWith('/server/cors/origins/1:')
    expect(problems[2]).toStartWith('/server/cors/origins/2:')
    expect(problems[3]).toBe('/server/cors/origins/3: "*" allows every origin: list it alone')
  })
})
