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
    tokens: Type.Optional(Type.Integer({ minimum: 1 })),
    usd: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
    period: Type.Union([Type.Literal('day'), Type.Literal('week'), Type.Literal('month'), Type.Literal('total')]),
  },
  { additionalProperties: false, description: 'Budget in tokens and/or USD per period' },
)

export type Limits = Static<typeof LimitsSchema>
export type Budget = Static<typeof BudgetSchema>
