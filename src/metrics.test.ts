import { describe, expect, test } from 'bun:test'
import { MetricsRegistry, OVERFLOW_LABEL, formatValue, statusClass } from './metrics.ts'

describe('metrics registry', () => {
  test('remove drops one series from the exposition; the same labels later start a new one; unknown labels are a no-op', () => {
    const r = new MetricsRegistry()
    const g = r.gauge({ name: 'x_up', help: 'Up.', labelNames: ['provider', 'key'] })
    g.labels('p', 'a').set(0)
    g.labels('p', 'b').set(1)
    g.remove('p', 'a')
    g.remove('p', 'zz')
    g.remove('q', 'a')
    expect(r.render()).not.toContain('key="a"')
    expect(r.render()).toContain('x_up{provider="p",key="b"} 1')
    g.labels('p', 'a').set(1)
    expect(r.render()).toContain('x_up{provider="p",key="a"} 1')
    expect(g.series()).toHaveLength(2)
  })

  test('remove drops the maps its series leaves empty: a label value gone for good (a deleted provider) keeps nothing', () => {
    const r = new MetricsRegistry()
    const g = r.gauge({ name: 'x_up', help: 'Up.', labelNames: ['provider', 'region', 'key'] })
    g.labels('gone', 'eu', 'a').set(1)
    g.labels('gone', 'us', 'b').set(1)
    g.labels('kept', 'eu', 'c').set(1)
    // The series lookup tree is private: it is what would leak, so it is what is looked at.
    const tree = Reflect.get(g, 'tree') as Map<string, Map<string, Map<string, unknown>>>
    g.remove('gone', 'eu', 'a')
    expect([...tree.get('gone')!.keys()]).toEqual(['us'])
    g.remove('gone', 'us', 'b')
    expect([...tree.keys()]).toEqual(['kept'])
    expect(g.series()).toHaveLength(1)
    g.labels('gone', 'us', 'b').set(0)
    expect(r.render()).toContain('x_up{provider="gone",region="us",key="b"} 0')
  })

  test('counters, gauges and histograms render in the text format, HELP and TYPE first', () => {
    const r = new MetricsRegistry()
    const c = r.counter({ name: 'x_requests_total', help: 'Requests.', labelNames: ['route', 'status'] })
    c.labels('/a', '200').inc()
    c.labels('/a', '200').inc(2)
    c.labels('/b', '404').inc()
    c.labels('/b', '404').inc(-5) // ignored: a counter only goes up
    const g = r.gauge({ name: 'x_depth', help: 'Depth.' })
    g.set(7)
    const h = r.histogram({ name: 'x_seconds', help: 'Time.', labelNames: ['route'], buckets: [0.1, 1] })
    h.labels('/a').observe(0.05)
    h.labels('/a').observe(0.5)
    h.labels('/a').observe(5)
    const text = r.render()
    expect(text).toContain('# HELP x_requests_total Requests.\n# TYPE x_requests_total counter\nx_requests_total{route="/a",status="200"} 3\nx_requests_total{route="/b",status="404"} 1\n')
    expect(text).toContain('# TYPE x_depth gauge\nx_depth 7\n')
    expect(text).toContain(
      [
        'x_seconds_bucket{route="/a",le="0.1"} 1',
        'x_seconds_bucket{route="/a",le="1"} 2',
        'x_seconds_bucket{route="/a",le="+Inf"} 3',
        'x_seconds_sum{route="/a"} 5.55',
        'x_seconds_count{route="/a"} 3',
      ].join('\n'),
    )
    expect(text.endsWith('\n')).toBe(true)
  })

  test('a histogram without labels puts le alone in braces', () => {
    const r = new MetricsRegistry()
    r.histogram({ name: 'y_seconds', help: 'y', buckets: [1] }).observe(2)
    expect(r.render()).toContain('y_seconds_bucket{le="1"} 0\ny_seconds_bucket{le="+Inf"} 1\ny_seconds_sum 2\ny_seconds_count 1\n')
  })

  test('label values are escaped; help text newlines too', () => {
    const r = new MetricsRegistry()
    r.counter({ name: 'z_total', help: 'line one\nline two', labelNames: ['v'] }).labels('a"b\\c\nd').inc()
    const text = r.render()
    expect(text).toContain('# HELP z_total line one\\nline two\n')
    expect(text).toContain('z_total{v="a\\"b\\\\c\\nd"} 1\n')
  })

  test('the series bound folds extra label combinations into one _overflow series and counts them', () => {
    const r = new MetricsRegistry()
    const c = r.counter({ name: 'm_total', help: 'm', labelNames: ['model'], maxSeries: 3 })
    for (let i = 0; i < 10; i++) c.labels(`model-${i}`).inc()
    c.labels('model-0').inc() // an existing series still works
    expect(c.series().length).toBe(4) // 3 real + the overflow series
    const text = r.render()
    expect(text).toContain('m_total{model="model-0"} 2\n')
    expect(text).toContain(`m_total{model="${OVERFLOW_LABEL}"} 7\n`)
    expect(text).toContain('sluice_metrics_series_overflow_total{metric="m_total"} 7\n')
    expect(text).not.toContain('model-9')
  })

  test('the same name registers once; a different type or labels is a boot error', () => {
    const r = new MetricsRegistry()
    const a = r.counter({ name: 'dup_total', help: 'd', labelNames: ['x'] })
    expect(r.counter({ name: 'dup_total', help: 'd', labelNames: ['x'] })).toBe(a)
    expect(() => r.gauge({ name: 'dup_total', help: 'd', labelNames: ['x'] })).toThrow(/already registered as a counter/)
    expect(() => r.counter({ name: 'dup_total', help: 'd', labelNames: ['y'] })).toThrow(/already registered/)
  })

  test('bad names, labels and buckets are refused at registration', () => {
    const r = new MetricsRegistry()
    expect(() => r.counter({ name: '1bad', help: '' })).toThrow(/not a valid Prometheus name/)
    expect(() => r.counter({ name: 'ok_total', help: '', labelNames: ['bad-label'] })).toThrow(/label name/)
    expect(() => r.counter({ name: 'ok2_total', help: '', labelNames: ['__reserved'] })).toThrow(/label name/)
    expect(() => r.histogram({ name: 'h1', help: '', buckets: [] })).toThrow(/buckets/)
    expect(() => r.histogram({ name: 'h2', help: '', buckets: [2, 1] })).toThrow(/buckets/)
    expect(() => r.histogram({ name: 'h3', help: '', labelNames: ['le'], buckets: [1] })).toThrow(/reserved/)
    expect(() => r.counter({ name: 'sluice_metrics_series_overflow_total', help: '' })).toThrow(/reserved/)
    expect(() => r.counter({ name: 'c_total', help: '', labelNames: ['a'] }).labels()).toThrow(/takes 1 label values/)
  })

  test('collectors run at every scrape; a failing one keeps its last value and does not fail the scrape', () => {
    const r = new MetricsRegistry()
    let depth = 1
    let fail = false
    r.gauge({
      name: 'q_depth',
      help: 'q',
      collect: (g) => {
        if (fail) throw new Error('boom')
        g.set(depth)
      },
    })
    r.counter({ name: 'q_total', help: 'q', collect: (c) => c.labels().sync(depth * 10) })
    expect(r.render()).toContain('q_depth 1\n')
    depth = 4
    const second = r.render()
    expect(second).toContain('q_depth 4\n')
    expect(second).toContain('q_total 40\n')
    fail = true
    depth = 2
    const text = r.render()
    expect(text).toContain('q_depth 4\n')
    // A collected counter never goes down.
    expect(text).toContain('q_total 40\n')
  })

  test('value formatting and status classes', () => {
    expect(formatValue(Infinity)).toBe('+Inf')
    expect(formatValue(-Infinity)).toBe('-Inf')
    expect(formatValue(Number.NaN)).toBe('NaN')
    expect(formatValue(0.25)).toBe('0.25')
    expect([statusClass(200), statusClass(404), statusClass(503), statusClass(0), statusClass(700)]).toEqual(['2xx', '4xx', '5xx', '0', '0'])
  })
})
