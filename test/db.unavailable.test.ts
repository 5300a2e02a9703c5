/**
 * The gateway's database unreachable or stuck: a request it cannot serve is answered 503
 * `not_ready` with Retry-After (DESIGN.md: a 500 is a bug), on /v1 (a key the cache does not
 * hold) and on /admin, and promptly; a warm key keeps working.
 *
 * - outage: a private Postgres (test/support/postgres-instance.ts) stopped, then started again;
 * - lock: `api_keys` locked by another session on the shared Postgres, which the server's
 *   statement_timeout (DATABASE_URL `?statement_timeout=`, 5 s by default) ends;
 * - silence: a server that accepts the connection and never answers, which the key lookup's own
 *   deadline (KEY_LOOKUP_TIMEOUT_MS) ends.
 *
 * Needs Postgres: skipped with a printed line without it, a failure with CI set.
 */
import { SQL } from 'bun'
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { Socket, TCPSocketListener } from 'bun'
import { KEY_LOOKUP_TIMEOUT_MS, KeyVerifier } from '../plugins/auth/verify.ts'
import { definePlugin } from '../src/plugin.ts'
import { createDatabase, type DatabaseHandle } from '../src/db/index.ts'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { chat, startAuthGateway, userWithKey, type AuthGateway } from './support/auth.ts'
import { startGateway, upstreamConfig } from './support/gateway.ts'
import { capturingLogger } from './support/logging.ts'
import { REQUEST_ID, type ErrorEnvelopeBody } from './support/http.ts'
import { startPostgresInstance, type PostgresInstance } from './support/postgres-instance.ts'
import { createTestPostgresDatabase, postgresUrlForTests, type TestPostgresDatabase } from './support/services.ts'

const encryptionKey = Buffer.alloc(32, 3).toString('base64')
const body = JSON.stringify({ model: 'mock-gpt', messages: [{ role: 'user', content: 'hi' }] })

const chatWith = (gw: AuthGateway, key: string): Promise<Response> =>
  fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body })

/** A 503 not_ready saying the database cannot answer, with Retry-After, within `withinMs`. */
async function expectUnavailable(call: () => Promise<Response>, withinMs: number, saying: RegExp): Promise<void> {
  const started = performance.now()
  const res = await call()
  expect(performance.now() - started).toBeLessThan(withinMs)
  expect(res.headers.get('retry-after')).toBe('5')
  expect(res.headers.get('x-request-id') ?? '').toMatch(REQUEST_ID)
  // not_ready is not in DESIGN.md's table (the gateway's own code for "cannot serve now", as /ready's).
  const envelope = (await res.json()) as ErrorEnvelopeBody
  expect({ status: res.status, code: envelope.error.code, type: envelope.error.type, param: envelope.error.param }).toEqual({
    status: 503,
    code: 'not_ready',
    type: 'api_error',
    param: null,
  })
  expect(envelope.error.message).toMatch(saying)
}

let upstream: MockUpstream
beforeAll(async () => {
  upstream = await startMockUpstream()
})
afterAll(async () => {
  await upstream?.stop()
})

const postgresUrl = await postgresUrlForTests('test/db.unavailable.test.ts')
const ownPostgres = postgresUrl === null ? null : await startPostgresInstance('test/db.unavailable.test.ts')

describe.skipIf(ownPostgres === null)('the database stopped', () => {
  let instance: PostgresInstance
  let gw: AuthGateway

  beforeAll(async () => {
    instance = ownPostgres!
    gw = await startAuthGateway(upstream.url, { env: { DATABASE_URL: instance.url, SLUICE_ENCRYPTION_KEY: encryptionKey } })
  })
  afterAll(async () => {
    await gw?.close()
    await instance?.destroy()
  })

  test('a cold key and the admin API answer 503 with Retry-After; a warm key still works; all is well once it is back', async () => {
    const { key: warm } = await userWithKey(gw)
    const { key: cold } = await userWithKey(gw)
    await chat(gw.client(warm.key))

    await instance.stop()
    const unreachable = /^The gateway's database is unreachable, so this request could not be served\. Retry shortly\.$/
    await expectUnavailable(() => chatWith(gw, cold.key), 4000, unreachable)
    await expectUnavailable(() => gw.admin('GET', '/admin/keys'), 4000, unreachable)
    await expectUnavailable(() => gw.admin('POST', '/admin/users', {}), 4000, unreachable)
    expect((await chatWith(gw, warm.key)).status).toBe(200)

    await instance.start()
    expect((await chatWith(gw, cold.key)).status).toBe(200)
    expect((await gw.admin('GET', '/admin/keys')).status).toBe(200)
  }, 60_000)
})

/** A plugin whose admit hook reads the gateway's database when the request asks (`x-read-keys`). */
const reader = definePlugin({
  name: 'key-reader',
  setup: ({ services }) => ({
    async admit(req) {
      if (req.request.headers.has('x-read-keys')) await services.db.db.selectFrom('api_keys').select('id').limit(1).execute()
      return undefined
    },
  }),
})

describe.skipIf(postgresUrl === null)('api_keys locked by another session', () => {
  let database: TestPostgresDatabase
  let gw: AuthGateway
  let locker: SQL
  const log = capturingLogger('warn')

  beforeAll(async () => {
    database = await createTestPostgresDatabase(postgresUrl!, 'db_unavailable')
    gw = await startAuthGateway(upstream.url, {
      env: { DATABASE_URL: `${database.url}?statement_timeout=1000`, SLUICE_ENCRYPTION_KEY: encryptionKey },
      config: { plugins: [{ use: 'auth', options: { demo_key: false } }, reader] },
      gateway: { logger: log.logger },
    })
    locker = new SQL(database.url, { max: 1 })
  })
  afterAll(async () => {
    await locker?.close()
    await gw?.close()
    await database?.drop()
  })

  test('a cold key and GET /admin/keys answer 503 once the statement timeout ends the wait; a warm key is served', async () => {
    const { key: warm } = await userWithKey(gw)
    await chat(gw.client(warm.key))
    const reserved = await locker.reserve()
    try {
      await reserved`begin`
      await reserved`lock table api_keys in access exclusive mode`
      const slow = /^The gateway's database did not answer in time, so this request could not be served\. Retry shortly\.$/
      await expectUnavailable(() => chatWith(gw, `sk-dev-${'Q'.repeat(40)}`), 3000, slow)
      await expectUnavailable(() => gw.admin('GET', '/admin/keys'), 3000, slow)
      expect((await chatWith(gw, warm.key)).status).toBe(200)
    } finally {
      await reserved`rollback`
      reserved.release()
    }
    expect((await gw.admin('GET', '/admin/keys')).status).toBe(200)
  }, 30_000)

  test("the key doctor by key_id and a plugin's hook that reads the database answer 503 too, the log naming the plugin", async () => {
    const { key } = await userWithKey(gw)
    // Warm: the key's own check is served from the cache, so the plugin's read is what meets the lock.
    await chat(gw.client(key.key))
    const reserved = await locker.reserve()
    try {
      await reserved`begin`
      await reserved`lock table api_keys in access exclusive mode`
      const slow = /^The gateway's database did not answer in time, so this request could not be served\. Retry shortly\.$/
      await expectUnavailable(() => gw.admin('POST', '/admin/doctor', { key_id: key.id }), 3000, slow)
      log.lines.length = 0
      const hooked = () =>
        fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json', 'x-read-keys': '1' }, body })
      await expectUnavailable(hooked, 3000, slow)
      expect(log.lines).toContainEqual(expect.objectContaining({ msg: 'database unavailable', plugin: 'key-reader', hook: 'admit' }))
    } finally {
      await reserved`rollback`
      reserved.release()
    }
    expect((await gw.admin('POST', '/admin/doctor', { key_id: key.id })).status).toBe(200)
  }, 30_000)

  test('a pool connection the gateway uses after its migrations still has the statement timeout', async () => {
    const handle = await createDatabase(database.url)
    try {
      const { migrateToLatest } = await import('../src/db/migrate.ts')
      await migrateToLatest(handle.db)
      const { sql } = await import('kysely')
      const shown = await Promise.all(Array.from({ length: 3 }, () => sql<{ statement_timeout: string }>`show statement_timeout`.execute(handle.db)))
      expect(shown.map((r) => r.rows[0]?.statement_timeout)).toEqual(['5s', '5s', '5s'])
    } finally {
      await handle.close()
    }
  })
})

describe('a database server that never answers', () => {
  let silent: TCPSocketListener<undefined>
  const held: Socket<undefined>[] = []
  let handle: DatabaseHandle

  beforeAll(async () => {
    // Accepts connections and says nothing: the client waits for the server's first message.
    silent = Bun.listen<undefined>({ hostname: '127.0.0.1', port: 0, socket: { open: (socket) => void held.push(socket), data() {} } })
    handle = await createDatabase(`postgres://postgres@127.0.0.1:${silent.port}/none`)
  })
  afterAll(async () => {
    for (const socket of held) socket.end()
    silent?.stop(true)
    await handle?.close()
  })

  test("a cold key's lookup gives up at its deadline with 503, not when the connection does", async () => {
    const verifier = new KeyVerifier({ db: handle.db, environment: 'dev', now: Date.now, cacheSize: 10, cacheTtlMs: 1000, negativeTtlMs: 1000 })
    const started = performance.now()
    const verdict = await verifier.verify({ key: `sk-dev-${'S'.repeat(40)}`, endpoint: 'chat.completions' })
    const took = performance.now() - started
    expect(took).toBeGreaterThanOrEqual(KEY_LOOKUP_TIMEOUT_MS - 100)
    expect(took).toBeLessThan(KEY_LOOKUP_TIMEOUT_MS + 2000)
    expect(verdict.ok).toBe(false)
    if (verdict.ok) return
    expect({ code: verdict.error.code, status: verdict.error.status, retryAfter: verdict.error.headers?.['retry-after'] }).toEqual({
      code: 'not_ready',
      status: 503,
      retryAfter: '5',
    })
    expect(verdict.error.message).toContain('did not answer in time')
  }, 15_000)
})

describe("failures that are not the database's", () => {
  let silent: TCPSocketListener<undefined>
  const held: Socket<undefined>[] = []

  beforeAll(() => {
    // Accepts connections and never answers: a webhook target that hangs.
    silent = Bun.listen<undefined>({ hostname: '127.0.0.1', port: 0, socket: { open: (socket) => void held.push(socket), data() {} } })
  })
  afterAll(() => {
    for (const socket of held) socket.end()
    silent?.stop(true)
  })

  test("a plugin route whose own fetch times out is the plugin's 500, named in the log, not a database outage", async () => {
    const log = capturingLogger('warn')
    const webhook = definePlugin({
      name: 'webhook',
      setup: () => ({
        routes: (app) => app.get('/hooks/ping', () => fetch(`http://127.0.0.1:${silent.port}/`, { signal: AbortSignal.timeout(100) })),
      }),
    })
    const gw = await startGateway(upstreamConfig(upstream.url, { plugins: [webhook] }), { gateway: { logger: log.logger } })
    try {
      const res = await fetch(`${gw.url}/hooks/ping`)
      const envelope = (await res.json()) as ErrorEnvelopeBody
      expect({ status: res.status, code: envelope.error.code, retryAfter: res.headers.get('retry-after') }).toEqual({ status: 500, code: 'internal_error', retryAfter: null })
      expect(log.lines).toEqual([expect.objectContaining({ msg: 'routes hook failed', plugin: 'webhook', error: expect.stringContaining('TimeoutError') })])
    } finally {
      await gw.close()
    }
  })
})
