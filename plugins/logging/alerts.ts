import type { Kysely } from 'kysely'
import { retryAfterMs } from '../../src/lib/rate-headers.ts'
import type { Database } from '../../src/db/schema.ts'
import { holderMayUse } from '../../src/db/key-holders.ts'
import { budgetPeriod, type Budget } from '../../src/limits.ts'
import { fromJson } from '../../src/lib/json-text.ts'
import { waitAtMost } from '../../src/lib/within.ts'
import { displayKey } from '../../src/lib/key-text.ts'
import type { Logger } from '../../src/lib/logger.ts'
import type { CounterSeries, MetricsRegistry } from '../../src/metrics.ts'
import type { UpstreamHealth, UpstreamKeyState } from '../../src/upstream-health.ts'
import type { BudgetReader, BudgetRefusal } from '../../src/services.ts'
import { inChunks, lineageSpendSince, spendSince, type SpendColumn } from './repo.ts'
import { SpendCache } from './spend-cache.ts'

/** The kinds of alert, as the `kind` field of the webhook body. */
export type AlertKind = 'key_expiring' | 'budget' | 'upstream_key_dead'

export interface AlertOptions {
  webhookUrl: string
  expiringWithinDays: number
  budgetThresholds: readonly number[]
  checkMs: number
  deadKeyFailures: number
  retryBaseMs: number
  retryMaxMs: number
  timeoutMs: number
  /** Keys, users or teams with a budget read per query; a check reads them all, page by page. @default 1000 */
  budgetPageSize?: number
  /** Keys expiring within the window read per query; a check reads them all, page by page. @default 1000 */
  expiringPageSize?: number
  /** The request log's retention in days (0: keeps every row), to know whether it holds a budget's whole period. @default 0 */
  retentionDays?: number
}

/** The JSON body POSTed to the webhook. `id` is stable: a receiver may dedupe on it. */
export interface AlertPayload {
  id: string
  kind: AlertKind
  subject: { type: 'key' | 'user' | 'team' | 'provider_key'; id: string }
  threshold: number
  period: string
  environment: string
  message: string
  at: string
  details: Record<string, unknown>
}

/** A subject with a budget, as a page of them is read. */
interface Budgeted {
  /** The subject: a user, a team, or a key lineage (the id of its rotation chain's first key). */
  id: string
  budget: string | null
  /** Key lineages: the key in use (whose budget it is) and how many keys the lineage has. */
  key?: { id: string; userId: string; keys: number }
}

/** How budget subjects of one type are read, page by page, and what they spent. */
interface BudgetPages {
  type: 'key' | 'user' | 'team'
  /** The subjects of the page after `after` (null: the first), and where the next page starts (null: none). */
  page: (after: string | null) => Promise<{ subjects: Budgeted[]; next: string | null }>
  spend: (ids: readonly string[], from: string | null) => Promise<Map<string, { tokens: number; usd: number }>>
}

interface Candidate {
  kind: AlertKind
  subject: AlertPayload['subject']
  threshold: number
  period: string
  message: string
  details: Record<string, unknown>
  /** A budget alert's figures (see budgetFigure): the same threshold and period of another budget is another alert. */
  figure?: string
}

/** Alert ids this process knows are recorded, so a check does not ask the database again. */
const MAX_KNOWN = 10_000
/** Dead upstream keys looked at per check; the default page of expiring keys and of budget subjects. */
const MAX_PER_CHECK = 1000
/** The longest Retry-After of a receiver that is honoured: an hour. */
const MAX_RETRY_AFTER_MS = 3_600_000
/** Due alerts read per query; a round sends every one due when it began, page by page. */
const DELIVERY_PAGE = 100
/** Redirects that keep the POST (307, 308) followed for one delivery. */
const MAX_REDIRECTS = 5

const iso = (ms: number) => new Date(ms).toISOString()
const DAY = 86_400_000

/**
 * Alerts by webhook: keys about to expire, budgets passing their thresholds, upstream keys
 * refused again and again. Every alert has an id from (kind, subject, threshold, period) and a
 * row in `alerts_sent`, inserted before the webhook is called: whichever instance inserts it
 * sends it, and a restart finds it there. Delivery is retried with capped exponential backoff
 * until the receiver answers 2xx; since a crash between the answer and the bookkeeping means
 * one more POST, delivery is at least once and the body's `id` lets the receiver dedupe.
 */
export class AlertMonitor {
  private timer: ReturnType<typeof setInterval> | undefined
  private retryTimer: ReturnType<typeof setTimeout> | undefined
  private running: Promise<void> | null = null
  private again = false
  private retryAt = Infinity
  /** Deliveries failed in a row (any alert), and until when (ms) none is tried: the receiver is one, and down for every alert. */
  private receiverFailures = 0
  private holdUntil = 0
  private readonly known = new Set<string>()
  /** Dead-key alerts being recorded the moment their key was refused, by id: one insert each; close waits for them. */
  private readonly recording = new Map<string, Promise<void>>()
  private unwatch: (() => void) | undefined
  private closed = false
  private readonly sent: Map<AlertKind, CounterSeries>
  private readonly failures: Map<AlertKind, CounterSeries>
  /** The spend past which a budget's refusal counts as that budget reached: its highest threshold below 100 %. */
  private readonly refusalFloor: number
  /** The budgets' spend of the hours of their periods that are over, summed once. */
  private readonly spendCache: SpendCache

  constructor(
    private readonly db: Kysely<Database>,
    private readonly options: AlertOptions,
    private readonly deps: {
      now: () => number
      logger: Logger
      upstreams: UpstreamHealth
      environment: string
      metrics: MetricsRegistry
      budgets?: () => BudgetReader | undefined
      /** The time (ISO) of the oldest request-log row this instance has yet to write; null: none waits. */
      pendingSince?: () => string | null
    },
  ) {
    const sent = deps.metrics.counter({ name: 'sluice_alerts_sent_total', help: 'Alerts the webhook receiver accepted, by kind.', labelNames: ['kind'] })
    const failed = deps.metrics.counter({ name: 'sluice_alert_delivery_failures_total', help: 'Failed webhook deliveries (each is retried), by kind.', labelNames: ['kind'] })
    const kinds: AlertKind[] = ['key_expiring', 'budget', 'upstream_key_dead']
    this.sent = new Map(kinds.map((k) => [k, sent.labels(k)]))
    this.failures = new Map(kinds.map((k) => [k, failed.labels(k)]))
    this.refusalFloor = Math.max(0, ...options.budgetThresholds.filter((t) => t < 1))
    this.spendCache = new SpendCache()
  }

  start(): void {
    this.unwatch = this.deps.upstreams.watch((k) => this.keyRefused(k))
    this.timer = setInterval(() => void this.tick(), this.options.checkMs)
    this.timer.unref?.()
    void this.tick()
  }

  /** One check and delivery round now (also what the timer runs); never two at once. */
  tick(): Promise<void> {
    if (this.closed) return Promise.resolve()
    if (this.running) {
      // Asked while a round runs (a retry came due): one more round right after it.
      this.again = true
      return this.running
    }
    this.running = (async () => {
      do {
        this.again = false
        await this.round()
      } while (this.again && !this.closed)
    })().finally(() => {
      this.running = null
    })
    return this.running
  }

  async close(timeoutMs: number): Promise<void> {
    this.closed = true
    this.unwatch?.()
    if (this.timer) clearInterval(this.timer)
    if (this.retryTimer) clearTimeout(this.retryTimer)
    // A dead key's alert being recorded is what another instance will send: it is let finish.
    const left = [...this.recording.values(), ...(this.running ? [this.running] : [])]
    // waitAtMost(), not a race with a sleep: its timer goes with the wait, where a sleep held the process
    // for the whole timeout after everything had ended.
    if (left.length > 0) await waitAtMost(Promise.all(left), timeoutMs)
  }

  /**
   * A provider refused a key (or its routing plugin retired it): once that makes it dead, its alert
   * is recorded now, not at the next check. The refusal is in this process's memory only, and
   * the process may stop before that check; recorded, it is sent by whichever instance checks
   * first. Runs on the request path, on refusals only: the cheap tests come first, and a key's
   * run of refusals passes its threshold once. Should the insert fail, the next check records it.
   */
  private keyRefused(k: UpstreamKeyState): void {
    if (this.closed || k.authFailingSince === null) return
    if (k.consecutiveAuthFailures !== this.options.deadKeyFailures && !k.retired) return
    const c = this.deadKey(k)
    const id = alertBase(c)
    if (this.known.has(id) || this.recording.has(id)) return
    const done = this.record(c)
      .catch((error: unknown) => this.deps.logger.warn('could not record a dead upstream key alert; the next check will', { error: String(error) }))
      .finally(() => this.recording.delete(id))
    this.recording.set(id, done)
  }

  private async round(): Promise<void> {
    try {
      const candidates = [...(await this.expiringKeys()), ...(await this.budgets()), ...this.deadKeys()]
      for (const c of candidates) await this.record(c)
      await this.deliverDue()
    } catch (error) {
      this.deps.logger.warn('alert check failed; will try again', { error: String(error) })
    }
  }

  private async expiringKeys(): Promise<Candidate[]> {
    const now = this.deps.now()
    const from = iso(now)
    const until = iso(now + this.options.expiringWithinDays * DAY)
    const size = this.options.expiringPageSize ?? MAX_PER_CHECK
    // Pages in (expires_at, id) order, each starting after the last row of the one before: every
    // key in the window is seen once per check however many there are, no query reads more than `size`.
    const page = (after: { expiresAt: string; id: string } | null) =>
      this.db
        .selectFrom('api_keys')
        .select(['id', 'lineage_id', 'user_id', 'team_id', 'name', 'start', 'end', 'environment', 'expires_at'])
        .where('status', '=', 'active')
        .where('grace_until', 'is', null)
        // The first page starts past now, each next one past the last row of the one before (which is
        // past now too) as a row value, alone: SQLite takes one lower bound of a range, and with
        // `expires_at > from` beside the tuple, or `a > x or (a = x and b > y)` in its place, each page
        // read the window from its start. The tuple is one range of api_keys_expiring_idx on both dialects.
        .$if(after === null, (q) => q.where('expires_at', '>', from))
        .$if(after !== null, (q) => q.where((eb) => eb(eb.refTuple('expires_at', 'id'), '>', eb.tuple(after!.expiresAt, after!.id))))
        .where('expires_at', '<=', until)
        // A key refused for its owner or team (deleted, disabled, left the team) is not worth an alert.
        .where(holderMayUse)
        .orderBy('expires_at')
        .orderBy('id')
        .limit(size)
        .execute()
    const rows: Awaited<ReturnType<typeof page>> = []
    for (let after: { expiresAt: string; id: string } | null = null; ; ) {
      const got = await page(after)
      rows.push(...got)
      if (got.length < size) break
      const last = got[got.length - 1]!
      after = { expiresAt: last.expires_at!, id: last.id }
    }
    return rows.map((r) => ({
      kind: 'key_expiring',
      // The key's rotation chain (its first key), as budget alerts name it: a rotation copies the
      // expiry to the successor, which is the same expiry to tell, not a new one. A key in its
      // grace period is left out above, so a chain has one key here: the one in use.
      subject: { type: 'key', id: r.lineage_id ?? r.id },
      threshold: this.options.expiringWithinDays,
      // The expiry itself: a key whose expiry is moved is alerted again for the new date.
      period: r.expires_at!,
      message: `API key ${r.id} (${displayKey(r.start, r.end)}) of user ${r.user_id} expires at ${r.expires_at}, within ${this.options.expiringWithinDays} days. Extend its expires_at (PATCH /admin/keys/${r.id}) or issue a new key; a rotation keeps the expiry.`,
      details: {
        key_id: r.id,
        lineage_id: r.lineage_id ?? r.id,
        user_id: r.user_id,
        team_id: r.team_id,
        name: r.name,
        environment: r.environment,
        display: displayKey(r.start, r.end),
        expires_at: r.expires_at,
      },
    }))
  }

  private async budgets(): Promise<Candidate[]> {
    const now = this.deps.now()
    const at = iso(now)
    const size = this.options.budgetPageSize ?? MAX_PER_CHECK
    // The oldest row this instance has yet to write: the hours before it are not over for the log.
    const pending = this.deps.pendingSince?.() ?? null
    const cached =
      (type: BudgetPages['type'], read: (ids: readonly string[], start: string | null, closedBefore: string | null) => ReturnType<typeof spendSince>) =>
      (ids: readonly string[], from: string | null) =>
        this.spendCache.spend(type, ids, from, now, pending, read)
    const spendBy = (column: SpendColumn) => cached(column === 'user_id' ? 'user' : 'team', (ids, start, closedBefore) => spendSince(this.db, column, ids, start, closedBefore))
    const byId = (rows: Budgeted[]) => ({ subjects: rows, next: rows.length < size ? null : rows[rows.length - 1]!.id })
    /** Users or teams with a budget and not deleted, in id order, after `after`. */
    const budgetedPage = (table: 'users' | 'teams', after: string | null): Promise<Budgeted[]> =>
      this.db
        .selectFrom(table)
        .select(['id', 'budget'])
        .where('budget', 'is not', null)
        .where('deleted_at', 'is', null)
        .$if(after !== null, (q) => q.where('id', '>', after!))
        .orderBy('id')
        .limit(size)
        .execute()
    // Pages in id order, each starting after the last id of the one before: every subject is
    // seen once per check however many there are, and a page is at most `size` users, teams or
    // keys (with, for keys, the other keys of their rotation chains).
    const pages: BudgetPages[] = [
      { type: 'key', page: (after) => this.keyLineages(at, after, size), spend: cached('key', (ids, start, closedBefore) => lineageSpendSince(this.db, ids, start, closedBefore)) },
      { type: 'user', spend: spendBy('user_id'), page: async (after) => byId(await budgetedPage('users', after)) },
      { type: 'team', spend: spendBy('team_id'), page: async (after) => byId(await budgetedPage('teams', after)) },
    ]
    const out: Candidate[] = []
    for (const { type, page, spend } of pages) {
      for (let after: string | null = null; ; ) {
        const { subjects, next } = await page(after)
        await this.budgetPage(type, spend, subjects, now, out)
        if (next === null) break
        after = next
      }
    }
    return out
  }

  /**
   * One page of key lineages with a budget. A lineage (`coalesce(lineage_id, id)`: the first
   * key of a rotation chain) is checked against the budget of its newest live key, the one a
   * client should be using, and named by it. Paged by that key's id: a lineage has one newest
   * live key, so it comes once per check, and the page is `size` keys in primary-key order. A
   * rotation between two pages can show a lineage twice (the same alert ids) or not until the
   * next check.
   */
  private async keyLineages(at: string, after: string | null, size: number): Promise<{ subjects: Budgeted[]; next: string | null }> {
    const keys = await this.db
      .selectFrom('api_keys')
      .select(['id', 'lineage_id', 'budget', 'user_id'])
      .where('budget', 'is not', null)
      .where('status', '=', 'active')
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', at)]))
      .where((eb) => eb.or([eb('grace_until', 'is', null), eb('grace_until', '>', at)]))
      .$if(after !== null, (q) => q.where('id', '>', after!))
      .orderBy('id')
      .limit(size)
      .execute()
    const next = keys.length < size ? null : keys[keys.length - 1]!.id
    // Every key of these lineages, to find each one's newest live key and count its keys. Read
    // by api_keys_lineage_id_idx and the primary key; the liveness test is made here, not in
    // SQL, where SQLite would rather scan api_keys_status_idx (every active key) for it.
    const lineages = [...new Set(keys.map((k) => k.lineage_id ?? k.id))]
    const newest = new Map<string, { id: string; createdAt: string; last: boolean }>()
    const count = new Map<string, number>()
    await inChunks(lineages, async (chunk) => {
      const members = await this.db
        .selectFrom('api_keys')
        .select(['id', 'lineage_id', 'status', 'expires_at', 'grace_until', 'created_at', 'rotated_to'])
        .where((eb) => eb.or([eb('lineage_id', 'in', chunk), eb.and([eb('lineage_id', 'is', null), eb('id', 'in', chunk)])]))
        .execute()
      for (const m of members) {
        const lineage = m.lineage_id ?? m.id
        count.set(lineage, (count.get(lineage) ?? 0) + 1)
        const live = m.status === 'active' && (m.expires_at === null || m.expires_at > at) && (m.grace_until === null || m.grace_until > at)
        if (!live) continue
        // Newest by creation; within one clock tick the chain's last key (not rotated), then the id.
        const seen = newest.get(lineage)
        const candidate = { id: m.id, createdAt: m.created_at, last: m.rotated_to === null }
        if (!seen || newer(candidate, seen)) newest.set(lineage, candidate)
      }
    })
    const subjects: Budgeted[] = []
    for (const k of keys) {
      const lineage = k.lineage_id ?? k.id
      // Not the key in use: its lineage is checked (once) by the key that is, if that one has a budget.
      if (newest.get(lineage)?.id !== k.id) continue
      subjects.push({ id: lineage, budget: k.budget, key: { id: k.id, userId: k.user_id, keys: count.get(lineage) ?? 1 } })
    }
    return { subjects, next }
  }

  /** Whether the request log still holds every row since `since` (ISO; null: ever): retention has pruned none of them. */
  private logCovers(since: string | null, now: number): boolean {
    const days = this.options.retentionDays ?? 0
    if (days <= 0) return true
    return since !== null && Date.parse(since) >= now - days * DAY
  }

  /** The quota's spend of these subjects, or null without a quota plugin or when its store cannot be read (the log's sums stand). */
  private async enforcedSpend(
    type: BudgetPages['type'],
    subjects: ReadonlyArray<{ row: Budgeted; budget: Budget }>,
  ): Promise<Array<{ tokens: number; usd: number; refused: BudgetRefusal | null }> | null> {
    const reader = this.deps.budgets?.()
    if (!reader) return null
    try {
      return await reader.spent(subjects.map(({ row, budget }) => ({ scope: type, id: row.id, budget })))
    } catch (error) {
      this.deps.logger.warn('budget alerts: the quota store could not be read; using the request log', { error: String(error) })
      return null
    }
  }

  /** The budget alerts of one page of subjects, added to `out`. */
  private async budgetPage(type: BudgetPages['type'], spend: BudgetPages['spend'], rows: Budgeted[], now: number, out: Candidate[]): Promise<void> {
    // Subjects whose budgets share a period start are summed in one query.
    const byStart = new Map<string, Array<{ row: Budgeted; budget: Budget; label: string; reset?: string }>>()
    for (const r of rows) {
      const budget = parseBudget(r.budget)
      if (!budget) continue
      const period = budgetPeriod(budget.period, now)
      const start = period.start === null ? '' : iso(period.start)
      let list = byStart.get(start)
      if (!list) byStart.set(start, (list = []))
      list.push({ row: r, budget, label: period.label })
    }
    for (const [start, subjects] of byStart) {
      const from = start === '' ? null : start
      // Where the quota enforces budgets, its counts (after any reset) are what the alert is about:
      // the request log's rows may be pruned (retention) within the period, a `total` budget's
      // always in time. But those counts hold what requests in flight reserved (their prompt and
      // max_tokens) until they settle: a few concurrent requests with a large max_tokens would read
      // as most of a small budget spent. Where the log holds the whole period, what it logged is
      // the spend, and an alert needs both to pass the threshold. Without the quota, the log's sums.
      const enforced = await this.enforcedSpend(type, subjects)
      const covers = (since: string | null) => this.logCovers(since, now)
      const spent = !enforced || covers(from) ? await spend(subjects.map((s) => s.row.id), from) : new Map<string, { tokens: number; usd: number }>()
      // A subject whose budget spend an operator reset in this period (the quota plugin's
      // `quota.reset`) is counted from the reset on, and its thresholds may be crossed again.
      const resets = await this.budgetResets(type, from)
      for (const s of subjects) {
        const reset = resets.get(s.row.id)
        if (reset === undefined) continue
        if (!enforced || covers(reset)) spent.set(s.row.id, (await spend([s.row.id], reset)).get(s.row.id) ?? { tokens: 0, usd: 0 })
        s.label = `${s.label}+reset ${reset}`
        s.reset = reset
      }
      for (let i = 0; i < subjects.length; i++) {
        const { row, budget, label, reset } = subjects[i]!
        const counted = enforced?.[i]
        const logged = !enforced || covers(reset ?? from) ? (spent.get(row.id) ?? { tokens: 0, usd: 0 }) : null
        const used = !counted ? logged! : !logged ? counted : { tokens: Math.min(counted.tokens, logged.tokens), usd: Math.min(counted.usd, logged.usd) }
        const fraction = Math.max(budget.tokens ? used.tokens / budget.tokens : 0, budget.usd ? used.usd / budget.usd : 0)
        // Admission refuses a request once the budget's remainder is below its reservation, so the
        // spend may stop short of 100 % while every request is refused: a refusal in this period
        // (since its reset, if any) is the budget reached, every threshold up to 1 crossed.
        let refused = counted?.refused ?? null
        if (refused !== null && reset !== undefined && refused.at < Date.parse(reset)) refused = null
        // Only near its end: one large request refused at 40 % spend says nothing of the budget's
        // spend, and alerting it would take the ids its real 80 and 100 % alerts need.
        if (refused !== null && fraction < this.refusalFloor) refused = null
        // A refused budget is told with the quota's count, which the refusal was made on: the log
        // may not hold the last requests yet, and none in flight holds a reservation worth saying.
        const shown = refused !== null && counted ? counted : used
        for (const threshold of this.options.budgetThresholds) {
          const byRefusal = fraction < threshold
          if (byRefusal && !(refused !== null && threshold <= 1)) continue
          const pct = Math.round(threshold * 100)
          const key = row.key
          // A key's alert is its lineage's (the subject id stays across rotations), but names the key in use.
          const named = key ? `key ${key.id}` : `${type} ${row.id}`
          const chain = !key || key.keys < 2 ? '' : ` This includes the spend of ${key.id === row.id ? 'the other keys of its rotation chain' : `the keys it replaced (rotation chain ${row.id})`}: ${key.keys} keys in all.`
          out.push({
            kind: 'budget',
            subject: { type, id: row.id },
            threshold,
            period: label,
            figure: budgetFigure(budget),
            message: byRefusal
              ? `The ${PERIOD_WORDS[budget.period]} budget of ${named} refuses requests: ${describeSpend(shown, budget)} spent, ${describeRefusal(refused!)}.${chain}`
              : `The ${PERIOD_WORDS[budget.period]} budget of ${named} is ${pct >= 100 ? 'spent' : `${pct}% spent`} (${describeSpend(shown, budget)}).${chain}`,
            details: {
              budget,
              spent: { tokens: shown.tokens, usd: shown.usd },
              fraction,
              ...(refused && { refused: { at: iso(refused.at), measure: refused.measure, reserved: refused.reserved, left: refused.left } }),
              ...(key && { key_id: key.id, lineage_id: row.id, lineage_keys: key.keys, user_id: key.userId }),
            },
          })
        }
      }
    }
  }

  /**
   * The latest budget reset (an ISO time) of each key lineage, user or team reset since `from`
   * (null: ever), from the audit trail. Resets are operator actions, so they are few: all of a
   * type in the period are read, and a key's is found under the lineage it was counted as.
   */
  private async budgetResets(type: BudgetPages['type'], from: string | null): Promise<Map<string, string>> {
    const rows = await this.db
      .selectFrom('audit_log')
      .select(['at', 'target_id', 'details'])
      .where('action', '=', 'quota.reset')
      .where('target_type', '=', type)
      .$if(from !== null, (q) => q.where('at', '>=', from!))
      .execute()
    const latest = new Map<string, string>()
    for (const r of rows) {
      const details = fromJson<{ budget?: unknown; counted_as?: unknown }>(r.details)
      if (details?.budget !== true) continue
      const subject = typeof details.counted_as === 'string' ? details.counted_as : r.target_id
      if (subject === null) continue
      const seen = latest.get(subject)
      if (seen === undefined || r.at > seen) latest.set(subject, r.at)
    }
    return latest
  }

  private deadKeys(): Candidate[] {
    const n = this.options.deadKeyFailures
    return this.deps.upstreams
      .list()
      // A key its routing plugin no longer tries (balance: after its first refusal) is dead at once: its run cannot grow to n.
      .filter((k) => (k.consecutiveAuthFailures >= n || k.retired) && k.authFailingSince !== null)
      .slice(0, MAX_PER_CHECK)
      .map((k) => this.deadKey(k))
  }

  /** The alert of a dead upstream key (`authFailingSince` set). */
  private deadKey(k: UpstreamKeyState): Candidate {
    return {
      kind: 'upstream_key_dead',
      subject: { type: 'provider_key', id: `${k.provider}/${k.key}` },
      threshold: this.options.deadKeyFailures,
      // The UTC day this run of refusals began, not its instant: that instant is what this
      // process saw, and another instance (or this one after a restart) sees another, so the
      // id must not depend on it. Once per key and day; a key dead again on a later day is alerted again.
      period: budgetPeriod('day', k.authFailingSince!).label,
      message: `Upstream provider "${k.provider}" refused the gateway's key "${k.key}" ${k.consecutiveAuthFailures === 1 ? 'once' : `${k.consecutiveAuthFailures} times in a row`} (last HTTP ${k.lastStatus})${k.retired ? ' and it is no longer tried' : ''}. Fix or replace that provider key.`,
      details: { provider: k.provider, key: k.key, consecutive_failures: k.consecutiveAuthFailures, last_status: k.lastStatus, failing_since: iso(k.authFailingSince!), retired: k.retired },
    }
  }

  /**
   * Remember an alert once, durably; the instance whose insert wins will send it. A budget alert
   * whose id is taken by the alert of another figure (the budget was changed in its period, as
   * when an operator raises a spent one) is that figure's: its id takes the figure on, so the
   * thresholds of the new budget are told too, and a figure already told is not told again.
   */
  private async record(c: Candidate): Promise<void> {
    const base = alertBase(c)
    const seen = c.figure === undefined ? base : `${base}|${c.figure}`
    if (this.known.has(seen)) return
    if (!(await this.insert(base, c)) && c.figure !== undefined) {
      const first = await this.db.selectFrom('alerts_sent').select('payload').where('id', '=', base).executeTakeFirst()
      const told = fromJson<{ details?: { budget?: Budget } }>(first?.payload ?? null)?.details?.budget
      if (told && budgetFigure(told) !== c.figure) await this.insert(`${base}@${c.figure}`, c)
    }
    if (this.known.size >= MAX_KNOWN) this.known.delete(this.known.values().next().value!)
    this.known.add(seen)
  }

  /** Insert the alert under `id` unless a row has it; whether this insert made it. */
  private async insert(id: string, c: Candidate): Promise<boolean> {
    // Delivery bookkeeping runs on the wall clock; the rules (expiry, budget periods) on services.now.
    const now = Date.now()
    const { figure: _, ...fields } = c
    const payload: AlertPayload = { id, ...fields, environment: this.deps.environment, at: iso(now) }
    const result = await this.db
      .insertInto('alerts_sent')
      .values({
        id,
        kind: c.kind,
        subject: `${c.subject.type}:${c.subject.id}`,
        threshold: c.threshold,
        period: c.period,
        status: 'pending',
        attempts: 0,
        payload: JSON.stringify(payload),
        next_attempt_at: iso(now),
        last_error: null,
        created_at: iso(now),
        sent_at: null,
      })
      .onConflict((oc) => oc.column('id').doNothing())
      .executeTakeFirst()
    return Number(result.numInsertedOrUpdatedRows ?? 0) > 0
  }

  /**
   * Send every pending alert whose time had come when this began, a page at a time; each is
   * claimed first, so one instance sends it. A row tried here is due again only after this began
   * (its claim or its retry moves it past), so the pages end, however the receiver answers.
   */
  private async deliverDue(): Promise<void> {
    if (Date.now() < this.holdUntil) {
      // Woken early (a check, or a retry timer set before the hold grew): wake again when it ends.
      this.scheduleRetry(this.holdUntil - Date.now())
      return
    }
    const now = iso(Date.now())
    for (;;) {
      const due = await this.db
        .selectFrom('alerts_sent')
        .select(['id', 'kind', 'payload', 'attempts', 'next_attempt_at'])
        .where('status', '=', 'pending')
        .where('next_attempt_at', '<=', now)
        .orderBy('next_attempt_at')
        .limit(DELIVERY_PAGE)
        .execute()
      const failed = await this.deliver(due)
      if (failed || due.length < DELIVERY_PAGE || this.closed) return
    }
  }

  /** Deliver these rows in turn until one fails; whether one did (the rest wait: see receiverFailures). */
  private async deliver(due: ReadonlyArray<{ id: string; kind: string; payload: string; attempts: number; next_attempt_at: string }>): Promise<boolean> {
    for (const row of due) {
      if (this.closed) return false
      // Claim: move its next attempt past this one's timeout; another instance that read it too finds it moved.
      // From the time of the claim: the deliveries before it in this round may have taken a while.
      const claimed = await this.db
        .updateTable('alerts_sent')
        .set({ next_attempt_at: iso(Date.now() + this.options.timeoutMs * 2), attempts: row.attempts + 1 })
        .where('id', '=', row.id)
        .where('status', '=', 'pending')
        .where('next_attempt_at', '=', row.next_attempt_at)
        .executeTakeFirst()
      if (Number(claimed.numUpdatedRows) !== 1) continue
      const kind = row.kind as AlertKind
      // Raised when its condition held, maybe long ago (a receiver down for hours): a key extended
      // or revoked since, a budget changed, an upstream key removed, is no longer news. The row of
      // a key's or an upstream key's alert goes, so that should the condition come back, a check
      // raises it again; a budget alert's stays, marked: its figure is the period's first, which
      // tells the alerts of a changed budget apart (see record), and it must not be raised twice.
      if (!(await this.stillHolds(kind, row.payload))) {
        if (kind === 'budget') {
          await this.db.updateTable('alerts_sent').set({ status: 'dropped', last_error: 'its condition no longer held when it was due' }).where('id', '=', row.id).where('status', '=', 'pending').execute()
        } else {
          await this.db.deleteFrom('alerts_sent').where('id', '=', row.id).where('status', '=', 'pending').execute()
          // Its id is what record() remembers for these kinds: this instance may raise it again too.
          this.known.delete(row.id)
        }
        this.deps.logger.info('alert dropped before delivery: its condition no longer holds', { alert_id: row.id })
        continue
      }
      const failure = await this.post(row.id, row.payload)
      if (failure === null) {
        this.receiverFailures = 0
        await this.db.updateTable('alerts_sent').set({ status: 'sent', sent_at: iso(Date.now()), last_error: null }).where('id', '=', row.id).execute()
        this.sent.get(kind)?.inc()
        continue
      }
      const attempts = row.attempts + 1
      // Backed off by this alert's failures or the receiver's in a row, whichever is more.
      this.receiverFailures++
      const backoff = Math.min(this.options.retryMaxMs, this.options.retryBaseMs * 2 ** Math.min(20, Math.max(attempts, this.receiverFailures) - 1))
      // A receiver that says when to come back (429, 503 with Retry-After) is not called before then.
      const wait = Math.max(backoff, Math.min(failure.retryAfterMs ?? 0, MAX_RETRY_AFTER_MS))
      const error = failure.error
      this.holdUntil = Date.now() + wait
      await this.db
        .updateTable('alerts_sent')
        .set({ next_attempt_at: iso(Date.now() + wait), last_error: error.slice(0, 500) })
        .where('id', '=', row.id)
        .execute()
      this.failures.get(kind)?.inc()
      this.deps.logger.warn('alert webhook failed; will retry', { alert_id: row.id, attempts, retry_in_ms: wait, error, receiver: hostOf(this.options.webhookUrl) })
      this.scheduleRetry(wait)
      // The receiver failed: the other alerts due wait for the retry too, rather than each
      // costing a call (or a timeout) it would fail as well.
      return true
    }
    return false
  }

  /**
   * Whether what an alert tells is still so, asked just before it is sent; never stricter than
   * the check that raised it, so an alert it drops is not raised again while nothing changes. An
   * alert whose payload lacks what the question needs is sent as it is.
   *  - key_expiring: a key of the chain is active, not in its grace period, usable by its holder,
   *    and still expires at that time (extended or revoked: no; rotated: yes, the new key keeps
   *    the expiry). Its passing in the meantime does not count: that is what the alert warned of.
   *  - budget: the user or team is not deleted, or the chain has a live key, with a budget of the
   *    same figure (raised, lowered or removed: no; the check tells the new figure's thresholds).
   *  - upstream_key_dead: the catalog still has the key, and this instance has not seen it work since.
   */
  private async stillHolds(kind: AlertKind, payload: string): Promise<boolean> {
    const alert = fromJson<Partial<AlertPayload>>(payload)
    const subject = alert?.subject?.id
    const details = alert?.details
    if (typeof subject !== 'string' || details === undefined || details === null) return true
    if (kind === 'key_expiring') {
      if (typeof alert?.period !== 'string') return true
      const key = await this.db
        .selectFrom('api_keys')
        .select('id')
        .where((eb) => eb.or([eb('lineage_id', '=', subject), eb('id', '=', subject)]))
        .where('status', '=', 'active')
        .where('grace_until', 'is', null)
        .where('expires_at', '=', alert.period)
        .where(holderMayUse)
        .limit(1)
        .executeTakeFirst()
      return key !== undefined
    }
    if (kind === 'budget') {
      const told = details.budget as Budget | undefined
      if (told === undefined || typeof told !== 'object') return true
      const figure = budgetFigure(told)
      const type = alert?.subject?.type
      if (type === 'user' || type === 'team') {
        const row = await this.db.selectFrom(type === 'user' ? 'users' : 'teams').select('budget').where('id', '=', subject).where('deleted_at', 'is', null).executeTakeFirst()
        const now = parseBudget(row?.budget ?? null)
        return now !== null && budgetFigure(now) === figure
      }
      if (type !== 'key') return true
      const at = iso(this.deps.now())
      const keys = await this.db
        .selectFrom('api_keys')
        .select('budget')
        .where((eb) => eb.or([eb('lineage_id', '=', subject), eb('id', '=', subject)]))
        .where('budget', 'is not', null)
        .where('status', '=', 'active')
        .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', at)]))
        .where((eb) => eb.or([eb('grace_until', 'is', null), eb('grace_until', '>', at)]))
        .execute()
      return keys.some((k) => {
        const b = parseBudget(k.budget)
        return b !== null && budgetFigure(b) === figure
      })
    }
    if (kind === 'upstream_key_dead') {
      const { provider, key, failing_since: since } = details as { provider?: unknown; key?: unknown; failing_since?: unknown }
      if (typeof provider !== 'string' || typeof key !== 'string') return true
      if (!this.deps.upstreams.inCatalog(provider, key)) return false
      const seen = this.deps.upstreams.get(provider, key)
      // Worked since: an answer that says the key works ended the run of refusals after it began.
      const began = typeof since === 'string' ? Date.parse(since) : NaN
      return !(seen !== undefined && seen.authFailingSince === null && seen.lastAttemptAt > began)
    }
    return true
  }

  /** One timer for the earliest retry due; later ones are picked up by the round it starts. */
  private scheduleRetry(ms: number): void {
    const at = Date.now() + ms
    if (this.closed || (this.retryTimer && this.retryAt <= at)) return
    if (this.retryTimer) clearTimeout(this.retryTimer)
    this.retryAt = at
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined
      this.retryAt = Infinity
      void this.tick()
    }, ms)
    this.retryTimer.unref?.()
  }

  /**
   * POST one alert; null on a 2xx, else what went wrong (without the URL, which may hold a token).
   * Redirects are followed only where they keep the POST and its body (307, 308); a 301, 302 or
   * 303 would be followed with a GET that carries no alert, and a receiver answering that GET
   * would pass for one that took it: such a redirect is a failed delivery that says where it points.
   */
  private async post(id: string, payload: string): Promise<{ error: string; retryAfterMs?: number } | null> {
    const signal = AbortSignal.timeout(this.options.timeoutMs)
    let url = this.options.webhookUrl
    try {
      for (let hop = 0; ; hop++) {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'user-agent': 'sluice-alerts', 'x-sluice-alert-id': id },
          body: payload,
          signal,
          redirect: 'manual',
        })
        await res.arrayBuffer().catch(() => undefined)
        if (res.ok) return null
        if (res.status < 300 || res.status >= 400) {
          const waitMs = retryAfterMs(res.headers.get('retry-after'), Date.now())
          return waitMs === null ? { error: `HTTP ${res.status}` } : { error: `HTTP ${res.status} (Retry-After ${Math.ceil(waitMs / 1000)} s)`, retryAfterMs: waitMs }
        }
        const location = res.headers.get('location')
        const next = location === null ? null : URL.parse(location, url)
        if (next === null || !/^https?:$/.test(next.protocol)) return { error: `HTTP ${res.status} without a usable Location` }
        if ((res.status !== 307 && res.status !== 308) || hop >= MAX_REDIRECTS) {
          const why = hop >= MAX_REDIRECTS ? `more than ${MAX_REDIRECTS} redirects` : `a ${res.status} redirect would resend the alert as a GET without its body`
          return { error: `HTTP ${res.status} redirect to ${next.origin}: ${why}; set alerts.webhook_url to the address the receiver redirects to` }
        }
        url = next.href
      }
    } catch (error) {
      return { error: error instanceof Error ? `${error.name}: ${error.message}`.replaceAll(this.options.webhookUrl, '<webhook_url>') : String(error) }
    }
  }
}

/**
 * Delete rows of `alerts_sent` created before `cutoff` (ISO: the request log's retention) whose
 * period is over, so that the alert they stand for can never be raised again: an expiring key's
 * once that expiry has passed (the window holds keys not yet expired), a budget's once its day,
 * week or month has ended (a `total` budget's stays: its period never ends), a dead upstream
 * key's once its day has. Read `batch` rows at a time in (created_at, id) order, past the rows
 * that stay, each batch deleted in one short statement; returns how many went.
 */
export async function pruneAlerts(db: Kysely<Database>, cutoff: string, now: number, batch: number, stop: () => boolean = () => false): Promise<number> {
  let total = 0
  for (let after: { createdAt: string; id: string } | null = null; ; ) {
    const rows: Array<{ id: string; kind: string; period: string; created_at: string }> = await db
      .selectFrom('alerts_sent')
      .select(['id', 'kind', 'period', 'created_at'])
      .where('created_at', '<', cutoff)
      // A row value, not `a > x or (a = x and b > y)`: SQLite plans that OR as two index searches
      // and a sort of all they find, every batch; the tuple is one range of alerts_sent_created_at_idx.
      .$if(after !== null, (q) => q.where((eb) => eb(eb.refTuple('created_at', 'id'), '>', eb.tuple(after!.createdAt, after!.id))))
      .orderBy('created_at')
      .orderBy('id')
      .limit(batch)
      .execute()
    const over = rows.filter((r) => periodOver(r.kind, r.period, now)).map((r) => r.id)
    if (over.length > 0) {
      const result = await db.deleteFrom('alerts_sent').where('id', 'in', over).executeTakeFirst()
      total += Number(result.numDeletedRows)
    }
    if (rows.length < batch || stop()) return total
    const last = rows[rows.length - 1]!
    after = { createdAt: last.created_at, id: last.id }
    // A pause between batches, so the monitor's and other writes interleave.
    await Bun.sleep(10)
  }
}

/** Whether an alert of `kind` for `period` (as its row holds them) can no longer come again at `now`; unknown: false. */
function periodOver(kind: string, period: string, now: number): boolean {
  if (kind === 'key_expiring') {
    const expires = Date.parse(period)
    return Number.isFinite(expires) && expires <= now
  }
  if (kind !== 'budget' && kind !== 'upstream_key_dead') return false
  // `d2026-12-07`, `w2026-12-07` (its Monday), `m2026-12`, each perhaps followed by `+reset <time>`; `total…` never ends.
  const m = /^([dwm])(\d{4})-(\d{2})(?:-(\d{2}))?(?:$|\+)/.exec(period)
  if (m === null) return false
  const [, unit, y, mo, d] = m
  const year = Number(y)
  const month = Number(mo) - 1
  let end: number
  if (unit === 'm') {
    if (d !== undefined) return false
    end = Date.UTC(year, month + 1, 1)
  } else {
    if (d === undefined) return false
    end = Date.UTC(year, month, Number(d) + (unit === 'w' ? 7 : 1))
  }
  return end <= now
}

/** An alert's id, from its kind, subject, threshold and period (a changed budget's adds `@<figure>`). */
function alertBase(c: Candidate): string {
  return `${c.kind}:${c.subject.type}:${c.subject.id}:${c.threshold}:${c.period}`
}

/** Whether key `a` is newer than key `b` of the same lineage: a total order, so a lineage has one newest key. */
function newer(a: { id: string; createdAt: string; last: boolean }, b: { id: string; createdAt: string; last: boolean }): boolean {
  if (a.createdAt !== b.createdAt) return a.createdAt > b.createdAt
  if (a.last !== b.last) return a.last
  return a.id > b.id
}

function parseBudget(text: string | null): Budget | null {
  if (text === null) return null
  try {
    const b = JSON.parse(text) as Budget
    return b && typeof b === 'object' && typeof b.period === 'string' && (b.tokens || b.usd) ? b : null
  } catch {
    return null
  }
}

/** A budget's figures, as an alert id holds them: `200tokens`, `0.5usd`, `200tokens,0.5usd`. */
function budgetFigure(b: Budget): string {
  return [b.tokens ? `${b.tokens}tokens` : '', b.usd ? `${b.usd}usd` : ''].filter(Boolean).join(',')
}

/** A budget's period as the adjective an alert's message uses. */
const PERIOD_WORDS = { day: 'daily', week: 'weekly', month: 'monthly', total: 'total' } as const satisfies Record<Budget['period'], string>

/** What was spent of a budget, in words: `"85 of 100 tokens, $0.0000085 of $0.00001"`. */
export function describeSpend(used: { tokens: number; usd: number }, budget: Budget): string {
  const parts: string[] = []
  if (budget.tokens) parts.push(`${used.tokens} of ${budget.tokens} tokens`)
  if (budget.usd) parts.push(`${dollars(used.usd)} of ${dollars(budget.usd)}`)
  return parts.join(', ')
}

/** A budget's refusal in words: `"13 tokens left, less than the 31 tokens a request reserved"`. */
function describeRefusal(r: BudgetRefusal): string {
  const amount = (n: number) => (r.measure === 'budget_usd' ? dollars(n) : `${n} tokens`)
  return `${amount(r.left)} left, less than the ${amount(r.reserved)} a request reserved`
}

/**
 * USD for a person: cents from a dollar up (`$12.30`); below it, written out to four
 * significant digits with at least two decimals (`$0.50`, `$0.0042`, `$0.00001`), since budgets
 * go down to a millionth of a dollar and a fixed number of decimals shows a small one as `$0.0000`.
 */
export function dollars(usd: number): string {
  if (!Number.isFinite(usd)) return `$${usd}`
  const size = Math.abs(usd)
  if (size === 0 || size >= 1) return `$${usd.toFixed(2)}`
  const decimals = Math.min(100, Math.max(2, 3 - Math.floor(Math.log10(size))))
  // Zeros past the second decimal say nothing: 0.5000 is $0.50.
  return `$${usd.toFixed(decimals).replace(/(\.\d\d\d*?)0+$/, '$1')}`
}

function hostOf(url: string): string {
  try {
    return new URL(url).host
  } catch {
    return 'the webhook'
  }
}
