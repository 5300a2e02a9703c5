/**
 * touchKeys writes each key's own last_used_at, in chunks of one statement, on SQLite and on
 * Postgres; keys not in the map keep theirs. findKeyRecord shares what cached records have in
 * common, frozen, and its queries (compiled once per database or transaction) answer for the
 * value of each call, on the connection they were given.
 */
import { afterAll, describe, expect, test } from 'bun:test'
import { createDatabase, type DatabaseHandle } from '../../src/db/index.ts'
import { migrateToLatest } from '../../src/db/migrate.ts'
import { createTestPostgresDatabase, postgresUrlForTests, type TestPostgresDatabase } from '../../test/support/services.ts'
import { TOUCH_CHUNK, findKeyRecord, touchKeys } from './repo.ts'

const at = '2026-01-01T00:00:00.000Z'

async function seed(handle: DatabaseHandle, count: number): Promise<string[]> {
  await migrateToLatest(handle.db)
  await handle.db.insertInto('users').values({ id: 'usr_t', email: null, name: 't', disabled_at: null, deleted_at: null, limits: null, budget: null, metadata: null, created_at: at, updated_at: at }).execute()
  const ids = Array.from({ length: count }, (_, i) => `key_t${i}`)
  for (let base = 0; base < count; base += 500) {
    const rows = ids.slice(base, base + 500).map((id, j) => ({
      id, hash: `hash_${id}`, start: 'sk-dev-', end: String(j).padStart(4, '0'), environment: 'dev', user_id: 'usr_t', team_id: null, name: null, models: null, scopes: null,
      limits: null, budget: null, status: 'active' as const, expires_at: null, created_at: at, updated_at: at, last_used_at: null, revoked_at: null, revoked_reason: null,
      rotated_from: null, rotated_to: null, grace_until: null, metadata: null,
    }))
    await handle.db.insertInto('api_keys').values(rows).execute()
  }
  return ids
}

async function check(handle: DatabaseHandle): Promise<void> {
  // More than two chunks, with one left over; the last key is not touched.
  const ids = await seed(handle, TOUCH_CHUNK * 2 + 7)
  const used = new Map<string, number>()
  const base = Date.UTC(2026, 10, 28)
  ids.slice(0, -1).forEach((id, i) => used.set(id, base + i * 1000))
  await touchKeys(handle.db, used)
  const rows = await handle.db.selectFrom('api_keys').select(['id', 'last_used_at']).execute()
  const got = new Map(rows.map((r) => [r.id, r.last_used_at]))
  ids.slice(0, -1).forEach((id, i) => expect(got.get(id)).toBe(new Date(base + i * 1000).toISOString()))
  expect(got.get(ids.at(-1)!)).toBeNull()
}

const pgUrl = await postgresUrlForTests('plugins/auth/repo.test.ts')

/** `title` as two tests: on in-memory SQLite, and on a Postgres database of its own (skipped without one). */
function onBothDialects(title: string, run: (handle: DatabaseHandle, dialect: 'sqlite' | 'postgres') => Promise<void>): void {
  test(`SQLite: ${title}`, async () => {
    const handle = await createDatabase('sqlite://:memory:')
    try {
      await run(handle, 'sqlite')
    } finally {
      await handle.close()
    }
  })

  let pg: TestPostgresDatabase | undefined
  afterAll(async () => {
    await pg?.drop()
  })
  test.skipIf(pgUrl === null)(`Postgres: ${title}`, async () => {
    pg = await createTestPostgresDatabase(pgUrl!, 'repo')
    const handle = await createDatabase(pg.url)
    try {
      await run(handle, 'postgres')
    } finally {
      await handle.close()
    }
  })
}

describe('touchKeys', () => {
  onBothDialects('every key gets its own time, across chunks', (handle) => check(handle))

  // Instances flush on their own timers: one that served a key earlier may flush after one that served it later.
  onBothDialects('a later flush of an earlier use does not move last_used_at back', async (handle) => {
    const [a, b, c] = await seed(handle, 3)
    const early = Date.UTC(2026, 10, 28, 10)
    const late = Date.UTC(2026, 10, 28, 11)
    await touchKeys(handle.db, new Map([[a!, late], [b!, early]]))
    await touchKeys(handle.db, new Map([[a!, early], [b!, late], [c!, early]]))
    const rows = await handle.db.selectFrom('api_keys').select(['id', 'last_used_at']).execute()
    const got = new Map(rows.map((r) => [r.id, r.last_used_at]))
    expect(got.get(a!)).toBe(new Date(late).toISOString())
    expect(got.get(b!)).toBe(new Date(late).toISOString())
    expect(got.get(c!)).toBe(new Date(early).toISOString())
  })

  let pg: TestPostgresDatabase | undefined
  afterAll(async () => {
    await pg?.drop()
  })
  // Instances flush on their own timers, each the keys it served in the order it first served them.
  test.skipIf(pgUrl === null)('Postgres: two instances writing the same keys in opposite orders at once both succeed (no deadlock)', async () => {
    pg = await createTestPostgresDatabase(pgUrl!, 'repo_touch')
    const [one, two] = [await createDatabase(pg.url), await createDatabase(pg.url)]
    try {
      const ids = await seed(one, TOUCH_CHUNK * 6)
      const failures: string[] = []
      const times = (keys: string[], round: number) => new Map(keys.map((id) => [id, Date.UTC(2026, 0, 1, 0, 0, round)] as const))
      const shuffled = (keys: string[]) => keys.map((id) => [Math.random(), id] as const).sort(([a], [b]) => a - b).map(([, id]) => id)
      const third = ids.length / 3
      for (let round = 0; round < 10; round++) {
        // The same keys in opposite orders, or two thirds of them each, overlapping, in any order.
        const [first, second] = round % 2 === 0 ? [ids, [...ids].reverse()] : [shuffled(ids.slice(0, 2 * third)), shuffled(ids.slice(third))]
        const results = await Promise.allSettled([touchKeys(one.db, times(first, round)), touchKeys(two.db, times(second, round))])
        for (const result of results) if (result.status === 'rejected') failures.push(String(result.reason))
      }
      expect(failures).toEqual([])
    } finally {
      await Promise.all([one.close(), two.close()])
    }
  }, 30_000)
})

/** Each lookup answers for its own hash, id and owner; inside a transaction it reads what the transaction wrote. */
async function lookups(handle: DatabaseHandle, seesUncommitted: boolean): Promise<void> {
  const [a, b, c] = await seed(handle, 3)
  const db = handle.db
  await db.insertInto('users').values({ id: 'usr_u', email: null, name: 'u', disabled_at: null, deleted_at: null, limits: null, budget: null, metadata: null, created_at: at, updated_at: at }).execute()
  for (const team of ['team_x', 'team_y']) {
    await db.insertInto('teams').values({ id: team, name: team, deleted_at: null, limits: null, budget: null, metadata: null, created_at: at, updated_at: at }).execute()
    await db.insertInto('team_members').values({ team_id: team, user_id: 'usr_u', role: 'member', created_at: at }).execute()
  }
  await db.updateTable('api_keys').set({ user_id: 'usr_u' }).where('id', '=', b!).execute()

  for (const id of [a!, b!, c!, a!]) {
    const byHash = await findKeyRecord(db, `hash_${id}`)
    const byId = await findKeyRecord(db, id, 'id')
    expect(byHash!.id).toBe(id)
    expect(byId!.hash).toBe(`hash_${id}`)
    expect(byHash!.user.id).toBe(id === b ? 'usr_u' : 'usr_t')
    expect([...byHash!.teams.keys()].sort()).toEqual(id === b ? ['team_x', 'team_y'] : [])
  }
  // A key never rotated is its own lineage; a successor carries the first key's.
  expect((await findKeyRecord(db, `hash_${a}`))!.lineageId).toBe(a!)
  await db
    .insertInto('api_keys')
    .values({ id: 'key_next', hash: 'hash_key_next', start: 'sk-dev-', end: 'next', environment: 'dev', user_id: 'usr_t', rotated_from: b!, lineage_id: a!, created_at: at, updated_at: at })
    .execute()
  expect((await findKeyRecord(db, 'hash_key_next'))!).toMatchObject({ id: 'key_next', lineageId: a! })
  expect(await findKeyRecord(db, 'hash_nobody')).toBeNull()
  expect(await findKeyRecord(db, 'key_nobody', 'id')).toBeNull()

  await db.transaction().execute(async (tx) => {
    await tx
      .insertInto('api_keys')
      .values({
        id: 'key_tx', hash: 'hash_key_tx', start: 'sk-dev-', end: 'txtx', environment: 'dev', user_id: 'usr_u', team_id: null, name: null, models: null, scopes: null,
        limits: null, budget: null, status: 'active', expires_at: null, created_at: at, updated_at: at, last_used_at: null, revoked_at: null, revoked_reason: null,
        rotated_from: null, rotated_to: null, grace_until: null, metadata: null,
      })
      .execute()
    const inside = await findKeyRecord(tx, 'hash_key_tx')
    expect(inside!.id).toBe('key_tx')
    expect(inside!.teams.size).toBe(2)
    if (!seesUncommitted) expect(await findKeyRecord(db, 'hash_key_tx')).toBeNull()
  })
  expect((await findKeyRecord(db, 'hash_key_tx'))!.id).toBe('key_tx')
}

describe('findKeyRecord', () => {
  // SQLite has one connection: the database reads what its open transaction wrote.
  onBothDialects('every lookup answers for its own key and owner, in and out of a transaction', (handle, dialect) => lookups(handle, dialect === 'sqlite'))

  test('records with the same limits, budget, models or scopes share one frozen value; an owner without teams one empty map', async () => {
    const handle = await createDatabase('sqlite://:memory:')
    try {
      const [a, b, c] = await seed(handle, 3)
      const limits = JSON.stringify({ rpm: 60, tpm: 1000 })
      const budget = JSON.stringify({ usd: 5, period: 'month' })
      await handle.db.updateTable('api_keys').set({ limits, budget, models: JSON.stringify(['m1', 'm2']) }).where('id', 'in', [a!, b!]).execute()
      await handle.db.updateTable('api_keys').set({ limits: JSON.stringify({ rpm: 61 }) }).where('id', '=', c!).execute()
      const [ra, rb, rc] = await Promise.all([a, b, c].map((id) => findKeyRecord(handle.db, id!, 'id')))
      expect(ra!.limits).toEqual({ rpm: 60, tpm: 1000 })
      expect(ra!.limits).toBe(rb!.limits)
      expect(ra!.budget).toBe(rb!.budget)
      expect(ra!.models).toBe(rb!.models)
      expect(rc!.limits).toEqual({ rpm: 61 })
      expect(Object.isFrozen(ra!.limits)).toBe(true)
      expect(Object.isFrozen(ra!.models)).toBe(true)
      expect(() => {
        ;(ra!.limits as { rpm: number }).rpm = 1
      }).toThrow(TypeError)
      expect(rb!.limits!.rpm).toBe(60)
      expect(ra!.teams.size).toBe(0)
      expect(ra!.teams).toBe(rb!.teams)
    } finally {
      await handle.close()
    }
  })
})
