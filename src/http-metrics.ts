import { LATENCY_BUCKETS, STATUS_LABELS, statusClass, type CounterSeries, type HistogramSeries, type MetricsRegistry } from './metrics.ts'
import { defaultLogWriter, type Logger } from './lib/logger.ts'
import { memoryProfile } from './lib/memory.ts'
import type { LoadedPlugin } from './pipeline.ts'

/** The route label of a path no route serves. */
export const UNMATCHED_ROUTE = 'unmatched'

/** What one response costs to record: a map read, a counter increment, a histogram observation. */
export interface HttpMetrics {
  record(url: string, status: number, latencyMs: number): void
}

/**
 * `sluice_http_requests_total{route,status}` and `sluice_http_request_duration_seconds{route,status_class}`
 * for every request the server answers, whatever plugins run. The route label is the route's
 * path pattern (`/v1/chat/completions`, `/admin/keys/:id`), so it is bounded by the routes that
 * exist; a path no route serves is `unmatched`. Series are made on first use and kept by a
 * numeric key: recording a response allocates nothing.
 */
export function createHttpMetrics(registry: MetricsRegistry, routes: readonly { method: string; path: string }[]): HttpMetrics {
  const requests = registry.counter({
    name: 'sluice_http_requests_total',
    help: 'HTTP requests answered, by route pattern and status.',
    labelNames: ['route', 'status'],
  })
  const duration = registry.histogram({
    name: 'sluice_http_request_duration_seconds',
    help: 'Time from a request\'s arrival to its response headers (for a stream: its start), by route pattern and status class.',
    labelNames: ['route', 'status_class'],
    buckets: LATENCY_BUCKETS,
  })

  const names: string[] = [UNMATCHED_ROUTE]
  const exact = new Map<string, number>()
  const patterns: Array<{ pattern: RegExp; index: number }> = []
  for (const { path } of routes) {
    if (exact.has(path) || patterns.some((p) => names[p.index] === path)) continue
    const index = names.push(path) - 1
    if (/[:*]/.test(path)) {
      patterns.push({ pattern: new RegExp('^' + path.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/:[^/]+/g, '[^/]+').replace(/\*/g, '.*') + '/?$'), index })
    } else exact.set(path, index)
  }
  const routeOf = (path: string): number => {
    const hit = exact.get(path)
    if (hit !== undefined) return hit
    // The router serves a path with a trailing slash as the path without it (/health/ as /health).
    if (path.length > 1 && path.endsWith('/')) {
      const bare = exact.get(path.slice(0, -1))
      if (bare !== undefined) return bare
    }
    for (const p of patterns) if (p.pattern.test(path)) return p.index
    return 0
  }

  const series = new Map<number, { count: CounterSeries; time: HistogramSeries }>()
  return {
    record(url, status, latencyMs) {
      // The path of an absolute URL: after the authority, before the query.
      const start = url.indexOf('/', url.indexOf('//') + 2)
      const query = url.indexOf('?', start)
      const path = start < 0 ? '/' : query < 0 ? url.slice(start) : url.slice(start, query)
      const key = routeOf(path) * 1000 + (status > 0 && status < 1000 ? status : 0)
      let s = series.get(key)
      if (!s) {
        const route = names[Math.floor(key / 1000)]!
        s = { count: requests.labels(route, STATUS_LABELS[status] ?? String(status)), time: duration.labels(route, statusClass(status)) }
        series.set(key, s)
      }
      s.count.inc()
      s.time.observe(latencyMs / 1000)
    },
  }
}

/**
 * Gauges read at scrape time: process memory and uptime, lines the log writer dropped, and
 * the `stats()` of every plugin that has one (the auth plugin's key cache hits and misses).
 */
export function registerProcessMetrics(registry: MetricsRegistry, plugins: readonly LoadedPlugin[], logger: Logger): void {
  const startedAt = Date.now() / 1000
  registry.gauge({
    name: 'process_resident_memory_bytes',
    help: 'Resident memory of the gateway process.',
    collect: (g) => g.set(process.memoryUsage.rss()),
  })
  registry.gauge({ name: 'process_start_time_seconds', help: 'When the gateway process started, seconds since the epoch.', collect: (g) => g.set(startedAt) })
  // What the memory profile acts on (src/lib/memory.ts): the JavaScript heap next to the RSS. Read
  // from process.memoryUsage(), well under a millisecond (heapStats() walks the heap: ~16 ms).
  // (Bun's heapTotal counts the heap's blocks but not its large objects, so it can read below heapUsed: left out.)
  registry.gauge({ name: 'sluice_js_heap_used_bytes', help: 'JavaScript heap size: live objects and garbage not yet collected.', collect: (g) => g.set(process.memoryUsage().heapUsed) })
  registry.gauge({ name: 'sluice_js_external_memory_bytes', help: 'Memory outside the JavaScript heap that heap objects hold (buffers), freed when they are collected.', collect: (g) => g.set(process.memoryUsage().external) })
  // Fixed when the process started: read once.
  let profile: string
  try {
    profile = memoryProfile()
  } catch {
    profile = 'unknown'
  }
  const inForce = [profile, process.env.MIMALLOC_PURGE_DELAY ?? 'default', process.env.BUN_JSC_heapGrowthMaxIncrease ?? 'default']
  registry.gauge({
    name: 'sluice_memory_profile',
    help: 'The memory profile (SLUICE_MEMORY) and the settings in force (1 on the one series).',
    labelNames: ['profile', 'allocator_purge_delay', 'heap_growth_max_increase'],
    collect: (g) => g.labels(...inForce).set(1),
  })
  registry.counter({
    name: 'sluice_log_lines_dropped_total',
    help: 'Log lines dropped because stdout or stderr did not keep up (the writer waits, bounded, then drops).',
    collect: (c) => {
      const w = defaultLogWriter()
      c.labels().sync(w.stdout.dropped + w.stderr.dropped)
    },
  })
  const withStats = plugins.filter((p) => typeof p.hooks.stats === 'function')
  if (withStats.length === 0) return
  // A stats() that throws is logged the first time only: it is read at every scrape.
  const failed = new Set<string>()
  const safeStats = (plugin: LoadedPlugin): Record<string, number> => {
    try {
      return plugin.hooks.stats?.() ?? {}
    } catch (error) {
      if (!failed.has(plugin.name)) {
        failed.add(plugin.name)
        logger.error('stats hook failed (logged once; its series are left out of /metrics)', { plugin: plugin.name, error: String(error) })
      }
      return {}
    }
  }
  const read = () => withStats.map((p) => ({ name: p.name, stats: safeStats(p) }))
  registry.gauge({
    name: 'sluice_plugin_stat',
    help: 'Counters a plugin reports through its stats() hook (for auth: key cache hits and misses).',
    labelNames: ['plugin', 'stat'],
    maxSeries: 200,
    collect: (g) => {
      for (const p of read()) for (const [stat, value] of Object.entries(p.stats)) if (Number.isFinite(value)) g.labels(p.name, stat).set(value)
    },
  })
  registry.gauge({
    name: 'sluice_plugin_cache_hit_ratio',
    help: 'hits / (hits + misses) of a plugin\'s cache since start (for auth: the key cache); absent before the first lookup.',
    labelNames: ['plugin'],
    maxSeries: 50,
    collect: (g) => {
      for (const p of read()) {
        const { hits, misses } = p.stats
        if (typeof hits === 'number' && typeof misses === 'number' && hits + misses > 0) g.labels(p.name).set(hits / (hits + misses))
      }
    },
  })
}
