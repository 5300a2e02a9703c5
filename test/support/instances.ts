/**
 * Calls on gateway processes that several tests make to the instances of one deployment (bus and
 * catch-up tests): an admin call with the test admin key, and a chat request's outcome.
 */
import { ADMIN_KEY } from './auth.ts'
import type { TestGateway } from './gateway.ts'

/**
 * An admin call on `gw`, its JSON answer; a non-2xx throws with its body. `timeoutMs` bounds the
 * wait, so that an answer held by a stalled Redis fails there and not at the test's own timeout.
 */
export async function adminCall<T>(gw: TestGateway, method: string, path: string, body?: unknown, timeoutMs?: number): Promise<T> {
  const res = await fetch(gw.url + path, {
    method,
    headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(body !== undefined && { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    ...(timeoutMs === undefined ? {} : { signal: AbortSignal.timeout(timeoutMs) }),
  })
  const text = await res.text()
  if (!res.ok) throw new Error(`${method} ${path} → ${res.status}: ${text}`)
  return JSON.parse(text) as T
}

/** 'ok' for a chat request `gw` answered 2xx, else the code of its refusal. */
export async function chatOutcome(gw: TestGateway, key: string, model = 'mock-gpt'): Promise<string> {
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
  })
  const body = (await res.json()) as { error?: { code: string } }
  return res.ok ? 'ok' : String(body.error?.code)
}
