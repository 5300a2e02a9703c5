import { describe, expect, test } from 'bun:test'
import { modelHealthOf, newHealth, recordLatency } from './health.ts'
import { PICKERS, newPickerState, type Candidate, type PickerState } from './strategies.ts'

const PICKS = 10_000

function candidates(weights: readonly number[]): Candidate[] {
  return weights.map((weight, index) => { const health = newHealth('p', `k${index}`); return { index, weight, health, modelHealth: modelHealthOf(health, 'm') } })
}

/** A small seeded generator (mulberry32), so random strategies give the same run every time. */
function seeded(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function state(size: number, seed = 1): PickerState {
  return newPickerState(size, seeded(seed))
}

/** Picks `n` times; returns the count per candidate index and the longest run of each. */
function run(strategy: keyof typeof PICKERS, cs: readonly Candidate[], s: PickerState, n = PICKS): { counts: number[]; longestRun: number[] } {
  // Indexed by candidate index (a subset keeps its group's indexes).
  const size = Math.max(...cs.map((c) => c.index)) + 1
  const counts: number[] = new Array(size).fill(0)
  const longestRun: number[] = new Array(size).fill(0)
  let last = -1
  let runLength = 0
  for (let i = 0; i < n; i++) {
    const c = PICKERS[strategy](cs, s)
    counts[c.index]!++
    runLength = c.index === last ? runLength + 1 : 1
    last = c.index
    longestRun[c.index] = Math.max(longestRun[c.index]!, runLength)
  }
  return { counts, longestRun }
}

describe('weighted (smooth weighted round robin)', () => {
  test.each([
    [[1, 2, 5]],
    [[1, 1]],
    [[3, 1, 1, 1]],
    [[0.5, 1.5, 10]],
  ])('over 10,000 picks the shares match weights %p within 2 points', (weights) => {
    const cs = candidates(weights)
    const { counts } = run('weighted', cs, state(cs.length))
    const total = weights.reduce((a, b) => a + b, 0)
    for (const [i, w] of weights.entries()) expect(Math.abs(counts[i]! / PICKS - w / total)).toBeLessThan(0.02)
  })

  test('exact over every window of sum(weights) picks, and smooth: no run longer than ⌈w / (total − w)⌉', () => {
    const weights = [1, 2, 5]
    const cs = candidates(weights)
    const s = state(cs.length)
    for (let window = 0; window < 50; window++) {
      const { counts } = run('weighted', cs, s, 8)
      expect(counts).toEqual(weights)
    }
    const { longestRun } = run('weighted', cs, s)
    // A plain weighted round robin would send 5 in a row to the heaviest; SWRR interleaves.
    for (const [i, w] of weights.entries()) expect(longestRun[i]!).toBeLessThanOrEqual(Math.ceil(w / (8 - w)))
    expect(longestRun).toEqual([1, 1, 2])
  })

  test('weight 0 is never picked while another candidate is available', () => {
    const { counts } = run('weighted', candidates([0, 1, 3]), state(3))
    expect(counts).toEqual([0, 2500, 7500])
    expect(run('weighted', candidates([0]), state(1), 10).counts).toEqual([10])
  })

  test('a candidate that drops out and comes back does not get a burst', () => {
    const cs = candidates([1, 1, 1])
    const s = state(3)
    run('weighted', cs, s, 99)
    // Candidate 0 is unavailable for a while (cooling); the others share its traffic.
    const without = run('weighted', cs.slice(1), s, 100)
    expect(without.counts).toEqual([0, 50, 50])
    const back = run('weighted', cs, s, 300)
    expect(back.counts).toEqual([100, 100, 100])
    expect(Math.max(...back.longestRun)).toBeLessThanOrEqual(2)
  })
})

describe('round-robin', () => {
  test('cycles evenly, in order, whatever the weights', () => {
    const cs = candidates([1, 5, 1, 1])
    const s = state(cs.length)
    const first = Array.from({ length: 8 }, () => PICKERS['round-robin'](cs, s).index)
    expect(first).toEqual([0, 1, 2, 3, 0, 1, 2, 3])
    const { counts, longestRun } = run('round-robin', cs, s)
    expect(counts).toEqual([2500, 2500, 2500, 2500])
    expect(longestRun).toEqual([1, 1, 1, 1])
  })
})

describe('least-busy', () => {
  test('picks the candidate with the fewest requests in flight', () => {
    const cs = candidates([1, 1, 1])
    cs[0]!.health.inFlight = 3
    cs[1]!.health.inFlight = 1
    cs[2]!.health.inFlight = 2
    expect(PICKERS['least-busy'](cs, state(3)).index).toBe(1)
  })

  test('ties go to the larger weight', () => {
    const cs = candidates([1, 4, 2])
    expect(PICKERS['least-busy'](cs, state(3)).index).toBe(1)
  })

  test('spreads concurrent requests: each pick takes a slot until released', () => {
    const cs = candidates([1, 1, 1, 1])
    const s = state(4)
    for (let i = 0; i < 12; i++) PICKERS['least-busy'](cs, s).health.inFlight++
    expect(cs.map((c) => c.health.inFlight)).toEqual([3, 3, 3, 3])
  })
})

describe('latency (power of two choices)', () => {
  /** Simulated traffic: each pick answers in its key's current latency and updates the EWMA. */
  function traffic(cs: Candidate[], s: PickerState, latencyOf: (index: number) => number, n: number): number[] {
    const counts = cs.map(() => 0)
    for (let i = 0; i < n; i++) {
      const c = PICKERS.latency(cs, s)
      counts[c.index]!++
      recordLatency(c.health, latencyOf(c.index), 0.3, i + 1)
    }
    return counts
  }

  test('sends most traffic to the faster of two keys, and shifts when that key gets slower', () => {
    const cs = candidates([1, 1])
    const s = state(2, 7)
    let latencies = [20, 200]
    const before = traffic(cs, s, (i) => latencies[i]!, PICKS)
    expect(before[0]! / PICKS).toBeGreaterThan(0.95)

    latencies = [400, 200]
    const after = traffic(cs, s, (i) => latencies[i]!, PICKS)
    expect(after[1]! / PICKS).toBeGreaterThan(0.95)
  })

  test('among many keys, a slow one gets little traffic and unknown keys get tried', () => {
    const cs = candidates([1, 1, 1, 1])
    const s = state(4, 3)
    const counts = traffic(cs, s, (i) => (i === 2 ? 500 : 10), PICKS)
    for (const i of [0, 1, 3]) expect(counts[i]!).toBeGreaterThan(PICKS * 0.2)
    // P2C keeps sampling the slow key only when it is drawn twice (never: the pair is distinct).
    expect(counts[2]! / PICKS).toBeLessThan(0.01)
  })

  test('requests in flight count against a key: a fast but saturated key sheds load', () => {
    const cs = candidates([1, 1])
    cs[0]!.health.latencyEwma = 10
    cs[1]!.health.latencyEwma = 30
    cs[0]!.health.inFlight = 5
    expect(PICKERS.latency(cs, state(2)).index).toBe(1)
  })

  test('a key without a latency yet wins its tie with the best known, whichever of the two is drawn first', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const cs = candidates([1, 1])
      cs[0]!.health.latencyEwma = 80
      expect(PICKERS.latency(cs, state(2, seed)).index).toBe(1)
      cs[0]!.health.latencyEwma = 0
      cs[1]!.health.latencyEwma = 80
      expect(PICKERS.latency(cs, state(2, seed)).index).toBe(0)
    }
  })

  test('a single candidate is returned as is', () => {
    const cs = candidates([1])
    expect(PICKERS.latency(cs, state(1)).index).toBe(0)
  })
})

describe('usage (headroom from rate-limit headers)', () => {
  test('avoids a key whose headroom is 0', () => {
    const cs = candidates([1, 1, 1])
    cs[1]!.modelHealth.headroom = 0
    const { counts } = run('usage', cs, state(3))
    expect(counts[1]).toBe(0)
    // The two with unknown (full) headroom share the traffic.
    expect(counts[0]! + counts[2]!).toBe(PICKS)
    expect(Math.abs(counts[0]! - counts[2]!) / PICKS).toBeLessThan(0.05)
  })

  test('prefers the key with the most headroom', () => {
    const cs = candidates([1, 1, 1])
    cs[0]!.modelHealth.headroom = 0.2
    cs[1]!.modelHealth.headroom = 0.9
    cs[2]!.modelHealth.headroom = 0.5
    const { counts } = run('usage', cs, state(3), 100)
    expect(counts).toEqual([0, 100, 0])
  })

  test('ties among more than two keys are spread evenly', () => {
    const cs = candidates([1, 1, 1, 1])
    const { counts } = run('usage', cs, state(4))
    for (const c of counts) expect(Math.abs(c / PICKS - 0.25)).toBeLessThan(0.02)
  })
})
