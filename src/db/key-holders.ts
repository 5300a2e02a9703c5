import { sql } from 'kysely'
import type { ExpressionBuilder } from 'kysely'
import type { Database } from './schema.ts'

/**
 * Keys whose holder may still use them: the owner neither deleted nor disabled and, for a key
 * bound to a team, the team not deleted and the owner still in it. A key outside this is refused
 * with invalid_user_for_key whatever its own state, so lists of keys about to expire (the admin
 * API's and the expiry alerts') leave it out: its expiry changes nothing. For a query over `api_keys`.
 */
export function holderMayUse(eb: ExpressionBuilder<Database, 'api_keys'>) {
  return eb.and([
    eb.exists(eb.selectFrom('users as u').select('u.id').whereRef('u.id', '=', 'api_keys.user_id').where('u.deleted_at', 'is', null).where('u.disabled_at', 'is', null)),
    eb.or([
      eb('api_keys.team_id', 'is', null),
      eb.exists(
        eb
          .selectFrom('team_members as m')
          .innerJoin('teams as t', 't.id', 'm.team_id')
          .select('m.user_id')
          .whereRef('m.team_id', '=', 'api_keys.team_id')
          .whereRef('m.user_id', '=', 'api_keys.user_id')
          .where('t.deleted_at', 'is', null),
      ),
    ]),
  ])
}

/** Why a key's holder may not use it (see {@link holderStatus}); null when it may. */
export type HolderStatus = 'user_deleted' | 'user_disabled' | 'not_member' | 'team_deleted'

/**
 * Why every request with a key is refused with invalid_user_for_key whatever its own state, in the
 * order the auth plugin's verifier tells them: its owner deleted (or gone), disabled, not a member
 * of the team the key is bound to, that team deleted; null when none holds. One column of the
 * query over `api_keys` (correlated look-ups by primary key), so a list of keys says it for each
 * row without a query per row.
 */
export function holderStatus(eb: ExpressionBuilder<Database, 'api_keys'>) {
  const owner = eb.selectFrom('users as u').whereRef('u.id', '=', 'api_keys.user_id')
  return eb
    .case()
    .when(eb.not(eb.exists(owner.select('u.id').where('u.deleted_at', 'is', null))))
    .then(sql.lit('user_deleted'))
    .when(eb.exists(owner.select('u.id').where('u.disabled_at', 'is not', null)))
    .then(sql.lit('user_disabled'))
    .when(
      eb.and([
        eb('api_keys.team_id', 'is not', null),
        eb.not(eb.exists(eb.selectFrom('team_members as m').select('m.user_id').whereRef('m.team_id', '=', 'api_keys.team_id').whereRef('m.user_id', '=', 'api_keys.user_id'))),
      ]),
    )
    .then(sql.lit('not_member'))
    .when(eb.and([eb('api_keys.team_id', 'is not', null), eb.not(eb.exists(eb.selectFrom('teams as t').select('t.id').whereRef('t.id', '=', 'api_keys.team_id').where('t.deleted_at', 'is', null)))]))
    .then(sql.lit('team_deleted'))
    .else(sql.lit(null))
    .end()
    .$castTo<HolderStatus | null>()
}
