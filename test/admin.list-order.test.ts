/**
 * Admin lists whose rows share a creation time (users or members added by a script within one
 * millisecond) come in one order on every database: by the id in byte order (newest first), as
 * SQLite compares text, paged the same, where a Postgres database with a linguistic default
 * collation (ICU "en", as many installs default to en_US) answered case and punctuation otherwise.
 *
 * The Postgres half needs Postgres: skipped with a printed line without it, a failure with CI set.
 */
import { SQL } from 'bun'
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { sql } from 'kysely'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { startAuthGateway, type AuthGateway } from './support/auth.ts'
import { postgresUrlForTests, uniqueTestName } from './support/services.ts'

const postgresUrl = await postgresUrlForTests('test/admin.list-order.test.ts')

/** Ids a linguistic collation orders otherwise than bytes do (case, `-`, `_`, `.`). */
const TIED = ['alice', 'Bob', 'a-b', 'a_b', 'ab', 'aB', 'a.b', 'Zed', 'm1', 'm-2', 'm_3']
/** Newest first: the ids of rows of one time in descending byte order. */
const byteOrderDesc = [...TIED].sort((a, b) => Buffer.compare(Buffer.from(b), Buffer.from(a)))

let upstream: MockUpstream
beforeAll(async () => {
  upstream = await startMockUpstream()
})
afterAll(() => upstream?.stop())

interface Page {
  data: Array<{ id?: string; user_id?: string }>
  next_cursor: string | null
}

async function tiedLists(gw: AuthGateway): Promise<{ users: string[]; pagedUsers: string[]; members: string[]; pagedMembers: string[] }> {
  await gw.adminOk('POST', '/admin/teams', { id: 'crew', name: 'Crew' })
  for (const id of TIED) {
    await gw.adminOk('POST', '/admin/users', { id })
    await gw.adminOk('POST', '/admin/teams/crew/members', { user_id: id })
  }
  // As a script adding them all within one millisecond would have them.
  const at = '2026-05-01T00:00:00.000Z'
  // created_at is never changed by the gateway (its type says so): set by hand.
  await sql`update users set created_at = ${at} where id in (${sql.join(TIED)})`.execute(gw.db)
  await sql`update team_members set created_at = ${at}`.execute(gw.db)
  const all = async (path: string, limit: number): Promise<string[]> => {
    const ids: string[] = []
    let cursor: string | null = null
    do {
      const sep: string = path.includes('?') ? '&' : '?'
      const page: Page = await gw.adminOk<Page>('GET', `${path}${sep}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)
      ids.push(...page.data.map((row) => row.user_id ?? row.id ?? ''))
      cursor = page.next_cursor
    } while (cursor !== null)
    return ids
  }
  const tied = (ids: string[]) => ids.filter((id) => TIED.includes(id))
  return {
    users: tied(await all('/admin/users', 100)),
    pagedUsers: tied(await all('/admin/users', 2)),
    members: await all('/admin/teams/crew/members', 100),
    pagedMembers: await all('/admin/teams/crew/members', 3),
  }
}

/** Provider ids and model names a linguistic collation orders otherwise than bytes do. */
const TIED_CATALOG = ['p-b', 'P', 'p_b', 'pb', 'pB', 'p.b', 'Zp', 'p1', 'p-2']
/** Oldest first: ties in ascending byte order. */
const byteOrderAsc = [...TIED_CATALOG].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))

/** Providers and models made by the admin API at one time: the order of their lists (added after the config file's). */
async function tiedCatalog(gw: AuthGateway): Promise<{ providers: string[]; models: string[] }> {
  for (const id of TIED_CATALOG) {
    await gw.adminOk('POST', '/admin/providers', { id, type: 'openai-compatible', base_url: upstream.url, keys: [{ id: 'k', secret: 'catalog-order-secret-0123456789' }] })
    await gw.adminOk('POST', '/admin/models', { name: id, targets: [{ provider: id, model: 'mock-gpt' }] })
  }
  const at = '2026-05-01T00:00:00.000Z'
  await sql`update providers set created_at = ${at} where id in (${sql.join(TIED_CATALOG)})`.execute(gw.db)
  await sql`update models set created_at = ${at} where name in (${sql.join(TIED_CATALOG)})`.execute(gw.db)
  const providers = await gw.adminOk<{ data: Array<{ id: string; source: string }> }>('GET', '/admin/providers')
  const models = await gw.adminOk<{ data: Array<{ name: string; source: string }> }>('GET', '/admin/models')
  return { providers: providers.data.filter((p) => p.source === 'admin').map((p) => p.id), models: models.data.filter((m) => m.source === 'admin').map((m) => m.name) }
}

/** A provider's keys in the order given (the first is the one a gateway without balance sends), after their rows were rewritten. */
const GIVEN_KEYS = ['zz', 'aa', 'mm', 'Ab', 'a-b']
async function givenKeyOrder(gw: AuthGateway): Promise<string[]> {
  await gw.adminOk('POST', '/admin/providers', { id: 'keyed', type: 'openai-compatible', base_url: upstream.url, keys: GIVEN_KEYS.map((id) => ({ id, secret: `key-order-secret-${id}-0123456789` })) })
  // As rotate-encryption-key rewrites each row (on Postgres an updated row moves within the table).
  for (const id of GIVEN_KEYS.slice(0, 3)) await sql`update provider_keys set updated_at = updated_at where provider_id = 'keyed' and id like ${'%' + id}`.execute(gw.db)
  const provider = await gw.adminOk<{ keys: Array<{ id: string }> }>('GET', '/admin/providers/keyed')
  return provider.keys.map((k) => k.id)
}

describe('admin lists: one order of rows created at the same time on every database', () => {
  test('on SQLite, by id in descending byte order, paged the same; providers and models oldest first, by id and name in byte order', async () => {
    const gw = await startAuthGateway(upstream.url)
    try {
      expect(await tiedLists(gw)).toEqual({ users: byteOrderDesc, pagedUsers: byteOrderDesc, members: byteOrderDesc, pagedMembers: byteOrderDesc })
      expect(await tiedCatalog(gw)).toEqual({ providers: byteOrderAsc, models: byteOrderAsc })
      expect(await givenKeyOrder(gw)).toEqual(GIVEN_KEYS)
    } finally {
      await gw.close()
    }
  })

  test.skipIf(postgresUrl === null)('on a Postgres database whose default collation is linguistic (ICU "en"), the same', async () => {
    const name = uniqueTestName('list_order_icu')
    const admin = new SQL(postgresUrl ?? '', { max: 1 })
    await admin.unsafe(`create database "${name}" template template0 encoding 'UTF8' locale_provider icu icu_locale 'en'`)
    const url = new URL(postgresUrl ?? '')
    url.pathname = `/${name}`
    const gw = await startAuthGateway(upstream.url, { env: { DATABASE_URL: url.toString(), SLUICE_ENCRYPTION_KEY: Buffer.alloc(32, 9).toString('base64') } })
    try {
      expect(await tiedLists(gw)).toEqual({ users: byteOrderDesc, pagedUsers: byteOrderDesc, members: byteOrderDesc, pagedMembers: byteOrderDesc })
      expect(await tiedCatalog(gw)).toEqual({ providers: byteOrderAsc, models: byteOrderAsc })
      expect(await givenKeyOrder(gw)).toEqual(GIVEN_KEYS)
    } finally {
      await gw.close()
      await admin.unsafe(`drop database if exists "${name}" with (force)`)
      await admin.close()
    }
  })
})
