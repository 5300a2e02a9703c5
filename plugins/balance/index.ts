import { Type } from '@sinclair/typebox'
import { Elysia } from 'elysia'
import { allowsModel, definePlugin, type AttemptFailure, type Endpoint, type MaybePromise, type RoutePlan } from '../../src/plugin.ts'
import { GatewayError } from '../../src/errors.ts'
import { adminActor, adminGuard } from '../../src/admin-key.ts'
import { audit } from '../../src/db/audit.ts'
import { roughPromptTokens } from '../../src/lib/usage.ts'
import { completionsAsked } from '../../src/providers/shared/openai-format.ts'
import { adminErrors, jsonResponse, ListOf, Nullable, Time } from '../../src/routes/schemas.ts'
import type { ProviderKeyConfig } from '../../src/config/schema.ts'
import type { GroupTarget, ModelGroup, ModelRegistry, ProviderRuntime, RouteTarget } from '../../src/models.ts'
import { available, availableAt, modelHealthOf, coolingUntil, forgetStaleLatency, halfOpen, headroomFrom, newHealth, openUntil, recordLatency, stateOf, KEY_STATES, type ModelHealth, type KeyHealth, type SharedState } from './health.ts'
import { PICKERS, newPickerState, type Candidate, type PickerState } from './strategies.ts'
import { MAX_TIMER_MS } from '../../src/config/schema.ts'

const Options = Type.Object(
  {
    /**
     * Attempts per request across the group and its fallbacks. Once they are spent, each fallback
     * group not tried yet still gets one attempt: the client sees success while any path works.
     * @default 4
     */
    max_attempts: Type.Integer({ minimum: 1, maximum: 20, default: 4 }),
    /** ModelHealth of a key for the model a 429 was for, when it carries no Retry-After. @default 10000 */
    cooldown_ms: Type.Integer({ minimum: 0, maximum: MAX_TIMER_MS, default: 10_000 }),
    /** Consecutive failures (5xx, timeouts, network) of one upstream model on a key that open the key's circuit for that model. @default 5 */
    circuit_failures: Type.Integer({ minimum: 1, default: 5 }),
    /** How long an open circuit keeps a key out for its model before one trial request. @default 30000 */
    circuit_open_ms: Type.Integer({ minimum: 0, maximum: MAX_TIMER_MS, default: 30_000 }),
    /** First retry delay after a 5xx or timeout; doubles per retry, with full jitter. @default 50 */
    backoff_ms: Type.Integer({ minimum: 0, maximum: MAX_TIMER_MS, default: 50 }),
    /** Longest retry delay. @default 1000 */
    backoff_max_ms: Type.Integer({ minimum: 0, maximum: MAX_TIMER_MS, default: 1000 }),
    /** Weight of the newest latency sample in the moving average. @default 0.3 */
    latency_alpha: Type.Number({ exclusiveMinimum: 0, maximum: 1, default: 0.3 }),
    /** A key's latency average no request has refreshed for this long is forgotten, so the latency strategy tries the key again. @default 300000 */
    latency_ttl_ms: Type.Integer({ minimum: 100, maximum: MAX_TIMER_MS, default: 300_000 }),
  },
  { additionalProperties: false },
)

const CHANNEL = 'balance.health'
/** The audit action of an operator's reset of a key; a resync replays those it may have missed. */
const RESET_ACTION = 'provider_key.reset'
/** How long before a bus gap was noticed a reset is replayed from: other instances' clocks and a late notice. */
const RESYNC_MARGIN_MS = 60_000
/** A key's `target_id` in the audit trail. */
const auditTarget = (h: KeyHealth) => `${h.provider}/${h.key}`

/** A group's (target, key) pairs with their picking state, built once per group object. */
interface Pool {
  group: ModelGroup
  /** `modelHealth`: the key's state (cooldown, circuit) for the target's upstream model, looked up once here, not per pick. */
  candidates: (Candidate & { target: GroupTarget; key: ProviderKeyConfig; route: RouteTarget; modelHealth: ModelHealth })[]
  state: PickerState
  /** This pool, then its group's fallbacks' pools; filled on first use. */
  chain: Pool[] | undefined
  /** Some key of the chain has its own tpm: only then are a request's tokens estimated. Set with `chain`. */
  metered: boolean
  /**
   * The endpoints some provider of the chain serves and some other does not (a group mixing Claude
   * with a provider that also embeds): only for those does a pick skip the targets that cannot serve
   * the request. Set with `chain`.
   */
  partial: ReadonlySet<Endpoint>
  /**
   * Whether a stream keeps its key busy until it ends: only for strategies that read the
   * in-flight counts. Watching a stream for its end costs a JavaScript hop per chunk.
   */
  holdsStreams: boolean
}

/**
 * Per provider key: its own rpm/tpm, kept in process (the upstream's limit is per key, not per
 * request). Each bucket holds what is used (missing from a full bucket) at `ts`, not what is left:
 * a limit the operator changes keeps what was used, so a raised one has room at once (as the quota
 * plugin's buckets do), and one lowered below it is in debt until its own rate refills it.
 */
interface KeyRate {
  rpm: { used: number; ts: number } | null
  tpm: { used: number; ts: number } | null
}

/**
 * Load balancing over a model group's targets × their provider keys, by the group's
 * strategy; retries by failure class, cooldowns, dead keys, circuit breakers, and the
 * group's fallbacks. Health is shared with other instances over the message bus.
 */
export const balance = definePlugin({
  name: 'balance',
  options: Options,
  async setup({ options, services, models, logger }) {
    const health = new Map<string, KeyHealth>()
    const rates = new Map<string, KeyRate>()
    const pools = new WeakMap<ModelGroup, Pool>()
    const now = () => services.now()
    const id = (provider: string, key: string) => `${provider}\u0000${key}`

    const healthOf = (provider: string, key: string): KeyHealth => {
      const k = id(provider, key)
      let h = health.get(k)
      if (!h) health.set(k, (h = newHealth(provider, key)))
      return h
    }
    /** Tell the other instances about `h`, and about its cooldown and circuit for one model when `model` is given. */
    const share = (h: KeyHealth, model: ModelHealth | null, reset = false) => {
      // `openUntil` 0: see SharedState for why older instances must not get a model's circuit there.
      const state: SharedState = { provider: h.provider, key: h.key, coolingUntil: model?.until ?? 0, dead: h.dead, openUntil: 0 }
      if (model) {
        state.model = model.model
        state.modelOpenUntil = model.openUntil
        state.modelFailures = model.failures
      }
      if (reset) state.reset = true
      services.bus.publish(CHANNEL, JSON.stringify(state)).catch((error: unknown) => logger.warn('could not share key health', { error: String(error) }))
    }
    const clear = (h: KeyHealth) => {
      h.dead = null
      h.forbiddenStrikes = 0
      // In place: pools' candidates hold these records.
      for (const c of h.models.values()) {
        c.until = 0
        c.openUntil = 0
        c.failures = 0
        c.trial = false
      }
    }
    /**
     * A hash of each key's secret, to tell when the operator replaced it: a new secret under the
     * same key id is another upstream key, which inherits nothing of the old one's record.
     */
    const secrets = new Map<string, number | bigint>()
    /**
     * Give every configured key its record, and each a record (cooldown, headroom, circuit) per
     * upstream model the groups send to it; forget keys and models the registry no longer has
     * (changed at run time through the admin API), and what a key earned under a secret it no
     * longer has. Made up front, not on a key's first use: a cooldown or circuit another instance
     * shares finds its record here before this instance served that model. The maps never hold
     * more than the config has.
     */
    const prune = () => {
      const live = new Set<string>()
      for (const p of models.providers()) {
        for (const k of p.keys) {
          const kid = id(p.id, k.id)
          live.add(kid)
          const secret = Bun.hash(k.secret)
          const before = secrets.get(kid)
          if (before !== undefined && before !== secret) {
            const h = health.get(kid)
            // Cleared in place: requests still in flight on it hold this record.
            if (h) clear(h)
            rates.delete(kid)
          }
          secrets.set(kid, secret)
          healthOf(p.id, k.id)
        }
      }
      for (const k of health.keys()) if (!live.has(k)) health.delete(k)
      for (const k of rates.keys()) if (!live.has(k)) rates.delete(k)
      for (const k of secrets.keys()) if (!live.has(k)) secrets.delete(k)
      const served = new Map<KeyHealth, Set<string>>()
      for (const group of models.list()) {
        for (const target of group.targets) {
          for (const key of target.provider.keys) {
            const h = healthOf(target.provider.id, key.id)
            modelHealthOf(h, target.model)
            let names = served.get(h)
            if (!names) served.set(h, (names = new Set()))
            names.add(target.model)
          }
        }
      }
      for (const h of health.values()) for (const model of h.models.keys()) if (!served.get(h)?.has(model)) h.models.delete(model)
      pruned = models.providers()
    }
    /** The registry's providers when `prune` last ran: every change (here or on another instance) makes new ones. */
    let pruned: readonly ProviderRuntime[] = []
    /**
     * Prune when the registry changed since the last time. The admin API changes it on this
     * instance, a catalog message on the others (src/catalog.ts reloads it): whatever reads the
     * records (the health view, a reset, a message about a key) calls this first, so it sees the
     * keys the registry has now, not those it had at the last request that routed.
     */
    const sync = () => {
      const current = models.providers()
      if (current.length !== pruned.length || current.some((p, i) => p !== pruned[i])) prune()
    }
    prune()

    /**
     * A circuit another instance opened until `until`, merged into this one's for the same model.
     * An open period already over is left out: older instances send their key's last one with
     * every message, and it would put a closed circuit here half-open. Like a circuit opened here,
     * one failed trial after it opens it again (onFailure: any failure while `openUntil` is set).
     * `failures`: the sender's failures in a row, which the health view shows when more than this
     * instance's own; older instances send none.
     */
    const openFrom = (c: ModelHealth, until: number, t: number, failures: number | undefined) => {
      if (until <= t || until <= c.openUntil) return
      c.openUntil = until
      if (typeof failures === 'number' && Number.isInteger(failures) && failures > c.failures) c.failures = failures
    }

    await services.bus.subscribe(CHANNEL, (message) => {
      try {
        const s = JSON.parse(message) as SharedState
        const k = id(s.provider, s.key)
        // A key added since the last prune has no record yet: the registry may know it already.
        if (!health.has(k)) sync()
        const h = health.get(k)
        if (!h) return
        if (s.reset === true) return clear(h)
        // Merge, never undo: each instance keeps the longest cooldown and open period it heard of.
        // A cooldown without a model (an instance older than per-model cooldowns) is left out: on
        // the whole key it would keep models that are not limited off the key, and ignoring it costs
        // at most one 429 here, after which this instance cools that model itself. A model this
        // instance does not send to the key has no record and is left out too.
        const model = typeof s.model === 'string' ? h.models.get(s.model) : undefined
        if (model && typeof s.coolingUntil === 'number') model.until = Math.max(model.until, s.coolingUntil)
        const t = now()
        if (typeof s.modelOpenUntil === 'number') {
          if (model) openFrom(model, s.modelOpenUntil, t, s.modelFailures)
        } else if (typeof s.openUntil === 'number') {
          // An instance older than per-model circuits, whose one circuit for the key is open: it
          // cannot say which model failed (an outage of the key's endpoint stops them all), so every
          // model here is opened until then, as the key was before. Each then leaves it by its own
          // trial, and no key-wide circuit is kept beside the models' for these messages alone.
          // (This version's message about a key's death comes here too, with 0: nothing opens.)
          for (const c of h.models.values()) openFrom(c, s.openUntil, t, undefined)
        }
        if (s.dead !== null) h.dead = s.dead
      } catch {
        // Not ours or malformed: ignore.
      }
    })
    /**
     * Messages may have been lost while Redis was away. A lost cooldown, open circuit or death is
     * learned again from the upstream at the cost of one failed attempt, retried on another key,
     * and a stale one here ends by itself, except a death: that holds until an operator resets the
     * key, so a lost reset would keep a key the operator put back out of service on this instance
     * for good. Resets are in the audit trail: those made since the gap began (with a margin for
     * clocks and for the time it took to notice) are done here again; one this instance had heard
     * already costs at most that one failed attempt per key. Nothing is announced: each
     * instance replays them itself, and announcing this instance's verdicts could undo a reset the
     * others made during the gap.
     */
    services.bus.onResync((since) => {
      const from = new Date(since - RESYNC_MARGIN_MS).toISOString()
      services.db.db
        .selectFrom('audit_log')
        .select('target_id')
        .where('action', '=', RESET_ACTION)
        .where('at', '>=', from)
        .execute()
        .then((rows) => {
          if (rows.length === 0) return
          sync()
          const reset = new Set(rows.map((r) => r.target_id))
          for (const h of health.values()) if (reset.has(auditTarget(h))) clear(h)
        })
        .catch((error: unknown) => logger.error('could not read the key resets made while the message bus was disconnected; a key reset then may stay out of service here', { error: String(error) }))
    })

    const poolOf = (group: ModelGroup): Pool => {
      let pool = pools.get(group)
      if (pool) return pool
      // A group object is new after every registry change: the moment to drop keys that went away.
      sync()
      const candidates: Pool['candidates'] = []
      for (const target of group.targets) {
        // A target's weight is its share of the group, split among its provider's keys by theirs:
        // adding a key to a provider spreads the target's traffic, it does not draw more of it.
        const keysWeight = target.provider.keys.reduce((sum, key) => sum + (key.weight ?? 1), 0)
        for (const key of target.provider.keys) {
          const route: RouteTarget = { provider: target.provider, model: target.model, key, group: group.name }
          const health = healthOf(target.provider.id, key.id)
          const weight = keysWeight > 0 ? (target.weight * (key.weight ?? 1)) / keysWeight : 0
          candidates.push({ index: candidates.length, weight, health, modelHealth: modelHealthOf(health, target.model), target, key, route })
        }
      }
      const holdsStreams = group.strategy === 'least-busy' || group.strategy === 'latency'
      pool = { group, candidates, state: newPickerState(candidates.length), chain: undefined, metered: false, partial: new Set(), holdsStreams }
      pools.set(group, pool)
      return pool
    }
    /** The group, then its fallbacks in order (each once; a fallback's own fallbacks are not followed). */
    const chainOf = (group: ModelGroup): readonly Pool[] => {
      const pool = poolOf(group)
      if (pool.chain) return pool.chain
      const chain = [pool]
      for (const name of group.fallbacks) {
        const g = models.get(name)
        if (g && !chain.some((p) => p.group === g)) chain.push(poolOf(g))
      }
      // The registry swaps every group at once on a change, so a chain is final for its group object.
      pool.chain = chain
      pool.metered = chain.some((p) => p.candidates.some((c) => c.key.tpm !== undefined))
      pool.partial = partialEndpoints(chain)
      return chain
    }

    /**
     * ms until the key's own rpm/tpm has room for one more request of `tokens` (0: room now).
     * With `take`, the request is counted; without, only checked (candidates that are not
     * chosen keep theirs).
     */
    const rateWait = (provider: string, key: ProviderKeyConfig, tokens: number, take: boolean): number => {
      if (!key.rpm && !key.tpm) return 0
      const k = id(provider, key.id)
      let r = rates.get(k)
      if (!r) rates.set(k, (r = { rpm: null, tpm: null }))
      const t = now()
      const level = (b: { used: number; ts: number } | null, limit: number) => (b === null ? limit : limit - Math.max(0, b.used - ((t - b.ts) * limit) / 60_000))
      const rpmLeft = key.rpm ? level(r.rpm, key.rpm) : Infinity
      const tpmLeft = key.tpm ? level(r.tpm, key.tpm) : Infinity
      const tpmNeed = Math.min(tokens, key.tpm ?? tokens)
      const wait = Math.max(
        rpmLeft < 1 ? ((1 - rpmLeft) * 60_000) / key.rpm! : 0,
        tpmLeft < tpmNeed ? ((tpmNeed - tpmLeft) * 60_000) / key.tpm! : 0,
      )
      if (wait === 0 && take) {
        if (key.rpm) r.rpm = { used: key.rpm - rpmLeft + 1, ts: t }
        if (key.tpm) r.tpm = { used: key.tpm - tpmLeft + tokens, ts: t }
      }
      return wait
    }

    /** Give back what a pick took from the key's own rpm/tpm for a request that was never sent (its adapter refused it). */
    const refund = (provider: string, key: ProviderKeyConfig, tokens: number): void => {
      const r = rates.get(id(provider, key.id))
      if (!r) return
      if (r.rpm) r.rpm.used -= 1
      if (r.tpm) r.tpm.used -= tokens
    }

    /**
     * A 429 cools the key for the attempt's upstream model only (providers limit per model); a
     * 401/403 is about the key itself, dead for every model. 5xx, timeouts and network errors
     * count toward the key's circuit for the attempt's model: one model failing (deprecated or
     * broken at the provider, a prompt it always fails on) must not take the key's other models
     * with it. An outage of the whole endpoint opens every model's circuit in turn, each after
     * `circuit_failures` failures of its own, retried on other keys meanwhile.
     */
    /** The key's last error, as the health view shows it. */
    const noteError = (h: KeyHealth, failure: AttemptFailure, t: number) => {
      h.lastError = { at: t, status: failure.status, message: (failure.operatorMessage ?? failure.error.message).slice(0, 300) }
    }

    const onFailure = (h: KeyHealth, model: ModelHealth, failure: AttemptFailure) => {
      const t = now()
      model.trial = false
      // The request's own fault (the upstream's 400 or 404, the adapter's refusal) tells nothing of
      // the key: its last error stays the last one about the key, which an operator reads for that.
      if (!retryable(failure.status) && !keyFault(failure.status)) return
      noteError(h, failure, t)
      if (failure.status === 429) {
        // Bounded as the options' timers are: a Retry-After of 1e13 s (a broken upstream or proxy) would
        // make a date no ISO string can hold, failing the health view and every Retry-After computed from it.
        model.until = t + Math.min(failure.retryAfter !== null ? failure.retryAfter * 1000 : options.cooldown_ms, MAX_TIMER_MS)
        share(h, model)
      } else if (keyRefusal(failure.status)) {
        h.dead = `the upstream refused this key (HTTP ${failure.status}) at ${new Date(t).toISOString()}`
        // Not tried again: its dead-key alert must not wait for more refusals in a row.
        services.upstreams.retire(h.provider, h.key)
        logger.warn('provider key marked dead', { provider: h.provider, key: h.key, status: failure.status })
        share(h, null)
      } else if (retryable(failure.status)) {
        // The real count of failures in a row, for the health view: only a success or a reset clears it.
        model.failures++
        // A circuit open or half-open (opened here or by another instance) opens again at the first
        // failure: the failed trial after the open period, or an attempt that was in flight when it opened.
        if (model.failures >= options.circuit_failures || model.openUntil !== 0) {
          model.openUntil = t + options.circuit_open_ms
          share(h, model)
        }
      }
    }

    const onSuccess = (h: KeyHealth, model: ModelHealth, latencyMs: number, response: Response) => {
      // A success closes the model's circuit (it was closed already, or this was the half-open trial).
      model.failures = 0
      model.openUntil = 0
      model.trial = false
      h.forbiddenStrikes = 0
      recordLatency(h, latencyMs, options.latency_alpha, now())
      const room = headroomFrom(response.headers, now())
      // The provider's headers are about the model it was asked for.
      if (room !== null) {
        model.headroom = room.share
        model.headroomUntil = room.until
      }
    }

    /**
     * Nothing left to try: say why, and when a retry could succeed. Keys the provider refused
     * (401/403) come back only through an operator, so when no other key is left that is a 502
     * `upstream_error` without Retry-After (README, "Errors": the upstream refused the gateway's
     * key); a wait that ends by itself (cooldown, open circuit, a trial in flight, a key's own
     * rpm/tpm) is a 503 `no_healthy_upstream` whose Retry-After is when the first key is back.
     * `endpoint`: set where only the targets serving it count (BalancePlan's); `last`: the failure this
   * request just had; `spent`: the request used all its attempts.
     */
    const noHealthy = (chain: readonly Pool[], tokens: number, endpoint: Endpoint | undefined, last?: AttemptFailure, spent = false): GatewayError => {
      const t = now()
      let soonest = Infinity
      const holds = new Set<Hold>()
      const refused = new Set<KeyHealth>()
      for (const pool of chain) {
        for (const c of pool.candidates) {
          // A target the plan skips (its provider does not serve the endpoint) is no reason to wait, nor free.
          if (endpoint !== undefined && !c.target.provider.adapter.endpoints.has(endpoint)) continue
          if (c.health.dead !== null) {
            refused.add(c.health)
            continue
          }
          const m = c.modelHealth
          let at = availableAt(c.health, m, t)
          let hold: Hold
          if (at > t) hold = m.until >= m.openUntil ? 'cooling' : 'open'
          else if (m.trial && m.openUntil !== 0) hold = 'trial'
          else {
            const wait = rateWait(c.target.provider.id, c.key, tokens, false)
            hold = wait > 0 ? 'limited' : 'tried'
            at = t + wait
          }
          holds.add(hold)
          soonest = Math.min(soonest, at)
        }
      }
      const name = chain[0]!.group.name
      // A provider has at least one key: nothing to wait for means every key is refused.
      if (!Number.isFinite(soonest)) return refusedEverywhere(chain, refused, last)
      const retryAfter = Math.max(1, Math.ceil((soonest - t) / 1000))
      const reasons = HOLDS.filter((h) => holds.has(h)).map((h) => (h === 'tried' && spent ? `free, but this request used all of its ${options.max_attempts} attempts` : HOLD_TEXT[h]))
      if (refused.size > 0) reasons.push('refused by its provider (HTTP 401/403)')
      const them = refused.size === 1 ? 'it' : 'them'
      const out = refused.size > 0 ? ` The refused key${refused.size === 1 ? '' : 's'} (${keyList(refused)}) stay${refused.size === 1 ? 's' : ''} out until an operator replaces ${them} or, once fixed upstream, resets ${them} (${resetHow(refused)}).` : ''
      return new GatewayError(
        'no_healthy_upstream',
        `No upstream key can take a request for model "${name}" now: each is ${reasons.join(', or ')}. Retry in ${retryAfter} s.${out} GET /admin/providers/health shows each key.`,
        { headers: { 'retry-after': String(retryAfter) } },
      )
    }

    /**
     * Every key of the chain was refused by its provider: no wait helps, an operator must act. The
     * refusal this request just met, when it has one, leads: its message is the upstream's own.
     */
    const refusedEverywhere = (chain: readonly Pool[], refused: ReadonlySet<KeyHealth>, last: AttemptFailure | undefined): GatewayError => {
      const lead = last !== undefined && keyRefusal(last.status) ? `${last.error.message} ` : ''
      const them = refused.size === 1 ? 'it' : 'them'
      const scope = chain.length > 1 ? `Model "${chain[0]!.group.name}" and its fallbacks have` : `Model "${chain[0]!.group.name}" has`
      return new GatewayError(
        'upstream_error',
        `${lead}${scope} no upstream key left: the provider refused ${refused.size === 1 ? 'the only one' : `all ${refused.size}`} (${keyList(refused)}, HTTP 401/403). Retrying will not help: an operator must replace ${them} or, once fixed upstream, reset ${them} (${resetHow(refused)}). GET /admin/providers/health shows why.`,
        // The official OpenAI clients retry a 502 twice otherwise, in vain (read before any Retry-After; there is none).
        { headers: { 'x-should-retry': 'false' } },
      )
    }

    /**
     * One request's walk over the candidates: a class, so its methods are made once, not again
     * for every request. Most requests succeed at the first attempt: the list of tried candidates
     * is made on the first failure.
     */
    class BalancePlan implements RoutePlan {
      /**
       * The key × upstream model pairs tried: one request goes to each once, also where a group lists
       * the same provider and model twice or a fallback group sends to one of them again (candidates
       * of the same pair share their ModelHealth).
       */
      private tried: ModelHealth[] | undefined = undefined
      private attempts = 0
      private retries = 0
      /** The furthest pool of the chain an attempt went to (0: the group itself). */
      private reached = 0
      private current: Pool['candidates'][number] | undefined = undefined
      /** The candidate whose answer's headers were a success: its body may still fail (report's second call). */
      private answered: Pool['candidates'][number] | undefined = undefined
      /** Its model's failures in a row before that success reset them. */
      private failuresBefore = 0
      private holds = false
      /** The pool of the chain the last pick came from. */
      private pool = 0
      /** Providers whose adapter refused this request (a field it cannot translate): set on the first such refusal. */
      private refusedBy: ProviderRuntime[] | undefined = undefined
      /**
       * The key of this request's first 403, not yet retired: a 403 may be about the request (a
       * provider's moderation or permission check: OpenRouter's flagged input, Gemini's file of
       * another project), and one request must not retire every key of a provider. Retired once
       * another key serves the request or fails it otherwise, or none is left to ask; kept when a
       * second key answers the same 403 (`sameRefusal`), which ends the request.
       */
      private forbidden: { c: Pool['candidates'][number]; failure: AttemptFailure } | undefined = undefined
      private sameRefusal = false

      constructor(
        private readonly chain: readonly Pool[],
        private readonly tokens: number,
        private readonly signal: AbortSignal,
        private readonly stream: boolean,
        /** Set where only some targets serve the request's endpoint (Pool.partial): the others are skipped. */
        private readonly endpoint: Endpoint | undefined,
      ) {}

      /**
       * Present while the plan holds a key (`current`) until the request's end; absent once it does
       * not. The core hands a body no plugin reads to the client untouched only when there is
       * nothing to release, much cheaper than watching for its end.
       */
      get release(): (() => void) | undefined {
        return this.current === undefined ? undefined : this.releaseHeld
      }

      private releaseHeld(this: BalancePlan): void {
        const current = this.current
        if (current) {
          current.health.inFlight--
          // A trial that ended without a verdict (the client left) frees the slot for another.
          current.modelHealth.trial = false
          this.current = undefined
        }
      }

      /**
       * Whether some candidate pick() may take is ready within `ms` as things stand: not tried by this
       * request, its cooldown or open circuit over by then (no trial in flight), its own rpm/tpm with
       * room by then. A retry's backoff is slept only then.
       */
      private readyBy(ms: number): boolean {
        const t = now()
        for (const pool of this.chain) {
          for (const c of pool.candidates) {
            if (this.eligible(c) && available(c.health, c.modelHealth, t + ms) && rateWait(c.target.provider.id, c.key, this.tokens, false) <= ms) return true
          }
        }
        return false
      }

      /** Whether this request may take `c` at all: its provider serves the endpoint and took the request, and `c` was not tried. */
      private eligible(c: Pool['candidates'][number]): boolean {
        return (this.endpoint === undefined || c.target.provider.adapter.endpoints.has(this.endpoint)) && !this.refusedBy?.includes(c.target.provider) && !this.tried?.includes(c.modelHealth)
      }

      /** The next candidate, from the first pool at or after `from` (and before `to`) that has one ready. */
      private pick(from = 0, to = this.chain.length): RouteTarget | undefined {
        const t = now()
        for (let i = from; i < to; i++) {
          const pool = this.chain[i]!
          const ready: Pool['candidates'] = []
          for (const c of pool.candidates) {
            // Learned headroom holds only until the provider's window resets.
            if (c.modelHealth.headroom !== null && c.modelHealth.headroomUntil <= t) c.modelHealth.headroom = null
            forgetStaleLatency(c.health, t, options.latency_ttl_ms)
            if (this.eligible(c) && available(c.health, c.modelHealth, t) && rateWait(c.target.provider.id, c.key, this.tokens, false) === 0) ready.push(c)
          }
          if (ready.length === 0) continue
          const chosen = PICKERS[pool.group.strategy](ready, pool.state) as Pool['candidates'][number]
          rateWait(chosen.target.provider.id, chosen.key, this.tokens, true)
          if (halfOpen(chosen.modelHealth, t)) chosen.modelHealth.trial = true
          this.attempts++
          if (i > this.reached) this.reached = i
          this.pool = i
          chosen.health.inFlight++
          this.current = chosen
          this.holds = this.stream && pool.holdsStreams
          return chosen.route
        }
        return undefined
      }

      /** This request's first 403 is the key's after all (see `forbidden`): it is retired as any refused key. */
      private retireForbidden(): void {
        const f = this.forbidden
        if (f === undefined) return
        this.forbidden = undefined
        onFailure(f.c.health, f.c.modelHealth, f.failure)
      }

      /**
       * This request's first 403, with no other key left to tell whether it is about the key or the
       * request (a provider with one key, or the attempts spent): a strike against the key, retired
       * at its FORBIDDEN_STRIKES-th in a row, so that one request the provider refuses (a flagged
       * prompt, another project's file) does not retire a provider's only key for every user. True
       * when no 403 stays unretired (there was none, or this one retired its key).
       */
      private strikeForbidden(): boolean {
        const f = this.forbidden
        if (f === undefined) return true
        if (++f.c.health.forbiddenStrikes >= FORBIDDEN_STRIKES) {
          this.retireForbidden()
          return true
        }
        this.forbidden = undefined
        f.c.modelHealth.trial = false
        noteError(f.c.health, f.failure, now())
        return false
      }

      next(previous: AttemptFailure | undefined): MaybePromise<RouteTarget | GatewayError | undefined> {
        if (this.signal.aborted) return previous?.error ?? new GatewayError('upstream_error', 'The client closed the request.')
        if (!previous) return this.pick() ?? noHealthy(this.chain, this.tokens, this.endpoint)
        if (previous.refused === true) {
          // The adapter could not translate the request (Claude's n > 1, logprobs): nothing was sent, so
          // it is no attempt, and no key's fault. Another provider of the same group may take it (a group
          // mixing Claude with OpenAI); fallbacks are for a group with no healthy target, not for a field
          // its targets lack: with no other target of the group ready, the refusal is the answer.
          this.attempts--
          refund(previous.target.provider.id, previous.target.key, this.tokens)
          ;(this.refusedBy ??= []).push(previous.target.provider)
          return this.pick(this.pool, this.pool + 1) ?? previous.error
        }
        // The request's own fault (400, 404, 413, 422...): another key would answer the same.
        if (!retryable(previous.status) && !keyFault(previous.status)) return previous.error
        if (this.sameRefusal) return sameRefusalError(previous)
        if (this.attempts >= options.max_attempts) {
          const retired = this.strikeForbidden()
          // The budget is spent, but a fallback group not tried yet gets its one attempt (no backoff:
          // another group is another upstream).
          return this.pick(this.reached + 1) ?? (retryable(previous.status) ? previous.error : retired ? noHealthy(this.chain, this.tokens, this.endpoint, previous, true) : unconfirmedRefusalError(previous))
        }
        // A 429 or a refusal: the key is out; another one now, else why none is left.
        if (!retryable(previous.status)) return this.pick() ?? (this.strikeForbidden() ? noHealthy(this.chain, this.tokens, this.endpoint, previous) : unconfirmedRefusalError(previous))
        const ceiling = Math.min(options.backoff_max_ms, options.backoff_ms * 2 ** this.retries++)
        // Full jitter; the last failure says more than "nothing left" when no key remains.
        const delay = ceiling > 0 ? Math.random() * ceiling : 0
        // No key that the pick after the wait could take: the client has its error now, not after a wait in vain.
        if (!this.readyBy(delay)) {
          this.retireForbidden()
          return previous.error
        }
        // A client gone during the wait takes no key: the pipeline sees the abort and answers nobody.
        const again = () => (this.signal.aborted ? previous.error : (this.pick() ?? previous.error))
        return delay > 0 ? sleepUnlessAborted(delay, this.signal).then(again) : again()
      }

      report(_target: RouteTarget, latencyMs: number, response: Response | undefined, failure: AttemptFailure | undefined): void {
        if (failure) {
          // An attempt that failed, or the answer of one told as a success whose body then failed
          // (stalled past the idle or total timeout, or broke off): the key's failure for its model
          // all the same. Its key is still held only when the strategy counts streams.
          const c = this.current ?? this.answered
          if (!c) return
          if (c === this.current) {
            c.health.inFlight--
            this.current = undefined
          }
          if (c === this.answered) {
            // The headers' success did not hold: the failures in a row it reset count again, or a
            // key whose every stream stalls would never reach circuit_failures (nor a failed trial reopen).
            if (c.modelHealth.failures < this.failuresBefore) c.modelHealth.failures = this.failuresBefore
            this.answered = undefined
          }
          ;(this.tried ??= []).push(c.modelHealth)
          // The client going away is not the key's fault.
          const first = this.forbidden
          if (this.signal.aborted) c.modelHealth.trial = false
          else if (maybeRequests(failure) && first === undefined) this.forbidden = { c, failure }
          else if (maybeRequests(failure) && first !== undefined) {
            // Two keys refuse the same request: it is the request they refuse, not the keys. Each
            // key's last error still tells an operator (a whole account refused would show so).
            c.modelHealth.trial = false
            first.c.modelHealth.trial = false
            noteError(first.c.health, first.failure, now())
            noteError(c.health, failure, now())
            this.forbidden = undefined
            this.sameRefusal = true
          } else {
            this.retireForbidden()
            onFailure(c.health, c.modelHealth, failure)
          }
          return
        }
        this.retireForbidden()
        const c = this.current
        if (c && response) {
          this.answered = c
          this.failuresBefore = c.modelHealth.failures
          onSuccess(c.health, c.modelHealth, latencyMs, response)
          if (!this.holds) {
            // A whole answer follows its headers at once: the key is free now. So is a stream's
            // key when the group's strategy does not count streams.
            c.health.inFlight--
            this.current = undefined
          }
        }
      }
    }

    return {
      route(req, group): RoutePlan {
        let chain = chainOf(group)
        // A fallback the caller may not call itself is not taken for it either (a key limited to a
        // cheap model must not be served by its expensive fallback); auth checked the group itself.
        const allowed = req.identity?.models
        let partial = chain[0]!.partial
        if (allowed && chain.length > 1 && chain.some((pool) => !allowsModel(allowed, pool.group.name))) {
          chain = chain.filter((pool, i) => i === 0 || allowsModel(allowed, pool.group.name))
          partial = partialEndpoints(chain)
        }
        const only = partial.has(req.endpoint) ? req.endpoint : undefined
        return new BalancePlan(chain, chain[0]!.metered ? tokensOf(req.body, req.endpoint) : 0, req.request.signal, req.stream, only)
      },

      routes(app) {
        const guard = adminGuard(services.admin)
        app.use(
          new Elysia({ name: 'sluice.balance.admin', prefix: '/admin/providers' })
            // The admin key before anything else looks at the request (see adminGuard).
            .onParse(guard.parse)
            .onTransform(guard.transform)
            .get(
              // A provider may not be named `health` (catalogProblems reserves it), or this route would hide it.
              '/health',
              () => {
                sync()
                const t = now()
                return {
                  object: 'list',
                  data: [...health.values()].map((h) => {
                    const cooling = coolingUntil(h, t)
                    const open = openUntil(h, t)
                    const circuits = [...h.models.values()].filter((c) => c.failures > 0 || c.openUntil !== 0)
                    return {
                      object: 'provider_key_health',
                      provider: h.provider,
                      key: h.key,
                      state: stateOf(h, t),
                      // When the key is back for every model; `cooling_models` says which models wait, until when.
                      cooling_until: cooling > t ? new Date(cooling).toISOString() : null,
                      cooling_models: [...h.models.values()].filter((c) => c.until > t).map((c) => ({ model: c.model, until: new Date(c.until).toISOString() })),
                      dead_reason: h.dead,
                      // The worst of the key's models, so what read the key's one circuit before reads something
                      // true still: the most failures in a row, and when the last open one ends. `circuit_models`
                      // has each model with failures in a row or an open (or half-open) circuit.
                      circuit: { consecutive_failures: circuits.reduce((most, c) => Math.max(most, c.failures), 0), open_until: open > t ? new Date(open).toISOString() : null },
                      circuit_models: circuits.map((c) => ({ model: c.model, consecutive_failures: c.failures, open_until: c.openUntil > t ? new Date(c.openUntil).toISOString() : null })),
                      in_flight: h.inFlight,
                      latency_ewma_ms: h.latencyEwma ? Math.round(h.latencyEwma * 100) / 100 : null,
                      // The tightest headroom learned for any model; `headroom_models` has each.
                      headroom: lowestHeadroom(h, t),
                      headroom_models: [...h.models.values()]
                        .filter((c) => c.headroom !== null && c.headroomUntil > t)
                        .map((c) => ({ model: c.model, headroom: c.headroom, until: new Date(c.headroomUntil).toISOString() })),
                      last_error: h.lastError ? { at: new Date(h.lastError.at).toISOString(), status: h.lastError.status, message: h.lastError.message } : null,
                    }
                  }),
                  next_cursor: null,
                }
              },
              {
                detail: {
                  tags: ['Admin: providers'],
                  summary: 'Health of every provider key: healthy, cooling, open or half-open (for which upstream models), or dead, with latency and headroom',
                  responses: jsonResponse('Every provider key of the catalog (one page: next_cursor is null)', ListOf(KeyHealthView)),
                },
              },
            )
            .post(
              '/:provider/keys/:key/reset',
              async ({ params, request }) => {
                sync()
                const h = health.get(id(params.provider, params.key))
                if (!h) throw new GatewayError('not_found', `No provider key "${params.key}" in provider "${params.provider}".`)
                clear(h)
                share(h, null, true)
                await audit(services.db.db, { actor: adminActor(request), action: RESET_ACTION, targetType: 'provider_key', targetId: auditTarget(h) })
                return { object: 'provider_key_health', provider: h.provider, key: h.key, state: stateOf(h, now()) }
              },
              {
                detail: {
                  tags: ['Admin: providers'],
                  summary: 'Put a dead, cooling, open or half-open provider key back into service, for every upstream model',
                  responses: { ...jsonResponse('The key, back in service', KeyHealthReset), ...adminErrors(404) },
                },
              },
            ),
        )
      },
    }
  },
})

const KeyState = Type.Union(
  KEY_STATES.map((state) => Type.Literal(state)),
  { description: 'The worst of its upstream models: dead (refused by the provider), open (a circuit), half_open (a circuit past its open period: one trial request decides), cooling (after a 429), else healthy' },
)
/** One provider key in `GET /admin/providers/health`. */
const KeyHealthView = Type.Object({
  object: Type.Literal('provider_key_health'),
  provider: Type.String(),
  key: Type.String(),
  state: KeyState,
  cooling_until: Nullable(Time),
  cooling_models: Type.Array(Type.Object({ model: Type.String(), until: Time })),
  dead_reason: Nullable(Type.String()),
  circuit: Type.Object({ consecutive_failures: Type.Integer(), open_until: Nullable(Time) }),
  circuit_models: Type.Array(Type.Object({ model: Type.String(), consecutive_failures: Type.Integer(), open_until: Nullable(Time) })),
  in_flight: Type.Integer(),
  latency_ewma_ms: Nullable(Type.Number()),
  headroom: Nullable(Type.Number({ description: 'The share of its upstream rate limit left, 0 to 1, as its last answers said' })),
  headroom_models: Type.Array(Type.Object({ model: Type.String(), headroom: Type.Number(), until: Time })),
  last_error: Nullable(Type.Object({ at: Time, status: Type.Integer(), message: Type.String() })),
})
const KeyHealthReset = Type.Object({ object: Type.Literal('provider_key_health'), provider: Type.String(), key: Type.String(), state: KeyState })

/**
 * What a request may cost against a key's own tpm, as the provider counts it before answering:
 * its prompt (estimated: 4 characters a token) plus the completions it allows (`max_tokens` for
 * each one it asks for: `n`, as the quota plugin counts them).
 */
function tokensOf(body: Record<string, unknown>, endpoint: Endpoint): number {
  const max = body.max_completion_tokens ?? body.max_tokens
  return roughPromptTokens(body) + (typeof max === 'number' && max > 0 ? max * completionsAsked(body, endpoint) : 0)
}

/**
 * The endpoints some provider of the chain serves and some other does not. Where every one serves
 * an endpoint there is nothing to skip; where none does, the first pick's adapter refuses the request
 * saying why (skipping them all would answer no_healthy_upstream instead).
 */
function partialEndpoints(chain: readonly Pool[]): ReadonlySet<Endpoint> {
  const some = new Set<Endpoint>()
  const adapters = new Set(chain.flatMap((pool) => pool.candidates.map((c) => c.target.provider.adapter)))
  for (const adapter of adapters) for (const endpoint of adapter.endpoints) some.add(endpoint)
  const partial = new Set<Endpoint>()
  for (const endpoint of some) if ([...adapters].some((adapter) => !adapter.endpoints.has(endpoint))) partial.add(endpoint)
  return partial
}

/**
 * A backoff of `ms` that ends early when the client's request is aborted, so a request whose client
 * left holds its slot (max_parallel, in-flight counts) no longer than it takes to notice, where it
 * slept up to backoff_max_ms. Made only when a retry backs off: a request that never does pays nothing.
 */
function sleepUnlessAborted(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve()
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
  })
}

/** 5xx, timeouts and network errors (status 0) are worth another target, after a backoff. */
const retryable = (status: number): boolean => status === 0 || status >= 500

/** About the key, not the request: rate-limited (429) or refused (401, 403). Another key may do. */
const keyFault = (status: number): boolean => status === 429 || keyRefusal(status)

/**
 * The answer to a request refused with 403 that retired no key: the upstream's own words, out of
 * the message that blamed the key (see upstreamError), after `why` no key was retired.
 */
function requestRefusalError(previous: AttemptFailure, why: string): GatewayError {
  const message = previous.error.message
  const from = message.indexOf('): ')
  const said = (from === -1 ? message : message.slice(from + 3)).replace(KEY_BLAME, '')
  return new GatewayError('upstream_error', `Upstream provider "${previous.target.provider.id}" refused this request (HTTP 403)${why} ${said}`)
}
const KEY_BLAME = / An operator must fix or replace that provider key\.$/

/** Two keys of a provider refused the request with 403: it is the request they refuse. */
const sameRefusalError = (previous: AttemptFailure): GatewayError =>
  requestRefusalError(previous, " with two of its keys, so the refusal is taken as about the request (a moderation or permission check of the provider's), and no key is retired:")

/** 403s in a row, each with no other key to ask, that retire a key (KeyHealth.forbiddenStrikes). */
export const FORBIDDEN_STRIKES = 3

/** A key no other key could check refused the request with 403, and is not retired yet (strikeForbidden). */
const unconfirmedRefusalError = (previous: AttemptFailure): GatewayError =>
  requestRefusalError(
    previous,
    `, and no other key of it was left to tell whether the refusal is about the request (a moderation or permission check of the provider's) or about the key: the key stays in service until ${FORBIDDEN_STRIKES} requests in a row are refused so.`,
  )

/** A 403 the upstream sent as such (not an account out of money): it may be about the request. */
const maybeRequests = (failure: AttemptFailure): boolean => failure.status === 403 && failure.upstreamStatus === undefined

/** The upstream refused the key itself (401, 403): dead until an operator acts. */
const keyRefusal = (status: number): boolean => status === 401 || status === 403

/** Why a key that is not dead cannot take a request now, in the order noHealthy names them. */
const HOLDS = ['cooling', 'open', 'trial', 'limited', 'tried'] as const
type Hold = (typeof HOLDS)[number]

const HOLD_TEXT = {
  cooling: "cooling down after the provider's 429 (rate limit)",
  open: 'out with its circuit open after repeated failures (5xx, timeouts, network errors)',
  trial: "waiting for its circuit's one trial request to end",
  limited: 'busy or at its own rate limit (rpm/tpm)',
  tried: 'tried already by this request',
} as const satisfies Record<Hold, string>

/** Keys as `provider/key`, the first five, for a message. */
function keyList(keys: ReadonlySet<KeyHealth>): string {
  const names = [...keys].slice(0, 5).map((h) => `${h.provider}/${h.key}`)
  return keys.size > 5 ? `${names.join(', ')} and ${keys.size - 5} more` : names.join(', ')
}

/** The admin call that puts a refused key back: spelled out for one key, the pattern for more. */
function resetHow(keys: ReadonlySet<KeyHealth>): string {
  const [one] = keys
  if (keys.size !== 1 || one === undefined) return 'POST /admin/providers/{provider}/keys/{key}/reset for each'
  return `POST /admin/providers/${encodeURIComponent(one.provider)}/keys/${encodeURIComponent(one.key)}/reset`
}

/** The lowest headroom a key has learned for any of its models and still holds, or null when none is known. */
function lowestHeadroom(h: KeyHealth, now: number): number | null {
  let lowest: number | null = null
  for (const c of h.models.values()) {
    if (c.headroom !== null && c.headroomUntil > now && (lowest === null || c.headroom < lowest)) lowest = c.headroom
  }
  return lowest
}
