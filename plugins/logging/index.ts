import { Type } from '@sinclair/typebox'
import type { RequestLogInsert } from '../../src/db/schema.ts'
import { definePlugin, type PluginHooks } from '../../src/plugin.ts'
import { EARLIEST_TIME } from '../../src/lib/rfc3339.ts'
import { analyticsRoutes } from './admin.ts'
import { AlertMonitor, pruneAlerts } from './alerts.ts'
import { RequestMetrics } from './metrics.ts'
import { deleteOlderThan } from './repo.ts'
import { logFields, toRow } from './row.ts'
import { reportDatabase } from './report-thread.ts'
import { requestLogSink, sqliteFileOf } from './sink.ts'
import { BatchWriter } from './writer.ts'
import { MAX_TIMER_MS } from '../../src/config/schema.ts'

const Alerts = Type.Object(
  {
    /** Where alerts are POSTed as JSON (http or https). */
    webhook_url: Type.String({ pattern: '^https?://', maxLength: 2048 }),
    /** Alert on active keys expiring within this many days. @default 7 */
    expiring_within_days: Type.Integer({ minimum: 1, maximum: 365, default: 7 }),
    /** Alert when a key's, user's or team's budget for its current period is spent this far (fractions). @default [0.8, 1] */
    budget_thresholds: Type.Array(Type.Number({ exclusiveMinimum: 0, maximum: 10 }), { minItems: 1, maxItems: 10, default: [0.8, 1] }),
    /** How often the conditions are checked. @default 60000 */
    check_ms: Type.Integer({ minimum: 50, maximum: MAX_TIMER_MS, default: 60_000 }),
    /** An upstream key is dead after this many 401/403 answers in a row, or at its first when the routing plugin stops trying it (the balance plugin does). @default 1 */
    dead_key_failures: Type.Integer({ minimum: 1, maximum: 1000, default: 1 }),
    /** First wait after a failed delivery; doubled each time. @default 1000 */
    retry_base_ms: Type.Integer({ minimum: 10, maximum: MAX_TIMER_MS, default: 1000 }),
    /** Longest wait between deliveries of one alert. @default 300000 */
    retry_max_ms: Type.Integer({ minimum: 10, maximum: MAX_TIMER_MS, default: 300_000 }),
    /** A webhook call that takes longer has failed. @default 5000 */
    timeout_ms: Type.Integer({ minimum: 10, maximum: MAX_TIMER_MS, default: 5000 }),
  },
  { additionalProperties: false },
)

const Options = Type.Object(
  {
    /** Request-log rows that may wait for the database; beyond it new rows are dropped and counted. @default 100000 */
    queue_size: Type.Integer({ minimum: 1, maximum: 10_000_000, default: 100_000 }),
    /** Rows per database write. @default 500 */
    batch_size: Type.Integer({ minimum: 1, maximum: 1000, default: 500 }),
    /** A partial batch is written this long after its first row. @default 200 */
    flush_ms: Type.Integer({ minimum: 1, maximum: 60_000, default: 200 }),
    /** First wait after a failed write; doubled on each failure in a row. @default 100 */
    retry_base_ms: Type.Integer({ minimum: 1, maximum: MAX_TIMER_MS, default: 100 }),
    /** Longest wait between retries of a failed write. @default 2000 */
    retry_max_ms: Type.Integer({ minimum: 1, maximum: MAX_TIMER_MS, default: 2000 }),
    /** A write that takes longer has failed (and is retried; writes are idempotent). On Postgres the database stops it then and rolls it back, so it never lands later. @default 10000 */
    write_timeout_ms: Type.Integer({ minimum: 10, maximum: MAX_TIMER_MS, default: 10_000 }),
    /** Write from a separate thread with its own connection (SQLite files and Postgres; in-memory SQLite always writes inline). @default true */
    writer_thread: Type.Boolean({ default: true }),
    /** On shutdown, how long to keep writing what waits; rows left after it are dropped and counted. @default 5000 */
    close_timeout_ms: Type.Integer({ minimum: 0, maximum: MAX_TIMER_MS, default: 5000 }),
    /** Rows older than this many days are deleted (and alerts_sent rows whose period is over); 0 keeps everything. @default 30 */
    retention_days: Type.Number({ minimum: 0, default: 30 }),
    /** How often old rows are deleted. @default 600000 */
    retention_check_ms: Type.Integer({ minimum: 10, maximum: MAX_TIMER_MS, default: 600_000 }),
    /** Rows per delete statement, so no statement holds the table for long. @default 1000 */
    retention_batch: Type.Integer({ minimum: 1, maximum: 100_000, default: 1000 }),
    /**
     * Take the client address from `X-Forwarded-For` (only behind proxies you run): a number of
     * proxies takes the entry they appended (that many from the right), which no client can set;
     * true takes the first entry, which a client writes itself unless the proxy overwrites the header. @default false
     */
    trust_proxy: Type.Union([Type.Boolean(), Type.Integer({ minimum: 1, maximum: 16 })], { default: false }),
    /** One JSON line per request on stdout, at level info. @default true */
    log_requests: Type.Boolean({ default: true }),
    /** `redacted` adds the request body to that line with contents replaced by their length and secrets masked. @default "off" */
    log_bodies: Type.Union([Type.Literal('off'), Type.Literal('redacted')], { default: 'off' }),
    /** Webhook alerts; off when absent. */
    alerts: Type.Optional(Alerts),
  },
  { additionalProperties: false },
)

/** The plugin's hooks, with the handles an operator (or a test) may call on the loaded plugin. */
export interface LoggingHooks extends PluginHooks {
  stats(): { queued: number; written: number; dropped: number; write_errors: number }
  /** Delete rows past the retention now (what the timer does). */
  prune(): Promise<void>
  /** Check the alert conditions and deliver what is due now (what the timer does); undefined without alerts. */
  checkAlerts(): Promise<void> | undefined
}

/**
 * Every request recorded: a `request_logs` row written in batches through a bounded queue, a
 * structured log line, Prometheus metrics; usage and log queries on the admin API; retention;
 * webhook alerts on expiring keys, budgets and dead upstream keys. Nothing here runs before the
 * response is sent.
 */
export const logging = definePlugin({
  name: 'logging',
  options: Options,
  setup({ options, config, services, logger }) {
    const db = services.db
    // Outage and drop lines are rate-limited (each kind on its own), not one per retry or per row.
    let lastWarn = 0
    let lastDropWarn = 0
    let closing = false
    const metrics = new RequestMetrics(services.metrics, () => writer as BatchWriter<unknown>)
    const sink = requestLogSink(db, { maxRowsPerStatement: options.batch_size, databaseUrl: config.databaseUrl, thread: options.writer_thread, writeTimeoutMs: options.write_timeout_ms })
    const writer: BatchWriter<RequestLogInsert> = new BatchWriter(
      sink.write,
      {
        queueSize: options.queue_size,
        batchSize: options.batch_size,
        flushMs: options.flush_ms,
        retryBaseMs: options.retry_base_ms,
        retryMaxMs: options.retry_max_ms,
        writeTimeoutMs: options.write_timeout_ms,
      },
      {
        written: (_rows, ms) => metrics.flushSeconds.observe(ms / 1000),
        failed(error, inARow, retryInMs) {
          metrics.writeErrors.inc()
          if (inARow === 1 || Date.now() - lastWarn > 10_000) {
            lastWarn = Date.now()
            logger.warn('could not write request logs; the rows stay queued and are retried', {
              error: String(error),
              failures_in_a_row: inARow,
              retry_in_ms: retryInMs,
              queued: writer.queue.size,
              queue_size: options.queue_size,
            })
          }
        },
        recovered: (inARow) => logger.info('request logs are being written again', { failed_writes: inARow, queued: writer.queue.size }),
        dropped(reason, rows) {
          if (Date.now() - lastDropWarn > 10_000 || reason === 'shutdown') {
            lastDropWarn = Date.now()
            logger.error('request log rows dropped', { reason, rows, dropped_total: writer.dropped.queue_full + writer.dropped.shutdown, queue_size: options.queue_size })
          }
        },
      },
    )

    // Retention: old rows go in small batches, with a pause between them so live writes interleave.
    let retention: ReturnType<typeof setInterval> | undefined
    let pruning: Promise<void> | null = null
    const prune = async () => {
      const cutoffMs = services.now() - options.retention_days * 86_400_000
      // Stored times are years 0000 to 9999: none is older than a cutoff before them (which Date may not even hold).
      if (!(cutoffMs >= EARLIEST_TIME)) return
      const cutoff = new Date(cutoffMs).toISOString()
      let total = 0
      for (;;) {
        const n = await deleteOlderThan(db.db, cutoff, options.retention_batch)
        total += n
        if (n < options.retention_batch || closing) break
        await Bun.sleep(10)
      }
      if (total > 0) logger.info('deleted old request logs', { rows: total, older_than: cutoff })
      // Alerts remembered for periods that are over and older than the logs kept can never come again.
      const alertRows = await pruneAlerts(db.db, cutoff, services.now(), options.retention_batch, () => closing)
      if (alertRows > 0) logger.info('deleted old alerts_sent rows', { rows: alertRows, older_than: cutoff })
    }
    const runPrune = () => {
      pruning ??= prune()
        .catch((error: unknown) => logger.warn('could not delete old request logs; will try again', { error: String(error) }))
        .finally(() => {
          pruning = null
        })
      return pruning
    }
    if (options.retention_days > 0) {
      retention = setInterval(() => void runPrune(), options.retention_check_ms)
      retention.unref?.()
    }

    let alerts: AlertMonitor | undefined
    if (options.alerts) {
      const a = options.alerts
      try {
        new URL(a.webhook_url)
      } catch {
        throw new Error('option alerts.webhook_url is not a valid URL')
      }
      alerts = new AlertMonitor(
        db.db,
        {
          webhookUrl: a.webhook_url,
          expiringWithinDays: a.expiring_within_days,
          budgetThresholds: [...a.budget_thresholds].sort((x, y) => x - y),
          checkMs: a.check_ms,
          deadKeyFailures: a.dead_key_failures,
          retryBaseMs: a.retry_base_ms,
          retryMaxMs: a.retry_max_ms,
          timeoutMs: a.timeout_ms,
          retentionDays: options.retention_days,
        },
        // Read at each check: the quota plugin may be set up after this one.
        {
          now: services.now,
          logger,
          upstreams: services.upstreams,
          environment: config.environment,
          metrics: services.metrics,
          budgets: () => services.budgets,
          // The queue's head: rows are queued as their requests end, so about the oldest waiting (see SpendCache's lag).
          pendingSince: () => writer.queue.peek(1)[0]?.at ?? null,
        },
      )
      alerts.start()
    }

    const logLines = options.log_requests && logger.enabled('info')
    // On a SQLite file, admin reports read from a thread of their own: bun:sqlite holds the thread
    // that runs a statement, and an aggregate over a big table held every request for seconds.
    const reportFile = sqliteFileOf(db, config.databaseUrl)
    const reports = reportFile === null ? null : reportDatabase(reportFile)

    const hooks: LoggingHooks = {
      onComplete(req, outcome) {
        // Arrival, from the time elapsed since it until now: this hook may run well after the request
        // ended (hooks before it, a usage the tokenizer counted, a busy loop), which latency_ms leaves out.
        const row = toRow(req, outcome, services.now() - (performance.now() - req.startedAt), config.environment, options.trust_proxy)
        writer.push(row)
        metrics.record(req, outcome)
        if (logLines) logger.info('request', logFields(row, req, outcome, options.log_bodies))
      },
      routes(app) {
        app.use(analyticsRoutes(services, options.retention_days, reports))
      },
      stats: () => ({
        queued: writer.queue.size,
        written: writer.written,
        dropped: writer.dropped.queue_full + writer.dropped.shutdown,
        write_errors: writer.errors,
      }),
      prune: runPrune,
      checkAlerts: () => alerts?.tick(),
      async close() {
        closing = true
        if (retention) clearInterval(retention)
        await Promise.all([alerts?.close(options.close_timeout_ms), pruning ? Promise.race([pruning, Bun.sleep(options.close_timeout_ms)]) : undefined])
        await writer.close(options.close_timeout_ms)
        await Promise.all([sink.close(), reports?.destroy()])
        // The batch being written at the deadline, if any, is counted (and reported) before close returns.
        await writer.settled(1000)
      },
    }
    return hooks
  },
})
