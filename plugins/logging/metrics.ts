import { LATENCY_BUCKETS, STATUS_LABELS, type CounterSeries, type HistogramSeries, type MetricsRegistry } from '../../src/metrics.ts'
import type { GatewayRequest, Outcome } from '../../src/plugin.ts'
import { outcomeCode } from './row.ts'
import type { BatchWriter } from './writer.ts'

/** The label value where a request has no model group, provider or code. */
const NONE = 'none'

interface ModelSeries {
  duration: HistogramSeries
  ttft: HistogramSeries
  prompt: CounterSeries
  completion: CounterSeries
  cached: CounterSeries
  cost: CounterSeries
}

/**
 * The logging plugin's metrics: requests by endpoint, status, code, model and provider;
 * latency to the last byte and time to first token; tokens and cost; refusals by code;
 * and the request-log queue (depth, rows written, failed writes, drops). The model label is
 * the configured model group (never the raw name a client sent), so it is bounded by the
 * config; every metric is bounded by the registry besides.
 */
export class RequestMetrics {
  private readonly requests
  private readonly rejections
  private readonly perModel = new Map<string, ModelSeries>()
  private readonly perCode = new Map<string, CounterSeries>()
  private readonly duration
  private readonly ttft
  private readonly tokens
  private readonly cost
  readonly writeErrors: CounterSeries
  readonly flushSeconds: HistogramSeries

  constructor(registry: MetricsRegistry, writer: () => BatchWriter<unknown> | undefined) {
    this.requests = registry.counter({
      name: 'sluice_requests_total',
      help: 'Requests through the pipeline by endpoint, status, error code (client_closed: the client left before the end; none: no error), model group and provider.',
      labelNames: ['endpoint', 'status', 'code', 'model', 'provider'],
      maxSeries: 5000,
    })
    this.rejections = registry.counter({
      name: 'sluice_rejections_total',
      help: 'Requests refused or failed, by error code.',
      labelNames: ['code'],
      maxSeries: 200,
    })
    this.duration = registry.histogram({
      name: 'sluice_request_duration_seconds',
      help: 'Time from a request\'s arrival to its last byte (or its error), by model group.',
      labelNames: ['model'],
      buckets: LATENCY_BUCKETS,
      maxSeries: 500,
    })
    this.ttft = registry.histogram({
      name: 'sluice_time_to_first_token_seconds',
      help: 'Time from a streamed request\'s arrival to the first byte of its body, by model group.',
      labelNames: ['model'],
      buckets: LATENCY_BUCKETS,
      maxSeries: 500,
    })
    this.tokens = registry.counter({
      name: 'sluice_tokens_total',
      help: 'Tokens used, by model group and type (prompt, completion, cached).',
      labelNames: ['model', 'type'],
      maxSeries: 1500,
    })
    this.cost = registry.counter({
      name: 'sluice_cost_usd_total',
      help: 'USD spent, by model group (where the model has pricing).',
      labelNames: ['model'],
      maxSeries: 500,
    })
    registry.gauge({
      name: 'sluice_request_log_queue_depth',
      help: 'Request-log rows waiting to be written to the database.',
      collect: (g) => g.set(writer()?.queue.size ?? 0),
    })
    registry.gauge({
      name: 'sluice_request_log_queue_capacity',
      help: 'Most request-log rows that may wait (the queue_size option); beyond it new rows are dropped.',
      collect: (g) => g.set(writer()?.queue.capacity ?? 0),
    })
    registry.counter({
      name: 'sluice_request_log_dropped_total',
      help: 'Request-log rows lost: queue_full (the queue bound was reached while the database did not keep up; the newest rows are dropped) or shutdown (still queued when the close timeout ran out).',
      labelNames: ['reason'],
      collect: (c) => {
        const w = writer()
        c.labels('queue_full').sync(w?.dropped.queue_full ?? 0)
        c.labels('shutdown').sync(w?.dropped.shutdown ?? 0)
      },
    })
    registry.counter({
      name: 'sluice_request_log_written_total',
      help: 'Request-log rows written to the database.',
      collect: (c) => c.labels().sync(writer()?.written ?? 0),
    })
    this.writeErrors = registry
      .counter({ name: 'sluice_request_log_write_errors_total', help: 'Failed request-log batch writes (their rows stay queued and are retried).' })
      .labels()
    this.flushSeconds = registry
      .histogram({ name: 'sluice_request_log_write_duration_seconds', help: 'Time to write one request-log batch.', buckets: LATENCY_BUCKETS })
      .labels()
  }

  /** Everything one finished request adds. */
  record(req: GatewayRequest, outcome: Outcome): void {
    const model = req.group?.name ?? NONE
    // The code the request's log row carries (client_closed for an abandoned one), so the two agree.
    const code = outcomeCode(outcome) ?? NONE
    this.requests.labels(req.endpoint, STATUS_LABELS[outcome.status] ?? String(outcome.status), code, model, req.target?.provider.id ?? NONE).inc()
    // Refusals and failures only: a client that left was refused nothing.
    if (outcome.errorCode !== null) {
      let rejected = this.perCode.get(code)
      if (!rejected) this.perCode.set(code, (rejected = this.rejections.labels(code)))
      rejected.inc()
    }
    let m = this.perModel.get(model)
    if (!m) {
      m = {
        duration: this.duration.labels(model),
        ttft: this.ttft.labels(model),
        prompt: this.tokens.labels(model, 'prompt'),
        completion: this.tokens.labels(model, 'completion'),
        cached: this.tokens.labels(model, 'cached'),
        cost: this.cost.labels(model),
      }
      // The groups are the configured models: this map is as bounded as the config (and capped anyway).
      if (this.perModel.size < 1000) this.perModel.set(model, m)
    }
    m.duration.observe(outcome.latencyMs / 1000)
    if (outcome.ttftMs !== null) m.ttft.observe(outcome.ttftMs / 1000)
    const usage = req.usage
    if (usage) {
      m.prompt.inc(usage.promptTokens)
      m.completion.inc(usage.completionTokens)
      m.cached.inc(usage.cachedTokens)
      if (usage.costUsd) m.cost.inc(usage.costUsd)
    }
  }
}
