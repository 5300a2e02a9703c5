import { TimedOutError, type ScriptArg, type ScriptConnection } from './connection.ts'
import { KIND_LETTER, hasLease, type Item } from './plan.ts'
import { PackWriter } from './pack.ts'
import { AFTER_EVERY_RESET, type AdmitOutcome, type HeldLeases, type QuotaStore } from './store.ts'
import { BATCH_SCRIPT, BATCH_SHA, PEEK_SCRIPT, PEEK_SHA, RENEW_SCRIPT, RENEW_SHA, RESET_SCRIPT, RESET_SHA } from './lua.ts'

/**
 * The sequence reset epochs come from (see BATCH_SCRIPT): one key per hash tag, so a Cluster finds
 * it in the slot of the keys it goes with. Every quota key begins with its hash tag.
 */
function epochKeyOf(key: string): string {
  const end = key.startsWith('{') ? key.indexOf('}') : -1
  return `${end > 0 ? key.slice(0, end + 1) : ''}:reset-epoch`
}

/** KEYS and ARGV of a PEEK call over `items` (one request): per item kind, limit, rate, an unused 0, until. */
function encodePeek(items: Item[], now: number): (string | number)[] {
  const args: (string | number)[] = [items.length, ...items.map((it) => it.key), items.length, '', now]
  for (const it of items) args.push(KIND_LETTER[it.kind], it.limit, it.rate, 0, it.until ?? -1)
  return args
}

/** Leases a RENEW call carries at most (its KEYS and ARGV are unpacked by Redis, not by Lua). */
const RENEW_CHUNK = 1000

/** A settlement's figures, per item. */
interface Settlement {
  /** Real cost minus reserved. */
  deltas: number[]
  /** The part of the delta that still applies to a counter reset since: what was used beyond the reservation. */
  charges: number[]
  /** The reset epoch the request's admission answered (see AdmitOutcome.epoch). */
  epochs: number[]
}

/** One request's admission (R: its outcome) or settlement (R: void) waiting for its batch. */
interface Pending<R> {
  items: Item[]
  leaseId: string
  now: number
  /** null: an admission, which takes each item's own cost. */
  settlement: Settlement | null
  resolve(reply: R): void
  reject(error: unknown): void
}

/** Each kind's letter (see KIND_LETTER), packed once. */
const KIND_PACKED = {
  bucket: PackWriter.pack([KIND_LETTER.bucket]),
  counter: PackWriter.pack([KIND_LETTER.counter]),
  lease: PackWriter.pack([KIND_LETTER.lease]),
} as const

const NONE_WAITING: readonly Pending<void>[] = []

/** Requests per script call at most (bounds how long one call holds Redis' thread). */
const MAX_BATCH = 64

/** Items of one summed settlement at most (each is a key for Redis to read and write). */
const MAX_SUMMED_ITEMS = 256

/**
 * How long a settlement may wait for an admission to ride with (see RedisStore.settle): long
 * enough that a gateway serving a few hundred requests a second sends one script call per
 * request instead of two, short next to the upstream call it settles.
 */
const SETTLE_WAIT_MS = 5

/**
 * The share of the call timeout kept back from an admission's deadline: an admission Redis begins
 * by then still has its reply back before the caller gives up (a quarter of the default 1 s is
 * 250 ms, against a reply that takes well under 1 ms; the learnt offset errs on the safe side too).
 */
const DEADLINE_MARGIN = 0.25

export interface RedisStoreOptions {
  /** @default SETTLE_WAIT_MS */
  settleWaitMs?: number
  /**
   * How long a call may take before the caller gives up on it. With it, every admission carries a
   * deadline, and one Redis reaches later takes nothing (see BATCH_SCRIPT).
   * @default the shortest timeout of the connections (none: no deadline)
   */
  timeoutMs?: number
}

/** An admission Redis reached after its deadline: it took nothing. */
export class TooLateError extends Error {
  override readonly name = 'TooLateError'
}

/**
 * Redis' clock as seen from this process: the offset of Redis' TIME from performance.now(), learnt
 * from every batch reply. TIME is read when the script begins, before its reply arrives, so
 * (Redis' now − the reply's arrival here) is never more than the true offset: a deadline made
 * from it falls early, never late, by about one round trip. The latest reply is the one believed,
 * so a clock that Redis' host steps is followed after one call. performance.now() is monotonic:
 * this host's clock can step without moving a deadline.
 */
class RedisClock {
  private offset: number | null = null

  constructor(private readonly timeoutMs: number | undefined) {}

  learn(redisNow: number, arrivedAt: number): void {
    if (Number.isFinite(redisNow)) this.offset = redisNow - arrivedAt
  }

  /** The deadline of admissions sent now, in Redis ms; -1 (none) before the first reply or without a timeout. */
  deadline(sentAt: number): number {
    if (this.offset === null || this.timeoutMs === undefined) return -1
    return Math.floor(sentAt + this.offset + this.timeoutMs * (1 - DEADLINE_MARGIN))
  }
}

/** Fields ahead of the items' in each admission's reply: status, failed, wait. */
const ADMIT_HEAD = 3

/**
 * The settlements and admissions of one connection that arrived in the same turn of the event
 * loop, sent as one script call at the end of it: Redis runs them in order (settlements first:
 * they return what ended requests did not use), exactly as it would run them one by one, for a
 * fraction of the per-call cost on both sides.
 */
class Batcher {
  private admits: Pending<AdmitOutcome>[] = []
  private settles: Pending<void>[] = []
  private scheduled = false
  private readonly pack = new PackWriter()
  /** The reset epoch's key of the keys in this batch (all of one hash tag), and the tag's start, in which it was last made. */
  private epochKey = ''
  private epochOf = ''
  /**
   * The keys of the request put last, by item position, and their places in KEYS: a request whose
   * key at a position is the same reuses the place (consecutive requests of one API key share all
   * of theirs). Any other repeat is sent again, which the script does not mind; finding every
   * repeat needs a lookup built per batch, whose garbage at 10,000 keys in use raised peak RSS.
   */
  private readonly lastKeys: string[] = []
  private readonly lastIndex: number[] = []

  constructor(
    private readonly connection: ScriptConnection,
    private readonly run: (client: ScriptConnection, sha: string, script: string, args: ScriptArg[]) => Promise<unknown>,
    /** Takes the store's settlements waiting for an admission to ride with (on any of its connections). */
    private readonly takeWaiting: () => readonly Pending<void>[],
    /** Told of every script call that carries settlements, until it is answered. */
    private readonly track: (sent: Promise<void>) => void,
    private readonly clock: RedisClock,
    /** Gives back what an admission took after the call had timed out (its reply came late). */
    private readonly undo: (items: Item[], leaseId: string, epoch: number) => void,
  ) {}

  /** Admissions wait here for the send at the end of this turn. */
  get gathering(): boolean {
    return this.scheduled
  }

  admit(p: Pending<AdmitOutcome>): void {
    this.admits.push(p)
    this.schedule()
  }

  /** Settlements sent now, with whatever else waits on this connection. */
  settleNow(list: readonly Pending<void>[]): void {
    for (const p of list) this.settles.push(p)
    this.flush()
  }

  private schedule(): void {
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(() => this.flush())
  }

  private flush(): void {
    this.scheduled = false
    // Settlements waiting on any connection go first, in the same call as these admissions: Redis
    // runs them before the admissions, so an admission sees every request this gateway ended.
    if (this.admits.length > 0) for (const p of this.takeWaiting()) this.settles.push(p)
    while (this.settles.length > 0 || this.admits.length > 0) {
      const settles = this.settles.splice(0, MAX_BATCH)
      this.send(settles, this.admits.splice(0, MAX_BATCH - settles.length))
    }
  }

  /** An empty call: its reply tells how Redis' clock stands to ours. */
  probe(): Promise<void> {
    return this.send([], [])
  }

  private send(settles: Pending<void>[], admits: Pending<AdmitOutcome>[]): Promise<void> {
    // KEYS, then one MessagePack argument for the whole batch: a client pays per argument (Bun's
    // client ~0.15 µs each) and Redis makes a Lua string of each; cmsgpack reads numbers as numbers.
    const args: ScriptArg[] = [0]
    const pack = this.pack
    pack.begin()
    pack.number(settles.length)
    pack.number(admits.length)
    pack.number(admits.length > 0 ? this.clock.deadline(performance.now()) : -1)
    this.lastKeys.length = 0
    // KEYS[1]: the reset epoch, read once for the whole batch.
    const first = settles[0]?.items[0] ?? admits[0]?.items[0]
    if (first !== undefined) args.push(this.epochKeyFor(first.key))
    for (const p of settles) this.put(p, args)
    for (const p of admits) this.put(p, args)
    args[0] = args.length - 1
    args.push(pack.finish())
    const sent = this.run(this.connection, BATCH_SHA, BATCH_SCRIPT, args).then(
      (reply) => {
        const replies = reply as (number | string)[]
        this.clock.learn(Number(replies[replies.length - 1]), performance.now())
        settles.forEach((p, r) => (replies[r] === 1 ? p.resolve() : p.reject(new Error('the settlement script failed for this request'))))
        resolveAdmits(admits, replies, settles.length, Number(replies[replies.length - 2]))
      },
      (error: unknown) => {
        for (const p of settles) p.reject(error)
        for (const p of admits) p.reject(error)
        // The caller gave up, but the call may still have run: an admission it then took (Redis
        // began it before its deadline, its reply came after the timeout) is given back.
        if (error instanceof TimedOutError && admits.length > 0) {
          error.late.then((reply) => this.undoLate(admits, reply as (number | string)[], settles.length), () => {})
        }
      },
    )
    if (settles.length > 0) this.track(sent)
    return sent
  }

  private undoLate(admits: Pending<AdmitOutcome>[], replies: (number | string)[], o: number): void {
    const epoch = Number(replies[replies.length - 2])
    for (const p of admits) {
      if (replies[o] === 1) this.undo(p.items, p.leaseId, epoch)
      o += ADMIT_HEAD + p.items.length
    }
  }

  /** The epoch key for a batch whose first key is `key` (made again only when its hash tag changes). */
  private epochKeyFor(key: string): string {
    if (!key.startsWith(this.epochOf) || this.epochOf === '') {
      this.epochKey = epochKeyOf(key)
      this.epochOf = this.epochKey.slice(0, this.epochKey.length - ':reset-epoch'.length)
    }
    return this.epochKey
  }

  /** One request: its keys onto KEYS (unless the request before named them there), its fields into the pack. */
  private put(p: Pending<unknown>, args: ScriptArg[]): void {
    const pack = this.pack
    const lastKeys = this.lastKeys
    const lastIndex = this.lastIndex
    pack.number(p.items.length)
    // The lease id only matters to lease items; '' tells the script there are none (no pcall needed).
    pack.string(hasLease(p.items) ? p.leaseId : '')
    pack.number(p.now)
    for (let i = 0; i < p.items.length; i++) {
      const it = p.items[i]!
      let k: number
      if (lastKeys[i] === it.key) k = lastIndex[i]!
      else {
        k = args.push(it.key) - 1
        lastKeys[i] = it.key
        lastIndex[i] = k
      }
      const settlement = p.settlement
      const value = settlement === null ? it.cost : (settlement.deltas[i] ?? 0)
      pack.raw(KIND_PACKED[it.kind], 1)
      pack.number(k)
      if (settlement !== null && it.kind === 'counter') {
        // What a counter's settlement needs in place of limit and rate (see BATCH_SCRIPT).
        const charge = settlement.charges[i] ?? 0
        pack.number(Number.isFinite(charge) ? charge : 0)
        pack.number(settlement.epochs[i] ?? AFTER_EVERY_RESET)
      } else {
        pack.number(it.limit)
        pack.number(it.rate)
      }
      pack.number(it.until ?? -1)
      // A NaN or an infinity would spoil the script's arithmetic: a delta counts as 0, and a cost as
      // the largest number, which no limit holds (as 0 it was admitted taking nothing).
      pack.number(Number.isFinite(value) ? value : settlement === null ? Number.MAX_VALUE : 0)
    }
  }
}

/**
 * From `o` on: [status, failed, wait ms (-1: never), left × 1000 per item] per request; status -2
 * is an error, its message second; -3 an admission past its deadline, which took nothing. All ran
 * in reset epoch `epoch`.
 */
function resolveAdmits(batch: Pending<AdmitOutcome>[], reply: (number | string)[], o: number, epoch: number): void {
  for (const p of batch) {
    const n = p.items.length
    if (reply[o] === -2) p.reject(new Error(String(reply[o + 1])))
    else if (reply[o] === -3) p.reject(new TooLateError('Redis reached this admission after the gateway had given up on it (Redis was stalled); it took nothing'))
    else {
      const remaining = new Array<number>(n)
      for (let i = 0; i < n; i++) remaining[i] = Number(reply[o + ADMIT_HEAD + i]) / 1000
      const wait = Number(reply[o + 2])
      p.resolve({ ok: reply[o] === 1, failed: Number(reply[o + 1]), waitMs: wait < 0 ? null : wait, remaining, epoch })
    }
    o += ADMIT_HEAD + n
  }
}

/**
 * Quota in Redis: each admission and settlement is atomic, run by a script; those of one turn of
 * the event loop share one script call (see Batcher), one round trip.
 *
 * A settlement waits up to `settleWaitMs` for the next admission on any connection and goes in
 * its call, first: at a few hundred requests a second that is one script call a request instead
 * of two (Redis' CPU a request at 4,000 a second: 62-67 -> 39-42 µs). Nothing is lost by waiting:
 * an admission of this gateway still sees every request it ended, another gateway sees the
 * refund or the charge that much later (after an upstream call of its own length), and peek()
 * and close() send what waits first. Waiting settlements without leases are summed per key and
 * sent as one (Redis' CPU a request at one API key under load: 13-14 -> 11-12 µs).
 *
 * Over more than one connection, one batch can be in Redis while the client reads the replies of
 * another. The admissions of one turn without leases go together on one connection, the next turn's
 * on the next (see turnIndex). An admission that takes a lease keeps to the connection its request
 * id picks, so the release sent after it timed out runs after it; a settlement may go on any (its
 * admission has answered).
 */
export class RedisStore implements QuotaStore {
  readonly name = 'redis' as const
  private readonly clients: readonly ScriptConnection[]
  private readonly batchers: readonly Batcher[]
  /**
   * Settlements not sent yet: the next admission on any connection takes them, or the timer does.
   * Those without leases are summed per reset epoch and key (`sums`) and go as
   * one; a lease is one request's to drop, so a settlement with one waits whole in `waiting`.
   */
  private readonly waiting: Pending<void>[] = []
  private readonly sums = new Map<number, Map<string, { item: Item; delta: number; charge: number }>>()
  /** What the settlements in `sums` were promised: one promise for all of them, settled by their call. */
  private summed: PromiseWithResolvers<void> | null = null
  private waitTimer: ReturnType<typeof setTimeout> | null = null
  private nextAlone = 0
  /** The connection that gathers this turn's admissions without leases (see turnIndex). */
  private turn = 0
  /** Script calls carrying settlements, not answered yet: peek() and close() wait for them. */
  private readonly settling = new Set<Promise<void>>()
  private readonly settleWaitMs: number

  constructor(clients: ScriptConnection | readonly ScriptConnection[], options: RedisStoreOptions = {}) {
    this.settleWaitMs = options.settleWaitMs ?? SETTLE_WAIT_MS
    this.clients = isList(clients) ? clients : [clients]
    if (this.clients.length === 0) throw new Error('RedisStore needs at least one connection')
    let timeoutMs = options.timeoutMs
    for (const c of this.clients) if (c.timeoutMs !== undefined) timeoutMs = Math.min(timeoutMs ?? Infinity, c.timeoutMs)
    const clock = new RedisClock(timeoutMs)
    // What it took is given back as a settlement would: every item's cost, and its leases released.
    const undo = (items: Item[], leaseId: string, epoch: number) => {
      this.settle(items, items.map((it) => -it.cost), leaseId, Date.now(), epoch).catch(() => {})
    }
    const run = (client: ScriptConnection, sha: string, script: string, args: ScriptArg[]) => this.run(client, sha, script, args)
    const takeWaiting = () => this.takeWaiting()
    const track = (sent: Promise<void>) => {
      this.settling.add(sent)
      const forget = () => void this.settling.delete(sent)
      sent.then(forget, forget)
    }
    this.batchers = this.clients.map((c) => new Batcher(c, run, takeWaiting, track, clock, undo))
  }

  /**
   * One empty script call per connection, so the first admissions already carry a deadline (it is
   * learnt from every reply after). Fails as the calls do when Redis is away; the first reply then teaches it.
   */
  async syncClock(): Promise<void> {
    await Promise.all(this.batchers.map((b) => b.probe()))
  }

  /** The connection of a request: a cheap hash of the end of its id (ids end in random characters). */
  private indexFor(leaseId: string): number {
    const n = this.clients.length
    if (n === 1) return 0
    let h = 0
    for (let i = Math.max(0, leaseId.length - 4); i < leaseId.length; i++) h = (h * 31 + leaseId.charCodeAt(i)) >>> 0
    return h % n
  }

  private async run(client: ScriptConnection, sha: string, script: string, args: ScriptArg[]): Promise<unknown> {
    try {
      return await client.evalsha(sha, args)
    } catch (error) {
      if (!(error instanceof Error) || !error.message.includes('NOSCRIPT')) throw error
      return client.eval(script, args)
    }
  }

  admit(items: Item[], leaseId: string, now: number): Promise<AdmitOutcome> {
    const batcher = this.batchers[hasLease(items) ? this.indexFor(leaseId) : this.turnIndex()]!
    return new Promise<AdmitOutcome>((resolve, reject) => {
      batcher.admit({ items, leaseId, now, settlement: null, resolve, reject })
    })
  }

  /**
   * The connection for an admission without leases: the one already gathering this turn's, else
   * the next in turn. A turn's admissions then share one script call, where spread over the
   * connections by request id they took one call per connection (Redis' per-call work paid twice);
   * consecutive turns still take turns, so one batch can be in Redis while the next is built.
   */
  private turnIndex(): number {
    if (this.batchers[this.turn]!.gathering) return this.turn
    this.turn = (this.turn + 1) % this.batchers.length
    return this.turn
  }

  settle(items: Item[], deltas: number[], leaseId: string, now: number, epoch = AFTER_EVERY_RESET): Promise<void> {
    return hasLease(items) ? this.settleWithLeases(items, deltas, leaseId, now, epoch) : this.settleSummed(items, deltas, epoch)
  }

  /**
   * A settlement without leases is added to the sums waiting per key, which go to Redis as one
   * settlement: its keys read and written once, and nothing packed per request. Summing is exact:
   * it is what Redis would hold after running the settlements one by one with every charge before
   * every refund, an order they could have come in (a bucket is never above full, nor a counter
   * below 0, after a charge; so only the refunds can reach either bound, and they do so whether
   * they come one by one or summed). A counter's sum is kept per reset epoch, with its charges
   * apart: where the counter was reset since, the charges alone apply, as they would one by one.
   * Bucket deltas that cancel out are not sent.
   */
  private settleSummed(items: Item[], deltas: number[], epoch: number): Promise<void> {
    // Nearly always one epoch: the one since the last reset.
    let sums = this.sums.get(epoch)
    if (sums === undefined) this.sums.set(epoch, (sums = new Map()))
    let changed = false
    for (let i = 0; i < items.length; i++) {
      const delta = deltas[i] ?? 0
      // A NaN or an infinity would spoil the sum: it counts as 0, as it does in a settlement of its own.
      if (delta === 0 || !Number.isFinite(delta)) continue
      changed = true
      const it = items[i]!
      const sum = sums.get(it.key)
      const charge = delta > 0 ? delta : 0
      // The item itself is the latest request's: a limit changed meanwhile applies from now on.
      if (sum === undefined) sums.set(it.key, { item: it, delta, charge })
      else {
        sum.item = it
        sum.delta += delta
        sum.charge += charge
      }
    }
    // Only what changes goes to Redis: the request bucket never does.
    if (!changed) return Promise.resolve()
    this.waitForAdmission()
    this.summed ??= Promise.withResolvers<void>()
    return this.summed.promise
  }

  private settleWithLeases(items: Item[], deltas: number[], leaseId: string, now: number, epoch: number): Promise<void> {
    // Only what changes goes to Redis (a lease to drop, a bucket or counter to correct): every key
    // costs Redis a read and the client an argument.
    const changed: Item[] = []
    const settlement: Settlement = { deltas: [], charges: [], epochs: [] }
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!
      const delta = deltas[i] ?? 0
      if (it.kind === 'lease' || delta !== 0) {
        changed.push(it)
        settlement.deltas.push(delta)
        settlement.charges.push(delta > 0 ? delta : 0)
        settlement.epochs.push(epoch)
      }
    }
    if (changed.length === 0) return Promise.resolve()
    return new Promise<void>((resolve, reject) => {
      this.waiting.push({ items: changed, leaseId, now, settlement, resolve, reject })
      this.waitForAdmission()
    })
  }

  /** What waits goes with the next admission, or alone once `settleWaitMs` has passed. */
  private waitForAdmission(): void {
    this.waitTimer ??= setTimeout(() => this.sendWaiting(), this.settleWaitMs)
  }

  /** The waiting settlements, now in the caller's hands (the sums as one or a few); their timer is off. */
  private takeWaiting(): readonly Pending<void>[] {
    if (this.waitTimer !== null) {
      clearTimeout(this.waitTimer)
      this.waitTimer = null
    }
    if (this.summed === null) return this.waiting.length === 0 ? NONE_WAITING : this.waiting.splice(0)
    const taken = this.waiting.splice(0)
    const { resolve, reject } = this.summed
    this.summed = null
    const items: Item[] = []
    const all: Settlement = { deltas: [], charges: [], epochs: [] }
    for (const [epoch, sums] of this.sums) {
      for (const sum of sums.values()) {
        // A counter's charges still count where it was reset since, whatever the refunds beside them.
        if (sum.delta === 0 && (sum.item.kind !== 'counter' || sum.charge === 0)) continue
        items.push(sum.item)
        all.deltas.push(sum.delta)
        all.charges.push(sum.charge)
        all.epochs.push(epoch)
      }
    }
    this.sums.clear()
    if (items.length === 0) {
      resolve()
      return taken
    }
    // Past MAX_SUMMED_ITEMS keys, in parts: the promise is kept once every part is answered.
    const parts = Math.ceil(items.length / MAX_SUMMED_ITEMS)
    let open = parts
    const done = () => {
      if (--open === 0) resolve()
    }
    for (let from = 0; from < items.length; from += MAX_SUMMED_ITEMS) {
      const to = from + MAX_SUMMED_ITEMS
      const part = { deltas: all.deltas.slice(from, to), charges: all.charges.slice(from, to), epochs: all.epochs.slice(from, to) }
      taken.push({ items: items.slice(from, to), leaseId: '', now: 0, settlement: part, resolve: done, reject })
    }
    return taken
  }

  /**
   * Settlements that no admission took in time go now, in a call of their own. Any connection
   * will do: the admission each settles has had its answer.
   */
  private sendWaiting(): void {
    const waiting = this.takeWaiting()
    if (waiting.length > 0) this.batchers[this.nextAlone++ % this.batchers.length]!.settleNow(waiting)
  }

  /**
   * Plain ZREMs, not a script: sent right behind a timed-out admission on the same connection,
   * they run after it even if it runs late. A script could answer NOSCRIPT first, and its EVAL
   * retry would then queue behind later commands.
   */
  async release(items: Item[], leaseId: string): Promise<void> {
    const client = this.clients[this.indexFor(leaseId)]!
    const removals: Promise<unknown>[] = []
    for (const it of items) if (it.kind === 'lease') removals.push(client.zrem(it.key, leaseId))
    await Promise.all(removals)
  }

  /** RENEW calls of at most RENEW_CHUNK leases each, on the first connection (any would do: ZADD XX cannot bring back a released lease). */
  async renew(held: readonly HeldLeases[], _now: number): Promise<void> {
    const keys: string[] = []
    const argv: (string | number)[] = []
    const calls: Promise<unknown>[] = []
    const flush = () => {
      if (keys.length === 0) return
      calls.push(this.run(this.clients[0]!, RENEW_SHA, RENEW_SCRIPT, [keys.length, ...keys, ...argv]))
      keys.length = 0
      argv.length = 0
    }
    for (const { items, leaseId } of held) {
      for (const it of items) {
        if (it.kind !== 'lease') continue
        keys.push(it.key)
        argv.push(leaseId, it.until ?? 0)
        if (keys.length === RENEW_CHUNK) flush()
      }
    }
    flush()
    await Promise.all(calls)
  }

  async peek(items: Item[], now: number): Promise<number[]> {
    if (items.length === 0) return []
    // What shows remaining includes every request this gateway has settled: none is still waiting.
    this.sendWaiting()
    if (this.settling.size > 0) await Promise.allSettled([...this.settling])
    const reply = (await this.run(this.clients[0]!, PEEK_SHA, PEEK_SCRIPT, encodePeek(items, now))) as number[]
    return reply.map((left) => left / 1000)
  }

  /**
   * One RESET call: buckets, counters and lease sets deleted, and each counter's reset mark set to
   * a new epoch, kept as long as the counter would be.
   */
  async reset(items: Item[]): Promise<void> {
    if (items.length === 0) return
    const keys: string[] = [epochKeyOf(items[0]!.key)]
    const argv: number[] = []
    for (const it of items) {
      keys.push(it.key)
      argv.push(-2)
      if (it.kind === 'counter') {
        keys.push(`${it.key}:reset`)
        argv.push(it.until === null ? -1 : it.until + 86_400_000)
      }
    }
    // Settlements of requests that ended before the reset are applied before it, not on top of the fresh counts.
    this.sendWaiting()
    if (this.settling.size > 0) await Promise.allSettled([...this.settling])
    await this.run(this.clients[0]!, RESET_SHA, RESET_SCRIPT, [keys.length, ...keys, ...argv])
  }

  async close(): Promise<void> {
    // What ended requests used is not dropped: waiting settlements go out now, and every settlement
    // sent is answered (or fails) before the connections close.
    this.sendWaiting()
    await Promise.allSettled([...this.settling])
    for (const client of this.clients) client.close()
  }
}

function isList(value: ScriptConnection | readonly ScriptConnection[]): value is readonly ScriptConnection[] {
  return Array.isArray(value)
}
