import { describe, expect, test } from 'bun:test'
import { MetricsRegistry } from './metrics.ts'
import type { ProviderRuntime, RouteTarget } from './models.ts'
import { UpstreamHealth } from './upstream-health.ts'

/** A target as the pipeline records it; only the provider's and the key's ids are read. */
const target = (provider: string, key: string): RouteTarget => ({
  provider: { id: provider } as ProviderRuntime,
  key: { id: key, secret: 'x' },
  model: 'm',
  group: 'g',
})

const upSeries = (metrics: MetricsRegistry) =>
  metrics.render().split('\n').filter((l) => l.startsWith('sluice_upstream_key_up{'))

describe('upstream health of keys the catalog takes away', () => {
  test('an attempt that ends after its key was taken away (retain) is not recorded: no state, no gauge, until the catalog has the key again', () => {
    const metrics = new MetricsRegistry()
    const health = new UpstreamHealth(metrics)
    health.record(target('p', 'a'), 401, 5)
    health.record(target('p', 'b'), 200, 5)
    health.retain((provider, key) => provider === 'p' && key === 'b')
    expect(health.get('p', 'a')).toBeUndefined()
    expect(upSeries(metrics)).toEqual(['sluice_upstream_key_up{provider="p",key="b"} 1'])

    // A request in flight through the deletion ends now.
    health.record(target('p', 'a'), 401, 5)
    health.retire('p', 'a')
    health.record(target('q', 'new'), 200, 5)
    expect(health.get('p', 'a')).toBeUndefined()
    expect(health.get('q', 'new')).toBeUndefined()
    expect(health.list().map((k) => `${k.provider}/${k.key}`)).toEqual(['p/b'])
    expect(upSeries(metrics)).toEqual(['sluice_upstream_key_up{provider="p",key="b"} 1'])

    // The catalog has it again (a provider made anew under the same id): tracked afresh.
    health.retain(() => true)
    health.record(target('p', 'a'), 200, 5)
    expect(health.get('p', 'a')).toMatchObject({ healthy: true, consecutiveAuthFailures: 0 })
    expect(upSeries(metrics)).toContain('sluice_upstream_key_up{provider="p",key="a"} 1')
  })

  test('before the catalog first says which keys it has, every key is tracked', () => {
    const metrics = new MetricsRegistry()
    const health = new UpstreamHealth(metrics)
    health.record(target('p', 'a'), 403, 5)
    expect(health.get('p', 'a')).toMatchObject({ consecutiveAuthFailures: 1, lastStatus: 403 })
  })
})

describe('watching refusals', () => {
  test('a watcher hears each 401/403 and each retirement, as it happens, and nothing else; unwatched, nothing', () => {
    const health = new UpstreamHealth(new MetricsRegistry())
    const heard: string[] = []
    const stop = health.watch((k) => heard.push(`${k.provider}/${k.key} ${k.lastStatus} ${k.consecutiveAuthFailures}${k.retired ? ' retired' : ''}`))
    health.record(target('p', 'a'), 200, 5)
    health.record(target('p', 'a'), 429, 5)
    health.record(target('p', 'a'), 500, 5)
    health.record(target('p', 'a'), 401, 5)
    health.record(target('p', 'a'), 403, 5)
    health.retire('p', 'a')
    expect(heard).toEqual(['p/a 401 1', 'p/a 403 2', 'p/a 403 2 retired'])
    stop()
    health.record(target('p', 'a'), 401, 5)
    expect(heard).toHaveLength(3)
  })
})

describe('upstream health past its bound of keys', () => {
  test("an evicted key the catalog has keeps its gauge (its last attempt's word) and the key tracked in its place gets its own; the catalog dropping it later takes it away", () => {
    const metrics = new MetricsRegistry()
    let now = 0
    const health = new UpstreamHealth(metrics, () => ++now, 2)
    health.retain((provider) => provider === 'p')
    health.record(target('p', 'dead'), 401, 5)
    health.record(target('p', 'b'), 200, 5)
    // A third key: `dead`, tried longest ago, is forgotten, but it still answered 401 last.
    health.record(target('p', 'c'), 500, 5)
    expect(health.get('p', 'dead')).toBeUndefined()
    expect(upSeries(metrics).sort()).toEqual([
      'sluice_upstream_key_up{provider="p",key="b"} 1',
      'sluice_upstream_key_up{provider="p",key="c"} 0',
      'sluice_upstream_key_up{provider="p",key="dead"} 0',
    ])
    // Tried again: tracked afresh on the same series.
    health.record(target('p', 'dead'), 200, 5)
    expect(upSeries(metrics)).toContain('sluice_upstream_key_up{provider="p",key="dead"} 1')
    expect(upSeries(metrics)).toHaveLength(3)

    // b is evicted now; the catalog then drops it (and nothing tracks it): its gauge goes.
    health.retain((provider, key) => provider === 'p' && key !== 'b')
    expect(upSeries(metrics).sort()).toEqual(['sluice_upstream_key_up{provider="p",key="c"} 0', 'sluice_upstream_key_up{provider="p",key="dead"} 1'])
  })

  test('series kept for evicted keys are bounded too: the oldest goes first, and a tracked key never folds into _overflow', () => {
    const metrics = new MetricsRegistry()
    let now = 0
    const health = new UpstreamHealth(metrics, () => ++now, 2)
    for (let i = 0; i < 10; i++) health.record(target('p', `k${i}`), 200, 5)
    const lines = upSeries(metrics)
    expect(lines).toHaveLength(4)
    expect(lines.join('\n')).not.toContain('_overflow')
    expect(lines).toContain('sluice_upstream_key_up{provider="p",key="k9"} 1')
    expect(lines).toContain('sluice_upstream_key_up{provider="p",key="k8"} 1')
  })

  test('a kept key tried again frees its place among the kept series before the eviction it causes, which then keeps another rather than drop one', () => {
    const metrics = new MetricsRegistry()
    let now = 0
    const health = new UpstreamHealth(metrics, () => ++now, 2)
    for (const key of ['a', 'b', 'c', 'd', 'e']) health.record(target('p', key), 200, 5)
    // Tracked: d, e; kept (evicted, the catalog has them): b, c (a went past the bound).
    expect(upSeries(metrics)).toHaveLength(4)
    // c again: d is evicted and kept in c's place, and b stays.
    health.record(target('p', 'c'), 500, 5)
    expect(upSeries(metrics).sort()).toEqual([
      'sluice_upstream_key_up{provider="p",key="b"} 1',
      'sluice_upstream_key_up{provider="p",key="c"} 0',
      'sluice_upstream_key_up{provider="p",key="d"} 1',
      'sluice_upstream_key_up{provider="p",key="e"} 1',
    ])
  })
})

