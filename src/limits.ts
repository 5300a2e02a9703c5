import { Type, type Static } from '@sinclair/typebox'
import { Nullable } from './routes/schemas.ts'

/** Requests per minute. */
const Rpm = Type.Integer({ minimum: 1, maximum: 100_000_000 })
/** Tokens per minute. */
const Tpm = Type.Integer({ minimum: 1, maximum: 10_000_000_000 })
/** Requests in flight at once. */
const MaxParallel = Type.Integer({ minimum: 1, maximum: 1_000_000 })
// Bounded so what is left, in thousandths, stays a 64-bit integer in Redis' replies.
const BudgetTokens = Type.Integer({ minimum: 1, maximum: 1_000_000_000_000_000 })
/** Counted in millionths of a dollar: the smallest budget is one of them. */
const BudgetUsd = Type.Number({ minimum: 0.000001, maximum: 1_000_000_000 })
const Period = Type.Union([Type.Literal('day'), Type.Literal('week'), Type.Literal('month'), Type.Literal('total')])

/** Rate limits on a key, user or team, as stored and enforced. */
export const LimitsSchema = Type.Object(
  { rpm: Type.Optional(Rpm), tpm: Type.Optional(Tpm), max_parallel: Type.Optional(MaxParallel) },
  { additionalProperties: false, description: 'Rate limits; an absent field means no limit' },
)

/** A spending budget per UTC calendar period, or in total, as stored and enforced. */
export const BudgetSchema = Type.Object(
  { tokens: Type.Optional(BudgetTokens), usd: Type.Optional(BudgetUsd), period: Period },
  { additionalProperties: false, description: 'Budget in tokens and/or USD per period' },
)

/**
 * Rate limits as a client sends them: a field may also be null, which means "not set", as leaving
 * it out does (JSON clients often send every field); {@link withoutNulls} makes them {@link Limits}.
 */
export const LimitsInputSchema = Type.Object(
  { rpm: Type.Optional(Nullable(Rpm)), tpm: Type.Optional(Nullable(Tpm)), max_parallel: Type.Optional(Nullable(MaxParallel)) },
  { additionalProperties: false, description: 'Rate limits; a field absent or null means no limit' },
)

/** A budget as a client sends it: `tokens` and `usd` may also be null, "not set" (see {@link LimitsInputSchema}). */
export const BudgetInputSchema = Type.Object(
  { tokens: Type.Optional(Nullable(BudgetTokens)), usd: Type.Optional(Nullable(BudgetUsd)), period: Period },
  { additionalProperties: false, description: 'Budget in tokens and/or USD per period; a field absent or null is not counted' },
)

export type Limits = Static<typeof LimitsSchema>
export type Budget = Static<typeof BudgetSchema>
export type LimitsInput = Static<typeof LimitsInputSchema>
export type BudgetInput = Static<typeof BudgetInputSchema>

/** Limits or a budget as sent, without the fields sent as null: what is stored has a field set, or not at all. */
export function withoutNulls<T extends LimitsInput | BudgetInput>(value: T): { [K in keyof T]: Exclude<T[K], null> } {
  return Object.fromEntries(Object.entries(value).filter(([, field]) => field !== null)) as { [K in keyof T]: Exclude<T[K], null> }
}

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
