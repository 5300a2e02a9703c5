/** JSON kept as text in a database column (limits, budgets, metadata, details): null stays null. */
export const toJson = (v: unknown): string | null => (v === undefined || v === null ? null : JSON.stringify(v))

/** Parsed column text; null for null, and for text that is not JSON (nothing to show rather than a failure). */
export function fromJson<T>(text: string | null): T | null {
  if (text === null) return null
  try {
    return JSON.parse(text) as T
  } catch {
    return null
  }
}
