import { MIN_ADMIN_KEY_LENGTH } from '../../src/config/load.ts'
import { databaseUnavailable, isDatabaseUnavailable } from '../../src/db/errors.ts'
import { GatewayError } from '../../src/errors.ts'
import { allowsModel, type Endpoint, type Identity } from '../../src/plugin.ts'
import { LruCache } from './cache.ts'
import { displayKey, echo, hashKey, keyEnvironment, maskKey, maskKeysIn } from './key-format.ts'
import { findKeyRecord, iso, type Db, type KeyRecord } from './repo.ts'

/** The scope each endpoint needs. Key introspection needs none: a key may always ask about itself. */
export const ENDPOINT_SCOPES: Record<Endpoint, string | null> = {
  'chat.completions': 'chat',
  completions: 'completions',
  embeddings: 'embeddings',
  'models.list': 'models',
  'models.get': 'models',
  'tokens.count': 'tokens',
  key: null,
}
export const SCOPES = ['chat', 'completions', 'embeddings', 'models', 'tokens'] as const
/** The `revoked_reason` of a key that rotation without a grace period revoked. */
export const ROTATED = 'rotated'

/** What a check is about: the presented key, the request's endpoint, model and named team. */
export interface Presented {
  key: string | null
  endpoint: Endpoint
  model?: string
  /** Team named by `OpenAI-Organization`. */
  team?: string | null
  /** With no key: `Authorization` held something other than `Bearer <key>` (see malformedAuthorization). */
  malformedAuthorization?: boolean
}

export type Verdict = { ok: true; identity: Identity; record: KeyRecord } | { ok: false; error: GatewayError; record: KeyRecord | null }

/** How long a key the cache does not hold may take to load before the request is answered 503. */
export { KEY_LOOKUP_TIMEOUT_MS } from './repo.ts'

export interface VerifierOptions {
  db: Db
  /** Loads the record of a hash. @default findKeyRecord on `db`, within KEY_LOOKUP_TIMEOUT_MS (tests count or delay loads through this) */
  load?: (hash: string) => Promise<KeyRecord | null>
  environment: string
  now: () => number
  cacheSize: number
  cacheTtlMs: number
  negativeTtlMs: number
}

/**
 * Decides about a presented key. A warm key costs one SHA-256 and a map lookup: records
 * are cached (bounded, with expiry); unknown hashes are cached briefly too, so a flood
 * of wrong keys does not reach the database. Invalidation bumps a generation so a load
 * that raced an invalidation is not cached.
 */
export class KeyVerifier {
  private readonly cache: LruCache<KeyRecord | null>
  private readonly loading = new Map<string, Promise<KeyRecord | null>>()
  private generation = 0
  hits = 0
  misses = 0

  private readonly load: (hash: string) => Promise<KeyRecord | null>

  constructor(private readonly options: VerifierOptions) {
    this.cache = new LruCache(options.cacheSize, options.now)
    this.load = options.load ?? ((hash) => findKeyRecord(options.db, hash))
  }

  invalidate(hash: string | null): void {
    this.generation++
    // A load in flight may have read the old row: later lookups must not join it.
    if (hash === null) {
      this.cache.clear()
      this.loading.clear()
    } else {
      this.cache.delete(hash)
      this.loading.delete(hash)
    }
  }

  /** The cached or loaded record for a hash (null: no such key). */
  lookup(hash: string): KeyRecord | null | Promise<KeyRecord | null> {
    const cached = this.cache.get(hash)
    if (cached !== undefined) {
      this.hits++
      return cached
    }
    this.misses++
    const joined = this.loading.get(hash)
    if (joined) return joined
    const generation = this.generation
    const pending: Promise<KeyRecord | null> = this.load(hash).finally(() => {
      if (this.loading.get(hash) === pending) this.loading.delete(hash)
    })
    pending.then(
      (record) => {
        // Keyed by the record's own copy of the hash (equal to the one looked up): one string a key, not two.
        if (generation === this.generation) this.cache.set(record !== null && record.hash === hash ? record.hash : hash, record, record ? this.options.cacheTtlMs : this.options.negativeTtlMs)
      },
      () => {},
    )
    this.loading.set(hash, pending)
    return pending
  }

  verify(presented: Presented): Verdict | Promise<Verdict> {
    const key = presented.key
    if (!key) {
      if (presented.malformedAuthorization) {
        return fail(new GatewayError('invalid_api_key', 'The Authorization header is not of the form `Bearer <key>` (the word Bearer, a space, then the key, with no spaces in it). Send your sluice key as `Authorization: Bearer sk-<env>-…` or in the `x-api-key` header.'))
      }
      return fail(new GatewayError('missing_api_key', 'No API key was sent. Send your sluice key as `Authorization: Bearer sk-<env>-…` or in the `x-api-key` header.'))
    }
    const env = keyEnvironment(key)
    if (env === null) {
      const provider = providerOfKey(key)
      if (provider !== null) {
        return fail(new GatewayError('invalid_api_key', `The API key ${maskKey(key)} is not a sluice key: it looks like ${provider} API key. This gateway holds the providers' keys itself; send the sluice key an admin gave you (sk-<environment>-…), with the client's base URL set to this gateway.`))
      }
      // Whether it is the admin key is not said: /v1 takes wrong keys without limit, and would let
      // anyone test guesses at the admin key that /admin/* and the console limit per address. A
      // secret as long as an admin key is told, whatever it is, where the admin key belongs.
      const admin = key.length >= MIN_ADMIN_KEY_LENGTH ? ADMIN_KEY_HINT : ''
      return fail(new GatewayError('invalid_api_key', `The API key ${maskKey(key)} is malformed. sluice keys look like sk-<environment>-<secret of 32+ letters and digits>; check for a truncated copy, quotes or spaces.${admin}`))
    }
    if (env !== this.options.environment) {
      const error = new GatewayError('environment_mismatch', `The API key ${maskKey(key)} belongs to the "${env}" environment, but this gateway serves "${this.options.environment}". Use a ${this.options.environment} key here, or send the request to the ${env} gateway.`)
      // The prefix alone decides. The record, when the database has one, only ties the refusal to
      // its key and owner in the log: read through the cache, so a stranger's key costs one read
      // and then sits in the negative cache like an unknown key of this environment; a failed
      // read still refuses, as the prefix said.
      const record = this.lookup(hashKey(key))
      if (record instanceof Promise) return record.then((r): Verdict => ({ ok: false, error, record: r }), () => fail(error))
      return { ok: false, error, record }
    }
    const record = this.lookup(hashKey(key))
    if (record instanceof Promise) return record.then((r) => this.decide(key, r, presented), unavailable)
    return this.decide(key, record, presented)
  }

  /** The rules, in the order a user should hear about them. */
  decide(key: string, record: KeyRecord | null, presented: Presented): Verdict {
    if (!record) {
      return fail(new GatewayError('invalid_api_key', `The API key ${maskKey(key)} is not known to this gateway. Check that you copied the whole key (it is shown only once, at creation); otherwise ask an admin for a new one.`))
    }
    const shown = displayKey(record.start, record.end)
    const now = this.options.now()
    const no = (error: GatewayError): Verdict => ({ ok: false, error, record })

    // Rotation without grace revokes the old key at once; its holder needs the successor, not an admin.
    if (record.status === 'revoked' && record.revokedReason === ROTATED && record.rotatedTo !== null) {
      const when = record.revokedAt ? ` on ${iso(record.revokedAt)}` : ''
      return no(new GatewayError('key_revoked', `The API key ${shown} was replaced by rotation${when}.${successorAdvice(record, now)}`))
    }
    if (record.status === 'revoked') {
      // Masked again: a reason stored before revoke masked keys in it may hold one.
      const reason = record.revokedReason ? ` (reason: ${maskKeysIn(record.revokedReason)})` : ''
      const when = record.revokedAt ? ` on ${iso(record.revokedAt)}` : ''
      // Revoked during its rotation's grace: the key that replaced it, while served, is the one to use.
      const replaced = record.rotatedToStart !== null && (record.rotatedToUntil === null || record.rotatedToUntil > now)
      const next = replaced ? ` It had been replaced by rotation: use the new key (it starts with ${record.rotatedToStart}).` : ' Ask an admin for a new key.'
      return no(new GatewayError('key_revoked', `The API key ${shown} was revoked${when}${reason}.${next}`))
    }
    if (record.graceUntil !== null && record.graceUntil <= now) {
      return no(new GatewayError('key_revoked', `The API key ${shown} was replaced by rotation and its grace period ended at ${iso(record.graceUntil)}.${successorAdvice(record, now)}`))
    }
    if (record.expiresAt !== null && record.expiresAt <= now) {
      return no(new GatewayError('key_expired', `The API key ${shown} expired at ${iso(record.expiresAt)}. Ask an admin to extend it (PATCH /admin/keys/${record.id} with a later expires_at) or to create a new key.`))
    }
    const user = record.user
    if (user.deletedAt !== null) {
      return no(new GatewayError('invalid_user_for_key', `Invalid user associated with this key: its owner ${user.id} was deleted at ${iso(user.deletedAt)}, and keys of deleted users are refused. Ask an admin for a key of an active user.`))
    }
    if (user.disabledAt !== null) {
      return no(new GatewayError('invalid_user_for_key', `Invalid user associated with this key: its owner ${user.id} is disabled (since ${iso(user.disabledAt)}). Ask an admin to enable the user again (PATCH /admin/users/${user.id} {"disabled": false}).`))
    }
    let teamId = record.teamId
    if (teamId !== null) {
      const team = record.teams.get(teamId)
      if (!team) {
        return no(new GatewayError('invalid_user_for_key', `Invalid user associated with this key: its owner ${user.id} is not a member of team ${teamId}, which the key is bound to. Ask an admin to add the user to the team (POST /admin/teams/${teamId}/members), or use a key not bound to it.`))
      }
      if (team.deletedAt !== null) {
        return no(new GatewayError('invalid_user_for_key', `Invalid user associated with this key: the key is bound to team ${teamId}, which was deleted at ${iso(team.deletedAt)}. Use a key of an existing team.`))
      }
    }
    const named = presented.team
    if (named) {
      const shownTeam = echo(named)
      if (teamId !== null && named !== teamId) {
        return no(new GatewayError('invalid_user_for_key', `Invalid user associated with this key: the request names team ${shownTeam} (OpenAI-Organization header) but the key is bound to team ${teamId}. Drop the header, or use a key of team ${shownTeam}.`))
      }
      const team = record.teams.get(named)
      if (!team) {
        return no(new GatewayError('invalid_user_for_key', `Invalid user associated with this key: its owner ${user.id} is not a member of team ${shownTeam}, named by the OpenAI-Organization header. Drop the header, or ask an admin to add the user to that team.`))
      }
      if (team.deletedAt !== null) {
        return no(new GatewayError('invalid_user_for_key', `Invalid user associated with this key: the request names team ${shownTeam} (OpenAI-Organization header), which was deleted at ${iso(team.deletedAt)}. Drop the header, or name an existing team.`))
      }
      teamId = named
    }
    const scope = ENDPOINT_SCOPES[presented.endpoint]
    if (scope !== null && record.scopes !== null && !record.scopes.includes(scope)) {
      const held = record.scopes.length ? record.scopes.join(', ') : 'none'
      return no(new GatewayError('insufficient_permissions', `The API key ${shown} lacks the "${scope}" scope that this endpoint needs; it holds: ${held}. Ask an admin to grant it (PATCH /admin/keys/${record.id} scopes).`))
    }
    const model = presented.model
    if (model !== undefined) {
      if (!allowsModel(record.models, model)) {
        return no(new GatewayError('model_not_allowed', `The API key ${shown} may not use model "${echo(model, 256)}"; it may use: ${listed(record.models)}. Ask an admin to allow it (PATCH /admin/keys/${record.id} models).`, { param: 'model' }))
      }
      if (!allowsModel(user.models, model)) {
        return no(new GatewayError('model_not_allowed', `Model "${echo(model, 256)}" is not allowed for user ${user.id}, the owner of the API key ${shown}; the user may use: ${listed(user.models)}. Ask an admin to allow it (PATCH /admin/users/${user.id} models).`, { param: 'model' }))
      }
      const team = teamId === null ? undefined : record.teams.get(teamId)
      if (team !== undefined && !allowsModel(team.models, model)) {
        const how = named ? 'named by the OpenAI-Organization header' : 'which the API key is bound to'
        const fix = named && record.teamId === null ? ', or drop the header' : ''
        return no(new GatewayError('model_not_allowed', `Model "${echo(model, 256)}" is not allowed for team ${team.id}, ${how}; the team may use: ${listed(team.models)}. Ask an admin to allow it (PATCH /admin/teams/${team.id} models)${fix}.`, { param: 'model' }))
      }
    }
    // The usual case (no team named by the request) reuses one verdict per record: no allocation per request.
    if (!named) return (record.verdict ??= success(record, teamId))
    return success(record, teamId)
  }
}

/**
 * What the holder of a key replaced by rotation is to do: use its successor, or, when that one was
 * replaced or revoked in turn (rotated again without grace, say), get the chain's current key.
 */
function successorAdvice(record: KeyRecord, now: number): string {
  const start = record.rotatedToStart
  if (start === null) return ' Use the new key.'
  if (record.rotatedToUntil === null || record.rotatedToUntil > now) return ` Use the new key (it starts with ${start}).`
  return ` The key that replaced it (it starts with ${start}) was itself replaced or revoked since: ask an admin for the current key of its rotation chain (lineage ${record.lineageId}).`
}

/** What a secret that is no API key, but as long as an admin key, is told (see verify). */
const ADMIN_KEY_HINT = ' If it is the gateway\'s admin key: only /admin/* and the console take that one; the client API takes an API key (sk-<env>-…), which an admin creates with POST /admin/keys or in the console.'

/** A list of models as a refusal names it. */
const listed = (models: readonly string[] | null): string => (models?.length ? models.join(', ') : 'none')

/**
 * The models a request may use: those its key, the key's owner and its team all allow (null: every
 * model). The key's own list, unchanged, when neither owner nor team narrows it.
 */
function allowedModels(key: string[] | null, user: string[] | null, team: string[] | null): string[] | null {
  return narrowed(narrowed(key, user), team)
}
const narrowed = (allowed: string[] | null, by: string[] | null): string[] | null =>
  by === null ? allowed : allowed === null ? by : allowed.filter((m) => by.includes(m))

function success(record: KeyRecord, teamId: string | null): Extract<Verdict, { ok: true }> {
  const team = teamId === null ? undefined : record.teams.get(teamId)
  const user = record.user
  // Frozen: one identity may serve many requests of the same key at once.
  const identity = Object.freeze({
    keyId: record.id,
    keyLineageId: record.lineageId,
    userId: user.id,
    teamId,
    environment: record.environment,
    // What /v1/models lists, GET /v1/key shows and fallbacks are filtered by: every level's list at once.
    models: allowedModels(record.models, user.models, team?.models ?? null),
    scopes: record.scopes,
    attributes: Object.freeze({
      keyName: record.name,
      limits: Object.freeze({ key: record.limits, user: user.limits, team: team?.limits ?? null }),
      budget: Object.freeze({ key: record.budget, user: user.budget, team: team?.budget ?? null }),
      expiresAt: record.expiresAt,
    }),
  })
  return { ok: true, record, identity }
}

const fail = (error: GatewayError): Verdict => ({ ok: false, error, record: null })

/**
 * The shapes of the providers' own keys, the usual wrong key: a client switched to the gateway's base
 * URL but still sending the provider's key. Read only for a key that is no sluice key.
 */
const PROVIDER_KEYS = [
  // Project, service account and admin keys; older user keys hold "T3BlbkFJ" ("OpenAI" in base64).
  { provider: 'an OpenAI', shape: /^sk-(?:proj|svcacct|admin)-[\w-]{20,}$|^sk-[\w-]*T3BlbkFJ[\w-]*$/ },
  { provider: 'an Anthropic', shape: /^sk-ant-[\w-]{20,}$/ },
  { provider: 'a Google', shape: /^AIza[\w-]{35}$/ },
] as const

function providerOfKey(key: string): string | null {
  for (const { provider, shape } of PROVIDER_KEYS) if (shape.test(key)) return provider
  return null
}

/**
 * A key that could not be loaded because the database cannot answer now (down, locked, too slow):
 * 503 with Retry-After, a refusal like any other. Anything else is a bug and stays thrown (500).
 */
function unavailable(error: unknown): Verdict {
  if (isDatabaseUnavailable(error)) return fail(databaseUnavailable(error))
  throw error
}
