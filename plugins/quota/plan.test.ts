/**
 * Budget periods (UTC calendar: day, week from Monday, month, total) and the key layout of
 * what one request takes from. Pure functions: no clock, no backend.
 */
import { describe, expect, test } from 'bun:test'
import type { Budget, Limits } from '../../src/limits.ts'
import { MICRO, PlanCache, periodOf, planItems, withCosts, type Subjects } from './plan.ts'

const at = (iso: string): number => {
  const ms = Date.parse(iso)
  if (Number.isNaN(ms)) throw new Error(`bad test date ${iso}`)
  return ms
}

describe('periodOf: day', () => {
  test('a day runs from 00:00:00.000Z to the next 00:00:00.000Z', () => {
    expect(periodOf('day', at('2030-06-15T12:34:56.789Z'))).toEqual({ label: 'd2030-06-15', end: at('2030-06-16T00:00:00Z') })
  })

  test('rolls over at exactly midnight UTC: the last ms belongs to the old day, 00:00:00.000 to the new one', () => {
    const last = periodOf('day', at('2030-06-15T23:59:59.999Z'))
    const first = periodOf('day', at('2030-06-16T00:00:00.000Z'))
    expect(last).toEqual({ label: 'd2030-06-15', end: at('2030-06-16T00:00:00Z') })
    expect(first).toEqual({ label: 'd2030-06-16', end: at('2030-06-17T00:00:00Z') })
    expect(last.end).toBe(at('2030-06-16T00:00:00.000Z'))
  })

  test('the period is UTC whatever the process time zone (a non-UTC offset in the input changes nothing)', () => {
    // 2030-06-15T23:30 in UTC-05:00 is 2030-06-16T04:30Z.
    expect(periodOf('day', at('2030-06-15T23:30:00-05:00')).label).toBe('d2030-06-16')
    // 2030-06-16T00:30 in UTC+02:00 is still 2030-06-15T22:30Z.
    expect(periodOf('day', at('2030-06-16T00:30:00+02:00')).label).toBe('d2030-06-15')
  })

  test('month and year ends, leap days', () => {
    expect(periodOf('day', at('2030-01-31T23:59:59.999Z'))).toEqual({ label: 'd2030-01-31', end: at('2030-02-01T00:00:00Z') })
    expect(periodOf('day', at('2030-12-31T10:00:00Z'))).toEqual({ label: 'd2030-12-31', end: at('2031-01-01T00:00:00Z') })
    expect(periodOf('day', at('2028-02-28T10:00:00Z'))).toEqual({ label: 'd2028-02-28', end: at('2028-02-29T00:00:00Z') })
    expect(periodOf('day', at('2028-02-29T10:00:00Z'))).toEqual({ label: 'd2028-02-29', end: at('2028-03-01T00:00:00Z') })
    expect(periodOf('day', at('2030-02-28T10:00:00Z'))).toEqual({ label: 'd2030-02-28', end: at('2030-03-01T00:00:00Z') })
  })
})

describe('periodOf: week (Monday to Monday, UTC)', () => {
  // 2030-06-17 is a Monday.
  test('every day of a week, Monday 00:00 to Sunday 23:59:59.999, has the same label and end', () => {
    const monday = at('2030-06-17T00:00:00Z')
    const expected = { label: 'w2030-06-17', end: at('2030-06-24T00:00:00Z') }
    for (let day = 0; day < 7; day++) {
      expect(periodOf('week', monday + day * 86_400_000)).toEqual(expected)
      expect(periodOf('week', monday + day * 86_400_000 + 43_200_000)).toEqual(expected)
    }
    expect(periodOf('week', at('2030-06-23T23:59:59.999Z'))).toEqual(expected)
  })

  test('Sunday 23:59:59.999 is the old week; Monday 00:00:00.000 the new one', () => {
    expect(periodOf('week', at('2030-06-16T23:59:59.999Z'))).toEqual({ label: 'w2030-06-10', end: at('2030-06-17T00:00:00Z') })
    expect(periodOf('week', at('2030-06-17T00:00:00.000Z'))).toEqual({ label: 'w2030-06-17', end: at('2030-06-24T00:00:00Z') })
  })

  test('a week that spans a month end and a year end is labelled by its Monday', () => {
    // 2030-12-30 is a Monday; the week runs into 2031.
    expect(periodOf('week', at('2031-01-02T08:00:00Z'))).toEqual({ label: 'w2030-12-30', end: at('2031-01-06T00:00:00Z') })
    // 2028-02-28 is a Monday; the week holds the leap day.
    expect(periodOf('week', at('2028-03-01T08:00:00Z'))).toEqual({ label: 'w2028-02-28', end: at('2028-03-06T00:00:00Z') })
    expect(periodOf('week', at('2028-02-29T08:00:00Z'))).toEqual({ label: 'w2028-02-28', end: at('2028-03-06T00:00:00Z') })
  })
})

describe('periodOf: month', () => {
  test('from the 1st 00:00Z to the next 1st 00:00Z, whatever the month length', () => {
    expect(periodOf('month', at('2030-01-31T23:59:59.999Z'))).toEqual({ label: 'm2030-01', end: at('2030-02-01T00:00:00Z') })
    expect(periodOf('month', at('2030-02-01T00:00:00.000Z'))).toEqual({ label: 'm2030-02', end: at('2030-03-01T00:00:00Z') })
    expect(periodOf('month', at('2030-04-30T23:59:59.999Z'))).toEqual({ label: 'm2030-04', end: at('2030-05-01T00:00:00Z') })
    expect(periodOf('month', at('2030-12-31T23:59:59.999Z'))).toEqual({ label: 'm2030-12', end: at('2031-01-01T00:00:00Z') })
    expect(periodOf('month', at('2031-01-01T00:00:00.000Z'))).toEqual({ label: 'm2031-01', end: at('2031-02-01T00:00:00Z') })
  })

  test('February in leap and common years', () => {
    expect(periodOf('month', at('2028-02-29T23:59:59.999Z'))).toEqual({ label: 'm2028-02', end: at('2028-03-01T00:00:00Z') })
    expect(periodOf('month', at('2028-03-01T00:00:00.000Z')).label).toBe('m2028-03')
    expect(periodOf('month', at('2030-02-28T23:59:59.999Z'))).toEqual({ label: 'm2030-02', end: at('2030-03-01T00:00:00Z') })
    // 2100 is not a leap year (divisible by 100, not by 400); 2000 was.
    expect(periodOf('month', at('2100-02-28T12:00:00Z')).end).toBe(at('2100-03-01T00:00:00Z'))
    expect(periodOf('day', at('2100-02-28T12:00:00Z')).end).toBe(at('2100-03-01T00:00:00Z'))
    expect(periodOf('day', at('2000-02-28T12:00:00Z')).end).toBe(at('2000-02-29T00:00:00Z'))
  })
})

describe('periodOf: total', () => {
  test('never ends and has one label at any time', () => {
    expect(periodOf('total', at('2030-06-15T12:00:00Z'))).toEqual({ label: 'total', end: null })
    expect(periodOf('total', at('1999-01-01T00:00:00Z'))).toEqual({ label: 'total', end: null })
  })
})

describe('planItems', () => {
  const limits: Limits = { rpm: 60, tpm: 6000, max_parallel: 3 }
  const budget: Budget = { tokens: 10_000, usd: 1.5, period: 'day' }
  const everything: Subjects = {
    key: { id: 'key_a', limits, budget },
    user: { id: 'usr_b', limits, budget },
    team: { id: 'team_c', limits, budget },
  }
  const now = at('2030-06-15T12:00:00Z')
  const options = { tag: 'tag-x', leaseMs: 600_000 }

  test('every key of key, user and team shares the {tag} hash tag, so one Lua script may touch them all in a cluster', () => {
    const items = planItems(everything, { tokens: 100, microUsd: 250 }, now, options)
    expect(items).toHaveLength(15)
    for (const item of items) {
      expect(item.key.startsWith('{tag-x}:')).toBe(true)
      // Redis Cluster hashes only what is inside the first {…}: the tag, for every key.
      expect(item.key.match(/\{([^}]*)\}/)?.[1]).toBe('tag-x')
    }
    expect(new Set(items.map((i) => i.key)).size).toBe(items.length)
  })

  test('key layout: {tag}:<scope>:<id>:rpm|tpm|par|bt:<period>|bu:<period>', () => {
    const items = planItems(everything, { tokens: 100, microUsd: 250 }, now, options)
    expect(items.map((i) => i.key)).toEqual(
      ['key:key_a', 'user:usr_b', 'team:team_c'].flatMap((p) => [
        `{tag-x}:${p}:rpm`,
        `{tag-x}:${p}:tpm`,
        `{tag-x}:${p}:par`,
        `{tag-x}:${p}:bt:d2030-06-15`,
        `{tag-x}:${p}:bu:d2030-06-15`,
      ]),
    )
  })

  test('kinds, limits, rates, costs and ends follow the limits and budget', () => {
    const items = planItems({ key: { id: 'k', limits, budget }, user: { id: 'u', limits: null, budget: null }, team: null }, { tokens: 123, microUsd: 456 }, now, options)
    expect(items).toEqual([
      { kind: 'bucket', scope: 'key', id: 'k', measure: 'requests', key: '{tag-x}:key:k:rpm', limit: 60, rate: 60 / 60_000, cost: 1, until: null },
      { kind: 'bucket', scope: 'key', id: 'k', measure: 'tokens', key: '{tag-x}:key:k:tpm', limit: 6000, rate: 6000 / 60_000, cost: 123, until: null },
      { kind: 'lease', scope: 'key', id: 'k', measure: 'parallel', key: '{tag-x}:key:k:par', limit: 3, rate: 0, cost: 1, until: 600_000 },
      { kind: 'counter', scope: 'key', id: 'k', measure: 'budget_tokens', key: '{tag-x}:key:k:bt:d2030-06-15', limit: 10_000, rate: 0, cost: 123, until: at('2030-06-16T00:00:00Z') },
      { kind: 'counter', scope: 'key', id: 'k', measure: 'budget_usd', key: '{tag-x}:key:k:bu:d2030-06-15', limit: 1.5 * MICRO, rate: 0, cost: 456, until: at('2030-06-16T00:00:00Z') },
    ])
  })

  test('a rotated key is counted under its lineage (countedAs) but still named by its own id', () => {
    const successor = { ...everything, key: { id: 'key_new', countedAs: 'key_first', limits, budget } }
    const items = planItems(successor, { tokens: 1, microUsd: 1 }, now, options).filter((i) => i.scope === 'key')
    expect(items.map((i) => i.key)).toEqual(['rpm', 'tpm', 'par', 'bt:d2030-06-15', 'bu:d2030-06-15'].map((s) => `{tag-x}:key:key_first:${s}`))
    expect(new Set(items.map((i) => i.id))).toEqual(new Set(['key_new']))
  })

  test('a total budget has no end; a week budget is keyed by its Monday', () => {
    const total = planItems({ key: { id: 'k', limits: null, budget: { tokens: 5, period: 'total' } }, user: { id: 'u', limits: null, budget: { usd: 2, period: 'week' } }, team: null }, { tokens: 1, microUsd: 1 }, now, options)
    expect(total.map((i) => [i.key, i.until])).toEqual([
      ['{tag-x}:key:k:bt:total', null],
      ['{tag-x}:user:u:bu:w2030-06-10', at('2030-06-17T00:00:00Z')],
    ])
  })

  test('no limits and no budget: nothing to take', () => {
    expect(planItems({ key: { id: 'k', limits: null, budget: null }, user: { id: 'u', limits: {}, budget: null }, team: null }, { tokens: 1, microUsd: 1 }, now, options)).toEqual([])
  })
})

describe('PlanCache', () => {
  const opts = { tag: 't', leaseMs: 60_000 }
  const subjects: Subjects = {
    key: { id: 'k', limits: { rpm: 10, tpm: 1000 }, budget: { tokens: 5000, period: 'day' } },
    user: { id: 'u', limits: null, budget: null },
    team: null,
  }
  const day = Date.UTC(2026, 10, 28, 12)

  test('one plan per owner until its first budget period ends; costs go in per request', () => {
    const cache = new PlanCache(opts)
    const owner = {}
    let made = 0
    const make = () => (made++, subjects)
    const a = cache.template(owner, make, day)!
    expect(cache.template(owner, make, day + 3_600_000)).toBe(a)
    expect(made).toBe(1)
    const items = withCosts(a, { tokens: 300, microUsd: 7 })
    expect(items).toEqual(planItems(subjects, { tokens: 300, microUsd: 7 }, day, opts))
    // Midnight UTC: the day budget's key changes, so the plan is made again.
    const next = cache.template(owner, make, Date.UTC(2026, 10, 29))!
    expect(made).toBe(2)
    expect(next.find((it) => it.measure === 'budget_tokens')!.key).toContain('d2026-11-29')
    // A clock that goes back makes a new plan too.
    cache.template(owner, make, day)
    expect(made).toBe(3)
  })

  test('an owner with nothing to limit plans nothing, once', () => {
    const cache = new PlanCache(opts)
    const owner = {}
    let made = 0
    const none: Subjects = { key: { id: 'k', limits: null, budget: null }, user: { id: 'u', limits: null, budget: null }, team: null }
    expect(cache.template(owner, () => (made++, none), day)).toBeNull()
    expect(cache.template(owner, () => (made++, none), day)).toBeNull()
    expect(made).toBe(1)
  })
})
