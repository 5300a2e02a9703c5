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

/** Quota in Redis: each admission and settlement is one script, one round trip, atomic. */
export class RedisStore implements QuotaStore {
  readonly name = 'redis' as const

  constructor(private readonly client: RedisClient) {}

  private async run(sha: string, script: string, args: (string | number)[]): Promise<unknown> {
    try {
      return await this.client.evalsha(sha, ...(args as [number, ...(string | number)[]]))
    } catch (error) {
      if (!(error instanceof Error) || !error.message.includes('NOSCRIPT')) throw error
      return this.client.eval(script, ...(args as [number, ...(string | number)[]]))
    }
  }

  async admit(items: Item[], leaseId: string, now: number): Promise<AdmitOutcome> {
    const reply = (await this.run(ADMIT_SHA, ADMIT_SCRIPT, encode(items, leaseId, now, (i) => items[i]!.cost))) as [number, number, string, ...string[]]
    const [ok, failed, wait, ...remaining] = reply
    return {
      ok: ok === 1,
      failed: Number(failed),
      waitMs: wait === 'never' ? null : Number(wait),
      remaining: remaining.map(Number),
    }
  }

  async settle(items: Item[], deltas: number[], leaseId: string, now: number): Promise<void> {
    if (!items.some((it, i) => it.kind === 'lease' || (deltas[i] ?? 0) !== 0)) return
    await this.run(SETTLE_SHA, SETTLE_SCRIPT, encode(items, leaseId, now, (i) => deltas[i] ?? 0))
  }

  /**
   * Plain ZREMs, not a script: sent right behind a timed-out admission on the same connection,
   * they run after it even if it runs late. A script could answer NOSCRIPT first, and its EVAL
   * retry would then queue behind later commands.
   */
  async release(items: Item[], leaseId: string): Promise<void> {
    const removals: Promise<unknown>[] = []
    for (const it of items) if (it.kind === 'lease') removals.push(this.client.zrem(it.key, leaseId))
    await Promise.all(removals)
  }

  async peek(items: Item[], now: number): Promise<number[]> {
    if (items.length === 0) return []
    const reply = (await this.run(PEEK_SHA, PEEK_SCRIPT, encode(items, '', now, () => 0))) as string[]
    return reply.map(Number)
  }

  async close(): Promise<void> {
    this.client.disconnect()
  }
}
