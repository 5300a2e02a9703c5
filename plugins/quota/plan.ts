import type { Budget, Limits } from '../../src/limits.ts'

/** Who a limit hangs on. */
export type Scope = 'key' | 'user' | 'team'
/** What a limit counts. */
export type Measure = 'requests' | 'tokens' | 'parallel' | 'budget_tokens' | 'budget_usd'

/**
 * One thing admission must take from: a token bucket (`bucket`), a period counter
 * (`counter`) or a lease set (`lease`). Both stores run the same list with the same rules.
 */
export interface Item {
  kind: 'bucket' | 'counter' | 'lease'
  scope: Scope
  /** The subject's id, as refusals name it (the store key may be under its lineage: see Subject). */
  id: string
  measure: Measure
  /** The store key (Redis key layout; also the in-process map key). */
  key: string
  /** Bucket capacity, counter limit or lease maximum. */
  limit: number
  /** Bucket refill per ms (0 for counters and leases). */
  rate: number
  /** What this request takes: 1 request, N tokens, micro-USD, or 1 lease. */
  cost: number
  /** Counter: ms epoch when its period ends (null for `total`). Lease: its lifetime in ms. */
  until: number | null
}

/** Whether a request's items hold a lease (a max_parallel slot), which only that request can drop. */
export function hasLease(items: readonly Item[]): boolean {
  for (let i = 0; i < items.length; i++) if (items[i]!.kind === 'lease') return true
  return false
}

/** An item's kind as the Redis scripts name it. */
export const KIND_LETTER = { bucket: 'b', counter: 'c', lease: 'l' } as const

/** One key, user or team with its limits and budget. */
export interface Subject {
  id: string
  /**
   * The id its buckets, leases and counters are kept under, when not `id`: a rotated key's
   * lineage (Identity.keyLineageId), so every key of a rotation chain takes from the same ones.
   */
  countedAs?: string
  limits: Limits | null
  budget: Budget | null
}

/** The limits and budgets of one request's key, user and team. */
export interface Subjects {
  key: Subject
  user: Subject
  team: Subject | null
}

/** USD budgets are counted in whole micro-dollars (integers in Redis' Lua, exact up to 2^53). */
export const MICRO = 1_000_000

/**
 * A cost in whole micro-dollars, rounded up: a request cheaper than a micro-dollar still takes one,
 * so a budget is never spent past its limit by rounding (rounded to the nearest, such requests
 * took nothing and a small budget never ran out). The quota's spend can run ahead of the request
 * log's by under a micro-dollar a request. The tolerance keeps a float product such as
 * 0.000183 × 10^6 = 183.00000000000003 at 183.
 */
export const toMicroUsd = (usd: number): number => (usd > 0 ? Math.max(1, Math.ceil(usd * MICRO - 1e-6)) : 0)

/**
 * Every item a request must take from. Keys share one hash tag so a Redis Cluster keeps
 * all of them in one slot, where one script can check and take them atomically.
 */
export function planItems(
  subjects: Subjects,
  costs: { tokens: number; microUsd: number },
  now: number,
  options: { tag: string; leaseMs: number },
): Item[] {
  const items: Item[] = []
  subjectItems('key', subjects.key, costs, now, options, items)
  subjectItems('user', subjects.user, costs, now, options, items)
  if (subjects.team) subjectItems('team', subjects.team, costs, now, options, items)
  return items
}

/** The items of one key, user or team alone, appended to `into` (a new list when not given). */
export function subjectItems(
  scope: Scope,
  subject: Subject,
  costs: { tokens: number; microUsd: number },
  now: number,
  options: { tag: string; leaseMs: number },
  into: Item[] = [],
): Item[] {
  const limits = subject.limits
  const prefix = `{${options.tag}}:${scope}:${subject.countedAs ?? subject.id}`
  if (limits?.rpm) into.push({ kind: 'bucket', scope, id: subject.id, measure: 'requests', key: `${prefix}:rpm`, limit: limits.rpm, rate: limits.rpm / 60_000, cost: 1, until: null })
  if (limits?.tpm) into.push({ kind: 'bucket', scope, id: subject.id, measure: 'tokens', key: `${prefix}:tpm`, limit: limits.tpm, rate: limits.tpm / 60_000, cost: costs.tokens, until: null })
  if (limits?.max_parallel) into.push({ kind: 'lease', scope, id: subject.id, measure: 'parallel', key: `${prefix}:par`, limit: limits.max_parallel, rate: 0, cost: 1, until: options.leaseMs })
  const budget = subject.budget
  if (budget) {
    const period = periodOf(budget.period, now)
    if (budget.tokens) into.push({ kind: 'counter', scope, id: subject.id, measure: 'budget_tokens', key: `${prefix}:bt:${period.label}`, limit: budget.tokens, rate: 0, cost: costs.tokens, until: period.end })
    if (budget.usd) into.push({ kind: 'counter', scope, id: subject.id, measure: 'budget_usd', key: `${prefix}:bu:${period.label}`, limit: Math.round(budget.usd * MICRO), rate: 0, cost: costs.microUsd, until: period.end })
  }
  return into
}

/** The UTC calendar period containing `now`: a label for keys and its end. Weeks start on Monday. */
export function periodOf(period: Budget['period'], now: number): { label: string; end: number | null } {
  const d = new Date(now)
  const y = d.getUTCFullYear()
  const m = d.getUTCMonth()
  const day = d.getUTCDate()
  switch (period) {
    case 'day':
      return { label: `d${ymd(y, m, day)}`, end: Date.UTC(y, m, day + 1) }
    case 'week': {
      const offset = (d.getUTCDay() + 6) % 7
      return { label: `w${ymd(y, m, day - offset)}`, end: Date.UTC(y, m, day - offset + 7) }
    }
    case 'month':
      return { label: `m${y}-${String(m + 1).padStart(2, '0')}`, end: Date.UTC(y, m + 1, 1) }
    case 'total':
      return { label: 'total', end: null }
  }
}

function ymd(y: number, m: number, day: number): string {
  return new Date(Date.UTC(y, m, day)).toISOString().slice(0, 10)
}

/** A request's items with the costs of `costs` put in: 1 for requests and leases, tokens or micro-USD for the rest. */
export function withCosts(template: readonly Item[], costs: { tokens: number; microUsd: number }): Item[] {
  const items = new Array<Item>(template.length)
  for (let i = 0; i < template.length; i++) {
    const t = template[i]!
    const cost = t.measure === 'tokens' || t.measure === 'budget_tokens' ? costs.tokens : t.measure === 'budget_usd' ? costs.microUsd : 1
    items[i] = { kind: t.kind, scope: t.scope, id: t.id, measure: t.measure, key: t.key, limit: t.limit, rate: t.rate, cost, until: t.until }
  }
  return items
}

/**
 * planItems, remembered per owner object (the identity auth hands out, one per key record and
 * shared by its requests): building keys and budget periods costs more than the admission's
 * own work in the gateway. A plan holds from the time it was made until the first of its
 * budget periods ends; a clock that goes back (tests) makes a new one.
 */
export class PlanCache {
  private readonly plans = new WeakMap<object, { template: Item[] | null; from: number; until: number }>()

  constructor(private readonly options: { tag: string; leaseMs: number }) {}

  /**
   * The owner's items with no costs in (see withCosts), or null when nothing limits it.
   * `subjects` is called (with the owner: no closure per call) only to make a new plan.
   */
  template<O extends object>(owner: O, subjects: (owner: O) => Subjects | null, now: number): readonly Item[] | null {
    let plan = this.plans.get(owner)
    if (plan === undefined || now < plan.from || now >= plan.until) {
      const s = subjects(owner)
      const template = s === null ? [] : planItems(s, { tokens: 0, microUsd: 0 }, now, this.options)
      let until = Infinity
      for (const it of template) if (it.kind === 'counter' && it.until !== null) until = Math.min(until, it.until)
      plan = { template: template.length > 0 ? template : null, from: now, until }
      this.plans.set(owner, plan)
    }
    return plan.template
  }
}
