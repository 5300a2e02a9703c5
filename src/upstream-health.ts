import { LATENCY_BUCKETS, STATUS_LABELS, type CounterSeries, type GaugeSeries, type HistogramSeries, type MetricsRegistry } from './metrics.ts'
import type { RouteTarget } from './models.ts'

/** What the gateway knows about one provider key from its last upstream attempts. */
export interface UpstreamKeyState {
  readonly provider: string
  readonly key: string
  /** From the last attempt: a 2xx or a request error (400, 404, 413…) says the key works; 401, 403, 429, 5xx and network errors say it does not. */
  readonly healthy: boolean
  /** HTTP status of the last attempt; 0 for a network error or timeout. */
  readonly lastStatus: number
  /** ms epoch of the last attempt. */
  readonly lastAttemptAt: number
  /** 401/403 answers in a row (a 2xx or a request error resets it; 429, 5xx and network errors leave it). */
  readonly consecutiveAuthFailures: number
  /** ms epoch of the first 401/403 of the current run of them; null when the run is 0. */
  readonly authFailingSince: number | null
  /**
   * A routing plugin stopped trying the key for its refusals (see {@link UpstreamHealth.retire}):
   * its run of 401/403 will not grow, so it is dead whatever its length. Cleared by an answer that says the key works.
   */
  readonly retired: boolean
}

/** Upstream keys remembered; more (run-time providers come and go) evict the least recently used. @default 10000 */
export const MAX_TRACKED_KEYS = 10_000

interface Entry extends UpstreamKeyState {
  healthy: boolean
  lastStatus: number
  lastAttemptAt: number
  consecutiveAuthFailures: number
  authFailingSince: number | null
  retired: boolean
  up: GaugeSeries
  attempts: Map<number, CounterSeries>
  latency: HistogramSeries
}

/**
 * Health of each upstream provider key, from every attempt the pipeline makes: the
 * `sluice_upstream_key_up` gauge, attempts by status, upstream latency, and the run of
 * 401/403 answers that marks a key as dead. A routing plugin may read it to steer
 * traffic; the logging plugin alerts on it. Bounded: at most {@link MAX_TRACKED_KEYS} keys.
 */
export class UpstreamHealth {
  /** provider id → key id → state: looked up on every attempt without building a string. */
  private readonly byProvider = new Map<string, Map<string, Entry>>()
  private size = 0
  /**
   * Keys evicted (the bound) whose `sluice_upstream_key_up` series stays: the catalog still has
   * them, and the gauge still tells their last attempt (a dead key, tried longest ago, is the first
   * evicted, and its 0 is what alerting reads). Oldest first, at most `maxKeys`; {@link retain}
   * takes the series of those the catalog drops. Touched only on eviction and a key's first attempt.
   */
  private readonly gaugeOnly = new Map<string, { provider: string; key: string }>()
  /** The keys the catalog has, as the last {@link retain} named them; until one, every key. */
  private catalogHas: (provider: string, key: string) => boolean = () => true
  private readonly watchers: Array<(state: UpstreamKeyState) => void> = []
  private readonly up
  private readonly attempts
  private readonly latency

  constructor(
    metrics: MetricsRegistry,
    private readonly now: () => number = Date.now,
    private readonly maxKeys = MAX_TRACKED_KEYS,
  ) {
    this.up = metrics.gauge({
      name: 'sluice_upstream_key_up',
      help: 'Whether the last upstream attempt with this provider key said the key works (1) or not (0: 401, 403, 429, 5xx, network error).',
      labelNames: ['provider', 'key'],
      // The tracked keys and the evicted ones whose series stays (gaugeOnly): a tracked key never folds into _overflow.
      maxSeries: maxKeys * 2,
    })
    this.attempts = metrics.counter({
      name: 'sluice_upstream_attempts_total',
      help: 'Upstream attempts by provider key and HTTP status (0: network error or timeout).',
      labelNames: ['provider', 'key', 'status'],
      maxSeries: 5000,
    })
    this.latency = metrics.histogram({
      name: 'sluice_upstream_duration_seconds',
      help: 'Time from sending an attempt upstream to its response headers (or its failure).',
      labelNames: ['provider'],
      buckets: LATENCY_BUCKETS,
      maxSeries: 200,
    })
  }

  /** Record one upstream attempt: its status (0: no answer) and how long it took. */
  record(target: RouteTarget, status: number, latencyMs: number): void {
    const entry = this.entry(target.provider.id, target.key.id)
    // A key taken away while this attempt ran (see retain): nothing to say about it.
    if (entry === undefined) return
    const now = this.now()
    entry.lastStatus = status
    entry.lastAttemptAt = now
    entry.healthy = worksWith(status)
    entry.up.set(entry.healthy ? 1 : 0)
    if (status === 401 || status === 403) {
      if (entry.consecutiveAuthFailures === 0) entry.authFailingSince = now
      entry.consecutiveAuthFailures++
      this.tell(entry)
    } else if (entry.healthy) {
      entry.consecutiveAuthFailures = 0
      entry.authFailingSince = null
      entry.retired = false
    }
    let counter = entry.attempts.get(status)
    if (!counter) {
      counter = this.attempts.labels(target.provider.id, target.key.id, STATUS_LABELS[status] ?? String(status))
      entry.attempts.set(status, counter)
    }
    counter.inc()
    entry.latency.observe(latencyMs / 1000)
  }

  /**
   * A routing plugin takes the key out of service for the provider's refusal (401/403) and will
   * not try it again until an operator acts (the balance plugin does at the first): alerts need
   * not wait for a run of refusals that cannot grow.
   */
  retire(provider: string, key: string): void {
    const entry = this.entry(provider, key)
    if (entry === undefined) return
    entry.retired = true
    this.tell(entry)
  }

  /**
   * Call `watcher` with a key's state each time the provider refuses it (401/403) and when a
   * routing plugin retires it, as it happens: the alerts record a dead key at once rather than at
   * their next check, which this instance may not live to make. It gets the live state (read it
   * there and then, keep nothing) and must not throw. Returns the function that stops it.
   */
  watch(watcher: (state: UpstreamKeyState) => void): () => void {
    this.watchers.push(watcher)
    return () => {
      const at = this.watchers.indexOf(watcher)
      if (at >= 0) this.watchers.splice(at, 1)
    }
  }

  /** Whether the catalog has this key, as the last {@link retain} said (every key before one). */
  inCatalog(provider: string, key: string): boolean {
    return this.catalogHas(provider, key)
  }

  /** The state of one key, if it was tried. */
  get(provider: string, key: string): UpstreamKeyState | undefined {
    return this.byProvider.get(provider)?.get(key)
  }

  /** Every key tried so far (at most the bound). */
  list(): UpstreamKeyState[] {
    const out: UpstreamKeyState[] = []
    for (const keys of this.byProvider.values()) for (const e of keys.values()) out.push(snapshot(e))
    return out
  }

  /**
   * Forget every key `has` does not name (its provider deleted, the key replaced at run time), and
   * its `sluice_upstream_key_up` series with it: a gauge left at 0 would keep an alert firing for a
   * key that no longer exists. Its attempts counters stay, as what happened. Called when the catalog changes.
   * `has` is kept: an attempt with a key it does not name that ends later (a request in flight
   * through the deletion) is not recorded, so it cannot bring the key's gauge back until the next change.
   */
  retain(has: (provider: string, key: string) => boolean): void {
    this.catalogHas = has
    for (const [provider, keys] of this.byProvider) {
      for (const key of keys.keys()) {
        if (has(provider, key)) continue
        keys.delete(key)
        this.size--
        this.up.remove(provider, key)
      }
      if (keys.size === 0) this.byProvider.delete(provider)
    }
    for (const [id, { provider, key }] of this.gaugeOnly) {
      if (has(provider, key)) continue
      this.gaugeOnly.delete(id)
      this.up.remove(provider, key)
    }
  }

  /** The key's entry, made on its first attempt; undefined for a key the catalog no longer has. */
  private entry(provider: string, key: string): Entry | undefined {
    let keys = this.byProvider.get(provider)
    const found = keys?.get(key)
    if (found) return found
    // Once per key (its first attempt), not per attempt: a known key is found above.
    if (!this.catalogHas(provider, key)) return undefined
    // Tracked again: its series is the entry's once more. Before the eviction, whose key then takes its
    // place among the kept series rather than push out the oldest of them.
    if (this.gaugeOnly.size > 0) this.gaugeOnly.delete(gaugeId(provider, key))
    if (this.size >= this.maxKeys) this.evictOne()
    if (!keys) this.byProvider.set(provider, (keys = new Map()))
    const entry: Entry = {
      provider,
      key,
      healthy: true,
      lastStatus: 0,
      lastAttemptAt: 0,
      consecutiveAuthFailures: 0,
      authFailingSince: null,
      retired: false,
      up: this.up.labels(provider, key),
      attempts: new Map(),
      latency: this.latency.labels(provider),
    }
    keys.set(key, entry)
    this.size++
    return entry
  }

  /** Refusals only, so never on the way of a request that works. */
  private tell(entry: Entry): void {
    for (const watcher of this.watchers) watcher(entry)
  }

  private evictOne(): void {
    let oldest: Entry | undefined
    for (const keys of this.byProvider.values()) for (const e of keys.values()) if (!oldest || e.lastAttemptAt < oldest.lastAttemptAt) oldest = e
    if (!oldest) return
    const keys = this.byProvider.get(oldest.provider)!
    keys.delete(oldest.key)
    if (keys.size === 0) this.byProvider.delete(oldest.provider)
    this.size--
    // A key the catalog no longer names takes its gauge with it; one it has keeps it (see gaugeOnly).
    if (!this.catalogHas(oldest.provider, oldest.key)) {
      this.up.remove(oldest.provider, oldest.key)
      return
    }
    if (this.gaugeOnly.size >= this.maxKeys) {
      const [id, first] = this.gaugeOnly.entries().next().value!
      this.gaugeOnly.delete(id)
      this.up.remove(first.provider, first.key)
    }
    this.gaugeOnly.set(gaugeId(oldest.provider, oldest.key), { provider: oldest.provider, key: oldest.key })
  }
}

/** A key's id in gaugeOnly; ids hold no NUL. */
const gaugeId = (provider: string, key: string): string => `${provider}\0${key}`

/** Does this status say the key itself works? A request error (400, 404…) is the client's, not the key's. */
function worksWith(status: number): boolean {
  if (status >= 200 && status < 300) return true
  if (status === 401 || status === 403 || status === 429) return false
  return status >= 400 && status < 500
}

function snapshot(e: Entry): UpstreamKeyState {
  return {
    provider: e.provider,
    key: e.key,
    healthy: e.healthy,
    lastStatus: e.lastStatus,
    lastAttemptAt: e.lastAttemptAt,
    consecutiveAuthFailures: e.consecutiveAuthFailures,
    authFailingSince: e.authFailingSince,
    retired: e.retired,
  }
}
