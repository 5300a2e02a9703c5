import { Type } from '@sinclair/typebox'
import { Elysia } from 'elysia'
import { definePlugin, type AttemptFailure, type RoutePlan } from '../../src/plugin.ts'
import { GatewayError } from '../../src/errors.ts'
import type { ProviderKeyConfig } from '../../src/config/schema.ts'
import type { GroupTarget, ModelGroup, ModelRegistry, RouteTarget } from '../../src/models.ts'
import { available, headroomFrom, newHealth, recordLatency, stateOf, type KeyHealth, type SharedState } from './health.ts'
import { PICKERS, newPickerState, type Candidate, type PickerState } from './strategies.ts'

const Options = Type.Object(
  {
    /** Attempts per request across the group and its fallbacks. @default 4 */
    max_attempts: Type.Integer({ minimum: 1, maximum: 20, default: 4 }),
    /** Cooldown after a 429 that carries no Retry-After. @default 10000 */
    cooldown_ms: Type.Integer({ minimum: 0, default: 10_000 }),
    /** Consecutive failures (5xx, timeouts, network) that open a key's circuit. @default 5 */
    circuit_failures: Type.Integer({ minimum: 1, default: 5 }),
    /** How long an open circuit keeps a key out before one trial request. @default 30000 */
    circuit_open_ms: Type.Integer({ minimum: 0, default: 30_000 }),
    /** First retry delay after a 5xx or timeout; doubles per retry, with full jitter. @default 50 */
    backoff_ms: Type.Integer({ minimum: 0, default: 50 }),
    /** Longest retry delay. @default 1000 */
    backoff_max_ms: Type.Integer({ minimum: 0, default: 1000 }),
    /** Weight of the newest latency sample in the moving average. @default 0.3 */
    latency_alpha: Type.Number({ exclusiveMinimum: 0, maximum: 1, default: 0.3 }),
  },
  { additionalProperties: false },
)

const CHANNEL = 'balance.health'

/** A group's (target, key) pairs with their picking state, built once per group object. */
interface Pool {
  candidates: (Candidate & { target: GroupTarget; key: ProviderKeyConfig })[]
  state: PickerState
}

/** Per provider key: its own rpm/tpm, kept in process (the upstream's limit is per key, not per request). */
interface KeyRate {
  rpm: { tokens: number; ts: number } | null
  tpm: { tokens: number; ts: number } | null
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
    // Every configured key gets its record up front; the maps never hold more than the config has.
    for (const p of models.providers()) for (const k of p.keys) healthOf(p.id, k.id)

    const share = (h: KeyHealth) => {
      const state: SharedState = { provider: h.provider, key: h.key, coolingUntil: h.coolingUntil, dead: h.dead, openUntil: h.openUntil }
      services.bus.publish(CHANNEL, JSON.stringify(state)).catch((error: unknown) => logger.warn('could not share key health', { error: String(error) }))
    }
    await services.bus.subscribe(CHANNEL, (message) => {
      try {
        const s = JSON.parse(message) as SharedState
        const k = id(s.provider, s.key)
        const h = health.get(k)
        if (!h) return
        h.coolingUntil = Math.max(h.coolingUntil, s.coolingUntil)
        h.openUntil = Math.max(h.openUntil, s.openUntil)
        if (s.dead === null && h.dead !== null && s.coolingUntil === 0 && s.openUntil === 0) h.dead = null
        else if (s.dead !== null) h.dead = s.dead
      } catch {
        // Not ours or malformed: ignore.
      }
    })

    const poolOf = (group: ModelGroup): Pool => {
      let pool = pools.get(group)
      if (pool) return pool
      const candidates: Pool['candidates'] = []
      for (const target of group.targets) {
        for (const key of target.provider.keys) {
          candidates.push({ index: candidates.length, weight: target.weight * (key.weight ?? 1), health: healthOf(target.provider.id, key.id), target, key })
        }
      }
      pool = { candidates, state: newPickerState(candidates.length) }
      pools.set(group, pool)
      return pool
    }

    /**
     * Room under the key's own rpm/tpm for one more request of `tokens`. With `take`, the
     * request is counted; without, only checked (candidates that are not chosen keep theirs).
     */
    const keyRate = (provider: string, key: ProviderKeyConfig, tokens: number, take: boolean): boolean => {
      if (!key.rpm && !key.tpm) return true
      const k = id(provider, key.id)
      let r = rates.get(k)
      if (!r) rates.set(k, (r = { rpm: null, tpm: null }))
      const t = now()
      const level = (b: { tokens: number; ts: number } | null, limit: number) => Math.min(limit, (b?.tokens ?? limit) + ((t - (b?.ts ?? t)) * limit) / 60_000)
      const rpmLeft = key.rpm ? level(r.rpm, key.rpm) : Infinity
      const tpmLeft = key.tpm ? level(r.tpm, key.tpm) : Infinity
      if (rpmLeft < 1 || tpmLeft < Math.min(tokens, key.tpm ?? tokens)) return false
      if (take) {
        if (key.rpm) r.rpm = { tokens: rpmLeft - 1, ts: t }
        if (key.tpm) r.tpm = { tokens: tpmLeft - tokens, ts: t }
      }
      return true
    }

    const onFailure = (h: KeyHealth, failure: AttemptFailure) => {
      const t = now()
      h.lastError = { at: t, status: failure.status, message: failure.error.message.slice(0, 300) }
      if (failure.status === 429) {
        h.coolingUntil = t + (failure.retryAfter !== null ? failure.retryAfter * 1000 : options.cooldown_ms)
        share(h)
      } else if (failure.status === 401 || failure.status === 403) {
        h.dead = `the upstream refused this key (HTTP ${failure.status}) at ${new Date(t).toISOString()}`
        logger.warn('provider key marked dead', { provider: h.provider, key: h.key, status: failure.status })
        share(h)
      } else if (retryable(failure.status)) {
        h.failures++
        if (h.failures >= options.circuit_failures) {
          h.openUntil = t + options.circuit_open_ms
          // After the open period one trial request decides: another failure opens it again.
          h.failures = options.circuit_failures - 1
          share(h)
        }
      }
    }

    const onSuccess = (h: KeyHealth, latencyMs: number, response: Response) => {
      h.failures = 0
      recordLatency(h, latencyMs, options.latency_alpha)
      const room = headroomFrom(response.headers)
      if (room !== null) {
        h.headroom = room
        h.headroomAt = now()
      }
    }

    return {
      route(req, group): RoutePlan {
        const chain = groupChain(group, models)
        const tried = new Set<Candidate>()
        const tokens = typeof req.body.max_tokens === 'number' ? req.body.max_tokens : 0
        let attempts = 0
        let retries = 0
        let current: Candidate | undefined
        let sawAny = false

        const pick = (): RouteTarget | undefined => {
          for (const g of chain) {
            const pool = poolOf(g)
            const t = now()
            const open = pool.candidates.filter((c) => !tried.has(c) && available(c.health, t))
            if (open.length) sawAny = true
            const ready = open.filter((c) => keyRate(c.target.provider.id, c.key, tokens, false))
            if (ready.length === 0) continue
            const chosen = PICKERS[g.strategy](ready, pool.state) as Pool['candidates'][number]
            keyRate(chosen.target.provider.id, chosen.key, tokens, true)
            tried.add(chosen)
            attempts++
            chosen.health.inFlight++
            current = chosen
            return { provider: chosen.target.provider, model: chosen.target.model, key: chosen.key, group: g.name }
          }
          return undefined
        }

        return {
          async next(previous) {
            if (previous) {
              if (!retryable(previous.status) && previous.status !== 429 && previous.status !== 401 && previous.status !== 403) return previous.error
              if (attempts >= options.max_attempts) return previous.error
              if (retryable(previous.status)) {
                const ceiling = Math.min(options.backoff_max_ms, options.backoff_ms * 2 ** retries++)
                if (ceiling > 0) await Bun.sleep(Math.random() * ceiling)
              }
            }
            const target = pick()
            if (target) return target
            if (previous) return previous.error
            return new GatewayError(
              'no_healthy_upstream',
              sawAny
                ? `Every upstream key for model "${group.name}" is at its own rate limit right now; retry in a few seconds.`
                : `No upstream is available for model "${group.name}": every key is cooling down, refused by its provider, or failing. Retry shortly; an operator can see why at GET /admin/providers/health.`,
            )
          },
          report(_target, latencyMs, response, failure) {
            const c = current
            if (!c) return
            if (failure) {
              c.health.inFlight--
              current = undefined
              onFailure(c.health, failure)
            } else if (response) onSuccess(c.health, latencyMs, response)
          },
          release() {
            if (current) {
              current.health.inFlight--
              current = undefined
            }
          },
        }
      },

      routes(app) {
        app.use(
          new Elysia({ name: 'sluice.balance.admin', prefix: '/admin/providers' })
            .onTransform(({ request }) => {
              const refused = services.admin.check(request)
              if (refused) throw refused
            })
            .get(
              '/health',
              () => {
                const t = now()
                return {
                  object: 'list',
                  data: [...health.values()].map((h) => ({
                    object: 'provider_key_health',
                    provider: h.provider,
                    key: h.key,
                    state: stateOf(h, t),
                    cooling_until: h.coolingUntil > t ? new Date(h.coolingUntil).toISOString() : null,
                    dead_reason: h.dead,
                    circuit: { consecutive_failures: h.failures, open_until: h.openUntil > t ? new Date(h.openUntil).toISOString() : null },
                    in_flight: h.inFlight,
                    latency_ewma_ms: h.latencyEwma ? Math.round(h.latencyEwma * 100) / 100 : null,
                    headroom: h.headroom,
                    last_error: h.lastError ? { at: new Date(h.lastError.at).toISOString(), status: h.lastError.status, message: h.lastError.message } : null,
                  })),
                  next_cursor: null,
                }
              },
              { detail: { tags: ['Admin: providers'], summary: 'Health of every provider key: healthy, cooling, dead or open, with latency and headroom' } },
            )
            .post(
              '/:provider/keys/:key/reset',
              ({ params }) => {
                const h = health.get(id(params.provider, params.key))
                if (!h) throw new GatewayError('not_found', `No provider key "${params.key}" in provider "${params.provider}".`)
                h.dead = null
                h.coolingUntil = 0
                h.openUntil = 0
                h.failures = 0
                share(h)
                return { object: 'provider_key_health', provider: h.provider, key: h.key, state: stateOf(h, now()) }
              },
              { detail: { tags: ['Admin: providers'], summary: 'Put a dead, cooling or open provider key back into service' } },
            ),
        )
      },
    }
  },
})

/** 5xx, timeouts and network errors (status 0) are worth another target. */
const retryable = (status: number): boolean => status === 0 || status >= 500

/** The group, then its fallbacks in order (each once; a fallback's own fallbacks are not followed). */
function groupChain(group: ModelGroup, models: ModelRegistry): ModelGroup[] {
  const chain = [group]
  for (const name of group.fallbacks) {
    const g = models.get(name)
    if (g && !chain.includes(g)) chain.push(g)
  }
  return chain
}
