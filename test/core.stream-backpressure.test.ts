import { describe, expect, test } from 'bun:test'
import net from 'node:net'
import { startGateway, upstreamConfig } from './support/gateway.ts'

const CHUNK = new TextEncoder().encode(`data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content: 'x'.repeat(4000) }, finish_reason: null }] })}\n\n`)
const STREAM_BYTES = 150 * 1024 * 1024

/** An upstream whose every stream is STREAM_BYTES long whatever max_tokens says; it counts what it was asked for. */
function startLongStreams() {
  const pulled = { bytes: 0 }
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    idleTimeout: 60,
    fetch: () => {
      let sent = 0
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent >= STREAM_BYTES) return controller.close()
          controller.enqueue(CHUNK)
          sent += CHUNK.byteLength
          pulled.bytes += CHUNK.byteLength
        },
      }, { highWaterMark: 0 })
      return new Response(body, { headers: { 'content-type': 'text/event-stream' } })
    },
  })
  return { url: `http://127.0.0.1:${server.port}/v1`, pulled, stop: () => server.stop(true) }
}

/** Sends a stream request on a socket that then reads nothing; what the upstream was made to send in `ms`. */
async function stalledClient(port: number, upstream: { pulled: { bytes: number } }, body: object, ms: number): Promise<number> {
  const before = upstream.pulled.bytes
  const text = JSON.stringify(body)
  const socket = net.connect(port, '127.0.0.1')
  await new Promise((resolve) => socket.once('connect', resolve))
  socket.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\n\r\n${text}`)
  socket.pause()
  await Bun.sleep(ms)
  const pulled = upstream.pulled.bytes - before
  socket.destroy()
  return pulled
}

describe('a stream whose client reads nothing', () => {
  test('holds back its upstream, with or without include_usage, where a stream the gateway mirrored pulled the whole answer into memory; a mirrored stream far longer than its max_tokens allows is cut', async () => {
    const upstream = startLongStreams()
    const gw = await startGateway(upstreamConfig(upstream.url, { plugins: ['logging'] }), { env: { SLUICE_ADMIN_KEY: 'sluice-admin-test-only-0123456789' } })
    const port = Number(new URL(gw.url).port)
    const messages = [{ role: 'user', content: 'hi' }]
    try {
      // Socket buffers on both sides hold some megabytes; the whole answer is 150 MB.
      const limit = 40 * 1024 * 1024
      for (const body of [
        { model: 'mock-gpt', stream: true, messages },
        { model: 'mock-gpt', stream: true, stream_options: { include_usage: true }, messages },
        { model: 'mock-gpt', stream: true, stream_options: { include_usage: true }, max_tokens: 16, messages },
      ]) {
        expect(await stalledClient(port, upstream, body, 4000)).toBeLessThan(limit)
      }
    } finally {
      await gw.close()
      upstream.stop()
    }
  }, 30_000)
})
