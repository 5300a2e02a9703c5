/**
 * A log row's `at` is when its request arrived, whenever the logging plugin hears of its end: a
 * completion hook that runs late (one listed before it doing blocking work, a usage the tokenizer
 * had to count, a busy event loop) does not move the row, and with it the request's place in
 * `/admin/logs`, its `from`/`to` range and its UTC day in `/admin/usage`, later by that delay.
 * And a request arrives with its headers: a body the client sends slowly is part of its time
 * (latency_ms, sluice_request_duration_seconds), as it is of the core's HTTP duration.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { definePlugin } from '../src/plugin.ts'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { startGateway, upstreamConfig } from './support/gateway.ts'
import { waitForRows } from './support/logging.ts'
import { sampleValue, scrape } from './support/metrics.ts'

let upstream: MockUpstream
beforeAll(async () => {
  upstream = await startMockUpstream()
})
afterAll(async () => {
  await upstream?.stop()
})

describe('request log time', () => {
  test('a row is dated at its arrival, not at arrival plus the time its completion hooks waited', async () => {
    // When the first completion hook started: the response had ended, so the request arrived before it.
    const hookStarts: number[] = []
    const busy = definePlugin({
      name: 'busy',
      setup: () => ({
        onComplete: () => {
          hookStarts.push(Date.now())
          // Work that holds the thread (a synchronous write, say) before the logging plugin's turn.
          Bun.sleepSync(300)
        },
      }),
    })
    const tg = await startGateway(upstreamConfig(upstream.url, { plugins: [busy, { use: 'logging', options: { flush_ms: 10 } }] }))
    try {
      const sentAt = Date.now()
      const res = await fetch(`${tg.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'mock-gpt', messages: [{ role: 'user', content: 'hi' }] }),
      })
      expect(res.status).toBe(200)
      await res.arrayBuffer()
      const db = tg.gateway.services.db.db
      await waitForRows(db, 1)
      const row = await db.selectFrom('request_logs').select(['at', 'latency_ms']).executeTakeFirstOrThrow()
      expect(hookStarts).toHaveLength(1)
      const at = Date.parse(row.at)
      // Stored to the millisecond, cut down: at most 1 ms before the moment it stands for.
      expect(at).toBeGreaterThanOrEqual(sentAt - 1)
      expect(at).toBeLessThanOrEqual(hookStarts[0]!)
    } finally {
      await tg.close()
    }
  })

  test('a body sent slowly: the row is dated when the headers came, and its latency and duration count the wait for the body', async () => {
    const tg = await startGateway(upstreamConfig(upstream.url, { plugins: [{ use: 'logging', options: { flush_ms: 10 } }] }))
    try {
      const text = new TextEncoder()
      let bodyDoneAt = 0
      const body = new ReadableStream<Uint8Array>({
        async start(c) {
          c.enqueue(text.encode('{"model":"mock-gpt",'))
          await Bun.sleep(400)
          bodyDoneAt = Date.now()
          c.enqueue(text.encode('"messages":[{"role":"user","content":"hi"}]}'))
          c.close()
        },
      })
      const sentAt = Date.now()
      const res = await fetch(`${tg.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body, duplex: 'half' } as RequestInit)
      expect(res.status).toBe(200)
      await res.arrayBuffer()
      const db = tg.gateway.services.db.db
      await waitForRows(db, 1)
      const row = await db.selectFrom('request_logs').select(['at', 'latency_ms']).executeTakeFirstOrThrow()
      expect(Date.parse(row.at)).toBeGreaterThanOrEqual(sentAt - 1)
      // Dated when it arrived, before the rest of its body did.
      expect(Date.parse(row.at)).toBeLessThan(bodyDoneAt)
      // It ended after its body came, and most of the 400 ms the body took is its own (its headers
      // went out some ms after the wait began): not the 1 ms its record took.
      expect(Date.parse(row.at) + row.latency_ms).toBeGreaterThanOrEqual(bodyDoneAt - 1)
      expect(row.latency_ms).toBeGreaterThanOrEqual(200)
      const m = await scrape(tg.url)
      expect(sampleValue(m, 'sluice_request_duration_seconds_sum', { model: 'mock-gpt' })!).toBeGreaterThanOrEqual(0.2)
    } finally {
      await tg.close()
    }
  })
})
