import { describe, expect, test } from 'bun:test'
import { isExact } from './scale.ts'

describe('scale exactness verdict', () => {
  const burst = { admitted: 602, other: 0 }
  const bound = 600 + (600 * 0.3) / 60

  test('admitted within the bucket and one log row per request, 200s as admitted: exact', () => {
    expect(isExact(burst, 600, bound, 1800, { rows: 1800, ok: 602 })).toBe(true)
  })

  test('a request-log count off by any row is not exact', () => {
    // A process that dropped its batch (or wrote one twice) passed while the table showed the wrong count.
    expect(isExact(burst, 600, bound, 1800, { rows: 1700, ok: 602 })).toBe(false)
    expect(isExact(burst, 600, bound, 1800, { rows: 1800, ok: 600 })).toBe(false)
    expect(isExact(burst, 600, bound, 1800, { rows: 1801, ok: 602 })).toBe(false)
    expect(isExact(burst, 600, bound, 1800, null)).toBe(false)
  })

  test('over-admission, under-admission and other answers are not exact', () => {
    expect(isExact({ admitted: 700, other: 0 }, 600, bound, 1800, { rows: 1800, ok: 700 })).toBe(false)
    expect(isExact({ admitted: 599, other: 0 }, 600, bound, 1800, { rows: 1800, ok: 599 })).toBe(false)
    expect(isExact({ admitted: 602, other: 1 }, 600, bound, 1800, { rows: 1800, ok: 602 })).toBe(false)
  })
})
