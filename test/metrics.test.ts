/**
 * GET /metrics through a listening gateway: the exposition parses line by line, counters move
 * with requests, histograms come whole (_bucket cumulative up to +Inf, _sum, _count), the
 * label sets stay bounded whatever clients send, and no plugin hook runs on the route.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { definePlugin } from '../src/plugin.ts'
import { GatewayError } from '../src/errors.ts'
import { METRICS_CONTENT_TYPE } from '../src/metrics.ts'
import { startMockUpstream, type MockUpstream } from './fixtures/mock-upstream.ts'
import { startAuthGateway, userWithKey, UPSTREAM_SECRET, ADMIN_KEY } from './support/auth.ts'
import { startGateway, upstreamConfig } from './support/gateway.ts'
import { postJson } from './support/http.ts'
import { parseMetrics, sampleSum, sampleValue, scrape, type ParsedMetrics } from './support/metrics.ts'

let upstream: MockUpstream
beforeAll(async () => {
  upstream = await startMockUpstream()
})
afterAll(() => upstream.stop())

const messages = [{ role: 'user', content: 'hello there' }]

/** Every histogram family is complete and consistent: cumulative buckets ending in +Inf = _count, and a _sum. */
function checkHistograms(m: ParsedMetrics): number {
  let checked = 0
  for (const [name, type] of m.types) {
    if (type !== 'histogram') continue
    const buckets = m.samples.filter((s) => s.name === `${name}_bucket`)
    const series = new Map<string, typeof buckets>()
    for (const b of buckets) {
      const { le, ...rest } = b.labels
      expect(le).toBeDefined()
      const key = JSON.stringify(rest)
      series.set(key, [...(series.get(key) ?? []), b])
    }
    for (const [key, list] of series) {
      const labels = JSON.parse(key) as Record<string, string>
      const values = list.map((b) => b.value)
      expect(values).toEqual([...values].sort((a, b) => a - b))
      expect(list.at(-1)!.labels.le).toBe('+Inf')
      expect(sampleValue(m, `${name}_count`, labels)).toBe(list.at(-1)!.value)
      expect(sampleValue(m, `${name}_sum`, labels)).toBeGreaterThanOrEqual(0)
      checked++
    }
  }
  return checked
}

describe('with no plugins: the core metrics', () => {
  test('a path served with a trailing slash (/v1/chat/completions/, /health/) counts under its route, not as unmatched', async () => {
    const tg = await startGateway(upstreamConfig(upstream.url))
    try {
      const chat = await postJson(`${tg.url}/v1/chat/completions/`, { model: 'mock-gpt', messages })
      expect(chat.status).toBe(200)
      await chat.arrayBuffer()
      const health = await fetch(`${tg.url}/health/`)
      expect(health.status).toBe(200)
      await health.arrayBuffer()
      const m = await scrape(tg.url)
      expect(sampleValue(m, 'sluice_http_requests_total', { route: '/v1/chat/completions', status: '200' })).toBe(1)
      expect(sampleValue(m, 'sluice_http_requests_total', { route: '/health', status: '200' })).toBe(1)
      expect(sampleValue(m, 'sluice_http_requests_total', { route: 'unmatched', status: '200' })).toBeUndefined()
    } finally {
      await tg.close()
    }
  })

  test('the exposition parses line by line; requests and latency by route and status move; upstream key health', async () => {
    const tg = await startGateway(upstreamConfig(upstream.url))
    try {
      const res = await fetch(`${tg.url}/metrics`)
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toBe(METRICS_CONTENT_TYPE)
      const before = parseMetrics(await res.text())
      const chatBefore = sampleValue(before, 'sluice_http_requests_total', { route: '/v1/chat/completions', status: '200' }) ?? 0
      for (let i = 0; i < 3; i++) await (await postJson(`${tg.url}/v1/chat/completions`, { model: 'mock-gpt', messages })).arrayBuffer()
      await (await postJson(`${tg.url}/v1/chat/completions`, { model: 'nope', messages })).arrayBuffer()
      await (await fetch(`${tg.url}/no/such/path`)).arrayBuffer()
      const m = await scrape(tg.url)
      expect(sampleValue(m, 'sluice_http_requests_total', { route: '/v1/chat/completions', status: '200' })).toBe(chatBefore + 3)
      expect(sampleValue(m, 'sluice_http_requests_total', { route: '/v1/chat/completions', status: '404' })).toBe(1)
      expect(sampleValue(m, 'sluice_http_requests_total', { route: 'unmatched', status: '404' })).toBe(1)
      expect(sampleValue(m, 'sluice_http_requests_total', { route: '/metrics', status: '200' })).toBeGreaterThanOrEqual(1)
      expect(sampleValue(m, 'sluice_http_request_duration_seconds_count', { route: '/v1/chat/completions', status_class: '2xx' })).toBe(3)
      expect(m.types.get('sluice_http_request_duration_seconds')).toBe('histogram')
      expect(sampleValue(m, 'sluice_upstream_key_up', { provider: 'up', key: 'k1' })).toBe(1)
      expect(sampleValue(m, 'sluice_upstream_attempts_total', { provider: 'up', key: 'k1', status: '200' })).toBe(3)
      expect(sampleValue(m, 'sluice_upstream_duration_seconds_count', { provider: 'up' })).toBe(3)
      expect(sampleValue(m, 'process_resident_memory_bytes')!).toBeGreaterThan(0)
      // The heap the memory profile acts on: megabytes of it, within the RSS.
      const heapUsed = sampleValue(m, 'sluice_js_heap_used_bytes')!
      expect(heapUsed).toBeGreaterThan(1_000_000)
      expect(heapUsed).toBeLessThan(sampleValue(m, 'process_resident_memory_bytes')!)
      expect(m.types.get('sluice_js_heap_used_bytes')).toBe('gauge')
      expect(sampleValue(m, 'sluice_js_external_memory_bytes')!).toBeGreaterThanOrEqual(0)
      const profileSeries = m.samples.filter((s) => s.name === 'sluice_memory_profile')
      expect(profileSeries).toHaveLength(1)
      expect(profileSeries[0]!.value).toBe(1)
      expect(profileSeries[0]!.labels.profile).toBe(process.env.SLUICE_MEMORY === 'lean' ? 'lean' : 'fast')
      expect(profileSeries[0]!.labels.heap_growth_max_increase).toBe(process.env.BUN_JSC_heapGrowthMaxIncrease ?? 'default')
      expect(checkHistograms(m)).toBeGreaterThanOrEqual(3)
      // Plugin metrics are absent without the plugin.
      expect(m.types.has('sluice_requests_total')).toBe(false)
      // Every sample has its TYPE declared.
      for (const s of m.samples) expect(m.types.has(s.name.replace(/_(bucket|sum|count)$/, '')) || m.types.has(s.name)).toBe(true)
    } finally {
      await tg.close()
    }
  })

  test('no plugin hook runs on /metrics (nor /health): a plugin that refuses every request does not touch them', async () => {
    let calls = 0
    const wall = definePlugin({
      name: 'wall',
      setup: () => ({
        authenticate: () => {
          calls++
          return new GatewayError('missing_api_key', 'Nobody gets in (test plugin).')
        },
        onComplete: () => {
          calls++
        },
      }),
    })
    const tg = await startGateway(upstreamConfig(upstream.url, { plugins: [wall] }))
    try {
      expect((await fetch(`${tg.url}/metrics`)).status).toBe(200)
      expect((await fetch(`${tg.url}/health`)).status).toBe(200)
      await Bun.sleep(20)
      expect(calls).toBe(0)
      expect((await postJson(`${tg.url}/v1/chat/completions`, { model: 'mock-gpt', messages })).status).toBe(401)
      await Bun.sleep(20)
      expect(calls).toBe(2)
    } finally {
      await tg.close()
    }
  })
})

describe('with auth and logging', () => {
  test('requests by endpoint, status, code, model and provider; tokens; rejections; TTFT; key cache; queue; a refused upstream key', async () => {
    const gw = await startAuthGateway(upstream.url, {
      config: {
        models: [
          { name: 'mock-gpt', targets: [{ provider: 'up', model: 'mock-gpt' }], pricing: { input: 1, output: 2 } },
          { name: 'other-gpt', targets: [{ provider: 'up', model: 'mock-gpt' }] },
        ],
        plugins: [{ use: 'auth', options: { demo_key: false } }, { use: 'logging', options: { flush_ms: 10 } }],
      },
    })
    try {
      const { key } = await userWithKey(gw)
      const auth = { authorization: `Bearer ${key.key}` }
      let prompt = 0
      let completion = 0
      for (let i = 0; i < 4; i++) {
        const body = (await (await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages, max_tokens: 3 + i }, auth)).json()) as { usage: { prompt_tokens: number; completion_tokens: number } }
        prompt += body.usage.prompt_tokens
        completion += body.usage.completion_tokens
      }
      await (await postJson(`${gw.url}/v1/chat/completions`, { model: 'other-gpt', messages, stream: true }, auth)).text()
      await (await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages }, { authorization: 'Bearer sk-dev-wrongwrongwrongwrongwrongwrongwrong12' })).arrayBuffer()
      await (await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages })).arrayBuffer()
      await Bun.sleep(50)
      let m = await scrape(gw.url)
      expect(sampleValue(m, 'sluice_requests_total', { endpoint: 'chat.completions', status: '200', code: 'none', model: 'mock-gpt', provider: 'up' })).toBe(4)
      expect(sampleValue(m, 'sluice_requests_total', { endpoint: 'chat.completions', status: '200', model: 'other-gpt' })).toBe(1)
      expect(sampleValue(m, 'sluice_requests_total', { status: '401', code: 'invalid_api_key', provider: 'none' })).toBe(1)
      expect(sampleValue(m, 'sluice_rejections_total', { code: 'invalid_api_key' })).toBe(1)
      expect(sampleValue(m, 'sluice_rejections_total', { code: 'missing_api_key' })).toBe(1)
      expect(sampleValue(m, 'sluice_tokens_total', { model: 'mock-gpt', type: 'prompt' })).toBe(prompt)
      expect(sampleValue(m, 'sluice_tokens_total', { model: 'mock-gpt', type: 'completion' })).toBe(completion)
      expect(sampleValue(m, 'sluice_cost_usd_total', { model: 'mock-gpt' })).toBeCloseTo((prompt * 1 + completion * 2) / 1_000_000, 12)
      expect(sampleValue(m, 'sluice_time_to_first_token_seconds_count', { model: 'other-gpt' })).toBe(1)
      expect(sampleValue(m, 'sluice_request_duration_seconds_count', { model: 'mock-gpt' })).toBe(4)
      expect(sampleValue(m, 'sluice_request_log_queue_depth')).toBe(0)
      expect(sampleValue(m, 'sluice_request_log_written_total')).toBe(7)
      expect(sampleValue(m, 'sluice_request_log_dropped_total', { reason: 'queue_full' })).toBe(0)
      // The auth plugin's key cache, read through its stats() hook.
      const hits = sampleValue(m, 'sluice_plugin_stat', { plugin: 'auth', stat: 'hits' })!
      const misses = sampleValue(m, 'sluice_plugin_stat', { plugin: 'auth', stat: 'misses' })!
      expect(hits + misses).toBeGreaterThan(0)
      expect(sampleValue(m, 'sluice_plugin_cache_hit_ratio', { plugin: 'auth' })).toBeCloseTo(hits / (hits + misses), 10)
      expect(checkHistograms(m)).toBeGreaterThanOrEqual(6)

      // The upstream refuses the gateway's key: the key's gauge drops to 0.
      upstream.setFailure({ status: 401, times: 1 })
      await (await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages }, auth)).arrayBuffer()
      m = await scrape(gw.url)
      expect(sampleValue(m, 'sluice_upstream_key_up', { provider: 'up', key: 'k1' })).toBe(0)
      expect(sampleValue(m, 'sluice_upstream_attempts_total', { provider: 'up', key: 'k1', status: '401' })).toBe(1)
      await (await postJson(`${gw.url}/v1/chat/completions`, { model: 'mock-gpt', messages }, auth)).arrayBuffer()
      expect(sampleValue(await scrape(gw.url), 'sluice_upstream_key_up', { provider: 'up', key: 'k1' })).toBe(1)

      // Unauthenticated, and it carries no secret.
      const text = await (await fetch(`${gw.url}/metrics`)).text()
      for (const secret of [key.key, UPSTREAM_SECRET, ADMIN_KEY]) expect(text).not.toContain(secret)
    } finally {
      await gw.close()
    }
  })
})

describe('bounded cardinality', () => {
  test('what clients send (model names, paths, headers) never becomes a label value', async () => {
    const tg = await startGateway(upstreamConfig(upstream.url, { plugins: ['logging'] }))
    try {
      for (let i = 0; i < 200; i++) {
        await (await postJson(`${tg.url}/v1/chat/completions`, { model: `unknown-model-${i}`, messages }, { 'user-agent': `agent-${i}` })).arrayBuffer()
        await (await fetch(`${tg.url}/random/path/${i}`)).arrayBuffer()
      }
      const m = await scrape(tg.url)
      const text = m.samples.map((s) => JSON.stringify(s.labels)).join('\n')
      expect(text).not.toContain('unknown-model-')
      expect(text).not.toContain('/random/path')
      expect(text).not.toContain('agent-')
      expect(sampleValue(m, 'sluice_requests_total', { status: '404', code: 'model_not_found', model: 'none' })).toBe(200)
      expect(sampleValue(m, 'sluice_http_requests_total', { route: 'unmatched', status: '404' })).toBe(200)
    } finally {
      await tg.close()
    }
  })

  test('more model groups than a metric allows: the extra series fold into _overflow and the fold is counted', async () => {
    const names = Array.from({ length: 520 }, (_, i) => `m${i}`)
    const tg = await startGateway(
      upstreamConfig(upstream.url, { models: names.map((name) => ({ name, targets: [{ provider: 'up', model: 'mock-gpt' }] })), plugins: [{ use: 'logging', options: { flush_ms: 50 } }] }),
    )
    try {
      for (let i = 0; i < names.length; i += 20) {
        await Promise.all(names.slice(i, i + 20).map(async (model) => (await postJson(`${tg.url}/v1/chat/completions`, { model, messages, max_tokens: 1 })).arrayBuffer()))
      }
      await Bun.sleep(50)
      const m = await scrape(tg.url)
      // sluice_request_duration_seconds keeps at most 500 series (+1 for _overflow).
      const series = new Set(m.samples.filter((s) => s.name === 'sluice_request_duration_seconds_count').map((s) => s.labels.model))
      expect(series.size).toBe(501)
      expect(series.has('_overflow')).toBe(true)
      expect(sampleValue(m, 'sluice_metrics_series_overflow_total', { metric: 'sluice_request_duration_seconds' })).toBe(20)
      // Nothing is lost: the overflow series holds the rest.
      expect(sampleSum(m, 'sluice_request_duration_seconds_count')).toBe(520)
      // sluice_requests_total allows more series: every model has its own.
      expect(new Set(m.samples.filter((s) => s.name === 'sluice_requests_total').map((s) => s.labels.model)).size).toBe(520)
    } finally {
      await tg.close()
    }
  })
})

describe("a plugin's stats()", () => {
  test('that throws: its series are left out, and the failure is logged once, naming the plugin', async () => {
    const { capturingLogger } = await import('./support/logging.ts')
    const { logger, lines } = capturingLogger('warn')
    let calls = 0
    const flaky = definePlugin({
      name: 'flaky-stats',
      setup: () => ({
        stats: () => {
          calls++
          throw new Error('stats boom')
        },
      }),
    })
    const steady = definePlugin({ name: 'steady', setup: () => ({ stats: () => ({ hits: 3, misses: 1 }) }) })
    const gw = await startGateway(upstreamConfig(upstream.url, { plugins: [flaky, steady] }), { gateway: { logger } })
    try {
      for (let i = 0; i < 2; i++) {
        const m = await scrape(gw.url)
        expect(sampleValue(m, 'sluice_plugin_stat', { plugin: 'steady', stat: 'hits' })).toBe(3)
        expect(m.samples.some((s) => s.labels.plugin === 'flaky-stats')).toBe(false)
      }
      expect(calls).toBeGreaterThanOrEqual(2)
      expect(lines.map((l) => [l.msg, l.plugin, String(l.error)])).toEqual([['stats hook failed (logged once; its series are left out of /metrics)', 'flaky-stats', 'Error: stats boom']])
    } finally {
      await gw.close()
    }
  })
})
