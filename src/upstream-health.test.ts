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
