/** What the gateway knows about one provider key. */
export interface KeyHealth {
  provider: string
  key: string
  /** Not used until then (a 429, or the key's own rpm/tpm reached). ms epoch, 0 = not cooling. */
  coolingUntil: number
  /** Refused by the upstream (401/403): not used again until an operator acts. */
  dead: string | null
  /** Consecutive failures (5xx, timeouts, network) and the circuit that opens after too many. */
  failures: number
  openUntil: number
  inFlight: number
  /** Exponentially weighted moving average of attempt latency, ms; 0 = unknown. */
  latencyEwma: number
  /** Learned from the upstream's rate-limit headers: remaining share 0..1, and when it was learned. */
  headroom: number | null
  headroomAt: number
  lastError: { at: number; status: number; message: string } | null
}

/** The shape shared with other instances over the bus. */
export interface SharedState {
  provider: string
  key: string
  coolingUntil: number
  dead: string | null
  openUntil: number
}

export function newHealth(provider: string, key: string): KeyHealth {
  return { provider, key, coolingUntil: 0, dead: null, failures: 0, openUntil: 0, inFlight: 0, latencyEwma: 0, headroom: null, headroomAt: 0, lastError: null }
}

/** Available now: not dead, not cooling, circuit closed (or half-open: its wait is over). */
export const available = (h: KeyHealth, now: number): boolean => h.dead === null && h.coolingUntil <= now && h.openUntil <= now

export function stateOf(h: KeyHealth, now: number): 'healthy' | 'cooling' | 'dead' | 'open' {
  if (h.dead !== null) return 'dead'
  if (h.openUntil > now) return 'open'
  if (h.coolingUntil > now) return 'cooling'
  return 'healthy'
}

/**
 * Headroom from the rate-limit headers providers send: OpenAI's `x-ratelimit-remaining-*`
 * with `x-ratelimit-limit-*`, Anthropic's `anthropic-ratelimit-*-remaining` with `-limit`.
 * The tighter of requests and tokens, as a share of the limit.
 */
export function headroomFrom(headers: Headers): number | null {
  const share = (remaining: string | null, limit: string | null): number | null => {
    if (remaining === null) return null
    const r = Number(remaining)
    const l = limit === null ? NaN : Number(limit)
    if (!Number.isFinite(r)) return null
    if (Number.isFinite(l) && l > 0) return Math.max(0, Math.min(1, r / l))
    return r > 0 ? 1 : 0
  }
  const candidates = [
    share(headers.get('x-ratelimit-remaining-requests'), headers.get('x-ratelimit-limit-requests')),
    share(headers.get('x-ratelimit-remaining-tokens'), headers.get('x-ratelimit-limit-tokens')),
    share(headers.get('anthropic-ratelimit-requests-remaining'), headers.get('anthropic-ratelimit-requests-limit')),
    share(headers.get('anthropic-ratelimit-tokens-remaining'), headers.get('anthropic-ratelimit-tokens-limit')),
    share(headers.get('anthropic-ratelimit-input-tokens-remaining'), headers.get('anthropic-ratelimit-input-tokens-limit')),
  ].filter((v): v is number => v !== null)
  return candidates.length ? Math.min(...candidates) : null
}
