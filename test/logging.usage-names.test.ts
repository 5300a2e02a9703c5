/**
 * `GET /admin/usage` names its groups: by key, each key's name and shortened form beside its id;
 * by user, the user's name (else its email); by team, the team's name; null where there is none
 * (a key, user or team no longer known, the null group, the model and day groupings). The
 * console's Top keys shows the name first, the shortened form and id after.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { startAuthGateway, type AuthGateway } from './support/auth.ts'
import { logRow } from './support/logging.ts'

interface Group {
  group: string | null
  requests: number
  name: string | null
  display: string | null
}

let upstream: MockUpstream
let gw: AuthGateway
beforeAll(async () => {
  upstream = await startMockUpstream()
  gw = await startAuthGateway(upstream.url, { config: { plugins: [{ use: 'auth', options: { demo_key: false } }, 'logging'] } })
})
afterAll(async () => {
  await gw?.close()
  await upstream?.stop()
})

describe('usage groups are named', () => {
  test('by key, user and team: names from one look-up per page; null where none is known or the grouping is a name already', async () => {
    await gw.adminOk('POST', '/admin/users', { id: 'ann', name: 'Ann' })
    await gw.adminOk('POST', '/admin/users', { id: 'ben', email: 'ben@example.com' })
    await gw.adminOk('POST', '/admin/teams', { id: 'crew', name: 'The crew' })
    await gw.adminOk('POST', '/admin/teams/crew/members', { user_id: 'ann' })
    const named = await gw.adminOk<{ id: string; display: string }>('POST', '/admin/keys', { user_id: 'ann', team_id: 'crew', name: 'billing service' })
    const unnamed = await gw.adminOk<{ id: string; display: string }>('POST', '/admin/keys', { user_id: 'ben' })
    const at = new Date().toISOString()
    const rows = [
      ...Array.from({ length: 3 }, (_, i) => logRow(`req_named${i}`, at, { key_id: named.id, user_id: 'ann', team_id: 'crew' })),
      ...Array.from({ length: 2 }, (_, i) => logRow(`req_unnamed${i}`, at, { key_id: unnamed.id, user_id: 'ben' })),
      logRow('req_gone', at, { key_id: 'key_gone', user_id: 'usr_gone', team_id: 'team_gone' }),
      logRow('req_nokey', at, { status: 401, error_code: 'missing_api_key' }),
    ]
    await gw.db.insertInto('request_logs').values(rows).execute()

    const by = async (grouping: string) => (await gw.adminOk<{ data: Group[] }>('GET', `/admin/usage?group_by=${grouping}`)).data.map(({ group, requests, name, display }) => ({ group, requests, name, display }))
    expect(await by('key')).toEqual([
      { group: named.id, requests: 3, name: 'billing service', display: named.display },
      { group: unnamed.id, requests: 2, name: null, display: unnamed.display },
      { group: 'key_gone', requests: 1, name: null, display: null },
      { group: null, requests: 1, name: null, display: null },
    ])
    expect(named.display).toMatch(/^sk-dev-.+….{4}$/)
    expect(await by('user')).toEqual([
      { group: 'ann', requests: 3, name: 'Ann', display: null },
      { group: 'ben', requests: 2, name: 'ben@example.com', display: null },
      { group: 'usr_gone', requests: 1, name: null, display: null },
      { group: null, requests: 1, name: null, display: null },
    ])
    expect(await by('team')).toEqual([
      { group: 'crew', requests: 3, name: 'The crew', display: null },
      { group: null, requests: 3, name: null, display: null },
      { group: 'team_gone', requests: 1, name: null, display: null },
    ])
    expect(await by('model')).toEqual([{ group: 'mock-gpt', requests: 7, name: null, display: null }])
    // Paged, each page is named.
    const second = await gw.adminOk<{ data: Group[]; next_cursor: string | null }>('GET', '/admin/usage?group_by=key&limit=1')
    const next = await gw.adminOk<{ data: Group[] }>('GET', `/admin/usage?group_by=key&limit=1&cursor=${second.next_cursor}`)
    expect(next.data.map((g) => g.display)).toEqual([unnamed.display])
  })
})
