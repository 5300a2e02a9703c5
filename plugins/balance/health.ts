/**
 * A key's cooldown for one upstream model, after a 429. OpenAI, Anthropic and Gemini count rate
 * limits per model: a 429 for `gpt-4o` says nothing about `gpt-4o-mini` on the same key.
 */
/**
 * What a key learned about one upstream model: providers limit each model apart (OpenAI's and
 * Anthropic's rate-limit headers and 429s are per model), so a key's state for one says nothing
 * about another.
 */
export interface Cooldown {
  readonly model: string
  /** The key is not used for this model until then. ms epoch, 0 = not cooling. */
  until: number
  /** Learned from the upstream's rate-limit headers for this model: remaining share 0..1, null = unknown. */
  headroom: number | null
  /** ms epoch the learned headroom stops being true (the provider's window resets). */
  headroomUntil: number
}

/** What the gateway knows about one provider key. */
export interface KeyHealth {
  provider: string
  key: string
  /**
   * One cooldown per upstream model the configured groups send to this key, by model: made when
   * the registry is read and pruned with it, so bounded by the config.
   */
  cooldowns: Map<string, Cooldown>
  /** Refused by the upstream (401/403): not used again until an operator acts. */
  dead: string | null
  /** Consecutive failures (5xx, timeouts, network) and the circuit that opens after too many. */
  failures: number
  /** ms epoch the open circuit ends; 0 = closed. Past but not 0 = half-open: one trial decides. */
  openUntil: number
  /** The half-open circuit's one trial request is in flight. */
  trial: boolean
  inFlight: number
  /** Exponentially weighted moving average of attempt latency, ms; 0 = unknown. */
  latencyEwma: number
  /** ms epoch of its newest sample; 0 = none. Past `latency_ttl_ms` the average is forgotten. */
  latencyAt: number
  lastError: { at: number; status: number; message: string } | null
}

/** The shape shared with other instances over the bus. */
export interface SharedState {
  provider: string
  key: string
  /**
   * The upstream model `coolingUntil` is for (after a 429); absent when the message is about the
   * key's death or circuit only. Instances older than per-model cooldowns send none and cool the
   * whole key: their cooldown is ignored (their `dead` and `openUntil` still count).
   */
  model?: string
  /**
   * The cooldown of `model`, ms epoch; always a number, 0 without a cooldown: older instances
   * merge it into the whole key's with Math.max, which a missing field would turn into NaN.
   */
  coolingUntil: number
  dead: string | null
  openUntil: number
  /** An operator put the key back into service: forget cooling, death and circuit everywhere. */
  reset?: boolean
}

export function newHealth(provider: string, key: string): KeyHealth {
  return {
    provider,
    key,
    cooldowns: new Map(),
    dead: null,
    failures: 0,
    openUntil: 0,
    trial: false,
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

/** The circuit's open period is over but no request has closed it yet. */
export const halfOpen = (h: KeyHealth, now: number): boolean => h.openUntil !== 0 && h.openUntil <= now

/** The key's state for `model` (cooldown, headroom), made on first ask (only for models the config sends to the key). */
export function cooldownOf(h: KeyHealth, model: string): Cooldown {
  let c = h.cooldowns.get(model)
  if (!c) h.cooldowns.set(model, (c = { model, until: 0, headroom: null, headroomUntil: 0 }))
  return c
}

/**
 * Available now for the model of `cooldown`: not dead, not cooling for that model, circuit
 * closed, or half-open with no trial in flight (the trial decides; the others keep away until it has).
 */
export const available = (h: KeyHealth, cooldown: Cooldown, now: number): boolean =>
  h.dead === null && cooldown.until <= now && h.openUntil <= now && !(h.trial && h.openUntil !== 0)

/** When the key can be used again for the model of `cooldown`, ms epoch; Infinity when dead, `now` or earlier when it can now. */
export function availableAt(h: KeyHealth, cooldown: Cooldown, now: number): number {
  if (h.dead !== null) return Infinity
  return Math.max(cooldown.until, h.openUntil, now)
}

/** When the last of the key's running cooldowns ends, ms epoch; 0 when it is cooling for no model. */
export function coolingUntil(h: KeyHealth, now: number): number {
  let until = 0
  for (const c of h.cooldowns.values()) if (c.until > now && c.until > until) until = c.until
  return until
}

/** The key's state for the health view: `cooling` while it is cooling for any model. */
export function stateOf(h: KeyHealth, now: number): 'healthy' | 'cooling' | 'dead' | 'open' {
  if (h.dead !== null) return 'dead'
  if (h.openUntil > now) return 'open'
  if (coolingUntil(h, now) > now) return 'cooling'
  return 'healthy'
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

/** A reset header as ms epoch: OpenAI's duration (`6m0s`, `20ms`), bare seconds, or an RFC 3339 time. */
export function resetAt(value: string | null, now: number): number | null {
  if (value === null) return null
  const ms = durationMs(value)
  if (ms !== null) return now + ms
  const at = Date.parse(value)
  return Number.isNaN(at) ? null : at
}

/**
 * `1h2m3.5s`, `6m0s`, `20ms` or bare seconds (`2`, `0.5`) in ms; null for anything else.
 * By hand rather than by regex: it runs on every answer that carries rate-limit headers.
 */
function durationMs(v: string): number | null {
  const end = v.length
  let i = 0
  let total = 0
  let parts = 0
  while (i < end) {
    const start = i
    while (i < end && ((v.charCodeAt(i) >= 48 && v.charCodeAt(i) <= 57) || v.charCodeAt(i) === 46)) i++
    if (i === start) return null
    const n = Number(v.slice(start, i))
    if (Number.isNaN(n)) return null
    parts++
    if (i === end) return parts === 1 ? n * 1000 : null
    const unit = v.charCodeAt(i)
    if (unit === 104) total += n * 3_600_000 // h
    else if (unit === 115) total += n * 1000 // s
    else if (unit === 109) {
      // m, or ms
      if (v.charCodeAt(i + 1) === 115) {
        total += n
        i++
      } else total += n * 60_000
    } else return null
    i++
  }
  return parts > 0 ? total : null
}
