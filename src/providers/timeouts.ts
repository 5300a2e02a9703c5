import type { Timeouts } from '../config/schema.ts'

/** A stream's wait for its headers when the provider sets no `first_byte_ms`. */
const DEFAULT_FIRST_BYTE_MS = 60_000
/** A whole upstream call's bound when the provider sets no `total_ms`. */
export const DEFAULT_TOTAL_MS = 600_000

/**
 * How long an upstream call may take to answer with its headers. A stream sends them at once and
 * then its first token, so the default is `first_byte_ms`' own; a JSON answer's headers come only
 * once the whole completion is generated (minutes for a long one or a reasoning model), so its
 * default is the whole call's `total_ms`: cutting it at a minute would fail it and send it again to
 * the next target, paid twice. A `first_byte_ms` the operator set applies to both. Never longer than
 * the whole call.
 */
export function headersWaitMs(timeouts: Timeouts | undefined, stream: boolean): number {
  const total = timeouts?.total_ms ?? DEFAULT_TOTAL_MS
  return Math.min(timeouts?.first_byte_ms ?? (stream ? DEFAULT_FIRST_BYTE_MS : total), total)
}
