import { Type, type Static } from '@sinclair/typebox'
import { Elysia } from 'elysia'
import { adminActor, adminGuard } from '../../src/admin-key.ts'
import { sql, type Selectable, type SelectQueryBuilder } from 'kysely'
import { GatewayError } from '../../src/errors.ts'
import { withoutNulls, type BudgetInput, type LimitsInput } from '../../src/limits.ts'
import { byteOrder, isUniqueViolation, type DatabaseDialect } from '../../src/db/index.ts'
import type { ApiKeysTable, TeamsTable, UsersTable } from '../../src/db/schema.ts'
import { holderMayUse, holderStatus, type HolderStatus } from '../../src/db/key-holders.ts'
import { newId } from '../../src/lib/id.ts'
import { LATEST_TIME, parseRfc3339 } from '../../src/lib/rfc3339.ts'
import type { Services } from '../../src/services.ts'
import { displayKey, echo, maskKeysIn, mintKey } from './key-format.ts'
import { audit, decodeCursor, encodeCursor, fromJson, iso, toJson, type Db } from './repo.ts'
import * as S from './schemas.ts'
import { adminErrors, jsonResponse, ListOf, Nullable, Time } from '../../src/routes/schemas.ts'
import { ROTATED } from './verify.ts'

type UserRow = Selectable<UsersTable>
type TeamRow = Selectable<TeamsTable>
type KeyRow = Selectable<ApiKeysTable>
/** A key row with why its holder may not use it, where the query asked (see holderStatus). */
type Holder = { holder_status?: HolderStatus | null }

export interface AdminDeps {
  services: Services
  environment: string
  /** Tell every instance to drop cached key records: a key hash, or all. */
  invalidate(hash: string | null): Promise<void>
}

const MAX_METADATA = 16 * 1024

/** Limits or a budget as their column holds them: JSON without the fields sent as null ("not set"), or null. */
const limitsText = (value: LimitsInput | BudgetInput | null | undefined): string | null => toJson(value && withoutNulls(value))
const tags = ['Admin: users, teams, keys']

/**
 * `/admin` routes for users, teams, members and keys. Every change invalidates caches, then is
 * audited: caches first, so an audit write that fails cannot leave a revoked key (or a disabled
 * user's keys) served from cache until the TTL, with the admin's retry refused as a conflict.
 */
export function adminRoutes({ services, environment, invalidate }: AdminDeps) {
  const db: Db = services.db.db
  const now = () => services.now()
  const guard = adminGuard(services.admin)

  const user = async (id: string, includeDeleted = false): Promise<UserRow> => {
    const row = await db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst()
    if (!row || (row.deleted_at && !includeDeleted)) throw notFound('user', id)
    return row
  }
  const team = async (id: string, includeDeleted = false): Promise<TeamRow> => {
    const row = await db.selectFrom('teams').selectAll().where('id', '=', id).executeTakeFirst()
    if (!row || (row.deleted_at && !includeDeleted)) throw notFound('team', id)
    return row
  }
  const key = async (id: string): Promise<KeyRow & Holder> => {
    const row = await db.selectFrom('api_keys').selectAll().select((eb) => holderStatus(eb).as('holder_status')).where('id', '=', id).executeTakeFirst()
    if (!row) throw notFound('key', id)
    return row
  }
  /** What a new user collided with: a user holding its id (maybe a deleted one), or its email. */
  const userConflict = async (id: string, email: string | undefined): Promise<string> => {
    const taken = await db.selectFrom('users').select('deleted_at').where('id', '=', id).executeTakeFirst()
    if (taken) return taken.deleted_at ? deletedIdTaken('user', id, taken.deleted_at) : `A user with id "${echo(id)}" already exists.`
    if (email === undefined) return `A user with id "${echo(id)}" already exists.`
    const holder = await db.selectFrom('users').select(['id', 'deleted_at']).where('email', '=', email).executeTakeFirst()
    if (holder?.deleted_at) return `Email "${echo(email, 320)}" belongs to user ${holder.id}, deleted at ${holder.deleted_at}; a deleted user keeps its email. Use another one.`
    return `A user with email "${echo(email, 320)}" already exists.`
  }

  return new Elysia({ name: 'sluice.auth.admin', prefix: '/admin' })
    // The admin key before anything else looks at the request (see adminGuard).
    .onParse(guard.parse)
    .onTransform(guard.transform)
    // Users
    .post(
      '/users',
      async ({ body: sent, set, request }) => {
        const body = sent ?? {}
        checkMetadata(body.metadata)
        const at = iso(now())
        const id = body.id ?? newId('usr')
        await insertOrConflict(
          () =>
            db
              .insertInto('users')
              .values({ id, email: body.email ?? null, name: body.name ?? null, disabled_at: null, deleted_at: null, limits: limitsText(body.limits), budget: limitsText(body.budget), models: toJson(body.models), metadata: toJson(body.metadata), created_at: at, updated_at: at })
              .execute(),
          () => userConflict(id, body.email ?? undefined),
        )
        await audit(db, { actor: adminActor(request), action: 'user.create', targetType: 'user', targetId: id })
        set.status = 201
        return userView(await user(id))
      },
      { body: S.CreateUser, detail: { tags, summary: 'Create a user', responses: { ...jsonResponse('The new user', UserView, 201), ...adminErrors(400, 409) } } },
    )
    .get(
      '/users',
      async ({ query }) => list(await page(db.selectFrom('users').selectAll().where('deleted_at', 'is', null), query, 'id', services.db.dialect), userView),
      { query: S.ListQuery, detail: { tags, summary: 'List users (newest first, cursor paged)', responses: { ...jsonResponse('A page of users', ListOf(UserView)), ...adminErrors(400) } } },
    )
    .get('/users/:id', async ({ params }) => userView(await user(params.id, true)), {
      detail: { tags, summary: 'Get a user (deleted users too, with status "deleted")', responses: { ...jsonResponse('The user', UserView), ...adminErrors(404) } },
    })
    .patch(
      '/users/:id',
      async ({ params, body, request }) => {
        const row = await user(params.id)
        checkMetadata(body.metadata)
        const at = iso(now())
        await insertOrConflict(
          () =>
            db
              .updateTable('users')
              .set({
                ...(body.email !== undefined && { email: body.email }),
                ...(body.name !== undefined && { name: body.name }),
                ...(body.disabled !== undefined && { disabled_at: body.disabled ? (row.disabled_at ?? at) : null }),
                ...(body.models !== undefined && { models: toJson(body.models) }),
                ...(body.limits !== undefined && { limits: limitsText(body.limits) }),
                ...(body.budget !== undefined && { budget: limitsText(body.budget) }),
                ...(body.metadata !== undefined && { metadata: toJson(body.metadata) }),
                updated_at: at,
              })
              .where('id', '=', row.id)
              .execute(),
          `Another user already has email "${body.email}".`,
        )
        await invalidate(null)
        await audit(db, { actor: adminActor(request), action: 'user.update', targetType: 'user', targetId: row.id, details: { fields: Object.keys(body) } })
        return userView(await user(row.id))
      },
      { body: S.PatchUser, detail: { tags, summary: 'Update a user; {"disabled": true} refuses all its keys', responses: { ...jsonResponse('The user as changed', UserView), ...adminErrors(400, 404, 409) } } },
    )
    .delete(
      '/users/:id',
      async ({ params, request }) => {
        const row = await user(params.id)
        const at = iso(now())
        // Only while not deleted: of two DELETEs at once, the second finds it gone (404, as after the first) and audits nothing.
        const deleted = await db.updateTable('users').set({ deleted_at: at, updated_at: at }).where('id', '=', row.id).where('deleted_at', 'is', null).executeTakeFirst()
        if (deleted.numUpdatedRows === 0n) throw notFound('user', row.id)
        await invalidate(null)
        await audit(db, { actor: adminActor(request), action: 'user.delete', targetType: 'user', targetId: row.id })
        return userView(await user(row.id, true))
      },
      { detail: { tags, summary: 'Soft-delete a user: its keys stay and are refused with invalid_user_for_key', responses: { ...jsonResponse('The user, with status "deleted"', UserView), ...adminErrors(404) } } },
    )
    // Teams
    .post(
      '/teams',
      async ({ body, set, request }) => {
        checkMetadata(body.metadata)
        const at = iso(now())
        const id = body.id ?? newId('team')
        await insertOrConflict(
          () =>
            db
              .insertInto('teams')
              .values({ id, name: body.name, limits: limitsText(body.limits), budget: limitsText(body.budget), models: toJson(body.models), metadata: toJson(body.metadata), deleted_at: null, created_at: at, updated_at: at })
              .execute(),
          async () => {
            const taken = await db.selectFrom('teams').select('deleted_at').where('id', '=', id).executeTakeFirst()
            return taken?.deleted_at ? deletedIdTaken('team', id, taken.deleted_at) : `A team with id "${echo(id)}" already exists.`
          },
        )
        await audit(db, { actor: adminActor(request), action: 'team.create', targetType: 'team', targetId: id })
        set.status = 201
        return teamView(await team(id))
      },
      { body: S.CreateTeam, detail: { tags, summary: 'Create a team', responses: { ...jsonResponse('The new team', TeamView, 201), ...adminErrors(400, 409) } } },
    )
    .get(
      '/teams',
      async ({ query }) => list(await page(db.selectFrom('teams').selectAll().where('deleted_at', 'is', null), query, 'id', services.db.dialect), teamView),
      { query: S.ListQuery, detail: { tags, summary: 'List teams', responses: { ...jsonResponse('A page of teams', ListOf(TeamView)), ...adminErrors(400) } } },
    )
    // Deleted teams too, as for users: a deleted team's id stays taken (POST answers 409), and GET says why.
    .get('/teams/:id', async ({ params }) => teamView(await team(params.id, true)), {
      detail: { tags, summary: 'Get a team (deleted teams too, with their deleted_at)', responses: { ...jsonResponse('The team', TeamView), ...adminErrors(404) } },
    })
    .patch(
      '/teams/:id',
      async ({ params, body, request }) => {
        const row = await team(params.id)
        checkMetadata(body.metadata)
        await db
          .updateTable('teams')
          .set({
            ...(body.name !== undefined && { name: body.name }),
            ...(body.models !== undefined && { models: toJson(body.models) }),
            ...(body.limits !== undefined && { limits: limitsText(body.limits) }),
            ...(body.budget !== undefined && { budget: limitsText(body.budget) }),
            ...(body.metadata !== undefined && { metadata: toJson(body.metadata) }),
            updated_at: iso(now()),
          })
          .where('id', '=', row.id)
          .execute()
        await invalidate(null)
        await audit(db, { actor: adminActor(request), action: 'team.update', targetType: 'team', targetId: row.id, details: { fields: Object.keys(body) } })
        return teamView(await team(row.id))
      },
      { body: S.PatchTeam, detail: { tags, summary: 'Update a team', responses: { ...jsonResponse('The team as changed', TeamView), ...adminErrors(400, 404) } } },
    )
    .delete(
      '/teams/:id',
      async ({ params, request }) => {
        const row = await team(params.id)
        const at = iso(now())
        // Only while not deleted: of two DELETEs at once, the second finds it gone (404, as after the first) and audits nothing.
        const deleted = await db.updateTable('teams').set({ deleted_at: at, updated_at: at }).where('id', '=', row.id).where('deleted_at', 'is', null).executeTakeFirst()
        if (deleted.numUpdatedRows === 0n) throw notFound('team', row.id)
        await invalidate(null)
        await audit(db, { actor: adminActor(request), action: 'team.delete', targetType: 'team', targetId: row.id })
        return teamView(await team(row.id, true))
      },
      { detail: { tags, summary: 'Soft-delete a team: keys bound to it are refused', responses: { ...jsonResponse('The team, with its deleted_at', TeamView), ...adminErrors(404) } } },
    )
    .get(
      '/teams/:id/members',
      async ({ params, query }) => {
        const row = await team(params.id)
        // A membership has no id of its own: within a team, the user's id breaks ties of created_at.
        const members = await page(db.selectFrom('team_members').selectAll().where('team_id', '=', row.id), query, 'user_id', services.db.dialect)
        return list(members, (m) => ({ object: 'team_member' as const, team_id: m.team_id, user_id: m.user_id, role: m.role, created_at: m.created_at }))
      },
      { query: S.ListQuery, detail: { tags, summary: 'List the members of a team (newest first, cursor paged)', responses: { ...jsonResponse('A page of members', ListOf(TeamMember)), ...adminErrors(400, 404) } } },
    )
    .post(
      '/teams/:id/members',
      async ({ params, body, set, request }) => {
        const t = await team(params.id)
        const u = await user(body.user_id)
        const at = iso(now())
        await insertOrConflict(
          () => db.insertInto('team_members').values({ team_id: t.id, user_id: u.id, role: body.role ?? 'member', created_at: at }).execute(),
          `User ${u.id} is already a member of team ${t.id}.`,
        )
        await invalidate(null)
        await audit(db, { actor: adminActor(request), action: 'team.member.add', targetType: 'team', targetId: t.id, details: { user_id: u.id } })
        set.status = 201
        return { object: 'team_member', team_id: t.id, user_id: u.id, role: body.role ?? 'member', created_at: at }
      },
      { body: S.AddMember, detail: { tags, summary: 'Add a user to a team', responses: { ...jsonResponse('The membership', TeamMember, 201), ...adminErrors(400, 404, 409) } } },
    )
    .delete(
      '/teams/:id/members/:user_id',
      async ({ params, request }) => {
        const t = await team(params.id)
        const result = await db.deleteFrom('team_members').where('team_id', '=', t.id).where('user_id', '=', params.user_id).executeTakeFirst()
        if (Number(result.numDeletedRows) === 0) throw new GatewayError('not_found', `User ${echo(params.user_id)} is not a member of team ${t.id}.`)
        await invalidate(null)
        await audit(db, { actor: adminActor(request), action: 'team.member.remove', targetType: 'team', targetId: t.id, details: { user_id: params.user_id } })
        return { object: 'team_member', team_id: t.id, user_id: params.user_id, deleted: true }
      },
      { detail: { tags, summary: 'Remove a user from a team', responses: { ...jsonResponse('The membership removed', TeamMemberRemoved), ...adminErrors(404) } } },
    )
    // Keys
    .post(
      '/keys',
      async ({ body, set, request }) => {
        const ownerId = body.user_id
        const teamId = body.team_id ?? null
        const problem = await holderProblem(db, ownerId, teamId)
        if (problem) throw createRefusal(problem, ownerId)
        checkMetadata(body.metadata)
        const expiresAt = parseTime(body.expires_at, 'expires_at')
        if (expiresAt !== null && expiresAt <= now()) throw new GatewayError('invalid_request', 'expires_at must be in the future.', { param: 'expires_at' })
        const minted = mintKey(body.environment ?? environment)
        const at = iso(now())
        const id = newId('key')
        await db
          .insertInto('api_keys')
          .values({
            id, hash: minted.hash, start: minted.start, end: minted.end, environment: body.environment ?? environment, user_id: ownerId,
            team_id: teamId, name: body.name ?? null, models: toJson(body.models), scopes: toJson(body.scopes),
            limits: limitsText(body.limits), budget: limitsText(body.budget), status: 'active', expires_at: expiresAt === null ? null : iso(expiresAt),
            created_at: at, updated_at: at, last_used_at: null, revoked_at: null, revoked_reason: null, rotated_from: null,
            rotated_to: null, grace_until: null, metadata: toJson(body.metadata), lineage_id: null,
          })
          .execute()
        // A negative cache entry for this hash (someone tried it before it existed) must go.
        await invalidate(minted.hash)
        await audit(db, { actor: adminActor(request), action: 'key.create', targetType: 'key', targetId: id, details: { user_id: ownerId, team_id: teamId } })
        set.status = 201
        return { ...keyView(await key(id), now()), key: minted.plaintext }
      },
      {
        body: S.CreateKey,
        detail: {
          tags,
          summary: 'Create a key; the plaintext `key` appears only in this response',
          responses: { ...jsonResponse('The new key, with its plaintext `key`', CreatedKey, 201), ...adminErrors(400, 404) },
        },
      },
    )
    .get(
      '/keys',
      async ({ query }) => {
        let q = db.selectFrom('api_keys').selectAll().select((eb) => holderStatus(eb).as('holder_status'))
        if (query.user_id) q = q.where('user_id', '=', query.user_id)
        if (query.team_id) q = q.where('team_id', '=', query.team_id)
        const at = iso(now())
        if (query.status === 'revoked') q = q.where((eb) => eb.or([eb('status', '=', 'revoked'), eb('grace_until', '<=', at)]))
        // As keyView names them: a rotated key past its grace is revoked, whatever its expiry.
        const inGrace = (qb: typeof q) => qb.where((eb) => eb.or([eb('grace_until', 'is', null), eb('grace_until', '>', at)]))
        if (query.status === 'expired') q = inGrace(q.where('status', '=', 'active').where('expires_at', '<=', at))
        if (query.status === 'active') {
          q = inGrace(q.where('status', '=', 'active').where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', at)])))
        }
        return list(await page(q, query, 'id', services.db.dialect), (r) => keyView(r, now()))
      },
      { query: S.KeyListQuery, detail: { tags, summary: 'List keys, filtered by owner, team or status', responses: { ...jsonResponse('A page of keys', ListOf(KeyView)), ...adminErrors(400) } } },
    )
    .get(
      '/keys/expiring',
      async ({ query }) => {
        const within = parseDuration(query.within ?? '7d')
        const limit = pageSize(query.limit)
        const from = iso(now())
        // Past the last time a stored time can hold, the ISO text gets a six-digit year ("+010000-…")
        // that sorts below every stored time: a wider window would list nothing.
        const to = iso(Math.min(now() + within, LATEST_TIME))
        let q = db
          .selectFrom('api_keys')
          .selectAll()
          .where('status', '=', 'active')
          // A rotated key past its grace is refused already: it has nothing left to expire.
          .where((eb) => eb.or([eb('grace_until', 'is', null), eb('grace_until', '>', from)]))
          .where('expires_at', '>', from)
          .where('expires_at', '<=', to)
          // So is a key refused for its owner or team (the rules of holderProblem): its expiry changes nothing.
          .where(holderMayUse)
        // Soonest first, so the cursor is over (expires_at, id) rather than the other lists' (created_at, id).
        if (query.cursor) {
          const c = decodeCursor(query.cursor)
          if (!c) throw badCursor()
          // A row value, as the alerts' expiring-keys pages: one range of an index, where SQLite split an OR into two searches and a sort.
          q = q.where((eb) => eb(eb.refTuple('expires_at', 'id'), '>', eb.tuple(c.at, c.id)))
        }
        const rows = await q.orderBy('expires_at').orderBy('id').limit(limit + 1).execute()
        const shown = rows.length > limit ? rows.slice(0, limit) : rows
        const last = shown[shown.length - 1]
        return {
          object: 'list' as const,
          data: shown.map((r) => keyView(r, now())),
          next_cursor: rows.length > limit && last?.expires_at ? encodeCursor(last.expires_at, last.id) : null,
        }
      },
      {
        query: S.ExpiringQuery,
        detail: {
          tags,
          summary: 'Active keys that expire within a window (default 7d), soonest first, cursor paged; keys refused for their owner or team are left out',
          responses: { ...jsonResponse('A page of keys, soonest expiry first', ListOf(KeyView)), ...adminErrors(400) },
        },
      },
    )
    .get('/keys/:id', async ({ params }) => keyView(await key(params.id), now()), {
      detail: { tags, summary: 'Get a key (never its plaintext)', responses: { ...jsonResponse('The key', KeyView), ...adminErrors(404) } },
    })
    .patch(
      '/keys/:id',
      async ({ params, body, request }) => {
        const row = await key(params.id)
        checkMetadata(body.metadata)
        const expiresAt = body.expires_at === undefined ? undefined : parseTime(body.expires_at, 'expires_at')
        const at = iso(now())
        // The keys of a rotation chain share one set of counters, so they enforce one set of limits and
        // budget, whichever of them is named. The keys a key replaced, still in their grace, are that key
        // to whoever holds them: they follow its models, scopes and expiry, so a client holding an old
        // key escapes no narrowing made on the new one (a change named on an old key stays its own).
        const counted = {
          ...(body.limits !== undefined && { limits: limitsText(body.limits) }),
          ...(body.budget !== undefined && { budget: limitsText(body.budget) }),
        }
        const inherited = {
          ...(expiresAt !== undefined && { expires_at: expiresAt === null ? null : iso(expiresAt) }),
          ...(body.models !== undefined && { models: toJson(body.models) }),
          ...(body.scopes !== undefined && { scopes: toJson(body.scopes) }),
        }
        const chain = await db.transaction().execute(async (tx) => {
          await tx
            .updateTable('api_keys')
            .set({
              ...(body.name !== undefined && { name: body.name }),
              ...counted,
              ...inherited,
              ...(body.metadata !== undefined && { metadata: toJson(body.metadata) }),
              updated_at: at,
            })
            .where('id', '=', row.id)
            .execute()
          if (!served(row, at)) return []
          const reached = new Map<string, Pick<KeyRow, 'id' | 'hash'>>()
          if (Object.keys(counted).length > 0) {
            const others = await servedChain(tx, row, at)
            if (others.length > 0) await tx.updateTable('api_keys').set({ ...counted, updated_at: at }).where('id', 'in', others.map((k) => k.id)).execute()
            for (const k of others) reached.set(k.id, k)
          }
          if (Object.keys(inherited).length > 0) {
            const older = await servedPredecessors(tx, row, at)
            if (older.length > 0) await tx.updateTable('api_keys').set({ ...inherited, updated_at: at }).where('id', 'in', older.map((k) => k.id)).execute()
            for (const k of older) reached.set(k.id, k)
          }
          return [...reached.values()]
        })
        await invalidate(row.hash)
        for (const other of chain) await invalidate(other.hash)
        const details = { fields: Object.keys(body), ...(chain.length > 0 && { also_applied_to: chain.map((k) => k.id) }) }
        await audit(db, { actor: adminActor(request), action: 'key.update', targetType: 'key', targetId: row.id, details })
        return keyView(await key(row.id), now())
      },
      {
        body: S.PatchKey,
        detail: {
          tags,
          summary: 'Change a key: name, expiry, models, scopes, limits, budget',
          description:
            'The keys of a rotation chain (one lineage_id) share their rate limits, max_parallel slots and budget counters, so a change to limits or budget of a key still served applies to every other key of its chain still served (the new key and an old one in its grace period), whichever of them is named. The keys a key replaced are that key to whoever holds them: a change to its models, scopes or expires_at applies to those still in their grace period too (one named on an old key stays its own). Name and metadata stay per key.',
          responses: { ...jsonResponse('The key as changed', KeyView), ...adminErrors(400, 404) },
        },
      },
    )
    .post(
      '/keys/:id/revoke',
      async ({ params, body, request }) => {
        const row = await key(params.id)
        // Revoked, or rotated with its grace period ended (refused already): nothing to revoke.
        if (row.status === 'revoked' || (row.grace_until !== null && Date.parse(row.grace_until) <= now())) throw alreadyRevoked(row)
        const at = iso(now())
        // A key written into the reason (the holder told the new one) would reach whoever presents this
        // one, perhaps the finder of a leaked key, and the audit trail: it is kept masked.
        const reason = body?.reason == null ? null : maskKeysIn(body.reason)
        // Only while still active: of two revocations at once (two operators, two instances), the
        // second finds it revoked and is refused, instead of overwriting the reason and auditing again.
        const revoked = await db
          .updateTable('api_keys')
          .set({ status: 'revoked', revoked_at: at, revoked_reason: reason, updated_at: at })
          .where('id', '=', row.id)
          .where('status', '=', 'active')
          .executeTakeFirst()
        // Revoked meanwhile: refused as if it had been before, with the time it was.
        if (Number(revoked.numUpdatedRows) === 0) throw alreadyRevoked(await key(row.id))
        await invalidate(row.hash)
        // The keys it replaced that are still in their rotation's grace go with it: a new key revoked
        // because it leaked must not leave the old one working for the rest of the grace period.
        const withIt: string[] = []
        for (let successor = row.id; ; ) {
          const before = await db
            .selectFrom('api_keys')
            .select(['id', 'hash'])
            .where('rotated_to', '=', successor)
            .where('status', '=', 'active')
            .where('grace_until', '>', at)
            .executeTakeFirst()
          if (!before) break
          await db
            .updateTable('api_keys')
            .set({ status: 'revoked', revoked_at: at, revoked_reason: `revoked with its successor ${row.id}`, updated_at: at })
            .where('id', '=', before.id)
            .where('status', '=', 'active')
            .execute()
          await invalidate(before.hash)
          withIt.push(before.id)
          successor = before.id
        }
        await audit(db, {
          actor: adminActor(request),
          action: 'key.revoke',
          targetType: 'key',
          targetId: row.id,
          details: { reason, ...(withIt.length > 0 && { also_revoked: withIt }) },
        })
        return keyView(await key(row.id), now())
      },
      { body: S.RevokeKey, detail: { tags, summary: 'Revoke a key at once, on every instance', responses: { ...jsonResponse('The key, revoked', KeyView), ...adminErrors(400, 404, 409) } } },
    )
    .post(
      '/keys/:id/rotate',
      async ({ params, body, set, request }) => {
        const row = await key(params.id)
        const view = keyView(row, now())
        if (view.status !== 'active') throw new GatewayError('conflict', `Key ${row.id} is ${view.status}; only an active key can be rotated.`)
        // Rotating it again would give it a second successor and could stretch its grace period.
        if (row.rotated_to !== null) {
          throw new GatewayError('conflict', `Key ${row.id} was already rotated (to ${row.rotated_to}); rotate that key instead.`)
        }
        // The successor would be refused for its owner at once, as a new key for that owner is refused.
        const problem = await holderProblem(db, row.user_id, row.team_id)
        if (problem) throw rotateRefusal(problem, row)
        const grace = body?.grace_seconds ?? 0
        const minted = mintKey(row.environment)
        const id = newId('key')
        const at = iso(now())
        const graceUntil = iso(now() + grace * 1000)
        const ended = await db.transaction().execute(async (tx) => {
          // The old key first, and only while it is active and not rotated yet: a rotation running at
          // the same time (another operator, another instance) waits for this one's row lock, then
          // changes nothing and is refused, instead of giving the key a second successor.
          const claimed = await tx
            .updateTable('api_keys')
            .set({
              rotated_to: id,
              grace_until: graceUntil,
              updated_at: at,
              ...(grace === 0 && { status: 'revoked' as const, revoked_at: at, revoked_reason: ROTATED }),
            })
            .where('id', '=', row.id)
            .where('rotated_to', 'is', null)
            .where('status', '=', 'active')
            .executeTakeFirst()
          if (Number(claimed.numUpdatedRows) === 0) {
            // Thrown inside the transaction: it is rolled back.
            throw new GatewayError('conflict', `Key ${row.id} was rotated or revoked meanwhile; only an active key can be rotated, once.`)
          }
          // Copied as it is now, after the claim: a PATCH that committed since `row` was read (its
          // limits, models, expiry) reaches the successor; one that commits after the claim finds
          // the successor in the chain and updates it too.
          const current = await tx.selectFrom('api_keys').selectAll().where('id', '=', row.id).executeTakeFirstOrThrow()
          await tx
            .insertInto('api_keys')
            .values({
              ...current, id, hash: minted.hash, start: minted.start, end: minted.end, created_at: at, updated_at: at, last_used_at: null,
              status: 'active', revoked_at: null, revoked_reason: null, rotated_from: row.id, rotated_to: null, grace_until: null,
              // Rotation replaces the secret only: limits and spend carry on under the chain's first key.
              lineage_id: row.lineage_id ?? row.id,
            })
            .execute()
          // The keys this one replaced that are still in their grace end no later than it does, as a
          // revoke of it revokes them: else an older secret outlives a newer one (rotated without
          // grace because it leaked, say) and its holder is sent to a successor already refused.
          const lineage = row.lineage_id ?? row.id
          const older = await tx
            .selectFrom('api_keys')
            .select(['id', 'hash'])
            .where((eb) => eb.or([eb('id', '=', lineage), eb('lineage_id', '=', lineage)]))
            .where('id', '!=', row.id)
            .where('status', '=', 'active')
            .where('grace_until', '>', graceUntil)
            .execute()
          if (older.length > 0) {
            await tx.updateTable('api_keys').set({ grace_until: graceUntil, updated_at: at }).where('id', 'in', older.map((k) => k.id)).execute()
          }
          return older
        })
        await invalidate(row.hash)
        await invalidate(minted.hash)
        for (const other of ended) await invalidate(other.hash)
        const details = { new_key_id: id, grace_seconds: grace, ...(ended.length > 0 && { also_ended: ended.map((k) => k.id) }) }
        await audit(db, { actor: adminActor(request), action: 'key.rotate', targetType: 'key', targetId: row.id, details })
        set.status = 201
        return { ...keyView(await key(id), now()), key: minted.plaintext, previous: keyView(await key(row.id), now()) }
      },
      {
        body: S.RotateKey,
        detail: {
          tags,
          summary: 'Replace a key with a new secret, keeping its limits, budget and spend; the old one works for grace_seconds more',
          responses: { ...jsonResponse('The new key, with its plaintext `key`, and the `previous` one as it is now', RotatedKey, 201), ...adminErrors(400, 404, 409) },
        },
      },
    )
}

/** Whether a key may still be served: not revoked, and not rotated out past its grace period (`at` is now, ISO). */
const served = (row: Pick<KeyRow, 'status' | 'grace_until'>, at: string): boolean => row.status === 'active' && (row.grace_until === null || row.grace_until > at)

/** The other keys of `row`'s rotation chain (its lineage) that may still be served. */
async function servedChain(db: Db, row: KeyRow, at: string): Promise<Pick<KeyRow, 'id' | 'hash'>[]> {
  const lineage = row.lineage_id ?? row.id
  return await db
    .selectFrom('api_keys')
    .select(['id', 'hash'])
    .where((eb) => eb.or([eb('id', '=', lineage), eb('lineage_id', '=', lineage)]))
    .where('id', '!=', row.id)
    .where('status', '=', 'active')
    .where((eb) => eb.or([eb('grace_until', 'is', null), eb('grace_until', '>', at)]))
    .execute()
}

/** The keys `row` replaced, directly or through earlier rotations, that may still be served (in their grace). */
async function servedPredecessors(db: Db, row: KeyRow, at: string): Promise<Pick<KeyRow, 'id' | 'hash'>[]> {
  const found: Pick<KeyRow, 'id' | 'hash'>[] = []
  // Back along rotated_from: a chain is a line (a key is rotated once), as long as its rotations.
  for (let from = row.rotated_from; from !== null; ) {
    const before = await db.selectFrom('api_keys').select(['id', 'hash', 'status', 'grace_until', 'rotated_from']).where('id', '=', from).executeTakeFirst()
    if (!before) break
    if (served(before, at)) found.push({ id: before.id, hash: before.hash })
    from = before.rotated_from
  }
  return found
}

/**
 * One page of a list, newest first by (created_at, `tiebreak`), after the cursor; `next_cursor`
 * names the last row shown when more follow. `tiebreak` is a column unique among the listed rows,
 * compared in byte order on both databases (SQLite's way; `collate "C"` on Postgres, whose default
 * collation may be linguistic): rows created at one time come in one order wherever they are kept.
 */
async function page<DB, TB extends keyof DB, K extends string, O extends { created_at: string } & Record<K, string>>(
  q: SelectQueryBuilder<DB, TB, O>,
  query: { limit?: number; cursor?: string },
  tiebreak: K,
  dialect: DatabaseDialect,
): Promise<{ rows: O[]; next_cursor: string | null }> {
  const limit = pageSize(query.limit)
  // The builder's own types cannot name a column chosen by the caller; seen as one table of the
  // two columns the cursor reads, the conditions type-check and the rows are the caller's.
  let sel = q as unknown as SelectQueryBuilder<{ row: { created_at: string; tiebreak: string } }, 'row', O>
  const tb = byteOrder(tiebreak, dialect)
  if (query.cursor) {
    const c = decodeCursor(query.cursor)
    if (!c) throw badCursor()
    sel = sel.where((eb) => eb.or([eb('created_at', '<', c.at), eb.and([eb('created_at', '=', c.at), eb(tb, '<', c.id)])]))
  }
  const rows = await sel.orderBy('created_at', 'desc').orderBy(tb, 'desc').limit(limit + 1).execute()
  const shown = rows.length > limit ? rows.slice(0, limit) : rows
  const last = shown[shown.length - 1]
  return { rows: shown, next_cursor: rows.length > limit && last ? encodeCursor(last.created_at, last[tiebreak]) : null }
}

/** The `limit` of a list request, checked here so the refusal names the field. */
function pageSize(limit: number | undefined = 100): number {
  if (!Number.isInteger(limit) || limit < 1 || limit > S.MAX_PAGE) {
    throw new GatewayError('invalid_request', `limit must be an integer from 1 to ${S.MAX_PAGE}.`, { param: 'limit' })
  }
  return limit
}

const badCursor = () => new GatewayError('invalid_request', 'The cursor is not one this API gave out; start again without it.', { param: 'cursor' })

function list<R, V>(result: { rows: R[]; next_cursor: string | null }, view: (row: R) => V) {
  return { object: 'list' as const, data: result.rows.map(view), next_cursor: result.next_cursor }
}

export function userView(r: UserRow): Static<typeof UserView> {
  return {
    object: 'user' as const,
    id: r.id,
    email: r.email,
    name: r.name,
    status: r.deleted_at ? 'deleted' : r.disabled_at ? 'disabled' : 'active',
    disabled_at: r.disabled_at,
    deleted_at: r.deleted_at,
    models: fromJson<string[]>(r.models),
    limits: fromJson(r.limits),
    budget: fromJson(r.budget),
    metadata: fromJson(r.metadata),
    created_at: r.created_at,
    updated_at: r.updated_at,
  }
}

export function teamView(r: TeamRow): Static<typeof TeamView> {
  return {
    object: 'team' as const,
    id: r.id,
    name: r.name,
    models: fromJson<string[]>(r.models),
    limits: fromJson(r.limits),
    budget: fromJson(r.budget),
    metadata: fromJson(r.metadata),
    deleted_at: r.deleted_at,
    created_at: r.created_at,
    updated_at: r.updated_at,
  }
}

const Metadata = Nullable(Type.Record(Type.String(), Type.Unknown()))

/** What userView returns: the schema of the documentation and the type of the view. */
const UserView = Type.Object({
  object: Type.Literal('user'),
  id: Type.String(),
  email: Nullable(Type.String()),
  name: Nullable(Type.String()),
  status: Type.Union([Type.Literal('active'), Type.Literal('disabled'), Type.Literal('deleted')]),
  disabled_at: Nullable(Time),
  deleted_at: Nullable(Time),
  models: Nullable(Type.Array(Type.String(), { description: "Models the user's keys may use; null: all" })),
  limits: Nullable(S.Limits),
  budget: Nullable(S.Budget),
  metadata: Metadata,
  created_at: Time,
  updated_at: Time,
})

/** What teamView returns. */
const TeamView = Type.Object({
  object: Type.Literal('team'),
  id: Type.String(),
  name: Type.String(),
  models: Nullable(Type.Array(Type.String(), { description: 'Models requests billed to the team may use; null: all' })),
  limits: Nullable(S.Limits),
  budget: Nullable(S.Budget),
  metadata: Metadata,
  deleted_at: Nullable(Time),
  created_at: Time,
  updated_at: Time,
})

const TeamMember = Type.Object({
  object: Type.Literal('team_member'),
  team_id: Type.String(),
  user_id: Type.String(),
  role: Type.Union([Type.Literal('member'), Type.Literal('admin')]),
  created_at: Time,
})
const TeamMemberRemoved = Type.Object({ object: Type.Literal('team_member'), team_id: Type.String(), user_id: Type.String(), deleted: Type.Literal(true) })

/** What keyView returns, for the documentation (test/docs.test.ts compares it with a real response). */
const KeyView = Type.Object({
  object: Type.Literal('api_key'),
  id: Type.String(),
  name: Nullable(Type.String()),
  display: Type.String({ description: 'The key shortened for display: its start and last 4 characters' }),
  start: Type.String(),
  end: Type.String(),
  environment: Type.String(),
  status: Type.Union([Type.Literal('active'), Type.Literal('revoked'), Type.Literal('expired')]),
  user_id: Type.String(),
  team_id: Nullable(Type.String()),
  models: Nullable(Type.Array(Type.String())),
  scopes: Nullable(Type.Array(Type.String())),
  limits: Nullable(S.Limits),
  budget: Nullable(S.Budget),
  metadata: Metadata,
  expires_at: Nullable(Time),
  created_at: Time,
  updated_at: Time,
  last_used_at: Nullable(Time),
  revoked_at: Nullable(Time),
  revoked_reason: Nullable(Type.String()),
  rotated_from: Nullable(Type.String()),
  rotated_to: Nullable(Type.String()),
  grace_until: Nullable(Time),
  lineage_id: Type.String({ description: 'The first key of its rotation chain, whose limits and budget counters the chain shares' }),
  holder_status: Nullable(
    Type.Union([Type.Literal('user_deleted'), Type.Literal('user_disabled'), Type.Literal('not_member'), Type.Literal('team_deleted')], {
      description:
        'Why every request with this key is refused with invalid_user_for_key, whatever its status: its owner deleted or disabled, not a member of the team the key is bound to, or that team deleted; null when none of them (a revoked or expired key is refused for that first)',
    }),
  ),
})
const Plaintext = Type.String({ description: 'The key itself: shown in this response only, never again' })
const CreatedKey = Type.Object({ ...KeyView.properties, key: Plaintext })
const RotatedKey = Type.Object({ ...KeyView.properties, key: Plaintext, previous: KeyView })

/** A key as the admin API shows it: the display form, never the hash or plaintext. */
export function keyView(r: KeyRow & Holder, now: number): Static<typeof KeyView> {
  const rotatedOut = r.grace_until !== null && Date.parse(r.grace_until) <= now
  const expired = r.expires_at !== null && Date.parse(r.expires_at) <= now
  const status = r.status === 'revoked' || rotatedOut ? 'revoked' : expired ? 'expired' : 'active'
  // Nothing writes the row when a grace period ends, yet the key is revoked from then on: it shows
  // when and why as a key rotated without grace does (rotated_to names its successor). A revocation
  // stored during the grace period came first and stands.
  const revokedByRotation = r.status !== 'revoked' && rotatedOut
  return {
    object: 'api_key' as const,
    id: r.id,
    name: r.name,
    display: displayKey(r.start, r.end),
    start: r.start,
    end: r.end,
    environment: r.environment,
    status,
    user_id: r.user_id,
    team_id: r.team_id,
    models: fromJson<string[]>(r.models),
    scopes: fromJson<string[]>(r.scopes),
    limits: fromJson(r.limits),
    budget: fromJson(r.budget),
    metadata: fromJson(r.metadata),
    expires_at: r.expires_at,
    created_at: r.created_at,
    updated_at: r.updated_at,
    last_used_at: r.last_used_at,
    revoked_at: revokedByRotation ? r.grace_until : r.revoked_at,
    // Masked when stored; masked here too for reasons stored before that.
    revoked_reason: revokedByRotation ? ROTATED : r.revoked_reason === null ? null : maskKeysIn(r.revoked_reason),
    rotated_from: r.rotated_from,
    rotated_to: r.rotated_to,
    grace_until: r.grace_until,
    // Which keys share limits and budget counters: all those of one rotation chain, named by its first key.
    lineage_id: r.lineage_id ?? r.id,
    holder_status: r.holder_status ?? null,
  }
}

/** The refusal to revoke a key that is revoked already: by an admin, or by the end of its rotation's grace period. */
const alreadyRevoked = (row: KeyRow): GatewayError =>
  new GatewayError(
    'conflict',
    row.status === 'revoked'
      ? `Key ${row.id} is already revoked (at ${row.revoked_at}).`
      : `Key ${row.id} is already revoked: it was rotated and its grace period ended at ${row.grace_until}.`,
  )

const notFound = (kind: string, id: string) => new GatewayError('not_found', `No ${kind} with id "${echo(id)}".`)

/** Why a user may not hold a key (bound to a team): each is a refusal of its requests with invalid_user_for_key. */
type HolderProblem =
  | { kind: 'user_gone'; deletedAt: string | null }
  | { kind: 'user_disabled'; disabledAt: string }
  | { kind: 'team_gone'; teamId: string; deletedAt: string | null }
  | { kind: 'not_member'; teamId: string }

/**
 * Whether `userId` may hold a key bound to `teamId`, by the rules verify.ts applies to requests:
 * creation and rotation both mint a key, and neither mints one the gateway would refuse at once
 * for its owner. Null when it may.
 */
async function holderProblem(db: Db, userId: string, teamId: string | null): Promise<HolderProblem | null> {
  const owner = await db.selectFrom('users').select(['deleted_at', 'disabled_at']).where('id', '=', userId).executeTakeFirst()
  if (!owner || owner.deleted_at) return { kind: 'user_gone', deletedAt: owner?.deleted_at ?? null }
  if (owner.disabled_at) return { kind: 'user_disabled', disabledAt: owner.disabled_at }
  if (teamId === null) return null
  const bound = await db.selectFrom('teams').select('deleted_at').where('id', '=', teamId).executeTakeFirst()
  if (!bound || bound.deleted_at) return { kind: 'team_gone', teamId, deletedAt: bound?.deleted_at ?? null }
  const member = await db.selectFrom('team_members').select('user_id').where('team_id', '=', teamId).where('user_id', '=', userId).executeTakeFirst()
  return member ? null : { kind: 'not_member', teamId }
}

/** The refusal of `POST /admin/keys` for a holder problem, naming the body field at fault. */
function createRefusal(problem: HolderProblem, userId: string): GatewayError {
  switch (problem.kind) {
    case 'user_gone':
      return notFound('user', userId)
    case 'user_disabled':
      return new GatewayError('invalid_request', `User ${userId} is disabled; enable it before giving it keys.`, { param: 'user_id' })
    case 'team_gone':
      return notFound('team', problem.teamId)
    case 'not_member':
      return new GatewayError('invalid_request', `User ${userId} is not a member of team ${problem.teamId}; add it first (POST /admin/teams/${problem.teamId}/members).`, { param: 'team_id' })
  }
}

/**
 * The refusal of a rotation for a holder problem: the same codes as creation's, since the same
 * owner and team are refused, but no body field to name: they are the rotated key's own.
 */
function rotateRefusal(problem: HolderProblem, row: KeyRow): GatewayError {
  const cannot = `Key ${row.id} cannot be rotated:`
  switch (problem.kind) {
    case 'user_gone':
      return new GatewayError('not_found', `${cannot} its owner, user ${row.user_id}, was deleted${problem.deletedAt ? ` at ${problem.deletedAt}` : ''}, and a deleted user's keys are refused. Create a key for an active user instead.`)
    case 'user_disabled':
      return new GatewayError('invalid_request', `${cannot} its owner, user ${row.user_id}, is disabled (since ${problem.disabledAt}); enable it first (PATCH /admin/users/${row.user_id} {"disabled": false}).`)
    case 'team_gone':
      return new GatewayError('not_found', `${cannot} it is bound to team ${problem.teamId}, which was deleted${problem.deletedAt ? ` at ${problem.deletedAt}` : ''}, and keys bound to a deleted team are refused. Create a key of an existing team instead.`)
    case 'not_member':
      return new GatewayError('invalid_request', `${cannot} its owner, user ${row.user_id}, is not a member of team ${problem.teamId}, which the key is bound to; add it first (POST /admin/teams/${problem.teamId}/members).`)
  }
}

/** Run an insert or update; a unique violation becomes a 409 with `message` (worked out only then, when it needs a lookup). */
async function insertOrConflict(write: () => Promise<unknown>, message: string | (() => Promise<string>)): Promise<void> {
  try {
    await write()
  } catch (error) {
    if (isUniqueViolation(error)) throw new GatewayError('conflict', typeof message === 'string' ? message : await message())
    throw error
  }
}

/**
 * The 409 for an id a deleted user or team holds. Deletion is soft: the row stays so that its
 * keys are still refused and its usage still named, and a new owner of the id would inherit both.
 */
const deletedIdTaken = (kind: 'user' | 'team', id: string, deletedAt: string): string =>
  `The id "${echo(id)}" belongs to a ${kind} deleted at ${deletedAt}, and ids are not reused: the keys and usage recorded under it stay with the deleted ${kind}. Choose another id, or leave id out to get a generated one.`

function checkMetadata(metadata: unknown): void {
  if (metadata !== undefined && metadata !== null && JSON.stringify(metadata).length > MAX_METADATA) {
    throw new GatewayError('invalid_request', `metadata is larger than ${MAX_METADATA} bytes once encoded.`, { param: 'metadata' })
  }
}

function parseTime(value: string | null | undefined, param: string): number | null {
  if (value === undefined || value === null) return null
  const at = parseRfc3339(value)
  if (at === null) {
    throw new GatewayError('invalid_request', `${param} must be an RFC 3339 time with a time zone, such as 2030-01-31T00:00:00Z; got "${echo(value, 64)}".`, { param })
  }
  // 9999-12-31T23:59:59-01:00 is in year 10000 in UTC, which stored text cannot hold in order.
  if (at > LATEST_TIME) throw new GatewayError('invalid_request', `${param} must be at most ${iso(LATEST_TIME)}; got "${echo(value, 64)}".`, { param })
  return at
}

const UNITS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const
export function parseDuration(text: string): number {
  const match = /^(\d{1,6})(s|m|h|d|w)$/.exec(text)
  if (!match) throw new GatewayError('invalid_request', `"${text}" is not a duration such as 7d or 12h.`, { param: 'within' })
  return Number(match[1]) * UNITS[match[2] as keyof typeof UNITS]
}
