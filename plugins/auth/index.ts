import { Type } from '@sinclair/typebox'
import { definePlugin, type GatewayRequest } from '../../src/plugin.ts'
import { malformedAuthorization, presentedSecret } from '../../src/admin-key.ts'
import { newId } from '../../src/lib/id.ts'
import { adminRoutes } from './admin.ts'
import { displayKey, echo, mintKey } from './key-format.ts'
import { findKeyRecord, iso, touchKeys, type KeyRecord } from './repo.ts'
import { DIAGNOSE } from '../../src/routes/doctor.ts'
import { GatewayError } from '../../src/errors.ts'
import { KeyVerifier, type Presented, type Verdict } from './verify.ts'
import { MAX_TIMER_MS } from '../../src/config/schema.ts'

const Options = Type.Object(
  {
    /** Key records kept in memory. @default 100000 */
    cache_size: Type.Integer({ minimum: 1, default: 100_000 }),
    /** How long a cached record is trusted without an invalidation message (a safety net if one is lost). @default 30000 */
    cache_ttl_ms: Type.Integer({ minimum: 0, maximum: MAX_TIMER_MS, default: 30_000 }),
    /** How long an unknown key stays known-unknown. @default 5000 */
    negative_ttl_ms: Type.Integer({ minimum: 0, maximum: MAX_TIMER_MS, default: 5_000 }),
    /** How often `last_used_at` is written, in one batch. @default 5000 */
    last_used_flush_ms: Type.Integer({ minimum: 100, maximum: MAX_TIMER_MS, default: 5_000 }),
    /**
     * On the first start of an empty database, create a demo user and key and print the key.
     * Unset: only in the `dev` environment, since the key may use every model without limit
     * (a real provider's, billed) and the boot output often lands in a shared log.
     * @default true in dev, false in other environments
     */
    demo_key: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
)

const CHANNEL = 'auth.invalidate'
const LOCAL = 'auth'
const MAX_PENDING_TOUCHES = 100_000

/** The record a request was admitted with, for `describe`. */
const recordOf = (req: GatewayRequest): KeyRecord | undefined => req.locals[LOCAL] as KeyRecord | undefined

/**
 * API keys tied to users, teams and environments: every refusal a distinct code with a
 * message that says what to do. Also serves the admin API for users, teams and keys.
 */
export const auth = definePlugin({
  name: 'auth',
  options: Options,
  async setup({ options, config, services, logger }) {
    const db = services.db.db
    const verifier = new KeyVerifier({
      db,
      environment: config.environment,
      now: services.now,
      cacheSize: options.cache_size,
      cacheTtlMs: options.cache_ttl_ms,
      negativeTtlMs: options.negative_ttl_ms,
    })
    await services.bus.subscribe(CHANNEL, (message) => verifier.invalidate(message === '*' ? null : message))
    // Invalidations may have been lost (Redis restarted, the connection cut): any cached record,
    // or a key cached as unknown, may be stale. Every key is read again on its next use.
    services.bus.onResync(() => verifier.invalidate(null))
    const invalidate = async (hash: string | null) => {
      // Here first: over Redis this instance hears its own message only after a round trip,
      // and the admin's next request must already see the change.
      verifier.invalidate(hash)
      try {
        await services.bus.publish(CHANNEL, hash ?? '*')
      } catch (error) {
        // The change is in the database; failing the admin call would suggest it is not.
        logger.error('could not tell other instances to drop a cached key; they drop their whole key cache once this instance reaches Redis again, or this key when cache_ttl_ms passes', {
          error: String(error),
          cache_ttl_ms: options.cache_ttl_ms,
        })
      }
    }

    // last_used_at: remembered per key, written in one batch off the response path.
    let touched = new Map<string, number>()
    const flush = async () => {
      if (touched.size === 0) return
      const batch = touched
      touched = new Map()
      try {
        await touchKeys(db, batch)
      } catch (error) {
        logger.warn('could not write last_used_at; will retry', { error: String(error), keys: batch.size })
        for (const [id, at] of batch) if (!touched.has(id) && touched.size < MAX_PENDING_TOUCHES) touched.set(id, at)
      }
    }
    const timer = setInterval(() => void flush(), options.last_used_flush_ms)
    timer.unref?.()

    if (options.demo_key ?? config.environment === 'dev') await createDemoKey(services.db.db, config.environment, logger)

    const present = (req: GatewayRequest): Presented => {
      const key = presentedSecret(req.request)
      return {
        key,
        endpoint: req.endpoint,
        model: req.endpoint === 'models.list' || req.endpoint === 'models.get' || req.endpoint === 'key' ? undefined : req.model,
        team: req.request.headers.get('openai-organization'),
        // Read only when no key was found: a request with a key pays nothing for it.
        malformedAuthorization: key === null && malformedAuthorization(req.request),
      }
    }
    const apply = (req: GatewayRequest, verdict: Verdict) => {
      const diagnosing = req.locals[DIAGNOSE] !== undefined
      // The key doctor may describe a refused key too; a client request never gets that far.
      if (verdict.record && (verdict.ok || diagnosing)) req.locals[LOCAL] = verdict.record
      if (!verdict.ok) {
        if (verdict.record) req.refusedKey = { keyId: verdict.record.id, userId: verdict.record.user.id, teamId: verdict.record.teamId }
        return verdict.error
      }
      req.identity = verdict.identity
      if (!diagnosing && touched.size < MAX_PENDING_TOUCHES) touched.set(verdict.record.id, services.now())
      return undefined
    }

    /** The key doctor picked a key by id: the same rules, on a fresh read. */
    const diagnoseById = async (req: GatewayRequest, keyId: string) => {
      const record = await findKeyRecord(db, keyId, 'id')
      if (!record) return new GatewayError('not_found', `No key with id "${echo(keyId)}".`)
      const presented = present(req)
      if (record.environment !== config.environment) {
        return apply(req, { ok: false, record, error: new GatewayError('environment_mismatch', `The API key ${displayKey(record.start, record.end)} belongs to the "${record.environment}" environment, but this gateway serves "${config.environment}".`) })
      }
      return apply(req, verifier.decide(displayKey(record.start, record.end), record, presented))
    }

    return {
      // Its refusals of a key (missing, unknown, revoked, expired, its owner, team or scope) hold
      // whatever the body; only the model is read from the body, and judged once the body is read.
      authenticatesBeforeBody: true,
      authenticate(req) {
        const byId = req.locals[DIAGNOSE]
        if (typeof byId === 'string') return diagnoseById(req, byId)
        // A plugin listed before this one established who is calling (with credentials of its own):
        // no key of ours to check, and refusing for want of one would shut that caller out.
        if (req.identity !== undefined) return undefined
        const verdict = verifier.verify(present(req))
        return verdict instanceof Promise ? verdict.then((v) => apply(req, v)) : apply(req, verdict)
      },
      describe(req) {
        const record = recordOf(req)
        if (!record) return {}
        const identity = req.identity
        const now = services.now()
        return {
          id: record.id,
          name: record.name,
          environment: record.environment,
          status: keyStatus(record, now),
          user_id: record.user.id,
          // The team the request is billed to; for a key the doctor describes refused (no identity), the one it is bound to.
          team_id: identity === undefined ? record.teamId : identity.teamId,
          // What the request may use, narrowed by the owner's and the team's lists; a refused key's own.
          models: identity === undefined ? record.models : identity.models,
          scopes: record.scopes,
          limits: record.limits,
          budget: record.budget,
          expires_at: record.expiresAt === null ? null : iso(record.expiresAt),
          grace_until: record.graceUntil === null ? null : iso(record.graceUntil),
        }
      },
      routes(app) {
        app.use(adminRoutes({ services, environment: config.environment, invalidate }))
      },
      stats: () => ({ hits: verifier.hits, misses: verifier.misses }),
      async close() {
        clearInterval(timer)
        await flush()
      },
    }
  },
})

/** A key's state as a person would name it. */
function keyStatus(record: KeyRecord, now: number): 'active' | 'rotating' | 'revoked' | 'expired' {
  if (record.status === 'revoked' || (record.graceUntil !== null && record.graceUntil <= now)) return 'revoked'
  if (record.expiresAt !== null && record.expiresAt <= now) return 'expired'
  return record.graceUntil !== null ? 'rotating' : 'active'
}

/** First start of an empty database: one demo user with one key, printed once. */
async function createDemoKey(db: import('kysely').Kysely<import('../../src/db/schema.ts').Database>, environment: string, logger: import('../../src/lib/logger.ts').Logger): Promise<void> {
  const done = await db.selectFrom('settings').select('value').where('key', '=', 'demo_key_created').executeTakeFirst()
  if (done) return
  const anyUser = await db.selectFrom('users').select('id').limit(1).executeTakeFirst()
  const at = new Date().toISOString()
  const claimed = await db
    .insertInto('settings')
    .values({ key: 'demo_key_created', value: at, updated_at: at })
    .onConflict((oc) => oc.column('key').doNothing())
    .executeTakeFirst()
  // Another instance claimed it, or the operator already has users: nothing to do.
  if (Number(claimed.numInsertedOrUpdatedRows ?? 0) === 0 || anyUser) return
  const userId = 'usr_demo'
  const minted = mintKey(environment)
  await db.insertInto('users').values({ id: userId, email: null, name: 'Demo user', disabled_at: null, deleted_at: null, limits: null, budget: null, metadata: null, created_at: at, updated_at: at }).execute()
  await db
    .insertInto('api_keys')
    .values({
      id: newId('key'), hash: minted.hash, start: minted.start, end: minted.end, environment, user_id: userId, team_id: null, name: 'demo',
      models: null, scopes: null, limits: null, budget: null, status: 'active', expires_at: null, created_at: at, updated_at: at, last_used_at: null,
      revoked_at: null, revoked_reason: null, rotated_from: null, rotated_to: null, grace_until: null, metadata: null, lineage_id: null,
    })
    .execute()
  console.log(`\n  sluice demo API key for user ${userId} (shown once):\n    ${minted.plaintext}\n`)
  logger.info('created the demo user and key and printed the key once', { user_id: userId })
}
