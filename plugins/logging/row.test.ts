import { describe, expect, test } from 'bun:test'
import { isoTime } from './row.ts'

describe('isoTime', () => {
  test('matches Date#toISOString, across seconds and for fractional times', () => {
    const base = Date.parse('2026-03-01T23:59:58.000Z')
    for (const ms of [0, 1, 9, 10, 99, 100, 999, 1000, 1001, 1999.7, 2000, 2000.2, 61_234]) {
      expect(isoTime(base + ms)).toBe(new Date(base + ms).toISOString())
    }
    expect(isoTime(0)).toBe('1970-01-01T00:00:00.000Z')
  })
})
