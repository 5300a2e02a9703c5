import type { Strategy } from '../../src/config/schema.ts'
import type { ModelHealth, KeyHealth } from './health.ts'

/** One (target, key) pair a group can send to, with its combined weight. */
export interface Candidate {
  index: number
  weight: number
  health: KeyHealth
  /** The key's state for the target's upstream model: cooldown, headroom and circuit are per model. */
  modelHealth: ModelHealth
}

/** Chooses among the available candidates of one group. `state` belongs to the group. */
export type Picker = (candidates: readonly Candidate[], state: PickerState) => Candidate

export interface PickerState {
  /** Smooth weighted round robin: current weight per candidate index. */
  current: Float64Array
  /** Round robin position. */
  cursor: number
  random: () => number
}

export function newPickerState(size: number, random: () => number = Math.random): PickerState {
  return { current: new Float64Array(size), cursor: 0, random }
}

/**
 * Smooth weighted round robin (as nginx does): each pick adds every candidate's weight to
 * its running score, takes the highest, and subtracts the total from the winner. Picks
 * follow the weights exactly over any window of sum(weights) picks, evenly interleaved.
 */
const weighted: Picker = (candidates, state) => {
  let total = 0
  let best: Candidate | undefined
  for (const c of candidates) {
    state.current[c.index]! += c.weight
    total += c.weight
    if (!best || state.current[c.index]! > state.current[best.index]!) best = c
  }
  state.current[best!.index]! -= total
  return best!
}

const roundRobin: Picker = (candidates, state) => candidates[state.cursor++ % candidates.length]!

/** Fewest requests in flight; ties go to the larger weight. */
const leastBusy: Picker = (candidates) => {
  let best = candidates[0]!
  for (const c of candidates) {
    if (c.health.inFlight < best.health.inFlight || (c.health.inFlight === best.health.inFlight && c.weight > best.weight)) best = c
  }
  return best
}

/**
 * Power of two choices on a latency score (EWMA times in-flight + 1): two random candidates,
 * the better one wins. Unknown latency counts as the best seen and wins a tie, so a new (or
 * never answered) key is tried the first time it is drawn, not on a coin toss each time.
 */
const latency: Picker = (candidates, state) => {
  if (candidates.length === 1) return candidates[0]!
  const a = candidates[Math.floor(state.random() * candidates.length)]!
  let b = candidates[Math.floor(state.random() * (candidates.length - 1))]!
  if (b === a) b = candidates[candidates.length - 1]!
  const known = candidates.map((c) => c.health.latencyEwma).filter((v) => v > 0)
  const floor = known.length ? Math.min(...known) : 1
  const score = (c: Candidate) => (c.health.latencyEwma || floor) * (c.health.inFlight + 1)
  const sa = score(a)
  const sb = score(b)
  if (sa !== sb) return sa < sb ? a : b
  return b.health.latencyEwma === 0 && a.health.latencyEwma !== 0 ? b : a
}

/**
 * Most headroom for the target's model, as learned from the provider's rate-limit headers;
 * unknown counts as full.
 * Ties are broken uniformly (reservoir sampling), so equal keys share the traffic evenly.
 */
const usage: Picker = (candidates, state) => {
  let best = candidates[0]!
  let bestRoom = -1
  let ties = 0
  for (const c of candidates) {
    const room = c.modelHealth.headroom ?? 1
    if (room > bestRoom) {
      best = c
      bestRoom = room
      ties = 1
    } else if (room === bestRoom && state.random() * ++ties < 1) best = c
  }
  return best
}

export const PICKERS: Record<Strategy, Picker> = {
  weighted,
  'round-robin': roundRobin,
  'least-busy': leastBusy,
  latency,
  usage,
}
