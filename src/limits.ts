import { Type, type Static } from '@sinclair/typebox'

/** Rate limits on a key, user or team. */
export const LimitsSchema = Type.Object(
  {
    /** Requests per minute. */
    rpm: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000_000 })),
    /** Tokens per minute. */
    tpm: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000_000_000 })),
    /** Requests in flight at once. */
    max_parallel: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
  },
  { additionalProperties: false, description: 'Rate limits; an absent field means no limit' },
)

/** A spending budget per UTC calendar period, or in total. */
export const BudgetSchema = Type.Object(
  {
    // Bounded so what is left, in thousandths, stays a 64-bit integer in Redis' replies.
    tokens: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000_000_000_000 })),
    /** Counted in millionths of a dollar: the smallest budget is one of them. */
    usd: Type.Optional(Type.Number({ minimum: 0.000001, maximum: 1_000_000_000 })),
    period: Type.Union([Type.Literal('day'), Type.Literal('week'), Type.Literal('month'), Type.Literal('total')]),
  },
  { additionalProperties: false, description: 'Budget in tokens and/or USD per period' },
)

export type Limits = Static<typeof LimitsSchema>
export type Budget = Static<typeof BudgetSchema>

/**
 * The UTC calendar period of a budget that contains `now`: its label, start and end (ms epoch;
 * both null for `total`). Weeks start on Monday. Budgets are spent per period and renew at its end.
 */
export function budgetPeriod(period: Budget['period'], now: number): { label: string; start: number | null; end: number | null } {
  const d = new Date(now)
  const y = d.getUTCFullYear()
  const m = d.getUTCMonth()
  const day = d.getUTCDate()
  const ymd = (ms: number) => new Date(ms).toISOString().slice(0, 10)
  switch (period) {
    case 'day': {
      const start = Date.UTC(y, m, day)
      return { label: `d${ymd(start)}`, start, end: Date.UTC(y, m, day + 1) }
    }
    case 'week': {
      const start = Date.UTC(y, m, day - ((d.getUTCDay() + 6) % 7))
      return { label: `w${ymd(start)}`, start, end: start + 7 * 86_400_000 }
    }
    case 'month':
      return { label: `m${y}-${String(m + 1).padStart(2, '0')}`, start: Date.UTC(y, m, 1), end: Date.UTC(y, m + 1, 1) }
    case 'total':
      return { label: 'total', start: null, end: null }
  }
}
