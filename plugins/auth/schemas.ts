import { CloneType, Type, type TSchema } from '@sinclair/typebox'
import { t } from 'elysia'
import { BudgetInputSchema, BudgetSchema, LimitsInputSchema, LimitsSchema } from '../../src/limits.ts'
import { Nullable } from '../../src/routes/schemas.ts'
import { SCOPES } from './verify.ts'

/**
 * Ids of users and teams: letters, digits and `_ . : -`, but not dots alone. `.` and `..` are path
 * segments that URL normalisation resolves (`/admin/users/..` is `/admin`), so a user or team with
 * such an id could be created but never read, changed or deleted.
 */
const ID_PATTERN = '^(?!\\.+$)[A-Za-z0-9_.:-]+$'
const Id = (description: string) => t.String({ minLength: 1, maxLength: 64, pattern: ID_PATTERN, description })
const NewUserId = Id('usr_… generated when omitted. Letters, digits and _ . : -, not dots alone; the id of a deleted user is not reused')
const NewTeamId = Id('team_… generated when omitted. Letters, digits and _ . : -, not dots alone; the id of a deleted team is not reused')
const Name = t.String({ minLength: 1, maxLength: 200 })
const Email = t.String({ minLength: 3, maxLength: 320, pattern: '^[^\\s@]+@[^\\s@]+$' })
const Metadata = t.Record(t.String({ maxLength: 100 }), t.Unknown(), { description: 'Free-form JSON (at most 16 KiB once encoded)' })
const Time = t.String({ description: 'RFC 3339 time', maxLength: 40 })
const modelList = (description: string) => t.Array(t.String({ minLength: 1, maxLength: 256 }), { maxItems: 1000, description })
const ModelNames = modelList('Models the key may use; null or absent: all')
/** A user's or team's: a request may use a model only if its key, the key's owner and the team it is billed to all allow it. */
const UserModels = modelList("Models the user's keys may use (each key may narrow them further); null or absent: all")
const TeamModels = modelList('Models requests billed to the team (keys bound to it, or naming it in OpenAI-Organization) may use; null or absent: all')
const Scopes = t.Array(t.Union(SCOPES.map((s) => t.Literal(s))), { maxItems: SCOPES.length, description: `Scopes: ${SCOPES.join(', ')}; null or absent: all` })

/** Limits and budget as the admin API shows them. */
export const Limits = LimitsSchema
export const Budget = BudgetSchema
/** As bodies send them: a field may be null, "not set"; the routes drop such fields before storing (withoutNulls). */
export const LimitsInput = LimitsInputSchema
export const BudgetInput = BudgetInputSchema
/**
 * `schema` with another description. A description on a wrapper does not reach the document:
 * the OpenAPI plugin folds a nullable union into its member, whose own description wins.
 */
const redescribe = <T extends TSchema>(schema: T, description: string): T => ({ ...CloneType(schema), description })
// A PATCH writes limits and budget whole, as it writes every other field: what it leaves out of
// the object is gone afterwards. Said in the documentation, since a merge is what many expect.
const PatchLimits = t.Optional(
  Nullable(
    redescribe(
      LimitsInput,
      'Replaces the whole limits object, it is not merged: a limit left out or null is removed ({"limits": {"rpm": 7}} and {"limits": {"rpm": 7, "tpm": null}} drop a tpm set before); null removes them all',
    ),
  ),
)
const PatchBudget = t.Optional(
  Nullable(
    redescribe(
      BudgetInput,
      'Replaces the whole budget, it is not merged: a field left out or null is removed ({"budget": {"usd": 5, "period": "month"}} and {"budget": {"usd": 5, "tokens": null, "period": "month"}} drop a tokens budget set before); null removes it',
    ),
  ),
)

/**
 * An optional field of a create body: it may also be null, "not set", as leaving it out is (scripts
 * and SDKs often send every field; a PATCH reads null as "clear", which on a new object is the same).
 */
const Unset = <T extends Parameters<typeof t.Union>[0][number]>(s: T) => t.Optional(Nullable(s))

// Every field is optional, so the body is too: `POST /admin/users` with none creates a user with a generated id.
export const CreateUser = t.Optional(
  t.Object(
    { id: Unset(NewUserId), email: Unset(Email), name: Unset(Name), models: Unset(UserModels), limits: Unset(LimitsInput), budget: Unset(BudgetInput), metadata: Unset(Metadata) },
    { additionalProperties: false },
  ),
)
export const PatchUser = t.Object(
  {
    email: t.Optional(Nullable(Email)),
    name: t.Optional(Nullable(Name)),
    disabled: t.Optional(t.Boolean()),
    models: t.Optional(Nullable(UserModels)),
    limits: PatchLimits,
    budget: PatchBudget,
    metadata: t.Optional(Nullable(Metadata)),
  },
  { additionalProperties: false },
)
export const CreateTeam = t.Object(
  { id: Unset(NewTeamId), name: Name, models: Unset(TeamModels), limits: Unset(LimitsInput), budget: Unset(BudgetInput), metadata: Unset(Metadata) },
  { additionalProperties: false },
)
export const PatchTeam = t.Object(
  { name: t.Optional(Name), models: t.Optional(Nullable(TeamModels)), limits: PatchLimits, budget: PatchBudget, metadata: t.Optional(Nullable(Metadata)) },
  { additionalProperties: false },
)
export const AddMember = t.Object({ user_id: Id('The user to add: the id of an existing user, not deleted'), role: Unset(t.Union([t.Literal('member'), t.Literal('admin')])) }, { additionalProperties: false })

export const CreateKey = t.Object(
  {
    user_id: Id('The owner of the key: the id of an existing user, neither deleted nor disabled'),
    team_id: Unset(Id('The team the key is bound to: the id of an existing team the owner is a member of; null or absent: none')),
    name: Unset(Name),
    environment: Unset(t.String({ pattern: '^[a-z0-9]{1,16}$', description: 'Defaults to the gateway environment' })),
    expires_at: Unset(Time),
    models: Unset(ModelNames),
    scopes: Unset(Scopes),
    limits: Unset(LimitsInput),
    budget: Unset(BudgetInput),
    metadata: Unset(Metadata),
  },
  { additionalProperties: false },
)
export const PatchKey = t.Object(
  {
    name: t.Optional(Nullable(Name)),
    expires_at: t.Optional(Nullable(Time)),
    models: t.Optional(Nullable(ModelNames)),
    scopes: t.Optional(Nullable(Scopes)),
    limits: PatchLimits,
    budget: PatchBudget,
    metadata: t.Optional(Nullable(Metadata)),
  },
  { additionalProperties: false },
)
// Both bodies are optional: `POST /admin/keys/:id/revoke` with no body at all is the common call.
export const RevokeKey = t.Optional(t.Object({ reason: Unset(t.String({ maxLength: 500 })) }, { additionalProperties: false }))
export const RotateKey = t.Optional(
  t.Object(
    // TypeBox's Integer, not Elysia's `t.Integer`, which also takes numeric strings ("60").
    { grace_seconds: Unset(Type.Integer({ minimum: 0, maximum: 30 * 86400, description: 'How long the old key keeps working; null or absent: 0. @default 0' })) },
    { additionalProperties: false },
  ),
)
/** Page size bounds; the range is checked by the handler so the refusal can name `limit`. */
export const MAX_PAGE = 500
// Elysia's `t.Integer` reads the query string's digits; a range in the schema would fail
// inside its decoder, where the error no longer knows the field.
const Limit = t.Integer({ description: `Page size, 1 to ${MAX_PAGE} @default 100` })
const Cursor = t.String({ maxLength: 200, description: 'next_cursor of the previous page' })
export const ListQuery = t.Object({
  limit: t.Optional(Limit),
  cursor: t.Optional(Cursor),
})
export const KeyListQuery = t.Object({
  // Never empty: `user_id=` (a script's unset variable) would otherwise list every key of every user.
  user_id: t.Optional(t.String({ minLength: 1, maxLength: 64, description: "Only this user's keys" })),
  team_id: t.Optional(t.String({ minLength: 1, maxLength: 64, description: 'Only the keys bound to this team' })),
  status: t.Optional(t.Union([t.Literal('active'), t.Literal('revoked'), t.Literal('expired')])),
  limit: t.Optional(Limit),
  cursor: t.Optional(Cursor),
})
export const ExpiringQuery = t.Object({
  within: t.Optional(t.String({ pattern: '^\\d{1,6}(s|m|h|d|w)$', description: 'e.g. 7d, 12h @default 7d' })),
  limit: t.Optional(Limit),
  cursor: t.Optional(Cursor),
})
