/** Small statistics shared by the load generators and the report. */

/** The value at quantile `q` (0..1) of an ascending-sorted array, nearest-rank. */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[rank] ?? Number.NaN
}

/** Median, min and max of a list of round results. */
export interface Spread {
  median: number
  min: number
  max: number
}

export function spread(values: readonly number[]): Spread {
  const finite = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b)
  if (finite.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN }
  const mid = finite.length >> 1
  const median = finite.length % 2 === 1 ? (finite[mid] ?? Number.NaN) : ((finite[mid - 1] ?? 0) + (finite[mid] ?? 0)) / 2
  return { median, min: finite[0] ?? Number.NaN, max: finite[finite.length - 1] ?? Number.NaN }
}
