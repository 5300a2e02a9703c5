import { NotSentError } from './connection.ts'
import { hasLease, type Item } from './plan.ts'
import type { QuotaStore } from './store.ts'

export interface SettleOptions {
  /** Further tries after the first, for a settlement that never left this process, and for a lease release. */
  retries: number
  /** Wait before the first retry; doubled for each one after it. */
  baseMs: number
  /** The clock the store's calls are made with. */
  now: () => number
  /** The settlement is given up (its refund or charge is lost); its leases are still released. */
  lost: (error: unknown) => void
}

/**
 * Settle a request, riding out a connection that is down for a moment. A settlement that was
 * never sent is sent again (it cannot apply twice); one whose fate is unknown (a timeout) is not,
 * since running its deltas again could charge twice. Either way the request's `max_parallel`
 * leases are then dropped on their own, retried until it works or the tries run out: a release is
 * idempotent, and a lease left behind would hold a slot until it expires (`lease_ms`).
 */
export function settleSurely(store: QuotaStore, items: Item[], deltas: number[], leaseId: string, options: SettleOptions): Promise<void> {
  // The usual case costs what a plain settle() does: the retries live in the rejection path.
  return store.settle(items, deltas, leaseId, options.now()).catch((error: unknown) => recover(error, store, items, deltas, leaseId, options))
}

async function recover(error: unknown, store: QuotaStore, items: Item[], deltas: number[], leaseId: string, options: SettleOptions): Promise<void> {
  let attempt = 0
  while (error instanceof NotSentError && attempt < options.retries) {
    await Bun.sleep(options.baseMs * 2 ** attempt++)
    try {
      await store.settle(items, deltas, leaseId, options.now())
      return
    } catch (next) {
      error = next
    }
  }
  options.lost(error)
  if (!hasLease(items)) return
  for (let tries = 0; tries <= options.retries; tries++) {
    try {
      await store.release(items, leaseId)
      return
    } catch {
      if (tries < options.retries) await Bun.sleep(options.baseMs * 2 ** tries)
    }
  }
}
