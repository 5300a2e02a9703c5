/**
 * How a request that did not end normally is reported to the completion hooks: a client that
 * leaves before the upstream answers is aborted (status 499), not an upstream failure, and the
 * provider key keeps its health; an upstream that breaks off mid-stream is an upstream error, not
 * a client that left. Real gateway, an upstream of the test's own.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { definePlugin, type Outcome } from '../src/plugin.ts'
import { startGateway, upstreamConfig, type TestGateway } from './support/gateway.ts'

const outcomes: Outcome[] = []
let mode: 'slow' | 'break' | 'break-mid-event' = 'slow'
let upstream: ReturnType<typeof Bun.serve>
let gw: TestGateway
/** The same upstream behind a provider with its own idle timeout: streams the client asked usage for are read chunk by chunk as they pass, unchanged. */
let timed: TestGateway

const chunk = (text: string) => `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', model: 'mock-gpt', choices: [{ index: 0, delta: { content: text }, finish_reason: null }] })}\n\n`

beforeAll(async () => {
  upstream = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    async fetch() {
      if (mode === 'slow') {
        await Bun.sleep(3000)
        return Response.json({ id: 'x', object: 'chat.completion', model: 'mock-gpt', choices: [] })
      }
      const body = new ReadableStream<Uint8Array>({
        async start(controller) {
          controller.enqueue(new TextEncoder().encode(chunk('one') + chunk('two') + (mode === 'break-mid-event' ? 'data: {"id":"c","obj' : '')))
          await Bun.sleep(50)
          controller.error(new Error('upstream went away'))
        },
      })
      return new Response(body, { headers: { 'content-type': 'text/event-stream' } })
    },
  })
  const recorder = definePlugin({ name: 'recorder', setup: () => ({ onComplete: (_req, o) => void outcomes.push(o) }) })
  gw = await startGateway(upstreamConfig(`http://127.0.0.1:${upstream.port}/v1`, { plugins: [recorder] }), { env: { SLUICE_ADMIN_KEY: 'sluice-admin-test-only-0123456789' } })
  const withTimeout = upstreamConfig(`http://127.0.0.1:${upstream.port}/v1`, { plugins: [recorder] })
  withTimeout.providers![0]!.timeouts = { idle_ms: 5000 }
  timed = await startGateway(withTimeout, { env: { SLUICE_ADMIN_KEY: 'sluice-admin-test-only-0123456789' } })
})
afterAll(async () => {
  await gw?.close()
  await timed?.close()
  upstream?.stop(true)
})

async function outcome(): Promise<Outcome> {
  const until = Date.now() + 5000
  while (outcomes.length === 0 && Date.now() < until) await Bun.sleep(10)
  return outcomes[0]!
}

describe('requests that end early', () => {
  test('a client that leaves before the upstream answers: aborted with 499, and the provider key stays healthy', async () => {
    outcomes.length = 0
    mode = 'slow'
    const controller = new AbortController()
    const pending = fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'mock-gpt', messages: [{ role: 'user', content: 'hi' }] }),
      signal: controller.signal,
    }).catch(() => null)
    await Bun.sleep(200)
    controller.abort()
    await pending
    expect(await outcome()).toMatchObject({ status: 499, errorCode: null, aborted: true })
    const key = gw.gateway.services.upstreams.get('up', 'k1')
    expect(key?.healthy ?? true).toBe(true)
  })

  test('an upstream that breaks off mid-stream: an upstream error, not a client that left', async () => {
    outcomes.length = 0
    mode = 'break'
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'mock-gpt', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    })
    expect(res.status).toBe(200)
    // The gateway writes this stream (it hides the usage chunk it asked for): it ends with an error
    // event the client's SDK raises, after what the upstream sent, instead of a broken body.
    const text = await res.text()
    const events = text.split('\n\n').filter(Boolean)
    expect(events.slice(0, 2).map((e) => (JSON.parse(e.slice(6)) as { choices: { delta: { content: string } }[] }).choices[0]!.delta.content)).toEqual(['one', 'two'])
    expect(events).toHaveLength(3)
    const error = (JSON.parse(events[2]!.slice(6)) as { error: { code: string; message: string } }).error
    expect(error.code).toBe('upstream_error')
    expect(error.message).toContain('broke off the stream mid-answer')
    expect(await outcome()).toMatchObject({ status: 200, errorCode: 'upstream_error', aborted: false })
  })

  test('an upstream that breaks off in the middle of an event: whole events only reach the client, then the error event', async () => {
    outcomes.length = 0
    mode = 'break-mid-event'
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'mock-gpt', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    })
    const events = (await res.text()).split('\n\n').filter(Boolean)
    expect(events).toHaveLength(3)
    expect(events[2]).toStartWith('data: {"error":')
    expect(await outcome()).toMatchObject({ status: 200, errorCode: 'upstream_error', aborted: false })
  })

  test.each([
    ['between two events: the error event follows them', 'break' as const],
    ['in the middle of an event: the body errors, nothing is added to the half event', 'break-mid-event' as const],
  ])('a stream passed on unchanged (the client asked for usage) that breaks off %s', async (_what, how) => {
    outcomes.length = 0
    mode = how
    const res = await fetch(`${timed.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'mock-gpt', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'hi' }] }),
    })
    expect(res.status).toBe(200)
    const reader = res.body!.getReader()
    let text = ''
    let failed = false
    for (;;) {
      try {
        const { done, value } = await reader.read()
        if (done) break
        text += new TextDecoder().decode(value)
      } catch {
        failed = true
        break
      }
    }
    if (how === 'break') {
      expect(failed).toBe(false)
      expect(text.split('\n\n').filter(Boolean).at(-1)).toContain('"code":"upstream_error"')
    } else {
      expect(failed).toBe(true)
      expect(text).not.toContain('"error"')
    }
    expect(await outcome()).toMatchObject({ status: 200, errorCode: 'upstream_error', aborted: false })
  })
})
