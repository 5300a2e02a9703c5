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
let mode: 'slow' | 'break' = 'slow'
let upstream: ReturnType<typeof Bun.serve>
let gw: TestGateway

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
          controller.enqueue(new TextEncoder().encode(chunk('one') + chunk('two')))
          await Bun.sleep(50)
          controller.error(new Error('upstream went away'))
        },
      })
      return new Response(body, { headers: { 'content-type': 'text/event-stream' } })
    },
  })
  const recorder = definePlugin({ name: 'recorder', setup: () => ({ onComplete: (_req, o) => void outcomes.push(o) }) })
  gw = await startGateway(upstreamConfig(`http://127.0.0.1:${upstream.port}/v1`, { plugins: [recorder] }), { env: { SLUICE_ADMIN_KEY: 'sluice-admin-test-only-0123456789' } })
})
afterAll(async () => {
  await gw?.close()
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
    await res.text().catch(() => '')
    expect(await outcome()).toMatchObject({ status: 200, errorCode: 'upstream_error', aborted: false })
  })
})
