/**
 * Requests their clients abandon, in both forms (gone before the answer: 499; gone mid-stream:
 * 200), through a listening gateway and the mock upstream: the log row, /metrics and
 * /admin/usage tell the same story. Both carry the code client_closed, in the row and in
 * sluice_requests_total; neither is a rejection nor an error in the usage report, while an
 * upstream failure still is.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { ADMIN_KEY } from './support/auth.ts'
import { startGateway, upstreamConfig, type TestGateway } from './support/gateway.ts'
import { sampleValue, scrape } from './support/metrics.ts'
import { logRow } from './support/logging.ts'

const messages = [{ role: 'user', content: 'tell me a long story' }]
let upstream: MockUpstream
let gw: TestGateway

beforeAll(async () => {
  upstream = await startMockUpstream({ chunkDelayMs: 40 })
  gw = await startGateway(
    upstreamConfig(upstream.url, {
      models: [
        { name: 'streamy', targets: [{ provider: 'up', model: 'mock-gpt' }] },
        { name: 'slow', targets: [{ provider: 'up', model: 'mock-slow-5000' }] },
        { name: 'broken', targets: [{ provider: 'up', model: 'mock-fail-500' }] },
      ],
      plugins: [{ use: 'logging', options: { flush_ms: 10, log_requests: false } }],
    }),
    { env: { SLUICE_ADMIN_KEY: ADMIN_KEY } },
  )
})
afterAll(async () => {
  await gw.close()
  await upstream.stop()
})

const post = (body: unknown, signal?: AbortSignal) =>
  fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal })

/** Polls an async condition (waitFor takes a synchronous one). */
async function until(check: () => Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`)
    await Bun.sleep(10)
  }
}

const logRows = () => gw.gateway.services.db.db.selectFrom('request_logs').select(['id', 'model', 'status', 'error_code', 'streamed']).orderBy('model').execute()

test('a client gone before the answer and one gone mid-stream: client_closed in the row and in the metrics; no rejection, no error in usage', async () => {
  // Gone before the answer: the upstream takes 5 s, the client leaves after 200 ms.
  const before = new AbortController()
  // Its answer never reaches the client: its row is found by its model.
  const pending = post({ model: 'slow', messages }, before.signal).catch(() => null)
  await Bun.sleep(200)
  before.abort()
  await pending

  // Gone mid-stream: the first content chunk read, then away.
  const during = new AbortController()
  const res = await post({ model: 'streamy', messages, stream: true, max_tokens: 200 }, during.signal)
  expect(res.status).toBe(200)
  const streamId = res.headers.get('x-request-id')!
  const reader = res.body!.getReader()
  let text = ''
  while (!text.includes('"content"')) {
    const { value, done } = await reader.read()
    if (done) throw new Error('the stream ended before the client went away')
    text += new TextDecoder().decode(value)
  }
  during.abort()

  // And a real failure, for contrast.
  const failed = await post({ model: 'broken', messages })
  expect(failed.status).toBe(502)
  await failed.arrayBuffer()

  await until(async () => (await logRows()).length === 3, 'three log rows')
  const rows = await logRows()
  expect(rows.map((r) => [r.model, Number(r.status), r.error_code, Number(r.streamed)])).toEqual([
    ['broken', 502, 'upstream_error', 0],
    ['slow', 499, 'client_closed', 0],
    ['streamy', 200, 'client_closed', 1],
  ])
  expect(rows.find((r) => r.model === 'streamy')?.id).toBe(streamId)

  const metrics = await scrape(gw.url)
  const requests = (model: string, status: string, code: string) => sampleValue(metrics, 'sluice_requests_total', { endpoint: 'chat.completions', model, status, code })
  expect([requests('slow', '499', 'client_closed'), requests('slow', '499', 'none')]).toEqual([1, undefined])
  expect([requests('streamy', '200', 'client_closed'), requests('streamy', '200', 'none')]).toEqual([1, undefined])
  expect(requests('broken', '502', 'upstream_error')).toBe(1)
  // A client that left was refused nothing.
  expect(sampleValue(metrics, 'sluice_rejections_total', { code: 'client_closed' })).toBeUndefined()
  expect(sampleValue(metrics, 'sluice_rejections_total', { code: 'upstream_error' })).toBe(1)

  const usage = await fetch(`${gw.url}/admin/usage?group_by=model`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } })
  expect(usage.status).toBe(200)
  const groups = ((await usage.json()) as { data: Array<{ group: string; requests: number; errors: number }> }).data
  expect(groups.map((g) => [g.group, g.requests, g.errors]).sort()).toEqual([
    ['broken', 1, 1],
    ['slow', 1, 0],
    ['streamy', 1, 0],
  ])

  // Streams whose upstream failed after their 200 went out are errors too (they were counted as none).
  const at = new Date().toISOString()
  await gw.gateway.services.db.db
    .insertInto('request_logs')
    .values([
      logRow('req_cut_1', at, { model: 'cut', streamed: 1, error_code: 'upstream_error' }),
      logRow('req_cut_2', at, { model: 'cut', streamed: 1, error_code: 'upstream_timeout' }),
      logRow('req_cut_3', at, { model: 'cut', streamed: 1 }),
    ])
    .execute()
  const cut = await fetch(`${gw.url}/admin/usage?group_by=model&model=cut`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } })
  expect(((await cut.json()) as { data: Array<{ group: string; requests: number; errors: number }> }).data).toMatchObject([{ group: 'cut', requests: 3, errors: 2 }])
}, 20_000)
