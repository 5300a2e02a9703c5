/**
 * Percent-escapes decoded, once; text holding a `%` that starts no valid escape (a password or
 * an id written as is) is taken as written instead of failing.
 */
export function decodePercent(text: string): string {
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}
