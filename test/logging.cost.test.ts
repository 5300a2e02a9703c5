/**
 * The cost the logging plugin writes and /admin/usage sums, on SQLite and Postgres: each request's
 * cost and their totals read as the decimal prices make them, without binary float noise
 * (7 × 0.1 + 3 × 0.2 is 1.3000000000000003 in doubles). The upstream is a bare server that states
 * a fixed usage.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { Server } from 'bun'
import { startAuthGateway, userWithKey, type AuthGateway } from './support/auth.ts'
import { logRow, rowCount, waitForRows } from './support/logging.ts'
import { createDatabase } from '../src/db/index.ts'
import { migrateToLatest } from '../src/db/migrate.ts'
import { spendSince, usageBy } from '../plugins/logging/repo.ts'
import { createTestPostgresDatabase, postgresUrlForTests, type TestPostgresDatabase } from './support/services.ts'

const postgresUrl = await postgresUrlForTests('test/logging.cost.test.ts')

/** DeepSeek's usage: its cache hits and misses in fields of its own, no prompt_tokens_details. */
const DEEPSEEK_USAGE = { prompt_tokens: 1_000_000, completion_tokens: 0, total_tokens: 1_000_000, prompt_cache_hit_tokens: 900_000, prompt_cache_miss_tokens: 100_000 }

/** Moonshot's (Kimi's) usage: its cache hits as a top-level cached_tokens. */
const KIMI_USAGE = { prompt_tokens: 1_000_000, completion_tokens: 0, total_tokens: 1_000_000, cached_tokens: 800_000 }

/** What some OpenAI-compatible servers send when they do not count (LocalAI's streams with tools, some proxies). */
const ZERO_USAGE = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 }

/** xAI's usage: reasoning counted apart from completion_tokens, within total_tokens (10,120 + 1,499 + 2,809). */
const XAI_USAGE = {
  prompt_tokens: 10_120,
  completion_tokens: 1_499,
  total_tokens: 14_428,
  prompt_tokens_details: { cached_tokens: 128 },
  completion_tokens_details: { reasoning_tokens: 2_809 },
}

/** An OpenAI-format upstream whose every answer used 7 prompt and 3 completion tokens; `deepseek-*`, `kimi-*`, `grok-*` and `zero-*` models answer with their vendor's usage. */
function fixedUsageUpstream(): { url: string; stop(): Promise<void> } {
  const server: Server<unknown> = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    fetch: async (req) => {
      const body = (await req.json()) as { model: string }
      return Response.json({
        id: 'chatcmpl-fixed',
        object: 'chat.completion',
        created: 0,
        model: body.model,
        choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
        usage: body.model.startsWith('deepseek-') ? DEEPSEEK_USAGE : body.model.startsWith('grok-') ? XAI_USAGE : body.model.startsWith('kimi-') ? KIMI_USAGE : body.model.startsWith('zero-') ? ZERO_USAGE : { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 },
      })
    },
  })
  return { url: `http://127.0.0.1:${server.port}/v1`, stop: () => server.stop(true) }
}

const REQUESTS = 10

/** Ten requests at $0.10 / $0.20 per million tokens, then what the log and the report say. */
function costCases(env: () => Record<string, string>) {
  let upstream: ReturnType<typeof fixedUsageUpstream>
  let gw: AuthGateway
  beforeAll(async () => {
    upstream = fixedUsageUpstream()
    gw = await startAuthGateway(upstream.url, {
      env: env(),
      config: {
        models: [
          { name: 'cheap', pricing: { input: 0.1, output: 0.2 }, targets: [{ provider: 'up', model: 'cheap' }] },
          { name: 'deepseek-chat', pricing: { input: 0.28, cached_input: 0.028, output: 0.42 }, targets: [{ provider: 'up', model: 'deepseek-chat' }] },
          { name: 'grok-4', pricing: { input: 1.25, cached_input: 0.2, output: 2.5 }, targets: [{ provider: 'up', model: 'grok-4' }] },
          { name: 'zero-counter', pricing: { input: 0.1, output: 0.2 }, targets: [{ provider: 'up', model: 'zero-counter' }] },
          { name: 'kimi-k2', pricing: { input: 0.6, cached_input: 0.15, output: 2.5 }, targets: [{ provider: 'up', model: 'kimi-k2' }] },
        ],
        plugins: [{ use: 'auth', options: { demo_key: false } }, 'logging'],
      },
    })
  })
  afterAll(async () => {
    await gw?.close()
    await upstream?.stop()
  })

  /** The log row of one chat request to `model` by a new key. */
  async function onlyRow(model: string): Promise<Record<string, unknown>> {
    const { key } = await userWithKey(gw)
    const before = await rowCount(gw.db)
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
    })
    expect(res.status).toBe(200)
    await res.text()
    await waitForRows(gw.db, before + 1)
    const rows = (await gw.adminOk<{ data: Array<Record<string, unknown>> }>('GET', `/admin/logs?key_id=${key.id}`)).data
    expect(rows.length).toBe(1)
    return rows[0]!
  }

  test("each request's cost and the report's total are the decimal amounts", async () => {
    const { key } = await userWithKey(gw)
    for (let i = 0; i < REQUESTS; i++) {
      const res = await fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'cheap', messages: [{ role: 'user', content: 'hi' }] }),
      })
      expect(res.status).toBe(200)
      await res.text()
    }
    await waitForRows(gw.db, REQUESTS)
    const rows = (await gw.adminOk<{ data: Array<{ cost_usd: number }> }>('GET', `/admin/logs?key_id=${key.id}`)).data
    expect(rows.map((r) => r.cost_usd)).toEqual(Array.from({ length: REQUESTS }, () => 0.0000013))
    const usage = await gw.adminOk<{ data: Array<{ group: string; cost_usd: number }> }>('GET', `/admin/usage?group_by=key&key_id=${key.id}`)
    expect(usage.data).toMatchObject([{ group: key.id, cost_usd: 0.000013 }])
  })

  test("DeepSeek's cache hits (prompt_cache_hit_tokens) are cached tokens, at the cached_input price", async () => {
    const row = await onlyRow('deepseek-chat')
    // 100,000 misses at $0.28 and 900,000 hits at $0.028 a million.
    expect(row).toMatchObject({ prompt_tokens: 1_000_000, cached_tokens: 900_000, cost_usd: 0.0532 })
  })

  test("Moonshot's cache hits (a top-level usage.cached_tokens) are cached tokens, at the cached_input price", async () => {
    // 200,000 misses at $0.60 and 800,000 hits at $0.15 a million.
    expect(await onlyRow('kimi-k2')).toMatchObject({ prompt_tokens: 1_000_000, cached_tokens: 800_000, cost_usd: 0.24 })
  })

  test('a usage of all zeros for a real answer is no usage: the gateway counts the tokens itself', async () => {
    const row = await onlyRow('zero-counter')
    expect(row).toMatchObject({ usage_source: 'estimated', completion_tokens: 1 })
    expect(row.prompt_tokens as number).toBeGreaterThan(0)
    expect(row.cost_usd as number).toBeGreaterThan(0)
  })

  test("xAI's reasoning tokens, outside its completion_tokens but within its total, are output tokens", async () => {
    const row = await onlyRow('grok-4')
    // 9,992 at $1.25, 128 cached at $0.20, 1,499 + 2,809 out at $2.50 a million: what xAI bills.
    expect(row).toMatchObject({ prompt_tokens: 10_120, completion_tokens: 4_308, cached_tokens: 128, total_tokens: 14_428, cost_usd: 0.0232856 })
  })
}

describe('request cost on SQLite', () => {
  costCases(() => ({}))
})

describe.skipIf(postgresUrl === null)('request cost on Postgres', () => {
  let database: TestPostgresDatabase | undefined
  beforeAll(async () => {
    database = await createTestPostgresDatabase(postgresUrl!, 'logging_cost')
  })
  afterAll(() => database?.drop())
  costCases(() => ({ DATABASE_URL: database!.url, SLUICE_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64') }))
})

/**
 * Sums of many small costs straight from the log, as /admin/usage and budget alerts read them: a
 * double's addition row after row (Postgres' sum) drifts past what rounding to 15 digits hides
 * (2,400 costs of $0.00025 made 0.599999999999962); each dialect's sum is the exact one.
 */
function manySmallCosts(url: () => string) {
  test('2,400 costs of $0.00025 sum to 0.6, and a mix to its decimal total, in /admin/usage and in budget spend', async () => {
    const handle = await createDatabase(url())
    try {
      await migrateToLatest(handle.db)
      const at = new Date().toISOString()
      const rows = Array.from({ length: 2400 }, (_, i) => logRow(`req_small_${i}`, at, { user_id: 'usr_small', cost_usd: 0.00025 }))
      // 3,000 more of a second user: $0.0000013, $0.00025 and $0.1 in turn, exactly 100.2513 in all.
      const mix = [0.0000013, 0.00025, 0.1]
      rows.push(...Array.from({ length: 3000 }, (_, i) => logRow(`req_mix_${i}`, at, { user_id: 'usr_mix', cost_usd: mix[i % 3]! })))
      for (let i = 0; i < rows.length; i += 500) await handle.db.insertInto('request_logs').values(rows.slice(i, i + 500)).execute()
      const report = await usageBy(handle.db, 'user', {}, 10)
      expect(report.map((g) => [g.group, g.cost_usd])).toEqual([
        ['usr_mix', 100.2513],
        ['usr_small', 0.6],
      ])
      const spend = await spendSince(handle.db, 'user_id', ['usr_small', 'usr_mix'], null, new Date(Date.now() + 60_000).toISOString())
      expect(spend.get('usr_small')).toEqual({ tokens: expect.any(Number), usd: 0.6, closed: { tokens: expect.any(Number), usd: 0.6 } })
      expect(spend.get('usr_mix')?.usd).toBe(100.2513)
      expect(spend.get('usr_mix')?.closed.usd).toBe(100.2513)
    } finally {
      await handle.close()
    }
  })
}

describe('many small costs summed on SQLite', () => manySmallCosts(() => 'sqlite::memory:'))

describe.skipIf(postgresUrl === null)('many small costs summed on Postgres', () => {
  let pg: TestPostgresDatabase
  beforeAll(async () => {
    pg = await createTestPostgresDatabase(postgresUrl!, 'logging_small_costs')
  })
  afterAll(() => pg.drop())
  manySmallCosts(() => pg.url)
})
