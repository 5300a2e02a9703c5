/**
 * Correctness before speed, for the suite's scenarios beyond chat and stream (those are
 * benchmarks/http/verify.ts): the large body is answered, an unknown key gets 401
 * invalid_api_key, a key over its rpm gets 429 rate_limit_exceeded with Retry-After, all in the
 * error envelope; and on every gateway row, that the plugins its label names are at work: auth
 * refuses an unknown key, quota charged the bench key and keeps its buckets in Redis, balance
 * spreads over the upstream keys, logging writes rows.
 */
import { readFileSync } from 'node:fs'
import { Redis } from 'ioredis'
import { CHAT_BODY } from '../fixtures/bodies.ts'
import { admin, mockStats } from './services.ts'

type Json = Record<string, unknown>

function post(url: string, body: string, apiKey: string | undefined, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers, ...(apiKey !== undefined && { authorization: `Bearer ${apiKey}` }) },
    body,
  })
}

function fail(target: string, what: string, detail: string): never {
  throw new Error(`${target}: ${what}: ${detail.slice(0, 400)}`)
}

/** The large body of the mix scenario gets a completion. */
export async function checkLarge(target: string, url: string, largeBodyFile: string, apiKey: string | undefined, headers?: Record<string, string>): Promise<string> {
  const res = await post(url, readFileSync(largeBodyFile, 'utf8'), apiKey, headers)
  const text = await res.text()
  if (res.status !== 200) fail(target, `64 KB prompt answered ${res.status}`, text)
  const body = JSON.parse(text) as { object?: string; usage?: { prompt_tokens?: number } }
  if (body.object !== 'chat.completion' || typeof body.usage?.prompt_tokens !== 'number') fail(target, '64 KB prompt: not a completion', text)
  return `64 KB prompt answered with a completion (${body.usage.prompt_tokens} prompt tokens)`
}

/** A refusal in the error envelope with the given status and code. */
async function expectRefusal(target: string, res: Response, status: number, code: string): Promise<Json> {
  const text = await res.text()
  if (res.status !== status) fail(target, `expected ${status} ${code}, got ${res.status}`, text)
  const body = JSON.parse(text) as { error?: Json }
  if (body.error?.code !== code || typeof body.error.message !== 'string' || !('type' in body.error) || !('param' in body.error)) fail(target, `expected the error envelope with code ${code}`, text)
  if (res.headers.get('x-request-id') === null) fail(target, 'refusal without x-request-id', text)
  return body.error
}

/** An unknown (well-formed) key is refused with 401 invalid_api_key. */
export async function checkUnauth(target: string, url: string, body: string, unknownKey: string): Promise<string> {
  await expectRefusal(target, await post(url, body, unknownKey), 401, 'invalid_api_key')
  return 'an unknown key is refused: 401 invalid_api_key in the error envelope, with x-request-id'
}

/** A key with rpm `rpm` is refused with 429 rate_limit_exceeded and Retry-After once it is spent. */
export async function checkLimited(target: string, url: string, body: string, key: string, rpm: number): Promise<string> {
  let admitted = 0
  for (let i = 0; i < rpm + 3; i++) {
    const res = await post(url, body, key)
    if (res.status === 200) {
      admitted++
      await res.arrayBuffer()
      continue
    }
    const retryAfter = res.headers.get('retry-after')
    await expectRefusal(target, res, 429, 'rate_limit_exceeded')
    if (retryAfter === null || !(Number(retryAfter) > 0)) fail(target, '429 without a positive Retry-After', String(retryAfter))
    if (admitted !== rpm) fail(target, `a key with rpm ${rpm} was admitted ${admitted} times before its first 429`, '')
    return `a key with rpm ${rpm}: ${admitted} admitted, then 429 rate_limit_exceeded with Retry-After ${retryAfter}`
  }
  return fail(target, `a key with rpm ${rpm} was never refused`, '')
}

/** Redis keys matching `pattern` (SCAN: safe on a shared Redis). */
async function redisKeys(redisUrl: string, pattern: string): Promise<string[]> {
  const client = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null })
  client.on('error', () => {})
  try {
    await client.connect()
    const found: string[] = []
    let cursor = '0'
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
      cursor = next
      found.push(...keys)
    } while (cursor !== '0')
    return found
  } finally {
    client.disconnect()
  }
}

/**
 * Quota admits the bench key through Redis: after a request, the key's buckets are there
 * (`{tag}:key:<id>:rpm`, …). A key without limits (or a gateway on the in-process store) is admitted
 * without Redis, and a row measured with it leaves out the admission round trip its label includes.
 */
export async function checkQuotaInRedis(target: string, url: string, apiKey: string, keyId: string, redisUrl: string): Promise<string> {
  const res = await post(url, CHAT_BODY, apiKey)
  const text = await res.text()
  if (res.status !== 200) fail(target, `chat answered ${res.status}`, text)
  const keys = await redisKeys(redisUrl, `*:key:${keyId}:*`)
  if (keys.length === 0) fail(target, 'quota admitted the bench key without Redis (no bucket of the key there: a key without limits, or the in-process store)', keyId)
  return `quota admits through Redis: the key's buckets are there (${keys.map((k) => k.slice(k.lastIndexOf(`${keyId}:`) + keyId.length + 1)).sort().join(', ')})`
}

/** The balance plugin spreads over the upstream keys: sequential requests reach the mock with more than one of them. */
export async function checkBalanceSpreads(target: string, url: string, apiKey: string | undefined, mockOrigin: string, requests = 8): Promise<string> {
  const seen = new Map<string, number>()
  for (let i = 0; i < requests; i++) {
    const res = await post(url, CHAT_BODY, apiKey)
    const text = await res.text()
    if (res.status !== 200) fail(target, `chat answered ${res.status}`, text)
    const auth = String((await mockStats(mockOrigin)).last_authorization)
    seen.set(auth, (seen.get(auth) ?? 0) + 1)
  }
  if (seen.size < 2) fail(target, `balance sent all ${requests} requests with one upstream key`, [...seen.keys()].join(', '))
  return `balance spreads over the upstream keys: ${requests} requests went out with ${seen.size} keys (${[...seen.values()].join(', ')})`
}

/** The logging plugin writes request-log rows (of the key, when given): waits for its batched writer. */
export async function checkLogging(target: string, origin: string, adminKey: string, keyId?: string): Promise<string> {
  let rows = 0
  const query = keyId === undefined ? '' : `key_id=${encodeURIComponent(keyId)}&`
  for (let i = 0; i < 50 && rows === 0; i++) {
    const page = await admin(origin, adminKey, 'GET', `/admin/logs?${query}limit=5`)
    rows = Array.isArray(page.data) ? page.data.length : 0
    if (rows === 0) await Bun.sleep(100)
  }
  if (rows === 0) fail(target, `no request-log rows${keyId === undefined ? '' : ' for the bench key'} after 5 s`, '')
  return `logging is live: /admin/logs has rows${keyId === undefined ? '' : ' for the key'}`
}

/** The key's quota was taken from (GET /v1/key): its token budget charged, its rpm bucket tracked. */
export async function checkQuotaCharged(target: string, origin: string, apiKey: string, keyId: string, budgetTokens: number): Promise<string> {
  const res = await fetch(`${origin}/v1/key`, { headers: { authorization: `Bearer ${apiKey}` } })
  const text = await res.text()
  if (res.status !== 200) fail(target, `GET /v1/key answered ${res.status}`, text)
  const key = JSON.parse(text) as { id?: string; remaining?: { requests?: number | null; budget_tokens?: number | null } }
  if (key.id !== keyId) fail(target, 'GET /v1/key names another key', text)
  // The rpm bucket of a generous key refills faster than it is spent; the token budget does not refill.
  const left = key.remaining?.requests
  if (typeof left !== 'number') fail(target, 'quota shows no rpm bucket for the key', text)
  const budget = key.remaining?.budget_tokens
  if (typeof budget !== 'number' || budget >= budgetTokens) fail(target, 'quota did not charge the key token budget', text)
  return `quota is live: the key's token budget was charged (${(budgetTokens - budget).toLocaleString('en-US')} tokens so far), its rpm bucket is tracked`
}
