/**
 * A small Prometheus metrics registry: counters, gauges and histograms with fixed buckets
 * and labels, rendered in the text exposition format 0.0.4 at `GET /metrics`.
 *
 * Built for the hot path: a series (one set of label values) is looked up through a tree
 * of maps keyed by each label value, so recording allocates nothing once the series
 * exists; callers that record on every request keep the series object itself. Every
 * metric holds at most `maxSeries` series: label combinations beyond it are folded into
 * one series whose labels all read `_overflow`, and the fold is counted in
 * `sluice_metrics_series_overflow_total{metric}`. No label value can grow memory without bound.
 */

/** Prometheus' content type for the text format this registry renders. */
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

/** Series per metric unless the metric says otherwise. @default 1000 */
export const DEFAULT_MAX_SERIES = 1000

/** The label value of the series that takes every combination beyond a metric's bound. */
export const OVERFLOW_LABEL = '_overflow'

/** Seconds: from 1 ms to 2 min, for request, upstream and time-to-first-token latencies. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120] as const

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/

export type MetricType = 'counter' | 'gauge' | 'histogram'

export interface MetricOptions {
  /** `[a-zA-Z_:][a-zA-Z0-9_:]*`; by convention `sluice_…`, counters end in `_total`. */
  name: string
  help: string
  /** Label names, in the order `labels(…)` takes their values. @default [] */
  labelNames?: readonly string[]
  /** Most series kept; more combinations fold into the `_overflow` series. @default 1000 */
  maxSeries?: number
}

export interface CounterOptions extends MetricOptions {
  /** Called on every scrape before rendering: copy totals kept elsewhere (a writer's drop count) with `sync`. */
  collect?: (counter: Counter) => void
}

export interface GaugeOptions extends MetricOptions {
  /** Called on every scrape before rendering: set the gauge from some other state (a queue's depth, a cache's hits). */
  collect?: (gauge: Gauge) => void
}

export interface HistogramOptions extends MetricOptions {
  /** Upper bounds, ascending; `+Inf` is implied. */
  buckets: readonly number[]
}

/** One series of a counter. */
export interface CounterSeries {
  readonly value: number
  /** Add `n` (default 1); negative amounts are ignored, as a counter only goes up. */
  inc(n?: number): void
  /** Set from a running total kept elsewhere (for collectors); a lower total is ignored. */
  sync(total: number): void
}

/** One series of a gauge. */
export interface GaugeSeries {
  readonly value: number
  set(value: number): void
  inc(n?: number): void
  dec(n?: number): void
}

/** One series of a histogram. */
export interface HistogramSeries {
  readonly count: number
  readonly sum: number
  observe(value: number): void
}

class Series {
  value = 0
  constructor(readonly labelText: string) {}
}

class CounterChild extends Series implements CounterSeries {
  inc(n = 1): void {
    if (n > 0) this.value += n
  }
  sync(total: number): void {
    if (total > this.value) this.value = total
  }
}

class GaugeChild extends Series implements GaugeSeries {
  set(value: number): void {
    this.value = value
  }
  inc(n = 1): void {
    this.value += n
  }
  dec(n = 1): void {
    this.value -= n
  }
}

class HistogramChild extends Series implements HistogramSeries {
  /** Per bucket, not cumulative; the last slot is the `+Inf`-only bucket. */
  readonly counts: Float64Array
  count = 0
  sum = 0
  constructor(
    labelText: string,
    private readonly bounds: readonly number[],
  ) {
    super(labelText)
    this.counts = new Float64Array(bounds.length + 1)
  }
  observe(value: number): void {
    if (Number.isNaN(value)) return
    const bounds = this.bounds
    let i = 0
    while (i < bounds.length && value > bounds[i]!) i++
    this.counts[i]!++
    this.count++
    this.sum += value
  }
}

type AnyChild = CounterChild | GaugeChild | HistogramChild

/** What every metric shares: its name, labels and bounded set of series. */
abstract class Metric<C extends AnyChild> {
  readonly name: string
  readonly help: string
  readonly labelNames: readonly string[]
  readonly maxSeries: number
  abstract readonly type: MetricType
  /** Series by label values, one map level per label. */
  private readonly tree = new Map<string, unknown>()
  private readonly all: C[] = []
  private overflowChild: C | undefined
  /** Label combinations that found no room. */
  overflowed = 0

  constructor(options: MetricOptions) {
    if (!NAME.test(options.name)) throw new Error(`metric name "${options.name}" is not a valid Prometheus name`)
    for (const l of options.labelNames ?? []) {
      if (!LABEL.test(l) || l.startsWith('__')) throw new Error(`metric ${options.name}: label name "${l}" is not valid`)
    }
    if (new Set(options.labelNames).size !== (options.labelNames ?? []).length) throw new Error(`metric ${options.name}: duplicate label names`)
    this.name = options.name
    this.help = options.help
    this.labelNames = options.labelNames ?? []
    this.maxSeries = options.maxSeries ?? DEFAULT_MAX_SERIES
    if (!Number.isInteger(this.maxSeries) || this.maxSeries < 1) throw new Error(`metric ${options.name}: maxSeries must be a positive integer`)
  }

  protected abstract create(labelText: string): C

  /**
   * The series for these label values (as many as `labelNames`, in order), created on first
   * use. Keep the result when recording on a hot path: the lookup is a few map reads.
   */
  labels(...values: string[]): C {
    const names = this.labelNames
    if (values.length !== names.length) throw new Error(`metric ${this.name} takes ${names.length} label values, got ${values.length}`)
    if (names.length === 0) return this.only()
    let node = this.tree
    const last = names.length - 1
    for (let i = 0; i < last; i++) {
      const next = node.get(values[i]!) as Map<string, unknown> | undefined
      if (next === undefined) return this.add(values)
      node = next
    }
    return (node.get(values[last]!) as C | undefined) ?? this.add(values)
  }

  /**
   * Drop the series of these label values, if there is one, so it is no longer rendered (a gauge
   * about something that no longer exists). The overflow series stays. Rare: not for a hot path.
   */
  remove(...values: string[]): void {
    const names = this.labelNames
    if (values.length !== names.length || names.length === 0) return
    // The maps from the root down to the leaf's: those left empty go too, or a label value gone
    // for good (a deleted provider) would keep a map of its own for the life of the process.
    const path: Array<Map<string, unknown>> = [this.tree]
    const last = names.length - 1
    for (let i = 0; i < last; i++) {
      const next = path[i]!.get(values[i]!) as Map<string, unknown> | undefined
      if (next === undefined) return
      path.push(next)
    }
    const child = path[last]!.get(values[last]!) as C | undefined
    if (child === undefined) return
    for (let i = last; i >= 0; i--) {
      path[i]!.delete(values[i]!)
      if (path[i]!.size > 0) break
    }
    const at = this.all.indexOf(child)
    if (at >= 0) this.all.splice(at, 1)
  }

  /** Every series, for rendering and for readers such as tests. */
  series(): readonly C[] {
    return this.all
  }

  /** The series of a metric without labels. */
  protected only(): C {
    if (this.all.length === 0) this.all.push(this.create(''))
    return this.all[0]!
  }

  private add(values: string[]): C {
    if (this.all.length >= this.maxSeries) {
      this.overflowed++
      if (!this.overflowChild) {
        this.overflowChild = this.create(labelText(this.labelNames, this.labelNames.map(() => OVERFLOW_LABEL)))
        // Not in the tree, and not counted against the bound: there is exactly one.
        this.all.push(this.overflowChild)
      }
      return this.overflowChild
    }
    const child = this.create(labelText(this.labelNames, values))
    let node = this.tree
    const last = values.length - 1
    for (let i = 0; i < last; i++) {
      let next = node.get(values[i]!) as Map<string, unknown> | undefined
      if (next === undefined) node.set(values[i]!, (next = new Map()))
      node = next
    }
    node.set(values[last]!, child)
    this.all.push(child)
    return child
  }

  abstract render(out: string[]): void
}

export class Counter extends Metric<CounterChild> {
  readonly type = 'counter' as const
  readonly collect: ((counter: Counter) => void) | undefined
  constructor(options: CounterOptions) {
    super(options)
    this.collect = options.collect
  }
  protected create(labelText: string): CounterChild {
    return new CounterChild(labelText)
  }
  /** Increment the series of a metric without labels. */
  inc(n = 1): void {
    this.only().inc(n)
  }
  get value(): number {
    return this.only().value
  }
  render(out: string[]): void {
    for (const s of this.series()) out.push(`${this.name}${s.labelText} ${formatValue(s.value)}`)
  }
}

export class Gauge extends Metric<GaugeChild> {
  readonly type = 'gauge' as const
  readonly collect: ((gauge: Gauge) => void) | undefined
  constructor(options: GaugeOptions) {
    super(options)
    this.collect = options.collect
  }
  protected create(labelText: string): GaugeChild {
    return new GaugeChild(labelText)
  }
  set(value: number): void {
    this.only().set(value)
  }
  get value(): number {
    return this.only().value
  }
  render(out: string[]): void {
    for (const s of this.series()) out.push(`${this.name}${s.labelText} ${formatValue(s.value)}`)
  }
}

export class Histogram extends Metric<HistogramChild> {
  readonly type = 'histogram' as const
  readonly buckets: readonly number[]
  private readonly bucketText: readonly string[]
  constructor(options: HistogramOptions) {
    super(options)
    if (options.labelNames?.includes('le')) throw new Error(`metric ${options.name}: "le" is reserved for histogram buckets`)
    const b = [...options.buckets]
    if (b.length === 0 || b.some((v, i) => !Number.isFinite(v) || (i > 0 && v <= b[i - 1]!))) {
      throw new Error(`metric ${options.name}: buckets must be finite and strictly ascending`)
    }
    this.buckets = b
    this.bucketText = [...b.map(formatValue), '+Inf']
  }
  protected create(labelText: string): HistogramChild {
    return new HistogramChild(labelText, this.buckets)
  }
  observe(value: number): void {
    this.only().observe(value)
  }
  render(out: string[]): void {
    for (const s of this.series()) {
      // `{a="x"}` becomes `{a="x",le="…"}`; no labels becomes `{le="…"}`.
      const open = s.labelText === '' ? '{' : s.labelText.slice(0, -1) + ','
      let cumulative = 0
      for (let i = 0; i < this.bucketText.length; i++) {
        cumulative += s.counts[i]!
        out.push(`${this.name}_bucket${open}le="${this.bucketText[i]}"} ${formatValue(cumulative)}`)
      }
      out.push(`${this.name}_sum${s.labelText} ${formatValue(s.sum)}`)
      out.push(`${this.name}_count${s.labelText} ${formatValue(s.count)}`)
    }
  }
}

export type AnyMetric = Counter | Gauge | Histogram

/**
 * The metrics of one gateway. Core and plugins register here (`services.metrics`) at boot;
 * registering the same name again with the same type and labels returns the existing
 * metric, anything else is a boot error.
 */
export class MetricsRegistry {
  private readonly metrics = new Map<string, AnyMetric>()

  counter(options: CounterOptions): Counter {
    return this.register(options, 'counter', () => new Counter(options))
  }

  gauge(options: GaugeOptions): Gauge {
    return this.register(options, 'gauge', () => new Gauge(options))
  }

  histogram(options: HistogramOptions): Histogram {
    return this.register(options, 'histogram', () => new Histogram(options))
  }

  /** A registered metric by name. */
  get(name: string): AnyMetric | undefined {
    return this.metrics.get(name)
  }

  /** Every metric in the text exposition format 0.0.4. */
  render(): string {
    const out: string[] = []
    const overflow: string[] = []
    for (const metric of this.metrics.values()) {
      if (metric.type !== 'histogram' && metric.collect) {
        try {
          ;(metric.collect as (m: typeof metric) => void)(metric)
        } catch {
          // A failing collector leaves its last values; the scrape itself must not fail.
        }
      }
      out.push(`# HELP ${metric.name} ${escapeHelp(metric.help)}`, `# TYPE ${metric.name} ${metric.type}`)
      metric.render(out)
      if (metric.overflowed > 0) overflow.push(`sluice_metrics_series_overflow_total{metric="${metric.name}"} ${metric.overflowed}`)
    }
    out.push(
      '# HELP sluice_metrics_series_overflow_total Label combinations folded into a metric\'s _overflow series because it reached its series bound.',
      '# TYPE sluice_metrics_series_overflow_total counter',
      ...overflow,
    )
    return out.join('\n') + '\n'
  }

  private register<M extends AnyMetric>(options: MetricOptions, type: MetricType, make: () => M): M {
    const existing = this.metrics.get(options.name)
    if (existing) {
      const same = existing.type === type && existing.labelNames.join(',') === (options.labelNames ?? []).join(',')
      if (!same) throw new Error(`metric ${options.name} is already registered as a ${existing.type} with labels [${existing.labelNames.join(', ')}]`)
      return existing as M
    }
    if (options.name === 'sluice_metrics_series_overflow_total') throw new Error(`metric name ${options.name} is reserved`)
    const metric = make()
    this.metrics.set(options.name, metric)
    return metric
  }
}

/** `{a="x",b="y"}`, escaped, computed once per series. */
function labelText(names: readonly string[], values: readonly string[]): string {
  if (names.length === 0) return ''
  let text = '{'
  for (let i = 0; i < names.length; i++) {
    if (i > 0) text += ','
    text += `${names[i]}="${escapeLabel(values[i]!)}"`
  }
  return text + '}'
}

const escapeLabel = (v: string): string => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
const escapeHelp = (v: string): string => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')

/** A sample value as Prometheus reads it. */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN'
  if (v === Infinity) return '+Inf'
  if (v === -Infinity) return '-Inf'
  return String(v)
}

/** Status codes as label values, made once: `String(status)` on every request would allocate. */
export const STATUS_LABELS: readonly string[] = Array.from({ length: 600 }, (_, i) => String(i))

/** `2xx`, `4xx`… for a status (`0` for no answer, as for a network error). */
export const statusClass = (status: number): string => (status >= 100 && status < 600 ? CLASSES[(status / 100) | 0]! : '0')
const CLASSES = ['0', '1xx', '2xx', '3xx', '4xx', '5xx'] as const
