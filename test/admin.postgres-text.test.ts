/**
 * Admin input that means different things to the two databases, refused the same way on both:
 * the NUL character (valid in JSON, which Postgres text cannot hold and SQLite would keep) in a
 * body, a path or a query anywhere in the admin API, and a page size not written in digits
 * (`0x10`, `1e1`, ` 5`, which a plain number conversion takes). Nothing is half written.
 *
 * The Postgres half needs Postgres: skipped with a printed line without it, a failure with CI set.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { startAuthGateway, type AuthGateway } from './support/auth.ts'
import { createTestPostgresDatabase, postgresUrlForTests, type TestPostgresDatabase } from './support/services.ts'

const postgresUrl = await postgresUrlForTests('test/admin.postgres-text.test.ts')

const expectInvalid = async (res: Response, param?: string) => {
  expect(res.status).toBe(400)
  const body = (await res.json()) as { error: { code: string; message: string; param: string | null } }
  expect(body.error.code).toBe('invalid_request')
  if (param !== undefined) expect(body.error.param).toBe(param)
  return body.error
}

function suite(databaseUrl: () => Promise<{ url: string; drop?: () => Promise<void> }>): void {
  let upstream: MockUpstream
  let gw: AuthGateway
  let drop: (() => Promise<void>) | undefined

  beforeAll(async () => {
    upstream = await startMockUpstream()
    const database = await databaseUrl()
    drop = database.drop
    // A key of its own: in dev on Postgres the gateway would otherwise keep one in ./data.
    gw = await startAuthGateway(upstream.url, {
      config: { plugins: ['auth', 'quota', 'logging', 'balance'] },
      env: { DATABASE_URL: database.url, SLUICE_ENCRYPTION_KEY: Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64') },
    })
  })
  afterAll(async () => {
    await gw?.close()
    await upstream?.stop()
    await drop?.()
  })

  test('a NUL in a body (a name, metadata, a key of it, a provider field) is refused naming where, and nothing is created', async () => {
    const before = (await gw.adminOk<{ data: unknown[] }>('GET', '/admin/users')).data.length
    expect((await expectInvalid(await gw.admin('POST', '/admin/users', { name: 'a\u0000b' }), 'name')).message).toContain('NUL character')
    const user = await gw.adminOk<{ id: string }>('POST', '/admin/users', { name: 'plain' })
    await expectInvalid(await gw.admin('POST', '/admin/keys', { user_id: user.id, name: 'k\u0000' }), 'name')
    await expectInvalid(await gw.admin('POST', '/admin/keys', { user_id: user.id, metadata: { note: 'x\u0000' } }), 'metadata.note')
    await expectInvalid(await gw.admin('PATCH', `/admin/users/${user.id}`, { metadata: { ['a\u0000']: 1 } }), 'metadata.a\u0000')
    await expectInvalid(await gw.admin('POST', '/admin/teams', { name: 'team', metadata: { list: ['ok', 'n\u0000'] } }), 'metadata.list.1')
    await expectInvalid(
      await gw.admin('POST', '/admin/providers', { id: 'p1', type: 'openai', keys: [{ id: 'k\u0000', secret: 's' }] }),
      'keys.0.id',
    )
    const users = await gw.adminOk<{ data: unknown[] }>('GET', '/admin/users')
    expect(users.data.length).toBe(before + 1)
    const keys = await gw.adminOk<{ data: unknown[] }>('GET', `/admin/keys?user_id=${user.id}`)
    expect(keys.data.length).toBe(0)
    expect((await gw.adminOk<{ data: unknown[] }>('GET', '/admin/teams')).data.length).toBe(0)
  })

  test('a NUL in a path or query parameter is refused with 400 naming it, on every admin route group', async () => {
    for (const [path, param] of [
      ['/admin/keys/a%00b', 'id'],
      ['/admin/users/%00', 'id'],
      ['/admin/keys?user_id=%00', 'user_id'],
      ['/admin/keys/k%00/quota', 'id'],
      ['/admin/logs?key_id=a%00', 'key_id'],
      ['/admin/logs/a%00', 'id'],
      ['/admin/usage?group_by=model&model=%00', 'model'],
      ['/admin/audit?target_id=%00', 'target_id'],
      ['/admin/providers/%00', 'id'],
    ] as const) {
      await expectInvalid(await gw.admin('GET', path), param)
    }
  })

  test('a page size is digits: 0x10, 1e1, +3, " 5" and 10.0 are refused; 10 is taken', async () => {
    for (const limit of ['0x10', '1e1', '%2B3', '%205', '10.0', '0b11', '-1', '']) {
      await expectInvalid(await gw.admin('GET', `/admin/users?limit=${limit}`), 'limit')
    }
    await expectInvalid(await gw.admin('GET', '/admin/logs?limit=1e1'), 'limit')
    await expectInvalid(await gw.admin('GET', '/admin/audit?limit=0x10'), 'limit')
    expect((await gw.admin('GET', '/admin/users?limit=10')).status).toBe(200)
    expect((await gw.admin('GET', '/admin/keys/expiring?limit=5')).status).toBe(200)
  })
}

describe('admin input the two databases would take differently: SQLite', () => {
  suite(async () => ({ url: 'sqlite::memory:' }))
})

describe.skipIf(postgresUrl === null)('admin input the two databases would take differently: Postgres', () => {
  let database: TestPostgresDatabase
  suite(async () => {
    database = await createTestPostgresDatabase(postgresUrl!, 'nul_text')
    return { url: database.url, drop: () => database.drop() }
  })
})
