import { isIP } from 'node:net'

/** Options of {@link FailedAttempts}. */
export interface FailedAttemptsOptions {
  /** Failures a client may make in a row, and how many it gets back a minute. @default 10 */
  perMinute?: number
  /** Clients remembered at most; past it the one that failed longest ago is forgotten. @default 10000 */
  maxClients?: number
  now: () => number
}

interface Bucket {
  /** Failures the client may still make (fractional while refilling). */
  tokens: number
  /** When `tokens` was last brought up to date (ms since the epoch). */
  at: number
}

/**
 * Failed guesses at a secret per client address, as token buckets: a client starts with
 * `perMinute` failures and gets them back at `perMinute` a minute; with none left it is refused
 * before its secret is even looked at, so a right guess among wrong ones tells it nothing. Only
 * failures take from the bucket. Clients with a full bucket are not kept: with nobody failing
 * lately the map is empty and {@link retryAfterMs} answers without a lookup. Bounded: past
 * `maxClients` the client remembered longest is forgotten (one `Map` delete, insertion order).
 */
export class FailedAttempts {
  private readonly capacity: number
  private readonly msPerToken: number
  private readonly maxClients: number
  private readonly now: () => number
  private readonly buckets = new Map<string, Bucket>()

  constructor(options: FailedAttemptsOptions) {
    this.capacity = options.perMinute ?? 10
    if (!Number.isInteger(this.capacity) || this.capacity < 1) throw new Error('FailedAttempts: perMinute must be a whole number of at least 1')
    this.msPerToken = 60_000 / this.capacity
    this.maxClients = options.maxClients ?? 10_000
    this.now = options.now
  }

  /** How many clients are remembered (tests). */
  get size(): number {
    return this.buckets.size
  }

  /** 0 when the client may try now; otherwise how long (ms) until it may. */
  retryAfterMs(client: string): number {
    if (this.buckets.size === 0) return 0
    const bucket = this.buckets.get(client)
    if (bucket === undefined) return 0
    const tokens = this.refill(bucket)
    if (tokens >= this.capacity) {
      this.buckets.delete(client)
      return 0
    }
    return tokens >= 1 ? 0 : Math.ceil((1 - tokens) * this.msPerToken)
  }

  /** Count one failure of the client. */
  fail(client: string): void {
    const bucket = this.buckets.get(client)
    if (bucket !== undefined) {
      bucket.tokens = Math.max(0, this.refill(bucket) - 1)
      // Moved to the end: the client that failed longest ago is the one forgotten first.
      this.buckets.delete(client)
      this.buckets.set(client, bucket)
      return
    }
    if (this.buckets.size >= this.maxClients) {
      const oldest = this.buckets.keys().next()
      if (!oldest.done) this.buckets.delete(oldest.value)
    }
    this.buckets.set(client, { tokens: this.capacity - 1, at: this.now() })
  }

  private refill(bucket: Bucket): number {
    const now = this.now()
    if (now > bucket.at) {
      bucket.tokens = Math.min(this.capacity, bucket.tokens + (now - bucket.at) / this.msPerToken)
      bucket.at = now
    }
    return bucket.tokens
  }
}

/**
 * The address a limit per client counts under: an IPv4 address as it is (an IPv4-mapped IPv6
 * one, `::ffff:192.0.2.1` however it is spelt, as its IPv4), an IPv6 address by its /64, which one
 * host or site usually holds whole (one address per guess would be free to it). Null for no address.
 */
export function clientKey(address: string | null): string | null {
  if (address === null || address === '') return null
  if (isIP(address) !== 6) return address
  const zone = address.indexOf('%')
  const g = ipv6Groups((zone < 0 ? address : address.slice(0, zone)).toLowerCase())
  // ::ffff:0:0/96 in any spelling (`::ffff:c000:207`, uncompressed): the IPv4 client, not the ::/64 all of them would share.
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    return `${g[6]! >> 8}.${g[6]! & 255}.${g[7]! >> 8}.${g[7]! & 255}`
  }
  return `${g[0]!.toString(16)}:${g[1]!.toString(16)}:${g[2]!.toString(16)}:${g[3]!.toString(16)}::/64`
}

/** The eight 16-bit groups of an IPv6 address isIP took (no zone): `::` filled, a dotted IPv4 tail as the last two. */
function ipv6Groups(bare: string): number[] {
  const groups = (text: string): number[] =>
    text === ''
      ? []
      : text.split(':').flatMap((part) => {
          if (!part.includes('.')) return [parseInt(part, 16)]
          const [a = 0, b = 0, c = 0, d = 0] = part.split('.').map(Number)
          return [(a << 8) | b, (c << 8) | d]
        })
  const gap = bare.indexOf('::')
  if (gap < 0) return groups(bare)
  const left = groups(bare.slice(0, gap))
  const right = groups(bare.slice(gap + 2))
  return [...left, ...Array<number>(8 - left.length - right.length).fill(0), ...right]
}
