import { describe, expect, test } from 'bun:test'
import type { SpendSplit } from './repo.ts'
import { SpendCache, type SpendReader } from './spend-cache.ts'

const HOUR = 3_600_000
const iso = (ms: number) => new Date(ms).toISOString()

/** A log of (subject, time, tokens) rows, read as the repository would, and the reads made. */
function fakeLog(rows: Array<[string, number, number]>) {
  const reads: Array<{ ids: readonly string[]; start: string | null; closedBefore: string | null }> = []
  const read: SpendReader = async (ids, start, closedBefore) => {
    reads.push({ ids, start, closedBefore })
    const out = new Map<string, SpendSplit>()
    for (const [id, at, tokens] of rows) {
      if (!ids.includes(id) || (start !== null && at < Date.parse(start))) continue
      const s = out.get(id) ?? { tokens: 0, usd: 0, closed: { tokens: 0, usd: 0 } }
      s.tokens += tokens
      if (closedBefore !== null && at < Date.parse(closedBefore)) s.closed.tokens += tokens
      out.set(id, s)
    }
    return out
  }
  return { rows, reads, read }
}

describe('SpendCache', () => {
  const from = iso(Date.UTC(2026, 5, 1))
  const t0 = Date.UTC(2026, 5, 20, 12, 30)

  test('a check reads from where the remembered sum ends, the hour an hour behind it; the total is the whole log\'s', async () => {
    const log = fakeLog([['a', Date.UTC(2026, 5, 2), 10], ['a', t0 - 10 * 60_000, 5], ['b', Date.UTC(2026, 5, 3), 7]])
    const cache = new SpendCache()
    expect(Object.fromEntries(await cache.spend('user', ['a', 'b'], from, t0, null, log.read))).toEqual({ a: { tokens: 15, usd: 0 }, b: { tokens: 7, usd: 0 } })
    expect(log.reads).toEqual([{ ids: ['a', 'b'], start: from, closedBefore: iso(Date.UTC(2026, 5, 20, 11)) }])
    log.rows.push(['a', t0 + HOUR, 1])
    expect(Object.fromEntries(await cache.spend('user', ['a', 'b'], from, t0 + 2 * HOUR, null, log.read))).toEqual({ a: { tokens: 16, usd: 0 }, b: { tokens: 7, usd: 0 } })
    expect(log.reads[1]).toEqual({ ids: ['a', 'b'], start: iso(Date.UTC(2026, 5, 20, 11)), closedBefore: iso(Date.UTC(2026, 5, 20, 13)) })
  })

  test('no hour of the period over yet: all of it is read, nothing remembered', async () => {
    const log = fakeLog([['a', t0, 3]])
    const cache = new SpendCache()
    const dayStart = iso(Date.UTC(2026, 5, 20, 12))
    expect((await cache.spend('user', ['a'], dayStart, t0, null, log.read)).get('a')).toEqual({ tokens: 3, usd: 0 })
    expect(log.reads).toEqual([{ ids: ['a'], start: dayStart, closedBefore: null }])
  })

  test('bounded: past maxEntries the oldest sum is forgotten and counted afresh; a sum older than recountMs is too', async () => {
    const log = fakeLog([])
    const cache = new SpendCache({ maxEntries: 2, recountMs: 3 * HOUR })
    await cache.spend('user', ['a', 'b'], from, t0, null, log.read)
    await cache.spend('user', ['c'], from, t0, null, log.read)
    await cache.spend('user', ['a', 'b', 'c'], from, t0 + HOUR, null, log.read)
    const afresh = (i: number) => log.reads[i]!.start === from
    expect(log.reads.slice(2).map((r) => [r.ids, r.start === from])).toEqual([
      [['a'], true],
      [['b', 'c'], false],
    ])
    expect(afresh(0)).toBe(true)
    await cache.spend('user', ['c'], from, t0 + 3 * HOUR, null, log.read)
    expect(log.reads.at(-1)!.start).toBe(from)
  })
})
