/**
 * The admin lists whose SQL each database must answer alike, on Postgres (auth.happy.test.ts runs
 * the same scenarios on SQLite): a team's members paged by (created_at, user_id), and expiring
 * keys, cut at the last time stored and leaving out keys refused for their owner or team
 * (EXISTS over users, teams and memberships).
 *
 * Needs Postgres: skipped with a printed line without it, a failure with CI set.
 */
import { afterAll, beforeAll, describe, test } from 'bun:test'
import { startMockUpstream, type MockUpstream } from '../../test/fixtures/mock-upstream.ts'
import { expectExpiringLeavesOutRefusedKeys, expectExpiringWindowsClamped, expectMembersPaged, startAuthGateway, type AuthGateway } from '../../test/support/auth.ts'
import { createTestPostgresDatabase, postgresUrlForTests, type TestPostgresDatabase } from '../../test/support/services.ts'

const postgresUrl = await postgresUrlForTests('plugins/auth/admin.postgres.test.ts')

describe.skipIf(postgresUrl === null)('admin lists on Postgres', () => {
  let upstream: MockUpstream
  let database: TestPostgresDatabase
  let gw: AuthGateway

  beforeAll(async () => {
    upstream = await startMockUpstream()
    database = await createTestPostgresDatabase(postgresUrl!, 'auth_admin_lists')
    // A key of its own: in dev on Postgres the gateway would otherwise keep one in ./data.
    const encryptionKey = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64')
    gw = await startAuthGateway(upstream.url, { env: { DATABASE_URL: database.url, SLUICE_ENCRYPTION_KEY: encryptionKey } })
  })
  afterAll(async () => {
    await gw?.close()
    await upstream?.stop()
    await database?.drop()
  })

  test("a team's members come in pages, newest first, each once", () => expectMembersPaged(gw))

  test('expiring: a wider window never lists fewer keys, up to the last time stored', () => expectExpiringWindowsClamped(gw, Date.now()))

  test('expiring leaves out keys refused for their owner or team', () => expectExpiringLeavesOutRefusedKeys(gw, Date.now()))
})
