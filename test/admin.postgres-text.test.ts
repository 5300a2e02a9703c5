/**
 * Text a client may send but Postgres cannot store (the NUL character, valid in JSON): the admin
 * API answers 400 invalid_request saying so, where it answered 500, and nothing is half written.
 * SQLite stores such text; the same requests there succeed (or find nothing) as before.
 *
 * Needs Postgres: skipped with a printed line without it, a failure with CI set.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { startAuthGateway, type AuthGateway } from './support/auth.ts'
import { createTestPostgresDatabase, postgresUrlForTests, type TestPostgresDatabase } from './support/services.ts'

const postgresUrl = await postgresUrlForTests('test/admin.postgres-text.test.ts')

describe.skipIf(postgresUrl === null)('NUL characters on Postgres', () => {
  let upstream: MockUpstream
  let database: TestPostgresDatabase
  let gw: AuthGateway

  beforeAll(async () => {
    upstream = await startMockUpstream()
    database = await createTestPostgresDatabase(postgresUrl!, 'nul_text')
    // A key of its own: in dev on Postgres the gateway would otherwise keep one in ./data.
    gw = await startAuthGateway(upstream.url, { env: { DATABASE_URL: database.url, SLUICE_ENCRYPTION_KEY: Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64') } })
  })
  afterAll(async () => {
    await gw?.close()
    await upstream?.stop()
    await database?.drop()
  })

  const expectInvalid = async (res: Response) => {
    expect(res.status).toBe(400)
    const body = (await res.json()) as { error: { code: string; message: string } }
    expect(body.error.code).toBe('invalid_request')
    expect(body.error.message).toContain('NUL character')
  }

  test('a user or key named with a NUL is refused with 400, and nothing is created', async () => {
    await expectInvalid(await gw.admin('POST', '/admin/users', { name: 'a\u0000b' }))
    const user = await gw.adminOk<{ id: string }>('POST', '/admin/users', { name: 'plain' })
    await expectInvalid(await gw.admin('POST', '/admin/keys', { user_id: user.id, name: 'k\u0000' }))
    const users = await gw.adminOk<{ data: unknown[] }>('GET', '/admin/users')
    expect(users.data.length).toBe(1)
    const keys = await gw.adminOk<{ data: unknown[] }>('GET', `/admin/keys?user_id=${user.id}`)
    expect(keys.data.length).toBe(0)
  })

  test('a NUL in a path or query parameter is refused with 400, not 500', async () => {
    await expectInvalid(await gw.admin('GET', '/admin/keys/%00'))
    await expectInvalid(await gw.admin('GET', '/admin/keys?user_id=%00'))
  })
})
