import { sql, type CompiledQuery, type Kysely, type Transaction } from 'kysely'
import type { Database } from '../../src/db/schema.ts'
import { DatabaseUnavailableError, isDatabaseUnavailable } from '../../src/db/errors.ts'
import type { Budget, Limits } from '../../src/limits.ts'
import { chunkSizes, compileOnce, withParameters } from '../../src/db/statements.ts'
import { fromJson } from '../../src/lib/json-text.ts'

/** A database or a transaction: repositories take either, so callers can group writes. */
export type Db = Kysely<Database> | Transaction<Database>

export const iso = (ms: number): string => new Date(ms).toISOString()
export { fromJson, toJson } from '../../src/lib/json-text.ts'
const ms = (t: string | null): number | null => (t === null ? null : Date.parse(t))

/** Distinct JSON texts whose parsed value is shared (see sharedJson); past this, values are parsed per record. */
const SHARED_JSON_MAX = 4096
const sharedValues = new Map<string, unknown>()

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v)
    Object.freeze(value)
  }
  return value
}

/**
 * fromJson for the cached key records: one frozen value per distinct text. Keys mostly share a
 * few tiers of limits, budgets, models and scopes, and the auth cache holds up to `cache_size`
 * records; each held its own parsed copies (about 200 bytes a key of the 2.4 KB a cached key
 * cost). Frozen, so no holder can change what the others see.
 */
function sharedJson<T>(text: string | null): T | null {
  if (text === null) return null
  const known = sharedValues.get(text)
  if (known !== undefined) return known as T
  const value = deepFreeze(fromJson<T>(text))
  if (value !== null && sharedValues.size < SHARED_JSON_MAX) sharedValues.set(text, value)
  return value
}

/** The teams of an owner who belongs to none: one empty map for all their records. */
const NO_TEAMS: KeyRecord['teams'] = new Map()

/** Everything auth needs to decide about one key, loaded in one go and cached. */
export interface KeyRecord {
  id: string
  /** The first key of this key's rotation chain (its own id if never rotated): its limits and budgets are counted under it. */
  lineageId: string
  hash: string
  start: string
  end: string
  environment: string
  name: string | null
  teamId: string | null
  models: string[] | null
  scopes: string[] | null
  limits: Limits | null
  budget: Budget | null
  status: 'active' | 'revoked'
  expiresAt: number | null
  revokedAt: number | null
  revokedReason: string | null
  rotatedTo: string | null
  rotatedToStart: string | null
  /** When the key that replaced this one stopped being served (revoked, or rotated in turn past its grace); null while it is. */
  rotatedToUntil: number | null
  graceUntil: number | null
  user: {
    id: string
    disabledAt: number | null
    deletedAt: number | null
    limits: Limits | null
    budget: Budget | null
    /** The models the owner's keys may use; null: every model. */
    models: string[] | null
  }
  /** The teams the owner belongs to, by id (`models`: what requests billed to the team may use; null: every model). */
  teams: ReadonlyMap<string, { id: string; deletedAt: number | null; limits: Limits | null; budget: Budget | null; models: string[] | null }>
  /** The admitting verdict for requests that name no team, built once (see KeyVerifier.decide). */
  verdict?: { ok: true; identity: import('../../src/plugin.ts').Identity; record: KeyRecord }
}

const keyQuery = (db: Db, by: 'hash' | 'id') =>
  db
    .selectFrom('api_keys as k')
    .innerJoin('users as u', 'u.id', 'k.user_id')
    .leftJoin('api_keys as n', 'n.id', 'k.rotated_to')
    .select([
      'k.id', 'k.hash', 'k.start', 'k.end', 'k.environment', 'k.name', 'k.team_id', 'k.models', 'k.scopes', 'k.limits',
      'k.budget', 'k.status', 'k.expires_at', 'k.revoked_at', 'k.revoked_reason', 'k.rotated_to', 'k.grace_until', 'k.lineage_id',
      'u.id as user_id', 'u.disabled_at as user_disabled_at', 'u.deleted_at as user_deleted_at',
      'u.limits as user_limits', 'u.budget as user_budget', 'u.models as user_models', 'n.start as rotated_to_start',
      'n.status as rotated_to_status', 'n.revoked_at as rotated_to_revoked_at', 'n.grace_until as rotated_to_grace_until',
    ])
    .where(by === 'hash' ? 'k.hash' : 'k.id', '=', '')

const teamsQuery = (db: Db) =>
  db
    .selectFrom('team_members as m')
    .innerJoin('teams as t', 't.id', 'm.team_id')
    .select(['t.id', 't.deleted_at', 't.limits', 't.budget', 't.models'])
    .where('m.user_id', '=', '')

/** How long loading a key (its row, its owner's teams) may take before the request is answered 503. */
export const KEY_LOOKUP_TIMEOUT_MS = 5000

/**
 * Load a key with its owner and the owner's teams; null when no key has that hash (or, with `by: 'id'`,
 * that id). Within `timeoutMs`, a deadline of its own whatever the database's statement timeout: it
 * bounds the wait for a connection (a server that does not answer the connect at all) too. Past it,
 * throws a DatabaseUnavailableError (answered 503).
 */
export async function findKeyRecord(db: Db, hash: string, by: 'hash' | 'id' = 'hash', timeoutMs = KEY_LOOKUP_TIMEOUT_MS): Promise<KeyRecord | null> {
  const signal = AbortSignal.timeout(timeoutMs)
  try {
    return await readKeyRecord(db, hash, by, signal)
  } catch (error) {
    // Our own deadline ran out (whatever the driver or Kysely threw on it): the database was too slow.
    throw signal.aborted && !isDatabaseUnavailable(error) ? new DatabaseUnavailableError(error) : error
  }
}

async function readKeyRecord(db: Db, hash: string, by: 'hash' | 'id', signal: AbortSignal): Promise<KeyRecord | null> {
  // Compiled once per database (and per transaction), then only re-bound. Building them through the
  // query builder on every key the cache did not hold was about two thirds of findKeyRecord's CPU in
  // a profile of cold keys; one lookup on Postgres now takes about a third less time
  // (benchmarks/README.md, "RSS with 100,000 keys").
  const keyRead = compileOnce(db, by === 'hash' ? 'auth.key_by_hash' : 'auth.key_by_id', () => keyQuery(db, by).compile())
  const row = (await db.executeQuery(withParameters(keyRead, [hash]), { signal })).rows[0]
  if (!row) return null
  const teamsRead = compileOnce(db, 'auth.teams_of_user', () => teamsQuery(db).compile())
  const teamRows = (await db.executeQuery(withParameters(teamsRead, [row.user_id]), { signal })).rows
  return {
    id: row.id,
    lineageId: row.lineage_id ?? row.id,
    hash: row.hash,
    start: row.start,
    end: row.end,
    environment: row.environment,
    name: row.name,
    teamId: row.team_id,
    models: sharedJson<string[]>(row.models),
    scopes: sharedJson<string[]>(row.scopes),
    limits: sharedJson<Limits>(row.limits),
    budget: sharedJson<Budget>(row.budget),
    status: row.status,
    expiresAt: ms(row.expires_at),
    revokedAt: ms(row.revoked_at),
    revokedReason: row.revoked_reason,
    rotatedTo: row.rotated_to,
    rotatedToStart: row.rotated_to_start ?? null,
    rotatedToUntil: row.rotated_to_status === 'revoked' ? (ms(row.rotated_to_revoked_at) ?? 0) : ms(row.rotated_to_grace_until ?? null),
    graceUntil: ms(row.grace_until),
    user: {
      id: row.user_id,
      disabledAt: ms(row.user_disabled_at),
      deletedAt: ms(row.user_deleted_at),
      limits: sharedJson<Limits>(row.user_limits),
      budget: sharedJson<Budget>(row.user_budget),
      models: sharedJson<string[]>(row.user_models),
    },
    teams:
      teamRows.length === 0
        ? NO_TEAMS
        : new Map(teamRows.map((t) => [t.id, { id: t.id, deletedAt: ms(t.deleted_at), limits: sharedJson<Limits>(t.limits), budget: sharedJson<Budget>(t.budget), models: sharedJson<string[]>(t.models) }])),
  }
}

/**
 * Keys per UPDATE of touchKeys. Each updated row searches the CASE from its top, so a statement
 * costs the square of its size; fewer keys a statement cost more round trips. For 10,000 keys
 * (scratch script, 2026-12-06) 300 took SQLite 49 ms and Postgres 311-346 ms, 50 took 17 ms and
 * 192-227 ms, 16 took 26-29 ms and 244-292 ms. SQLite runs it on the serving thread.
 */
export const TOUCH_CHUNK = 50

/** The UPDATE of touchKeys for `size` keys (a few sizes: see chunkSizes). */
function touchStatement(db: Db, size: number): CompiledQuery {
  return compileOnce(db, `auth.touch_${size}`, () => {
    const slots = Array.from({ length: size }, () => '')
    const cases = sql.join(
      slots.map((v) => sql`when ${v} then ${v}`),
      sql` `,
    )
    // Instances flush on their own timers, so a flush can carry an earlier use than one already
    // written: the WHERE keeps the later time (ISO text of one width compares as time, on both dialects).
    return sql`update api_keys set last_used_at = case id ${cases} end where id in (${sql.join(slots)}) and (last_used_at is null or last_used_at < case id ${cases} end)`.compile(db)
  })
}

/**
 * Write `last_used_at` for many keys at once: one UPDATE per TOUCH_CHUNK keys (a CASE on the
 * id gives each its own time), not one per key, each compiled once per size and re-bound. A
 * gateway serving 10,000 keys touches about that many every flush: a statement each cost the
 * serving thread half a second of Kysely and driver work; building the chunks' SQL through Kysely
 * every flush was still 3.8% of all CPU in a profile of 10,000 keys in turn (10,000 keys on
 * SQLite: 103-105 ms before, 17-24 ms now).
 *
 * Each chunk is its own statement, not one transaction for all: instances flush on their own
 * timers, each the keys it served, and a transaction holding one chunk's row locks while it
 * waited for the next deadlocked on Postgres against another instance's (two instances, 1,500
 * keys: two flushes in five failed after a second of waiting, while an admin's revoke of one of
 * those keys waited too). A statement alone holds its rows only while it runs; the chunks go
 * in the order of the ids, so two flushes meet the same rows in the same order. A flush that
 * fails halfway is sent again whole, which writes the same times.
 */
export async function touchKeys(db: Db, used: Map<string, number>): Promise<void> {
  if (used.size === 0) return
  const entries = [...used].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  let offset = 0
  for (const size of chunkSizes(entries.length, TOUCH_CHUNK)) {
    // In the statement's order: each key's id and time for the SET's CASE, the ids for IN, then the
    // ids and times again for the WHERE's CASE.
    const params: unknown[] = []
    for (let i = offset; i < offset + size; i++) params.push(entries[i]![0], iso(entries[i]![1]))
    for (let i = offset; i < offset + size; i++) params.push(entries[i]![0])
    for (let i = offset; i < offset + size; i++) params.push(entries[i]![0], iso(entries[i]![1]))
    await db.executeQuery(withParameters(touchStatement(db, size), params))
    offset += size
  }
}

export { audit } from '../../src/db/audit.ts'

// Cursors over (created_at, id) for most lists, (expires_at, id) for expiring keys.
export { decodeCursor, encodeCursor } from '../../src/lib/cursor.ts'
