/** Providers' rate-limit headers, read by the pipeline (a 429's wait) and the balance plugin (headroom). */
import { MAX_TIMER_MS } from '../config/schema.ts'

/**
 * A reset header as ms epoch: OpenAI's duration (`6m0s`, `20ms`), bare seconds, or an RFC 3339 time.
 * At most MAX_TIMER_MS (about 24 days) from now: a broken upstream's `9999999999999s` would make a
 * date no ISO string can hold, failing every view that shows it (the balance plugin's health).
 */
export function resetAt(value: string | null, now: number): number | null {
  if (value === null) return null
  const ms = durationMs(value)
  if (ms !== null) return now + Math.min(ms, MAX_TIMER_MS)
  const at = Date.parse(value)
  return Number.isNaN(at) ? null : Math.min(at, now + MAX_TIMER_MS)
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

/** OpenAI's [remaining, reset] header pairs and Anthropic's. */
const RESET_PAIRS = [
  ['x-ratelimit-remaining-requests', 'x-ratelimit-reset-requests'],
  ['x-ratelimit-remaining-tokens', 'x-ratelimit-reset-tokens'],
  ['anthropic-ratelimit-requests-remaining', 'anthropic-ratelimit-requests-reset'],
  ['anthropic-ratelimit-tokens-remaining', 'anthropic-ratelimit-tokens-reset'],
] as const

/**
 * Seconds until the last of the limits an answer says are spent (remaining 0) is reset; null when
 * none says so. A 429 that names no Retry-After often carries these.
 */
export function spentLimitsResetS(headers: Headers, now: number): number | null {
  let latest: number | null = null
  for (const [remaining, reset] of RESET_PAIRS) {
    if (headers.get(remaining)?.trim() !== '0') continue
    const at = resetAt(headers.get(reset), now)
    if (at !== null && (latest === null || at > latest)) latest = at
  }
  return latest === null ? null : Math.max(0, (latest - now) / 1000)
}

/** A `Retry-After` value (delay-seconds, or an HTTP date) as ms from `now`, at least 0; null when it is neither. */
export function retryAfterMs(value: string | null, now: number): number | null {
  if (value === null || value.trim() === '') return null
  const seconds = Number(value)
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000)
  const at = Date.parse(value)
  return Number.isNaN(at) ? null : Math.max(0, at - now)
}
