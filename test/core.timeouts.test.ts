/**
 * Timeouts once the upstream has answered: `idle_ms` (nothing sent for too long) and `total_ms`
 * (the whole call), on streams and on JSON bodies, with and without a plugin tapping the body;
 * and a client that leaves while the upstream has not answered yet. The upstream here is a small
 * Bun server that stalls on purpose. Real HTTP on 127.0.0.1.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import OpenAI from 'openai'
import { headersWaitMs } from '../src/providers/timeouts.ts'
import { definePlugin } from '../src/plugin.ts'
import type { Outcome } from '../src/plugin.ts'
import { startGateway, type TestGateway } from './support/gateway.ts'
import { postJson, waitFor } from './support/http.ts'

interface Staller {
  url: string
  /** Requests whose connection the gateway closed (the upstream call was aborted). */
  aborted: number
  /** Requests for the `hold` model that arrived. */
  held: number
  stop(): void
}

const enc = new TextEncoder()
const chunk = (text: string) => `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content: text }, finish_reason: null }] })}\n\n`

/**
 * Models: `stall-stream` sends two chunks and then nothing; `slow-stream` sends a chunk every
 * 40 ms for 2 s; `stall-json` sends half a JSON body and then nothing; `hold` answers after 3 s.
 */
function startStaller(): Staller {
  const state = { aborted: 0, held: 0 }
  const server = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    async fetch(request) {
      const body = (await request.json()) as { model: string }
      request.signal.addEventListener('abort', () => state.aborted++, { once: true })
      if (body.model === 'hold') {
        state.held++
        // Answers only after 3 s: long after the test's client has left.
        await Bun.sleep(3000)
        return Response.json({ id: 'x', object: 'chat.completion', created: 1, model: 'hold', choices: [] })
      }
      let timer: ReturnType<typeof setInterval> | undefined
      const stream = new ReadableStream<Uint8Array>({
        start(controller) {
          if (body.model === 'stall-stream') {
            controller.enqueue(enc.encode(chunk('one ') + chunk('two ')))
          } else if (body.model === 'slow-stream') {
            let n = 0
            timer = setInterval(() => {
              if (++n > 50) {
                clearInterval(timer)
                controller.enqueue(enc.encode('data: [DONE]\n\n'))
                controller.close()
              } else controller.enqueue(enc.encode(chunk(`w${n} `)))
            }, 40)
          } else {
            controller.enqueue(enc.encode('{"id":"x","object":"chat.completion","choices":[{"index":0,'))
          }
        },
        cancel() {
          clearInterval(timer)
        },
      })
      const type = body.model === 'stall-json' ? 'application/json' : 'text/event-stream'
      return new Response(stream, { headers: { 'content-type': type } })
    },
  })
  return {
    url: `http://127.0.0.1:${server.port}/v1`,
    get aborted() {
      return state.aborted
    },
    get held() {
      return state.held
    },
    stop: () => server.stop(true),
  }
}

function config(baseUrl: string, plugins: unknown[]) {
  return {
    providers: [
      { id: 'idle', type: 'openai-compatible' as const, baseUrl, keys: [{ id: 'k1', secret: 'sk-upstream-0123456789' }], timeouts: { idle_ms: 150 } },
      { id: 'total', type: 'openai-compatible' as const, baseUrl, keys: [{ id: 'k2', secret: 'sk-upstream-0123456789' }], timeouts: { total_ms: 400, idle_ms: 1000 } },
    ],
    models: [
      { name: 'stall-stream', targets: [{ provider: 'idle', model: 'stall-stream' }] },
      { name: 'stall-json', targets: [{ provider: 'idle', model: 'stall-json' }] },
      { name: 'slow-stream', targets: [{ provider: 'total', model: 'slow-stream' }] },
      { name: 'hold', targets: [{ provider: 'idle', model: 'hold' }] },
    ],
    plugins,
  }
}

for (const mode of ['no plugin', 'a plugin tapping the body'] as const) {
  describe(`upstream timeouts after the first byte (${mode})`, () => {
    let staller: Staller
    let gw: TestGateway
    const outcomes: Outcome[] = []
    const recorder = definePlugin({
      name: 'timeout-recorder',
      setup: () => ({ onComplete: (_req, outcome) => void outcomes.push(outcome) }),
    })

    beforeAll(async () => {
      staller = startStaller()
      gw = await startGateway(config(staller.url, mode === 'no plugin' ? [] : [recorder]))
    })
    afterAll(async () => {
      await gw.close()
      staller.stop()
    })

    test('a stream that goes quiet for idle_ms ends with an upstream_timeout error event, and the upstream call is aborted', async () => {
      const before = staller.aborted
      const started = performance.now()
      const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'stall-stream', stream: true, messages: [{ role: 'user', content: 'hi' }] })
      expect(res.status).toBe(200)
      const text = await res.text()
      const elapsed = performance.now() - started
      expect(text).toContain('"content":"one "')
      expect(text).toContain('"code":"upstream_timeout"')
      expect(text).toContain('sent nothing for 150 ms; the answer was cut off. Retry the request')
      expect(text).not.toContain('[DONE]')
      // Cut off by the watchdog, not by anything slower (the upstream would stall for ever).
      expect(elapsed).toBeLessThan(5000)
      await waitFor(() => staller.aborted > before, 'the upstream call to be aborted')
      if (mode !== 'no plugin') {
        await waitFor(() => outcomes.some((o) => o.errorCode === 'upstream_timeout'), 'onComplete to hear of the timeout')
        expect(outcomes.find((o) => o.errorCode === 'upstream_timeout')).toMatchObject({ aborted: true })
      }
    })

    test('the official SDK raises the error event as an API error', async () => {
      const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 })
      const stream = await client.chat.completions.create({ model: 'stall-stream', stream: true, messages: [{ role: 'user', content: 'hi' }] })
      let text = ''
      let caught: unknown
      try {
        for await (const part of stream) text += part.choices[0]?.delta.content ?? ''
      } catch (error) {
        caught = error
      }
      expect(text).toBe('one two ')
      expect(caught).toBeInstanceOf(OpenAI.APIError)
      expect(String((caught as InstanceType<typeof OpenAI.APIError>).message)).toContain('sent nothing for 150 ms')
    })

    test('a stream still flowing past total_ms is cut off at the total', async () => {
      const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'slow-stream', stream: true, messages: [{ role: 'user', content: 'hi' }] })
      expect(res.status).toBe(200)
      const text = await res.text()
      expect(text).toContain('"content":"w1 "')
      expect(text).toContain('"code":"upstream_timeout"')
      expect(text).toContain('did not finish its answer in time; the answer was cut off. Retry the request')
      // 50 chunks at 40 ms would take 2 s; the total is 400 ms.
      expect(text).not.toContain('w50')
      expect(text).not.toContain('[DONE]')
    })

    test('a JSON body that stalls half-way is cut off: the client body errors instead of hanging', async () => {
      const before = staller.aborted
      const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'stall-json', messages: [{ role: 'user', content: 'hi' }] })
      expect(res.status).toBe(200)
      let failed = false
      try {
        await res.text()
      } catch {
        failed = true
      }
      expect(failed).toBe(true)
      await waitFor(() => staller.aborted > before, 'the upstream call to be aborted')
    })

    test('a client that leaves before the upstream answers gets its upstream call aborted', async () => {
      const [aborted, held] = [staller.aborted, staller.held]
      const client = new AbortController()
      const call = fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'hold', messages: [{ role: 'user', content: 'hi' }] }),
        signal: client.signal,
      }).catch((error: unknown) => error)
      await waitFor(() => staller.held > held, 'the upstream call to be under way')
      client.abort()
      expect(await call).toBeInstanceOf(Error)
      // Long before the upstream's own answer at 3 s.
      await waitFor(() => staller.aborted > aborted, 'the upstream call to be aborted', 2000)
    })

    test('nothing stays watched once the bodies ended', async () => {
      await waitFor(() => gw.gateway.pipeline.watchdog.size === 0, 'the watchdog to be empty')
    })
  })
}

describe('the wait for the upstream\'s headers (first_byte_ms)', () => {
  test('a stream waits first_byte_ms (60 s by default) for its headers', () => {
    expect(headersWaitMs(undefined, true)).toBe(60_000)
    expect(headersWaitMs({ total_ms: 900_000 }, true)).toBe(60_000)
  })

  test('a JSON answer, whose headers come once it is generated, waits the whole call by default, not a minute', () => {
    expect(headersWaitMs(undefined, false)).toBe(600_000)
    expect(headersWaitMs({ total_ms: 900_000 }, false)).toBe(900_000)
    expect(headersWaitMs({ idle_ms: 1000 }, false)).toBe(600_000)
  })

  test('a first_byte_ms the operator set applies to both, never past total_ms', () => {
    expect(headersWaitMs({ first_byte_ms: 5000 }, false)).toBe(5000)
    expect(headersWaitMs({ first_byte_ms: 5000 }, true)).toBe(5000)
    expect(headersWaitMs({ first_byte_ms: 5000, total_ms: 2000 }, true)).toBe(2000)
    expect(headersWaitMs({ total_ms: 2000 }, true)).toBe(2000)
  })
})
