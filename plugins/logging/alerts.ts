import type { Kysely } from 'kysely'
import type { Database } from '../../src/db/schema.ts'
import { budgetPeriod, type Budget } from '../../src/limits.ts'
import type { Logger } from '../../src/lib/logger.ts'
import type { CounterSeries, MetricsRegistry } from '../../src/metrics.ts'
import type { UpstreamHealth } from '../../src/upstream-health.ts'
import { spendSince, type SpendColumn } from './repo.ts'

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
  id: string
  budget: string | null
}

interface Candidate {
  kind: AlertKind
  subject: AlertPayload['subject']
  threshold: number
  period: string
  message: string
  details: Record<string, unknown>
}

/** Alert ids this process knows are recorded, so a check does not ask the database again. */
const MAX_KNOWN = 10_000
/** Dead upstream keys looked at per check; the default page of expiring keys and of budget subjects. */
const MAX_PER_CHECK = 1000

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
  private readonly known = new Set<string>()
  private closed = false
  private readonly sent: Map<AlertKind, CounterSeries>
  private readonly failures: Map<AlertKind, CounterSeries>

  constructor(
    private readonly db: Kysely<Database>,
    private readonly options: AlertOptions,
    private readonly deps: { now: () => number; logger: Logger; upstreams: UpstreamHealth; environment: string; metrics: MetricsRegistry },
  ) {
    const sent = deps.metrics.counter({ name: 'sluice_alerts_sent_total', help: 'Alerts the webhook receiver accepted, by kind.', labelNames: ['kind'] })
    const failed = deps.metrics.counter({ name: 'sluice_alert_delivery_failures_total', help: 'Failed webhook deliveries (each is retried), by kind.', labelNames: ['kind'] })
    const kinds: AlertKind[] = ['key_expiring', 'budget', 'upstream_key_dead']
    this.sent = new Map(kinds.map((k) => [k, sent.labels(k)]))
    this.failures = new Map(kinds.map((k) => [k, failed.labels(k)]))
  }

  start(): void {
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
    if (this.timer) clearInterval(this.timer)
    if (this.retryTimer) clearTimeout(this.retryTimer)
    if (this.running) await Promise.race([this.running, Bun.sleep(timeoutMs)])
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
        .select(['id', 'user_id', 'team_id', 'name', 'start', 'end', 'environment', 'expires_at'])
        .where('status', '=', 'active')
        .where('grace_until', 'is', null)
        .where('expires_at', '>', from)
        .where('expires_at', '<=', until)
        .$if(after !== null, (q) =>
          q.where((eb) => eb.or([eb('expires_at', '>', after!.expiresAt), eb.and([eb('expires_at', '=', after!.expiresAt), eb('id', '>', after!.id)])])),
        )
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
      subject: { type: 'key', id: r.id },
      threshold: this.options.expiringWithinDays,
      // The expiry itself: a key whose expiry is moved is alerted again for the new date.
      period: r.expires_at!,
      message: `API key ${r.id} (${r.start}…${r.end}) of user ${r.user_id} expires at ${r.expires_at}, within ${this.options.expiringWithinDays} days. Rotate it or extend expires_at.`,
      details: { key_id: r.id, user_id: r.user_id, team_id: r.team_id, name: r.name, environment: r.environment, display: `${r.start}…${r.end}`, expires_at: r.expires_at },
    }))
  }

  private async budgets(): Promise<Candidate[]> {
    const now = this.deps.now()
    const at = iso(now)
    const size = this.options.budgetPageSize ?? MAX_PER_CHECK
    // Pages in id order, each starting after the last id of the one before: every subject is
    // seen once per check however many there are, and no query reads more than `size` rows.
    const pages: Array<['key' | 'user' | 'team', SpendColumn, (after: string | null) => Promise<Budgeted[]>]> = [
      [
        'key',
        'key_id',
        (after) =>
          this.db
            .selectFrom('api_keys')
            .select(['id', 'budget'])
            .where('budget', 'is not', null)
            .where('status', '=', 'active')
            .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', at)]))
            .$if(after !== null, (q) => q.where('id', '>', after!))
            .orderBy('id')
            .limit(size)
            .execute(),
      ],
      [
        'user',
        'user_id',
        (after) =>
          this.db
            .selectFrom('users')
            .select(['id', 'budget'])
            .where('budget', 'is not', null)
            .where('deleted_at', 'is', null)
            .$if(after !== null, (q) => q.where('id', '>', after!))
            .orderBy('id')
            .limit(size)
            .execute(),
      ],
      [
        'team',
        'team_id',
        (after) =>
          this.db
            .selectFrom('teams')
            .select(['id', 'budget'])
            .where('budget', 'is not', null)
            .where('deleted_at', 'is', null)
            .$if(after !== null, (q) => q.where('id', '>', after!))
            .orderBy('id')
            .limit(size)
            .execute(),
      ],
    ]
    const out: Candidate[] = []
    for (const [type, column, page] of pages) {
      for (let after: string | null = null; ; ) {
        const rows = await page(after)
        await this.budgetPage(type, column, rows, now, out)
        if (rows.length < size) break
        after = rows[rows.length - 1]!.id
      }
    }
    return out
  }

  /** The budget alerts of one page of subjects, added to `out`. */
  private async budgetPage(type: 'key' | 'user' | 'team', column: SpendColumn, rows: Budgeted[], now: number, out: Candidate[]): Promise<void> {
    // Subjects whose budgets share a period start are summed in one query.
    const byStart = new Map<string, Array<{ id: string; budget: Budget; label: string }>>()
    for (const r of rows) {
      const budget = parseBudget(r.budget)
      if (!budget) continue
      const period = budgetPeriod(budget.period, now)
      const start = period.start === null ? '' : iso(period.start)
      let list = byStart.get(start)
      if (!list) byStart.set(start, (list = []))
      list.push({ id: r.id, budget, label: period.label })
    }
    for (const [start, subjects] of byStart) {
      const spent = await spendSince(this.db, column, subjects.map((s) => s.id), start === '' ? null : start)
      for (const s of subjects) {
        const used = spent.get(s.id) ?? { tokens: 0, usd: 0 }
        const fraction = Math.max(s.budget.tokens ? used.tokens / s.budget.tokens : 0, s.budget.usd ? used.usd / s.budget.usd : 0)
        for (const threshold of this.options.budgetThresholds) {
          if (fraction < threshold) continue
          const pct = Math.round(threshold * 100)
          out.push({
            kind: 'budget',
            subject: { type, id: s.id },
            threshold,
            period: s.label,
            message: `The ${s.budget.period === 'total' ? 'total' : s.budget.period + 'ly'} budget of ${type} ${s.id} is ${pct >= 100 ? 'spent' : `${pct}% spent`} (${describeSpend(used, s.budget)}).`,
            details: { budget: s.budget, spent: { tokens: used.tokens, usd: used.usd }, fraction },
          })
        }
      }
    }
  }

  private deadKeys(): Candidate[] {
    const n = this.options.deadKeyFailures
    return this.deps.upstreams
      .list()
      .filter((k) => k.consecutiveAuthFailures >= n && k.authFailingSince !== null)
      .slice(0, MAX_PER_CHECK)
      .map((k) => ({
        kind: 'upstream_key_dead' as const,
        subject: { type: 'provider_key' as const, id: `${k.provider}/${k.key}` },
        threshold: n,
        // The UTC day this run of refusals began, not its instant: that instant is what this
        // process saw, and another instance (or this one after a restart) sees another, so the
        // id must not depend on it. Once per key and day; a key dead again on a later day is alerted again.
        period: budgetPeriod('day', k.authFailingSince!).label,
        message: `Upstream provider "${k.provider}" refused the gateway's key "${k.key}" ${k.consecutiveAuthFailures} times in a row (last HTTP ${k.lastStatus}). Fix or replace that provider key.`,
        details: { provider: k.provider, key: k.key, consecutive_failures: k.consecutiveAuthFailures, last_status: k.lastStatus, failing_since: iso(k.authFailingSince!) },
      }))
  }

  /** Remember an alert once, durably; the instance whose insert wins will send it. */
  private async record(c: Candidate): Promise<void> {
    const id = `${c.kind}:${c.subject.type}:${c.subject.id}:${c.threshold}:${c.period}`
    if (this.known.has(id)) return
    // Delivery bookkeeping runs on the wall clock; the rules (expiry, budget periods) on services.now.
    const now = Date.now()
    const payload: AlertPayload = { id, ...c, environment: this.deps.environment, at: iso(now) }
    await this.db
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
      .execute()
    if (this.known.size >= MAX_KNOWN) this.known.delete(this.known.values().next().value!)
    this.known.add(id)
  }

  /** Send every pending alert whose time has come; each is claimed first, so one instance sends it. */
  private async deliverDue(): Promise<void> {
    const now = Date.now()
    const due = await this.db
      .selectFrom('alerts_sent')
      .select(['id', 'kind', 'payload', 'attempts', 'next_attempt_at'])
      .where('status', '=', 'pending')
      .where('next_attempt_at', '<=', iso(now))
      .orderBy('next_attempt_at')
      .limit(100)
      .execute()
    for (const row of due) {
      if (this.closed) return
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
      const error = await this.post(row.id, row.payload)
      if (error === null) {
        await this.db.updateTable('alerts_sent').set({ status: 'sent', sent_at: iso(Date.now()), last_error: null }).where('id', '=', row.id).execute()
        this.sent.get(kind)?.inc()
        continue
      }
      const attempts = row.attempts + 1
      const wait = Math.min(this.options.retryMaxMs, this.options.retryBaseMs * 2 ** Math.min(20, attempts - 1))
      await this.db
        .updateTable('alerts_sent')
        .set({ next_attempt_at: iso(Date.now() + wait), last_error: error.slice(0, 500) })
        .where('id', '=', row.id)
        .execute()
      this.failures.get(kind)?.inc()
      this.deps.logger.warn('alert webhook failed; will retry', { alert_id: row.id, attempts, retry_in_ms: wait, error, receiver: hostOf(this.options.webhookUrl) })
      this.scheduleRetry(wait)
    }
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

  /** POST one alert; null on a 2xx, else what went wrong (without the URL, which may hold a token). */
  private async post(id: string, payload: string): Promise<string | null> {
    try {
      const res = await fetch(this.options.webhookUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'sluice-alerts', 'x-sluice-alert-id': id },
        body: payload,
        signal: AbortSignal.timeout(this.options.timeoutMs),
      })
      await res.arrayBuffer().catch(() => undefined)
      return res.ok ? null : `HTTP ${res.status}`
    } catch (error) {
      return error instanceof Error ? `${error.name}: ${error.message}`.replaceAll(this.options.webhookUrl, '<webhook_url>') : String(error)
    }
  }
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

function describeSpend(used: { tokens: number; usd: number }, budget: Budget): string {
  const parts: string[] = []
  if (budget.tokens) parts.push(`${used.tokens} of ${budget.tokens} tokens`)
  if (budget.usd) parts.push(`$${used.usd.toFixed(4)} of $${budget.usd}`)
  return parts.join(', ')
}

function hostOf(url: string): string {
  try {
    return new URL(url).host
  } catch {
    return 'the webhook'
  }
}
