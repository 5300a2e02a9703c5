/** Opaque cursor over a row's time and id, for lists read newest first by (time, id). */
export const encodeCursor = (at: string, id: string): string => Buffer.from(`${at}|${id}`).toString('base64url')

/** A stored time: `toISOString()`'s fixed-width form, whose text order is time order (migrations/0001-initial.ts). */
const STORED_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/
/** An id as stored: no control character (NUL would be refused by Postgres and kept by SQLite, answering a forged cursor two ways). */
const STORED_ID = /^[^\x00-\x1f\x7f]+$/

/**
 * The (time, id) of a cursor encodeCursor gave out; null for anything else, including a forged one
 * whose time is not a stored time's form ("2026" passes Date.parse, and compares as text with no order).
 */
export function decodeCursor(cursor: string): { at: string; id: string } | null {
  const text = Buffer.from(cursor, 'base64url').toString('utf8')
  const bar = text.indexOf('|')
  if (bar <= 0) return null
  const at = text.slice(0, bar)
  const id = text.slice(bar + 1)
  if (!STORED_TIME.test(at) || Number.isNaN(Date.parse(at)) || !STORED_ID.test(id)) return null
  return { at, id }
}
