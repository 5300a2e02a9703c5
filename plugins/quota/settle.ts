import { NotSentError } from './connection.ts'
import { hasLease, type Item } from './plan.ts'
import type { QuotaStore } from './store.ts'

export interface SettleOptions {
  /** Further tries after the first, for a settlement that never left this process. */
  retries: number
  /** Wait before the first retry; doubled for each one after it. */
  baseMs: number
  /** The clock the store's calls are made with. */
  now: () => number
  /** The settlement is given up (its refund or charge is lost); its leases are still released. */
  lost: (error: unknown) => void
  /** Where the lease release of a lost settlement waits, should the store not take it now. */
  releases: PendingReleases
}

/**
 * Settle a request (`epoch`: what its admission answered), riding out a connection that is down for a moment. A settlement that was
 * never sent is sent again (it cannot apply twice); one whose fate is unknown (a timeout) is not,
 * since running its deltas again could charge twice. Either way the request's `max_parallel`
 * leases are then dropped on their own (a release is idempotent), by `releases` until Redis answers
 * again: a lease left behind would hold a slot until it expires (`lease_ms`).
 */
export function settleSurely(store: QuotaStore, items: Item[], deltas: number[], leaseId: string, epoch: number, options: SettleOptions): Promise<void> {
  // The usual case costs what a plain settle() does: the retries live in the rejection path.
  return store.settle(items, deltas, leaseId, options.now(), epoch).catch((error: unknown) => recover(error, store, items, deltas, leaseId, epoch, options))
}

async function recover(error: unknown, store: QuotaStore, items: Item[], deltas: number[], leaseId: string, epoch: number, options: SettleOptions): Promise<void> {
  let attempt = 0
  while (error instanceof NotSentError && attempt < options.retries) {
    await Bun.sleep(options.baseMs * 2 ** attempt++)
    try {
      await store.settle(items, deltas, leaseId, options.now(), epoch)
      return
    } catch (next) {
      error = next
    }
  }
  options.lost(error)
  if (hasLease(items)) await options.releases.release(store, items, leaseId)
}

export interface PendingReleasesOptions {
  /** Releases kept at most; past it the oldest is dropped (its slot then waits for its lease to expire). @default 10000 */
  max?: number
  /** Wait before trying again after a failed round; doubled after each one, up to `maxRetryMs`. @default 250 */
  retryMs?: number
  /** While Redis is away a round is one call that fails at once, unsent: cheap enough to try every second. @default 1000 */
  maxRetryMs?: number
  /** A release kept this long is moot: the lease it drops has expired by itself (`lease_ms`). */
  keepMs: number
  now: () => number
  /** Releases given up: for room (`full`: their slots stay taken until their leases expire) or moot (`expired`). */
  dropped: (count: number, reason: 'full' | 'expired') => void
}

/** Rounds that kick() starts are at least this far apart. */
const KICK_GAP_MS = 100

interface Waiting {
  store: QuotaStore
  /** The request's lease items only. */
  items: Item[]
  since: number
}

/**
 * Lease releases that could not reach the store (Redis away), kept until it answers again, however
 * long the outage: a release dropped after a few tries would hold its `max_parallel` slot until the
 * lease expires (`lease_ms`, 10 minutes by default), which no reset could shorten. Bounded by count
 * (the oldest go first, told to `dropped`), and each is forgotten once its lease would have expired
 * anyway. While Redis is away one round costs one failed call: the oldest release is tried alone
 * first, the others only once it went through.
 */
export class PendingReleases {
  private readonly waiting = new Map<string, Waiting>()
  private readonly max: number
  private readonly retryMs: number
  private readonly maxRetryMs: number
  private wait: number
  private timer: ReturnType<typeof setTimeout> | null = null
  private flushing = false
  private lastRound = Number.NEGATIVE_INFINITY
  /** Dropped for room since the last round; told once a round rather than once each. */
  private full = 0
  private closed = false

  constructor(private readonly options: PendingReleasesOptions) {
    this.max = options.max ?? 10_000
    this.retryMs = options.retryMs ?? 250
    this.maxRetryMs = options.maxRetryMs ?? 1000
    this.wait = this.retryMs
  }

  /** Releases waiting now. */
  get size(): number {
    return this.waiting.size
  }

  /** Release the leases of `items` now, or keep them until the store answers. */
  async release(store: QuotaStore, items: Item[], leaseId: string): Promise<void> {
    try {
      await store.release(items, leaseId)
    } catch {
      this.keep(store, items, leaseId)
    }
  }

  /** Keep a release for later (the store did not take it). */
  keep(store: QuotaStore, items: Item[], leaseId: string): void {
    if (this.closed) return
    const leases = items.filter((it) => it.kind === 'lease')
    if (leases.length === 0) return
    this.waiting.delete(leaseId)
    this.waiting.set(leaseId, { store, items: leases, since: this.options.now() })
    if (this.waiting.size > this.max) {
      for (const id of this.waiting.keys()) {
        this.waiting.delete(id)
        this.full++
        if (this.waiting.size <= this.max) break
      }
    }
    this.timer ??= this.schedule()
  }

  private schedule(): ReturnType<typeof setTimeout> {
    const timer = setTimeout(() => {
      this.timer = null
      void this.flush()
    }, this.wait)
    timer.unref?.()
    return timer
  }

  /**
   * The store answered (an admission went through it): what waits goes now rather than at the next
   * round, so a slot held by a lost release is free within a request or two of Redis coming back.
   * At most one round per KICK_GAP_MS: while only some connections are back, admissions on the
   * others do not each pay for a release that fails.
   */
  kick(): void {
    if (this.timer === null || this.flushing || this.options.now() - this.lastRound < KICK_GAP_MS) return
    clearTimeout(this.timer)
    this.timer = null
    void this.flush()
  }

  /** One round: the oldest release alone, then, if it went through, all the others. Resolves true when none is left. */
  async flush(): Promise<boolean> {
    this.flushing = true
    try {
      return await this.round()
    } finally {
      this.flushing = false
    }
  }

  private async round(): Promise<boolean> {
    this.lastRound = this.options.now()
    if (this.full > 0) {
      this.options.dropped(this.full, 'full')
      this.full = 0
    }
    const now = this.options.now()
    let expired = 0
    for (const [id, w] of this.waiting) {
      if (now - w.since < this.options.keepMs) break
      this.waiting.delete(id)
      expired++
    }
    if (expired > 0) this.options.dropped(expired, 'expired')
    let failed = false
    const first = this.waiting.entries().next()
    if (!first.done && !(await this.send(first.value[0], first.value[1]))) failed = true
    if (!failed) {
      const sent = await Promise.all([...this.waiting].map(([id, w]) => this.send(id, w)))
      failed = sent.includes(false)
    }
    this.wait = failed ? Math.min(this.maxRetryMs, this.wait * 2) : this.retryMs
    if (this.waiting.size > 0 && !this.closed) this.timer ??= this.schedule()
    return this.waiting.size === 0
  }

  private async send(id: string, w: Waiting): Promise<boolean> {
    try {
      await w.store.release(w.items, id)
      // Kept again meanwhile (a newer entry under the same id) stays.
      if (this.waiting.get(id) === w) this.waiting.delete(id)
      return true
    } catch {
      return false
    }
  }

  /** Stop retrying (the store is closing); what waits is dropped. */
  close(): void {
    this.closed = true
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.waiting.clear()
  }
}
