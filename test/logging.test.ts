/**
 * The logging plugin through a listening gateway, the official HTTP client side and the mock
 * upstream: the rows it writes (every column), idempotent writes, the queue bound and its drop
 * counter, the flush on close, retention, the analytics routes (on SQLite and Postgres), and
 * the structured log line.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createDatabase, type DatabaseHandle } from '../src/db/index.ts'
import { migrateToLatest } from '../src/db/migrate.ts'
import type { RequestLogInsert } from '../src/db/schema.ts'
import { deleteOlderThan } from '../plugins/logging/repo.ts'
import { requestLogSink } from '../plugins/logging/sink.ts'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { ADMIN_KEY, startAuthGateway, userWithKey, type AuthGateway } from './support/auth.ts'
import { startGateway, upstreamConfig, type TestGateway } from './support/gateway.ts'
import { REQUEST_ID, expectError, postJson, waitFor } from './support/http.ts'
import { capturingLogger, lockSqlite, logRow, loggingHooks, rowCount, waitForRows } from './support/logging.ts'
import { sampleValue, scrape } from './support/metrics.ts'
import { createTestPostgresDatabase, postgresUrlForTests, type TestPostgresDatabase } from './support/services.ts'

const postgresUrl = await postgresUrlForTests('test/logging.test.ts')
const PRICING = { input: 2, output: 8 }
const messages = [{ role: 'user', content: 'hello there' }]

let upstream: MockUpstream
const scratch = mkdtempSync(join(tmpdir(), 'sluice-logging-test-'))
beforeAll(async () => {
  upstream = await startMockUpstream()
})
afterAll(async () => {
  await upstream.stop()
  rmSync(scratch, { recursive: true, force: true })
})

describe('request log rows', () => {
  let gw: AuthGateway
  beforeAll(async () => {
    gw = await startAuthGateway(upstream.url, {
      config: {
        models: [
          { name: 'mock-gpt', targets: [{ provider: 'up', model: 'mock-gpt' }], pricing: PRICING },
          { name: 'broken', targets: [{ provider: 'up', model: 'mock-fail-500' }] },
        ],
        plugins: [{ use: 'auth', options: { demo_key: false } }, { use: 'logging', options: { flush_ms: 10, trust_proxy: true } }],
      },
    })
  })
  afterAll(() => gw.close())

  const row = async (id: string) => {
    const deadline = Date.now() + 5000
    while (Date.now() < deadline) {
      const r = await gw.db.selectFrom('request_logs').selectAll().where('id', '=', id).executeTakeFirst()
      if (r) return r
      await Bun.sleep(10)
    }
    throw new Error(`no request_logs row for ${id}`)
  }

  test('a chat completion: every column, from the key, the route, the usage and the client', async () => {
    const { userId, teamId, key } = await userWithKey(gw, {}, { team: true })
    const before = Date.now()
    const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages, max_tokens: 5 }, {
      authorization: `Bearer ${key.key}`,
      'user-agent': 'row-test/1.0',
      'x-forwarded-for': '203.0.113.7, 10.0.0.1',
    })
    const body = (await res.json()) as { usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number } }
    const after = Date.now()
    expect(res.status).toBe(200)
    const id = res.headers.get('x-request-id')!
    expect(id).toMatch(REQUEST_ID)
    const r = await row(id)
    const { prompt_tokens, completion_tokens, total_tokens } = body.usage
    expect({ ...r, at: undefined, latency_ms: undefined } as Record<string, unknown>).toEqual({
      id,
      at: undefined,
      key_id: key.id,
      user_id: userId,
      team_id: teamId,
      environment: 'dev',
      endpoint: 'chat.completions',
      model: 'mock-gpt',
      provider: 'up',
      upstream_model: 'mock-gpt',
      provider_key_id: 'k1',
      status: 200,
      error_code: null,
      prompt_tokens,
      completion_tokens,
      cached_tokens: 0,
      total_tokens,
      cost_usd: (prompt_tokens * PRICING.input + completion_tokens * PRICING.output) / 1_000_000,
      usage_source: 'provider',
      latency_ms: undefined,
      ttft_ms: null,
      streamed: 0,
      // trust_proxy: the first X-Forwarded-For entry.
      client_ip: '203.0.113.7',
      user_agent: 'row-test/1.0',
    })
    // `at` is when the request arrived; the latency fits in the round trip.
    expect(Date.parse(r.at)).toBeGreaterThanOrEqual(before - 5)
    expect(Date.parse(r.at)).toBeLessThanOrEqual(after)
    expect(r.latency_ms).toBeGreaterThanOrEqual(0)
    expect(r.latency_ms).toBeLessThanOrEqual(after - before + 1)
  })

  test('a stream: streamed, time to first token, the usage the provider reported', async () => {
    const { key } = await userWithKey(gw)
    const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages, max_tokens: 4, stream: true, stream_options: { include_usage: true } }, { authorization: `Bearer ${key.key}` })
    const text = await res.text()
    const usageEvent = text
      .split('\n\n')
      .filter((e) => e.includes('"usage":{'))
      .map((e) => JSON.parse(e.slice(6)) as { usage: { prompt_tokens: number; completion_tokens: number } })[0]!
    const r = await row(res.headers.get('x-request-id')!)
    expect(r.streamed).toBe(1)
    expect(r.ttft_ms).not.toBeNull()
    expect(r.ttft_ms!).toBeLessThanOrEqual(r.latency_ms)
    expect([r.prompt_tokens, r.completion_tokens, r.usage_source]).toEqual([usageEvent.usage.prompt_tokens, usageEvent.usage.completion_tokens, 'provider'])
    expect(r.status).toBe(200)
  })

  test('a refused request: no key, no upstream, the error code', async () => {
    const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages }, { authorization: `Bearer sk-dev-${'A'.repeat(40)}` })
    await expectError(res, 'invalid_api_key')
    const r = await row(res.headers.get('x-request-id')!)
    expect(r).toMatchObject({ key_id: null, user_id: null, team_id: null, provider: null, provider_key_id: null, status: 401, error_code: 'invalid_api_key', total_tokens: 0, usage_source: null, model: 'mock-gpt' })
  })

  test('a refused request with a key the gateway knows (revoked): tied to that key, its owner and team', async () => {
    const { userId, teamId, key } = await userWithKey(gw, {}, { team: true })
    await gw.adminOk('POST', `/admin/keys/${key.id}/revoke`, { reason: 'test' })
    const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages }, { authorization: `Bearer ${key.key}` })
    expect(res.status).toBe(401)
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('key_revoked')
    const r = await row(res.headers.get('x-request-id')!)
    expect(r).toMatchObject({ key_id: key.id, user_id: userId, team_id: teamId, provider: null, status: 401, error_code: 'key_revoked', total_tokens: 0 })
  })

  test("a key of another environment that the database knows: refused by its prefix, logged against that key, its owner and team", async () => {
    const { userId, teamId, key } = await userWithKey(gw, { environment: 'prod' }, { team: true })
    const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages }, { authorization: `Bearer ${key.key}` })
    expect([res.status, ((await res.json()) as { error: { code: string } }).error.code]).toEqual([403, 'environment_mismatch'])
    const r = await row(res.headers.get('x-request-id')!)
    expect(r).toMatchObject({ key_id: key.id, user_id: userId, team_id: teamId, environment: 'dev', provider: null, status: 403, error_code: 'environment_mismatch', total_tokens: 0 })
    const listed = await gw.adminOk<{ data: Array<{ id: string }> }>('GET', `/admin/logs?code=environment_mismatch&key_id=${key.id}`)
    expect(listed.data.map((d) => d.id)).toEqual([r.id])
    // A stranger's key of that environment is refused the same way and tied to nothing.
    const stranger = await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages }, { authorization: `Bearer sk-prod-${'C'.repeat(43)}` })
    expect([stranger.status, ((await stranger.json()) as { error: { code: string } }).error.code]).toEqual([403, 'environment_mismatch'])
    expect(await row(stranger.headers.get('x-request-id')!)).toMatchObject({ key_id: null, user_id: null, team_id: null, error_code: 'environment_mismatch' })
  })

  test('an upstream failure: the provider and key that failed, status 502', async () => {
    const { key } = await userWithKey(gw)
    const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'broken', messages }, { authorization: `Bearer ${key.key}` })
    await expectError(res, 'upstream_error')
    const r = await row(res.headers.get('x-request-id')!)
    expect(r).toMatchObject({ key_id: key.id, model: 'broken', provider: 'up', upstream_model: 'mock-fail-500', provider_key_id: 'k1', status: 502, error_code: 'upstream_error' })
  })

  test('GET /admin/logs/:id finds the request a client quotes by its x-request-id (a refusal too); an id not logged is 404 not_found saying why', async () => {
    const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages }, { authorization: `Bearer sk-dev-${'B'.repeat(40)}` })
    await expectError(res, 'invalid_api_key')
    const id = res.headers.get('x-request-id')!
    const stored = await row(id)
    const found = await gw.adminOk<Record<string, unknown>>('GET', `/admin/logs/${id}`)
    expect(found).toEqual({ object: 'request_log', ...stored, streamed: false })
    expect(found).toMatchObject({ id, status: 401, error_code: 'invalid_api_key' })

    const missing = await gw.admin('GET', '/admin/logs/req_never_answered')
    const { message } = await expectError(missing, 'not_found')
    expect(message).toContain('x-request-id')
    expect(message).toContain('30 days')
    const pasted = `sk-dev-${'L'.repeat(40)}`
    const echoed = await expectError(await gw.admin('GET', `/admin/logs/${pasted}`), 'not_found')
    expect(echoed.message).not.toContain(pasted)
    expect((await fetch(`${gw.url}/admin/logs/${id}`)).status).toBe(401)
    // An id the router cannot decode: 400 naming it, not a failure of the gateway.
    expect((await expectError(await gw.admin('GET', '/admin/logs/%ff'), 'invalid_request')).param).toBe('id')
  })

  test('the model list is logged too (an answer the route built itself)', async () => {
    const { key } = await userWithKey(gw)
    const res = await fetch(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${key.key}` } })
    expect(res.status).toBe(200)
    const r = await row(res.headers.get('x-request-id')!)
    expect(r).toMatchObject({ endpoint: 'models.list', key_id: key.id, status: 200, model: null })
  })
})

describe('client address', () => {
  test('without trust_proxy, X-Forwarded-For is ignored: the socket address is logged', async () => {
    const tg = await startGateway(upstreamConfig(upstream.url, { plugins: [{ use: 'logging', options: { flush_ms: 10 } }] }))
    try {
      const res = await postJson(`${tg.url}/v1/chat/completions`, { model: 'mock-gpt', messages }, { 'x-forwarded-for': '198.51.100.1' })
      await res.arrayBuffer()
      const db = tg.gateway.services.db.db
      await waitForRows(db, 1)
      const r = await db.selectFrom('request_logs').selectAll().executeTakeFirstOrThrow()
      expect(r.client_ip).toBe('127.0.0.1')
    } finally {
      await tg.close()
    }
  })

  test('a request sent under a short host name (http://api/v1/…) is routed and its socket address logged', async () => {
    const tg = await startGateway(upstreamConfig(upstream.url, { plugins: [{ use: 'logging', options: { flush_ms: 10 } }] }))
    try {
      const res = await postJson(`${tg.url}/v1/chat/completions`, { model: 'mock-gpt', messages }, { host: 'api' })
      expect(res.status).toBe(200)
      await res.arrayBuffer()
      const db = tg.gateway.services.db.db
      await waitForRows(db, 1)
      expect(await db.selectFrom('request_logs').select(['client_ip', 'endpoint', 'status']).executeTakeFirstOrThrow()).toEqual({ client_ip: '127.0.0.1', endpoint: 'chat.completions', status: 200 })
    } finally {
      await tg.close()
    }
  })

  test('trust_proxy as a number of proxies: the X-Forwarded-For entry that many from the right, which a client cannot choose; with fewer entries, the socket address', async () => {
    const tg = await startGateway(upstreamConfig(upstream.url, { plugins: [{ use: 'logging', options: { flush_ms: 10, trust_proxy: 2 } }] }))
    try {
      const db = tg.gateway.services.db.db
      const ips: Array<string | null> = []
      // A client's own entry, then what the two proxies appended (nginx's $proxy_add_x_forwarded_for, a load balancer).
      for (const [i, forwarded] of ['6.6.6.6, 203.0.113.9, 10.0.0.1', '203.0.113.9'].entries()) {
        const res = await postJson(`${tg.url}/v1/chat/completions`, { model: 'mock-gpt', messages }, { 'x-forwarded-for': forwarded })
        expect(res.status).toBe(200)
        await res.arrayBuffer()
        await waitForRows(db, i + 1)
        ips.push((await db.selectFrom('request_logs').select('client_ip').where('id', '=', res.headers.get('x-request-id')!).executeTakeFirstOrThrow()).client_ip)
      }
      expect(ips).toEqual(['203.0.113.9', '127.0.0.1'])
    } finally {
      await tg.close()
    }
  })

  test('with trust_proxy, a forwarded value that is not an address is not stored', async () => {
    const tg = await startGateway(upstreamConfig(upstream.url, { plugins: [{ use: 'logging', options: { flush_ms: 10, trust_proxy: true } }] }))
    try {
      const res = await postJson(`${tg.url}/v1/chat/completions`, { model: 'mock-gpt', messages }, { 'x-forwarded-for': '<script>alert(1)</script>' })
      await res.arrayBuffer()
      const db = tg.gateway.services.db.db
      await waitForRows(db, 1)
      expect((await db.selectFrom('request_logs').select('client_ip').executeTakeFirstOrThrow()).client_ip).toBe('127.0.0.1')
    } finally {
      await tg.close()
    }
  })
})

/** The same request id written twice (in one batch and in a later one) is stored once, the first version kept. */
async function idempotency(handle: DatabaseHandle, databaseUrl: string | null, mode: 'thread' | 'inline'): Promise<void> {
  await migrateToLatest(handle.db)
  const { write: sink, mode: chosen, close } = requestLogSink(handle, { maxRowsPerStatement: 500, databaseUrl })
  expect(chosen).toBe(mode)
  const at = new Date().toISOString()
  const first = logRow('req_same_id_0001', at, { status: 200, total_tokens: 10 })
  const again = logRow('req_same_id_0001', at, { status: 500, total_tokens: 99 })
  await sink([first, logRow('req_other_0001', at), again], AbortSignal.timeout(5000))
  await sink([again], AbortSignal.timeout(5000))
  // A batch of odd length goes out as several statements: still each id once.
  const many: RequestLogInsert[] = Array.from({ length: 37 }, (_, i) => logRow(`req_many_${i}`, at))
  await sink([...many, ...many.slice(0, 5)], AbortSignal.timeout(5000))
  await sink(many, AbortSignal.timeout(5000))
  expect(await rowCount(handle.db)).toBe(39)
  const stored = await handle.db.selectFrom('request_logs').selectAll().where('id', '=', 'req_same_id_0001').execute()
  expect(stored.map((r) => [r.status, Number(r.total_tokens)])).toEqual([[200, 10]])
  await close()
}

describe('idempotent by request id', () => {
  test('on SQLite, through the gateway\'s connection (in-memory database)', async () => {
    const handle = await createDatabase('sqlite::memory:')
    try {
      await idempotency(handle, 'sqlite::memory:', 'inline')
    } finally {
      await handle.close()
    }
  })
  test('on SQLite, through the writer thread (database file)', async () => {
    const url = `sqlite://${join(scratch, 'idempotent.db')}`
    const handle = await createDatabase(url)
    try {
      await idempotency(handle, url, 'thread')
    } finally {
      await handle.close()
    }
  })
  describe.skipIf(postgresUrl === null)('on Postgres', () => {
    let pg: TestPostgresDatabase
    beforeAll(async () => {
      pg = await createTestPostgresDatabase(postgresUrl!, 'logging_idem')
    })
    afterAll(() => pg.drop())
    test('through the writer thread and through the gateway\'s connection', async () => {
      const handle = await createDatabase(pg.url)
      try {
        await idempotency(handle, pg.url, 'thread')
        await handle.db.deleteFrom('request_logs').execute()
        await idempotency(handle, null, 'inline')
      } finally {
        await handle.close()
      }
    })
  })
})

/**
 * Requests whose values no database column takes as they are: a NUL in the model (Postgres
 * text refuses it), token counts past 2^31-1 (Postgres integer) and a cost that overflows to
 * Infinity (null by the time it reaches the writer thread: NOT NULL, on both databases). Each
 * row is stored in a form the database takes, and the rows after it are written too.
 */
async function unwritableValues(databaseUrl: string): Promise<void> {
  const tg = await startGateway(
    upstreamConfig(upstream.url, {
      models: [{ name: 'mock-gpt', targets: [{ provider: 'up', model: 'mock-gpt' }], pricing: PRICING }],
      plugins: [{ use: 'logging', options: { flush_ms: 10, retry_base_ms: 20, retry_max_ms: 50 } }],
    }),
    { env: { DATABASE_URL: databaseUrl } },
  )
  try {
    const ids: string[] = []
    const send = async (model: string) => {
      const res = await postJson(`${tg.url}/v1/chat/completions`, { model, messages, max_tokens: 2 })
      await res.arrayBuffer()
      ids.push(res.headers.get('x-request-id')!)
      return res.status
    }
    // Not a model the gateway serves: refused, and logged with the name the client sent.
    expect(await send('mock\u0000gpt')).toBe(404)
    const huge = 1e308
    upstream.setFailure({
      status: 200,
      times: 1,
      body: {
        id: 'chatcmpl-huge',
        object: 'chat.completion',
        created: 1,
        model: 'mock-gpt',
        choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: huge, completion_tokens: huge, total_tokens: huge, prompt_tokens_details: { cached_tokens: 3_000_000_000 } },
      },
    })
    expect(await send('mock-gpt')).toBe(200)
    expect(await send('mock-gpt')).toBe(200)
    const db = tg.gateway.services.db.db
    await waitForRows(db, 3, 5000)
    const stored = await db.selectFrom('request_logs').selectAll().where('id', 'in', ids).execute()
    const byId = new Map(stored.map((r) => [r.id, r]))
    expect(byId.get(ids[0]!)).toMatchObject({ model: 'mockgpt', status: 404 })
    const big = byId.get(ids[1]!)!
    expect([big.prompt_tokens, big.completion_tokens, big.cached_tokens, big.total_tokens].map(Number)).toEqual([2_147_483_647, 2_147_483_647, 2_147_483_647, 2_147_483_647])
    expect(Number(big.cost_usd)).toBe(0)
    expect(byId.get(ids[2]!)).toMatchObject({ model: 'mock-gpt', status: 200 })
    // The rows are in the database before the writer thread's word of them reaches the queue.
    await waitFor(() => loggingHooks(tg.gateway).stats().queued === 0, 'the queue to empty')
    expect(loggingHooks(tg.gateway).stats()).toMatchObject({ queued: 0, write_errors: 0 })
  } finally {
    upstream.setFailure(null)
    await tg.close()
  }
}

describe('values no database column takes as they are', () => {
  test('on SQLite, through the writer thread', async () => {
    await unwritableValues(`sqlite://${join(scratch, 'unwritable.db')}`)
  })
  describe.skipIf(postgresUrl === null)('on Postgres', () => {
    let pg: TestPostgresDatabase
    beforeAll(async () => {
      pg = await createTestPostgresDatabase(postgresUrl!, 'logging_unwritable')
    })
    afterAll(() => pg.drop())
    test('through the writer thread', async () => {
      await unwritableValues(pg.url)
    })
  })
})

describe('queue bound, drops, and the flush on close', () => {
  test('while the database refuses writes, responses are unaffected, rows wait up to queue_size, the newest beyond it are dropped and counted', async () => {
    const file = join(scratch, 'bound.db')
    const tg = await startGateway(upstreamConfig(upstream.url, { plugins: [{ use: 'logging', options: { queue_size: 5, flush_ms: 10, retry_base_ms: 20, retry_max_ms: 50 } }] }), {
      env: { DATABASE_URL: `sqlite://${file}` },
    })
    try {
      const lock = lockSqlite(file)
      const ids: string[] = []
      try {
        for (let i = 0; i < 12; i++) {
          const res = await postJson(`${tg.url}/v1/chat/completions`, { model: 'mock-gpt', messages, max_tokens: 2 })
          expect(res.status).toBe(200)
          await res.arrayBuffer()
          ids.push(res.headers.get('x-request-id')!)
        }
        let m = await scrape(tg.url)
        for (let i = 0; i < 100 && !sampleValue(m, 'sluice_request_log_write_errors_total'); i++) {
          await Bun.sleep(20)
          m = await scrape(tg.url)
        }
        expect(sampleValue(m, 'sluice_request_log_queue_depth')).toBe(5)
        expect(sampleValue(m, 'sluice_request_log_queue_capacity')).toBe(5)
        expect(sampleValue(m, 'sluice_request_log_dropped_total', { reason: 'queue_full' })).toBe(7)
        expect(sampleValue(m, 'sluice_request_log_write_errors_total')!).toBeGreaterThanOrEqual(1)
        expect(loggingHooks(tg.gateway).stats()).toMatchObject({ queued: 5, written: 0, dropped: 7 })
      } finally {
        lock.release()
      }
      const db = tg.gateway.services.db.db
      await waitForRows(db, 5)
      await Bun.sleep(50)
      // Drop-newest: the five that waited are the first five requests.
      const stored = await db.selectFrom('request_logs').select('id').execute()
      expect(stored.map((r) => r.id).sort()).toEqual(ids.slice(0, 5).sort())
      const m = await scrape(tg.url)
      expect(sampleValue(m, 'sluice_request_log_written_total')).toBe(5)
      expect(sampleValue(m, 'sluice_request_log_queue_depth')).toBe(0)
    } finally {
      await tg.close()
    }
  })

  test('close writes what is still queued, without waiting for flush_ms', async () => {
    const handle = await createDatabase('sqlite::memory:')
    await migrateToLatest(handle.db)
    try {
      const tg = await startGateway(upstreamConfig(upstream.url, { plugins: [{ use: 'logging', options: { flush_ms: 60_000, batch_size: 1000 } }] }), {
        gateway: { services: { db: handle } },
      })
      for (let i = 0; i < 7; i++) await (await postJson(`${tg.url}/v1/chat/completions`, { model: 'mock-gpt', messages })).arrayBuffer()
      await Bun.sleep(50)
      expect(await rowCount(handle.db)).toBe(0)
      expect(loggingHooks(tg.gateway).stats().queued).toBe(7)
      await tg.close()
      expect(await rowCount(handle.db)).toBe(7)
    } finally {
      await handle.close()
    }
  })

  test('close is bounded: with the database still refusing writes it gives up after close_timeout_ms and reports the rows it lost', async () => {
    const file = join(scratch, 'close.db')
    const { logger, lines } = capturingLogger('warn')
    const tg = await startGateway(upstreamConfig(upstream.url, { plugins: [{ use: 'logging', options: { flush_ms: 10, retry_base_ms: 20, close_timeout_ms: 300 } }] }), {
      env: { DATABASE_URL: `sqlite://${file}` },
      gateway: { logger },
    })
    const lock = lockSqlite(file)
    try {
      for (let i = 0; i < 3; i++) await (await postJson(`${tg.url}/v1/chat/completions`, { model: 'mock-gpt', messages })).arrayBuffer()
      const started = performance.now()
      await tg.close()
      expect(performance.now() - started).toBeLessThan(3000)
    } finally {
      lock.release()
    }
    expect(lines.some((l) => l.msg === 'could not write request logs; the rows stay queued and are retried')).toBe(true)
    expect(lines.find((l) => l.msg === 'request log rows dropped')).toMatchObject({ level: 'error', reason: 'shutdown', rows: 3 })
  })
})

describe('retention', () => {
  const DAY = 86_400_000
  test('deleteOlderThan removes old rows in batches of the given size, oldest first, and nothing newer', async () => {
    const handle = await createDatabase('sqlite::memory:')
    await migrateToLatest(handle.db)
    try {
      const now = Date.now()
      const rows = [
        ...Array.from({ length: 25 }, (_, i) => logRow(`req_old_${String(i).padStart(2, '0')}`, new Date(now - 40 * DAY + i * 1000).toISOString())),
        ...Array.from({ length: 3 }, (_, i) => logRow(`req_new_${i}`, new Date(now - DAY).toISOString())),
      ]
      await handle.db.insertInto('request_logs').values(rows).execute()
      const cutoff = new Date(now - 30 * DAY).toISOString()
      const batches: number[] = []
      for (;;) {
        const n = await deleteOlderThan(handle.db, cutoff, 10)
        batches.push(n)
        if (n < 10) break
        // Oldest first: what remains of the old rows is the newest of them.
        const oldest = await handle.db.selectFrom('request_logs').select('id').orderBy('at').executeTakeFirstOrThrow()
        expect(oldest.id).toBe(`req_old_${String(batches.length * 10).padStart(2, '0')}`)
      }
      expect(batches).toEqual([10, 10, 5])
      expect((await handle.db.selectFrom('request_logs').select('id').orderBy('id').execute()).map((r) => r.id)).toEqual(['req_new_0', 'req_new_1', 'req_new_2'])
    } finally {
      await handle.close()
    }
  })

  test('the plugin deletes rows older than retention_days on its timer', async () => {
    const { logger, lines } = capturingLogger('info')
    const tg = await startGateway(upstreamConfig(upstream.url, { plugins: [{ use: 'logging', options: { retention_days: 30, retention_check_ms: 50, retention_batch: 4 } }] }), {
      gateway: { logger },
    })
    try {
      const db = tg.gateway.services.db.db
      const now = Date.now()
      await db
        .insertInto('request_logs')
        .values([
          ...Array.from({ length: 10 }, (_, i) => logRow(`req_expired_${i}`, new Date(now - 31 * DAY).toISOString())),
          logRow('req_recent', new Date(now - 29 * DAY).toISOString()),
        ])
        .execute()
      const deadline = Date.now() + 5000
      while ((await rowCount(db)) > 1 && Date.now() < deadline) await Bun.sleep(20)
      expect((await db.selectFrom('request_logs').select('id').execute()).map((r) => r.id)).toEqual(['req_recent'])
      expect(lines.find((l) => l.msg === 'deleted old request logs')).toMatchObject({ rows: 10 })
    } finally {
      await tg.close()
    }
  })

  test('a retention_days reaching back before year 0 keeps every row, quietly: no time is older', async () => {
    const { logger, lines } = capturingLogger('info')
    const tg = await startGateway(upstreamConfig(upstream.url, { plugins: [{ use: 'logging', options: { retention_days: 1e9 } }] }), { gateway: { logger } })
    try {
      const db = tg.gateway.services.db.db
      await db.insertInto('request_logs').values(logRow('req_ancient', '0001-01-01T00:00:00.000Z')).execute()
      await loggingHooks(tg.gateway).prune()
      expect([await rowCount(db), lines.filter((l) => l.level !== 'info').map((l) => l.msg)]).toEqual([1, []])
    } finally {
      await tg.close()
    }
  })
})

/** Fixture rows over 3 days, 3 keys, 2 users, 2 teams, 2 models, 2 provider keys, several statuses. */
function analyticsFixture(): RequestLogInsert[] {
  const rows: RequestLogInsert[] = []
  const day = ['2026-03-01', '2026-03-02', '2026-03-03']
  for (let i = 0; i < 30; i++) {
    const key = ['key_a', 'key_b', 'key_c'][i % 3]!
    const user = key === 'key_c' ? 'usr_2' : 'usr_1'
    const team = key === 'key_a' ? 'team_x' : key === 'key_b' ? 'team_y' : null
    const status = i % 7 === 0 ? 429 : i % 11 === 0 ? 502 : 200
    rows.push(
      logRow(`req_fx_${String(i).padStart(2, '0')}`, `${day[i % 3]}T${String(10 + (i % 10)).padStart(2, '0')}:00:00.000Z`, {
        key_id: key,
        user_id: user,
        team_id: team,
        model: i % 2 === 0 ? 'mock-gpt' : 'other-gpt',
        provider: 'up',
        provider_key_id: i % 4 === 0 ? 'k2' : 'k1',
        status,
        error_code: status === 429 ? 'rate_limit_exceeded' : status === 502 ? 'upstream_error' : null,
        prompt_tokens: status === 200 ? 10 + i : 0,
        completion_tokens: status === 200 ? i : 0,
        total_tokens: status === 200 ? 10 + 2 * i : 0,
        cost_usd: status === 200 ? (10 + 2 * i) / 1000 : 0,
      }),
    )
  }
  // A refusal before any key was known: groups as null.
  rows.push(logRow('req_fx_anon', '2026-03-02T23:59:59.999Z', { status: 401, error_code: 'missing_api_key', provider: null, provider_key_id: null }))
  // Two requests their clients abandoned, before the answer (499) and mid-stream (200): no errors.
  rows.push(logRow('req_fx_left_json', '2026-03-01T09:00:00.000Z', { key_id: 'key_a', user_id: 'usr_1', team_id: 'team_x', status: 499, error_code: 'client_closed' }))
  rows.push(logRow('req_fx_left_stream', '2026-03-03T09:00:00.000Z', { key_id: 'key_b', user_id: 'usr_1', team_id: 'team_y', status: 200, error_code: 'client_closed', streamed: 1, prompt_tokens: 7, completion_tokens: 2, total_tokens: 9, cost_usd: 0.009 }))
  return rows
}

function expectedGroups(rows: RequestLogInsert[], group: (r: RequestLogInsert) => string | null) {
  const out = new Map<string | null, { group: string | null; requests: number; errors: number; prompt_tokens: number; completion_tokens: number; total_tokens: number; cost_usd: number; name: null; display: null }>()
  for (const r of rows) {
    const g = group(r)
    // No key, user or team of these rows is in the database (no auth plugin): none is named.
    const e = out.get(g) ?? { group: g, requests: 0, errors: 0, prompt_tokens: 0, completion_tokens: 0, total_tokens: 0, cost_usd: 0, name: null, display: null }
    e.requests++
    if (r.status >= 400 && r.error_code !== 'client_closed') e.errors++
    e.prompt_tokens += r.prompt_tokens ?? 0
    e.completion_tokens += r.completion_tokens ?? 0
    e.total_tokens += r.total_tokens ?? 0
    e.cost_usd += r.cost_usd ?? 0
    out.set(g, e)
  }
  return [...out.values()]
}

const byGroup = (a: { group: string | null }, b: { group: string | null }) => String(a.group).localeCompare(String(b.group))
const roundCost = <T extends { cost_usd: number }>(list: T[]) => list.map((g) => ({ ...g, cost_usd: Math.round(g.cost_usd * 1e9) / 1e9 }))

/**
 * A gateway with only logging, its request log filled with `rows` directly, booted and closed
 * around the calling describe: what the admin reports read. `ok` reads a 200's JSON.
 */
function reportGateway(databaseUrl: () => string, rows: RequestLogInsert[]) {
  let tg: TestGateway
  beforeAll(async () => {
    tg = await startGateway(upstreamConfig(upstream.url, { plugins: ['logging'] }), { env: { DATABASE_URL: databaseUrl(), SLUICE_ADMIN_KEY: ADMIN_KEY } })
    await tg.gateway.services.db.db.insertInto('request_logs').values(rows).execute()
  })
  afterAll(() => tg.close())
  const admin = (path: string, headers: Record<string, string> = { authorization: `Bearer ${ADMIN_KEY}` }) => fetch(`${tg.url}${path}`, { headers })
  const ok = async <T>(path: string): Promise<T> => {
    const res = await admin(path)
    const text = await res.text()
    if (res.status !== 200) throw new Error(`${path} → ${res.status} ${text}`)
    return JSON.parse(text) as T
  }
  return { admin, ok }
}

function analyticsSuite(databaseUrl: () => string): void {
  const rows = analyticsFixture()
  const { admin, ok } = reportGateway(databaseUrl, rows)
  type UsageList = { object: string; group_by: string; data: Array<{ group: string | null; cost_usd: number }>; next_cursor: null }
  type LogList = { object: string; data: Array<{ id: string; at: string; streamed: boolean; status: number }>; next_cursor: string | null }


  const groupings: Array<[string, (r: RequestLogInsert) => string | null]> = [
    ['key', (r) => r.key_id ?? null],
    ['user', (r) => r.user_id ?? null],
    ['team', (r) => r.team_id ?? null],
    ['model', (r) => r.model ?? null],
    ['provider_key', (r) => (r.provider && r.provider_key_id ? `${r.provider}/${r.provider_key_id}` : null)],
    ['day', (r) => r.at.slice(0, 10)],
  ]
  for (const [by, group] of groupings) {
    test(`GET /admin/usage?group_by=${by}: requests, errors, tokens and cost per group, most requests first`, async () => {
      const body = await ok<UsageList>(`/admin/usage?group_by=${by}`)
      expect(body.object).toBe('list')
      expect(body.group_by).toBe(by)
      expect(body.next_cursor).toBeNull()
      expect(roundCost(body.data).sort(byGroup)).toEqual(roundCost(expectedGroups(rows, group)).sort(byGroup))
      const counts = body.data.map((g) => (g as unknown as { requests: number }).requests)
      expect(counts).toEqual([...counts].sort((a, b) => b - a))
    })
  }

  test('usage over [from, to) and filtered by key; group_by defaults to key', async () => {
    const from = '2026-03-02T00:00:00Z'
    const to = '2026-03-03T00:00:00Z'
    const inRange = rows.filter((r) => r.at >= '2026-03-02T00:00:00.000Z' && r.at < '2026-03-03T00:00:00.000Z')
    const body = await ok<UsageList>(`/admin/usage?from=${from}&to=${to}`)
    expect(body.group_by).toBe('key')
    expect(roundCost(body.data).sort(byGroup)).toEqual(roundCost(expectedGroups(inRange, (r) => r.key_id ?? null)).sort(byGroup))
    const onlyB = await ok<UsageList>(`/admin/usage?group_by=model&key_id=key_b`)
    expect(roundCost(onlyB.data).sort(byGroup)).toEqual(roundCost(expectedGroups(rows.filter((r) => r.key_id === 'key_b'), (r) => r.model ?? null)).sort(byGroup))
  })

  test('GET /admin/logs: newest first, cursor pages cover every row exactly once', async () => {
    const seen: string[] = []
    let cursor: string | null = null
    let pages = 0
    do {
      const page: LogList = await ok<LogList>(`/admin/logs?limit=7${cursor ? `&before=${cursor}` : ''}`)
      expect(page.object).toBe('list')
      expect(page.data.length).toBeLessThanOrEqual(7)
      seen.push(...page.data.map((r) => r.id))
      cursor = page.next_cursor
      pages++
    } while (cursor && pages < 20)
    const expected = [...rows].sort((a, b) => (a.at === b.at ? b.id.localeCompare(a.id) : b.at.localeCompare(a.at))).map((r) => r.id)
    expect(seen).toEqual(expected)
    expect(pages).toBe(Math.ceil(rows.length / 7))
  })

  test('GET /admin/logs filters: key, user, model, exact status, status class, code, time', async () => {
    const ids = async (q: string) => (await ok<LogList>(`/admin/logs?limit=1000&${q}`)).data.map((r) => r.id).sort()
    const want = (f: (r: RequestLogInsert) => boolean) => rows.filter(f).map((r) => r.id).sort()
    expect(await ids('key_id=key_a')).toEqual(want((r) => r.key_id === 'key_a'))
    expect(await ids('user_id=usr_2')).toEqual(want((r) => r.user_id === 'usr_2'))
    expect(await ids('model=other-gpt&key_id=key_c')).toEqual(want((r) => r.model === 'other-gpt' && r.key_id === 'key_c'))
    expect(await ids('status=429')).toEqual(want((r) => r.status === 429))
    expect(await ids('status=4xx')).toEqual(want((r) => r.status >= 400 && r.status < 500))
    expect(await ids('status=5xx')).toEqual(want((r) => r.status >= 500))
    expect(await ids('code=upstream_error')).toEqual(want((r) => r.error_code === 'upstream_error'))
    expect(await ids('before=2026-03-02T00:00:00Z')).toEqual(want((r) => r.at < '2026-03-02T00:00:00.000Z'))
    const one = (await ok<LogList>('/admin/logs?limit=1&key_id=key_a')).data[0]!
    expect(one).toMatchObject({ object: 'request_log', streamed: false })
  })

  test('GET /admin/logs/:id answers the same row as the list, numbers as numbers', async () => {
    const listed = (await ok<LogList>('/admin/logs?limit=1000')).data
    for (const entry of [listed[0]!, listed[listed.length - 1]!]) expect(await ok(`/admin/logs/${entry.id}`)).toEqual(entry)
  })

  test('refusals: no admin key, bad group_by, limit, cursor and times', async () => {
    const { expectEnvelope } = await import('./support/auth.ts')
    await expectEnvelope(await admin('/admin/usage', {}), 'invalid_admin_key')
    await expectEnvelope(await admin('/admin/logs', { authorization: 'Bearer wrong' }), 'invalid_admin_key')
    await expectEnvelope(await admin('/admin/usage?group_by=color'), 'invalid_request')
    expect((await expectEnvelope(await admin('/admin/logs?limit=0'), 'invalid_request')).param).toBe('limit')
    expect((await expectEnvelope(await admin('/admin/logs?limit=5000'), 'invalid_request')).param).toBe('limit')
    expect((await expectEnvelope(await admin('/admin/logs?before=bm90IGEgY3Vyc29y'), 'invalid_request')).param).toBe('before')
    expect((await expectEnvelope(await admin('/admin/usage?from=yesterday'), 'invalid_request')).param).toBe('from')
    expect((await expectEnvelope(await admin('/admin/usage?from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z'), 'invalid_request')).param).toBe('from')
  })

  test('times: an offset is applied before comparing (UTC), lower-case t and z are RFC 3339 too, and a hand-made cursor reads its time the same way', async () => {
    const ids = async (q: string) => (await ok<LogList>(`/admin/logs?limit=1000&${q}`)).data.map((r) => r.id).sort()
    const want = (f: (r: RequestLogInsert) => boolean) => rows.filter(f).map((r) => r.id).sort()
    const q = encodeURIComponent
    // 15:30 at +05:30 is 10:00 UTC: the rows of 10:00Z on March 2 are at or after it, not before.
    const fromTen = want((r) => r.at >= '2026-03-02T10:00:00.000Z')
    expect(fromTen.length).toBeGreaterThan(0)
    expect(await ids(`from=${q('2026-03-02T15:30:00+05:30')}`)).toEqual(fromTen)
    expect(await ids('from=2026-03-02t10:00:00z')).toEqual(fromTen)
    expect(await ids(`to=${q('2026-03-02T05:00:00-05:00')}`)).toEqual(want((r) => r.at < '2026-03-02T10:00:00.000Z'))
    expect(await ids(`before=${q('2026-03-02T15:30:00+05:30')}`)).toEqual(want((r) => r.at < '2026-03-02T10:00:00.000Z'))
    const cursor = Buffer.from('2026-03-02T15:30:00+05:30|req_zz').toString('base64url')
    expect(await ids(`before=${cursor}`)).toEqual(want((r) => r.at <= '2026-03-02T10:00:00.000Z'))
    const day = await ok<UsageList>(`/admin/usage?group_by=day&from=${q('2026-03-02T05:30:00+05:30')}&to=${q('2026-03-03T05:30:00+05:30')}`)
    expect(roundCost(day.data)).toEqual(roundCost(expectedGroups(rows.filter((r) => r.at.startsWith('2026-03-02')), (r) => r.at.slice(0, 10))))
  })

  test('times that are not RFC 3339 with a time zone are refused, naming the field: impossible dates, no offset (local time), a space, a date alone', async () => {
    const { expectEnvelope } = await import('./support/auth.ts')
    const bad = ['2026-02-30T00:00:00Z', '2026-03-02T00:00:00', '2026-03-02 00:00:00Z', '2026-03-02', '2026-03-02T10:00:00+0530', '2026-03-02T24:00:00Z', '10000-01-01T00:00:00Z']
    for (const value of bad) {
      for (const [path, param] of [['/admin/usage', 'from'], ['/admin/usage', 'to'], ['/admin/logs', 'from'], ['/admin/logs', 'to'], ['/admin/logs', 'before']] as const) {
        const refusal = await expectEnvelope(await admin(`${path}?${param}=${encodeURIComponent(value)}`), 'invalid_request')
        expect([value, path, refusal.param]).toEqual([value, path, param])
      }
    }
    // An offset whose + a URL turned into a space is refused with a hint.
    expect((await expectEnvelope(await admin('/admin/usage?from=2026-03-02T10:00:00+05:30'), 'invalid_request')).message).toContain('%2B')
    // Offsets that take a time out of the years stored times hold.
    expect((await expectEnvelope(await admin(`/admin/logs?to=${encodeURIComponent('9999-12-31T23:00:00-05:00')}`), 'invalid_request')).param).toBe('to')
    for (const at of ['2026-02-30T00:00:00Z', '2026-03-02T00:00:00', '2026-03-02 00:00:00Z']) {
      const cursor = Buffer.from(`${at}|req_x`).toString('base64url')
      expect((await expectEnvelope(await admin(`/admin/logs?before=${cursor}`), 'invalid_request')).param).toBe('before')
    }
  })
}

/**
 * More groups than a small page, with ties in request count at the page boundaries and a null
 * group tied with named ones: 23 keys with 1 to 3 requests each, plus 2 requests with no key.
 */
function usagePagingFixture(): RequestLogInsert[] {
  const rows: RequestLogInsert[] = []
  for (let i = 0; i < 23; i++) {
    for (let n = 0; n <= i % 3; n++) {
      rows.push(
        logRow(`req_pg_${String(i).padStart(2, '0')}_${n}`, `2026-04-${String(1 + (i % 9)).padStart(2, '0')}T12:00:0${n}.000Z`, {
          key_id: `key_${String(i).padStart(2, '0')}`,
          model: i % 5 === 0 ? null : `m_${i % 7}`,
          status: n === 1 ? 500 : 200,
          total_tokens: i + n,
        }),
      )
    }
  }
  rows.push(logRow('req_pg_anon_0', '2026-04-03T01:00:00.000Z', { model: null, status: 401 }), logRow('req_pg_anon_1', '2026-04-04T01:00:00.000Z', { model: null, status: 401 }))
  return rows
}

/** The report's order: most requests first, then by group, the null group last. */
const reportOrder = (a: { group: string | null; requests: number }, b: { group: string | null; requests: number }) =>
  b.requests - a.requests || (a.group === null ? 1 : 0) - (b.group === null ? 1 : 0) || (a.group === null || b.group === null ? 0 : a.group < b.group ? -1 : a.group > b.group ? 1 : 0)

function usagePagingSuite(databaseUrl: () => string): void {
  const rows = usagePagingFixture()
  type Group = { group: string | null; requests: number; cost_usd: number }
  type UsagePage = { object: string; group_by: string; data: Group[]; next_cursor: string | null }
  const report = reportGateway(databaseUrl, rows)
  const admin = report.admin
  const ok = (path: string): Promise<UsagePage> => report.ok<UsagePage>(path)


  const groupings: Array<[string, (r: RequestLogInsert) => string | null]> = [
    ['key', (r) => r.key_id ?? null],
    ['model', (r) => r.model ?? null],
    ['day', (r) => r.at.slice(0, 10)],
  ]
  for (const [by, group] of groupings) {
    test(`GET /admin/usage?group_by=${by}: one order on every database (null group last among equal counts), and cursor pages cover every group once`, async () => {
      const expected = expectedGroups(rows, group).sort(reportOrder)
      const whole = await ok(`/admin/usage?group_by=${by}`)
      expect(whole.next_cursor).toBeNull()
      expect(whole.data.map((g) => [g.group, g.requests])).toEqual(expected.map((g) => [g.group, g.requests]))

      // A limit exactly the number of groups is one page with nothing after it.
      expect((await ok(`/admin/usage?group_by=${by}&limit=${expected.length}`)).next_cursor).toBeNull()

      for (const limit of [4, 5]) {
        const seen: Group[] = []
        let cursor: string | null = null
        let pages = 0
        do {
          const page: UsagePage = await ok(`/admin/usage?group_by=${by}&limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`)
          expect(page.data.length).toBeLessThanOrEqual(limit)
          seen.push(...page.data)
          cursor = page.next_cursor
          pages++
        } while (cursor && pages < 50)
        expect(cursor).toBeNull()
        expect(pages).toBe(Math.ceil(expected.length / limit))
        expect(roundCost(seen)).toEqual(roundCost(expected))
      }
    })
  }

  test('the key report exercises both cursor edges at the null group: a page ending on it (limit 4), one ending just before it in a tie (limit 5)', () => {
    const groups = expectedGroups(rows, (r) => r.key_id ?? null).sort(reportOrder)
    const nullAt = groups.findIndex((g) => g.group === null)
    expect(groups[nullAt - 1]!.requests).toBe(groups[nullAt]!.requests)
    expect(nullAt % 4).toBe(3)
    expect(nullAt % 5).toBe(0)
  })

  test('refusals: a cursor that is not one, or one from another grouping', async () => {
    const { expectEnvelope } = await import('./support/auth.ts')
    expect((await expectEnvelope(await admin('/admin/usage?cursor=bm90IGEgY3Vyc29y'), 'invalid_request')).param).toBe('cursor')
    expect((await expectEnvelope(await admin(`/admin/usage?cursor=${Buffer.from('["key",0,null]').toString('base64url')}`), 'invalid_request')).param).toBe('cursor')
    const first = await ok('/admin/usage?group_by=key&limit=2')
    expect(first.next_cursor).not.toBeNull()
    expect((await expectEnvelope(await admin(`/admin/usage?group_by=model&cursor=${first.next_cursor}`), 'invalid_request')).param).toBe('cursor')
  })
}

describe('analytics on SQLite', () => {
  analyticsSuite(() => 'sqlite::memory:')
  describe('usage pages', () => usagePagingSuite(() => 'sqlite::memory:'))

  test('both routes are in Swagger with their query parameters', async () => {
    const tg = await startGateway(upstreamConfig(upstream.url, { plugins: ['logging'] }))
    try {
      const spec = (await (await fetch(`${tg.url}/swagger/json`)).json()) as { paths: Record<string, Record<string, { parameters?: Array<{ name: string; in: string }> }>> }
      const params = (path: string) => (spec.paths[path]?.get?.parameters ?? []).filter((p) => p.in === 'query').map((p) => p.name)
      expect(params('/admin/usage')).toEqual(expect.arrayContaining(['group_by', 'from', 'to']))
      expect(params('/admin/logs')).toEqual(expect.arrayContaining(['key_id', 'user_id', 'model', 'status', 'code', 'limit', 'before']))
      expect(spec.paths['/metrics']?.get).toBeDefined()
    } finally {
      await tg.close()
    }
  })
})

describe.skipIf(postgresUrl === null)('analytics on Postgres', () => {
  let pg: TestPostgresDatabase
  beforeAll(async () => {
    pg = await createTestPostgresDatabase(postgresUrl!, 'logging_analytics')
  })
  afterAll(() => pg.drop())
  analyticsSuite(() => pg.url)
})

describe.skipIf(postgresUrl === null)('usage pages on Postgres', () => {
  let pg: TestPostgresDatabase
  beforeAll(async () => {
    pg = await createTestPostgresDatabase(postgresUrl!, 'logging_usage_pages')
  })
  afterAll(() => pg.drop())
  usagePagingSuite(() => pg.url)
})

/** The request_logs row of a request, once written. */
async function storedRow(gw: AuthGateway, id: string) {
  await waitForRows(gw.db, 1)
  const deadline = Date.now() + 5000
  while (Date.now() < deadline) {
    const r = await gw.db.selectFrom('request_logs').selectAll().where('id', '=', id).executeTakeFirst()
    if (r) return r
    await Bun.sleep(10)
  }
  throw new Error(`no request_logs row for ${id}`)
}

describe('structured log line', () => {
  test('one JSON line per request at info: ids, route, usage, timing, client; never a key; the body only redacted', async () => {
    const { logger, lines, raw } = capturingLogger('info')
    const gw = await startAuthGateway(upstream.url, {
      config: { plugins: [{ use: 'auth', options: { demo_key: false } }, { use: 'logging', options: { flush_ms: 10, log_bodies: 'redacted' } }] },
      gateway: { logger },
    })
    try {
      const { key, userId } = await userWithKey(gw)
      const secretInPrompt = `sk-dev-${'Z'.repeat(40)}`
      const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages: [{ role: 'user', content: `my key is ${secretInPrompt}` }], max_tokens: 3 }, { authorization: `Bearer ${key.key}`, 'user-agent': 'line-test' })
      await res.arrayBuffer()
      const id = res.headers.get('x-request-id')!
      await waitForRows(gw.db, 1)
      const line = lines.find((l) => l.msg === 'request' && l.request_id === id)
      expect(line).toMatchObject({
        level: 'info',
        msg: 'request',
        request_id: id,
        endpoint: 'chat.completions',
        model: 'mock-gpt',
        provider: 'up',
        provider_key_id: 'k1',
        key_id: key.id,
        user_id: userId,
        status: 200,
        error_code: null,
        streamed: false,
        aborted: false,
        client_ip: '127.0.0.1',
        user_agent: 'line-test',
        usage_source: 'provider',
        request_body: { model: 'mock-gpt', max_tokens: 3, messages: [{ role: 'user', content: `[${`my key is ${secretInPrompt}`.length} chars]` }] },
      })
      expect(typeof line!.time).toBe('string')
      expect(typeof line!.latency_ms).toBe('number')
      expect(line!.total_tokens).toBeGreaterThan(0)
      expect(lines.filter((l) => l.msg === 'request' && l.request_id === id).length).toBe(1)
      const all = raw.join('\n')
      for (const secret of [key.key, secretInPrompt, ADMIN_KEY, 'sk-upstream-secret']) expect(all).not.toContain(secret)
      expect(all.toLowerCase()).not.toContain('authorization')
    } finally {
      await gw.close()
    }
  })

  test('a key sent as the model (a client with its arguments swapped) is masked in the row, /admin/logs and the line, as in the error', async () => {
    const { logger, lines, raw } = capturingLogger('info')
    const gw = await startAuthGateway(upstream.url, {
      config: { plugins: [{ use: 'auth', options: { demo_key: false } }, { use: 'logging', options: { flush_ms: 10 } }] },
      gateway: { logger },
    })
    try {
      const { key } = await userWithKey(gw)
      const masked = `${key.key.slice(0, 12)}…${key.key.slice(-4)}`
      for (const model of [key.key, `Bearer ${key.key}`]) {
        const res = await postJson(`${gw.url}/v1/chat/completions`, { model, messages }, { authorization: `Bearer ${key.key}` })
        const { message } = await expectError(res, 'model_not_found')
        expect(message).toContain(masked)
        const id = res.headers.get('x-request-id')!
        const stored = await storedRow(gw, id)
        expect(stored.model).toBe(model.replace(key.key, masked))
        expect((await gw.adminOk<Record<string, unknown>>('GET', `/admin/logs/${id}`)).model).toBe(stored.model)
        expect(lines.find((l) => l.msg === 'request' && l.request_id === id)?.model).toBe(stored.model)
      }
      expect(raw.join('\n')).not.toContain(key.key)
      // A model whose name merely starts like a key is logged as sent.
      const res = await postJson(`${gw.url}/v1/chat/completions`, { model: 'sk-dev-model', messages }, { authorization: `Bearer ${key.key}` })
      await expectError(res, 'model_not_found')
      expect((await storedRow(gw, res.headers.get('x-request-id')!)).model).toBe('sk-dev-model')
    } finally {
      await gw.close()
    }
  })

  test('bodies are off by default, and LOG_LEVEL above info writes no request lines', async () => {
    for (const level of ['info', 'warn'] as const) {
      const { logger, lines } = capturingLogger(level)
      const tg = await startGateway(upstreamConfig(upstream.url, { plugins: [{ use: 'logging', options: { flush_ms: 10 } }] }), { gateway: { logger } })
      try {
        await (await postJson(`${tg.url}/v1/chat/completions`, { model: 'mock-gpt', messages })).arrayBuffer()
        await waitForRows(tg.gateway.services.db.db, 1)
        const requestLines = lines.filter((l) => l.msg === 'request')
        if (level === 'info') {
          expect(requestLines.length).toBe(1)
          expect(requestLines[0]).not.toHaveProperty('request_body')
        } else expect(requestLines.length).toBe(0)
      } finally {
        await tg.close()
      }
    }
  })
})
