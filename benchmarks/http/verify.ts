/**
 * Correctness before speed: each target must answer the benchmark's own bodies with a valid
 * completion and a well-formed stream before any load is sent, so a fast row can never be a
 * fast error page.
 */
import { parseSse } from '../fixtures/mock-upstream.ts'
import { CHAT_BODY, STREAM_BODY } from '../fixtures/bodies.ts'

/** What the checks saw, kept in the results file. */
export interface Verification {
  chatContent: string
  chatUsage: unknown
  streamFrames: number
  streamContent: string
}

function headers(apiKey: string | undefined, extra: Record<string, string> = {}): Record<string, string> {
  return apiKey === undefined ? { 'content-type': 'application/json', ...extra } : { 'content-type': 'application/json', ...extra, authorization: `Bearer ${apiKey}` }
}

function fail(target: string, what: string, detail: string): never {
  throw new Error(`${target}: ${what}: ${detail.slice(0, 500)}`)
}

/** Checks one target (`baseUrl` ends in `/v1`); throws with what was wrong. `extraHeaders` go with every request (a peer's routing headers). */
export async function verifyTarget(target: string, baseUrl: string, apiKey?: string, extraHeaders?: Record<string, string>): Promise<Verification> {
  const url = `${baseUrl}/chat/completions`

  const res = await fetch(url, { method: 'POST', headers: headers(apiKey, extraHeaders), body: CHAT_BODY })
  const text = await res.text()
  if (res.status !== 200) fail(target, `chat answered ${res.status}`, text)
  const chat = JSON.parse(text) as { object?: unknown; choices?: Array<{ message?: { content?: unknown } }>; usage?: { total_tokens?: unknown } }
  const content = chat.choices?.[0]?.message?.content
  if (chat.object !== 'chat.completion' || typeof content !== 'string' || content === '') fail(target, 'chat is not a completion', text)
  if (typeof chat.usage?.total_tokens !== 'number') fail(target, 'chat has no usage', text)

  const streamRes = await fetch(url, { method: 'POST', headers: headers(apiKey, extraHeaders), body: STREAM_BODY })
  const streamText = await streamRes.text()
  if (streamRes.status !== 200) fail(target, `stream answered ${streamRes.status}`, streamText)
  if (!(streamRes.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
    fail(target, 'stream content-type', String(streamRes.headers.get('content-type')))
  }
  let parsed: ReturnType<typeof parseSse>
  try {
    parsed = parseSse(streamText)
  } catch (error) {
    fail(target, 'stream framing', `${String(error)}\n${streamText}`)
  }
  if (!parsed.done) fail(target, 'stream has no [DONE]', streamText)
  const events = parsed.events as Array<{ choices?: Array<{ delta?: { content?: unknown } }>; usage?: unknown }>
  const streamContent = events.map((e) => (typeof e.choices?.[0]?.delta?.content === 'string' ? e.choices[0].delta.content : '')).join('')
  if (streamContent === '') fail(target, 'stream has no content', streamText)
  if (!events.some((e) => typeof e.usage === 'object' && e.usage !== null)) fail(target, 'stream has no usage chunk', streamText)

  return { chatContent: content, chatUsage: chat.usage, streamFrames: events.length + 1, streamContent }
}
