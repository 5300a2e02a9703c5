/**
 * The quota plugin's pure helpers: OpenAI's reset format and the x-ratelimit-* headers picked
 * from a request's items. Everything through HTTP is in test/quota.test.ts.
 */
import { describe, expect, test } from 'bun:test'
import { formatDuration, rateLimitHeaders } from './index.ts'
import type { Item } from './plan.ts'

describe('formatDuration (x-ratelimit-reset-*)', () => {
  test.each([
    [0, '0s'],
    [-5, '0s'],
    [Number.NaN, '0s'],
    [0.2, '1ms'],
    [20, '20ms'],
    [999.2, '1s'],
    [1000, '1s'],
    [1500, '1.5s'],
    [6_666.4, '6.667s'],
    [59_999, '59.999s'],
    [59_999.5, '1m0s'],
    [60_000, '1m0s'],
    [119_200, '2m0s'],
    [360_000, '6m0s'],
    [3_599_500, '1h0m0s'],
    [3_723_000, '1h2m3s'],
  ])('%p ms → %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text)
  })

  test('never shows 60 seconds or 60 minutes in a field', () => {
    for (let ms = 59_000; ms < 7_300_000; ms += 977.7) expect(formatDuration(ms)).not.toMatch(/(^|[hm])60[ms]/)
  })
})

describe('rateLimitHeaders', () => {
  const bucket = (scope: Item['scope'], measure: 'requests' | 'tokens', limit: number): Item => ({
    kind: 'bucket', scope, id: scope, measure, key: `{t}:${scope}:${measure}`, limit, rate: limit / 60_000, cost: 1, until: null,
  })

  test('per measure, the item with the least left speaks; reset is the time until it is full', () => {
    const items = [bucket('key', 'requests', 100), bucket('user', 'requests', 10), bucket('key', 'tokens', 6000)]
    expect(rateLimitHeaders(items, [99, 4, 3000])).toEqual({
      'x-ratelimit-limit-requests': '10',
      'x-ratelimit-remaining-requests': '4',
      'x-ratelimit-reset-requests': '36s',
      'x-ratelimit-limit-tokens': '6000',
      'x-ratelimit-remaining-tokens': '3000',
      'x-ratelimit-reset-tokens': '30s',
    })
  })

  test('fractions are floored; a bucket in debt shows 0 remaining and a reset over a minute', () => {
    const headers = rateLimitHeaders([bucket('team', 'tokens', 600)], [-300])
    expect(headers['x-ratelimit-remaining-tokens']).toBe('0')
    expect(headers['x-ratelimit-reset-tokens']).toBe('1m30s')
    expect(rateLimitHeaders([bucket('key', 'requests', 60)], [2.9])['x-ratelimit-remaining-requests']).toBe('2')
  })

  test('budgets and leases add no headers; no items, no headers', () => {
    const lease: Item = { kind: 'lease', scope: 'key', id: 'k', measure: 'parallel', key: '{t}:par', limit: 2, rate: 0, cost: 1, until: 1000 }
    expect(rateLimitHeaders([lease], [1])).toEqual({})
    expect(rateLimitHeaders([], [])).toEqual({})
  })
})
