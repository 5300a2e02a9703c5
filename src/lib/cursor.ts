/** Opaque cursor over a row's time and id, for lists read newest first by (time, id). */
export const encodeCursor = (at: string, id: string): string => Buffer.from(`${at}|${id}`).toString('base64url')

/** The (time, id) of a cursor encodeCursor gave out; null for anything else. */
export function decodeCursor(cursor: string): { at: string; id: string } | null {
  const text = Buffer.from(cursor, 'base64url').toString('utf8')
  const bar = text.indexOf('|')
  if (bar <= 0) return null
  const at = text.slice(0, bar)
  if (Number.isNaN(Date.parse(at))) return null
  return { at, id: text.slice(bar + 1) }
}
