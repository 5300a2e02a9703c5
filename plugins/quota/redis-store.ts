import type { RedisClient } from '../../src/redis.ts'
import type { Item } from './plan.ts'
import type { AdmitOutcome, QuotaStore } from './store.ts'
import { ADMIT_SCRIPT, ADMIT_SHA, PEEK_SCRIPT, PEEK_SHA, SETTLE_SCRIPT, SETTLE_SHA } from './lua.ts'

const KIND = { bucket: 'b', counter: 'c', lease: 'l' } as const

/** KEYS and ARGV of a script call over `items`; `value(i)` is the cost or delta. */
function encode(items: Item[], leaseId: string, now: number, value: (i: number) => number): (string | number)[] {
  const args: (string | number)[] = [items.length, ...items.map((it) => it.key), items.length, leaseId, now]
  for (let i = 0; i < items.length; i++) {
    const it = items[i]!
    args.push(KIND[it.kind], it.limit, it.rate, value(i), it.until ?? -1)
  }
  return args
}

/**
 * Quota in Redis: each admission and settlement is one script, one round trip, atomic.
 *
 * Over more than one connection: ioredis auto-pipelining keeps one pipeline in flight per
 * connection, so on one connection Redis sits idle while the client reads a batch of replies
 * and writes the next. Two connections overlap the two (measured: ~1.6× the admissions/s,
 * benchmarks/micro/admission.ts). A request keeps to one connection, chosen by its id, so a
 * release sent after a timed-out admission runs after it.
 */
export class RedisStore implements QuotaStore {
  readonly name = 'redis' as const
  private readonly clients: readonly RedisClient[]

  constructor(clients: RedisClient | readonly RedisClient[]) {
    this.clients = Array.isArray(clients) ? clients : [clients as RedisClient]
    if (this.clients.length === 0) throw new Error('RedisStore needs at least one connection')
  }

  /** The connection of a request: a cheap hash of the end of its id (ids end in random characters). */
  private clientFor(leaseId: string): RedisClient {
    const n = this.clients.length
    if (n === 1) return this.clients[0]!
    let h = 0
    for (let i = Math.max(0, leaseId.length - 4); i < leaseId.length; i++) h = (h * 31 + leaseId.charCodeAt(i)) >>> 0
    return this.clients[h % n]!
  }

  private async run(client: RedisClient, sha: string, script: string, args: (string | number)[]): Promise<unknown> {
    try {
      return await client.evalsha(sha, ...(args as [number, ...(string | number)[]]))
    } catch (error) {
      if (!(error instanceof Error) || !error.message.includes('NOSCRIPT')) throw error
      return client.eval(script, ...(args as [number, ...(string | number)[]]))
    }
  }

  async admit(items: Item[], leaseId: string, now: number): Promise<AdmitOutcome> {
    // [ok, failed, wait ms (-1: never), left × 1000 per item]
    const reply = (await this.run(this.clientFor(leaseId), ADMIT_SHA, ADMIT_SCRIPT, encode(items, leaseId, now, (i) => items[i]!.cost))) as number[]
    const remaining = new Array<number>(items.length)
    for (let i = 0; i < items.length; i++) remaining[i] = reply[3 + i]! / 1000
    const wait = reply[2]!
    return { ok: reply[0] === 1, failed: reply[1]!, waitMs: wait < 0 ? null : wait, remaining }
  }

  async settle(items: Item[], deltas: number[], leaseId: string, now: number): Promise<void> {
    if (!items.some((it, i) => it.kind === 'lease' || (deltas[i] ?? 0) !== 0)) return
    await this.run(this.clientFor(leaseId), SETTLE_SHA, SETTLE_SCRIPT, encode(items, leaseId, now, (i) => deltas[i] ?? 0))
  }

  /**
   * Plain ZREMs, not a script: sent right behind a timed-out admission on the same connection,
   * they run after it even if it runs late. A script could answer NOSCRIPT first, and its EVAL
   * retry would then queue behind later commands.
   */
  async release(items: Item[], leaseId: string): Promise<void> {
    const client = this.clientFor(leaseId)
    const removals: Promise<unknown>[] = []
    for (const it of items) if (it.kind === 'lease') removals.push(client.zrem(it.key, leaseId))
    await Promise.all(removals)
  }

  async peek(items: Item[], now: number): Promise<number[]> {
    if (items.length === 0) return []
    const reply = (await this.run(this.clients[0]!, PEEK_SHA, PEEK_SCRIPT, encode(items, '', now, () => 0))) as number[]
    return reply.map((left) => left / 1000)
  }

  async close(): Promise<void> {
    for (const client of this.clients) client.disconnect()
  }
}
