/**
 * The limit and budget schemas every admin route and config file checks against: the bounds
 * keep what the quota stores compute in range (a budget below one millionth of a dollar would
 * round to a limit of 0 and refuse everything; one past the top would overflow Redis' replies).
 */
import { describe, expect, test } from 'bun:test'
import { Value } from '@sinclair/typebox/value'
import { BudgetSchema, LimitsSchema } from './limits.ts'

describe('BudgetSchema', () => {
  test.each([
    [{ usd: 0.000001, period: 'day' }, true],
    [{ usd: 0.0000004, period: 'day' }, false],
    [{ usd: 0, period: 'day' }, false],
    [{ usd: 1_000_000_000, period: 'month' }, true],
    [{ usd: 1_000_000_001, period: 'month' }, false],
    [{ tokens: 1, period: 'total' }, true],
    [{ tokens: 1_000_000_000_000_000, period: 'week' }, true],
    [{ tokens: 1_000_000_000_000_001, period: 'week' }, false],
    [{ tokens: 1.5, period: 'week' }, false],
  ])('%j valid: %p', (budget, valid) => {
    expect(Value.Check(BudgetSchema, budget)).toBe(valid)
  })
})

describe('LimitsSchema', () => {
  test('every limit is a positive integer within its bound; unknown fields are refused', () => {
    expect(Value.Check(LimitsSchema, { rpm: 1, tpm: 10_000_000_000, max_parallel: 1_000_000 })).toBe(true)
    expect(Value.Check(LimitsSchema, { rpm: 0 })).toBe(false)
    expect(Value.Check(LimitsSchema, { tpm: 10_000_000_001 })).toBe(false)
    expect(Value.Check(LimitsSchema, { rpd: 5 })).toBe(false)
  })
})
