import { describe, expect, test } from 'bun:test'
import { subjectItems, withCosts } from './plan.ts'
import { BudgetRefusals } from './refusals.ts'

const options = { tag: 'sluice', leaseMs: 60_000 }
const now = Date.UTC(2026, 11, 7, 12)
const budgetItems = (budget: { tokens?: number; usd?: number; period: 'day' | 'week' | 'month' | 'total' }, tokens: number, at = now) =>
  withCosts(subjectItems('key', { id: 'key_b', countedAs: 'key_a', limits: { rpm: 10 }, budget }, { tokens: 0, microUsd: 0 }, at, options), { tokens, microUsd: 250_000 })

describe('BudgetRefusals', () => {
  test("a budget without room for a request is remembered under its lineage and period; buckets and budgets with room are not", () => {
    const refusals = new BudgetRefusals()
    const items = budgetItems({ tokens: 100, usd: 1, period: 'day' }, 30)
    // rpm bucket with room, token budget with 13 left, USD budget with room.
    refusals.noteAll(items, [5, 13, 900_000], now)
    const [rpm, tokens, usd] = items
    expect(refusals.of(rpm!)).toBeNull()
    expect(refusals.of(tokens!)).toEqual({ at: now, measure: 'budget_tokens', reserved: 30, left: 13 })
    expect(refusals.of(usd!)).toBeNull()
    // The next day's counter is another budget period: yesterday's refusal is not its.
    expect(refusals.of(budgetItems({ tokens: 100, usd: 1, period: 'day' }, 30, now + 86_400_000)[1]!)).toBeNull()
    // A changed budget: the refusal was of the old one.
    expect(refusals.of(budgetItems({ tokens: 200, period: 'day' }, 30)[1]!)).toBeNull()
  })

  test('USD in dollars; a request reserving more than the whole budget says nothing of its spend', () => {
    const refusals = new BudgetRefusals()
    const small = budgetItems({ usd: 1, period: 'month' }, 30)
    refusals.noteAll(small, [5, 100_000], now)
    expect(refusals.of(small[1]!)).toEqual({ at: now, measure: 'budget_usd', reserved: 0.25, left: 0.1 })
    const tiny = budgetItems({ tokens: 20, period: 'week' }, 30)
    refusals.noteAll(tiny, [5, 20], now)
    expect(refusals.of(tiny[1]!)).toBeNull()
  })

  test('bounded: past 10,000 budgets the one refused longest ago is forgotten first', () => {
    const refusals = new BudgetRefusals()
    const item = (i: number) => withCosts(subjectItems('user', { id: `usr_${i}`, limits: null, budget: { tokens: 10, period: 'total' } }, { tokens: 0, microUsd: 0 }, now, options), { tokens: 5, microUsd: 0 })[0]!
    refusals.note(item(0), 0, now)
    for (let i = 1; i <= 10_000; i++) refusals.note(item(i), 0, now + i)
    // Refused again: now the most recent.
    refusals.note(item(1), 0, now + 20_000)
    refusals.note(item(10_001), 0, now + 20_001)
    expect(refusals.size).toBe(10_000)
    expect(refusals.of(item(0))).toBeNull()
    expect(refusals.of(item(1))?.at).toBe(now + 20_000)
    expect(refusals.of(item(2))).toBeNull()
    expect(refusals.of(item(3))).not.toBeNull()
  })
})
