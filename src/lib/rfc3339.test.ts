import { describe, expect, test } from 'bun:test'
import { parseRfc3339 } from './rfc3339.ts'

const utc = (iso: string): number => new Date(iso).getTime()

describe('parseRfc3339', () => {
  test('Z and ±hh:mm offsets, applied: the same instant however it is written', () => {
    expect(parseRfc3339('2026-03-02T00:00:00Z')).toBe(utc('2026-03-02T00:00:00.000Z'))
    expect(parseRfc3339('2026-03-02T05:30:00+05:30')).toBe(utc('2026-03-02T00:00:00.000Z'))
    expect(parseRfc3339('2026-03-01T19:00:00-05:00')).toBe(utc('2026-03-02T00:00:00.000Z'))
    expect(parseRfc3339('2026-03-02T00:00:00-00:00')).toBe(utc('2026-03-02T00:00:00.000Z'))
    // RFC 3339 allows the T and the Z in lower case.
    expect(parseRfc3339('2026-03-02t00:00:00z')).toBe(utc('2026-03-02T00:00:00.000Z'))
  })

  test('fractions: to the millisecond, finer digits cut', () => {
    expect(parseRfc3339('2026-03-02T00:00:00.5Z')).toBe(utc('2026-03-02T00:00:00.500Z'))
    expect(parseRfc3339('2026-03-02T00:00:00.123Z')).toBe(utc('2026-03-02T00:00:00.123Z'))
    expect(parseRfc3339('2026-03-02T00:00:00.999999999Z')).toBe(utc('2026-03-02T00:00:00.999Z'))
  })

  test('leap years, month ends and the ends of the stored range', () => {
    expect(parseRfc3339('2024-02-29T12:00:00Z')).toBe(utc('2024-02-29T12:00:00.000Z'))
    expect(parseRfc3339('2000-02-29T00:00:00Z')).toBe(utc('2000-02-29T00:00:00.000Z'))
    expect(parseRfc3339('2026-12-31T23:59:59Z')).toBe(utc('2026-12-31T23:59:59.000Z'))
    // Years below 100 are years below 100, not 19xx.
    expect(parseRfc3339('0050-06-01T00:00:00Z')).toBe(utc('0050-06-01T00:00:00.000Z'))
    expect(parseRfc3339('9999-12-31T23:59:59.999Z')).toBe(utc('9999-12-31T23:59:59.999Z'))
  })

  test('anything else is refused: no time zone (local time), other separators, impossible dates and times, other shapes', () => {
    for (const value of [
      '2026-03-02T00:00:00', // no time zone: would be the server's local time
      '2026-03-02 00:00:00Z', // a space for the T
      '2026-03-02',
      '2026-03-02T00:00Z', // no seconds
      '2026-02-30T00:00:00Z', // would roll over to March 2
      '2026-02-29T00:00:00Z', // 2026 is no leap year
      '1900-02-29T00:00:00Z', // neither is 1900
      '2026-04-31T00:00:00Z',
      '2026-13-01T00:00:00Z',
      '2026-00-10T00:00:00Z',
      '2026-01-00T00:00:00Z',
      '2026-01-01T24:00:00Z',
      '2026-01-01T23:60:00Z',
      '2026-06-30T23:59:60Z', // a leap second, which stored times cannot hold
      '2026-01-01T00:00:00+24:00',
      '2026-01-01T00:00:00+05:60',
      '2026-01-01T00:00:00+0530',
      '2026-01-01T00:00:00+05',
      '2026-01-01T00:00:00.Z',
      '2026-01-01T00:00:00.1234567890Z',
      '+002026-01-01T00:00:00Z',
      '26-01-01T00:00:00Z',
      ' 2026-01-01T00:00:00Z',
      '2026-01-01T00:00:00Z ',
      '2026-01-01T00:00:00UTC',
      'Mon, 02 Mar 2026 00:00:00 GMT',
      '1772409600000',
      'yesterday',
      '',
    ]) {
      expect([value, parseRfc3339(value)]).toEqual([value, null])
    }
  })
})
