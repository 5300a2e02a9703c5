import type { Item } from './plan.ts'

/** What admission found: taken from every item, or refused by one. */
export interface AdmitOutcome {
  ok: boolean
  /** Index of the item that refused (when not ok): of those without room, the one with the longest wait. */
  failed: number
  /**
   * ms until the refusing item could admit this request (the longest wait of all items without room;
   * a full `max_parallel` set counts only where nothing else refuses); `null` when waiting will not
   * help (the request costs more than the limit, or a total budget is spent).
   */
  waitMs: number | null
  /** What each item has left after this request (before it, when refused). */
  remaining: number[]
  /**
   * The store's reset epoch when it was admitted: its last reset (0: none yet). Its settlement hands
   * it back, so that a counter reset while the request ran gets only what it used beyond its
   * reservation, and is not refunded what the fresh count never held.
   */
  epoch: number
}

/** A settlement's epoch when none is known: taken as admitted after every reset (its refunds always apply). */
export const AFTER_EVERY_RESET = Number.POSITIVE_INFINITY

/** A request in flight that holds leases: its items (the lease items among them count) and its lease id. */
export interface HeldLeases {
  readonly items: readonly Item[]
  readonly leaseId: string
}

/**
 * The quota backend: one atomic admission over all items, then a settlement with the real
 * cost. In-process and Redis implementations keep the same rules; the plugin chooses one at boot.
 */
export interface QuotaStore {
  readonly name: 'memory' | 'redis'
  admit(items: Item[], leaseId: string, now: number): Promise<AdmitOutcome>
  /**
   * Adjust by `deltas[i]` (real cost minus reserved, per item) and release this request's leases.
   * `epoch` is the one its admission answered: a counter reset since gets only a positive delta.
   * @default AFTER_EVERY_RESET
   */
  settle(items: Item[], deltas: number[], leaseId: string, now: number, epoch?: number): Promise<void>
  /**
   * Drop this request's leases and touch nothing else: after an admission whose outcome is
   * unknown (it timed out), so a late-running admission cannot hold a max_parallel slot.
   */
  release(items: Item[], leaseId: string): Promise<void>
  /**
   * Push back the expiry of each request's leases it still holds (to `until` from now): a request
   * that runs longer than `lease_ms` keeps its `max_parallel` slot. A lease already released or
   * expired is not taken again.
   */
  renew(held: readonly HeldLeases[], now: number): Promise<void>
  /** What each item has left now, taking nothing. */
  peek(items: Item[], now: number): Promise<number[]>
  /**
   * Refill the buckets, zero the counters and empty the lease sets among `items` (an operator's
   * reset), at once. Settlements this store holds go first, so a request that ended before the
   * reset cannot charge the fresh counts afterwards; the release of a lease emptied here is harmless.
   * Each counter gets a new reset epoch (see AdmitOutcome.epoch).
   */
  reset(items: Item[]): Promise<void>
  close(): Promise<void>
}

/**
 * Whether a refusal waiting `wait` ms (null: never) names the request's real wait better than the
 * one kept so far: the request passes only once every item has room, so the longest wait is the
 * one to tell (a bucket that refills in a second does not help while a budget is spent).
 */
function longerWait(wait: number | null, kept: number | null, keptIsLease: boolean): boolean {
  if (keptIsLease) return true
  if (kept === null) return false
  return wait === null || wait > kept
}

/**
 * Which of `items`, each with `available` room, refuses a request of their costs, and the wait to
 * give (see AdmitOutcome): the admission rule, of the in-process store and of the key doctor's
 * dry run over what a store has left (the Redis script applies the same). `failed` is -1 when all
 * have room. A full `max_parallel` set refuses only where nothing else does; `leaseWait` tells
 * when its first slot frees (null: unknown).
 */
export function refusingItem(items: readonly Item[], available: readonly number[], now: number, leaseWait: (item: Item) => number | null): { failed: number; waitMs: number | null } {
  let failed = -1
  let waitMs: number | null = 0
  let leaseFailed = false
  for (let i = 0; i < items.length; i++) {
    const item = items[i]!
    const room = available[i]!
    let wait: number | null
    // A cost that is no number (NaN) is above every limit, as an infinite one is.
    if (item.kind === 'bucket') {
      if (item.cost <= room) continue
      wait = !(item.cost <= item.limit) ? null : Math.ceil((item.cost - room) / item.rate)
    } else if (item.kind === 'counter') {
      if (item.cost <= room && room > 0) continue
      wait = !(item.cost <= item.limit) || item.until === null ? null : Math.max(0, item.until - now)
    } else {
      if (failed >= 0 || room > 0) continue
      failed = i
      leaseFailed = true
      waitMs = leaseWait(item)
      continue
    }
    if (failed < 0 || longerWait(wait, waitMs, leaseFailed)) {
      failed = i
      waitMs = wait
      leaseFailed = false
    }
  }
  return { failed, waitMs }
}

/** Entries past this many are swept of those that refilled; then the oldest go. */
const DEFAULT_MAX_ENTRIES = 200_000

/**
 * Quota in one process, with exactly the rules of the Redis script. Every map is bounded:
 * a bucket that has refilled is the same as no bucket, so it can go.
 */
export class MemoryStore implements QuotaStore {
  readonly name = 'memory' as const
  /**
   * A bucket is the ms at which it will be full again, as in the Redis script, and the rate it was
   * written with: it holds limit − max(0, full − now) × that rate (below zero after a charge beyond
   * what it held), so a changed limit keeps the tokens missing, not the time to refill them.
   */
  private readonly buckets = new Map<string, { full: number; rate: number }>()
  private readonly counters = new Map<string, { used: number; expires: number | null }>()
  private readonly leases = new Map<string, Map<string, number>>()
  /** The epoch of each counter's last reset, kept as long as the counter would be (see AdmitOutcome.epoch). */
  private readonly resets = new Map<string, { epoch: number; expires: number | null }>()
  private lastEpoch = 0

  constructor(private readonly maxEntries = DEFAULT_MAX_ENTRIES) {}

  async admit(items: Item[], leaseId: string, now: number): Promise<AdmitOutcome> {
    return this.admitSync(items, leaseId, now)
  }

  admitSync(items: Item[], leaseId: string, now: number): AdmitOutcome {
    const remaining: number[] = []
    const epoch = this.lastEpoch
    for (const item of items) {
      remaining.push(
        item.kind === 'bucket' ? this.rebased(item, now) : item.kind === 'counter' ? item.limit - this.counterUsed(item, now) : item.limit - this.liveLeases(item.key, now).size,
      )
    }
    const { failed, waitMs } = refusingItem(items, remaining, now, (item) => {
      let soonest = Infinity
      for (const expiry of this.liveLeases(item.key, now).values()) soonest = Math.min(soonest, expiry)
      return Number.isFinite(soonest) ? Math.max(0, soonest - now) : null
    })
    if (failed >= 0) return { ok: false, failed, waitMs, remaining, epoch }
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!
      if (item.kind === 'bucket') {
        this.refill(item, now, remaining[i]! - item.cost)
      } else if (item.kind === 'counter') {
        this.counters.set(item.key, { used: item.limit - remaining[i]! + item.cost, expires: item.until })
      } else {
        this.liveLeases(item.key, now).set(leaseId, now + (item.until ?? 0))
      }
      remaining[i] = remaining[i]! - item.cost
    }
    this.bound(now)
    return { ok: true, failed: -1, waitMs: 0, remaining, epoch }
  }

  async settle(items: Item[], deltas: number[], leaseId: string, now: number, epoch = AFTER_EVERY_RESET): Promise<void> {
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!
      let delta = deltas[i] ?? 0
      // Reset while the request ran: only what it used beyond its reservation reaches the fresh count.
      if (delta < 0 && item.kind === 'counter' && this.lastEpoch > epoch && this.resetEpoch(item.key, now) > epoch) delta = 0
      if (item.kind === 'lease') {
        this.leases.get(item.key)?.delete(leaseId)
      } else if (delta !== 0 && item.kind === 'bucket') {
        this.refill(item, now, Math.min(item.limit, this.bucketAvailable(item, now) - delta))
      } else if (delta !== 0) {
        const used = Math.max(0, this.counterUsed(item, now) + delta)
        this.counters.set(item.key, { used, expires: item.until })
      }
    }
  }

  async release(items: Item[], leaseId: string): Promise<void> {
    for (const item of items) if (item.kind === 'lease') this.leases.get(item.key)?.delete(leaseId)
  }

  async renew(held: readonly HeldLeases[], now: number): Promise<void> {
    for (const { items, leaseId } of held) {
      for (const item of items) {
        if (item.kind !== 'lease') continue
        const leases = this.leases.get(item.key)
        const expiry = leases?.get(leaseId)
        if (leases && expiry !== undefined && expiry > now) leases.set(leaseId, now + (item.until ?? 0))
      }
    }
  }

  async peek(items: Item[], now: number): Promise<number[]> {
    return items.map((item) =>
      item.kind === 'bucket' ? this.bucketAvailable(item, now) : item.kind === 'counter' ? item.limit - this.counterUsed(item, now) : item.limit - this.liveLeases(item.key, now).size,
    )
  }

  async reset(items: Item[]): Promise<void> {
    if (items.some((it) => it.kind === 'counter')) this.lastEpoch++
    for (const item of items) {
      if (item.kind === 'bucket') this.buckets.delete(item.key)
      else if (item.kind === 'counter') {
        this.counters.delete(item.key)
        this.resets.set(item.key, { epoch: this.lastEpoch, expires: item.until })
      } else this.leases.delete(item.key)
    }
  }

  async close(): Promise<void> {
    this.buckets.clear()
    this.counters.clear()
    this.leases.clear()
    this.resets.clear()
  }

  private resetEpoch(key: string, now: number): number {
    const reset = this.resets.get(key)
    if (reset === undefined) return 0
    if (reset.expires !== null && reset.expires <= now) {
      this.resets.delete(key)
      return 0
    }
    return reset.epoch
  }

  private bucketAvailable(item: Item, now: number): number {
    const state = this.buckets.get(item.key)
    return state === undefined || state.full <= now ? item.limit : item.limit - (state.full - now) * state.rate
  }

  /**
   * What the bucket of `item` holds now, as an admission reads it: one written at another rate (its
   * limit changed) gets what it misses back at the item's rate from now on, refused or not, as in
   * the Redis script (else a refusal, which writes nothing, leaves a lowered limit's debt to be
   * forgiven at the old rate, well before the wait it was told).
   */
  private rebased(item: Item, now: number): number {
    const state = this.buckets.get(item.key)
    if (state === undefined || state.full <= now) return item.limit
    const left = item.limit - (state.full - now) * state.rate
    if (state.rate !== item.rate) this.refill(item, now, left)
    return left
  }

  /** The bucket of `item` holds `left` now, at the item's rate. */
  private refill(item: Item, now: number, left: number): void {
    const full = now + (item.limit - left) / item.rate
    const state = this.buckets.get(item.key)
    if (state === undefined) this.buckets.set(item.key, { full, rate: item.rate })
    else {
      state.full = full
      state.rate = item.rate
    }
  }

  private counterUsed(item: Item, now: number): number {
    const state = this.counters.get(item.key)
    if (!state) return 0
    if (state.expires !== null && state.expires <= now) {
      this.counters.delete(item.key)
      return 0
    }
    return state.used
  }

  private liveLeases(key: string, now: number): Map<string, number> {
    let held = this.leases.get(key)
    if (!held) {
      held = new Map()
      this.leases.set(key, held)
    }
    for (const [id, expiry] of held) if (expiry <= now) held.delete(id)
    return held
  }

  /** Keep the maps bounded: drop what no longer matters, then the oldest if still too many. */
  private bound(now: number): void {
    if (this.buckets.size > this.maxEntries) {
      for (const [k, state] of this.buckets) if (state.full <= now) this.buckets.delete(k)
      for (const k of this.buckets.keys()) {
        if (this.buckets.size <= this.maxEntries) break
        this.buckets.delete(k)
      }
    }
    if (this.counters.size > this.maxEntries) {
      for (const [k, s] of this.counters) if (s.expires !== null && s.expires <= now) this.counters.delete(k)
    }
    if (this.resets.size > this.maxEntries) {
      for (const [k, r] of this.resets) if (r.expires !== null && r.expires <= now) this.resets.delete(k)
      for (const k of this.resets.keys()) {
        if (this.resets.size <= this.maxEntries) break
        this.resets.delete(k)
      }
    }
    if (this.leases.size > this.maxEntries) {
      for (const [k, held] of this.leases) if (held.size === 0) this.leases.delete(k)
    }
  }
}
