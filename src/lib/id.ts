const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'

/**
 * `length` base62 characters from the CSPRNG. Rejection sampling keeps every
 * character uniform (256 is not a multiple of 62).
 */
export function randomBase62(length: number): string {
  let out = ''
  while (out.length < length) {
    const bytes = crypto.getRandomValues(new Uint8Array(length * 2))
    for (const b of bytes) {
      if (b < 248) out += BASE62[b % 62]
      if (out.length === length) break
    }
  }
  return out
}

/** A prefixed id such as `usr_…`, `key_…`, `req_…`. */
export const newId = (prefix: string, length = 20): string => `${prefix}_${randomBase62(length)}`

/**
 * Request ids are made per request: a UUID without dashes is cheaper than base62 sampling. Version 7
 * starts with the time, so request-log rows (whose primary key this is) go in at the end of the
 * index instead of at a random place in it, and ids sort by when the request came.
 */
export const newRequestId = (): string => 'req_' + Bun.randomUUIDv7().replaceAll('-', '')
