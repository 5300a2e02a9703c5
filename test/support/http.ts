import { expect } from 'bun:test'

/**
 * The status and `type` of every error code, copied from DESIGN.md's table on purpose
 * (not imported from src/errors.ts): a test that read the table from the code under test
 * could not catch a wrong entry in it.
 */
export const DESIGN_ERRORS = {
  missing_api_key: [401, 'authentication_error'],
  invalid_api_key: [401, 'authentication_error'],
  rate_limit_exceeded: [429, 'rate_limit_error'],
  model_not_found: [404, 'not_found_error'],
  invalid_request: [400, 'invalid_request_error'],
  request_too_large: [413, 'invalid_request_error'],
  upstream_error: [502, 'api_error'],
  no_healthy_upstream: [503, 'api_error'],
  upstream_timeout: [504, 'api_error'],
  not_found: [404, 'not_found_error'],
  invalid_admin_key: [401, 'authentication_error'],
  method_not_allowed: [405, 'invalid_request_error'],
} as const

export type DesignErrorCode = keyof typeof DESIGN_ERRORS

/** Request ids are `req_` and then letters and digits. */
export const REQUEST_ID = /^req_[A-Za-z0-9]{16,}$/

export interface ErrorEnvelopeBody {
  error: { message: string; type: string; param: string | null; code: string }
}

/**
 * Assert that `res` is an error in exactly the envelope shape, with the status DESIGN.md
 * gives its code (or `status` when an upstream's own status passes through), and a request id.
 * Returns the parsed envelope for further checks.
 */
export async function expectError(res: Response, code: DesignErrorCode, status: number = DESIGN_ERRORS[code][0]): Promise<ErrorEnvelopeBody['error']> {
  const text = await res.text()
  expect({ status: res.status, body: text }).toMatchObject({ status })
  expect(res.headers.get('content-type') ?? '').toStartWith('application/json')
  expect(res.headers.get('x-request-id') ?? '').toMatch(REQUEST_ID)
  const body = JSON.parse(text) as ErrorEnvelopeBody
  expect(Object.keys(body)).toEqual(['error'])
  expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type'])
  expect(body.error.code).toBe(code)
  expect(body.error.type).toBe(DESIGN_ERRORS[code][1])
  expect(typeof body.error.message).toBe('string')
  expect(body.error.message.length).toBeGreaterThan(10)
  expect(body.error.param === null || typeof body.error.param === 'string').toBe(true)
  return body.error
}

/** POST a JSON body (already a string, or serialised here). */
export function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
}

/**
 * Wait until `check` holds, polling; fails with `what` if it does not within `ms`.
 * For effects that happen after a response (hooks, upstream cancellation), not for timing.
 */
export async function waitFor(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`)
    await Bun.sleep(10)
  }
}

/**
 * Bytes written as they are to a server on 127.0.0.1 (an HTTP request fetch would not send: no Host
 * header, a partial body), and all it answered once it closed the connection.
 */
export function rawExchange(port: number, request: string): Promise<string> {
  return new Promise<string>((resolve) => {
    let out = ''
    void Bun.connect({
      hostname: '127.0.0.1',
      port,
      socket: {
        open: (socket) => void socket.write(request),
        data: (_socket, data) => void (out += data.toString()),
        close: () => resolve(out),
      },
    })
  })
}

/** A port nothing listens on: bound once by us, then released. */
export async function closedPort(): Promise<number> {
  const server = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: () => new Response('') })
  const port = server.port!
  await server.stop(true)
  return port
}

/** Chat chunks as the OpenAI stream shapes them (only the fields tests read). */
export interface ChunkLike {
  choices: Array<{ index: number; delta: { content?: string | null; role?: string }; finish_reason: string | null }>
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null
}

/** The concatenated `delta.content` of a list of chat chunks. */
export function streamedText(chunks: readonly ChunkLike[]): string {
  return chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')
}

/**
 * Resolves once `count()` has not moved for `quietMs` (at most `maxMs`): hooks run after the
 * responses, so a test's last request may still be heard after the next test began. For emptying
 * a record of hook calls between tests.
 */
export async function settledHooks(count: () => number, quietMs = 30, maxMs = 2000): Promise<void> {
  const deadline = Date.now() + maxMs
  let seen = -1
  while (Date.now() < deadline && seen !== count()) {
    seen = count()
    await Bun.sleep(quietMs)
  }
}

/** Read a client stream to its end: the chunks seen, and what it threw (null when it ended well). */
export async function drainStream<T>(stream: AsyncIterable<T>): Promise<{ seen: T[]; error: unknown }> {
  const seen: T[] = []
  try {
    for await (const chunk of stream) seen.push(chunk)
  } catch (error) {
    return { seen, error }
  }
  return { seen, error: null }
}
