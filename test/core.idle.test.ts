import { describe, expect, test } from 'bun:test'
import net from 'node:net'
import { startGateway, upstreamConfig } from './support/gateway.ts'
import { startMockUpstream } from './fixtures/mock-upstream.ts'

/** Opens a connection, sends one request, and resolves with when (ms after the answer began) the server closed it, or null if it was still open at `waitMs`. */
function closedAfter(port: number, request: string, waitMs: number): Promise<{ answer: string; closedMs: number | null }> {
  return new Promise((resolve) => {
    let answer = ''
    let answeredAt = 0
    const socket = net.connect(port, '127.0.0.1', () => socket.write(request))
    const timer = setTimeout(() => {
      socket.destroy()
      resolve({ answer, closedMs: null })
    }, waitMs)
    socket.on('data', (chunk) => {
      if (answer === '') answeredAt = performance.now()
      answer += chunk.toString()
    })
    socket.on('close', () => {
      clearTimeout(timer)
      resolve({ answer, closedMs: performance.now() - answeredAt })
    })
    socket.on('error', () => {})
  })
}

describe('client connections that go silent', () => {
  test('an idle keep-alive connection is closed after limits.idle_timeout_s; a model call waiting longer than that for its upstream still gets its answer, JSON or stream', async () => {
    const upstream = await startMockUpstream({ chunks: 3, chunkDelayMs: 3500 })
    const models = [
      { name: 'mock-gpt', targets: [{ provider: 'up', model: 'mock-gpt' }] },
      // The mock answers this model after 4.5 s, more than twice the idle timeout.
      { name: 'slow', targets: [{ provider: 'up', model: 'mock-slow-4500' }] },
    ]
    const gw = await startGateway(upstreamConfig(upstream.url, { models, limits: { idle_timeout_s: 2 } }), { env: { SLUICE_ADMIN_KEY: 'sluice-admin-test-only-0123456789' } })
    const port = Number(new URL(gw.url).port)
    try {
      // Before, an idle keep-alive connection was held for good (idleTimeout 0).
      const idle = await closedAfter(port, 'GET /health HTTP/1.1\r\nhost: gw\r\n\r\n', 12_000)
      expect(idle.answer.split('\r\n')[0]).toBe('HTTP/1.1 200 OK')
      expect(idle.closedMs).not.toBeNull()

      // So is one that has made a model call.
      const chat = JSON.stringify({ model: 'mock-gpt', messages: [{ role: 'user', content: 'hi' }] })
      const called = await closedAfter(
        port,
        `POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: ${chat.length}\r\n\r\n${chat}`,
        12_000,
      )
      expect(called.answer.split('\r\n')[0]).toBe('HTTP/1.1 200 OK')
      expect(called.closedMs).not.toBeNull()

      // The upstream's headers come after 4.5 s: the call is not cut.
      const body = (model: string, stream: boolean) => JSON.stringify({ model, stream, messages: [{ role: 'user', content: 'hi' }] })
      const slow = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: body('slow', false) })
      expect(slow.status).toBe(200)
      expect(((await slow.json()) as { object: string }).object).toBe('chat.completion')

      // A stream whose events come 3.5 s apart, longer than the idle timeout, runs to its end.
      const stream = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: body('mock-gpt', true) })
      expect(stream.status).toBe(200)
      expect(await stream.text()).toContain('data: [DONE]')
    } finally {
      await gw.close()
      await upstream.stop()
    }
  }, 40_000)
})
