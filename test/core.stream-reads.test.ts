/**
 * A stream the gateway rewrites (it hides the usage chunk it asked for, or a chunk hook drops
 * events) where an upstream read holds nothing to send on: only the hidden usage chunk, only part
 * of an event, only dropped events. The client's stream must go on to its end, and the usage and
 * completion hooks must run once. An upstream of the test's own writes each piece 30 ms apart, so
 * each arrives in its own read.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { definePlugin, type Outcome, type Usage } from '../src/plugin.ts'
import { startGateway, upstreamConfig, type TestGateway } from './support/gateway.ts'

const event = (data: unknown) => `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`
const content = (text: string) => event({ id: 'c1', object: 'chat.completion.chunk', model: 'mock-gpt', choices: [{ index: 0, delta: { content: text }, finish_reason: null }] })
const usage = event({ id: 'c1', object: 'chat.completion.chunk', model: 'mock-gpt', choices: [], usage: { prompt_tokens: 7, completion_tokens: 2, total_tokens: 9 } })

/** Pieces the upstream writes, one by one, for the next stream it serves. */
let pieces: string[] = []
let upstream: ReturnType<typeof Bun.serve>
const usages: Usage[] = []
const outcomes: Outcome[] = []
let gw: TestGateway

beforeAll(async () => {
  upstream = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    fetch() {
      const parts = pieces
      const body = new ReadableStream<Uint8Array>({
        async start(controller) {
          for (const p of parts) {
            controller.enqueue(new TextEncoder().encode(p))
            await Bun.sleep(30)
          }
          controller.close()
        },
      })
      return new Response(body, { headers: { 'content-type': 'text/event-stream' } })
    },
  })
  const recorder = definePlugin({
    name: 'recorder',
    setup: () => ({
      onUsage: (_req, u) => void usages.push(u),
      onComplete: (_req, o) => void outcomes.push(o),
      // Drops every event whose text is "drop".
      onStreamChunk: (_req, chunk) => {
        const choices = chunk.data.choices as Array<{ delta?: { content?: string } }> | undefined
        return choices?.[0]?.delta?.content !== 'drop'
      },
    }),
  })
  gw = await startGateway(upstreamConfig(`http://127.0.0.1:${upstream.port}/v1`, { plugins: [recorder] }))
})
afterAll(async () => {
  await gw?.close()
  upstream?.stop(true)
})

/** A streamed chat whose text is read to its end, or 'STALLED' when it has not ended in 3 s. */
async function streamed(): Promise<string> {
  usages.length = 0
  outcomes.length = 0
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'mock-gpt', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
  })
  expect(res.status).toBe(200)
  return await Promise.race([res.text(), Bun.sleep(3000).then(() => 'STALLED')])
}

async function hooksRan(): Promise<void> {
  const until = Date.now() + 2000
  while (outcomes.length === 0 && Date.now() < until) await Bun.sleep(5)
}

describe('rewritten streams whose reads hold nothing to send', () => {
  test('the usage chunk in a read of its own: hidden, and the stream still ends', async () => {
    pieces = [content('Hello'), content(' there'), usage, event('[DONE]')]
    const text = await streamed()
    expect(text).not.toBe('STALLED')
    expect(text).toContain('Hello')
    expect(text).toContain('[DONE]')
    expect(text).not.toContain('"usage"')
    await hooksRan()
    expect(usages).toEqual([expect.objectContaining({ promptTokens: 7, completionTokens: 2, source: 'provider' })])
    expect(outcomes).toEqual([expect.objectContaining({ status: 200, aborted: false })])
  })

  test('an event split over two reads', async () => {
    const whole = content('split')
    pieces = [content('a'), whole.slice(0, 20), whole.slice(20), usage, event('[DONE]')]
    const text = await streamed()
    expect(text).not.toBe('STALLED')
    expect(text).toContain('split')
    expect(text).toContain('[DONE]')
    await hooksRan()
    expect(outcomes.length).toBe(1)
  })

  test('a read that holds only events a chunk hook drops', async () => {
    pieces = [content('keep'), content('drop'), content('drop'), content('kept too'), usage, event('[DONE]')]
    const text = await streamed()
    expect(text).not.toBe('STALLED')
    expect(text).toContain('kept too')
    expect(text).not.toContain('"drop"')
    expect(text).toContain('[DONE]')
    await hooksRan()
    expect(outcomes.length).toBe(1)
  })
})
