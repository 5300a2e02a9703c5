/**
 * The Lua scripts: each *_SHA constant is the SHA-1 of its script (recomputed here, so an
 * edited script with a stale SHA fails), and the store still works when Redis has forgotten
 * them (SCRIPT FLUSH: EVALSHA answers NOSCRIPT, the store falls back to EVAL once).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { Redis } from 'ioredis'
import { deleteTaggedKeys } from '../../test/support/redis-procs.ts'
import { redisUrlForTests, uniqueTestName } from '../../test/support/services.ts'
import * as lua from './lua.ts'
import type { Item } from './plan.ts'
import { RedisStore } from './redis-store.ts'
import type { AdmitOutcome } from './store.ts'
import { eventually } from '../../test/support/quota.ts'
import { IoredisConnection, TimedOutError, type ScriptArg, type ScriptConnection } from './connection.ts'

const sha1 = (text: string): string => new Bun.CryptoHasher('sha1').update(text).digest('hex')

const SCRIPTS = [
  ['BATCH', lua.BATCH_SCRIPT, lua.BATCH_SHA],
  ['PEEK', lua.PEEK_SCRIPT, lua.PEEK_SHA],
  ['RENEW', lua.RENEW_SCRIPT, lua.RENEW_SHA],
  ['RESET', lua.RESET_SCRIPT, lua.RESET_SHA],
] as const

describe('script constants', () => {
  for (const [name, script, sha] of SCRIPTS) {
    test(`${name}_SHA is the SHA-1 of ${name}_SCRIPT`, () => {
      expect(sha).toMatch(/^[0-9a-f]{40}$/)
      expect(sha1(script)).toBe(sha)
    })
  }

  test('every exported *_SCRIPT has a matching *_SHA and is covered above', () => {
    const names = Object.keys(lua).filter((k) => k.endsWith('_SCRIPT')).sort()
    expect(names).toEqual(SCRIPTS.map(([name]) => `${name}_SCRIPT`).sort())
    for (const name of names) expect(Object.keys(lua)).toContain(name.replace(/_SCRIPT$/, '_SHA'))
  })
})

const redisUrl = await redisUrlForTests('plugins/quota/lua.test.ts')

describe.skipIf(redisUrl === null)('against Redis', () => {
  const tag = uniqueTestName('lua')
  let client: Redis
  let store: RedisStore

  beforeAll(() => {
    client = new Redis(redisUrl!, { enableAutoPipelining: true, maxRetriesPerRequest: 1 })
    store = new RedisStore(new IoredisConnection(client))
  })
  afterAll(async () => {
    client.disconnect()
    await deleteTaggedKeys(redisUrl!, tag)
  })

  const items = (name: string): Item[] => [
    { kind: 'bucket', scope: 'key', id: 'k', measure: 'requests', key: `{${tag}}:${name}:rpm`, limit: 2, rate: 2 / 60_000, cost: 1, until: null },
    { kind: 'counter', scope: 'key', id: 'k', measure: 'budget_tokens', key: `{${tag}}:${name}:bt`, limit: 100, rate: 0, cost: 10, until: Date.now() + 60_000 },
    { kind: 'lease', scope: 'key', id: 'k', measure: 'parallel', key: `{${tag}}:${name}:par`, limit: 5, rate: 0, cost: 1, until: 60_000 },
  ]

  test('Redis computes the same SHAs (SCRIPT LOAD answers the constant)', async () => {
    for (const [, script, sha] of SCRIPTS) expect(String(await client.script('LOAD', script))).toBe(sha)
  })

  test('after SCRIPT FLUSH, admit, settle and peek still work (NOSCRIPT → EVAL), and the scripts are cached again', async () => {
    await client.script('FLUSH')
    const exists = async () => ((await client.script('EXISTS', lua.BATCH_SHA, lua.PEEK_SHA)) as number[]).map(Number)
    expect(await exists()).toEqual([0, 0])

    const plan = items('flushed')
    const first = await store.admit(plan, 'req_1', Date.now())
    expect(first.ok).toBe(true)
    expect(first.remaining.map(Math.round)).toEqual([1, 90, 4])
    await store.settle(plan, [0, -5, 0], 'req_1', Date.now())
    expect((await store.peek(plan, Date.now())).map(Math.round)).toEqual([1, 95, 5])
    // EVAL caches the script under its SHA, so the next EVALSHA hits.
    expect(await exists()).toEqual([1, 1])
    expect((await store.admit(plan, 'req_2', Date.now())).ok).toBe(true)
    expect((await store.admit(plan, 'req_3', Date.now())).ok).toBe(false)
  })

  test('an admission whose call timed out but ran after all (its reply came late) is given back whole: requests, tokens and its lease', async () => {
    await client.script('LOAD', lua.BATCH_SCRIPT)
    const inner = new IoredisConnection(client)
    let calls = 0
    // The first call reaches Redis and runs, but its caller is told it timed out, with the reply to come.
    const lateFirst: ScriptConnection = {
      evalsha: (sha, args) => {
        const reply = inner.evalsha(sha, args)
        return calls++ === 0 ? Promise.reject(new TimedOutError('Redis did not answer EVALSHA in time', reply)) : reply
      },
      eval: (script, args) => inner.eval(script, args),
      zrem: (key, member) => inner.zrem(key, member),
      close: () => {},
    }
    const late = new RedisStore(lateFirst, { settleWaitMs: 0 })
    const plan = items('late-reply')
    await expect(late.admit(plan, 'req_late', Date.now())).rejects.toBeInstanceOf(TimedOutError)
    const given = await eventually(async () => {
      const left = (await store.peek(plan, Date.now())).map(Math.round)
      return left[1] === 100 ? left : undefined
    }, 2000, 'what the late admission took to come back')
    expect(given).toEqual([2, 100, 5])
  })

  test('concurrent first calls after a flush (auto-pipelined together) all fall back and all succeed', async () => {
    await client.script('FLUSH')
    const plan = items('flushed-concurrent')
    const outcomes = await Promise.all(Array.from({ length: 20 }, (_, i) => store.admit(plan, `req_c${i}`, Date.now())))
    // The bucket admits 2, the rest are refused by it; none throws.
    expect(outcomes.filter((o) => o.ok)).toHaveLength(2)
    expect(outcomes.filter((o) => !o.ok).every((o) => o.failed === 0)).toBe(true)
  })

  test('an error other than NOSCRIPT is not retried by EVAL: it reaches the caller', async () => {
    const broken = items('wrongtype')
    // A lease set that is not a sorted set: ZREMRANGEBYSCORE fails with WRONGTYPE.
    await client.set(broken[2]!.key, 'not a sorted set')
    await expect(store.admit(broken, 'req_w', Date.now())).rejects.toThrow(/WRONGTYPE/)
  })

  test('admissions of one turn share a script call, and one failing request does not fail the others in it', async () => {
    const broken = items('wrongtype-batch')
    await client.set(broken[2]!.key, 'not a sorted set')
    const good = items('good-batch')
    // Without a lease item a request runs outside pcall (nothing in it can fail); it still gets its answer.
    const noLease = items('no-lease-batch').slice(0, 2)
    const [a, b, c, d] = await Promise.allSettled([
      store.admit(good, 'req_g1', Date.now()),
      store.admit(broken, 'req_b1', Date.now()),
      store.admit(good, 'req_g2', Date.now()),
      store.admit(noLease, 'req_n1', Date.now()),
    ])
    expect(d).toMatchObject({ status: 'fulfilled', value: { ok: true } })
    expect((d as PromiseFulfilledResult<{ remaining: number[] }>).value.remaining.map(Math.round)).toEqual([1, 90])
    expect(a).toMatchObject({ status: 'fulfilled', value: { ok: true } })
    expect(b.status).toBe('rejected')
    expect(String((b as PromiseRejectedResult).reason)).toMatch(/WRONGTYPE/)
    // The later request in the same call saw what the earlier one took.
    expect(c).toMatchObject({ status: 'fulfilled', value: { ok: true } })
    expect((c as PromiseFulfilledResult<{ remaining: number[] }>).value.remaining.map(Math.round)).toEqual([0, 80, 3])
    // The broken request took nothing from its bucket.
    expect(await client.get(broken[0]!.key)).toBeNull()
  })

  test('settlements and admissions of one turn share one script call, settlements first', async () => {
    const plan = items('shared-call')
    expect((await store.admit(plan, 'req_s1', Date.now())).ok).toBe(true)
    expect((await store.admit(plan, 'req_s2', Date.now())).ok).toBe(true)
    // The request bucket (2 a minute) is empty now: alone, a third admission is refused.
    const calls = async () => Number(/cmdstat_evalsha:calls=(\d+)/.exec(await client.info('commandstats'))?.[1] ?? 0)
    const before = await calls()
    // In one turn: req_s1 settles, giving a request and 10 tokens back, and req_s3 asks for one.
    const [, third] = await Promise.all([store.settle(plan, [-1, -10, 0], 'req_s1', Date.now()), store.admit(plan, 'req_s3', Date.now())])
    expect((await calls()) - before).toBe(1)
    expect(third.ok).toBe(true)
    // The budget saw the refund before the admission: 100 - 3 × 10 + 10; req_s1's lease is gone.
    expect(third.remaining.map(Math.round)).toEqual([0, 80, 3])
  })

  /**
   * A store over `n` recording connections to the real Redis (each script call noted with its
   * connection and arguments), settlements waiting `settleWaitMs` for an admission.
   */
  const recordingStore = (n = 1, settleWaitMs?: number, slowMs = 0) => {
    const sent: { connection: number; args: ScriptArg[] }[] = []
    /** Calls not answered yet when the store closed each connection. */
    const openAtClose: number[] = []
    let unanswered = 0
    const connections = Array.from({ length: n }, (_, connection): ScriptConnection => {
      const inner = new IoredisConnection(client)
      // Every connection but the first (where peeks go) can be slow: its calls reach Redis `slowMs` late.
      const call = async <T>(args: readonly ScriptArg[], run: () => Promise<T>): Promise<T> => {
        sent.push({ connection, args: [...args] })
        unanswered++
        try {
          if (connection > 0 && slowMs > 0) await Bun.sleep(slowMs)
          return await run()
        } finally {
          unanswered--
        }
      }
      return {
        evalsha: (sha, args) => call(args, () => inner.evalsha(sha, args)),
        eval: (script, args) => call(args, () => inner.eval(script, args)),
        zrem: (key, member) => inner.zrem(key, member),
          close: () => void openAtClose.push(unanswered),
      }
    })
    return { sent, openAtClose, recorded: new RedisStore(connections, settleWaitMs === undefined ? {} : { settleWaitMs }) }
  }
  /** Two admissions of `plan` (its request bucket holds 2 a minute): the bucket is empty after them. */
  const drain = async (store: RedisStore, plan: Item[], ids: string[]) => {
    for (const id of ids) expect((await store.admit(plan, id, Date.now())).ok).toBe(true)
  }
  /**
   * A recording store (`n` connections, settlements waiting `settleWaitMs`) whose plan `name` has
   * had two admissions; `refund()` settles the first: a request, 10 tokens and its lease back.
   */
  const afterTwo = async (name: string, n: number, settleWaitMs: number, slowMs = 0) => {
    const { sent, openAtClose, recorded } = recordingStore(n, settleWaitMs, slowMs)
    const plan = items(name)
    await drain(recorded, plan, [`req_${name}_1`, `req_${name}_2`])
    const refund = () => recorded.settle(plan, [-1, -10, 0], `req_${name}_1`, Date.now())
    /** An id whose admissions with a lease go to `connection` (found by trying: the choice is the store's). */
    const idOn = async (connection: number): Promise<string> => {
      for (let i = 0; i < 100; i++) {
        const before = sent.length
        await recorded.admit(items(`${name}-probe-${i}`), `req_${name}_p${i}`, Date.now())
        if (sent[before]!.connection === connection) return `req_${name}_p${i}`
      }
      throw new Error(`no id found for connection ${connection}`)
    }
    /** The refund, sent (not answered) in the call of an admission of another plan on connection 1. */
    const refundInFlight = async () => {
      const other = await idOn(1)
      const settling = refund()
      const admitting = recorded.admit(items(`${name}-other`), other, Date.now())
      // The batch leaves at the end of this turn; the slow connection holds it from Redis meanwhile.
      await new Promise((resolve) => setImmediate(resolve))
      // In an object: an async function returning the promise itself would wait for it.
      return { answered: Promise.all([settling, admitting]) }
    }
    return { sent, openAtClose, recorded, plan, refund, refundInFlight }
  }
  /** A third admission after the first request's refund (a request, 10 tokens, its lease): it passes only if the refund ran first. */
  const expectRefundSeen = (third: AdmitOutcome) => {
    expect(third.ok).toBe(true)
    // The request bucket was empty; the budget is 100 - 3 × 10 + 10; two leases held.
    expect(third.remaining.map(Math.round)).toEqual([0, 80, 3])
  }

  describe('which connection an admission takes', () => {
    test("a turn's admissions without leases share one script call over two connections, and the next turn's go on the other", async () => {
      const { sent, recorded } = recordingStore(2)
      const admitTurn = (turn: number) =>
        Promise.all(Array.from({ length: 8 }, (_, i) => recorded.admit(items(`turn-${turn}-${i}`).slice(0, 2), `req_turn_${turn}_${i}`, Date.now())))
      const first = await admitTurn(1)
      const second = await admitTurn(2)
      for (const outcome of [...first, ...second]) expect(outcome.ok).toBe(true)
      expect(sent).toHaveLength(2)
      expect(sent[0]!.connection).not.toBe(sent[1]!.connection)
    })

    test('an admission that takes a lease keeps to the connection of its request id, whatever the turn', async () => {
      const { sent, recorded } = recordingStore(2)
      // A request bucket with room for every turn's admission.
      const plan = items('lease-conn').map((it) => (it.kind === 'bucket' ? { ...it, limit: 100, rate: 100 / 60_000 } : it))
      // Admissions of other requests in between move the turn on; a lease's own connection does not move.
      const connections: number[] = []
      for (let turn = 0; turn < 4; turn++) {
        await recorded.admit(items(`lease-conn-other-${turn}`).slice(0, 1), `req_other_${turn}`, Date.now())
        const before = sent.length
        expect((await recorded.admit(plan, 'req_lease_same', Date.now())).ok).toBe(true)
        connections.push(sent[before]!.connection)
        await recorded.settle(plan, [0, 0, 0], 'req_lease_same', Date.now())
      }
      expect(new Set(connections).size).toBe(1)
    })
  })

  describe('settlements wait for the next admission', () => {
    test("a settlement waits, then rides in the next admission's script call, ahead of it", async () => {
      const { sent, recorded, plan, refund } = await afterTwo('ride', 1, 60_000)
      expect(sent).toHaveLength(2)
      let settled = false
      const settling = refund().then(() => (settled = true))
      await Bun.sleep(20)
      // Nothing was sent for it yet.
      expect(sent).toHaveLength(2)
      expect(settled).toBe(false)
      expectRefundSeen(await recorded.admit(plan, 'req_ride_3', Date.now()))
      await settling
      expect(sent).toHaveLength(3)
    })

    test('an admission on the other connection takes it too', async () => {
      const { sent, recorded, plan, refund } = await afterTwo('across', 2, 60_000)
      const settledOn = sent[0]!.connection
      // An id whose admissions with a lease go to the other connection (found by trying: the choice is the store's).
      let other = ''
      for (let i = 0; other === '' && i < 100; i++) {
        const before = sent.length
        await recorded.admit(items(`probe-${i}`), `req_p${i}`, Date.now())
        if (sent[before]!.connection !== settledOn) other = `req_p${i}`
      }
      expect(other).not.toBe('')
      const before = sent.length
      const settling = refund()
      expectRefundSeen(await recorded.admit(plan, other, Date.now()))
      await settling
      expect(sent.slice(before).map((s) => s.connection)).toEqual([1 - settledOn])
    })

    test('with no admission, it goes alone once the wait is over', async () => {
      const { sent, plan, refund } = await afterTwo('alone', 2, 30)
      const start = Date.now()
      await refund()
      expect(Date.now() - start).toBeGreaterThanOrEqual(25)
      expect(sent).toHaveLength(3)
      const left = await store.peek(plan, Date.now())
      expect(left.map(Math.floor)).toEqual([1, 90, 4])
    })

    test('a peek sends what waits first: remaining counts every request that ended', async () => {
      const { sent, recorded, plan, refund } = await afterTwo('peek', 2, 60_000)
      const settling = refund()
      expect((await recorded.peek(plan, Date.now())).map(Math.floor)).toEqual([1, 90, 4])
      await settling
      // The two admissions, the settlement, then the peek.
      expect(sent).toHaveLength(4)
    })

    test('a peek waits for a settlement already on its way over another connection', async () => {
      const { recorded, plan, refundInFlight } = await afterTwo('peek-slow', 2, 60_000, 50)
      const { answered } = await refundInFlight()
      expect((await recorded.peek(plan, Date.now())).map(Math.floor)).toEqual([1, 90, 4])
      await answered
    })

    test('close() waits for a settlement on its way before it closes the connections', async () => {
      const { openAtClose, recorded, plan, refundInFlight } = await afterTwo('close-slow', 2, 60_000, 50)
      const { answered } = await refundInFlight()
      await recorded.close()
      expect(openAtClose).toEqual([0, 0])
      await answered
      expect((await store.peek(plan, Date.now())).map(Math.floor)).toEqual([1, 90, 4])
    })

    test('close() sends what waits and lets it answer before closing', async () => {
      const { sent, recorded, plan, refund } = await afterTwo('close', 1, 60_000)
      const settling = refund()
      await recorded.close()
      await settling
      expect(sent).toHaveLength(3)
      expect((await store.peek(plan, Date.now())).map(Math.floor)).toEqual([1, 90, 4])
    })
  })

  describe('settlements without leases are summed per key', () => {
    /** A plan without leases: a token bucket of 100 and a budget of 100, each request taking 10 of both. */
    const plain = (name: string): Item[] => [
      { kind: 'bucket', scope: 'key', id: 'k', measure: 'tokens', key: `{${tag}}:${name}:tpm`, limit: 100, rate: 100 / 3_600_000, cost: 10, until: null },
      { kind: 'counter', scope: 'key', id: 'k', measure: 'budget_tokens', key: `{${tag}}:${name}:bt`, limit: 100, rate: 0, cost: 10, until: Date.now() + 60_000 },
    ]
    /** The counts at the head of a batch's pack: settlements, admissions (each below 128: one byte after the 5-byte array header). */
    const counts = (args: ScriptArg[]) => {
      const pack = args[args.length - 1] as Buffer
      return [pack[5], pack[6]]
    }

    test("one turn's settlements go as one, and the next admission sees every one of them", async () => {
      const { sent, recorded } = recordingStore(1, 60_000)
      const plan = plain('summed')
      for (let i = 0; i < 5; i++) expect((await recorded.admit(plan, `req_sum${i}`, Date.now())).ok).toBe(true)
      const before = sent.length
      // Each of the five used 4 of the 10 tokens it reserved.
      const settled = Array.from({ length: 5 }, (_, i) => recorded.settle(plan, [-6, -6], `req_sum${i}`, Date.now()))
      const sixth = await recorded.admit(plan, 'req_sum5', Date.now())
      await Promise.all(settled)
      expect(sent.length - before).toBe(1)
      expect(counts(sent[before]!.args)).toEqual([1, 1])
      // KEYS: the reset epoch, then the two keys once, shared by the sum and the admission after it.
      expect(sent[before]!.args[0]).toBe(3)
      // 100 - 5 × 10 + 5 × 6 - 10 of each.
      expect(sixth.ok).toBe(true)
      expect(sixth.remaining.map(Math.round)).toEqual([70, 70])
    })

    test('the sum leaves what the settlements leave one by one, charges first (a refund stops at a full bucket, a counter at 0)', async () => {
      const { recorded } = recordingStore(1, 60_000)
      const summed = plain('sum-order-a')
      const single = plain('sum-order-b')
      for (const plan of [summed, single]) for (let i = 0; i < 3; i++) expect((await recorded.admit(plan, `req_o${i}`, Date.now())).ok).toBe(true)
      // Each plan: 70 tokens and 70 of the budget left. The refunds (-30, -50) would take both past full
      // (and the counter below 0) without the charges (+20, +10).
      const deltas = [[-30, -30], [20, 20], [-50, -50], [10, 10]]
      await Promise.all(deltas.map((d, i) => recorded.settle(summed, d, `req_a${i}`, Date.now())).concat(recorded.peek(summed, Date.now()).then(() => undefined)))
      for (const d of [deltas[1]!, deltas[3]!, deltas[0]!, deltas[2]!]) {
        const settling = recorded.settle(single, d, 'req_b', Date.now())
        await recorded.peek(single, Date.now())
        await settling
      }
      const [a, b] = await Promise.all([store.peek(summed, Date.now()), store.peek(single, Date.now())])
      expect(a.map(Math.round)).toEqual(b.map(Math.round))
      expect(a.map(Math.round)).toEqual([100, 100])
    })

    test("a bucket's deltas that cancel out send nothing, their promise kept; a counter's are sent, as its charge counts alone where it was reset meanwhile", async () => {
      const { sent, recorded } = recordingStore(1, 20)
      const plan = plain('cancel')
      expect((await recorded.admit(plan, 'req_c0', Date.now())).ok).toBe(true)
      const before = sent.length
      await Promise.all([recorded.settle(plan.slice(0, 1), [5], 'req_c1', Date.now()), recorded.settle(plan.slice(0, 1), [-5], 'req_c2', Date.now())])
      expect(sent.length).toBe(before)
      await Promise.all([recorded.settle(plan.slice(1), [5], 'req_c3', Date.now(), 0), recorded.settle(plan.slice(1), [-5], 'req_c4', Date.now(), 0)])
      expect(sent.length).toBe(before + 1)
      // The reset epoch and the counter only.
      expect(sent[before]!.args.slice(0, 3)).toEqual([2, `{${tag}}:reset-epoch`, plan[1]!.key])
      expect((await store.peek(plan, Date.now())).map(Math.round)).toEqual([90, 90])
    })

    test('past 256 keys the sum goes in parts of one call, and its promise waits for every part', async () => {
      const { sent, recorded } = recordingStore(1, 1)
      const plans = Array.from({ length: 300 }, (_, i) => plain(`parts-${i}`).slice(1))
      await Promise.all(plans.map((plan, i) => recorded.settle(plan, [3], `req_parts${i}`, Date.now())))
      expect(sent).toHaveLength(1)
      expect(counts(sent[0]!.args)).toEqual([2, 0])
      const values = await client.mget(...plans.map((plan) => plan[0]!.key))
      expect(values.every((v) => v === '3')).toBe(true)
    })
  })

  test("consecutive requests of one plan name their keys once in KEYS, and each request still sees the ones before", async () => {
    const { sent, recorded } = recordingStore()
    const shared = items('distinct').map((it, i) => (i === 0 ? { ...it, limit: 100, rate: 100 / 60_000 } : it))
    const own = items('distinct-other').slice(0, 1)
    const outcomes = await Promise.all([
      ...Array.from({ length: 5 }, (_, i) => recorded.admit(shared, `req_d${i}`, Date.now())),
      recorded.admit(own, 'req_o1', Date.now()),
    ])
    expect(sent).toHaveLength(1)
    const keys = sent[0]!.args.slice(1, 1 + Number(sent[0]!.args[0]))
    // The reset epoch first, read once for the whole batch.
    expect(keys).toEqual([`{${tag}}:reset-epoch`, ...shared.map((it) => it.key), own[0]!.key])
    // In order: each admission took 10 tokens and a lease after the one before it.
    expect(outcomes.slice(0, 5).map((o) => [o.ok, Math.round(o.remaining[1]!), o.remaining[2]])).toEqual([
      [true, 90, 4],
      [true, 80, 3],
      [true, 70, 2],
      [true, 60, 1],
      [true, 50, 0],
    ])
    expect(outcomes[5]).toMatchObject({ ok: true })
  })

  test('a key named twice in one batch (at another position in the next request) is one bucket: the second request sees what the first took', async () => {
    const { sent, recorded } = recordingStore()
    const [rpm, budget] = items('twice')
    // The same two keys, in the other order: the second request names them again.
    const first = [rpm!, budget!]
    const second = [budget!, rpm!]
    const third = [rpm!, budget!]
    const outcomes = await Promise.all([
      recorded.admit(first, 'req_t1', Date.now()),
      recorded.admit(second, 'req_t2', Date.now()),
      recorded.admit(third, 'req_t3', Date.now()),
    ])
    expect(sent).toHaveLength(1)
    // The reset epoch, then three times the bucket and the budget.
    expect(Number(sent[0]!.args[0])).toBe(7)
    // rpm holds 2: the first and second take one each, the third is refused on it (its item 0).
    expect(outcomes.map((o) => o.ok)).toEqual([true, true, false])
    expect(outcomes[2]).toMatchObject({ failed: 0 })
    expect(Math.round(outcomes[1]!.remaining[0]!)).toBe(80)
    expect(Math.round(outcomes[1]!.remaining[1]!)).toBe(0)
  })

  test('keys expire: a bucket two minutes after its last write (longer while in debt), a counter a day after its period, a lease set after its lifetime', async () => {
    const plan = items('expiry')
    expect((await store.admit(plan, 'req_e1', Date.now())).ok).toBe(true)
    const bucketTtl = await client.pttl(plan[0]!.key)
    // Half a bucket of 2 per minute is 30 s from full: kept 120 s, never less than the time to full.
    expect(bucketTtl).toBeGreaterThan(115_000)
    expect(bucketTtl).toBeLessThanOrEqual(120_000)
    expect(Number(await client.call('PEXPIRETIME', plan[1]!.key))).toBe(plan[1]!.until! + 86_400_000)
    const leaseTtl = await client.pttl(plan[2]!.key)
    expect(leaseTtl).toBeGreaterThan(55_000)
    expect(leaseTtl).toBeLessThanOrEqual(61_000)
    // Charged 10 more than the bucket held: 11 requests from full at 2 a minute, 330 s.
    await store.settle(plan, [10, 0, 0], 'req_e1', Date.now())
    const inDebt = await client.pttl(plan[0]!.key)
    expect(inDebt).toBeGreaterThan(320_000)
    expect(inDebt).toBeLessThanOrEqual(331_000)
  })

  test('a bucket holds when it is full again in whole ms, a NUL, then that time exactly and its rate (two little-endian doubles): the version before this one reads the whole ms from it, as from its own plain number', async () => {
    const [rpm] = items('format')
    const before = Date.now()
    expect((await store.admit([rpm!], 'req_f1', Date.now())).ok).toBe(true)
    const value = (await client.getBuffer(rpm!.key))!
    const nul = value.indexOf(0)
    expect(value.length).toBe(nul + 17)
    const whole = Number(value.subarray(0, nul).toString())
    const full = value.readDoubleLE(nul + 1)
    expect(value.readDoubleLE(nul + 9)).toBe(rpm!.rate)
    expect(whole).toBe(Math.floor(full))
    // One request of 2 a minute: full again 30 s after it was taken.
    expect(full).toBeGreaterThanOrEqual(before + 30_000 - 5)
    expect(full).toBeLessThanOrEqual(Date.now() + 30_000 + 5)
    // Lua 5.1's tonumber stops at the NUL: what an older script reads.
    expect(Number(await client.eval("return tonumber(redis.call('GET', KEYS[1]))", 1, rpm!.key))).toBe(whole)
  })

  test('a reset marks each counter with a new epoch from one sequence per hash tag, kept as long as the counter; buckets and lease sets are deleted; admissions answer the epoch they ran in', async () => {
    const plan = items('reset-marks')
    const total = { ...plan[1]!, key: `{${tag}}:reset-marks:total`, until: null }
    expect((await store.admit([...plan, total], 'req_rm', Date.now())).ok).toBe(true)
    const before = Number((await client.get(`{${tag}}:reset-epoch`)) ?? 0)
    await store.reset([...plan, total])
    expect(await client.exists(plan[0]!.key, plan[1]!.key, plan[2]!.key, total.key)).toBe(0)
    expect(Number(await client.get(`${plan[1]!.key}:reset`))).toBe(before + 1)
    expect(Number(await client.call('PEXPIRETIME', `${plan[1]!.key}:reset`))).toBe(plan[1]!.until! + 86_400_000)
    expect(Number(await client.get(`${total.key}:reset`))).toBe(before + 1)
    expect(await client.pttl(`${total.key}:reset`)).toBe(-1)
    expect((await store.admit([plan[0]!], 'req_rm2', Date.now())).epoch).toBe(before + 1)
  })

  test('a bucket written as a plain number (by the version before this one, during a rolling deploy) is read at the current rate, and its next write holds its rate', async () => {
    const [rpm] = items('legacy')
    // 2 a minute, full in 30 s: one request missing, as the version before this one wrote it.
    await client.set(rpm!.key, String(Date.now() + 30_000), 'PX', '120000')
    expect(Math.round((await store.peek([rpm!], Date.now()))[0]!)).toBe(1)
    // Raised to 4 a minute before this version wrote it: with no rate of its own it is read at 4, as that version reads it.
    const raised = { ...rpm!, limit: 4, rate: 4 / 60_000 }
    expect(Math.round((await store.peek([raised], Date.now()))[0]!)).toBe(2)
    expect((await store.admit([raised], 'req_legacy', Date.now())).ok).toBe(true)
    const value = (await client.getBuffer(rpm!.key))!
    expect(value.readDoubleLE(value.length - 8)).toBe(raised.rate)
  })
})
