/**
 * One suite, three backends: the in-process MemoryStore and the RedisStore over Bun's native
 * client and over ioredis (real Redis, keys under a hash tag unique to this run, deleted
 * afterwards) must keep exactly the same rules.
 *
 * Time: the memory store takes `now` from its caller, Redis reads its own TIME. The suite
 * passes Date.now() and measures real waits from outside: every call happens between
 * `before` and `after`, so elapsed time between two calls lies in
 * [start of the second − end of the first, end of the second − start of the first],
 * and the assertions accept exactly that range (plus 2 ms of clock rounding).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { Redis } from 'ioredis'
import { deleteTaggedKeys } from '../../test/support/redis-procs.ts'
import { redisUrlForTests, uniqueTestName } from '../../test/support/services.ts'
import type { Item } from './plan.ts'
import { RedisStore } from './redis-store.ts'
import { IoredisConnection, NativeConnection } from './connection.ts'
import { MemoryStore, type AdmitOutcome, type QuotaStore } from './store.ts'

const redisUrl = await redisUrlForTests('plugins/quota/store.test.ts')
const tag = uniqueTestName('store')

interface Backend {
  name: string
  available: boolean
  open(): Promise<QuotaStore>
  close(): Promise<void>
}

let redisClients: Redis[] = []
let nativeClients: NativeConnection[] = []
const backends: Backend[] = [
  {
    name: 'MemoryStore',
    available: true,
    open: async () => new MemoryStore(),
    close: async () => {},
  },
  {
    name: 'RedisStore (native client)',
    available: redisUrl !== null,
    async open() {
      // Two connections, as the plugin opens by default: a request keeps to one of them.
      nativeClients = [0, 1].map(() => new NativeConnection(redisUrl!, 1000))
      await Promise.all(nativeClients.map((c) => c.whenConnected(2000)))
      return new RedisStore(nativeClients)
    },
    async close() {
      for (const client of nativeClients) client.close()
      await deleteTaggedKeys(redisUrl!, tag)
    },
  },
  {
    name: 'RedisStore (ioredis, as on a Cluster)',
    available: redisUrl !== null,
    async open() {
      redisClients = [0, 1].map(() => new Redis(redisUrl!, { enableAutoPipelining: true, maxRetriesPerRequest: 1 }))
      return new RedisStore(redisClients.map((c) => new IoredisConnection(c)))
    },
    async close() {
      for (const client of redisClients) client.disconnect()
      await deleteTaggedKeys(redisUrl!, tag)
    },
  },
]

let seq = 0
/** A key of its own per test, under the run's hash tag. */
const fresh = (what: string): string => `{${tag}}:t${seq++}:${what}`

const bucket = (limit: number, perMinute: number, cost: number, key = fresh('b')): Item => ({
  kind: 'bucket', scope: 'key', id: 'k', measure: 'tokens', key, limit, rate: perMinute / 60_000, cost, until: null,
})
const counter = (limit: number, cost: number, until: number | null, key = fresh('c')): Item => ({
  kind: 'counter', scope: 'key', id: 'k', measure: 'budget_tokens', key, limit, rate: 0, cost, until,
})
const lease = (max: number, leaseMs: number, key = fresh('l')): Item => ({
  kind: 'lease', scope: 'key', id: 'k', measure: 'parallel', key, limit: max, rate: 0, cost: 1, until: leaseMs,
})
const withCost = (item: Item, cost: number): Item => ({ ...item, cost })

/** A call and the wall-clock window it ran in. */
async function timed<T>(work: () => Promise<T>): Promise<{ value: T; before: number; after: number }> {
  const before = Date.now()
  const value = await work()
  return { value, before, after: Date.now() }
}

/** Elapsed time between two timed calls, as the range the store's own clock must fall in. */
const between = (first: { before: number; after: number }, second: { before: number; after: number }) => ({
  min: second.before - first.after - 2,
  max: second.after - first.before + 2,
})

for (const backend of backends) {
  describe.skipIf(!backend.available)(backend.name, () => {
    let store: QuotaStore
    let lid = 0
    const leaseId = () => `req_${backend.name}_${lid++}`
    const admit = (items: Item[], id = leaseId()): Promise<AdmitOutcome> => store.admit(items, id, Date.now())
    const peek = (items: Item[]) => store.peek(items, Date.now())
    const settle = (items: Item[], deltas: number[], id: string, epoch?: number) => store.settle(items, deltas, id, Date.now(), epoch)

    beforeAll(async () => {
      store = await backend.open()
    })
    afterAll(async () => {
      await backend.close()
    })

    describe('token bucket', () => {
      test('capacity is the limit: a fresh bucket admits exactly `limit` costs of 1, then refuses', async () => {
        // 5 per minute: what refills during the test (≪ 1) cannot admit a 6th.
        const item = bucket(5, 5, 1)
        const outcomes: AdmitOutcome[] = []
        for (let i = 0; i < 7; i++) outcomes.push(await admit([item]))
        expect(outcomes.map((o) => o.ok)).toEqual([true, true, true, true, true, false, false])
        expect(outcomes.slice(0, 5).map((o) => Math.round(o.remaining[0]!))).toEqual([4, 3, 2, 1, 0])
        expect(outcomes[5]).toMatchObject({ ok: false, failed: 0 })
      })

      test('one admission may take the whole capacity at once, not a token more', async () => {
        const item = bucket(1000, 1, 1000)
        expect((await admit([item])).ok).toBe(true)
        const again = await admit([withCost(item, 1)])
        expect(again.ok).toBe(false)
      })

      test('refill is continuous: after taking all, waiting X ms gives back rate × X', async () => {
        // 60 000 per minute = 1 per ms.
        const item = bucket(60_000, 60_000, 60_000)
        const took = await timed(() => admit([item]))
        expect(took.value.ok).toBe(true)
        expect(took.value.remaining[0]).toBeCloseTo(0, 5)
        await Bun.sleep(150)
        const seen = await timed(() => peek([item]))
        const { min, max } = between(took, seen)
        expect(seen.value[0]!).toBeGreaterThanOrEqual(min * 1)
        expect(seen.value[0]!).toBeLessThanOrEqual(max * 1)
        expect(seen.value[0]!).toBeGreaterThanOrEqual(148)
      })

      test('refill never goes above capacity', async () => {
        const item = bucket(10, 600_000, 3)
        expect((await admit([item])).ok).toBe(true)
        await Bun.sleep(20)
        expect((await peek([item]))[0]).toBe(10)
      })

      test('a partially refilled bucket admits what it holds and refuses more', async () => {
        // 600 per minute = 0.01 per ms: 100 ms give back about one token.
        const item = bucket(10, 600, 10)
        const took = await timed(() => admit([item]))
        expect(took.value.ok).toBe(true)
        await Bun.sleep(230)
        // Between 2 and 3 tokens are back (a loaded machine may make it more; then it is still ≥ 2).
        const three = await admit([withCost(item, 2)])
        expect(three.ok).toBe(true)
      })

      test('waitMs is the time until the bucket holds the cost; waiting that long admits, waiting half does not', async () => {
        // 600 per minute: one token every 100 ms.
        const item = bucket(10, 600, 10)
        const took = await timed(() => admit([item]))
        expect(took.value.ok).toBe(true)
        const refused = await timed(() => admit([withCost(item, 1)]))
        expect(refused.value.ok).toBe(false)
        const wait = refused.value.waitMs!
        const { min, max } = between(took, refused)
        // ceil((1 − refilled) / rate) with refilled = elapsed × 0.01.
        expect(wait).toBeLessThanOrEqual(100 - Math.floor(min) + 1)
        expect(wait).toBeGreaterThanOrEqual(100 - Math.ceil(max) - 1)
        expect(wait).toBeGreaterThan(0)

        await Bun.sleep(Math.floor(wait / 2))
        const early = await admit([withCost(item, 1)])
        if (!early.ok) {
          expect(early.waitMs!).toBeGreaterThan(0)
          expect(early.waitMs!).toBeLessThan(wait)
          await Bun.sleep(early.waitMs!)
        }
        expect((await admit([withCost(item, 1)])).ok).toBe(true)
      })

      test('Retry-After arithmetic holds to the second: a 1-per-second bucket asks for at most 1 s, 1-per-minute for at most 60 s', async () => {
        const perSecond = bucket(2, 60, 2)
        const perMinute = bucket(1, 1, 1)
        expect((await admit([perSecond])).ok).toBe(true)
        expect((await admit([perMinute])).ok).toBe(true)
        const a = await admit([withCost(perSecond, 1)])
        const b = await admit([withCost(perMinute, 1)])
        expect(Math.ceil(a.waitMs! / 1000)).toBe(1)
        expect(a.waitMs!).toBeGreaterThan(900)
        expect(Math.ceil(b.waitMs! / 1000)).toBe(60)
        expect(b.waitMs!).toBeGreaterThan(59_000)
      })

      test('a raised limit keeps the tokens missing, not the time to refill them: both stores agree', async () => {
        // 600 per minute, 10 taken: 10 missing.
        const key = fresh('b')
        expect((await admit([bucket(10, 600, 10, key)])).ok).toBe(true)
        // Raised to 6000 per minute (capacity 100): still 10 missing (less what came back meanwhile,
        // 0.01 a ms), so about 90 left, not the 0 a bucket as far from full in time would hold.
        const [raised] = await peek([bucket(100, 6000, 0, key)])
        expect(raised!).toBeGreaterThanOrEqual(90)
        expect(raised!).toBeLessThan(91)
        // Taken from at the new limit, it refills at the new rate: 0.1 a ms.
        const took = await timed(() => admit([bucket(100, 6000, 50, key)]))
        expect(took.value.ok).toBe(true)
        await Bun.sleep(100)
        const seen = await timed(() => peek([bucket(100, 6000, 0, key)]))
        const { min, max } = between(took, seen)
        expect(seen.value[0]!).toBeGreaterThanOrEqual(Math.min(100, took.value.remaining[0]! + min * 0.1))
        expect(seen.value[0]!).toBeLessThanOrEqual(Math.min(100, took.value.remaining[0]! + max * 0.1))
      })

      test('a lowered limit keeps the tokens missing too: below what was taken, the bucket is in debt and refills at the new rate', async () => {
        const key = fresh('b')
        expect((await admit([bucket(10, 600, 10, key)])).ok).toBe(true)
        // Lowered to 60 per minute (capacity 1): 10 missing, so 1 − 10 = −9 (a little less after the refill meanwhile).
        const [lowered] = await peek([bucket(1, 60, 0, key)])
        expect(lowered!).toBeGreaterThanOrEqual(-9)
        expect(lowered!).toBeLessThan(-8.5)
        // One more request waits until the debt is paid at 1 a second: about 10 s.
        const refused = await admit([bucket(1, 60, 1, key)])
        expect(refused).toMatchObject({ ok: false, failed: 0 })
        expect(refused.waitMs!).toBeGreaterThan(9_000)
        expect(refused.waitMs!).toBeLessThanOrEqual(10_000)
      })

      test('a lowered limit: from the first admission under it, the debt is paid at the new rate, not the old one (the wait it told holds)', async () => {
        const key = fresh('b')
        // 100 a second, all 100 taken; lowered to 1 a second: 100 missing, 1 − 100 = −99.
        expect((await admit([bucket(100, 6000, 100, key)])).ok).toBe(true)
        const refused = await admit([bucket(1, 60, 1, key)])
        expect(refused).toMatchObject({ ok: false, failed: 0 })
        expect(refused.waitMs!).toBeGreaterThan(90_000)
        // At the old rate the debt would be gone in a second; at the new one, about 1 token came back.
        await Bun.sleep(1100)
        const [left] = await peek([bucket(1, 60, 0, key)])
        expect(left!).toBeLessThan(-90)
        expect((await admit([bucket(1, 60, 1, key)])).ok).toBe(false)
      })

      test('a cost past any number (infinite, or not a number) is never admitted, as a cost above the limit, and takes nothing', async () => {
        const b = bucket(100, 6000, 1)
        const c = counter(100, 1, null)
        for (const cost of [Number.POSITIVE_INFINITY, Number.NaN]) {
          expect(await admit([withCost(b, cost)])).toMatchObject({ ok: false, failed: 0, waitMs: null })
          expect(await admit([withCost(c, cost)])).toMatchObject({ ok: false, failed: 0, waitMs: null })
        }
        expect(await peek([b, c])).toEqual([100, 100])
      })

      test('a cost above the limit can never be admitted: waitMs is null', async () => {
        const item = bucket(100, 100, 101)
        const outcome = await admit([item])
        expect(outcome).toMatchObject({ ok: false, failed: 0, waitMs: null })
        expect(outcome.remaining[0]).toBe(100)
      })
    })

    describe('all or nothing', () => {
      test('an admission refused by its 3rd item (exhausted) takes nothing from items 1 and 2', async () => {
        const a = bucket(10, 1, 1)
        const b = counter(100, 7, Date.now() + 3_600_000)
        const c = bucket(5, 1, 5)
        expect((await admit([c])).ok).toBe(true)
        const outcome = await admit([a, b, withCost(c, 1)])
        expect(outcome.ok).toBe(false)
        expect(outcome.failed).toBe(2)
        expect(outcome.waitMs).toBeGreaterThan(0)
        // Remaining is what each had before the refusal.
        expect(Math.round(outcome.remaining[0]!)).toBe(10)
        expect(outcome.remaining[1]).toBe(100)
        const [ra, rb] = await peek([a, b])
        expect(Math.round(ra!)).toBe(10)
        expect(rb).toBe(100)
      })

      test('refused by a 3rd item whose cost exceeds its limit: nothing taken, waitMs null', async () => {
        const a = bucket(10, 1, 1)
        const b = lease(1, 60_000)
        const c = bucket(2, 1, 3)
        const outcome = await admit([a, b, c])
        expect(outcome).toMatchObject({ ok: false, failed: 2, waitMs: null })
        const [ra, rb] = await peek([a, b])
        expect(Math.round(ra!)).toBe(10)
        expect(rb).toBe(1)
        // The lease was not taken either: the only slot is still free.
        expect((await admit([b])).ok).toBe(true)
      })

      test('refused by a 3rd item that is a spent budget: the lease and bucket before it stay untouched', async () => {
        const a = lease(1, 60_000)
        const b = bucket(3, 1, 1)
        const c = counter(5, 5, Date.now() + 3_600_000)
        expect((await admit([c])).ok).toBe(true)
        const outcome = await admit([a, b, withCost(c, 0)])
        expect(outcome).toMatchObject({ ok: false, failed: 2 })
        const [ra, rb, rc] = await peek([a, b, c])
        expect(ra).toBe(1)
        expect(Math.round(rb!)).toBe(3)
        expect(rc).toBe(0)
      })

      test('of two items that can never admit the request, the first is reported', async () => {
        const a = bucket(1, 1, 2)
        const b = bucket(1, 1, 2)
        expect(await admit([bucket(5, 1, 1), a, b])).toMatchObject({ ok: false, failed: 1, waitMs: null })
      })

      test('of several items without room, the one with the longest wait is reported (the request passes only when all have room)', async () => {
        // A 60-per-minute bucket refills a request in 1 s; a 1-per-minute one in 60 s.
        const fast = bucket(1, 60, 1)
        const slow = bucket(1, 1, 1)
        expect((await admit([fast, slow])).ok).toBe(true)
        const outcome = await admit([fast, slow])
        expect(outcome).toMatchObject({ ok: false, failed: 1 })
        expect(outcome.waitMs!).toBeGreaterThan(58_000)
        // Reported first or last, the longer wait wins.
        const reversed = await admit([slow, fast])
        expect(reversed).toMatchObject({ ok: false, failed: 0 })
        expect(reversed.waitMs!).toBeGreaterThan(58_000)
      })

      test('a spent period budget outranks a bucket that refills sooner: its wait is the time to the period end', async () => {
        const rpm = bucket(1, 1, 1)
        const end = Date.now() + 3_600_000
        const budget = counter(5, 5, end)
        expect((await admit([rpm, budget])).ok).toBe(true)
        const outcome = await admit([rpm, withCost(budget, 1)])
        expect(outcome).toMatchObject({ ok: false, failed: 1 })
        expect(outcome.waitMs!).toBeGreaterThan(3_590_000)
        expect(outcome.waitMs!).toBeLessThanOrEqual(3_600_000)
      })

      test('a wait that never ends outranks any finite one', async () => {
        const rpm = bucket(1, 1, 1)
        const total = counter(5, 5, null)
        expect((await admit([rpm, total])).ok).toBe(true)
        expect(await admit([rpm, withCost(total, 1)])).toMatchObject({ ok: false, failed: 1, waitMs: null })
      })

      test('a full max_parallel set is reported only when no other item refuses', async () => {
        const slots = lease(1, 60_000)
        const rpm = bucket(1, 1, 1)
        expect((await admit([slots, rpm])).ok).toBe(true)
        const both = await admit([slots, rpm])
        expect(both).toMatchObject({ ok: false, failed: 1 })
        expect(both.waitMs!).toBeGreaterThan(58_000)
        expect(await admit([slots, bucket(5, 1, 1)])).toMatchObject({ ok: false, failed: 0 })
      })

      test('on success every item is taken and remaining is what is left after it', async () => {
        const items = [bucket(10, 1, 4), counter(50, 20, Date.now() + 3_600_000), lease(3, 60_000)]
        const outcome = await admit(items)
        expect(outcome.ok).toBe(true)
        expect(outcome.failed).toBe(-1)
        expect(outcome.waitMs).toBe(0)
        expect(outcome.remaining.map((r) => Math.round(r))).toEqual([6, 30, 2])
        expect((await peek(items)).map((r) => Math.round(r))).toEqual([6, 30, 2])
      })
    })

    describe('counters (budgets)', () => {
      test('admit up to the limit exactly, then refuse; once exhausted even cost 0 is refused', async () => {
        const until = Date.now() + 3_600_000
        const item = counter(10, 4, until)
        expect((await admit([item])).ok).toBe(true)
        expect((await admit([item])).ok).toBe(true)
        const over = await admit([item])
        expect(over).toMatchObject({ ok: false, failed: 0 })
        expect(over.remaining[0]).toBe(2)
        const exact = await admit([withCost(item, 2)])
        expect(exact.ok).toBe(true)
        expect(exact.remaining[0]).toBe(0)
        const zero = await admit([withCost(item, 0)])
        expect(zero).toMatchObject({ ok: false, failed: 0 })
        expect(zero.remaining[0]).toBe(0)
      })

      test('waitMs of a spent period budget is the time until the period ends', async () => {
        const until = Date.now() + 90_000
        const item = counter(1, 1, until)
        expect((await admit([item])).ok).toBe(true)
        const now = Date.now()
        const refused = await store.admit([item], leaseId(), now)
        expect(refused.ok).toBe(false)
        expect(refused.waitMs).toBe(until - now)
      })

      test('a spent total budget never renews: waitMs null', async () => {
        const item = counter(3, 3, null)
        expect((await admit([item])).ok).toBe(true)
        expect(await admit([withCost(item, 1)])).toMatchObject({ ok: false, waitMs: null })
      })

      test('a cost above the budget is refused with waitMs null, taking nothing', async () => {
        const item = counter(10, 11, Date.now() + 60_000)
        expect(await admit([item])).toMatchObject({ ok: false, waitMs: null, remaining: [10] })
        expect(await peek([item])).toEqual([10])
      })
    })

    describe('leases (max_parallel)', () => {
      test('refuse at the maximum; settling one frees its slot', async () => {
        const item = lease(2, 60_000)
        const [a, b, c] = [leaseId(), leaseId(), leaseId()]
        expect((await admit([item], a)).ok).toBe(true)
        expect((await admit([item], b)).ok).toBe(true)
        const refused = await admit([item], c)
        expect(refused).toMatchObject({ ok: false, failed: 0 })
        expect(refused.remaining[0]).toBe(0)
        await settle([item], [0], a)
        expect(await peek([item])).toEqual([1])
        expect((await admit([item], c)).ok).toBe(true)
        expect((await admit([item])).ok).toBe(false)
      })

      test('waitMs of a full lease set is the time until the oldest lease expires', async () => {
        const item = lease(1, 30_000)
        const took = await timed(() => admit([item]))
        const refused = await timed(() => admit([item]))
        expect(refused.value.ok).toBe(false)
        const { max } = between(took, refused)
        expect(refused.value.waitMs!).toBeLessThanOrEqual(30_000)
        expect(refused.value.waitMs!).toBeGreaterThanOrEqual(30_000 - max)
      })

      test('a lease expires by itself after its lifetime (a crashed holder does not block forever)', async () => {
        const item = lease(1, 1000)
        expect((await admit([item])).ok).toBe(true)
        expect((await admit([item])).ok).toBe(false)
        await Bun.sleep(1050)
        expect((await admit([item])).ok).toBe(true)
      })

      test('renew keeps a lease held past its lifetime, and the lease set with it', async () => {
        const item = lease(1, 1000)
        const mine = leaseId()
        expect((await admit([item], mine)).ok).toBe(true)
        for (let i = 0; i < 3; i++) {
          await Bun.sleep(500)
          await store.renew([{ items: [item], leaseId: mine }], Date.now())
        }
        // 1.5 s after it was taken, a lease of 1 s still holds its slot.
        expect((await admit([item])).ok).toBe(false)
        await settle([item], [0], mine)
        expect((await admit([item])).ok).toBe(true)
      })

      test('renew does not take again a lease that was released or has expired, nor one never taken', async () => {
        const released = lease(1, 60_000)
        const expired = lease(1, 1000)
        const [a, b] = [leaseId(), leaseId()]
        expect((await admit([released], a)).ok).toBe(true)
        expect((await admit([expired], b)).ok).toBe(true)
        await settle([released], [0], a)
        await Bun.sleep(1050)
        await store.renew([{ items: [released], leaseId: a }, { items: [expired], leaseId: b }, { items: [released], leaseId: 'req_never_admitted' }], Date.now())
        expect(await peek([released, expired])).toEqual([1, 1])
        // Buckets and counters of a request are no leases: renewing them changes nothing.
        const others = [bucket(10, 1, 3), counter(100, 30, Date.now() + 3_600_000)]
        expect((await admit(others, a)).ok).toBe(true)
        await store.renew([{ items: others, leaseId: a }], Date.now())
        expect((await peek(others)).map((r) => Math.round(r))).toEqual([7, 70])
      })

      test("release drops only this request's leases and leaves buckets and counters as taken", async () => {
        const items = [bucket(10, 1, 3), counter(100, 30, Date.now() + 3_600_000), lease(2, 60_000)]
        const mine = leaseId()
        const other = leaseId()
        expect((await admit(items, mine)).ok).toBe(true)
        expect((await admit([items[2]!], other)).ok).toBe(true)
        await store.release(items, mine)
        expect((await peek(items)).map((r) => Math.round(r))).toEqual([7, 70, 1])
        // Releasing again, or a request that holds nothing, is harmless.
        await store.release(items, mine)
        await store.release(items, 'req_unknown')
        expect(await peek([items[2]!])).toEqual([1])
      })

      test('settling a lease that is not held changes nothing', async () => {
        const item = lease(1, 60_000)
        const held = leaseId()
        expect((await admit([item], held)).ok).toBe(true)
        await settle([item], [0], 'req_never_admitted')
        expect(await peek([item])).toEqual([0])
      })
    })

    describe('settlement', () => {
      test('a refund goes back to the bucket but never above capacity', async () => {
        const item = bucket(100, 1, 50)
        const id = leaseId()
        expect((await admit([item], id)).ok).toBe(true)
        await settle([item], [-80], id)
        expect(Math.round((await peek([item]))[0]!)).toBe(100)
      })

      test('a partial refund leaves what was really used taken', async () => {
        const item = bucket(100, 1, 60)
        const id = leaseId()
        expect((await admit([item], id)).ok).toBe(true)
        await settle([item], [-45], id)
        expect(Math.round((await peek([item]))[0]!)).toBe(85)
      })

      test('a charge above the reservation takes more, and may leave the bucket in debt', async () => {
        const item = bucket(100, 1, 90)
        const id = leaseId()
        expect((await admit([item], id)).ok).toBe(true)
        await settle([item], [30], id)
        const [left] = await peek([item])
        expect(Math.round(left!)).toBe(-20)
        const refused = await admit([withCost(item, 1)])
        expect(refused.ok).toBe(false)
        // 21 tokens at 1 per minute.
        expect(Math.ceil(refused.waitMs! / 1000)).toBe(21 * 60)
      })

      test('counters: refund and charge, never below zero', async () => {
        const until = Date.now() + 3_600_000
        const item = counter(1000, 300, until)
        const id = leaseId()
        expect((await admit([item], id)).ok).toBe(true)
        await settle([item], [-200], id)
        expect(await peek([item])).toEqual([900])
        await settle([item], [50], id)
        expect(await peek([item])).toEqual([850])
        await settle([item], [-10_000], id)
        expect(await peek([item])).toEqual([1000])
      })

      test('a counter charged past its limit refuses everything after, even cost 0', async () => {
        const item = counter(100, 90, Date.now() + 3_600_000)
        const id = leaseId()
        expect((await admit([item], id)).ok).toBe(true)
        await settle([item], [25], id)
        expect(await peek([item])).toEqual([-15])
        expect(await admit([withCost(item, 0)])).toMatchObject({ ok: false, failed: 0 })
      })

      test('settling refunds, charges and releases over all items of one request at once', async () => {
        const until = Date.now() + 3_600_000
        const items = [bucket(1000, 1, 400), counter(5000, 400, until), lease(1, 60_000), bucket(10, 1, 1)]
        const id = leaseId()
        expect((await admit(items, id)).ok).toBe(true)
        await settle(items, [-250, -250, 0, 0], id)
        expect((await peek(items)).map((r) => Math.round(r))).toEqual([850, 4850, 1, 9])
      })

      test('a zero delta leaves buckets and counters as they are', async () => {
        const items = [bucket(1000, 1, 400), counter(5000, 400, Date.now() + 3_600_000)]
        const id = leaseId()
        expect((await admit(items, id)).ok).toBe(true)
        await settle(items, [0, 0], id)
        expect((await peek(items)).map((r) => Math.round(r))).toEqual([600, 4600])
      })
    })

    test('a settlement over 10,000 distinct keys goes through whole (one script call may carry more keys than Lua unpacks at once)', async () => {
      const items = Array.from({ length: 10_000 }, () => counter(1000, 0, Date.now() + 3_600_000))
      await settle(items, items.map(() => 7), leaseId())
      const left = await peek([items[0]!, items[4_999]!, items[9_999]!])
      expect(left).toEqual([993, 993, 993])
    })

    describe('peek', () => {
      test('unknown items are full and peeking takes nothing', async () => {
        const items = [bucket(7, 1, 1), counter(9, 1, Date.now() + 60_000), lease(4, 60_000)]
        expect(await peek(items)).toEqual([7, 9, 4])
        expect(await peek(items)).toEqual([7, 9, 4])
      })

      test('no items: no answer needed', async () => {
        expect(await peek([])).toEqual([])
      })
    })

    describe('reset', () => {
      test('refills buckets and zeroes counters, leaves held leases it is not given, and admits again at once', async () => {
        const items = [bucket(2, 1, 1), counter(5, 5, Date.now() + 60_000), lease(1, 60_000)]
        const held = leaseId()
        expect((await admit(items, held)).ok).toBe(true)
        // Bucket at 1 of 2, budget spent, the one slot taken.
        expect(await peek(items)).toEqual([expect.closeTo(1, 1), 0, 0])
        await store.reset(items.slice(0, 2))
        expect(await peek(items)).toEqual([2, 5, 0])
        // The lease still holds its slot: only its own settlement frees it.
        const refused = await admit(items)
        expect(refused.ok).toBe(false)
        expect(refused.failed).toBe(2)
        await settle(items, [0, 0, 0], held)
        expect((await admit(items)).ok).toBe(true)
      })

      test('a lease set it is given is emptied: the slots are free at once, the release of a lease it dropped changes nothing, nor does a renewal bring it back', async () => {
        const slot = lease(2, 60_000)
        const [a, b] = [leaseId(), leaseId()]
        expect((await admit([slot], a)).ok).toBe(true)
        expect((await admit([slot], b)).ok).toBe(true)
        expect((await admit([slot])).ok).toBe(false)
        await store.reset([slot])
        expect(await peek([slot])).toEqual([2])
        await store.renew([{ items: [slot], leaseId: a }], Date.now())
        const c = leaseId()
        expect((await admit([slot], c)).ok).toBe(true)
        await settle([slot], [0], a)
        await store.release([slot], b)
        // c still holds its slot; one is left.
        expect(await peek([slot])).toEqual([1])
      })

      test('a settlement of a request that ended before the reset does not reach the fresh counts', async () => {
        const items = [counter(100, 60, Date.now() + 60_000)]
        const id = leaseId()
        expect((await admit(items, id)).ok).toBe(true)
        // Used 90 of the 60 reserved: the settlement charges 30 more, then the reset forgets all 90.
        void settle(items, [30], id)
        await store.reset(items)
        expect(await peek(items)).toEqual([100])
      })

      test('a counter reset while requests run: their refunds stay out of the fresh count, what they used beyond the reservation goes in; one admitted after it settles as usual', async () => {
        const c = counter(1000, 264, null)
        const [a, x, b] = [leaseId(), leaseId(), leaseId()]
        const first = await admit([c], a)
        const second = await admit([withCost(c, 50)], x)
        expect(first.epoch).toBe(second.epoch)
        await store.reset([c])
        const after = await admit([withCost(c, 107)], b)
        expect(after.ok).toBe(true)
        expect(after.epoch).toBeGreaterThan(first.epoch)
        // Together (summed where the store sums): a used 23 of its 264, x 80 of its 50, b 100 of its 107.
        await Promise.all([settle([c], [23 - 264], a, first.epoch), settle([c], [80 - 50], x, second.epoch), settle([c], [100 - 107], b, after.epoch)])
        expect(await peek([c])).toEqual([1000 - 100 - 30])
        // A second reset: b's epoch is behind now too.
        const d = leaseId()
        const fourth = await admit([withCost(c, 40)], d)
        await store.reset([c])
        await settle([c], [-40], d, fourth.epoch)
        expect(await peek([c])).toEqual([1000])
      })

      test('resetting items never used, or no items, is harmless', async () => {
        const items = [bucket(3, 1, 1), counter(4, 1, null)]
        await store.reset(items)
        await store.reset([])
        expect(await peek(items)).toEqual([3, 4])
      })
    })

    describe('concurrency', () => {
      test('100 simultaneous admissions on a bucket of 30 admit exactly 30', async () => {
        const item = bucket(30, 1, 1)
        const outcomes = await Promise.all(Array.from({ length: 100 }, () => admit([item])))
        expect(outcomes.filter((o) => o.ok)).toHaveLength(30)
      })

      test('simultaneous admissions over shared and own items never overdraw the shared one', async () => {
        const shared = counter(1000, 100, Date.now() + 3_600_000)
        const outcomes = await Promise.all(Array.from({ length: 25 }, () => admit([bucket(5, 1, 1), shared, lease(1, 60_000)])))
        expect(outcomes.filter((o) => o.ok)).toHaveLength(10)
        expect(await peek([shared])).toEqual([0])
      })
    })
  })
}
