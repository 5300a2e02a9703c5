/**
 * The suite's results: medians with min–max over rounds, ratios against the baselines of the
 * same run (raw proxy, mock direct, the gateway without the plugin), the issue's targets with a
 * verdict, written to benchmarks/results/ with the commit and machine, and the summary section of
 * benchmarks/README.md (between its results markers) rewritten.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, release, totalmem } from 'node:os'
import { join } from 'node:path'
import type { MicroRun } from './micro.ts'
import type { Keys100kResult } from './keys100k.ts'
import type { Mode, Sample } from './load.ts'
import type { ScaleResult } from './scale.ts'
import { DELTA_REFERENCE, SCENARIO_LABELS, TARGET_LABELS, TARGET_ORDER } from './http.ts'
import type { ScenarioId } from './options.ts'
import { SCENARIO_IDS } from './options.ts'
import { spread, type Spread } from '../http/stats.ts'
import { DEFAULT_MEMORY_PROFILE } from '../../src/lib/memory.ts'

export const README_START = '<!-- results:start -->'
export const README_END = '<!-- results:end -->'

/** One row of the matrix table. */
export interface MatrixRow {
  scenario: ScenarioId
  mode: Mode
  target: string
  rounds: number
  rps: Spread
  p50Ms: Spread
  p99Ms: Spread
  cpuUsPerReq: Spread
  peakRssMb: Spread
  /** CPU of the suite's Redis per answer (targets that use it). */
  redisCpuUsPerReq: Spread | null
  wrong: number
  errors: number
  /** Median req/s over the raw proxy's (fixed concurrency). */
  rpsVsRaw: number | null
  cpuVsRaw: number | null
  /** Median p50 minus mock-direct's (fixed rate): the latency the hop adds. */
  addedP50Ms: number | null
  /**
   * Why the row's numbers are not a measurement of what its label says, or null: answers with
   * another status than the scenario's (or invalid bodies) and socket errors, timeouts, drops. A
   * fast row of 401s or resets is not throughput; its ratios, and those priced against it, are left out.
   */
  invalid: string | null
}

/**
 * Why a row is not valid, from its wrong answers and errors; null when it is. In the 429 scenario a
 * 200 is the key's refill (one request a minute), so only errors count there.
 */
export function invalidity(r: Pick<MatrixRow, 'scenario' | 'wrong' | 'errors'>): string | null {
  const wrong = r.scenario === 'limited' ? 0 : r.wrong
  if (wrong === 0 && r.errors === 0) return null
  return `${r.wrong} wrong answer(s), ${r.errors} error(s)`
}

export function summarize(samples: readonly Sample[]): MatrixRow[] {
  const groups = new Map<string, Sample[]>()
  for (const s of samples) {
    const key = `${s.scenario}|${s.mode}|${s.target}`
    groups.set(key, [...(groups.get(key) ?? []), s])
  }
  const rows: MatrixRow[] = []
  for (const group of groups.values()) {
    const f = group[0]!
    const pick = (g: (s: Sample) => number) => spread(group.map(g))
    rows.push({
      scenario: f.scenario,
      mode: f.mode,
      target: f.target,
      rounds: group.length,
      rps: pick((s) => s.rps),
      p50Ms: pick((s) => s.p50Ms),
      p99Ms: pick((s) => s.p99Ms),
      cpuUsPerReq: pick((s) => s.cpuUsPerReq),
      peakRssMb: pick((s) => s.peakRssMb),
      redisCpuUsPerReq: f.sideCpuUsPerReq === null ? null : pick((s) => s.sideCpuUsPerReq ?? Number.NaN),
      wrong: group.reduce((n, s) => n + s.wrong, 0),
      errors: group.reduce((n, s) => n + s.errors, 0),
      rpsVsRaw: null,
      cpuVsRaw: null,
      addedP50Ms: null,
      invalid: null,
    })
  }
  for (const r of rows) r.invalid = invalidity(r)
  for (const r of rows) {
    // A ratio needs both of its rows valid: against a failing baseline it is as wrong as from a failing row.
    const peer = (t: string) => rows.find((x) => x.scenario === r.scenario && x.mode === r.mode && x.target === t && x.invalid === null)
    if (r.invalid !== null) continue
    const raw = peer('raw')
    const mock = peer('mock')
    if (raw !== undefined && r.mode === 'concurrency') r.rpsVsRaw = r.rps.median / raw.rps.median
    if (raw !== undefined) r.cpuVsRaw = r.cpuUsPerReq.median / raw.cpuUsPerReq.median
    if (mock !== undefined && r.mode === 'rate') r.addedP50Ms = r.p50Ms.median - mock.p50Ms.median
  }
  const key = (r: MatrixRow) => [SCENARIO_IDS.indexOf(r.scenario), r.mode === 'concurrency' ? 0 : 1, TARGET_ORDER.indexOf(r.target)]
  return rows.sort((a, b) => {
    const ka = key(a)
    const kb = key(b)
    return ka[0]! - kb[0]! || ka[1]! - kb[1]! || ka[2]! - kb[2]!
  })
}

/**
 * The measurements of a run that had wrong answers or errors: each is a failure of the run (exit
 * code 1) and a line of its notes, so a run whose rows are not valid does not pass as a clean one.
 */
export function measurementProblems(rows: readonly MatrixRow[], scale: ScaleResult | null, keys: Keys100kResult | null): string[] {
  const out: string[] = []
  for (const row of rows) {
    if (row.invalid !== null) out.push(`**not valid**: ${row.scenario}/${row.mode} ${TARGET_LABELS[row.target] ?? row.target} had ${row.invalid}; its numbers are not a measurement of that target and no ratio or verdict is read from them`)
  }
  for (const row of scale?.rows ?? []) {
    if (row.wrong + row.errors > 0) out.push(`**not valid**: scale, ${row.processes} process(es) had ${row.wrong} wrong answer(s), ${row.errors} error(s)`)
  }
  for (const run of keys?.runs ?? []) {
    const failed = [...run.samples, ...(run.rate ? [run.rate] : [])].reduce((n, s) => n + s.wrong + s.errors, 0)
    if (failed > 0) out.push(`**not valid**: keys100k, SLUICE_MEMORY=${run.memory} had ${failed} wrong answers or errors under load`)
  }
  return out
}

// ---- formatting

function num(v: number, digits: number): string {
  return Number.isFinite(v) ? v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : '—'
}
function cell(s: Spread, digits: number): string {
  return s.min === s.max ? num(s.median, digits) : `${num(s.median, digits)} (${num(s.min, digits)}–${num(s.max, digits)})`
}
const ratio = (v: number | null): string => (v === null || !Number.isFinite(v) ? '—' : `×${v.toFixed(2)}`)
const signedMs = (v: number | null): string => (v === null || !Number.isFinite(v) ? '—' : `${v >= 0 ? '+' : ''}${v.toFixed(3)} ms`)

/** ns as the most readable unit. */
function duration(ns: number): string {
  if (!Number.isFinite(ns)) return '—'
  if (ns < 1000) return `${ns.toFixed(ns < 10 ? 2 : 1)} ns`
  if (ns < 1e6) return `${(ns / 1000).toFixed(2)} µs`
  return `${(ns / 1e6).toFixed(2)} ms`
}

// ---- tables

export function matrixTable(rows: readonly MatrixRow[], load: { connections: number; rate: number }): string {
  const head =
    '| scenario | load | target | req/s | p50 ms | p99 ms | CPU µs/req | + Redis CPU µs/req | peak RSS MB | wrong / errors | req/s vs raw | CPU vs raw | p50 added vs mock |\n' +
    '|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
  return (
    head +
    rows
      .map(
        (r) =>
          `| ${SCENARIO_LABELS[r.scenario]} | ${r.mode === 'concurrency' ? `${load.connections} conns` : `${load.rate} req/s`} | ${TARGET_LABELS[r.target] ?? r.target}${r.invalid === null ? '' : ' **(not valid)**'} | ${cell(r.rps, 0)} | ${cell(r.p50Ms, 2)} | ${cell(r.p99Ms, 2)} | ${cell(r.cpuUsPerReq, 0)} | ${(r.redisCpuUsPerReq ?? null) === null ? '—' : cell(r.redisCpuUsPerReq!, 0)} | ${cell(r.peakRssMb, 0)} | ${r.invalid === null ? `${r.wrong} / ${r.errors}` : `**${r.wrong} / ${r.errors}**`} | ${ratio(r.rpsVsRaw)} | ${ratio(r.cpuVsRaw)} | ${signedMs(r.addedP50Ms)} |`,
      )
      .join('\n') +
    '\n'
  )
}

/** Per-plugin deltas: each plugin's row against the gateway without it, at fixed concurrency. */
export function deltaTable(rows: readonly MatrixRow[]): string | null {
  const lines: string[] = []
  for (const plugin of Object.keys(DELTA_REFERENCE)) {
    const ref = DELTA_REFERENCE[plugin]!
    const cells: string[] = []
    let any = false
    for (const scenario of ['chat', 'stream'] as const) {
      const row = rows.find((r) => r.scenario === scenario && r.mode === 'concurrency' && r.target === plugin)
      const base = rows.find((r) => r.scenario === scenario && r.mode === 'concurrency' && r.target === ref)
      if (row === undefined || base === undefined) {
        cells.push('—', '—')
        continue
      }
      any = true
      if (row.invalid !== null || base.invalid !== null) {
        cells.push('not valid', 'not valid')
        continue
      }
      cells.push(ratio(row.rps.median / base.rps.median), `${row.cpuUsPerReq.median - base.cpuUsPerReq.median >= 0 ? '+' : ''}${num(row.cpuUsPerReq.median - base.cpuUsPerReq.median, 0)}`)
    }
    if (any) lines.push(`| ${TARGET_LABELS[plugin]} | ${TARGET_LABELS[ref]} | ${cells.join(' | ')} |`)
  }
  if (lines.length === 0) return null
  return '| with | against | chat req/s | chat CPU µs/req | stream req/s | stream CPU µs/req |\n|---|---|---:|---:|---:|---:|\n' + lines.join('\n') + '\n'
}

export function peerTable(rows: readonly MatrixRow[]): string | null {
  const lines: string[] = []
  for (const scenario of ['chat', 'stream'] as const) {
    const get = (t: string, m: Mode) => rows.find((r) => r.scenario === scenario && r.mode === m && r.target === t)
    const pk = get('portkey', 'concurrency')
    if (pk === undefined) continue
    for (const t of ['full', 'bare', 'raw']) {
      const row = get(t, 'concurrency')
      if (row === undefined) continue
      const pkRate = get('portkey', 'rate')
      const rowRate = get(t, 'rate')
      const valid = row.invalid === null && pk.invalid === null
      const rateValid = rowRate !== undefined && pkRate !== undefined && rowRate.invalid === null && pkRate.invalid === null
      lines.push(
        `| ${SCENARIO_LABELS[scenario]} | ${TARGET_LABELS[t]} | ${num(row.rps.median, 0)} | ${num(pk.rps.median, 0)} | ${valid ? ratio(row.rps.median / pk.rps.median) : 'not valid'} | ${num(row.cpuUsPerReq.median, 0)} / ${num(pk.cpuUsPerReq.median, 0)} | ${rowRate && pkRate ? (rateValid ? `${num(rowRate.p50Ms.median, 2)} / ${num(pkRate.p50Ms.median, 2)}` : 'not valid') : '—'} |`,
      )
    }
  }
  if (lines.length === 0) return null
  return '| scenario | row | its req/s | Portkey req/s | ratio | CPU µs/req (it / Portkey) | p50 ms at fixed rate (it / Portkey) |\n|---|---|---:|---:|---:|---:|---:|\n' + lines.join('\n') + '\n'
}

export function scaleTables(scale: ScaleResult): string {
  // Results files written before the counts were kept have neither: read as unknown, not as valid.
  const bad = (r: ScaleResult['rows'][number]) => (r.wrong ?? 0) + (r.errors ?? 0) > 0
  const one = scale.rows.find((r) => r.processes === 1)
  const t1 =
    '| processes | req/s | vs 1 process | p50 ms | CPU µs/req (all processes) | + Redis CPU µs/req | peak RSS MB (sum) | CPU share per process | wrong / errors |\n|---:|---:|---:|---:|---:|---:|---:|---|---:|\n' +
    scale.rows
      .map(
        (r) =>
          `| ${r.processes}${bad(r) ? ' **(not valid)**' : ''} | ${cell(r.rps, 0)} | ${one && !bad(one) && !bad(r) ? ratio(r.rps.median / one.rps.median) : '—'} | ${cell(r.p50Ms, 2)} | ${cell(r.cpuUsPerReq, 0)} | ${(r.redisCpuUsPerReq ?? null) === null ? '—' : cell(r.redisCpuUsPerReq!, 0)} | ${cell(r.peakRssMb, 0)} | ${r.cpuShares.map((s) => `${Math.round(s * 100)} %`).join(' · ')} | ${bad(r) ? `**${r.wrong} / ${r.errors}**` : `${r.wrong ?? '?'} / ${r.errors ?? '?'}`} |`,
      )
      .join('\n') +
    '\n'
  const t2 =
    '| processes | key rpm | sent | admitted | allowed (rpm + refill) | refused 429 | other | burst s | processes serving | request-log rows (200s) | verdict |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n' +
    scale.exactness
      .map(
        (e) =>
          `| ${e.processes} | ${e.rpm} | ${e.sent} | ${e.admitted} | ${e.rpm}–${Math.floor(e.bound) + 1} | ${e.refused} | ${e.other} | ${e.elapsedS.toFixed(2)} | ${e.processesServing} / ${e.processes} | ${e.logged ? `${e.logged.rows} (${e.logged.ok})` : '—'} | ${e.exact ? 'exact' : '**not exact**'} |`,
      )
      .join('\n') +
    '\n'
  return `${t1}\nLimits across the processes (a fresh key per count, a burst of 3 × rpm on new connections):\n\n${t2}`
}

export function keysTable(k: Keys100kResult, rate: number): string {
  const rows = k.runs.map(
    (r) =>
      `| ${k.keys.toLocaleString('en-US')} | ${k.spread.toLocaleString('en-US')} | ${r.memory} | ${num(r.rssAfterBootMb, 0)} | ${num(r.fillPerSecond, 0)}, ${num(r.rssFillPeakMb, 0)} | ${num(r.rssLoadPeakMb, 0)} | ${cell(r.rps, 0)} | ${cell(r.p50Ms, 2)} | ${r.rate ? `${num(r.rate.p50Ms, 2)} / ${num(r.rate.p99Ms, 2)} (${rate} req/s)` : '—'} | ${r.samples.reduce((n, s) => n + s.wrong, 0) + (r.rate?.wrong ?? 0)} / ${r.samples.reduce((n, s) => n + s.errors, 0) + (r.rate?.errors ?? 0)} |\n`,
  )
  return (
    '| keys in the database | keys the load uses | SLUICE_MEMORY | RSS after boot MB | first use of each key: req/s, peak RSS MB | peak RSS under load MB | req/s (fixed concurrency) | p50 ms | p50 / p99 ms at fixed rate | wrong / errors |\n|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|\n' +
    rows.join('')
  )
}

export function microTable(runs: readonly MicroRun[]): string {
  const lines: string[] = []
  for (const run of runs) {
    const name = run.file.replace('benchmarks/micro/', '')
    if (run.report === null) {
      lines.push(`| ${name} | **${run.ok ? 'no report' : 'failed'}**: ${run.problem ?? ''} | | | |`)
      continue
    }
    for (const r of run.report.results) {
      const value =
        r.unit === 'ns/op' ? duration(r.value) : r.unit === 'ops/s' ? `${Math.round(r.value).toLocaleString('en-US')} /s` : `${r.value.toFixed(1)} ${r.unit}`
      const p99 = r.p99 === undefined ? '' : duration(r.p99)
      lines.push(`| ${name} | ${r.name} | ${value} | ${p99} | ${run.report.verified.length} checks |`)
    }
  }
  return '| file | measure | median (or rate) | p99 | verified first |\n|---|---|---:|---:|---|\n' + lines.join('\n') + '\n'
}

// ---- targets

export interface TargetVerdict {
  name: string
  measured: string
  met: boolean | null
}

export function evaluateTargets(rows: readonly MatrixRow[], micro: readonly MicroRun[], keys: Keys100kResult | null): TargetVerdict[] {
  const get = (s: ScenarioId, m: Mode, t: string) => rows.find((r) => r.scenario === s && r.mode === m && r.target === t)
  // A verdict read from a row with wrong answers or errors (or priced against one) is no verdict.
  const notValid = (...cells: Array<MatrixRow | undefined>): string | null => {
    const bad = cells.filter((r): r is MatrixRow => r !== undefined && r.invalid !== null)
    return bad.length === 0 ? null : `not valid: ${bad.map((r) => `${TARGET_LABELS[r.target] ?? r.target} had ${r.invalid}`).join('; ')}`
  }
  const out: TargetVerdict[] = []
  for (const [scenario, limit, what] of [
    ['chat', 0.7, 'non-streaming'],
    ['stream', 0.6, 'streaming'],
  ] as const) {
    const name = `full stack ≥ ${limit.toFixed(2)}× raw proxy, ${what} (req/s, fixed concurrency)`
    const full = get(scenario, 'concurrency', 'full')
    const raw = get(scenario, 'concurrency', 'raw')
    const problem = notValid(full, raw)
    if (problem !== null) {
      out.push({ name, measured: problem, met: null })
      continue
    }
    const r = full?.rpsVsRaw ?? null
    // Also against the raw proxy run with the gateway's allocator setting (src/lib/memory.ts): like for like.
    const tuned = get(scenario, 'concurrency', 'rawalloc')
    const alike = full && tuned && tuned.invalid === null ? ` (×${(full.rps.median / tuned.rps.median).toFixed(2)} vs the raw proxy with MIMALLOC_PURGE_DELAY=-1)` : ''
    // The default profile is what the verdict is on; the lean profile's figure shows what its memory costs.
    const lean = get(scenario, 'concurrency', 'lean')?.rpsVsRaw ?? null
    const leanText = lean === null ? '' : `; SLUICE_MEMORY=lean ×${lean.toFixed(2)}`
    out.push({ name, measured: r === null ? 'not measured' : `×${r.toFixed(2)}${alike}${leanText}`, met: r === null ? null : r >= limit })
  }
  for (const scenario of ['chat', 'stream'] as const) {
    const name = `full stack ≥ 4× Portkey, ${scenario} (req/s, fixed concurrency)`
    const full = get(scenario, 'concurrency', 'full')
    const pk = get(scenario, 'concurrency', 'portkey')
    const problem = notValid(full, pk)
    if (problem !== null) {
      out.push({ name, measured: problem, met: null })
      continue
    }
    const r = full && pk ? full.rps.median / pk.rps.median : null
    out.push({ name, measured: r === null ? 'not measured' : `×${r.toFixed(2)}`, met: r === null ? null : r >= 4 })
  }
  const rateRow = get('chat', 'rate', 'full')
  const rateProblem = notValid(rateRow, get('chat', 'rate', 'mock'))
  const added = rateRow?.addedP50Ms ?? null
  out.push({
    name: 'full stack adds < 0.25 ms p50 over the mock direct, chat at a fixed rate',
    measured: rateProblem ?? (added === null ? 'not measured' : `${added >= 0 ? '+' : ''}${added.toFixed(3)} ms${rateRow ? ` (p50 ${rateRow.p50Ms.median.toFixed(2)} ms)` : ''}`),
    met: rateProblem !== null || added === null ? null : added < 0.25,
  })
  // Per memory profile; met when a profile the gateway ships meets it, and the measure names each.
  // A profile whose load had wrong answers or errors did less work than asked: its peak meets nothing.
  const failures = (r: Keys100kResult['runs'][number]) => [...r.samples, ...(r.rate ? [r.rate] : [])].reduce((n, s) => n + s.wrong + s.errors, 0)
  const peaks = (keys?.runs ?? []).map((r) => ({ memory: r.memory, mb: Math.max(r.rssFillPeakMb, r.rssLoadPeakMb), failed: failures(r) }))
  const meeting = peaks.filter((p) => p.mb < 150 && p.failed === 0)
  out.push({
    name: 'peak RSS < 150 MB with 100,000 keys in the database, load over 10,000',
    measured:
      peaks.length === 0
        ? 'not measured'
        : peaks.map((p) => `${p.mb.toFixed(0)} MB (SLUICE_MEMORY=${p.memory}${p.memory === DEFAULT_MEMORY_PROFILE ? ', the default' : ''}${p.failed > 0 ? `; not valid: ${p.failed} wrong answers or errors under load` : ''})`).join(', ') +
          (meeting.length > 0 && meeting.length < peaks.length ? `; met by ${meeting.map((p) => p.memory).join(', ')} only` : ''),
    met: peaks.every((p) => p.failed > 0) ? null : meeting.length > 0,
  })
  for (const run of micro) {
    for (const t of run.report?.targets ?? []) {
      const value = t.unit === 'ns' ? duration(t.value) : `${Math.round(t.value).toLocaleString('en-US')} ${t.unit}`
      const limit = t.unit === 'ns' ? duration(t.limit) : `${t.limit.toLocaleString('en-US')} ${t.unit}`
      out.push({ name: `${t.name} ${t.op === '<' ? '<' : '≥'} ${limit} (${run.file.replace('benchmarks/micro/', '')})`, measured: value, met: t.met })
    }
  }
  const has = (n: string) => out.some((t) => t.name.includes(n))
  if (!has('key verification')) out.push({ name: 'warm key verification < 3 µs (key-verify.ts)', measured: 'not measured', met: null })
  if (!has('RedisStore.admit')) out.push({ name: 'Redis admission ≥ 50,000/s (admission.ts)', measured: 'not measured', met: null })
  return out
}

export function targetsTable(targets: readonly TargetVerdict[], quick: boolean): string {
  const verdict = (t: TargetVerdict) => (t.met === null ? '—' : quick ? (t.met ? 'met (smoke)' : 'missed (smoke)') : t.met ? '**met**' : '**missed**')
  return '| target | measured | verdict |\n|---|---:|---|\n' + targets.map((t) => `| ${t.name} | ${t.measured} | ${verdict(t)} |`).join('\n') + '\n'
}

// ---- run metadata and files

export interface RunMeta {
  date: string
  commit: string
  dirty: boolean
  label: string | null
  quick: boolean
  machine: { nproc: number; cpu: string; memoryGb: number; kernel: string; loadavg: string }
  /**
   * Share of the machine's CPU time the hypervisor gave to other guests during the run (the
   * `steal` column of /proc/stat), in percent; null where it cannot be read. Above a few percent,
   * numbers of different runs compare poorly.
   */
  stolenPercent?: number | null
  bun: string
  wrk: string | null
  settings: Record<string, unknown>
  durationS: number
}

/** What the benchmarks write into the checkout themselves: results files and the README's results section. */
const BENCH_OUTPUTS = ['benchmarks/results/', 'benchmarks/README.md']

/**
 * The commit measured, and whether the checkout differs from it. The benchmarks' own outputs do not
 * count: a run's results files (untracked until committed) would otherwise mark every later run of
 * the same code as having uncommitted changes.
 */
export function gitInfo(root: string): { commit: string; dirty: boolean } {
  const run = (args: string[]) => {
    const out = Bun.spawnSync(['git', ...args], { cwd: root })
    return out.exitCode === 0 ? out.stdout.toString() : ''
  }
  // -z: paths as they are (no quoting); each entry "XY path", a rename followed by its old path.
  const entries = run(['status', '--porcelain', '-z', '--untracked-files=all']).split('\0').filter((e) => e !== '')
  const changed = entries.filter((e) => /^.. /.test(e) && !BENCH_OUTPUTS.some((p) => e.slice(3).startsWith(p)))
  return { commit: run(['rev-parse', 'HEAD']).trim() || 'unknown', dirty: changed.length > 0 }
}

export function machineInfo(): RunMeta['machine'] {
  let cpu = cpus()[0]?.model ?? 'unknown'
  let loadavg = ''
  try {
    cpu = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpu
    loadavg = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
  } catch {
    // not Linux
  }
  return { nproc: cpus().length, cpu, memoryGb: Math.round(totalmem() / 2 ** 30), kernel: release(), loadavg }
}

/** The machine's CPU time so far in clock ticks: all of it, and the part stolen by the hypervisor. */
export function cpuTicks(): { total: number; steal: number } | null {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number)
    // user nice system idle iowait irq softirq steal (guest time is already inside user and nice).
    const total = fields.slice(0, 8).reduce((a, b) => a + b, 0)
    return { total, steal: fields[7] ?? 0 }
  } catch {
    return null
  }
}

/** Percent of the CPU time between two readings that was stolen. */
export function stolenPercent(from: ReturnType<typeof cpuTicks>, to: ReturnType<typeof cpuTicks>): number | null {
  if (from === null || to === null || to.total <= from.total) return null
  return Math.round(((to.steal - from.steal) / (to.total - from.total)) * 1000) / 10
}

export function wrkVersion(): string | null {
  if (Bun.which('wrk') === null) return null
  const out = Bun.spawnSync(['wrk', '-v'])
  return `${out.stdout.toString()}${out.stderr.toString()}`.split('\n')[0]?.split(' Copyright')[0]?.trim() || 'wrk'
}

/** Everything a run produced, as written to the JSON file. */
export interface SuiteResult {
  meta: RunMeta
  targets: TargetVerdict[]
  micro: MicroRun[]
  matrix: { rows: MatrixRow[]; samples: Sample[]; verified: Record<string, string[]> } | null
  scale: ScaleResult | null
  keys100k: Keys100kResult | null
  notes: string[]
  skipped: string[]
}

/** The markdown report: the targets, then each part's table. */
export function renderReport(r: SuiteResult, opts: { heading: string; link?: string }): string {
  const m = r.meta
  const parts: string[] = []
  parts.push(opts.heading)
  if (m.quick) parts.push('> **Smoke run (`--quick`): short measurements, one round. These numbers are not results.**\n')
  parts.push(
    `- commit \`${m.commit.slice(0, 12)}\`${m.dirty ? ' (with uncommitted changes)' : ''}, ${m.date}, ${Math.round(m.durationS / 60)} min${m.label ? `, label ${m.label}` : ''}\n` +
      `- machine: ${m.machine.nproc} × ${m.machine.cpu}, ${m.machine.memoryGb} GB, Linux ${m.machine.kernel}, load average at start ${m.machine.loadavg}${m.stolenPercent != null ? `, CPU time stolen by the hypervisor during the run ${m.stolenPercent}%${m.stolenPercent >= 5 ? ' (**high: numbers compare poorly with other runs**)' : ''}` : ''}; Bun ${m.bun}; ${m.wrk ?? 'no wrk'}\n` +
      `- settings: ${Object.entries(m.settings)
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
        .join(', ')}` +
      (opts.link ? `\n- full results: ${opts.link}` : '') +
      '\n',
  )
  parts.push(`### Targets\n\n${targetsTable(r.targets, m.quick)}`)
  if (r.matrix && r.matrix.rows.length > 0) {
    const load = { connections: Number(m.settings.connections), rate: Number(m.settings.rate) }
    parts.push(`### HTTP scenarios\n\nMedian over ${String(m.settings.rounds)} round(s), (min–max) where rounds differ.\n\n${matrixTable(r.matrix.rows, load)}`)
    const deltas = deltaTable(r.matrix.rows)
    if (deltas) parts.push(`### Per-plugin deltas (fixed concurrency)\n\nEach plugin alone against the gateway without it (quota against auth, which it needs): req/s ratio and added CPU per request.\n\n${deltas}`)
    const peer = peerTable(r.matrix.rows)
    if (peer) parts.push(`### Against Portkey\n\n${peer}`)
  }
  if (r.scale) parts.push(`### Several processes on one port (full stack, Postgres, Redis)\n\n${scaleTables(r.scale)}`)
  if (r.keys100k) parts.push(`### RSS with ${r.keys100k.keys.toLocaleString('en-US')} keys (full stack, Postgres)\n\n${keysTable(r.keys100k, Number(m.settings.rate))}`)
  if (r.micro.length > 0) parts.push(`### Micro-benchmarks\n\n${microTable(r.micro)}`)
  const notes = [...r.notes, ...r.skipped.map((s) => `skipped: ${s}`)]
  if (notes.length > 0) parts.push(`### Notes\n\n${notes.map((n) => `- ${n}`).join('\n')}\n`)
  return parts.join('\n')
}

export function writeSuiteResults(dir: string, r: SuiteResult): { json: string; md: string } {
  mkdirSync(dir, { recursive: true })
  const stamp = r.meta.date.replace(/[:]/g, '-').replace(/\.\d+Z$/, 'Z')
  const stem = `suite-${stamp}-${r.meta.commit.slice(0, 7)}${r.meta.quick ? '-quick' : ''}${r.meta.label === null ? '' : `-${r.meta.label}`}`
  const json = join(dir, `${stem}.json`)
  const md = join(dir, `${stem}.md`)
  writeFileSync(json, `${JSON.stringify(r, null, 2)}\n`)
  writeFileSync(md, renderReport(r, { heading: `# Benchmark suite ${r.meta.date}\n` }) + appendVerified(r))
  return { json, md }
}

function appendVerified(r: SuiteResult): string {
  const lines: string[] = ['\n### Verified before measuring\n']
  for (const [target, checks] of Object.entries(r.matrix?.verified ?? {})) for (const c of checks) lines.push(`- ${TARGET_LABELS[target] ?? target}: ${c}`)
  for (const c of r.scale?.verified ?? []) lines.push(`- scale: ${c}`)
  for (const c of r.keys100k?.verified ?? []) lines.push(`- keys100k: ${c}`)
  for (const run of r.micro) for (const c of run.report?.verified ?? []) lines.push(`- ${run.file.replace('benchmarks/micro/', '')}: ${c}`)
  for (const run of r.micro) for (const n of run.report?.notes ?? []) lines.push(`- ${run.file.replace('benchmarks/micro/', '')} (note): ${n}`)
  return lines.length > 1 ? `${lines.join('\n')}\n` : ''
}

/** Replaces what is between the results markers of the README with the summary. */
export function rewriteReadme(readmePath: string, r: SuiteResult, resultsLink: string): void {
  const text = readFileSync(readmePath, 'utf8')
  const start = text.indexOf(README_START)
  const end = text.indexOf(README_END)
  if (start === -1 || end === -1 || end < start) throw new Error(`${readmePath} has no ${README_START} … ${README_END} section`)
  const body = renderReport(r, { heading: `_Written by \`bun run bench\`; do not edit between the markers._\n`, link: resultsLink })
  writeFileSync(readmePath, `${text.slice(0, start + README_START.length)}\n${body}\n${text.slice(end)}`)
}
