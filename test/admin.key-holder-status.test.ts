/**
 * A key refused for its holder says so in the admin API's key views (`holder_status`): its owner
 * deleted or disabled, not a member of the team the key is bound to, that team deleted; null when
 * none. The unfiltered list says it for every row from one query, and agrees with the key doctor
 * (invalid_user_for_key, and which of the four its message names). On SQLite and Postgres.
 *
 * The Postgres half needs Postgres: skipped with a printed line without it, a failure with CI set.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { startAuthGateway, userWithKey, type AuthGateway } from './support/auth.ts'
import { createTestPostgresDatabase, postgresUrlForTests } from './support/services.ts'

const postgresUrl = await postgresUrlForTests('test/admin.key-holder-status.test.ts')

let upstream: MockUpstream
beforeAll(async () => {
  upstream = await startMockUpstream()
})
afterAll(() => upstream?.stop())

interface KeyView {
  id: string
  status: string
  holder_status: string | null
}

/** What the doctor's refusal message names, as holder_status says it. */
const NAMED = {
  user_deleted: 'was deleted',
  user_disabled: 'is disabled',
  not_member: 'is not a member of team',
  team_deleted: 'which was deleted',
} as const

async function holders(gw: AuthGateway): Promise<void> {
  const fine = await userWithKey(gw)
  const inTeam = await userWithKey(gw, {}, { team: true })
  const disabled = await userWithKey(gw)
  await gw.adminOk('PATCH', `/admin/users/${disabled.userId}`, { disabled: true })
  const deleted = await userWithKey(gw)
  await gw.adminOk('DELETE', `/admin/users/${deleted.userId}`)
  const left = await userWithKey(gw, {}, { team: true })
  await gw.adminOk('DELETE', `/admin/teams/${left.teamId}/members/${left.userId}`)
  const teamGone = await userWithKey(gw, {}, { team: true })
  await gw.adminOk('DELETE', `/admin/teams/${teamGone.teamId}`)
  // Revoked first: its own status is what it is refused for, though its owner is disabled too.
  const revoked = await userWithKey(gw)
  await gw.adminOk('POST', `/admin/keys/${revoked.key.id}/revoke`, {})
  await gw.adminOk('PATCH', `/admin/users/${revoked.userId}`, { disabled: true })

  const expected: Record<string, { status: string; holder_status: string | null }> = {
    [fine.key.id]: { status: 'active', holder_status: null },
    [inTeam.key.id]: { status: 'active', holder_status: null },
    [disabled.key.id]: { status: 'active', holder_status: 'user_disabled' },
    [deleted.key.id]: { status: 'active', holder_status: 'user_deleted' },
    [left.key.id]: { status: 'active', holder_status: 'not_member' },
    [teamGone.key.id]: { status: 'active', holder_status: 'team_deleted' },
    [revoked.key.id]: { status: 'revoked', holder_status: 'user_disabled' },
  }
  const list = await gw.adminOk<{ data: KeyView[] }>('GET', '/admin/keys?limit=100')
  const listed = Object.fromEntries(list.data.filter((k) => k.id in expected).map((k) => [k.id, { status: k.status, holder_status: k.holder_status }]))
  expect(listed).toEqual(expected)
  // Paged as before: the column changes nothing of the order or the cursor.
  const first = await gw.adminOk<{ data: KeyView[]; next_cursor: string | null }>('GET', '/admin/keys?limit=3')
  const rest = await gw.adminOk<{ data: KeyView[] }>('GET', `/admin/keys?limit=100&cursor=${encodeURIComponent(first.next_cursor ?? '')}`)
  expect([...first.data, ...rest.data].map((k) => k.id)).toEqual(list.data.map((k) => k.id))
  for (const [id, want] of Object.entries(expected)) {
    expect(await gw.adminOk<KeyView>('GET', `/admin/keys/${id}`)).toMatchObject({ id, ...want })
    const doctor = await gw.adminOk<{ error: { code: string; message: string } | null }>('POST', '/admin/doctor', { key_id: id })
    if (want.status !== 'active') continue
    if (want.holder_status === null) {
      expect({ id, error: doctor.error }).toEqual({ id, error: null })
    } else {
      expect({ id, code: doctor.error?.code }).toEqual({ id, code: 'invalid_user_for_key' })
      expect(doctor.error?.message).toContain(NAMED[want.holder_status as keyof typeof NAMED])
    }
  }
}

describe('holder_status in the admin key views', () => {
  test('on SQLite', async () => {
    const gw = await startAuthGateway(upstream.url, { config: { plugins: [{ use: 'auth', options: { demo_key: false } }] } })
    try {
      await holders(gw)
    } finally {
      await gw.close()
    }
  })

  test.skipIf(postgresUrl === null)('on Postgres', async () => {
    const db = await createTestPostgresDatabase(postgresUrl ?? '', 'key_holder_status')
    const gw = await startAuthGateway(upstream.url, {
      config: { plugins: [{ use: 'auth', options: { demo_key: false } }] },
      env: { DATABASE_URL: db.url, SLUICE_ENCRYPTION_KEY: Buffer.alloc(32, 9).toString('base64') },
    })
    try {
      await holders(gw)
    } finally {
      await gw.close()
      await db.drop()
    }
  })
})
