import type { BudgetRefusal } from '../../src/services.ts'
import { MICRO, type Item } from './plan.ts'

/** Budgets (subject, measure, period) whose last refusal is remembered; the oldest is forgotten past it. */
const MAX_REMEMBERED = 10_000

/**
 * The last refusal of each budget, for budget alerts: admission refuses a request once the
 * budget's remainder is below that request's reservation, so the spend it records may stop at
 * 97 % of the budget while every request is refused, and an alert reading the spend alone
 * would never say the budget is spent. Written on refusals only (never on an admitted request),
 * keyed by the counter's store key, which holds the subject (a key's lineage), the measure and
 * the period: a refusal of another period is never found. Bounded; per process.
 */
export class BudgetRefusals {
  private readonly last = new Map<string, { at: number; limit: number; reserved: number; left: number }>()

  /**
   * Remember each budget counter among a refused request's `items` that had no room for it
   * (`left`: what each item had left, as the admission answered). The item that refused is one of
   * them, but a key's budget refuses too while its team's, with a longer wait, is named.
   */
  noteAll(items: readonly Item[], left: readonly number[], now: number): void {
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!
      const room = left[i] ?? 0
      // The admission rule's (refusingItem): a counter refuses unless the cost fits and room is left.
      if (item.kind === 'counter' && !(item.cost <= room && room > 0)) this.note(item, room, now)
    }
  }

  /**
   * Remember that `item`, a budget counter, refused a request with `left` remaining. A request
   * that reserves more than the whole budget is not about what was spent, and is not remembered.
   */
  note(item: Item, left: number, now: number): void {
    if (item.kind !== 'counter' || !(item.cost <= item.limit)) return
    // Re-inserted, so the map's order is the order of last refusal and the oldest goes first.
    this.last.delete(item.key)
    this.last.set(item.key, { at: now, limit: item.limit, reserved: item.cost, left: Math.max(0, left) })
    if (this.last.size > MAX_REMEMBERED) this.last.delete(this.last.keys().next().value!)
  }

  /** The last refusal of this budget counter in its period, unless the budget's limit has changed since. */
  of(item: Item): BudgetRefusal | null {
    const seen = this.last.get(item.key)
    if (seen === undefined || seen.limit !== item.limit || (item.measure !== 'budget_tokens' && item.measure !== 'budget_usd')) return null
    const scale = item.measure === 'budget_usd' ? MICRO : 1
    return { at: seen.at, measure: item.measure, reserved: seen.reserved / scale, left: seen.left / scale }
  }

  get size(): number {
    return this.last.size
  }
}
