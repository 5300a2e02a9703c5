/**
 * Balance picks: each strategy of plugins/balance/strategies.ts (PICKERS) choosing among 8
 * candidates (target × key pairs) with different weights, requests in flight, latencies and
 * learned headroom, as a busy group has. The baseline in the same run is no choice at all:
 * the first candidate (what the core does without the balance plugin).
 *
 * Correctness first, for every strategy: weighted follows the weights exactly over every
 * window of sum(weights) picks; round-robin visits each candidate in turn; least-busy takes
 * the fewest in flight, ties to the larger weight; latency (two random choices) never picks
 * the worst score and favours the best; usage takes the most headroom and spreads ties evenly.
 * (benchmarks/micro/balance-route.ts measures the plugin's whole route/next/report.)
 *
 *   bun run benchmarks/micro/balance.ts
 */
import { bench, do_not_optimize, run, summary } from 'mitata'
import { modelHealthOf, newHealth } from '../../plugins/balance/health.ts'
import { PICKERS, newPickerState, type Candidate } from '../../plugins/balance/strategies.ts'
import type { Strategy } from '../../src/config/schema.ts'
import { emitBenchJson, fromMitata, resultNamed, type MicroResult } from './lib/bench-json.ts'

const N = 8
const WEIGHTS = [3, 1, 1, 2, 1, 1, 4, 3] as const
const IN_FLIGHT = [4, 2, 7, 2, 9, 3, 5, 6] as const
const LATENCY_MS = [420, 380, 910, 0, 505, 640, 350, 700] as const // 0 = not measured yet
const HEADROOM = [0.4, null, 0.9, 0.2, null, 0.9, 0.5, 0.1] as const

/** Deterministic PRNG (mulberry32) for the checks. */
function prng(seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function candidates(): Candidate[] {
  return Array.from({ length: N }, (_, i) => {
    const health = newHealth('up', `k${i + 1}`)
    health.inFlight = IN_FLIGHT[i]!
    health.latencyEwma = LATENCY_MS[i]!
    const modelHealth = modelHealthOf(health, 'mock-gpt')
    modelHealth.headroom = HEADROOM[i]!
    return { index: i, weight: WEIGHTS[i]!, health, modelHealth }
  })
}

function counts(strategy: Strategy, list: readonly Candidate[], picks: number, random: () => number): number[] {
  const state = newPickerState(N, random)
  const seen = new Array<number>(N).fill(0)
  for (let i = 0; i < picks; i++) seen[PICKERS[strategy](list, state).index]!++
  return seen
}

const fail = (what: string): never => {
  throw new Error(`balance check failed: ${what}`)
}
const verified: string[] = []
const list = candidates()
const total = WEIGHTS.reduce((a, b) => a + b, 0)

// weighted: exact over every window of sum(weights) picks, and interleaved (no key twice in a row unless it holds over half the weight).
{
  const state = newPickerState(N, prng(1))
  const order: number[] = []
  for (let i = 0; i < total * 100; i++) order.push(PICKERS.weighted(list, state).index)
  for (let w = 0; w < 100; w++) {
    const window = order.slice(w * total, (w + 1) * total)
    for (let i = 0; i < N; i++) if (window.filter((x) => x === i).length !== WEIGHTS[i]) fail(`weighted: window ${w} gave candidate ${i} ${window.filter((x) => x === i).length} picks, weight ${WEIGHTS[i]}`)
  }
  verified.push(`weighted: every window of ${total} picks (100 windows) follows the weights ${WEIGHTS.join(':')} exactly`)
}
// round-robin: in turn.
{
  const state = newPickerState(N, prng(2))
  for (let i = 0; i < N * 50; i++) if (PICKERS['round-robin'](list, state).index !== i % N) fail(`round-robin: pick ${i}`)
  verified.push(`round-robin: ${N * 50} picks visit the ${N} candidates in turn`)
}
// least-busy: the fewest in flight; the tie (2 and 2) goes to the larger weight.
{
  const pick = PICKERS['least-busy'](list, newPickerState(N, prng(3)))
  if (pick.index !== 3) fail(`least-busy picked ${pick.index}, expected 3 (in flight 2, weight 2 beats in flight 2, weight 1)`)
  verified.push('least-busy: picks the fewest in flight, a tie goes to the larger weight')
}
// latency: two random choices on EWMA × (in flight + 1); the worst score can never win a pair.
{
  const score = (c: Candidate) => (c.health.latencyEwma || Math.min(...LATENCY_MS.filter((v) => v > 0))) * (c.health.inFlight + 1)
  const ranked = [...list].sort((a, b) => score(a) - score(b))
  const seen = counts('latency', list, 80_000, prng(4))
  const worst = ranked.at(-1)!.index
  const best = ranked[0]!.index
  if (seen[worst] !== 0) fail(`latency: the worst score (candidate ${worst}) was picked ${seen[worst]} times`)
  // The best wins every pair it is in: 2/8 of pairs, minus nothing; allow 5 % sampling noise.
  if (seen[best]! < 80_000 * (2 / N) * 0.95) fail(`latency: the best score (candidate ${best}) was picked only ${seen[best]} of 80,000 times`)
  verified.push(`latency: of 80,000 picks the worst score got 0, the best ${seen[best]} (≥ the 2/8 of pairs it is drawn into)`)
}
// usage: the most headroom (unknown counts as full), ties spread evenly.
{
  const seen = counts('usage', list, 80_000, prng(5))
  const full = [1, 4] // headroom null = unknown = 1
  for (let i = 0; i < N; i++) if (!full.includes(i) && seen[i] !== 0) fail(`usage: candidate ${i} with less headroom was picked`)
  for (const i of full) if (Math.abs(seen[i]! - 40_000) > 40_000 * 0.05) fail(`usage: tie not even: candidate ${i} got ${seen[i]} of 80,000`)
  verified.push(`usage: only the two candidates with the most headroom are picked, ${seen[1]} / ${seen[4]} of 80,000 (even within 5 %)`)
}
for (const v of verified) console.log(`verified: ${v}`)

const strategies = Object.keys(PICKERS) as Strategy[]
const states = Object.fromEntries(strategies.map((s) => [s, newPickerState(N)])) as Record<Strategy, ReturnType<typeof newPickerState>>
summary(() => {
  for (const strategy of strategies) bench(`pick among ${N}: ${strategy}`, () => do_not_optimize(PICKERS[strategy](list, states[strategy])))
  bench(`baseline: first of ${N} (no balancing)`, () => do_not_optimize(list[0]))
})

const results: MicroResult[] = fromMitata(await run())
for (const strategy of strategies) resultNamed(results, `pick among ${N}: ${strategy}`)
emitBenchJson({ bench: 'balance', verified, results, targets: [] })
