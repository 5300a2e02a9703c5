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
