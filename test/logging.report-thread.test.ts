/**
 * Admin reports on a SQLite file run on a thread of their own. bun:sqlite runs a statement on
 * the thread that calls it, to its end: a `/admin/usage` over a big request log held the
 * gateway's event loop, and so every request (a health check, a completion), until it was done.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { Database } from 'bun:sqlite'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { startGateway, upstreamConfig, type TestGateway } from './support/gateway.ts'

const ADMIN = 'sluice-admin-test-only-0123456789'
const ROWS = 200_000

let dir: string
let upstream: MockUpstream
let tg: TestGateway
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-reports-'))
  upstream = await startMockUpstream()
  const file = join(dir, 'big.db')
  tg = await startGateway(upstreamConfig(upstream.url, { plugins: [{ use: 'logging', options: { flush_ms: 10 } }] }), { env: { DATABASE_URL: `sqlite://${file}`, SLUICE_ADMIN_KEY: ADMIN } })
  // A request log of many rows over many keys, written from another connection as the writer thread would.
  const other = new Database(file)
  const insert = other.prepare(
    "insert into request_logs (id, at, key_id, user_id, environment, endpoint, model, status, prompt_tokens, completion_tokens, total_tokens, cost_usd, latency_ms) values (?, ?, ?, ?, 'dev', 'chat.completions', 'mock-gpt', ?, 1, 2, 3, 0.5, 5)",
  )
  const start = Date.parse('2026-11-01T00:00:00Z')
  other.transaction(() => {
    for (let i = 0; i < ROWS; i++) insert.run(`req_${String(i).padStart(7, '0')}`, new Date(start + i * 1000).toISOString(), `key_${i % 400}`, `usr_${i % 40}`, i % 10 === 0 ? 429 : 200)
  })()
  insert.finalize()
  other.close()
}, 60_000)
afterAll(async () => {
  await tg.close()
  await upstream.stop()
  rmSync(dir, { recursive: true, force: true })
})

test('a report over a big request log on SQLite: other requests are answered while it runs, and its figures are the table\'s', async () => {
  let reported = false
  const report = fetch(`${tg.url}/admin/usage?group_by=user`, { headers: { authorization: `Bearer ${ADMIN}` } }).then(async (res) => {
    reported = true
    return { status: res.status, body: (await res.json()) as { data: Array<{ group: string; name: string | null; display: string | null; requests: number; errors: number; prompt_tokens: number; completion_tokens: number; total_tokens: number; cost_usd: number }> } }
  })
  // Health checks one after another until the report is answered. A statement on the event loop
  // would hold the first of them until its end, so at most one or two could come back before the
  // report; on its own thread they keep coming back (dozens while 200,000 rows are grouped), with no
  // guess of how long the report takes on this machine.
  let answered = 0
  while (!reported) {
    const health = await fetch(`${tg.url}/health`)
    expect(health.status).toBe(200)
    if (!reported) answered++
  }
  expect(answered).toBeGreaterThanOrEqual(3)
  const { status, body } = await report
  expect(status).toBe(200)
  expect(body.data).toHaveLength(40)
  expect(body.data[0]).toEqual({ group: 'usr_0', name: null, display: null, requests: ROWS / 40, errors: ROWS / 40, prompt_tokens: ROWS / 40, completion_tokens: (ROWS / 40) * 2, total_tokens: (ROWS / 40) * 3, cost_usd: (ROWS / 40) * 0.5 })
}, 60_000)

test('the log listing reads through the thread too', async () => {
  const res = await fetch(`${tg.url}/admin/logs?limit=2&key_id=key_10&status=4xx`, { headers: { authorization: `Bearer ${ADMIN}` } })
  const body = (await res.json()) as { data: Array<{ id: string; status: number; key_id: string; streamed: boolean }>; next_cursor: string | null }
  expect(res.status).toBe(200)
  expect(body.data.map((r) => [r.key_id, r.status, r.streamed])).toEqual([
    ['key_10', 429, false],
    ['key_10', 429, false],
  ])
  expect(body.next_cursor).not.toBeNull()
})
