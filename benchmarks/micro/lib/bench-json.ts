/**
 * The machine-readable last line of a micro-benchmark. Each file in benchmarks/micro/ runs as
 * its own process under `bun run bench`; it prints mitata's table for people and, last, one
 * line `BENCH_JSON {...}` for the runner, so the runner never scrapes the table.
 */
import type { run } from 'mitata'

/** Prefix of the line the suite runner (benchmarks/suite/micro.ts) reads. */
export const BENCH_JSON_PREFIX = 'BENCH_JSON '

/** One measured quantity: a time per operation (ns, the median of mitata's samples) or a rate. */
export interface MicroResult {
  name: string
  unit: 'ns/op' | 'ops/s' | 'µs/op' | 'objects/request'
  /** ns/op: the median (p50) sample; ops/s: the measured rate. */
  value: number
  min?: number
  max?: number
  p99?: number
}

/** One of the targets, checked where it is measured. */
export interface MicroTarget {
  name: string
  value: number
  unit: string
  op: '<' | '>='
  limit: number
  met: boolean
}

/** What one micro-benchmark file reports. */
export interface BenchJson {
  /** The file's short name, e.g. `key-verify`. */
  bench: string
  /** Correctness checks that passed before anything was measured. */
  verified: string[]
  results: MicroResult[]
  targets: MicroTarget[]
  /** Findings worth a line in the results (not failures). */
  notes?: string[]
}

type MitataRun = Awaited<ReturnType<typeof run>>

/** mitata's results as ns per operation: the median sample, with min, max and p99. */
export function fromMitata(result: MitataRun): MicroResult[] {
  const out: MicroResult[] = []
  for (const trial of result.benchmarks) {
    for (const r of trial.runs) {
      if (r.stats === undefined) continue
      out.push({ name: r.name, unit: 'ns/op', value: r.stats.p50, min: r.stats.min, max: r.stats.max, p99: r.stats.p99 })
    }
  }
  return out
}

/** A target verdict: `value op limit`. */
export function target(name: string, value: number, unit: string, op: '<' | '>=', limit: number): MicroTarget {
  return { name, value, unit, op, limit, met: Number.isFinite(value) && (op === '<' ? value < limit : value >= limit) }
}

/** The result named `name`, or throws (a renamed bench must not silently drop a target). */
export function resultNamed(results: readonly MicroResult[], name: string): MicroResult {
  const found = results.find((r) => r.name === name)
  if (found === undefined) throw new Error(`no result named "${name}" (have: ${results.map((r) => r.name).join(', ')})`)
  return found
}

/** Prints the final `BENCH_JSON {...}` line. Call it last. */
export function emitBenchJson(report: BenchJson): void {
  console.log(`${BENCH_JSON_PREFIX}${JSON.stringify(report)}`)
}
