/**
 * Correctness before speed, for the suite's scenarios beyond chat and stream (those are
 * benchmarks/http/verify.ts): the large body is answered, an unknown key gets 401
 * invalid_api_key, a key over its rpm gets 429 rate_limit_exceeded with Retry-After, all in the
 * error envelope; and on the full stack, that quota and logging really ran for the bench key.
 */
import { readFileSync } from 'node:fs'
import { admin } from './services.ts'

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

/** On the full stack: the key's quota was taken from (GET /v1/key) and its requests were logged (GET /admin/logs). */
export async function checkFullStack(target: string, origin: string, adminKey: string, apiKey: string, keyId: string, budgetTokens: number): Promise<string[]> {
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
  // The logging plugin writes in batches off the response path: wait for the rows.
  let rows = 0
  for (let i = 0; i < 50 && rows === 0; i++) {
    const page = await admin(origin, adminKey, 'GET', `/admin/logs?key_id=${encodeURIComponent(keyId)}&limit=5`)
    rows = Array.isArray(page.data) ? page.data.length : 0
    if (rows === 0) await Bun.sleep(100)
  }
  if (rows === 0) fail(target, 'no request-log rows for the bench key after 5 s', '')
  return [`quota is live: the key's token budget was charged (${(budgetTokens - budget).toLocaleString('en-US')} tokens so far), its rpm bucket is tracked`, `logging is live: /admin/logs has rows for the key`]
}
