/**
 * The balance plugin's work per request, in process: `route` builds the plan, `next` picks a
 * key among 8 (weighted, smooth), `report` records the answer (latency, headroom headers,
 * circuit). The baseline is what the core does without a routing plugin: the first target's
 * first key. Correctness is checked first (8,000 picks spread exactly 1,000 per key); then
 * mitata measures. The HTTP benchmark prices the same against the whole gateway:
 *
 *   bun run benchmarks/micro/balance-route.ts
 *   bun run bench --mode concurrency --targets raw,gateway --plugins '["balance"]' --keys 8 --baseline-plugins '[]'
 */
import { bench, do_not_optimize, run, summary } from 'mitata'
import { emitBenchJson, fromMitata } from './lib/bench-json.ts'
import { balance } from '../../plugins/balance/index.ts'
import { createLocalBus } from '../../src/lib/bus.ts'
import { createLogger } from '../../src/lib/logger.ts'
import { ModelRegistry, type RouteTarget } from '../../src/models.ts'
import type { GatewayRequest, PluginContext, PluginHooks, RoutePlan } from '../../src/plugin.ts'
import type { Services } from '../../src/services.ts'

const KEYS = 8
const models = new ModelRegistry(
  [{ id: 'up', type: 'openai-compatible', baseUrl: 'http://127.0.0.1:1/v1', keys: Array.from({ length: KEYS }, (_, i) => ({ id: `k${i + 1}`, secret: `sk-${i + 1}` })) }],
  [{ name: 'mock-gpt', targets: [{ provider: 'up', model: 'mock-gpt' }] }],
)
const group = models.get('mock-gpt')!
const options = { max_attempts: 4, cooldown_ms: 10_000, circuit_failures: 5, circuit_open_ms: 30_000, backoff_ms: 50, backoff_max_ms: 1000, latency_alpha: 0.3, latency_ttl_ms: 300_000 }
// Only what the plugin reads at setup and per request; the admin routes are not exercised here.
const services = { bus: createLocalBus(), now: Date.now } as unknown as Services
const context = { options, services, models, logger: createLogger('silent'), config: {} } as unknown as PluginContext<typeof options>
const hooks: PluginHooks = await balance.definition.setup(context)

const request = new Request('http://127.0.0.1/v1/chat/completions', { method: 'POST' })
const req = { request, body: { model: 'mock-gpt', max_tokens: 16 }, stream: false } as unknown as GatewayRequest
// An answer as OpenAI sends it, with rate-limit headers to read.
const response = new Response('{}', {
  headers: { 'content-type': 'application/json', 'x-ratelimit-limit-requests': '500', 'x-ratelimit-remaining-requests': '499', 'x-ratelimit-reset-requests': '120ms' },
})

function oneRequest(): RouteTarget {
  const plan = hooks.route!(req, group) as RoutePlan
  const target = plan.next(undefined) as RouteTarget
  plan.report!(target, 1.5, response, undefined)
  plan.release?.()
  return target
}

/** The core's own plan without a routing plugin (src/pipeline.ts, firstTargetPlan). */
function fixedTarget(): RouteTarget {
  let given = false
  const plan: RoutePlan = {
    next() {
      if (given) return undefined
      given = true
      const target = group.targets[0]!
      return { provider: target.provider, model: target.model, key: target.provider.keys[0]!, group: group.name }
    },
  }
  return plan.next(undefined) as RouteTarget
}

// Correctness first: equal weights spread exactly; nothing stays in flight.
const counts = new Map<string, number>()
for (let i = 0; i < 1000 * KEYS; i++) {
  const target = oneRequest()
  if (target instanceof Error) throw target
  counts.set(target.key.id, (counts.get(target.key.id) ?? 0) + 1)
}
for (let i = 1; i <= KEYS; i++) if (counts.get(`k${i}`) !== 1000) throw new Error(`key k${i} got ${counts.get(`k${i}`)} of 8000 picks, not 1000`)
console.log(`checked: 8,000 picks over ${KEYS} keys, 1,000 each`)

summary(() => {
  bench(`balance: route + pick among ${KEYS} keys + report`, () => do_not_optimize(oneRequest()))
  bench('no routing plugin: first target, first key', () => do_not_optimize(fixedTarget()))
})
const mitataResult = await run()

// The machine-readable summary for `bun run bench` (benchmarks/suite/micro.ts).
emitBenchJson({ bench: 'balance-route', verified: [`8,000 picks over ${KEYS} keys, 1,000 each`], results: fromMitata(mitataResult), targets: [] })
