import { resetAt } from '../../src/lib/rate-headers.ts'

/**
 * What a key learned about one upstream model: providers limit each model apart (OpenAI's and
 * Anthropic's rate-limit headers and 429s are per model), and one model can fail while the key's
 * others answer (deprecated or broken at the provider, or a prompt a client keeps sending that it
 * always fails on), so a key's state for one says nothing about another: its cooldown, headroom
 * and circuit for the model.
 */
export interface ModelHealth {
  readonly model: string
  /** The key is not used for this model until then. ms epoch, 0 = not cooling. */
  until: number
  /** Learned from the upstream's rate-limit headers for this model: remaining share 0..1, null = unknown. */
  headroom: number | null
  /** ms epoch the learned headroom stops being true (the provider's window resets). */
  headroomUntil: number
  /**
   * Consecutive failures (5xx, timeouts, network) of this model on the key, as many as there were
   * (the health view shows them): `circuit_failures` of them open the circuit; only a success or
   * a reset sets it back to 0.
   */
  failures: number
  /** ms epoch this model's open circuit ends; 0 = closed. Past but not 0 = half-open: one trial decides. */
  openUntil: number
  /** The half-open circuit's one trial request is in flight. */
  trial: boolean
}

/** What the gateway knows about one provider key. */
export interface KeyHealth {
  provider: string
  key: string
  /**
   * The key's state (cooldown, headroom, circuit) for each upstream model the configured groups
   * send to it, by model: made when the registry is read and pruned with it, so bounded by the config.
   */
  models: Map<string, ModelHealth>
  /** Refused by the upstream (401/403): not used again until an operator acts. */
  dead: string | null
  /**
   * 403s in a row, each of a request no other key was left to ask (a provider with one key): each
   * may be about the request, so the key is retired at FORBIDDEN_STRIKES of them; a success, or
   * an operator's reset, starts the count again.
   */
  forbiddenStrikes: number
  inFlight: number
  /** Exponentially weighted moving average of attempt latency, ms; 0 = unknown. */
  latencyEwma: number
  /** ms epoch of its newest sample; 0 = none. Past `latency_ttl_ms` the average is forgotten. */
  latencyAt: number
  lastError: { at: number; status: number; message: string } | null
}

/**
 * The shape shared with other instances over the bus. Instances of earlier versions may run
 * beside this one during a rolling deploy: they read `coolingUntil`, `dead` and `openUntil` (the
 * last two on the whole key), so those stay numbers and null as they were, and what is new rides
 * in fields they ignore.
 */
export interface SharedState {
  provider: string
  key: string
  /**
   * The upstream model `coolingUntil` and `modelOpenUntil` are for; absent when the message is
   * about the key's death only. Instances older than per-model cooldowns send none and cool the
   * whole key: their cooldown is ignored (their `dead` and `openUntil` still count).
   */
  model?: string
  /**
   * The cooldown of `model`, ms epoch; always a number, 0 without a cooldown: older instances
   * merge it into the whole key's with Math.max, which a missing field would turn into NaN.
   */
  coolingUntil: number
  /**
   * The circuit of `model`, ms epoch it stops being open (0: closed). Its presence marks a sender
   * with per-model circuits; without it, `openUntil` is a key-wide circuit from an older instance.
   */
  modelOpenUntil?: number
  /**
   * The sender's failures in a row for `model` (5xx, timeouts, network), sent with its circuit:
   * what the health view shows for that circuit on instances that did not see the failures.
   */
  modelFailures?: number
  dead: string | null
  /**
   * The whole key's circuit, as instances older than per-model circuits keep it; they merge it
   * with Math.max into their one circuit for the key. This version always sends 0: a model's
   * circuit sent here would close every model of the key on them, the very fault per-model
   * circuits remove, while 0 leaves them deciding from their own failures as before (at most
   * `circuit_failures` failed attempts each for a failing model, retried on other keys). A
   * number, not absent: Math.max with a missing field is NaN, a circuit that never closes.
   */
  openUntil: number
  /** An operator put the key back into service: forget cooling, death and circuits everywhere. */
  reset?: boolean
}

export function newHealth(provider: string, key: string): KeyHealth {
  return {
    provider,
    key,
    models: new Map(),
    dead: null,
    forbiddenStrikes: 0,
    inFlight: 0,
    latencyEwma: 0,
    latencyAt: 0,
    lastError: null,
  }
}

/** Fold one attempt's latency into the key's moving average (the first sample is taken as is). */
export function recordLatency(h: KeyHealth, latencyMs: number, alpha: number, at: number): void {
  h.latencyEwma = h.latencyEwma === 0 ? latencyMs : h.latencyEwma + alpha * (latencyMs - h.latencyEwma)
  h.latencyAt = at
}

/**
 * Forget a latency average no sample has refreshed for `ttlMs`. The latency strategy sends
 * nothing to a key slower than the others, so without this a key that was slow once (a bad
 * minute upstream) would keep its old average, and no traffic, for good; unknown, it is tried
 * the next time it is drawn, and its new samples decide.
 */
export function forgetStaleLatency(h: KeyHealth, now: number, ttlMs: number): void {
  if (h.latencyAt !== 0 && now - h.latencyAt > ttlMs) {
    h.latencyEwma = 0
    h.latencyAt = 0
  }
}

/** The model's circuit on the key: its open period is over but no request has closed it yet. */
export const halfOpen = (c: ModelHealth, now: number): boolean => c.openUntil !== 0 && c.openUntil <= now

/** The key's state for `model` (cooldown, headroom, circuit), made on first ask (only for models the config sends to the key). */
export function modelHealthOf(h: KeyHealth, model: string): ModelHealth {
  let c = h.models.get(model)
  if (!c) h.models.set(model, (c = { model, until: 0, headroom: null, headroomUntil: 0, failures: 0, openUntil: 0, trial: false }))
  return c
}

/**
 * Available now for the model of `cooldown`: not dead, not cooling for that model, its circuit for
 * that model closed, or half-open with no trial in flight (the trial decides; the others keep away until it has).
 */
export const available = (h: KeyHealth, cooldown: ModelHealth, now: number): boolean =>
  h.dead === null && cooldown.until <= now && cooldown.openUntil <= now && !(cooldown.trial && cooldown.openUntil !== 0)

/** When the key can be used again for the model of `cooldown`, ms epoch; Infinity when dead, `now` or earlier when it can now. */
export function availableAt(h: KeyHealth, cooldown: ModelHealth, now: number): number {
  if (h.dead !== null) return Infinity
  return Math.max(cooldown.until, cooldown.openUntil, now)
}

/** When the last of the key's running cooldowns ends, ms epoch; 0 when it is cooling for no model. */
export function coolingUntil(h: KeyHealth, now: number): number {
  let until = 0
  for (const c of h.models.values()) if (c.until > now && c.until > until) until = c.until
  return until
}

/** When the last of the key's open circuits ends, ms epoch; 0 when no model's circuit is open. */
export function openUntil(h: KeyHealth, now: number): number {
  let until = 0
  for (const c of h.models.values()) if (c.openUntil > now && c.openUntil > until) until = c.openUntil
  return until
}

/** The key's states in the health view, worst first. */
export const KEY_STATES = ['dead', 'open', 'half_open', 'cooling', 'healthy'] as const
export type KeyState = (typeof KEY_STATES)[number]

/**
 * The key's state for the health view, the worst of its models': `open`, `half_open` (its open
 * period over, one trial request to decide) and `cooling` while so for any model.
 */
export function stateOf(h: KeyHealth, now: number): KeyState {
  if (h.dead !== null) return 'dead'
  let probing = false
  let cooling = false
  for (const c of h.models.values()) {
    if (c.openUntil > now) return 'open'
    if (halfOpen(c, now)) probing = true
    if (c.until > now) cooling = true
  }
  return probing ? 'half_open' : cooling ? 'cooling' : 'healthy'
}

/** Headroom learned from one answer: the tighter limit's remaining share, until its window resets. */
export interface Headroom {
  share: number
  /** ms epoch. */
  until: number
}

/** How long learned headroom is trusted when the provider says nothing about its reset. */
export const DEFAULT_HEADROOM_TTL_MS = 60_000

/** [remaining, limit, reset] header names: OpenAI's, then Anthropic's. */
const LIMIT_HEADERS = [
  ['x-ratelimit-remaining-requests', 'x-ratelimit-limit-requests', 'x-ratelimit-reset-requests'],
  ['x-ratelimit-remaining-tokens', 'x-ratelimit-limit-tokens', 'x-ratelimit-reset-tokens'],
  ['anthropic-ratelimit-requests-remaining', 'anthropic-ratelimit-requests-limit', 'anthropic-ratelimit-requests-reset'],
  ['anthropic-ratelimit-tokens-remaining', 'anthropic-ratelimit-tokens-limit', 'anthropic-ratelimit-tokens-reset'],
  ['anthropic-ratelimit-input-tokens-remaining', 'anthropic-ratelimit-input-tokens-limit', 'anthropic-ratelimit-input-tokens-reset'],
  ['anthropic-ratelimit-output-tokens-remaining', 'anthropic-ratelimit-output-tokens-limit', 'anthropic-ratelimit-output-tokens-reset'],
] as const

/**
 * Headroom from the rate-limit headers providers send: OpenAI's `x-ratelimit-remaining-*`
 * with `x-ratelimit-limit-*` and `x-ratelimit-reset-*` (a duration: `1s`, `6m0s`, `20ms`),
 * Anthropic's `anthropic-ratelimit-*-remaining` with `-limit` and `-reset` (RFC 3339).
 * The tighter of requests and tokens, as a share of the limit; null when no header says.
 */
export function headroomFrom(headers: Headers, now: number): Headroom | null {
  let best: Headroom | null = null
  for (const [remainingName, limitName, resetName] of LIMIT_HEADERS) {
    const remaining = headers.get(remainingName)
    if (remaining === null) continue
    const r = Number(remaining)
    if (remaining.trim() === '' || !Number.isFinite(r)) continue
    const l = Number(headers.get(limitName) ?? NaN)
    const share = Number.isFinite(l) && l > 0 ? Math.max(0, Math.min(1, r / l)) : r > 0 ? 1 : 0
    if (best !== null && share >= best.share) continue
    best = { share, until: resetAt(headers.get(resetName), now) ?? now + DEFAULT_HEADROOM_TTL_MS }
  }
  return best
}

export { resetAt }
