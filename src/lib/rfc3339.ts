/**
 * RFC 3339 date-times (section 5.6) as the admin API reads them: a full date, `T`, a full time
 * with an optional fraction, and a time zone, `Z` or `±hh:mm`. The letters may be lower case,
 * as the RFC allows. Nothing else passes: no time zone (which JavaScript would read as the
 * server's local time), a space for the `T`, a date alone, impossible dates (February 30, which
 * `Date.parse` rolls over to March 2), hour 24 or a leap second (stored times cannot hold it).
 */
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/

/**
 * The range stored times can hold in order: they are ISO text of fixed width, so text order is
 * time order (migrations/0001-initial.ts); a year past 9999 or before 0000 breaks that width.
 */
export const EARLIEST_TIME = Date.parse('0000-01-01T00:00:00.000Z')
export const LATEST_TIME = Date.parse('9999-12-31T23:59:59.999Z')

const DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31] as const
const leap = (year: number): boolean => (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0
const daysIn = (year: number, month: number): number => (month === 2 && leap(year) ? 29 : DAYS[month - 1]!)

/**
 * The instant (ms since the epoch, in UTC) of an RFC 3339 date-time with its offset applied;
 * null for anything else. A fraction finer than a millisecond is cut to the millisecond.
 */
export function parseRfc3339(value: string): number | null {
  const m = RFC3339.exec(value)
  if (m === null) return null
  const [year, month, day, hour, minute, second] = [m[1], m[2], m[3], m[4], m[5], m[6]].map(Number) as [number, number, number, number, number, number]
  if (month < 1 || month > 12 || day < 1 || day > daysIn(year, month) || hour > 23 || minute > 59 || second > 59) return null
  let offset = 0
  if (m[8] !== undefined) {
    const hours = Number(m[9])
    const minutes = Number(m[10])
    if (hours > 23 || minutes > 59) return null
    offset = (m[8] === '-' ? -1 : 1) * (hours * 60 + minutes) * 60_000
  }
  const ms = m[7] === undefined ? 0 : Number(m[7].slice(0, 3).padEnd(3, '0'))
  // setUTCFullYear, not Date.UTC: Date.UTC reads years 0 to 99 as 1900 to 1999.
  const date = new Date(0)
  date.setUTCFullYear(year, month - 1, day)
  date.setUTCHours(hour, minute, second, ms)
  return date.getTime() - offset
}
