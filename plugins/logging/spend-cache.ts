import { roundUsdSum } from '../../src/lib/usage.ts'
import type { Spend, SpendSplit } from './repo.ts'

/** The spend of some subjects since `start` (null: ever), and of it what was logged before `closedBefore`. */
export type SpendReader = (ids: readonly string[], start: string | null, closedBefore: string | null) => Promise<Map<string, SpendSplit>>

export interface SpendCacheOptions {
  /**
   * How long after its time a request's row may still reach the log and be counted: the longest
   * request (its row is written when it ends, with the time it arrived), the writer's flush and
   * its retries through a short outage. Hours end this long after they are over. @default 3600000
   */
  lagMs?: number
  /** How long a subject's remembered sum serves before it is counted afresh from its period's start. @default 21600000 */
  recountMs?: number
  /** Sums remembered; more evict the oldest. @default 50000 */
  maxEntries?: number
}

interface Entry {
  /** Where the sum begins (the period's start or a reset; null: ever). */
  from: string | null
  /** Where it ends: an hour's start, past which rows are summed at each check. */
  upTo: string
  tokens: number
  usd: number
  /** When it was last counted from `from` (ms). */
  countedAt: number
}

const HOUR = 3_600_000
const zero: Spend = { tokens: 0, usd: 0 }

/**
 * What each budget subject spent in its period, for the budget alerts' check, without summing
 * the whole period's log at every check: the hours of the period that are over are summed once
 * and remembered, and a check sums the log only from where that sum ends (the last hour or two).
 * A month's budget on a big log costs a check its last hours' rows instead of a month's.
 *
 * As exact as summing it all, for rows that reach the log within `lagMs` of their time: an hour
 * counts as over only that long after it ends, and only that long before the oldest row this
 * instance still has to write (`pendingSince`: a database outage holds them in its queue). A row of another
 * instance written later than that (its own outage) is counted when the sum is next made afresh,
 * at most `recountMs` later. Bounded: at most `maxEntries` sums.
 */
export class SpendCache {
  private readonly entries = new Map<string, Entry>()
  private readonly lagMs: number
  private readonly recountMs: number
  private readonly maxEntries: number

  constructor(options: SpendCacheOptions = {}) {
    this.lagMs = options.lagMs ?? HOUR
    this.recountMs = options.recountMs ?? 6 * HOUR
    this.maxEntries = options.maxEntries ?? 50_000
  }

  /**
   * The spend of each of `ids` (subjects of one kind, `scope`) since `from` at `now`, through
   * `read`; `pendingSince` is the time of the oldest row this instance has yet to write, if any.
   */
  async spend(scope: string, ids: readonly string[], from: string | null, now: number, pendingSince: string | null, read: SpendReader): Promise<Map<string, Spend>> {
    let end = Math.floor((now - this.lagMs) / HOUR) * HOUR
    const pending = pendingSince === null ? NaN : Date.parse(pendingSince)
    if (Number.isFinite(pending)) end = Math.min(end, Math.floor((pending - this.lagMs) / HOUR) * HOUR)
    const out = new Map<string, Spend>()
    if (from !== null && end <= Date.parse(from)) {
      // No hour of this period is over yet: it is all summed, and nothing is remembered.
      for (const [id, s] of await read(ids, from, null)) out.set(id, { tokens: s.tokens, usd: s.usd })
      return out
    }
    const closedBefore = new Date(end).toISOString()
    // Subjects by where their sum is to start: the end of the one remembered, or `from`.
    const byStart = new Map<string | null, Array<{ id: string; key: string; base: Entry | undefined }>>()
    for (const id of ids) {
      const key = `${scope}\u0000${id}\u0000${from ?? ''}`
      const seen = this.entries.get(key)
      // A remembered sum ending past the end now (pending rows moved it back), or old, is made afresh.
      const base = seen !== undefined && seen.upTo <= closedBefore && now - seen.countedAt < this.recountMs ? seen : undefined
      const start = base?.upTo ?? from
      let group = byStart.get(start)
      if (!group) byStart.set(start, (group = []))
      group.push({ id, key, base })
    }
    for (const [start, group] of byStart) {
      const sums = await read(
        group.map((g) => g.id),
        start,
        closedBefore,
      )
      for (const { id, key, base } of group) {
        const s = sums.get(id)
        const before = base ?? zero
        out.set(id, { tokens: before.tokens + (s?.tokens ?? 0), usd: roundUsdSum(before.usd + (s?.usd ?? 0)) })
        this.remember(key, {
          from,
          upTo: closedBefore,
          tokens: before.tokens + (s?.closed.tokens ?? 0),
          usd: roundUsdSum(before.usd + (s?.closed.usd ?? 0)),
          countedAt: base?.countedAt ?? now,
        })
      }
    }
    return out
  }

  private remember(key: string, entry: Entry): void {
    if (!this.entries.has(key) && this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!)
    this.entries.set(key, entry)
  }
}
