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

/**
 * The part of a request's path after `/models/`, as sent: a model name that may hold a raw slash
 * (`meta-llama/Llama-3.1-8B`, which clients and operators put in a path unencoded, and which the
 * router leaves as sent past the first segment). One trailing slash is no part of it, as the
 * router ignores one after a name without a slash.
 */
export function modelPathId(request: Request): string {
  const { pathname } = new URL(request.url)
  const id = pathname.slice(pathname.indexOf('/models/') + '/models/'.length)
  return id.length > 1 && id.endsWith('/') ? id.slice(0, -1) : id
}
