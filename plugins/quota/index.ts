import { Type } from '@sinclair/typebox'
import type { Cluster, Redis } from 'ioredis'
import { watchClusterNodes, watchConnection, type RedisClient } from '../../src/redis.ts'
import type { BudgetRefusal } from '../../src/services.ts'
import { definePlugin, type GatewayRequest, type Identity } from '../../src/plugin.ts'
import { GatewayError } from '../../src/errors.ts'
import { DIAGNOSE, DIAGNOSIS } from '../../src/routes/doctor.ts'
import type { Budget, Limits } from '../../src/limits.ts'
import { priceOf, tierPricing } from '../../src/lib/usage.ts'
import { waitAtMost } from '../../src/lib/within.ts'
import { completionsAsked, maxTokensField, maxTokensOf } from '../../src/providers/shared/openai-format.ts'
import { PendingReleases, settleSurely } from './settle.ts'
import { MICRO, PlanCache, hasLease, planItems, subjectItems, toMicroUsd, withCosts, type Item, type Scope, type Subject, type Subjects } from './plan.ts'
import { MemoryStore, refusingItem, type AdmitOutcome, type HeldLeases, type QuotaStore } from './store.ts'
import { RedisStore, TooLateError } from './redis-store.ts'
import { BudgetRefusals } from './refusals.ts'
import { quotaAdminRoutes, quotaView } from './admin.ts'
import { IoredisConnection, NativeConnection, type ScriptConnection } from './connection.ts'

const Options = Type.Object(
  {
    /** With Redis unreachable: `closed` refuses with 503 quota_backend_unavailable; `open` admits and counts in process. @default "closed" */
    fail_mode: Type.Union([Type.Literal('closed'), Type.Literal('open')], { default: 'closed' }),
    /** Completion tokens reserved when a request sets no `max_tokens`; at most a 32-bit integer, as `max_tokens`. @default 256 */
    completion_estimate: Type.Integer({ minimum: 0, maximum: 2_147_483_647, default: 256 }),
    /** A `max_parallel` lease expires this long after it was taken or last renewed (every third of it while its request runs), so a crashed instance does not hold it forever; at most a day (a timer runs every third of it). @default 600000 */
    lease_ms: Type.Integer({ minimum: 1000, maximum: 86_400_000, default: 600_000 }),
    /** Redis Cluster hash tag shared by every quota key, so one script sees them all in one slot. @default "sluice" */
    hash_tag: Type.String({ minLength: 1, maxLength: 64, pattern: '^[^{}]+$', default: 'sluice' }),
    /** ms a Redis call may take before it counts as unreachable; at most an hour (a timer's range). @default 1000 */
    redis_timeout_ms: Type.Integer({ minimum: 10, maximum: 3_600_000, default: 1000 }),
    /** Connections to Redis for admissions; two keep Redis busy while the client handles replies. @default 2 */
    redis_connections: Type.Integer({ minimum: 1, maximum: 16, default: 2 }),
  },
  { additionalProperties: false },
)

const LOCAL = 'quota'
/** Retries of a settlement that could not be sent: 0.25 + 0.5 + 1 + 2 + 4 s (its lease release is kept longer: see PendingReleases). */
const SETTLE_RETRIES = 5
const SETTLE_RETRY_MS = 250
/** A request still holding leases after this long is taken for lost (its end never heard): its leases are no longer renewed. */
const MAX_RENEWED_MS = 24 * 60 * 60 * 1000

/** What admission took, kept on the request until it settles. */
interface Reservation {
  items: Item[]
  store: QuotaStore
  tokens: number
  microUsd: number
  /** The reset epoch its admission answered (see AdmitOutcome.epoch). */
  epoch: number
}

const MEASURE_WORDS = {
  requests: 'requests per minute',
  tokens: 'tokens per minute',
  parallel: 'requests in flight',
  budget_tokens: 'token budget',
  budget_usd: 'USD budget',
} as const

/**
 * Limits and budgets on keys, users and teams: token buckets for requests and tokens per
 * minute, leases for requests in flight, period counters for budgets. Admission takes from
 * all of them at once or from none; settlement charges the real usage afterwards.
 */
export const quota = definePlugin({
  name: 'quota',
  options: Options,
  async setup({ options, services, logger, config }) {
    const memory = new MemoryStore()
    let primary: QuotaStore = memory
    const redis = services.redis
    const url = config.redisUrl
    if (redis && url && !redis.isCluster && /^rediss?:\/\//.test(url)) {
      // A single node: Bun's own client, far cheaper per admission than ioredis on Bun.
      const native = nativeUrl(url, Number((redis as Redis).options.db ?? 0))
      const connections = Array.from({ length: options.redis_connections }, () => new NativeConnection(native, options.redis_timeout_ms))
      await Promise.all(connections.map((c) => c.whenConnected(2000)))
      primary = await redisStore(connections)
    } else if (redis) {
      // A Cluster (or a client handed in without a URL): ioredis, which follows slots and redirections.
      const clients = Array.from({ length: options.redis_connections }, () => failFastClient(redis, options.redis_timeout_ms))
      // Without a listener an unreachable Redis would print every reconnect attempt; backendDown logs instead.
      for (const client of clients) client.on('error', () => {})
      // Up to 2 s for them to be ready (not: each command waits or fails on its own); the timer goes with the wait.
      await waitAtMost(Promise.all(clients.map((client) => new Promise((resolve) => client.once('ready', resolve)))), 2000)
      primary = await redisStore(clients.map((client) => new IoredisConnection(client)))
    }
    let lastWarn = 0
    const warnDown = (error: unknown): void => {
      if (services.now() - lastWarn > 10_000) {
        lastWarn = services.now()
        logger.warn('quota backend unreachable', { error: String(error), fail_mode: options.fail_mode })
      }
    }
    const backendDown = (error: unknown): QuotaStore | GatewayError => {
      warnDown(error)
      if (options.fail_mode === 'open') return memory
      return new GatewayError('quota_backend_unavailable', 'The quota backend is unreachable and this gateway is set to refuse requests rather than admit them without limits. Retry shortly; if it persists, tell the operator.')
    }

    /** Prompt tokens (as the tokenizer in force counts them for a reservation) and the completion allowance. */
    const reserveTokens = (req: GatewayRequest): { prompt: number; completion: number } | Promise<{ prompt: number; completion: number }> => {
      const max = maxTokensOf(req.body)
      const each = max !== undefined && max > 0 ? max : options.completion_estimate
      const completion = req.endpoint === 'embeddings' ? 0 : each * completionsAsked(req.body, req.endpoint)
      const prompt = services.tokenizer.countPrompt(req.endpoint, req.body, req.group?.name ?? req.model ?? '', 'reserve')
      // An estimate is a plain number: no promise for it.
      return prompt instanceof Promise ? prompt.then((counted) => ({ prompt: counted, completion })) : { prompt, completion }
    }

    // Lease releases Redis did not take (it was away) wait here until it answers again.
    const releases = new PendingReleases({
      keepMs: options.lease_ms,
      now: services.now,
      dropped: (count, reason) =>
        reason === 'full'
          ? logger.warn('max_parallel lease releases dropped: too many waiting for Redis; their slots stay taken until their leases expire', { count, lease_ms: options.lease_ms })
          : logger.info('max_parallel lease releases given up: their leases have expired by themselves', { count }),
    })

    const planOptions = { tag: options.hash_tag, leaseMs: options.lease_ms }
    const plans = new PlanCache(planOptions)

    /**
     * What the store in force has left of each item (for views, not admission): Redis, or with it
     * unreachable the in-process counts when failing open, which admission then enforces. Failing
     * closed those counts are nobody's, and Redis' error is thrown.
     */
    const peekInForce = async (items: Item[], now: number): Promise<{ left: number[]; store: QuotaStore }> => {
      try {
        return { left: await primary.peek(items, now), store: primary }
      } catch (error) {
        if (options.fail_mode === 'closed') throw error
        return { left: await memory.peek(items, now), store: memory }
      }
    }

    // Budget alerts (the logging plugin) read spend here: what admission enforces, after resets,
    // whatever the request log still holds; and whether the budget refused a request in its period.
    const refusals = new BudgetRefusals()
    services.budgets = {
      async spent(subjects) {
        const now = services.now()
        const items: Item[] = []
        const at: Array<{ tokens: number; usd: number }> = []
        for (const { scope, id, budget } of subjects) {
          const start = items.length
          subjectItems(scope, { id, countedAs: id, limits: null, budget }, { tokens: 0, microUsd: 0 }, now, planOptions, items)
          const find = (measure: Item['measure']): number => {
            for (let i = start; i < items.length; i++) if (items[i]!.measure === measure) return i
            return -1
          }
          at.push({ tokens: find('budget_tokens'), usd: find('budget_usd') })
        }
        const { left } = await peekInForce(items, now)
        const spentOf = (i: number): number => (i < 0 ? 0 : Math.max(0, items[i]!.limit - left[i]!))
        const refusedOf = (tokens: number, usd: number): BudgetRefusal | null => {
          const a = tokens < 0 ? null : refusals.of(items[tokens]!)
          const b = usd < 0 ? null : refusals.of(items[usd]!)
          return a === null ? b : b === null || a.at >= b.at ? a : b
        }
        return at.map(({ tokens, usd }) => ({ tokens: spentOf(tokens), usd: spentOf(usd) / MICRO, refused: refusedOf(tokens, usd) }))
      },
    }

    // Requests in flight that hold max_parallel leases, by request id. A lease expires lease_ms
    // after it was taken; a call may run longer (each attempt up to its provider's total_ms, and a
    // fallback after it), and its slot would then be free while it still runs. Every third of
    // lease_ms, the leases of the requests still here are renewed in one call per store.
    const leased = new Map<string, HeldLeases & { store: QuotaStore; since: number }>()
    const renewLeases = (): void => {
      const now = services.now()
      const byStore = new Map<QuotaStore, HeldLeases[]>()
      for (const [id, held] of leased) {
        if (now - held.since > MAX_RENEWED_MS) {
          leased.delete(id)
          logger.warn('a request has held its max_parallel leases for a day; they are no longer renewed', { request_id: id })
          continue
        }
        let list = byStore.get(held.store)
        if (!list) byStore.set(held.store, (list = []))
        list.push(held)
      }
      for (const [store, list] of byStore) {
        store.renew(list, now).catch((error: unknown) => logger.warn('renewing max_parallel leases failed; retried at the next renewal', { leases: list.length, error: String(error) }))
      }
    }
    const renewer = setInterval(() => {
      if (leased.size > 0) renewLeases()
    }, Math.floor(options.lease_ms / 3))
    renewer.unref()

    /** Admission of a request that some limit or budget applies to (`template`: its items, costs unset). */
    const admitWith = async (req: GatewayRequest, template: NonNullable<ReturnType<typeof plans.template>>, now: number): Promise<GatewayError | undefined> => {
      let reserve = reserveTokens(req)
      if (reserve instanceof Promise) reserve = await reserve
      const tokens = reserve.prompt + reserve.completion
      // At the prices of the service tier the request asks for (priority costs about twice the
      // standard), as the pipeline counts a usage it has to count: the reservation is what a call
      // given up is charged. One own-key look-up.
      const pricing = tierPricing(services.tokenizer.pricing(req.group?.name ?? req.model ?? '', undefined, req.group?.pricing), req.body.service_tier)
      const usd = priceOf(reserve.prompt, reserve.completion, 0, pricing) ?? 0
      const microUsd = toMicroUsd(usd)
      const items = withCosts(template, { tokens, microUsd })

      let store = primary
      let outcome: AdmitOutcome
      try {
        outcome = await store.admit(items, req.id, now)
      } catch (error) {
        // A timed-out admission takes nothing if Redis reaches it past its deadline, and what it took
        // is given back if its reply comes late (see RedisStore); should it still have run unheard of
        // (the connection broke meanwhile), this release, sent right behind it on the same connection,
        // keeps its lease from blocking a max_parallel slot for lease_ms.
        if (hasLease(items) && !(error instanceof TooLateError)) void releases.release(store, items, req.id)
        const fallback = backendDown(error)
        if (fallback instanceof GatewayError) return fallback
        store = fallback
        outcome = await store.admit(items, req.id, now)
      }
      // The store answers again: lease releases kept while it was away go now.
      if (releases.size > 0 && store === primary) releases.kick()
      putRateLimitHeaders(req.responseHeaders, items, outcome.remaining)
      if (!outcome.ok) {
        // Each budget without room is remembered for its alert (refusals only: nothing on an admitted request).
        refusals.noteAll(items, outcome.remaining, now)
        if (req.endpoint === 'embeddings') return refusal(items[outcome.failed]!, outcome, req.responseHeaders, 'input')
        const unset = maxTokensOf(req.body) === undefined ? options.completion_estimate : null
        return refusal(items[outcome.failed]!, outcome, req.responseHeaders, maxTokensField(req.body), unset)
      }
      req.locals[LOCAL] = { items, store, tokens, microUsd, epoch: outcome.epoch } satisfies Reservation
      if (hasLease(items)) leased.set(req.id, { items, leaseId: req.id, store, since: now })
    }

    return {
      // Without limits (a key, user and team with none) admission answers at once: no promise, so no
      // turn of the event loop and no hook-timeout timer for such a request.
      admit(req) {
        const identity = req.identity
        if (!identity) return
        const now = services.now()
        const template = plans.template(identity, subjectsOf, now)
        if (template === null) return
        return admitWith(req, template, now)
      },
      // The settlement needs the usage only: the pipeline need not ask Bun for the client address for it.
      readsClientIpOnComplete: false,
      onComplete(req) {
        const reservation = req.locals[LOCAL] as Reservation | undefined
        if (!reservation) return
        req.locals[LOCAL] = undefined
        if (leased.size > 0) leased.delete(req.id)
        const usage = req.usage
        // A call given up before its upstream answered (the client left, 499; its headers were too
        // late, 504; the shutdown): the upstream has the prompt and answers, and bills, all the same,
        // unseen. Nothing tells what it used, at most the reservation, which stands (given back, a
        // client leaving early got every request free, and a slow upstream served free).
        const unseen = usage === undefined && req.abandonedCall
        // Otherwise without usage (the upstream failed, or the client left between attempts), the
        // tokens and money reserved go back; the request still counts.
        const realTokens = unseen ? reservation.tokens : (usage?.totalTokens ?? 0)
        const realMicro = unseen ? reservation.microUsd : usage?.costUsd ? toMicroUsd(usage.costUsd) : 0
        const items = reservation.items
        const deltas = new Array<number>(items.length)
        for (let i = 0; i < items.length; i++) {
          const m = items[i]!.measure
          deltas[i] = m === 'tokens' || m === 'budget_tokens' ? realTokens - reservation.tokens : m === 'budget_usd' ? realMicro - reservation.microUsd : 0
        }
        settleSurely(reservation.store, items, deltas, req.id, reservation.epoch, {
          retries: SETTLE_RETRIES,
          baseMs: SETTLE_RETRY_MS,
          now: services.now,
          lost: (error) => logger.warn('quota settlement failed; its refund or charge is lost, its max_parallel slots are released', { request_id: req.id, error: String(error) }),
          releases,
        })
      },
      routes(app) {
        app.use(
          quotaAdminRoutes({
            services,
            primary,
            memory,
            peek: peekInForce,
            planOptions,
            unreachable: (error) => {
              warnDown(error)
              return new GatewayError('quota_backend_unavailable', `The quota backend (Redis) is unreachable, so these counts cannot be read or reset now: ${String(error)}. Retry once Redis answers; GET /ready shows it.`)
            },
          }),
        )
      },
      async describe(req) {
        const subjects = subjectsOf(req.identity)
        const none = { requests: null, tokens: null, budget_tokens: null, budget_usd: null }
        if (!subjects) return { remaining: none }
        const now = services.now()
        // Each level's items apart (in planItems' order), for its own view; one read for all.
        const zero = { tokens: 0, microUsd: 0 }
        const keyItems = subjectItems('key', subjects.key, zero, now, planOptions)
        const userItems = subjectItems('user', subjects.user, zero, now, planOptions)
        const teamItems = subjects.team ? subjectItems('team', subjects.team, zero, now, planOptions) : []
        const items = [...keyItems, ...userItems, ...teamItems]
        let left: number[]
        let storeName: QuotaStore['name']
        try {
          const read = await peekInForce(items, now)
          left = read.left
          storeName = read.store.name
        } catch (error) {
          // Failing closed: every request of this key is refused now, and the in-process counts
          // would point its owner the wrong way.
          warnDown(error)
          throw new GatewayError(
            'quota_backend_unavailable',
            "The quota backend is unreachable, so what this key has left of its limits and budget cannot be read now; while it is, this gateway refuses the key's requests with this error rather than admit them without limits. The key itself is valid. Retry shortly; if it persists, tell the operator.",
          )
        }
        const least = (measure: Item['measure']) => {
          let min: number | null = null
          items.forEach((it, i) => {
            if (it.measure === measure) min = min === null ? left[i]! : Math.min(min, left[i]!)
          })
          return min
        }
        const usd = least('budget_usd')
        const floorOrNull = (v: number | null) => (v === null ? null : Math.max(0, Math.floor(v)))
        const remaining = {
          requests: floorOrNull(least('requests')),
          tokens: floorOrNull(least('tokens')),
          budget_tokens: floorOrNull(least('budget_tokens')),
          budget_usd: usd === null ? null : Math.max(0, usd) / MICRO,
        }
        // Which level holds which limit: `remaining` is the least of them all, and a key refused by
        // its team's budget would otherwise show no budget of its own and nothing left.
        const levelView = (scope: Scope, subject: Subject | null, own: Item[], from: number) =>
          subject === null || own.length === 0 ? null : quotaView(scope, subject, own, left.slice(from, from + own.length), now, storeName)
        const quota = {
          key: levelView('key', subjects.key, keyItems, 0),
          user: levelView('user', subjects.user, userItems, keyItems.length),
          team: levelView('team', subjects.team, teamItems, keyItems.length + userItems.length),
        }
        if (req.locals[DIAGNOSE] === undefined) {
          // GET /v1/key: the same numbers in OpenAI's headers, as a model call's answer carries them (read already, nothing more to ask).
          putRateLimitHeaders(req.responseHeaders, items, left)
          return { remaining, quota }
        }
        // The key doctor: would admission refuse the least request (one request, one token, a
        // micro-dollar) now, and with what; and the most tokens a request may reserve now.
        const least1 = withCosts(items, { tokens: 1, microUsd: 1 })
        const { failed, waitMs } = refusingItem(least1, left, now, () => null)
        const tokenRoom = [remaining.tokens, remaining.budget_tokens].filter((v): v is number => v !== null)
        return {
          remaining,
          quota,
          [DIAGNOSIS]: {
            refusal: failed < 0 ? null : refusal(least1[failed]!, { ok: false, failed, waitMs, remaining: left, epoch: 0 }, {}),
            max_request_tokens: tokenRoom.length ? Math.min(...tokenRoom) : null,
          },
        }
      },
      async close() {
        clearInterval(renewer)
        // One last try for the lease releases still waiting, while the connections are open.
        if (releases.size > 0) await releases.flush()
        releases.close()
        await memory.close()
        if (primary !== memory) await primary.close()
      },
    }
  },
})

/** The Redis store over `connections` (admissions carry the deadline of their timeout), its clock learnt before the first admission. */
async function redisStore(connections: ScriptConnection[]): Promise<RedisStore> {
  const store = new RedisStore(connections)
  // Unreachable now: the first reply teaches it instead.
  await store.syncClock().catch(() => {})
  return store
}

/**
 * `url` for Bun's client, selecting database `db`, the one the gateway's own client (ioredis) uses:
 * Bun's reads a database from the URL's path only, and took `redis://HOST:PORT?db=N` (a form the
 * config accepts) as database 0, where the quota then counted apart from the rest of its deployment
 * and together with every other deployment on that server using `?db=` or database 0.
 */
function nativeUrl(url: string, db: number): string {
  if (!(db > 0)) return url
  const parsed = new URL(url)
  if (parsed.pathname === `/${db}`) return url
  parsed.pathname = `/${db}`
  parsed.searchParams.delete('db')
  return parsed.toString()
}

/**
 * The quota's own connection, duplicated from the gateway's: it fails fast when Redis is away
 * (no offline queue, no retry, a timeout per command) instead of queueing behind a reconnect,
 * and pipelines concurrent admissions. A Cluster takes node options under `redisOptions`, and
 * its `duplicate` takes the startup nodes first: passed like a single node's, the options would
 * be silently dropped (no timeout: a hung node would hang every request).
 */
function failFastClient(redis: RedisClient, timeoutMs: number): RedisClient {
  const node = { maxRetriesPerRequest: 0, commandTimeout: timeoutMs }
  // Watched as the gateway's own client is: a connection that went silent timed out every call on it.
  if (redis.isCluster) {
    const cluster = (redis as Cluster).duplicate([], { enableOfflineQueue: false, enableAutoPipelining: true, redisOptions: node })
    watchClusterNodes(cluster)
    return cluster
  }
  const single = (redis as Redis).duplicate({ ...node, enableOfflineQueue: false, enableAutoPipelining: true })
  watchConnection(single)
  return single
}

interface Attributes {
  limits?: { key: Limits | null; user: Limits | null; team: Limits | null }
  budget?: { key: Budget | null; user: Budget | null; team: Budget | null }
}

/** The limits of the key (counted under its lineage), its user and the billed team, as the auth plugin put them on the identity. */
function subjectsOf(identity: Identity | undefined): Subjects | null {
  if (!identity) return null
  const a = identity.attributes as Attributes
  if (!a.limits && !a.budget) return null
  return {
    // Counted under the key's lineage, so rotation carries its limits and spend on; refusals still name the key sent.
    key: { id: identity.keyId, countedAs: identity.keyLineageId, limits: a.limits?.key ?? null, budget: a.budget?.key ?? null },
    user: { id: identity.userId, limits: a.limits?.user ?? null, budget: a.budget?.user ?? null },
    team: identity.teamId ? { id: identity.teamId, limits: a.limits?.team ?? null, budget: a.budget?.team ?? null } : null,
  }
}

/** OpenAI's headers for the bucket of each kind that will refuse first. */
export function rateLimitHeaders(items: Item[], remaining: number[]): Record<string, string> {
  const headers: Record<string, string> = {}
  putRateLimitHeaders(headers, items, remaining)
  return headers
}

/** rateLimitHeaders, written straight into `headers` (the hot path: no object, no closure per request). */
function putRateLimitHeaders(headers: Record<string, string>, items: Item[], remaining: number[]): void {
  let requests = -1
  let tokens = -1
  for (let i = 0; i < items.length; i++) {
    const m = items[i]!.measure
    if (m === 'requests') {
      if (requests < 0 || remaining[i]! < remaining[requests]!) requests = i
    } else if (m === 'tokens') {
      if (tokens < 0 || remaining[i]! < remaining[tokens]!) tokens = i
    }
  }
  if (requests >= 0) putBucket(headers, 'requests', items[requests]!, remaining[requests]!)
  if (tokens >= 0) putBucket(headers, 'tokens', items[tokens]!, remaining[tokens]!)
}

function putBucket(headers: Record<string, string>, suffix: 'requests' | 'tokens', item: Item, left: number): void {
  headers[`x-ratelimit-limit-${suffix}`] = String(item.limit)
  headers[`x-ratelimit-remaining-${suffix}`] = String(Math.max(0, Math.floor(left)))
  // From what is really left: a bucket in debt (charged more than it held) takes longer than a minute.
  headers[`x-ratelimit-reset-${suffix}`] = formatDuration((item.limit - left) / item.rate)
}

/** OpenAI's reset format: `20ms`, `1.5s`, `6m0s`, `1h2m3s`; rounded up, never promising a reset too early. */
export function formatDuration(ms: number): string {
  if (!(ms > 0)) return '0s'
  const whole = Math.ceil(ms)
  if (whole < 1000) return `${whole}ms`
  if (whole < 60_000) return `${whole / 1000}s`
  const secs = Math.ceil(whole / 1000)
  const h = Math.floor(secs / 3600)
  const m = Math.floor((secs % 3600) / 60)
  const s = secs % 60
  return h > 0 ? `${h}h${m}m${s}s` : `${m}m${s}s`
}

/**
 * Told to a refusal that the same request sent again a moment later cannot pass (a spent budget,
 * a request bigger than a limit holds): the official OpenAI clients otherwise retry every 429
 * twice, in vain. Their header, read before any Retry-After.
 */
const NO_RETRY = { 'x-should-retry': 'false' } as const

/**
 * The 429 for the item that refused, naming it, with a Retry-After that holds to the second.
 * `field` is what the client can lower: the completion allowance its body set (see
 * maxTokensField), or an embeddings request's `input`. `unset`: the body set no allowance, and
 * this many tokens were reserved for each completion instead (completion_estimate): the client
 * is told to set one, not to lower what it never sent.
 */
function refusal(
  item: Item,
  outcome: AdmitOutcome,
  headers: Record<string, string>,
  field: 'max_completion_tokens' | 'max_tokens' | 'input' = 'max_tokens',
  unset: number | null = null,
): GatewayError {
  const who = `${item.scope} ${item.id}`
  const fix =
    field === 'input'
      ? 'shorten the input'
      : unset !== null
        ? `set ${field} (none was sent, so ${unset} tokens were reserved for each completion) or shorten the prompt`
        : `lower ${field} or shorten the prompt`
  const reserved = field === 'input' ? '(its input)' : unset !== null ? `(prompt + ${unset} for each completion asked, no ${field} being set)` : `(prompt + ${field} for each completion asked)`
  const extra: Record<string, string> = { ...headers }
  const retry = outcome.waitMs === null ? null : Math.max(1, Math.ceil(outcome.waitMs / 1000))
  if (retry !== null) extra['retry-after'] = String(retry)
  const after = retry === null ? '' : ` Retry after ${retry} s.`
  switch (item.measure) {
    case 'requests':
      return new GatewayError('rate_limit_exceeded', `Rate limit reached for ${MEASURE_WORDS.requests} on ${who}: ${item.limit} per minute.${after}`, { headers: extra })
    case 'tokens':
      if (outcome.waitMs === null) {
        return new GatewayError('rate_limit_exceeded', `This request needs about ${item.cost} tokens, more than the ${MEASURE_WORDS.tokens} limit of ${who} (${item.limit}); ${fix}.`, { headers: { ...extra, ...NO_RETRY }, param: field })
      }
      return new GatewayError('rate_limit_exceeded', `Rate limit reached for ${MEASURE_WORDS.tokens} on ${who}: ${item.limit} per minute; this request reserves about ${item.cost} tokens ${reserved}.${after}`, { headers: extra })
    case 'parallel':
      return new GatewayError('rate_limit_exceeded', `Too many requests in flight for ${who}: at most ${item.limit} at once. Retry when one finishes.`, { headers: { ...headers, 'retry-after': '1' } })
    case 'budget_tokens':
    case 'budget_usd': {
      const usd = item.measure === 'budget_usd'
      const what = usd ? `USD budget of ${item.limit / MICRO}` : `token budget of ${item.limit}`
      const amount = (n: number) => (usd ? `${n / MICRO} USD` : `${n} tokens`)
      if (item.cost > item.limit) {
        return new GatewayError('insufficient_quota', `This request reserves about ${amount(item.cost)}, more than the whole ${what} for ${who}; ${fix}.`, { headers: { ...extra, ...NO_RETRY }, param: field })
      }
      const renews = item.until === null ? ' It does not renew (period "total"); ask an admin to raise it.' : ` It renews at ${new Date(item.until).toISOString()}.`
      const left = Math.floor(outcome.remaining[outcome.failed] ?? 0)
      if (left > 0) {
        // Not spent: a smaller request fits now. No Retry-After, as for a request bigger than its
        // tokens-per-minute limit: it would send a client retrying this same request away until
        // the period ends (days, for a month), when a lower max_tokens passes at once.
        return new GatewayError(
          'insufficient_quota',
          `The ${what} for ${who} has ${amount(left)} left for this period, and this request reserves about ${amount(item.cost)} ${reserved}: ${fix} to fit.${renews}`,
          { headers: { ...headers, ...NO_RETRY }, param: field },
        )
      }
      // Retry-After (when it renews) stays for a client that waits on purpose; an SDK's quick retries cannot pass.
      return new GatewayError('insufficient_quota', `The ${what} for ${who} is spent for this period.${renews}`, { headers: { ...extra, ...NO_RETRY } })
    }
  }
}
